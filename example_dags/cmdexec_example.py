"""The example Digdag-style project: sh> -> py> (stores) -> rb> (reads, stores) -> sh> (prints) -> Airflow task.

The project is this folder (the default ``project_dir`` is the DAG file's folder): ``tasks/*.py``,
``tasks/*.rb`` and ``tasks/report.sh`` are the same files a Digdag project would hold. Where the
commands run is configuration, not code: with nothing configured they run on the worker; set the
Variable ``cmdexec_executor_type`` and the ``cmdexec_*`` connections (see README) or pass
``docker={"image": ...}`` in ``default_args`` (Digdag ``_export``) to move them into containers.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

with DAG(
    dag_id="cmdexec_example",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"greeting": "hello", "count": 3},
    tags=["cmdexec", "example"],
) as dag:
    # sh>: params arrive as environment variables; the shell expands them, nothing is interpolated.
    prepare = ShOperator(
        task_id="prepare",
        command='echo "${greeting} from sh> on ${session_date} (task ${task_name})"',
    )

    # py>: a method of a class in tasks/my_workflow.py; stores values with digdag.env.store.
    compute = PyOperator(task_id="compute", method="tasks.my_workflow.MyWorkflow.step1")

    # rb>: reads what py> stored and stores more.
    enrich = RbOperator(task_id="enrich", method="MyWorkflow.step2", require="tasks/my_workflow")

    # sh>: a script of the project, executed by path; stored values are environment variables too.
    report = ShOperator(task_id="report", command="tasks/report.sh", env={"REPORT_TITLE": "Digdag store"})

    @task
    def summary(ti=None) -> str:
        """A plain Airflow task reads everything stored so far from the last command task's XCom."""
        stored = ti.xcom_pull(task_ids="report")
        line = ", ".join(f"{k}={stored[k]}" for k in sorted(stored))
        print(f"stored values seen by a plain Airflow task: {line}")
        return line

    prepare >> compute >> enrich >> report >> summary()
