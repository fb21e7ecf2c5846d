"""``require>`` (dig/require.py) under dag.test(): there only this DAG runs, so the task checks the
required run of its session time (made here by an earlier dag.test of that workflow) and never
triggers one. tests/deployment/test_dig_workflows.py has the scheduler run the required workflow."""

from __future__ import annotations

import uuid

import pendulum
import pytest

from airflow_cmdexec_provider.dig import DigLoadError, load_project
from airflow_cmdexec_provider.dig.require import RequireOperator


def prefix() -> str:
    """A fresh dag_id prefix: runs of earlier tests stay in the session's metadata DB."""
    return f"req{uuid.uuid4().hex[:8]}_"


def test_require_becomes_a_sensor_for_the_required_dag(project):
    dags = load_project(project("requires"), include=["downstream"], dag_id_prefix="p_")
    need = dags["p_downstream"].get_task("need")
    assert isinstance(need, RequireOperator)
    assert (need.required_dag_id, need.rerun_on, need.ignore_failure) == ("p_upstream", "none", False)
    assert need.run_conf == {"value": "from-downstream"}
    assert need.reschedule  # no worker slot while it waits


def test_under_dag_test_a_missing_required_run_fails_at_once_saying_what_to_run(project, run_workflow):
    p = prefix()
    session = pendulum.datetime(2026, 1, 30, tz="UTC")
    result = run_workflow(project("requires"), "downstream", dag_id_prefix=p, logical_date=session)
    assert result.state == "failed"
    assert result.task_states["after"] == "upstream_failed"
    error = result.error_text("need")
    assert (
        f"airflow dags test runs this DAG only, so it cannot run workflow upstream (DAG {p}upstream)" in error
    )
    assert f"Run it first: airflow dags test {p}upstream 2026-01-30T00:00:00+00:00" in error


def test_a_required_run_that_succeeded_for_the_session_time_is_enough(project, run_workflow):
    p = prefix()
    folder = project("requires")
    session = pendulum.datetime(2026, 1, 30, tz="UTC")
    other_day = pendulum.datetime(2026, 1, 29, tz="UTC")
    assert run_workflow(folder, "upstream", dag_id_prefix=p, logical_date=other_day).state == "success"
    # a run of another session time does not count
    assert run_workflow(folder, "downstream", dag_id_prefix=p, logical_date=session).state == "failed"
    assert run_workflow(folder, "upstream", dag_id_prefix=p, logical_date=session).state == "success"
    result = run_workflow(folder, "downstream", dag_id_prefix=p, logical_date=session)
    assert result.state == "success", result.errors
    assert "upstream is done for 2026-01-30T00:00:00+00:00" in result.log_lines("after")


def test_a_failed_required_run_fails_the_task_unless_ignore_failure(project, run_workflow):
    p = prefix()
    folder = project("requires")
    session = pendulum.datetime(2026, 1, 30, tz="UTC")
    assert run_workflow(folder, "broken", dag_id_prefix=p, logical_date=session).state == "failed"
    strict = run_workflow(folder, "strict", dag_id_prefix=p, logical_date=session)
    assert strict.state == "failed"
    assert "require>: workflow broken (run " in strict.error_text("strict")
    assert "finished with errors; set ignore_failure: true to go on anyway" in strict.error_text("strict")
    lenient = run_workflow(folder, "lenient", dag_id_prefix=p, logical_date=session)
    assert lenient.state == "success", lenient.errors
    assert "went on" in lenient.log_lines("after")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("require>: nowhere\n", "require>: nowhere: there is no nowhere.dig in the project"),
        ("require>: ${name}\n  name: other\n", "name a workflow of this project literally"),
        ("require>: other\n  project_name: elsewhere\n", "a workflow of another project"),
        (
            "require>: other\n  rerun_on: sometimes\n",
            "require>: rerun_on: sometimes: give none, failed or all",
        ),
        ("require>: other\n  ignore_failure: maybe\n", "require>: ignore_failure: maybe: give true or false"),
        ("require>: other\n  session_time: soon\n", "write an ISO 8601 time"),
        ("require>: other\n  session_time: ${last_session_time}\n", "write it literally"),
    ],
)
def test_bad_require_is_a_load_error(tmp_path, body, expected):
    (tmp_path / "other.dig").write_text("+a:\n  echo>: a\n")
    (tmp_path / "needs.dig").write_text("+n:\n  " + body)
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path, include=["needs"])
    assert expected in str(info.value)
