"""Scenario e: a run whose conf names variables that change how a process or bash starts.

Each task runs bash and needs the normal PATH (``date``, ``uname``): if the run's conf
``PATH``/``BASH_ENV``/``LD_PRELOAD`` reached the command's environment, it would fail, run the
injected script (which writes a marker file) or print the dynamic loader's complaint.
"""

from airflow.sdk import DAG
from deploy_common import IMAGE, PROJECT, START

from airflow_cmdexec_provider.operators import ShOperator

CHECK = "date +%Y && uname -s && echo env-check-ok"

with DAG("deploy_env_injection", schedule=None, start_date=START, default_args=PROJECT):
    ShOperator(task_id="local_bash", command=CHECK, shell=["/bin/bash"], command_executor="local")
    ShOperator(
        task_id="docker_bash",
        command=CHECK,
        shell=["/bin/bash"],
        command_executor="docker",
        docker={"image": IMAGE},
    )
