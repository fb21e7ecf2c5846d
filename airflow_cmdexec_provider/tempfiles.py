"""Private temporary folders that a later task removes if their owner was killed before it could.

Runner files, ``input.json`` (the params), archives for ECS and Kubernetes, and Docker env files can
hold secrets. They live in 0700 folders ``<tmp>/cmdexec-<kind>-*`` removed when the task ends; a
worker killed with SIGKILL cannot do that, so each folder records its owner process (pid and start
time) and every task, when it starts, removes the folders whose owner no longer exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "cmdexec-"
OWNER_FILE = ".cmdexec-owner"


def private_dir(kind: str) -> Path:
    """A new 0700 folder ``cmdexec-<kind>-*`` in the temp dir, owned by this process."""
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    (path / OWNER_FILE).write_text(_identity(os.getpid()))
    return path


@contextmanager
def private_tempdir(kind: str) -> Iterator[Path]:
    path = private_dir(kind)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep() -> list[str]:
    """Remove the ``cmdexec-*`` folders of processes that died; return their names."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            owner = Path(entry.path, OWNER_FILE).read_text()
        except OSError:
            continue  # not one of ours, or one being created right now
        pid = owner.split(" ", 1)[0]
        if pid.isdigit() and _identity(int(pid)) != owner:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _identity(pid: int) -> str:
    """``<pid> <start time>``: a pid alone can be reused by another process after its owner died."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # field 22 (starttime); the command name (field 2) may hold spaces, so split after its ")"
            return f"{pid} {stat.read().rsplit(b')', 1)[1].split()[19].decode()}"
    except FileNotFoundError:
        return f"{pid} gone"
    except (OSError, IndexError):
        return f"{pid} " + ("alive" if _alive(pid) else "gone")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
