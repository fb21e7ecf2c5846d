"""Pack a project (and the IO dir) into a tar.gz for ECS, and unpack a task's output archive safely.

Archive layout: ``project/<path>`` for the project, ``io/<name>`` for the IO dir's files. Like
Digdag's project archive, paths with a component starting with ``.`` and paths matched by the
project's ``.digdagignore`` (gitignore syntax) are left out, file modes are kept, and symbolic links
stay links, made relative, and must not leave the project.

Everything is streamed file by file into the compressed archive on disk: memory stays flat
whatever the project's size.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from airflow_cmdexec_provider.exceptions import CmdExecConfigError

IGNORE_FILE = ".digdagignore"
COMPRESS_LEVEL = 6  # gzip's own default; tarfile's default (9) costs much time for little size


def _ignore_spec(project_dir: Path):
    import pathspec

    ignore = project_dir / IGNORE_FILE
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def iter_project_files(project_dir: Path):
    """Yield (relative path, absolute path) of what is shipped, in a stable order."""
    spec = _ignore_spec(project_dir)
    for root, dirs, files in os.walk(project_dir, followlinks=False):
        rel_root = os.path.relpath(root, project_dir)
        rel_root = "" if rel_root == "." else rel_root
        dirs[:] = sorted(
            d for d in dirs
            if not d.startswith(".") and not spec.match_file(os.path.join(rel_root, d) + "/")
        )
        for name in sorted(files):
            rel = os.path.join(rel_root, name)
            if name.startswith(".") or spec.match_file(rel):
                continue
            yield rel, Path(root) / name
        # Symlinks to directories are listed in dirs by os.walk but not descended: ship them as links.
        for name in sorted(os.listdir(root)):
            full = Path(root) / name
            rel = os.path.join(rel_root, name)
            if full.is_symlink() and full.is_dir() and not name.startswith(".") and not spec.match_file(rel):
                yield rel, full


def pack(project_dir: Path, io_dir: Path, dest: Path) -> int:
    """Write the archive to ``dest``; return the number of entries. Raises on a link leaving the project."""
    project_dir = project_dir.resolve()
    count = 0
    with tarfile.open(dest, "w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as tar:
        for rel, full in iter_project_files(project_dir):
            arcname = f"project/{rel}"
            if full.is_symlink():
                tar.addfile(_link_info(project_dir, rel, full, arcname))
            else:
                tar.add(full, arcname=arcname, recursive=False, filter=_anonymous)
            count += 1
            _forget(tar)
        for child in sorted(io_dir.iterdir()):
            tar.add(child, arcname=f"io/{child.name}", recursive=False, filter=_anonymous)
            count += 1
    return count


def _forget(tar: tarfile.TarFile) -> None:
    """Drop tarfile's record of every member written so far: it grows with the file count (tens of MB
    for 50,000 files) and is only used for hard-link detection, which we do not need."""
    tar.members.clear()
    tar.inodes.clear()


def _link_info(project_dir: Path, rel: str, full: Path, arcname: str) -> tarfile.TarInfo:
    target = (full.parent / os.readlink(full)).resolve()
    if target != project_dir and project_dir not in target.parents:
        raise CmdExecConfigError(
            f"project file {rel!r} is a symbolic link to {os.readlink(full)!r}, outside the project "
            f"{project_dir}; it cannot be shipped (copy the file into the project or list it in {IGNORE_FILE})"
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
                if member.linkname.startswith("/") or (target != dest.resolve() and dest.resolve() not in target.parents):
                    raise CmdExecConfigError(
                        f"the task's output archive has a link {name!r} -> {member.linkname!r} leaving "
                        "the output folder: refused"
                    )
            if member.isdev():
                raise CmdExecConfigError(f"the task's output archive has a device file {name!r}: refused")
        # The "data" filter re-checks all of the above and drops set-uid bits and ownership.
        tar.extractall(dest, filter="data")
