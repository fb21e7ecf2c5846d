"""Deferrable mode on Docker: the wait happens in a trigger (dag.test runs triggers in line, as a
triggerer would), logs keep flowing, and the trigger owns execution_timeout and user kills."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import datetime, timedelta

import pytest

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
def _containers(dag_id: str) -> list[str]:
    label = f"io.github.cmdexec.dag_id={dag_id}"
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.fixture
def project(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "tasks" / "steps.py").write_text(
        "import time, digdag\n"
        "def slow(greeting):\n"
        "    print('first', greeting, flush=True)\n"
        "    time.sleep(3)\n"
        "    print('second', flush=True)\n"
        "    digdag.env.store(done=greeting)\n"
    )
    return tmp_path


def _dag(dag_id, project):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), params={"greeting": "deferred"},
               default_args={"project_dir": str(project), "docker": {"image": IMAGE}, "deferrable": True})


def test_deferrable_docker_run_streams_logs_and_collects_outputs(project, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator, ShOperator

    with _dag("docker_deferrable", project) as dag:
        step = PyOperator(task_id="step", method="tasks.steps.slow")
        after = ShOperator(task_id="after", command='echo "stored: $done"')
        step >> after
    result = run_dag(dag)

    assert result.state == "success", result.error_text("step") or result.error_text("after")
    log = result.log("step")
    assert "Started container" in log
    assert log.index("first deferred") < log.index("second")  # both lines, in order, once
    assert log.count("first deferred") == 1
    assert result.xcom("step") == {"done": "deferred"}
    assert "stored: deferred" in result.log("after")
    assert _containers("docker_deferrable") == []


def test_deferrable_docker_timeout_stops_and_removes_the_container(project, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with _dag("docker_deferrable_timeout", project) as dag:
        ShOperator(task_id="slow", command="echo going to sleep; sleep 300", execution_timeout=timedelta(seconds=6))
    result = run_dag(dag)

    assert result.task_states["slow"] == "failed"
    assert "execution_timeout" in result.error_text("slow")
    assert "Stopped and cleaned up the docker command" in result.log("slow")
    assert _containers("docker_deferrable_timeout") == []


def test_trigger_on_kill_stops_the_container(project, tmp_path):
    """A user marking the deferred task failed: Airflow calls the trigger's on_kill."""
    from airflow_cmdexec_provider.backends.base import CommandRequest
    from airflow_cmdexec_provider.config import docker_config
    from airflow_cmdexec_provider.backends.docker import DockerBackend
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    io_root = tmp_path / "cmdexec-kill"
    (io_root / "io").mkdir(parents=True)
    backend = DockerBackend(docker_config({"image": IMAGE}, "t.kill"))
    request = CommandRequest(task_label="t.kill", project_dir=project, workdir="", io_dir=io_root / "io",
                             command=("sleep", "300"), labels={"dag_id": "t", "task_id": "kill", "run_id": "r",
                                                               "try_number": "1", "map_index": "-1"})
    handle = backend.submit(request, lambda line: None)
    assert len(_containers("t")) == 1
    trigger = CommandTrigger(executor="docker", handle=handle, docker={"image": IMAGE}, ecs=None,
                             task_label="t.kill", deadline=None)
    asyncio.run(trigger.on_kill())
    assert _containers("t") == []
    assert not io_root.exists()  # the private IO folder of the stopped command is gone too
