"""load_project: where the project is, the mtime cache, parse-time purity, the DAG file it belongs to."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from airflow_cmdexec_provider.dig import load_project

HERE = Path(__file__).resolve().parent


def test_project_dir_is_the_project_folder_and_fileloc_the_dag_file(project):
    path = project("examples")
    dag = load_project(path, include=["basic"])["basic"]
    assert dag.fileloc == __file__  # Airflow ties the DAG to the file that called load_project
    assert {t.project_dir for t in dag.tasks} == {str(path)}
    relative = load_project(Path("projects") / "examples", include=["basic"])[
        "basic"
    ]  # relative to this file
    assert {t.project_dir for t in relative.tasks} == {str(HERE / "projects" / "examples")}


def test_cached_until_a_file_it_read_changes(project):
    path = project("examples")
    first = load_project(path, include=["include", "basic"])
    again = load_project(path, include=["include", "basic"])
    assert again["include"] is first["include"]
    assert again["basic"] is first["basic"]
    # include.dig reads basic.dig and conditions.dig: touching one of them re-parses include only
    stat = (path / "conditions.dig").stat()
    os.utime(path / "conditions.dig", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    third = load_project(path, include=["include", "basic"])
    assert third["include"] is not first["include"]
    assert third["basic"] is first["basic"]
    # an error is cached too, and goes away with the fix
    original = (path / "basic.dig").read_text()
    (path / "basic.dig").write_text(original + "+broken:\n  emr>:\n")
    with pytest.raises(Exception, match="emr>"):
        load_project(path, include=["basic"])
    (path / "basic.dig").write_text(original)
    os.utime(path / "basic.dig", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert load_project(path, include=["basic"])["basic"].task_dict.keys() == first["basic"].task_dict.keys()


def test_parsing_runs_no_task_code_and_uses_no_network(tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "side.py").write_text(
        "open(__file__ + '.imported', 'w').write('imported')\ndef run():\n    print('ran')\n"
    )
    (tmp_path / "tasks" / "side.rb").write_text(
        "File.write('rb.loaded', 'x')\nclass Side\n  def self.run\n  end\nend\n"
    )
    (tmp_path / "wf.dig").write_text(
        "+py:\n  py>: tasks.side.run\n"
        "+rb:\n  rb>: Side.run\n  require: tasks/side\n"
        "+sh:\n  sh>: touch sh.ran\n"
    )

    def no_network(*args, **kwargs):
        raise AssertionError("parsing opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    dag = load_project(tmp_path)["wf"]
    assert dag.task_ids == ["py", "rb", "sh"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["side.py", "side.rb", "tasks", "wf.dig"]
