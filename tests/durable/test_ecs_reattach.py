"""A worker that dies (SIGKILL) while its ECS task runs: the retry re-attaches to that ECS task.

The ECS emulator (in this test process) really runs the task's container; the workers are separate
processes that reach it through AWS_ENDPOINT_URL, as they would reach AWS.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from tests.durable.conftest import kill_once_the_position_is_saved, read_xcom
from tests.durable.harness import Worker, task_log_lines
from tests.ecs.conftest import TEST_IMAGE
from tests.ecs.test_ecs_roundtrip import (
    BUCKET,
    CLUSTER,
    LOG_GROUP,
    register_task_definition,
    remaining_objects,
)

pytestmark = pytest.mark.ecs


@pytest.fixture
def ecs_worker_env(ecs_emulator, ecs_aws_env, worker_env):
    ecs_emulator.boto3_client("s3").create_bucket(Bucket=BUCKET)
    ecs_emulator.boto3_client("logs").create_log_group(logGroupName=LOG_GROUP)
    ecs = ecs_emulator.boto3_client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    register_task_definition(ecs, "cmdexec-durable", tags=True)

    def build(dag_id: str, **extra: str) -> dict[str, str]:
        connections = {
            "AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT": json.dumps(
                {
                    "conn_type": "cmdexec_ecs",
                    "extra": {"cluster_name": CLUSTER, "region": "us-east-1", "poll_interval": 1},
                }
            ),
            "AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT": json.dumps(
                {
                    "conn_type": "cmdexec_storage",
                    "extra": {
                        "type": "s3",
                        "bucket": BUCKET,
                        "endpoint": ecs_emulator.endpoint_url,
                        "path_style_access": True,
                    },
                }
            ),
        }
        return worker_env(
            dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=TEST_IMAGE, **ecs_aws_env, **connections, **extra
        )

    return build


@pytest.mark.parametrize("finished_before_retry", [False, True], ids=["running", "finished"])
def test_retry_reattaches_to_the_ecs_task(
    ecs_emulator, ecs_worker_env, durable_home, tmp_path, finished_before_retry
):
    dag_id = (
        "durable_ecs_" + ("finished" if finished_before_retry else "running") + f"_{uuid.uuid4().hex[:6]}"
    )
    env = ecs_worker_env(dag_id, SLOW_PAUSE="4" if finished_before_retry else "15")
    logical_date = datetime(2026, 3, 1 + finished_before_retry, tzinfo=UTC).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=180)
    kill_once_the_position_is_saved(durable_home, dag_id, first)
    assert ecs_emulator.started_tasks == 1
    if finished_before_retry:
        ecs_emulator.wait_all_stopped(timeout=60)
    else:
        assert len(ecs_emulator.running_containers()) == 1

    retry = Worker(env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=300)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert "Re-attached to the ecs command started by an earlier try" in output
    # The first try saw at least 3 lines (a loaded machine may show the 4th before the kill); the
    # retry shows the rest: every line once, in order, nothing repeated.
    seen_first = task_log_lines(first.output())
    assert seen_first[:3] == ["1", "2", "3"], seen_first
    assert seen_first + task_log_lines(output) == ["1", "2", "3", "4", "5"]
    assert ecs_emulator.started_tasks == 1  # exactly one ECS task for the logical run
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}
    assert remaining_objects(ecs_emulator.boto3_client("s3")) == []


def test_a_retry_on_another_executor_stops_the_earlier_ecs_task_first(
    ecs_emulator, ecs_worker_env, durable_home, tmp_path
):
    """Review M10: the first try's ECS task must not run on unseen while the retry runs the command
    locally."""
    dag_id = f"durable_ecs_then_local_{uuid.uuid4().hex[:6]}"
    env = ecs_worker_env(dag_id, SLOW_PAUSE="60")
    logical_date = datetime(2026, 3, 5, tzinfo=UTC).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=180)
    first.kill()
    [task_arn] = ecs_emulator.task_arns
    assert len(ecs_emulator.running_containers()) == 1

    retry = Worker(
        {**env, "CMDEXEC_DURABLE_EXECUTOR": "local", "SLOW_PAUSE": "1"},
        logical_date,
        tmp_path / "retry.log",
        retry=True,
    )
    output = retry.finish(timeout=300)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert "an earlier try ran this command on the ecs executor; this try runs on local" in output
    ecs_emulator.wait_task_stopped(task_arn, timeout=60)
    assert ecs_emulator.task(task_arn).stop_code == "UserInitiated"
    assert ecs_emulator.started_tasks == 1
    assert task_log_lines(output) == ["1", "2", "3", "4", "5"]  # the command ran again, locally
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}
    assert remaining_objects(ecs_emulator.boto3_client("s3")) == []
