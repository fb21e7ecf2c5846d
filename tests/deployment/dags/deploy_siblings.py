"""Scenario a: two sibling Docker tasks whose full task ids share their first 30 characters run at once."""

from airflow.sdk import DAG, TaskGroup
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import PyOperator

with (
    DAG(
        "deploy_siblings",
        schedule=None,
        start_date=START,
        default_args={**PROJECT, "docker": {"image": IMAGE}, "command_executor": "docker"},
    ),
    TaskGroup("extract_customer_tables"),  # full ids: extract_customer_tables.load_table_{alpha,bravo}
):
    PyOperator(
        task_id="load_table_alpha", method="tasks.deploy.meet", params={"who": "alpha", "partner": "bravo"}
    )
    PyOperator(
        task_id="load_table_bravo", method="tasks.deploy.meet", params={"who": "bravo", "partner": "alpha"}
    )
