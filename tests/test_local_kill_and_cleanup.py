"""Timeouts and kills stop the whole process group; runner files never outlive the try or touch the
project."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest

from airflow_cmdexec_provider.backends.local import LocalBackend
from airflow_cmdexec_provider.exceptions import BackendError, CommandFailed
from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook
from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator
from tests.process_helpers import wait_gone

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _dag(dag_id: str, **kwargs):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=START, catchup=False, **kwargs)


def _command_output(result, task_id: str) -> list[str]:
    return [
        r.message
        for r in result.records
        if r.task_id == task_id and "airflow_cmdexec_provider.operators." in r.logger
    ]


def _wait_for(path: Path, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


# -- timeout and kill ---------------------------------------------------------------------------------------


def test_execution_timeout_terminates_the_whole_group_even_if_term_is_ignored(run_dag, tmp_path, monkeypatch):
    # The real grace period is 10 s; a shorter one keeps the test fast and changes nothing else.
    monkeypatch.setattr(LocalBackend, "from_settings", classmethod(lambda cls, settings: cls(kill_grace=1.0)))
    pidfile = tmp_path / "pids"
    command = f"""
trap '' TERM
sleep 300 &
echo "$$ $!" > "{pidfile}"
echo ready
wait
echo never-reached
"""
    with _dag("timeout_group") as dag:
        ShOperator(
            task_id="slow",
            project_dir=str(tmp_path),
            command=command,
            # The command must be running (it printed "ready") when the timeout comes: 5 s leave room
            # for a loaded machine to start it, and the sleep 300 still cannot end by itself.
            execution_timeout=dt.timedelta(seconds=5),
        )
    result = run_dag(dag)

    from airflow.sdk.exceptions import AirflowTaskTimeout

    assert result.task_states["slow"] == "failed"
    assert isinstance(result.error("slow"), AirflowTaskTimeout), result.error("slow")
    assert _command_output(result, "slow") == ["ready"]
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2  # the shell and its background child, which both ignore TERM
    assert wait_gone(pids) == []


def _fake_context(op):
    logical_date = pendulum.datetime(2026, 1, 1, tz="UTC")
    ti = SimpleNamespace(
        dag_id=op.dag_id,
        task_id=op.task_id,
        run_id="r",
        try_number=1,
        map_index=-1,
        xcom_pull=lambda **kwargs: None,
    )
    return {
        "ti": ti,
        "params": {},
        "logical_date": logical_date,
        "run_id": "r",
        "dag_run": SimpleNamespace(run_after=logical_date),
        "dag": op.dag,
    }


def test_on_kill_from_another_thread_stops_the_command(tmp_path):
    """What Airflow does when a task is killed (SIGTERM handler -> on_kill) while execute() blocks."""
    pidfile = tmp_path / "pids"
    with _dag("on_kill"):
        op = ShOperator(
            task_id="slow",
            project_dir=str(tmp_path),
            executor="local",
            command=f'sleep 300 & echo "$$ $!" > "{pidfile}"; wait',
        )
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = op.execute(_fake_context(op))
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    pids = [int(p) for p in _wait_for(pidfile).split()]
    op.on_kill()
    thread.join(300)  # TERM ends the group at once; the long deadline is for a stalled machine
    assert not thread.is_alive(), "execute() did not return after on_kill()"
    error = outcome.get("error")
    assert isinstance(error, CommandFailed), outcome
    assert str(error) == "Task on_kill.slow: command failed with code 143 (killed by signal SIGTERM)"
    assert wait_gone(pids) == []
    op.on_kill()  # after the command ended: nothing to do, no error


def test_on_kill_while_the_executor_is_chosen_keeps_the_command_from_starting(tmp_path, monkeypatch):
    """Airflow's SIGTERM handler calls on_kill and lets execute() go on. A kill that came before the
    operator knew its backend was lost: the command then started and ran to its end (and, once the
    supervisor killed the task process, on as an orphan). Here on_kill comes right after the executor
    is chosen, before the operator has recorded the backend."""
    marker = tmp_path / "started"
    with _dag("on_kill_early"):
        op = ShOperator(task_id="early", project_dir=str(tmp_path), command=f'touch "{marker}"')
    choose = CommandExecutorHook.get_backend

    def choose_then_kill(hook):
        backend = choose(hook)
        op.on_kill()
        return backend

    monkeypatch.setattr(CommandExecutorHook, "get_backend", choose_then_kill)
    with pytest.raises(BackendError, match=r"^Task on_kill_early\.early: killed before its command started"):
        op.execute(_fake_context(op))
    assert not marker.exists()


# -- runner files --------------------------------------------------------------------------------------------

STEPS_PY = """
import os
import sys


def where():
    io_dir = os.path.dirname(os.path.abspath(sys.argv[0]))
    print("io=" + io_dir)
    print("files=" + ",".join(sorted(os.listdir(io_dir))))


def where_then_fail():
    where()
    raise RuntimeError("failing on purpose")
"""

WF_RB = """
def where
  io_dir = File.dirname(File.expand_path($0))
  puts "io=#{io_dir}"
  puts "files=#{Dir.children(io_dir).sort.join(',')}"
end
"""


def _snapshot(root: Path) -> list[tuple]:
    entries = []
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        content = path.read_bytes() if path.is_file() else None
        entries.append((str(path.relative_to(root)), stat.st_mode, content))
    return entries


def test_runner_files_live_in_a_per_try_temp_dir_removed_afterwards(run_dag, tmp_path, monkeypatch):
    # Without these (set on this machine), Python would write __pycache__ into the project.
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "steps.py").write_text(STEPS_PY)
    (project / "wf.rb").write_text(WF_RB)
    (project / "sub").mkdir()
    before = _snapshot(project)

    show_sh = 'io=$(dirname "$0"); echo "io=$io"; echo "files=$(ls "$io" | tr "\\n" "," | sed "s/,$//")"'
    with _dag("runner_files", params={"greeting": "hi"}) as dag:
        ShOperator(task_id="sh", project_dir=str(project), command=show_sh)
        ShOperator(
            task_id="sh_workdir", project_dir=str(project), workdir="sub", command=show_sh + "; exit 4"
        )
        PyOperator(task_id="py", project_dir=str(project), method="pkg.steps.where")
        PyOperator(task_id="py_fails", project_dir=str(project), method="pkg.steps.where_then_fail")
        RbOperator(task_id="rb", project_dir=str(project), require="wf", method="where")
    result = run_dag(dag)
    assert result.task_states == {
        "sh": "success",
        "sh_workdir": "failed",
        "py": "success",
        "py_fails": "failed",
        "rb": "success",
    }, result.errors

    expected_files = {
        "sh": "runner.sh",
        "sh_workdir": "runner.sh",
        "py": "input.json,runner.py",
        "py_fails": "input.json,runner.py",
        "rb": "input.json,runner.rb",
    }
    io_dirs = {}
    for task_id, files in expected_files.items():
        lines = dict(line.split("=", 1) for line in _command_output(result, task_id) if "=" in line)
        io_dir = Path(lines["io"])
        assert lines["files"] == files, (task_id, lines)
        assert project.resolve() not in io_dir.resolve().parents, (
            f"{task_id} ran its runner files in the project"
        )
        assert not io_dir.exists(), f"{task_id} left its IO dir {io_dir}"
        assert not io_dir.parent.exists(), f"{task_id} left the temp dir {io_dir.parent}"
        io_dirs[task_id] = io_dir
    assert len(set(io_dirs.values())) == len(io_dirs)  # one per try
    assert _snapshot(project) == before, "the project folder was changed"
