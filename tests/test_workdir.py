"""Packing a project for ECS and unpacking a task's outputs safely (runner/workdir.py)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.runner.workdir import pack, unpack_outputs


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
    archive = tmp_path / "in.tar.gz"
    count = pack(project, io_dir, archive)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {
        "project/tasks/a.py", "project/tasks/run.sh", "project/tasks/sub/data.txt",
        "project/tasks/link.py", "io/input.json",
    }
    assert count == len(members)
    assert stat.S_IMODE(members["project/tasks/run.sh"].mode) == 0o755
    assert members["project/tasks/link.py"].issym()
    assert members["project/tasks/link.py"].linkname == "a.py"


def test_pack_refuses_a_symlink_leaving_the_project(tmp_path):
    project, io_dir = _project(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    os.symlink(outside, project / "tasks" / "escape.txt")
    with pytest.raises(CmdExecConfigError, match="escape.txt.*outside the project"):
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
    [pytest.param("/etc/evil", id="absolute"), pytest.param("../evil", id="dotdot"),
     pytest.param("a/../../evil", id="nested-dotdot")],
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
