"""Process checks shared by the local-executor tests: is a pid gone, wait until pids are gone."""

from __future__ import annotations

import os
import time
from pathlib import Path


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pids, timeout=60.0) -> list[int]:
    """Wait until every pid is gone; return those still alive at the timeout (which only keeps a broken
    test from hanging: it returns as soon as they are gone, however slow the machine is)."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if not pid_gone(p)]
        if alive:
            time.sleep(0.05)
    return alive
