"""Scenario f: 50 Docker tasks, at most 16 at a time."""

from airflow.sdk import DAG
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import ShOperator

TASKS = 50

with DAG(
    "deploy_fifty",
    schedule=None,
    start_date=START,
    max_active_tasks=16,
    default_args={**PROJECT, "docker": {"image": IMAGE}, "command_executor": "docker"},
):
    for i in range(TASKS):
        ShOperator(
            task_id=f"t{i:02d}",
            command='echo "task-$N start"; sleep 2; echo "task-$N done"',
            env={"N": str(i)},
        )
