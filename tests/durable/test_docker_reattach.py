"""A worker that dies (SIGKILL) while its container runs: the retry re-attaches to that container.

The worker is a real process running the task (dag.test in a subprocess); the retry is the next try
of the same task instance, which finds the container's handle in the task state store.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime, timezone

import pytest

from tests.durable.conftest import read_xcom
from tests.durable.harness import Worker, task_log_lines

pytestmark = pytest.mark.docker

IMAGE = __import__("os").environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
LABEL = "io.github.cmdexec.dag_id"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=True).stdout


def _containers(dag_id: str) -> list[str]:
    return _docker("ps", "-aq", "--filter", f"label={LABEL}={dag_id}").split()


def _created(dag_id: str, since: str) -> int:
    events = _docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter", "type=container",
                     "--filter", "event=create", "--filter", f"label={LABEL}={dag_id}", "--format", "{{.ID}}")
    return len(events.split())


@pytest.mark.parametrize("operator", ["py"])
def test_retry_reattaches_to_the_running_container(worker_env, durable_home, tmp_path, operator):
    dag_id = f"durable_docker_running_{operator}_{uuid.uuid4().hex[:6]}"
    env = worker_env(dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=IMAGE, CMDEXEC_DURABLE_OPERATOR=operator)
    since = str(int(time.time()) - 1)
    logical_date = datetime(2026, 2, 1, tzinfo=timezone.utc).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=180)
    time.sleep(2.5)  # the log position is saved about once a second
    first.kill()
    assert len(_containers(dag_id)) == 1  # the container outlives its worker, as after a crash

    retry = Worker(env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=240)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert "Re-attached to container" in output
    assert task_log_lines(first.output()) == ["1", "2", "3"]
    assert task_log_lines(output) == ["4", "5"]  # the rest of the log, nothing repeated
    assert _created(dag_id, since) == 1  # exactly one container for the logical run
    assert _containers(dag_id) == []  # and it is gone now
    if operator == "py":
        assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}


def test_retry_collects_a_container_that_already_finished(worker_env, durable_home, tmp_path):
    dag_id = f"durable_docker_finished_{uuid.uuid4().hex[:6]}"
    env = worker_env(dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=IMAGE, SLOW_PAUSE="3")
    since = str(int(time.time()) - 1)
    logical_date = datetime(2026, 2, 2, tzinfo=timezone.utc).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=180)
    time.sleep(1.5)
    first.kill()
    [container] = _containers(dag_id)
    assert _docker("wait", container).strip() == "0"  # it finished while no worker watched

    retry = Worker(env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=240)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert "Re-attached to container" in output and "(exited)" in output
    assert task_log_lines(output) == ["4", "5"]
    assert _created(dag_id, since) == 1  # the command did not run again
    assert _containers(dag_id) == []
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}
