"""``airflow-cmdexec dig check`` and ``dig constructs``, and the README table they generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_cmdexec_provider.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = Path(__file__).resolve().parent / "projects"


@pytest.fixture(autouse=True)
def cli_environment(monkeypatch):
    """main() sets these for its own process; keep them from leaking into later tests."""
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")


def test_check_prints_each_workflows_dag(capsys):
    assert (
        main(
            ["dig", "check", str(PROJECTS / "examples"), "--include", "schedule_daily", "--include", "error*"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "schedule_daily: DAG with 1 task(s), timezone America/Los_Angeles, schedule daily>: 10:00:00" in out
    )
    assert "  show  DigShOperator  +schedule_daily+show" in out
    assert "error_task: DAG with 3 task(s), timezone UTC, schedule none (manual runs)" in out
    assert "  _error  DigPyOperator  +error_task^error [one_failed]  after breaks" in out
    assert "  _end  EmptyOperator  -  after breaks" in out
    assert out.rstrip().endswith("2 of 2 workflow(s) load")


def test_check_prints_every_unsupported_construct_with_file_and_line(tmp_path, capsys):
    (tmp_path / "good.dig").write_text("+a:\n  echo>: hi\n")
    (tmp_path / "bad.dig").write_text("+a:\n  td>: queries/q.sql\n+b:\n  sh>: echo ${Math.random()}\n")
    assert main(["dig", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "bad: cannot be loaded" in out
    assert f"  {tmp_path / 'bad.dig'}, line 2: td>: not part of Digdag's Command Executor" in out
    assert f"  {tmp_path / 'bad.dig'}, line 4: ${{Math.random()}}: Math.random() is not evaluated" in out
    assert "good: DAG with 1 task(s)" in out
    assert out.rstrip().endswith("1 of 2 workflow(s) load")
    assert main(["dig", "check", str(tmp_path / "good.dig")]) == 0
    assert main(["dig", "check", str(tmp_path / "nothing")]) == 1
    assert "neither a Digdag project folder nor a .dig file" in capsys.readouterr().err


def test_readme_construct_table_is_generated_from_the_enforced_table(capsys):
    assert main(["dig", "constructs", "--check", str(ROOT / "README.md")]) == 0, capsys.readouterr().err
    assert main(["dig", "constructs"]) == 0
    table = capsys.readouterr().out
    assert "| `sh>:` | yes |" in table
    assert "| `schedule:` `skip_on_overtime: true` | yes |" in table
    assert "| `_retry:` on a group | no |" in table


def test_digdags_old_project_file_is_not_a_workflow(tmp_path, capsys):
    """Digdag's old digdag.dig (only workflows:, the list of the project's files) is skipped."""
    from airflow_cmdexec_provider.dig import load_project

    (tmp_path / "digdag.dig").write_text("workflows:\n  - hello.dig\n")
    (tmp_path / "hello.dig").write_text("+hi:\n  echo>: hello\n")
    assert list(load_project(tmp_path)) == ["hello"]
    assert main(["dig", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digdag: Digdag's old project file (a list of the workflows), not a workflow" in out
    assert "1 of 1 workflow(s) load" in out
