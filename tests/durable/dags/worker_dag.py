"""The DAG the worker-crash tests run in a separate worker process (configured by environment variables).

One task, ``job``, of the kind CMDEXEC_DURABLE_OPERATOR (sh or py), on the executor the connections
and CMDEXEC_DURABLE_DOCKER_IMAGE select: it prints numbered lines with pauses, so that a test can
kill the worker in the middle, and stores a value at the end.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_cmdexec_provider.operators import PyOperator, ShOperator

image = os.environ.get("CMDEXEC_DURABLE_DOCKER_IMAGE")
default_args = {"project_dir": os.environ["CMDEXEC_DURABLE_PROJECT"]}
if image:
    default_args["docker"] = {"image": image}
if os.environ.get("CMDEXEC_DURABLE_DEFERRABLE") == "1":
    default_args["deferrable"] = True
if os.environ.get("SLOW_PAUSE"):  # the pause of the task's command, wherever it runs
    default_args["env"] = {"SLOW_PAUSE": os.environ["SLOW_PAUSE"]}
if os.environ.get("CMDEXEC_DURABLE_EXECUTOR"):
    default_args["command_executor"] = os.environ["CMDEXEC_DURABLE_EXECUTOR"]

with DAG(
    os.environ.get("CMDEXEC_DURABLE_DAG_ID", "cmdexec_durable"),
    schedule=None,
    start_date=datetime(2026, 1, 1),
    default_args=default_args,
) as dag:
    if os.environ.get("CMDEXEC_DURABLE_OPERATOR", "py") == "py":
        PyOperator(task_id="job", method="tasks.slow.run", retries=1, retry_delay=timedelta(seconds=1))
    else:
        ShOperator(task_id="job", command="tasks/slow.sh", retries=1, retry_delay=timedelta(seconds=1))
