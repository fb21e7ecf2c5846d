"""Deferrable mode on ECS: the trigger polls the ECS task and CloudWatch; it owns execution_timeout."""

from __future__ import annotations

import pytest

from tests.ecs.conftest import TEST_IMAGE
from tests.ecs.test_ecs_roundtrip import ecs_world_fixture, make_dag, remaining_objects  # noqa: F401 - fixture

pytestmark = pytest.mark.ecs


def test_deferrable_ecs_round_trip(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator, ShOperator

    with make_dag(
        "ecs_deferrable", ecs_world["project"], docker={"image": TEST_IMAGE}, deferrable=True
    ) as dag:
        step1 = PyOperator(task_id="step1", method="tasks.wf.step1")
        report = ShOperator(task_id="report", command='echo "note=$note"')
        step1 >> report
    result = run_dag(dag)

    assert result.state == "success", result.error_text("step1") or result.error_text("report")
    assert result.log("step1").count("py> in container: True hello ecs") == 1
    assert "note=HELLO ECS" in result.log("report")
    assert result.xcom("report") == {"numbers": [1, 2, 3], "note": "HELLO ECS"}
    assert ecs_world["emulator"].started_tasks == 2
    assert remaining_objects(ecs_world["s3"]) == []


def test_deferrable_ecs_timeout_stops_the_task_and_cleans_storage(ecs_world, run_dag):
    from datetime import timedelta

    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag(
        "ecs_deferrable_timeout", ecs_world["project"], docker={"image": TEST_IMAGE}, deferrable=True
    ) as dag:
        ShOperator(
            task_id="slow", command="echo sleeping; sleep 300", execution_timeout=timedelta(seconds=10)
        )
    result = run_dag(dag)

    emulator = ecs_world["emulator"]
    assert result.task_states["slow"] == "failed"
    assert "execution_timeout" in result.error_text("slow")
    emulator.wait_all_stopped(timeout=30)
    [task] = emulator.tasks.values()
    assert task.stop_code == "UserInitiated"
    assert remaining_objects(ecs_world["s3"]) == []
