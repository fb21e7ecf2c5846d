"""Scenario d: deferred Docker and ECS commands that a user marks failed through the REST API."""

from airflow.sdk import DAG
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import ShOperator

SLEEPER = "echo sleeper-started; sleep 600"

with DAG(
    "deploy_mark_failed",
    schedule=None,
    start_date=START,
    default_args={**PROJECT, "docker": {"image": IMAGE}, "deferrable": True},
):
    ShOperator(task_id="docker_sleeper", command=SLEEPER, command_executor="docker")
    ShOperator(task_id="ecs_sleeper", command=SLEEPER, command_executor="ecs")
