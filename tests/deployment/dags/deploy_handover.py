"""Scenario b: deferrable Docker and ECS tasks, submitted on one worker, completed on the other one.

The tasks use their own Celery queue, which the test hands from worker-a to worker-b while the
tasks are deferred (see test_deferrable_handover.py).
"""

from airflow.sdk import DAG
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import PyOperator

HANDOVER_QUEUE = "cmdexec_handover"

with DAG(
    "deploy_handover",
    schedule=None,
    start_date=START,
    default_args={**PROJECT, "docker": {"image": IMAGE}, "deferrable": True, "queue": HANDOVER_QUEUE},
):
    PyOperator(
        task_id="docker_job",
        method="tasks.deploy.count",
        command_executor="docker",
        params={"label": "docker", "lines": 10, "pause": 4},
    )
    PyOperator(
        task_id="ecs_job",
        method="tasks.deploy.count",
        command_executor="ecs",
        params={"label": "ecs", "lines": 10, "pause": 4},
    )
