"""Deferrable mode on Docker: the wait happens in a trigger (dag.test runs triggers in line, as a
triggerer would), logs keep flowing, outputs come back without the submitting worker's disk, and
the trigger owns execution_timeout and user kills."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import airflow.sdk  # noqa: F401  # first: importing the provider's config before airflow is a circular import
import pytest
from docker_helpers import (
    DAG_PREFIX,
    IMAGE,
    TRANSPORTS,
    EngineRecorder,
    Project,
    Sink,
    backend,
    cli_command,
    inspect_container,
    leftovers_checked,
    managed_containers,
    recording_proxy,
    unique_labels,
    wrapper_calls,
    write_wrapper,
)

pytestmark = pytest.mark.docker


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    yield from leftovers_checked()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineRecorder]:
    yield from recording_proxy(monkeypatch)


@pytest.fixture
def project(tmp_path: Path) -> Path:
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


def _dag(dag_id: str, project: Path, **docker: object):
    from airflow.sdk import DAG

    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"greeting": "deferred"},
        default_args={
            "project_dir": str(project),
            "docker": {"image": IMAGE, **docker},
            "deferrable": True,
            "retries": 0,
        },
    )


@pytest.mark.usefixtures("no_leftovers")
@pytest.mark.parametrize("kind", sorted(TRANSPORTS))
def test_deferrable_docker_run_streams_logs_and_collects_outputs(project, run_dag, kind):
    from airflow_cmdexec_provider.operators import PyOperator, ShOperator

    dag_id = f"{DAG_PREFIX}_deferrable_{kind}"
    with _dag(dag_id, project, **TRANSPORTS[kind]) as dag:
        step = PyOperator(task_id="step", method="tasks.steps.slow")
        after = ShOperator(task_id="after", command='echo "stored: $done"')
        step >> after
    result = run_dag(dag)

    assert result.state == "success", result.error_text("step") or result.error_text("after")
    log = result.log("step")
    assert "Started container" in log
    assert log.index("first deferred") < log.index("second")  # both lines, in order, once
    assert log.count("first deferred") == 1
    assert log.count("second") == 1
    assert result.xcom("step") == {"done": "deferred"}
    assert "stored: deferred" in result.log("after")
    assert managed_containers(dag_id) == []


@pytest.mark.usefixtures("no_leftovers")
def test_a_deferred_task_completes_on_other_hosts(project, run_dag, tmp_path, monkeypatch):
    """review H5: the trigger and the resumed task run on hosts that share only the Docker daemon.

    Here: the worker's temp dir is wiped of everything the submitting worker made (``cmdexec-*``)
    before the trigger starts, and the task resumes with another temp dir. The outputs still come
    back: they are in the container, not on the worker's disk."""
    from airflow_cmdexec_provider.operators import PyOperator
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    worker_tmp, other_tmp = tmp_path / "worker-tmp", tmp_path / "other-host-tmp"
    worker_tmp.mkdir()
    other_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(worker_tmp))
    run = CommandTrigger.run

    async def on_another_host(self):
        for path in worker_tmp.glob("cmdexec-*"):
            await asyncio.to_thread(shutil.rmtree, path)
        monkeypatch.setattr(tempfile, "tempdir", str(other_tmp))
        async for event in run(self):
            yield event

    monkeypatch.setattr(CommandTrigger, "run", on_another_host)
    dag_id = f"{DAG_PREFIX}_other_hosts"
    with _dag(dag_id, project) as dag:
        PyOperator(task_id="step", method="tasks.steps.slow")
    result = run_dag(dag)
    assert result.state == "success", result.error_text("step")
    assert result.xcom("step") == {"done": "deferred"}
    assert managed_containers(dag_id) == []


@pytest.mark.usefixtures("no_leftovers")
def test_deferrable_docker_timeout_stops_and_removes_the_container(project, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    dag_id = f"{DAG_PREFIX}_deferrable_timeout"
    with _dag(dag_id, project) as dag:
        ShOperator(
            task_id="slow",
            command="trap 'exit 143' TERM\necho going to sleep\nsleep 300 &\nwait",
            execution_timeout=timedelta(seconds=15),
        )
    result = run_dag(dag)

    assert result.task_states["slow"] == "failed"
    assert "execution_timeout" in result.error_text("slow")
    assert "going to sleep" in result.log("slow")
    assert "Stopped and cleaned up the docker command" in result.log("slow")
    assert managed_containers(dag_id) == []


@pytest.mark.usefixtures("no_leftovers")
def test_trigger_on_kill_stops_and_removes_the_container(tmp_path):
    """A user marking the deferred task failed: Airflow calls the trigger's on_kill."""
    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    proj = Project.create(tmp_path)
    labels = unique_labels("onkill")
    handle = backend().submit(proj.sh_request("sleep 300", labels=labels), Sink())
    assert inspect_container(handle["container"])["State"]["Running"]
    settings = TaskSettings(task_label="t.kill", docker={"image": IMAGE}).to_json()
    trigger = CommandTrigger(executor="docker", handle=handle, settings=settings, deadline=None)
    asyncio.run(trigger.on_kill())
    assert inspect_container(handle["container"]) is None


REGISTRY = "registry.invalid:5000"


@pytest.fixture
def registry_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    password = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_TEST_REGISTRY",
        json.dumps(
            {
                "conn_type": "docker",
                "host": "registry.invalid",
                "port": 5000,
                "login": "robot",
                "password": password,
            }
        ),
    )
    return password


def _registry_dag(dag_id: str, project: Path, image: str, **docker: object):
    from airflow_cmdexec_provider.operators import ShOperator

    with _dag(dag_id, project, image=image, docker_conn_id="cmdexec_test_registry", **docker) as dag:
        ShOperator(task_id="private", command="true")
    return dag


@pytest.mark.usefixtures("no_leftovers")
def test_registry_login_is_used_on_the_deferrable_path_api(project, run_dag, recorder, registry_connection):
    """review M9: the private image is pulled with the login of docker.docker_conn_id (no registry
    answers here, so the task then fails saying so)."""
    image = f"{REGISTRY}/cmdexec/private:{uuid.uuid4().hex[:8]}"
    result = run_dag(_registry_dag(f"{DAG_PREFIX}_registry_api", project, image))
    assert result.task_states == {"private": "failed"}
    assert f"the image {image} is not on this Docker host and could not be pulled" in result.error_text(
        "private"
    )
    (pull,) = [r for r in recorder.requests if r.method == "POST" and "/images/create" in r.path]
    auth = json.loads(base64.urlsafe_b64decode(pull.headers["x-registry-auth"] + "=="))
    assert auth == {"username": "robot", "password": registry_connection, "serveraddress": REGISTRY}
    assert registry_connection not in result.log("private") + result.error_text("private")


@pytest.mark.usefixtures("no_leftovers")
def test_registry_login_is_used_on_the_deferrable_path_cli(project, run_dag, tmp_path, registry_connection):
    calls, configs = tmp_path / "calls.log", tmp_path / "configs.log"
    copy_config = f'if [ "$1" = "--config" ]; then cat "$2/config.json" >> \'{configs}\'; fi\n'
    cli = write_wrapper(tmp_path / "docker-wrapper", calls, extra=copy_config)
    image = f"{REGISTRY}/cmdexec/private:{uuid.uuid4().hex[:8]}"
    result = run_dag(_registry_dag(f"{DAG_PREFIX}_registry_cli", project, image, docker=str(cli)))
    assert result.task_states == {"private": "failed"}
    assert f"the image {image} is not on this Docker host and could not be pulled" in result.error_text(
        "private"
    )
    (create,) = [c for c in wrapper_calls(calls) if cli_command(c) == "create"]
    assert create[0] == "--config"
    expected = base64.b64encode(f"robot:{registry_connection}".encode()).decode()
    assert json.loads(configs.read_text()) == {"auths": {REGISTRY: {"auth": expected}}}
    assert registry_connection not in result.log("private") + result.error_text("private")
