"""The example project of ``cmdexec_example``, every command in a Docker container.

Same tasks, same project files (``tasks/``), same results: the only difference is Digdag's
``_export: docker: image: ...``, which here is ``default_args={"docker": {...}}``. With no ECS cluster
configured, the automatic selection (ECS -> Docker -> local) picks Docker for every command task;
each task's log says so. The project folder is copied into each task's container at the same path
(a fresh copy per try: the container never writes into the DAG folder), so ``tasks/report.sh`` and
the ``tasks.my_workflow`` module are found exactly as on the worker.

The image needs ``sh``, ``python3`` and ``ruby`` (the project's test image has them; build it with
``scripts/build-test-image.sh``). Override it with the environment variable ``CMDEXEC_EXAMPLE_IMAGE``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

IMAGE = os.environ.get("CMDEXEC_EXAMPLE_IMAGE", "cmdexec-test:bookworm")

with DAG(
    dag_id="cmdexec_example_docker",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"greeting": "hello", "count": 3},
    # Digdag: _export: {docker: {image: ...}}. Other keys: docker (CLI path), run_options, pull_always,
    # selinux, build, build_options, docker_conn_id (registry login).
    default_args={"docker": {"image": IMAGE, "run_options": ["--memory", "512m"]}},
    tags=["cmdexec", "example", "docker"],
) as dag:
    prepare = ShOperator(
        task_id="prepare",
        command='echo "${greeting} from sh> on ${session_date} (task ${task_name})"',
    )
    compute = PyOperator(task_id="compute", method="tasks.my_workflow.MyWorkflow.step1")
    enrich = RbOperator(task_id="enrich", method="MyWorkflow.step2", require="tasks/my_workflow")
    report = ShOperator(task_id="report", command="tasks/report.sh", env={"REPORT_TITLE": "Digdag store"})

    @task
    def summary(ti=None) -> str:
        """A plain Airflow task (on the worker) reads everything stored in the containers."""
        stored = ti.xcom_pull(task_ids="report")
        line = ", ".join(f"{k}={stored[k]}" for k in sorted(stored))
        print(f"stored values seen by a plain Airflow task: {line}")
        return line

    prepare >> compute >> enrich >> report >> summary()
