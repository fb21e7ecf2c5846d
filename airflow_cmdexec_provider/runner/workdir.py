"""Pack a project (and the IO dir) into a tar.gz for ECS, and unpack a task's output archive safely.

Archive layout: ``project/<path>`` for the project, ``io/<name>`` for the IO dir's files. Like
Digdag's project archive, paths with a component starting with ``.`` and paths matched by the
project's ``.digdagignore`` (gitignore syntax) are left out, file modes are kept, and symbolic links
stay links, made relative, and must not leave the project.

``pack_to`` streams the archive into any writable, file by file, e.g. a storage's ``upload_stream``,
which uploads it while it is being made: nothing is written to disk and memory stays flat whatever
the project's size. The gzip stream is made of independent members of ``GZIP_MEMBER`` bytes of tar,
compressed in threads while this thread reads files and writes tar headers. A multi-member gzip file
is one valid gzip stream (RFC 1952, 2.2): ``tar -xzf``, ``gzip -d`` and Python's ``gzip`` and
``tarfile.open(..., "r:gz")`` read it whole.

Compression is ISA-L's igzip (the ``isal`` package) at its highest level: archives as small as
``gzip -6``'s for a fifth of zlib's CPU time, so that shipping costs less CPU than
``tar czf - | curl -T`` (benchmarks/README-ecs.md). It releases the GIL, like zlib.
"""

from __future__ import annotations

import os
import stat
import tarfile
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from isal import isal_zlib

from airflow_cmdexec_provider.blocks import ReusedBlocks
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Self

    import pathspec

IGNORE_FILE = ".digdagignore"
COMPRESS_LEVEL = isal_zlib.ISAL_BEST_COMPRESSION  # 3: igzip's levels are 0-3
GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # a gzip header and trailer around each member
GZIP_MEMBER = 1 << 20  # tar bytes per gzip member: big enough that the size lost at each restart is ~0.1%
COPY_BUFFER = 1 << 20  # file reads of 1 MiB instead of tarfile's 16 KiB


def _ignore_spec(project_dir: Path) -> pathspec.GitIgnoreSpec:
    import pathspec

    ignore = project_dir / IGNORE_FILE
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def iter_project_files(project_dir: Path) -> Iterator[tuple[str, str]]:
    """Yield (relative path, absolute path) of what is shipped, in a stable order."""
    spec = _ignore_spec(project_dir)
    for root, dirs, files in os.walk(project_dir, followlinks=False):
        rel_root = os.path.relpath(root, project_dir)
        rel_root = "" if rel_root == "." else rel_root
        # os.walk lists symlinks to directories in dirs but does not descend: ship them as links.
        linked_dirs = sorted(d for d in dirs if os.path.islink(os.path.join(root, d)))
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not spec.match_file(os.path.join(rel_root, d) + "/")
        )
        for name in sorted(files):
            rel = os.path.join(rel_root, name)
            if name.startswith(".") or spec.match_file(rel):
                continue
            yield rel, os.path.join(root, name)
        for name in linked_dirs:
            rel = os.path.join(rel_root, name)
            if not name.startswith(".") and not spec.match_file(rel):
                yield rel, os.path.join(root, name)


class Writable(Protocol):
    def write(self, data: bytes) -> Any: ...


@dataclass(frozen=True)
class Packed:
    entries: int  # files and links in the archive
    size: int  # bytes of tar.gz written


def pack_to(out: Writable, project_dir: Path, io_dir: Path, cancel: threading.Event | None = None) -> Packed:
    """Write the tar.gz of the project and the IO dir to ``out``.

    Raises on a link leaving the project, and stops (raising) soon after ``cancel`` is set: the caller
    then aborts what it was writing to."""
    project_dir = project_dir.resolve()
    entries = 0
    with (
        _GzipMembers(out) as gz,
        # typeshed's open() knows neither TarFile's copybufsize nor a write-only fileobj.
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFFER) as tar,  # type: ignore[call-overload]
    ):
        for rel, full in iter_project_files(project_dir):
            if cancel is not None and cancel.is_set():
                raise BackendError("packing the project stopped: the task is being killed")
            _add_project_file(tar, project_dir, rel, full)
            entries += 1
            _forget(tar)
        for child in sorted(io_dir.iterdir()):
            tar.add(child, arcname=f"io/{child.name}", recursive=False, filter=_anonymous)
            entries += 1
    return Packed(entries, gz.compressed_size)


def _add_project_file(tar: tarfile.TarFile, project_dir: Path, rel: str, full: str) -> None:
    arcname = f"project/{rel}"
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        tar.addfile(link_info(project_dir, rel, Path(full), arcname))
    elif stat.S_ISREG(st.st_mode):
        # What tar.add records for a regular file, without its per-file owner-name lookups (the
        # archive is anonymous) and with whole-second mtimes, which need no PAX header per file.
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.size = st.st_size
        info.mtime = int(st.st_mtime)
        with open(full, "rb") as fh:
            tar.addfile(info, fh)
    else:  # FIFOs and the like, as tar records them
        tar.add(full, arcname=arcname, recursive=False, filter=_anonymous)


class _GzipMembers:
    """A writable that gzips its input in members of ``GZIP_MEMBER`` bytes, compressed by a pool of
    threads, and writes them to ``out`` in order. At most ``threads + 1`` members are in the pool and
    one is being filled, in buffers reused member after member (``blocks.ReusedBlocks``)."""

    def __init__(self, out: Writable) -> None:
        self.out = out
        self.compressed_size = 0
        self._position = 0
        self._blocks = ReusedBlocks(GZIP_MEMBER, self._compress)
        self._threads = compress_threads()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="cmdexec-gzip")
        self._pending: deque[tuple[Future[bytes], bytearray]] = deque()  # with the tar bytes it reads

    def tell(self) -> int:  # tarfile asks where it starts
        return self._position

    def write(self, data: bytes) -> int:
        self._blocks.write(data)
        self._position += len(data)
        return len(data)

    def _compress(self, member: bytearray) -> None:
        if len(self._pending) > self._threads:
            self._write_out(*self._pending.popleft())
        self._pending.append(
            (self._pool.submit(isal_zlib.compress, member, COMPRESS_LEVEL, GZIP_WBITS), member)
        )

    def _write_out(self, compressing: Future[bytes], member: bytearray) -> None:
        data = compressing.result()
        self._blocks.reuse(member)
        self.out.write(data)
        self.compressed_size += len(data)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is None:
                rest = self._blocks.rest()
                if rest is not None:
                    self._compress(rest)
                while self._pending:
                    self._write_out(*self._pending.popleft())
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def compress_threads() -> int:
    """One compressing thread per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _forget(tar: tarfile.TarFile) -> None:
    """Drop tarfile's record of every member written so far: it grows with the file count (tens of MB
    for 50,000 files) and is only used for hard-link detection, which we do not need."""
    tar.members.clear()  # type: ignore[attr-defined]  # CPython's TarFile internals, not in typeshed
    tar.inodes.clear()  # type: ignore[attr-defined]


def link_info(project_dir: Path, rel: str, full: Path, arcname: str) -> tarfile.TarInfo:
    target = (full.parent / os.readlink(full)).resolve()
    if target != project_dir and project_dir not in target.parents:
        raise CmdExecConfigError(
            f"project file {rel!r} is a symbolic link to {os.readlink(full)!r}, outside the project "
            f"{project_dir}; it cannot be shipped "
            f"(copy the file into the project or list it in {IGNORE_FILE})"
        )
    info = tarfile.TarInfo(arcname)
    info.type = tarfile.SYMTYPE
    info.linkname = os.path.relpath(target, full.parent.resolve())
    info.mode = 0o777
    return info


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def unpack_outputs(archive: Path, dest: Path) -> None:
    """Extract a task's output archive into ``dest``, refusing absolute paths, ``..`` and escaping links."""
    with tarfile.open(archive, "r:*") as tar:
        for member in tar.getmembers():
            name = member.name
            parts = Path(name).parts
            if name.startswith("/") or ".." in parts:
                raise CmdExecConfigError(f"the task's output archive has an unsafe path {name!r}: refused")
            if member.issym() or member.islnk():
                target = (dest / Path(name).parent / member.linkname).resolve()
                if member.linkname.startswith("/") or (
                    target != dest.resolve() and dest.resolve() not in target.parents
                ):
                    raise CmdExecConfigError(
                        f"the task's output archive has a link {name!r} -> {member.linkname!r} leaving "
                        "the output folder: refused"
                    )
            if member.isdev():
                raise CmdExecConfigError(f"the task's output archive has a device file {name!r}: refused")
        # The "data" filter re-checks all of the above and drops set-uid bits and ownership.
        tar.extractall(dest, filter="data")
