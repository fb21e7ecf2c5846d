"""Packing a project for ECS and unpacking a task's outputs safely (runner/workdir.py)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
import threading
import zlib
from pathlib import Path

import pytest

from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.runner.workdir import GZIP_MEMBER, Packed, pack_to, unpack_outputs


def pack(project: Path, io_dir: Path, archive: Path, **kwargs) -> Packed:
    with open(archive, "wb") as out:
        return pack_to(out, project, io_dir, **kwargs)


def _project(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    (project / "tasks" / "sub").mkdir(parents=True)
    (project / "tasks" / "a.py").write_text("print('a')\n")
    (project / "tasks" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (project / "tasks" / "run.sh").chmod(0o755)
    (project / "tasks" / "sub" / "data.txt").write_text("data")
    (project / ".git").mkdir()
    (project / ".git" / "config").write_text("secret")
    (project / ".env").write_text("TOKEN=x")
    (project / "tasks" / ".hidden").write_text("h")
    (project / "logs").mkdir()
    (project / "logs" / "big.log").write_text("x" * 1000)
    (project / "tasks" / "note.tmp").write_text("tmp")
    (project / ".digdagignore").write_text("logs/\n*.tmp\n")
    os.symlink("a.py", project / "tasks" / "link.py")
    io_dir = tmp_path / "io"
    io_dir.mkdir()
    (io_dir / "input.json").write_text('{"params": {}}')
    return project, io_dir


def test_pack_skips_dot_paths_and_digdagignore_and_keeps_modes_and_links(tmp_path):
    project, io_dir = _project(tmp_path)
    (project / "tasks" / "a.py").chmod(0o640)
    archive = tmp_path / "in.tar.gz"
    packed = pack(project, io_dir, archive)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {
        "project/tasks/a.py",
        "project/tasks/run.sh",
        "project/tasks/sub/data.txt",
        "project/tasks/link.py",
        "io/input.json",
    }
    assert packed == Packed(entries=len(members), size=archive.stat().st_size)
    assert stat.S_IMODE(members["project/tasks/run.sh"].mode) == 0o755
    assert stat.S_IMODE(members["project/tasks/a.py"].mode) == 0o640
    assert members["project/tasks/link.py"].issym()
    assert members["project/tasks/link.py"].linkname == "a.py"
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}


def test_pack_ships_a_link_to_a_folder_as_a_link(tmp_path):
    project, io_dir = _project(tmp_path)
    os.symlink("tasks/sub", project / "sublink")
    os.symlink("tasks", project / ".hidden-link")
    archive = tmp_path / "in.tar.gz"
    pack(project, io_dir, archive)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["project/sublink"].issym()
    assert members["project/sublink"].linkname == "tasks/sub"
    assert "project/.hidden-link" not in members
    assert not any(name.startswith("project/sublink/") for name in members)


def _gzip_members(data: bytes) -> int:
    count = 0
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        member.decompress(data)
        assert member.eof
        data = member.unused_data
        count += 1
    return count


def test_a_big_project_is_a_multi_member_gzip_that_gnu_tar_extracts_exactly(tmp_path):
    """What the ECS container does with the archive: ``tar -xzf`` gives back the project byte for byte."""
    project, io_dir = _project(tmp_path)
    (project / "data").mkdir()
    for i in range(5):
        (project / "data" / f"blob{i}.bin").write_bytes(os.urandom(GZIP_MEMBER // 2 + i))
    (project / "data" / "empty.txt").write_bytes(b"")
    archive = tmp_path / "in.tar.gz"
    packed = pack(project, io_dir, archive)
    assert _gzip_members(archive.read_bytes()) >= 3
    dest = tmp_path / "dest"
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
    shipped = sorted(
        str(p.relative_to(dest / "project")) for p in (dest / "project").rglob("*") if not p.is_dir()
    )
    assert shipped == sorted(
        ["tasks/a.py", "tasks/run.sh", "tasks/sub/data.txt", "tasks/link.py", "data/empty.txt"]
        + [f"data/blob{i}.bin" for i in range(5)]
    )
    assert packed.entries == len(shipped) + 1  # + io/input.json
    for name in shipped:
        assert (dest / "project" / name).read_bytes() == (project / name).read_bytes(), name
    assert os.readlink(dest / "project" / "tasks" / "link.py") == "a.py"
    assert os.access(dest / "project" / "tasks" / "run.sh", os.X_OK)
    assert (dest / "io" / "input.json").read_text() == '{"params": {}}'


def test_gzip_members_are_compressed_from_a_fixed_set_of_reused_buffers(tmp_path, monkeypatch):
    """The tar bytes of each gzip member are gathered into one of at most ``threads + 2`` buffers, reused
    member after member, not a new block per member (memory flat whatever the project's size). The
    recorder keeps every buffer it is given, so a block per member would show up as distinct objects."""
    from isal import isal_zlib

    from airflow_cmdexec_provider.runner import workdir

    given: list[object] = []

    class RecordingCompressor:
        def __getattr__(self, name):
            return getattr(isal_zlib, name)

        @staticmethod
        def compress(data, *args):
            given.append(data.obj if isinstance(data, memoryview) else data)
            return isal_zlib.compress(data, *args)

    monkeypatch.setattr(workdir, "isal_zlib", RecordingCompressor())
    project, io_dir = _project(tmp_path)
    (project / "data").mkdir()
    for i in range(12):
        (project / "data" / f"blob{i}.bin").write_bytes(os.urandom(GZIP_MEMBER + 1000 * i))
    archive = tmp_path / "in.tar.gz"
    pack(project, io_dir, archive)
    assert len(given) == _gzip_members(archive.read_bytes()) >= 12
    assert len({id(buffer) for buffer in given}) <= workdir.compress_threads() + 2
    dest = tmp_path / "dest"
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
    for i in range(12):
        name = f"data/blob{i}.bin"
        assert (dest / "project" / name).read_bytes() == (project / name).read_bytes(), name


def test_pack_stops_when_cancelled(tmp_path):
    project, io_dir = _project(tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(BackendError, match="packing the project stopped: the task is being killed"):
        pack(project, io_dir, tmp_path / "in.tar.gz", cancel=cancel)


def test_pack_refuses_a_symlink_leaving_the_project(tmp_path):
    project, io_dir = _project(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, project / "tasks" / "escape.txt")
    with pytest.raises(CmdExecConfigError, match=r"escape\.txt.*outside the project"):
        pack(project, io_dir, tmp_path / "in.tar.gz")


def _archive(tmp_path: Path, build) -> Path:
    path = tmp_path / "out.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        build(tar)
    return path


def _add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_unpack_outputs_extracts_regular_files(tmp_path):
    archive = _archive(tmp_path, lambda tar: _add_file(tar, "./output.json", b'{"store_params": {}}'))
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack_outputs(archive, dest)
    assert (dest / "output.json").read_bytes() == b'{"store_params": {}}'


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("/etc/evil", id="absolute"),
        pytest.param("../evil", id="dotdot"),
        pytest.param("a/../../evil", id="nested-dotdot"),
    ],
)
def test_unpack_outputs_refuses_unsafe_paths(tmp_path, name):
    archive = _archive(tmp_path, lambda tar: _add_file(tar, name))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CmdExecConfigError, match="unsafe path"):
        unpack_outputs(archive, dest)
    assert not (tmp_path / "evil").exists()


def test_unpack_outputs_refuses_links_leaving_the_folder(tmp_path):
    def build(tar):
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tar.addfile(info)

    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(CmdExecConfigError, match="leaving"):
        unpack_outputs(_archive(tmp_path, build), dest)
    assert not (dest / "link").exists()
