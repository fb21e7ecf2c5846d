"""Scenario a: two sibling Docker tasks whose full task ids share their first 30 characters run at once."""

from airflow.sdk import DAG, TaskGroup
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import PyOperator

RENDEZVOUS = "/var/tmp/cmdexec-deploy-rendezvous"

with (
    DAG(
        "deploy_siblings",
        schedule=None,
        start_date=START,
        # Each try works in its own copy of the project, so the siblings meet in a folder the DAG
        # mounts into both containers on purpose (docker.run_options, as a user would share data).
        default_args={
            **PROJECT,
            "docker": {"image": IMAGE, "run_options": ["-v", f"{RENDEZVOUS}:/rendezvous"]},
            "env": {"RENDEZVOUS": "/rendezvous"},
            "command_executor": "docker",
        },
    ),
    TaskGroup("extract_customer_tables"),  # full ids: extract_customer_tables.load_table_{alpha,bravo}
):
    PyOperator(
        task_id="load_table_alpha", method="tasks.deploy.meet", params={"who": "alpha", "partner": "bravo"}
    )
    PyOperator(
        task_id="load_table_bravo", method="tasks.deploy.meet", params={"who": "bravo", "partner": "alpha"}
    )
