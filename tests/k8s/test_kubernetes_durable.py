"""Pods outlive what waits for them: deferrable mode (the trigger follows the pod and owns
execution_timeout and user kills), on_kill of a running task, and a worker that dies (SIGKILL)
while its pod runs, whose retry re-attaches to that pod instead of creating a second one.

The Kubernetes API emulator and moto run in this test process; the workers of the crash test are
separate processes that reach them through the kube config and the S3 endpoint, as they would reach
a cluster and S3."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pendulum
import pytest

from tests.durable.conftest import (  # noqa: F401 - fixtures
    durable_home_fixture,
    kill_once_the_position_is_saved,
    read_xcom,
    worker_env_fixture,
)
from tests.durable.harness import Worker, task_log_lines
from tests.k8s.conftest import TEST_IMAGE
from tests.k8s.kube_world import kube_world_fixture, make_dag, moto_endpoint  # noqa: F401 - fixtures

pytestmark = pytest.mark.k8s


def test_deferrable_round_trip(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator, ShOperator

    (kube_world.project / "tasks" / "steps.py").write_text(
        "import time, digdag\n"
        "def slow(greeting):\n"
        "    print('first', greeting, flush=True)\n"
        "    time.sleep(3)\n"
        "    print('second', flush=True)\n"
        "    digdag.env.store(done=greeting)\n"
    )
    with make_dag("k8s_deferrable", kube_world.project, deferrable=True) as dag:
        step = PyOperator(task_id="step", method="tasks.steps.slow")
        after = ShOperator(task_id="after", command='echo "stored: $done"')
        step >> after
    result = run_dag(dag)

    assert result.state == "success", result.error_text("step") or result.error_text("after")
    log = result.log("step")
    assert log.count("first hello k8s") == 1
    assert log.count("second") == 1
    assert log.index("first hello k8s") < log.index("second")
    assert result.xcom("step") == {"done": "hello k8s"}
    assert "stored: hello k8s" in result.log("after")
    assert kube_world.emulator.pods_created == 2
    assert kube_world.emulator.pods() == []


def test_deferrable_timeout_deletes_the_pod(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("k8s_deferrable_timeout", kube_world.project, deferrable=True) as dag:
        ShOperator(
            task_id="slow", command="echo going to sleep; sleep 300", execution_timeout=timedelta(seconds=10)
        )
    result = run_dag(dag)

    assert result.task_states["slow"] == "failed"
    assert "execution_timeout" in result.error_text("slow")
    assert "Stopped and cleaned up the kubernetes command" in result.log("slow")
    kube_world.emulator.wait_deletions(timeout=60)
    assert kube_world.emulator.pods() == []


def _request(kube_world, task_id: str, command: tuple[str, ...], tmp_path):
    from airflow_cmdexec_provider.backends.base import CommandRequest

    io_dir = tmp_path / f"io-{task_id}"
    io_dir.mkdir()
    return CommandRequest(
        task_label=f"t.{task_id}",
        project_dir=kube_world.project,
        workdir="",
        io_dir=io_dir,
        command=command,
        labels={"dag_id": "t", "task_id": task_id, "run_id": "r", "try_number": "1", "map_index": "-1"},
    )


def _running(emulator, name: str, timeout: float = 60) -> None:
    emulator.wait_for(
        lambda: ((emulator.pod("default", name) or {}).get("status") or {}).get("phase") == "Running",
        timeout=timeout,
        what=f"pod {name} running",
    )


def test_trigger_on_kill_deletes_the_pod(kube_world, tmp_path):
    """A user marking the deferred task failed: Airflow calls the trigger's on_kill."""
    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.backends.kubernetes import KubernetesBackend
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    settings = TaskSettings(task_label="t.kill", docker={"image": TEST_IMAGE})
    backend = KubernetesBackend.from_settings(settings)
    handle = backend.submit(_request(kube_world, "kill", ("sleep", "300"), tmp_path), lambda line: None)
    _running(kube_world.emulator, handle["pod"])
    trigger = CommandTrigger(executor="kubernetes", handle=handle, settings=settings.to_json(), deadline=None)

    asyncio.run(trigger.on_kill())

    kube_world.emulator.wait_deletions(timeout=60)
    assert kube_world.emulator.pods() == []
    assert kube_world.remaining_objects() == []


def test_on_kill_of_a_running_task_deletes_the_pod(kube_world):
    """What Airflow does when a task is killed (SIGTERM handler -> on_kill) while execute() waits."""
    from airflow.sdk import DAG

    from airflow_cmdexec_provider.exceptions import CommandFailed
    from airflow_cmdexec_provider.operators import ShOperator

    with DAG("k8s_on_kill", schedule=None, start_date=datetime(2026, 1, 1)):
        op = ShOperator(
            task_id="slow",
            project_dir=str(kube_world.project),
            docker={"image": TEST_IMAGE},
            command="echo started; sleep 300",
        )
    logical_date = pendulum.datetime(2026, 1, 1, tz="UTC")
    ti = SimpleNamespace(
        dag_id=op.dag_id,
        task_id=op.task_id,
        run_id="r",
        try_number=1,
        map_index=-1,
        xcom_pull=lambda **kwargs: None,
        xcom_push=lambda **kwargs: None,
    )
    context = {
        "ti": ti,
        "params": {},
        "logical_date": logical_date,
        "run_id": "r",
        "dag_run": SimpleNamespace(run_after=logical_date),
        "dag": op.dag,
    }
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = op.execute(context)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    emulator = kube_world.emulator
    emulator.wait_for(emulator.pods, timeout=60, what="the task's pod")
    _running(emulator, emulator.pods()[0]["metadata"]["name"])
    op.on_kill()
    thread.join(300)  # a deadline for a stalled machine, not a speed the test expects

    assert not thread.is_alive(), "execute() did not return after on_kill()"
    assert isinstance(outcome.get("error"), CommandFailed), outcome
    assert "stopped by Airflow" in str(outcome["error"])
    emulator.wait_deletions(timeout=60)
    assert emulator.pods() == []
    assert kube_world.remaining_objects() == []


def test_retry_reattaches_to_the_pod(kube_world, worker_env, durable_home, tmp_path):
    emulator = kube_world.emulator
    dag_id = f"durable_k8s_{uuid.uuid4().hex[:6]}"
    env = worker_env(
        dag_id, CMDEXEC_DURABLE_DOCKER_IMAGE=TEST_IMAGE, SLOW_PAUSE="15", **kube_world.connections()
    )
    logical_date = datetime(2026, 4, 1, tzinfo=UTC).isoformat()

    first = Worker(env, logical_date, tmp_path / "first.log")
    first.wait_for("slow-line 3", timeout=180)
    kill_once_the_position_is_saved(durable_home, dag_id, first)
    [pod] = emulator.pods()
    assert pod["status"]["phase"] == "Running"  # the worker died, its pod lives on

    retry = Worker(env, logical_date, tmp_path / "retry.log", retry=True)
    output = retry.finish(timeout=300)

    assert "RETRY STATE: 2 success" in output, output[-5000:]
    assert (
        "Re-attached to the kubernetes command started by an earlier try of this task (pod "
        f"{pod['metadata']['name']})" in output
    )
    assert task_log_lines(first.output()) == ["1", "2", "3"]
    assert task_log_lines(output) == ["4", "5"]  # the rest of the log, nothing repeated
    assert emulator.pods_created == 1  # exactly one pod for the logical run
    assert read_xcom(durable_home, dag_id) == {"finished": True, "lines": 5}
    emulator.wait_deletions(timeout=60)
    assert emulator.pods() == []
    assert kube_world.remaining_objects() == []


def test_a_try_that_died_while_starting_takes_over_its_pod_and_claim(kube_world, tmp_path):
    """submit(earlier=<handle saved with starting>) finds the pod and claim that try created: no second
    pod."""
    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.backends.kubernetes import KubernetesBackend

    claim = {
        "metadata": {"name": "cmdexec-takeover"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    settings = TaskSettings(
        task_label="t.takeover", docker={"image": TEST_IMAGE}, kubernetes={"PersistentVolumeClaim": claim}
    )
    request = _request(kube_world, "takeover", ("sleep", "300"), tmp_path)
    saved: list[dict] = []
    first = KubernetesBackend.from_settings(settings)
    first.save_handle = lambda handle: saved.append(dict(handle))
    handle = first.submit(request, lambda line: None)
    starting = saved[0]  # what the journal held before anything was created
    assert starting["starting"]
    assert starting["pod"] == handle["pod"]

    lines: list[str] = []
    second = KubernetesBackend.from_settings(settings)
    taken = second.submit(request, lines.append, earlier=starting)

    assert taken["pod"] == handle["pod"]
    assert "starting" not in taken
    assert "Found PersistentVolumeClaim cmdexec-takeover created by an earlier try" in lines
    assert f"Found pod default/{handle['pod']}, created by an earlier try: following it" in lines
    assert kube_world.emulator.pods_created == 1
    second.stop(taken, "test over")
    second.cleanup(taken, lines.append)
    kube_world.emulator.wait_deletions(timeout=60)
    kube_world.emulator.wait_for(
        lambda: not kube_world.emulator.objects("persistentvolumeclaims"),
        timeout=120,
        what="the claim deleted",
    )
    assert kube_world.remaining_objects() == []


def test_a_failed_read_is_retried_and_a_vanished_pod_is_gone(kube_world, k8s_core_api, monkeypatch, tmp_path):
    import json

    import yaml

    from airflow_cmdexec_provider.backends.base import CommandGone, TaskSettings, WatchError
    from airflow_cmdexec_provider.backends.kubernetes import KubernetesBackend

    backend = KubernetesBackend.from_settings(
        TaskSettings(task_label="t.reads", docker={"image": TEST_IMAGE})
    )
    handle = backend.submit(_request(kube_world, "reads", ("sleep", "300"), tmp_path), lambda line: None)
    _running(kube_world.emulator, handle["pod"])
    # The same cluster through an API server address that does not answer.
    unreachable = yaml.safe_load(kube_world.kubeconfig.read_text())
    unreachable["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_KUBERNETES_UNREACHABLE",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(unreachable)}}),
    )
    watcher = KubernetesBackend.from_settings(
        TaskSettings(
            task_label="t.reads",
            docker={"image": TEST_IMAGE},
            kubernetes={"conn_id": "cmdexec_kubernetes_unreachable"},
        )
    )
    with pytest.raises(WatchError, match=f"reading pod {handle['pod']} failed"):
        watcher.poll(handle, lambda line: None)
    assert kube_world.emulator.pod("default", handle["pod"])["status"]["phase"] == "Running"  # never killed

    k8s_core_api.delete_namespaced_pod(handle["pod"], "default", grace_period_seconds=0)
    kube_world.emulator.wait_deletions(timeout=60)
    with pytest.raises(CommandGone, match=f"pod default/{handle['pod']} no longer exists"):
        backend.poll(handle, lambda line: None)
    backend.cleanup(handle, lambda line: None)
    assert kube_world.remaining_objects() == []


def test_an_env_holding_a_secret_stays_out_of_the_pod_spec(kube_world, tmp_path):
    """A pod spec is readable by whoever may get pods: an environment holding a ${secret:...} (of a .dig
    task) is shipped in the archive and sourced by the container script instead."""
    from dataclasses import replace

    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.backends.kubernetes import KubernetesBackend

    settings = TaskSettings(task_label="t.secret", docker={"image": TEST_IMAGE})
    backend = KubernetesBackend.from_settings(settings)
    request = replace(
        _request(kube_world, "secret", ("sh", "-c", 'echo "arrived: ${#API_TOKEN} characters"'), tmp_path),
        env={"API_TOKEN": "tok-k8s-9", "PLAIN": "x"},
        secret_env=True,
    )
    lines: list[str] = []
    handle = backend.submit(request, lines.append)
    spec = kube_world.emulator.pod("default", handle["pod"])["spec"]
    result = backend.wait(handle, lines.append)
    backend.cleanup(handle, lines.append)

    assert "tok-k8s-9" not in str(spec), spec
    names = {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    assert not {"API_TOKEN", "PLAIN"} & names, names
    assert result.exit_code == 0, lines
    assert "arrived: 9 characters" in lines
    kube_world.emulator.wait_deletions(timeout=60)
    assert kube_world.remaining_objects() == []
