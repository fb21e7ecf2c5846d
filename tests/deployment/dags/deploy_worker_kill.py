"""Scenario c: the worker dies (SIGKILL) during a Docker and an ECS task; the retry re-attaches."""

from datetime import timedelta

from airflow.sdk import DAG
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import PyOperator

with DAG(
    "deploy_worker_kill",
    schedule=None,
    start_date=START,
    default_args={**PROJECT, "docker": {"image": IMAGE}, "retries": 1, "retry_delay": timedelta(seconds=2)},
):
    PyOperator(
        task_id="docker_job",
        method="tasks.deploy.count",
        command_executor="docker",
        params={"label": "docker", "lines": 10, "pause": 2},
    )
    PyOperator(
        task_id="ecs_job",
        method="tasks.deploy.count",
        command_executor="ecs",
        params={"label": "ecs", "lines": 10, "pause": 2},
    )
