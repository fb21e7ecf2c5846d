"""``schedule: skip_on_overtime: true`` (dig/overtime.py): the task ``_skip_on_overtime`` goes
before every task of the workflow, and a manual run (``dag.test()``) always runs. The skip itself
needs scheduled runs, which only a scheduler makes: tests/deployment/test_dig_workflows.py."""

from __future__ import annotations

import pendulum

from airflow_cmdexec_provider.dig import load_project


def test_the_gate_comes_before_every_task_that_starts_the_workflow(project):
    dags = load_project(project("overtime"))
    nightly = dags["nightly"]
    starts = {t.task_id for t in nightly.tasks if not t.upstream_list}
    assert starts == {"_skip_on_overtime"}
    # the first task, the background task and the SLA's deadline all wait for it
    assert nightly.get_task("_skip_on_overtime").downstream_task_ids == {"load", "beside", "_sla._deadline"}
    # skip_on_overtime: false makes no gate
    assert "_skip_on_overtime" not in dags["plain"].task_ids


def test_a_manual_run_always_runs(project, run_workflow):
    result = run_workflow(
        project("overtime"), "nightly", logical_date=pendulum.datetime(2026, 1, 30, tz="Asia/Tokyo")
    )
    assert result.state == "success", result.errors
    assert result.task_states["_skip_on_overtime"] == "success"
    assert result.task_states["load"] == "success"
    assert result.task_states["report"] == "success"
    gate = result.log("_skip_on_overtime")
    assert "skip_on_overtime: this is a manual run, which always runs" in gate, gate
    assert "loaded 2026-01-30" in result.log("report")
