"""Bad input, executor selection, operator construction and runtime params in real runs (local executor)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest

from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator
from airflow_cmdexec_provider.params import stable_id

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _dag(dag_id: str, **kwargs):
    from airflow.sdk import DAG

    kwargs.setdefault("start_date", START)
    return DAG(dag_id, schedule=None, catchup=False, **kwargs)


def _command_output(result, task_id: str) -> list[str]:
    return [
        r.message
        for r in result.records
        if r.task_id == task_id and "airflow_cmdexec_provider.operators." in r.logger
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs-project")
    (root / "steps.py").write_text("def ok():\n    print('ok')\n")
    (root / "lib").mkdir()
    (root / "lib" / "wf.rb").write_text("def ok\n  puts 'ok'\nend\n")
    (root / "sub").mkdir()
    (root / "escape").symlink_to(tmp_path_factory.getbasetemp())
    return root


# -- bad input: one DAG of independent bad tasks, run once --------------------------------------------------

BAD_TASKS = {
    # task_id: (operator, kwargs, the problem the message must state)
    "env_key": (
        ShOperator,
        {"command": "true", "env": {"BAD-KEY": "x"}},
        "invalid env key name 'BAD-KEY': names must match [a-zA-Z_][a-zA-Z_0-9]*",
    ),
    "env_key_dotted": (PyOperator, {"method": "steps.ok", "env": {"a.b": "x"}}, "invalid env key name 'a.b'"),
    "no_project": (
        ShOperator,
        {"command": "true", "project_dir": "/nonexistent/cmdexec-project"},
        "project_dir '/nonexistent/cmdexec-project' does not exist or is not a folder",
    ),
    "workdir_up": (ShOperator, {"command": "true", "workdir": "../x"}, "workdir '../x' leaves the project"),
    "workdir_up_inside": (
        ShOperator,
        {"command": "true", "workdir": "sub/../../x"},
        "workdir 'sub/../../x' leaves the project",
    ),
    "workdir_abs": (
        ShOperator,
        {"command": "true", "workdir": "/tmp"},
        "workdir '/tmp' must be relative to the project",
    ),
    "workdir_symlink": (
        ShOperator,
        {"command": "true", "workdir": "escape"},
        "workdir 'escape' leaves the project",
    ),
    "workdir_missing": (
        ShOperator,
        {"command": "true", "workdir": "nope"},
        "workdir 'nope' does not exist in the project",
    ),
    "no_python": (
        PyOperator,
        {"method": "steps.ok", "python": "python-not-installed-xyz"},
        "python program 'python-not-installed-xyz' was not found on the worker",
    ),
    "no_python_list": (
        PyOperator,
        {"method": "steps.ok", "python": ["/opt/none/python9", "-u"]},
        "python program '/opt/none/python9' was not found on the worker",
    ),
    "no_ruby": (
        RbOperator,
        {"method": "ok", "require": "lib/wf", "ruby": "ruby-not-installed-xyz"},
        "ruby program 'ruby-not-installed-xyz' was not found on the worker",
    ),
    "no_shell": (
        ShOperator,
        {"command": "true", "shell": ["/bin/no-such-shell", "-e"]},
        "shell program '/bin/no-such-shell' was not found on the worker",
    ),
    "bad_python_value": (PyOperator, {"method": "steps.ok", "python": 5}, "invalid python 5"),
    "bad_executor": (
        ShOperator,
        {"command": "true", "executor": "dokcer"},
        "unknown executor 'dokcer'; use one of auto, local, docker, ecs, kubernetes",
    ),
    "bad_executor_alias": (
        PyOperator,
        {"method": "steps.ok", "command_executor": "k8s"},
        "unknown executor 'k8s'",
    ),
    "empty_command": (ShOperator, {"command": "  "}, "command is empty"),
    "empty_method": (PyOperator, {"method": ""}, "method is empty"),
    "method_without_module": (PyOperator, {"method": "ok"}, "py> method 'ok' must be 'module.function'"),
}


@pytest.fixture(scope="module")
def bad_run(run_dag, project):
    with _dag("bad_input") as dag:
        for task_id, (operator, kwargs, _) in BAD_TASKS.items():
            operator(task_id=task_id, **{"project_dir": str(project), **kwargs})
        ShOperator(task_id="good", project_dir=str(project), command="echo fine")
    return run_dag(dag)


@pytest.mark.parametrize("task_id", sorted(BAD_TASKS))
def test_bad_input_fails_the_task_with_a_message_naming_task_and_problem(bad_run, task_id):
    expected = BAD_TASKS[task_id][2]
    assert bad_run.task_states[task_id] == "failed"
    error = bad_run.error(task_id)
    assert error is not None
    message = str(error)
    assert message.startswith(f"Task bad_input.{task_id}: ") or f"Task bad_input.{task_id}: " in message, (
        message
    )
    assert expected in message, message
    if task_id != "method_without_module":  # that one is reported by the runner, after it ran
        assert isinstance(error, CmdExecConfigError), type(error)
    assert _command_output(bad_run, task_id) == []  # nothing ran


def test_bad_tasks_do_not_affect_their_neighbours(bad_run):
    assert bad_run.task_states["good"] == "success"
    assert _command_output(bad_run, "good") == ["fine"]


def test_relative_project_dir_is_taken_from_the_dag_file_folder(run_dag):
    with _dag("relative_project") as dag:
        ShOperator(task_id="here", command="pwd")
        ShOperator(task_id="up", project_dir="..", command="pwd")
        ShOperator(task_id="missing", project_dir="no_such_folder", command="pwd")
    result = run_dag(dag)
    tests_dir = Path(__file__).resolve().parent
    assert _command_output(result, "here") == [str(tests_dir)]
    assert _command_output(result, "up") == [str(tests_dir.parent)]
    assert f"project_dir '{tests_dir / 'no_such_folder'}' does not exist" in result.error_text("missing")


# -- construction does no I/O ---------------------------------------------------------------------------


def test_operator_init_does_no_io_and_defers_every_check_to_execute(monkeypatch):
    from airflow_cmdexec_provider import config

    def no_variables(*args, **kwargs):
        raise AssertionError("the executor type Variable was read at construction")

    with _dag("init_no_io"):
        monkeypatch.setattr(config, "executor_type", no_variables)
        monkeypatch.setattr(
            os, "listdir", lambda *a: (_ for _ in ()).throw(AssertionError("listdir at init"))
        )
        monkeypatch.setattr(os, "stat", lambda *a, **k: (_ for _ in ()).throw(AssertionError("stat at init")))
        ops = [
            ShOperator(
                task_id="sh",
                command="",
                project_dir="/does/not/exist",
                executor="bogus",
                shell=123,
                env={"bad-key": None},
                workdir="../../etc",
            ),
            PyOperator(
                task_id="py", method="", project_dir="/does/not/exist", command_executor="bogus", python=5
            ),
            RbOperator(
                task_id="rb", method="", project_dir="/does/not/exist", executor="bogus", ruby=[], require=3
            ),
        ]
        monkeypatch.undo()
    for op in ops:
        assert op.command_executor == "bogus"
        assert op.project_dir == "/does/not/exist"
        with pytest.raises(CmdExecConfigError, match=rf"Task init_no_io\.{op.task_id}: "):
            op.execute(_fake_context(op))


def _fake_context(op, logical_date=None):
    logical_date = logical_date or pendulum.datetime(2026, 1, 1, tz="UTC")
    ti = SimpleNamespace(
        dag_id="d",
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
        "dag": None,
    }


# -- executor selection ------------------------------------------------------------------------------------


def _selection_line(result, task_id: str) -> str:
    lines = [r.message for r in result.records if r.task_id == task_id and " runs on the " in r.message]
    assert len(lines) == 1, lines
    return lines[0]


def test_with_nothing_configured_tasks_run_locally_and_the_log_says_so(run_dag, project):
    with _dag("select_auto") as dag:
        ShOperator(task_id="sh", project_dir=str(project), command="echo sh-ran")
        PyOperator(task_id="py", project_dir=str(project), method="steps.ok")
        RbOperator(task_id="rb", project_dir=str(project), require="lib/wf", method="ok")
        ShOperator(task_id="auto", project_dir=str(project), command="echo auto-ran", executor="auto")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    for task_id in ("sh", "py", "rb", "auto"):
        line = _selection_line(result, task_id)
        # No docker/ecs/kubernetes params: only local can run it, so no Variable or Connection is read
        assert (
            line == f"Task select_auto.{task_id} runs on the local executor (it has no docker, ecs or "
            "kubernetes params)"
        )
    assert _command_output(result, "sh") == ["sh-ran"]
    assert _command_output(result, "py") == ["ok"]
    assert _command_output(result, "rb") == ["ok"]


def test_forced_local_executor(run_dag, project):
    with _dag("select_forced") as dag:
        ShOperator(task_id="executor", project_dir=str(project), command="echo a", executor="local")
        ShOperator(task_id="alias", project_dir=str(project), command="echo b", command_executor="local")
        ShOperator(task_id="digdag_name", project_dir=str(project), command="echo c", executor="simple")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    for task_id in ("executor", "alias", "digdag_name"):
        assert _selection_line(result, task_id) == (
            f"Task select_forced.{task_id} runs on the local executor (forced by executor='local')"
        )


def test_default_args_reach_the_operators_like_digdag_export(run_dag, project):
    docker = {"image": "python:3.12-slim", "run_options": ["--network", "none"]}
    default_args = {"docker": docker, "command_executor": "local", "env": {"FROM_DEFAULTS": "yes"}}
    with _dag("select_default_args", default_args=default_args) as dag:
        sh = ShOperator(task_id="sh", project_dir=str(project), command='echo "defaults=$FROM_DEFAULTS"')
        py = PyOperator(task_id="py", project_dir=str(project), method="steps.ok")
        override = ShOperator(
            task_id="override", project_dir=str(project), command="echo o", executor="auto", docker=None
        )
    assert sh.docker == docker
    assert py.docker == docker
    assert sh.command_executor == py.command_executor == "local"
    assert override.command_executor == "auto"
    result = run_dag(dag)
    assert result.task_states["sh"] == result.task_states["py"] == "success", result.errors
    assert "runs on the local executor (forced by executor='local'" in _selection_line(result, "sh")
    assert _command_output(result, "sh") == ["defaults=yes"]
    # the task's own executor="auto" wins over the DAG-wide command_executor="local"
    assert result.task_states["override"] == "success", result.errors
    override_line = _selection_line(result, "override")
    assert "runs on the local executor" in override_line
    assert "forced" not in override_line


# -- runtime params in real runs --------------------------------------------------------------------------

SHOW_RUNTIME = (
    'echo "session_time=$session_time"; echo "session_date=$session_date"; '
    'echo "session_date_compact=$session_date_compact"; echo "session_local_time=$session_local_time"; '
    'echo "session_tz_offset=$session_tz_offset"; echo "session_unixtime=$session_unixtime"; '
    'echo "timezone=$timezone"; echo "task_name=$task_name"; echo "attempt_id=$attempt_id"'
)


def _runtime(result, task_id: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _command_output(result, task_id) if "=" in line)


def test_runtime_params_of_a_run_with_a_logical_date(run_dag, project):
    with _dag("runtime_logical") as dag:
        ShOperator(task_id="show", project_dir=str(project), command=SHOW_RUNTIME + '; echo "ds={{ ds }}"')
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 3, 4, 5, 6, 7, tz="UTC"))
    assert result.state == "success", result.errors
    assert _runtime(result, "show") == {
        "session_time": "2026-03-04T05:06:07+00:00",
        "session_date": "2026-03-04",
        "ds": "2026-03-04",
        "session_date_compact": "20260304",
        "session_local_time": "2026-03-04 05:06:07",
        "session_tz_offset": "+0000",
        "session_unixtime": str(int(pendulum.datetime(2026, 3, 4, 5, 6, 7, tz="UTC").timestamp())),
        "timezone": "UTC",
        "task_name": "+runtime_logical+show",
        "attempt_id": str(stable_id("attempt", "runtime_logical", result.run_id, "0")),
    }


def test_runtime_params_of_a_manual_run_without_logical_date(run_dag, project):
    with _dag("runtime_manual") as dag:
        ShOperator(task_id="show", project_dir=str(project), command=SHOW_RUNTIME)
    result = run_dag(dag, logical_date=None)
    assert result.state == "success", result.errors
    assert result.logical_date is None
    run_after = pendulum.instance(result.run_after).in_timezone("UTC")
    params = _runtime(result, "show")
    assert pendulum.parse(params["session_time"]) == run_after.replace(microsecond=0)
    assert params["session_date"] == run_after.strftime("%Y-%m-%d")
    assert params["session_date_compact"] == run_after.strftime("%Y%m%d")
    assert params["session_local_time"] == run_after.strftime("%Y-%m-%d %H:%M:%S")
    assert params["session_unixtime"] == str(int(run_after.timestamp()))
    assert params["timezone"] == "UTC"
    assert params["session_tz_offset"] == "+0000"
    # Digdag's session_time has no fraction of a second, also for a run_after that has one (review L3)
    assert "." not in params["session_time"]
    assert pendulum.parse(params["session_time"]).microsecond == 0


def test_runtime_params_of_a_non_utc_dag(run_dag, project):
    with _dag("runtime_tokyo", start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Tokyo")) as dag:
        ShOperator(task_id="show", project_dir=str(project), command=SHOW_RUNTIME + '; echo "ds={{ ds }}"')
    result = run_dag(dag, logical_date=pendulum.datetime(2026, 1, 1, 20, 0, 0, tz="UTC"))
    assert result.state == "success", result.errors
    params = _runtime(result, "show")
    assert params["timezone"] == "Asia/Tokyo"
    assert params["session_time"] == "2026-01-02T05:00:00+09:00"
    assert params["session_date"] == "2026-01-02"  # the DAG's day, while Airflow's ds is the UTC day
    assert params["ds"] == "2026-01-01"
    assert params["session_local_time"] == "2026-01-02 05:00:00"
    assert params["session_tz_offset"] == "+0900"
    assert params["session_unixtime"] == str(int(pendulum.datetime(2026, 1, 1, 20, tz="UTC").timestamp()))
