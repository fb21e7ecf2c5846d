"""A worker that dies (SIGKILL) while its container runs: the retry re-attaches to that container,
or, when the container is gone, runs the command again (review H4: a stale handle never wedges).

The worker is a real process running the task (dag.test in a subprocess); the retry is the next try
of the same task instance, which finds the container's handle in the task state store.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.deployment.harness import ContainerWatch
from tests.durable.conftest import read_xcom, saved_handle
from tests.durable.harness import Worker, task_log_lines

pytestmark = pytest.mark.docker

IMAGE = __import__("os").environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
LABEL = "io.github.cmdexec.dag_id"


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=True).stdout


def _containers(dag_id: str) -> list[str]:
    return _docker("ps", "-aq", "--filter", f"label={LABEL}={dag_id}").split()


@pytest.fixture
def watch_containers():
    """Start recording the containers created for a DAG (``docker events`` followed live: the
    daemon keeps only its last few hundred events, and the suite's other tests make many)."""
    watches: list[ContainerWatch] = []

    def start(dag_id: str) -> ContainerWatch:
        watches.append(ContainerWatch(dag_id))
        return watches[-1]

    yield start
    for watch in watches:
        watch.close()


def _wait_for_handle(home: Path, dag_id: str, predicate, what: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        handle = saved_handle(home, dag_id)
        if handle is not None and predicate(handle):
            return handle
        time.sleep(0.2)
    raise AssertionError(f"the worker did not save {what} within {timeout}s: {saved_handle(home, dag_id)}")


def test_retry_reattaches_to_the_running_container(worker_env, durable_home, tmp_path, watch_containers):
    dag_id = f"durable_docker_running_{uuid.uuid4().hex[:6]}"
    env = worker_env(dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=IMAGE)
    watch = watch_containers(dag_id)
    logical_date = datetime(2026, 2, 1, tzinfo=UTC).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=300)
    # The log position is saved about once a second: wait until it covers the three lines shown.
    _wait_for_handle(durable_home, dag_id, lambda h: h.get("log_lines", 0) >= 3, "the log position")
    first.kill()
    assert len(_containers(dag_id)) == 1  # the container outlives its worker, as after a crash

    retry = Worker(env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=300)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert "Re-attached to the docker command started by an earlier try" in output
    assert task_log_lines(first.output()) == ["1", "2", "3"]
    assert task_log_lines(output) == ["4", "5"]  # the rest of the log, nothing repeated
    assert len(watch.names()) == 1  # exactly one container for the logical run
    assert _containers(dag_id) == []  # and it is gone now
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}


def test_retry_collects_a_container_that_already_finished(
    worker_env, durable_home, tmp_path, watch_containers
):
    dag_id = f"durable_docker_finished_{uuid.uuid4().hex[:6]}"
    env = worker_env(dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=IMAGE)
    watch = watch_containers(dag_id)
    logical_date = datetime(2026, 2, 2, tzinfo=UTC).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=300)
    _wait_for_handle(durable_home, dag_id, lambda h: h.get("log_lines", 0) >= 3, "the log position")
    first.kill()
    [container] = _containers(dag_id)
    assert _docker("wait", container).strip() == "0"  # it finished while no worker watched

    retry = Worker(env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=300)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert "Re-attached to the docker command started by an earlier try" in output
    assert task_log_lines(output) == ["4", "5"]
    assert len(watch.names()) == 1  # the command did not run again
    assert _containers(dag_id) == []
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_a_handle_whose_container_is_gone_does_not_wedge_the_retry(
    worker_env, durable_home, tmp_path, deferrable, watch_containers
):
    """review H4: the worker died, then its container vanished (removed by hand, a daemon reset): the
    retry finds the handle, sees the container is gone, and runs the command afresh, also when it
    runs deferrable (the hook's submit path, where the stale handle used to be followed blindly)."""
    dag_id = f"durable_docker_gone_{uuid.uuid4().hex[:6]}"
    env = worker_env(dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=IMAGE)
    watch = watch_containers(dag_id)
    logical_date = datetime(2026, 2, 3, tzinfo=UTC).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    handle = _wait_for_handle(durable_home, dag_id, lambda h: not h.get("starting"), "the container's handle")
    first.wait_for("slow-line 1", timeout=300)
    first.kill()
    _docker("rm", "--force", handle["container"])

    retry_env = {**env, "CMDEXEC_DURABLE_DEFERRABLE": "1"} if deferrable else env
    retry = Worker(retry_env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=300)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    if not deferrable:
        assert (
            f"The docker command of an earlier try (container {handle['container']}) no longer exists"
            in output
        )
    assert task_log_lines(output) == ["1", "2", "3", "4", "5"]
    assert len(watch.names()) == 2
    assert _containers(dag_id) == []
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}
