"""``airflow-cmdexec check``: which executor a task would use and why, and whether it is reachable.

ECS and S3 are a real moto server (``ThreadedMotoServer`` on a free loopback port) reached through
the standard mechanisms (``AWS_ENDPOINT_URL``, or the connections' endpoint extras); Docker is the
machine's Docker daemon, pinged through the docker CLI; Kubernetes is the project's API emulator
(``tests/k8s_emulator``), reached through the kube config of the ``kubernetes`` connection.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from test_cli_support import ROOT, CmdexecHome, migrated_template

CLUSTER = "cmdexec-check"
BUCKET = "cmdexec-check-bucket"
OUT_BUCKET = "cmdexec-check-out-bucket"
IMAGE = "python:3.12"  # the task definition registered in moto is tagged with it
ECS_SECRET = "check-ecs-Secret-77aa"
STORAGE_SECRET = "check-storage-Secret-88bb"

CONFIG = f"""\
agent.command_executor.ecs.name = {CLUSTER}
agent.command_executor.ecs.{CLUSTER}.region = us-east-1
agent.command_executor.ecs.{CLUSTER}.access_key_id = AKIACHECKECS
agent.command_executor.ecs.{CLUSTER}.secret_access_key = {ECS_SECRET}
agent.command_executor.ecs.temporal_storage.type = s3
agent.command_executor.ecs.temporal_storage.s3.bucket = {BUCKET}
agent.command_executor.ecs.temporal_storage.s3.region = us-east-1
agent.command_executor.ecs.temporal_storage.s3.path-style-access = true
agent.command_executor.ecs.temporal_storage.s3.credentials.access-key-id = AKIACHECKS3
agent.command_executor.ecs.temporal_storage.s3.credentials.secret-access-key = {STORAGE_SECRET}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        import boto3

        kwargs = {
            "endpoint_url": url,
            "region_name": "us-east-1",
            "aws_access_key_id": "x",
            "aws_secret_access_key": "x",
        }
        ecs = boto3.client("ecs", **kwargs)
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.register_task_definition(
            family="cmdexec-check-runner",
            containerDefinitions=[{"name": "runner", "image": IMAGE, "memory": 128}],
            tags=[{"key": "digdag.docker.image", "value": IMAGE}],
        )
        s3 = boto3.client("s3", **kwargs)
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=OUT_BUCKET)
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def configured_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = CmdexecHome(tmp_path_factory.mktemp("cmdexec-check"), migrated_template(tmp_path_factory))
    result = home.run("import-digdag-config", home.write("digdag.properties", CONFIG))
    assert result.returncode == 0, result
    return home.path


@pytest.fixture
def home(tmp_path: Path, configured_template: Path, moto_url: str) -> CmdexecHome:
    home = CmdexecHome(tmp_path / "home", configured_template)
    home.extra_env = {"AWS_ENDPOINT_URL": moto_url, "AWS_EC2_METADATA_DISABLED": "true"}
    return home


@pytest.fixture(scope="module")
def docker_daemon() -> None:
    """The machine's Docker daemon (scripts/ensure-docker.sh starts it when it is not running)."""
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False).returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "ensure-docker.sh")], check=True, timeout=900)


def delete_connection(home: CmdexecHome, conn_id: str) -> None:
    """Remove a connection from the home's metadata DB: a step before the command under test, done
    with sqlite3 (``airflow connections delete`` would take a 4-6 s Airflow start-up each time)."""
    with closing(sqlite3.connect(home.path / "airflow.db")) as db, db:
        deleted = db.execute("DELETE FROM connection WHERE conn_id = ?", (conn_id,)).rowcount
    assert deleted == 1, f"no connection {conn_id!r} to delete"


def assert_no_secrets(result) -> None:
    for secret in (ECS_SECRET, STORAGE_SECRET):
        assert secret not in result.output, result


def backend_line(result, name: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.strip().startswith(name + " "))


TASK_DEFINITION_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/cmdexec-check-runner:1"


def test_ecs_selected_and_reachable_through_aws_endpoint_url(home: CmdexecHome) -> None:
    result = home.run("check", "--image", IMAGE)
    assert result.returncode == 0, result
    assert (
        "Executor type: ecs (Variable cmdexec_executor_type is not set: Digdag's default); "
        "chain: ecs -> docker -> local" in result.stdout
    )
    assert "Selected: ecs" in result.stdout
    assert f"(selected) cluster '{CLUSTER}' is ACTIVE in us-east-1" in backend_line(result, "ecs")
    assert "OK" in backend_line(result, "storage")
    assert f"s3://{BUCKET} is reachable" in result.stdout
    # the task definition a task with this image runs, found by the backend's own lookup (review L17)
    assert backend_line(result, "task-def").split()[1:3] == ["OK", TASK_DEFINITION_ARN], result
    assert f"the newest ACTIVE one tagged digdag.docker.image='{IMAGE}'" in backend_line(result, "task-def")
    assert (
        f"Verdict: OK: a task with these params runs on ecs with task definition {TASK_DEFINITION_ARN}, "
        "and ecs and storage are reachable" in result.stdout
    )
    assert_no_secrets(result)


def test_an_image_without_a_tagged_task_definition_fails(home: CmdexecHome) -> None:
    """Review L17: the first failure most users hit is found by check, not by the first task."""
    result = home.run("check", "--image", "untagged/image:1")
    assert result.returncode == 1, result
    assert "Selected: ecs" in result.stdout
    assert "OK" in backend_line(result, "ecs")
    assert "OK" in backend_line(result, "storage")
    assert "NOT FOUND" in backend_line(result, "task-def")
    assert (
        "Verdict: FAIL: a task with these params runs on ecs, but task-def is not found: no ACTIVE ECS task "
        "definition is tagged digdag.docker.image='untagged/image:1'; register one with that tag, or set "
        "ecs.task_definition_arn, or run this task with executor='docker'" in result.stdout
    ), result
    assert_no_secrets(result)


def test_task_definition_arn_selects_ecs_too(home: CmdexecHome) -> None:
    result = home.run("check", "--task-definition-arn", TASK_DEFINITION_ARN)
    assert result.returncode == 0, result
    assert "Selected: ecs" in result.stdout
    line = backend_line(result, "task-def")
    assert f"OK             {TASK_DEFINITION_ARN} (ecs.task_definition_arn)" in line, result
    missing = TASK_DEFINITION_ARN.replace("runner:1", "runner:9")
    unknown = home.run("check", "--task-definition-arn", missing)
    assert unknown.returncode == 1, unknown
    assert f"but task-def is not found: ecs.task_definition_arn '{missing}' cannot be used" in unknown.stdout


def test_without_params_the_task_runs_locally_and_ecs_is_still_checked(home: CmdexecHome) -> None:
    result = home.run("check")
    assert result.returncode == 0, result
    assert "no docker, ecs or kubernetes params: only the local executor can run this task" in result.stdout
    assert "Selected: local" in result.stdout
    assert "OK" in backend_line(result, "ecs")  # informational: the cluster itself is fine
    assert "Verdict: OK: a task with these params runs on local" in result.stdout


def test_unreachable_cluster_fails(home: CmdexecHome) -> None:
    other = CONFIG.replace(f"ecs.name = {CLUSTER}", "ecs.name = no-such-cluster").replace(
        f"ecs.{CLUSTER}.", "ecs.no-such-cluster."
    )
    assert home.run("import-digdag-config", home.write("other.properties", other)).returncode == 0
    result = home.run("check", "--image", IMAGE)
    assert result.returncode == 1, result
    assert "UNREACHABLE" in backend_line(result, "ecs")
    assert "cluster 'no-such-cluster' not found" in result.stdout
    assert "Verdict: FAIL: a task with these params runs on ecs, but ecs is unreachable" in result.stdout
    assert_no_secrets(result)


def test_missing_bucket_fails(home: CmdexecHome) -> None:
    other = CONFIG.replace(f"s3.bucket = {BUCKET}", "s3.bucket = no-such-bucket")
    assert home.run("import-digdag-config", home.write("other.properties", other)).returncode == 0
    result = home.run("check", "--image", IMAGE)
    assert result.returncode == 1, result
    assert "UNREACHABLE" in backend_line(result, "storage")
    assert "s3://no-such-bucket" in result.stdout
    assert_no_secrets(result)


def test_endpoints_from_the_connections(home: CmdexecHome, moto_url: str) -> None:
    """No AWS_ENDPOINT_URL: the ECS connection's endpoint_url extra and the storage's s3.endpoint."""
    config = CONFIG + (
        f"agent.command_executor.ecs.{CLUSTER}.endpoint_url = {moto_url}\n"
        f"agent.command_executor.ecs.temporal_storage.s3.endpoint = {moto_url}\n"
    )
    assert home.run("import-digdag-config", home.write("endpoints.properties", config)).returncode == 0
    result = home.run("check", "--image", IMAGE, AWS_ENDPOINT_URL="")
    assert result.returncode == 0, result
    assert "OK" in backend_line(result, "ecs")
    assert "OK" in backend_line(result, "storage")
    # and without any endpoint, the real AWS is not reachable from here. A re-import leaves the fields
    # the file does not set as they are (review L18), so the connections are removed first.
    for conn_id in ("cmdexec_ecs_default", "cmdexec_storage_default"):
        delete_connection(home, conn_id)
    assert home.run("import-digdag-config", home.write("plain.properties", CONFIG)).returncode == 0
    unreachable = home.run("check", "--image", IMAGE, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert unreachable.returncode == 1, unreachable
    assert_no_secrets(result)
    assert_no_secrets(unreachable)


def test_half_configured_ecs_falls_back(home: CmdexecHome) -> None:
    broken = CONFIG.replace(f"agent.command_executor.ecs.{CLUSTER}.secret_access_key = {ECS_SECRET}\n", "")
    # A re-import keeps the stored secret the file does not set (review L18): start without the connection.
    delete_connection(home, "cmdexec_ecs_default")
    result = home.run("import-digdag-config", home.write("broken.properties", broken))
    assert result.returncode == 1  # the importer refuses half a key pair...
    assert "give both the access key id (Login) and the secret access key (Password)" in result.stderr
    assert home.run("import-digdag-config", home.write("full.properties", CONFIG)).returncode == 0
    # without temporal storage ECS is "not configured": the task falls back to Docker
    delete_connection(home, "cmdexec_storage_default")
    no_storage = home.run("check", "--image", IMAGE)
    assert no_storage.returncode == 0, no_storage  # ECS not configured: falls back to Docker
    assert (
        "ecs: skipped, not configured: no temporal storage connection 'cmdexec_storage_default'"
        in no_storage.stdout
    )
    assert "Selected: docker" in no_storage.stdout


def test_forced_executor_that_is_not_configured(home: CmdexecHome) -> None:
    result = home.run("check", "--executor", "docker")
    assert result.returncode == 1, result
    assert "executor 'docker' was forced but is not configured" in result.stdout
    unknown = home.run("check", "--executor", "lambda")
    assert unknown.returncode == 1
    assert "unknown executor 'lambda'" in unknown.stderr


@pytest.mark.docker
def test_docker_selected_by_the_variable_and_reachable(home: CmdexecHome, docker_daemon: None) -> None:
    typed = CONFIG + "agent.command_executor.type = docker\n"
    assert home.run("import-digdag-config", home.write("docker.properties", typed)).returncode == 0
    result = home.run("check", "--image", IMAGE)
    assert result.returncode == 0, result
    assert (
        "Executor type: docker (Variable cmdexec_executor_type = 'docker'); chain: docker -> local"
        in result.stdout
    )
    assert "Selected: docker" in result.stdout
    assert "(selected) the Docker daemon answers" in backend_line(result, "docker")
    assert "ecs" not in [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]


def test_unreachable_docker_daemon_fails(home: CmdexecHome) -> None:
    result = home.run("check", "--image", IMAGE, "--executor", "docker", DOCKER_HOST="tcp://127.0.0.1:9")
    assert result.returncode == 1, result
    assert "UNREACHABLE" in backend_line(result, "docker")
    assert (
        "Verdict: FAIL: a task with these params runs on docker, but docker is unreachable" in result.stdout
    )


def test_invalid_connection_fails_before_the_task_runs(home: CmdexecHome) -> None:
    broken = (
        f'{{"conn_type": "cmdexec_ecs", "login": "AKIABROKEN", "password": "{ECS_SECRET}", '
        '"extra": {"cluster_name": "c", "max_retries": "many"}}'
    )
    result = home.run(
        "check",
        "--image",
        IMAGE,
        "--ecs-conn-id",
        "cmdexec_ecs_broken",
        AIRFLOW_CONN_CMDEXEC_ECS_BROKEN=broken,
    )
    assert result.returncode == 1, result
    assert "Verdict: FAIL: a task with these params fails before it runs" in result.stdout
    assert "'extra.max_retries' (Digdag max_retries) must be a whole number" in result.stdout
    assert "INVALID" in backend_line(result, "ecs")
    assert_no_secrets(result)


def test_gcs_storage_problem_is_reported_without_the_credentials(home: CmdexecHome) -> None:
    gcs_secret = "not-json-gcs-Secret-99cc"
    storage = (
        f'{{"conn_type": "cmdexec_storage", "password": "{gcs_secret}", '
        '"extra": {"type": "gcs", "bucket": "g-bucket"}}'
    )
    result = home.run(
        "check",
        "--image",
        IMAGE,
        "--storage-conn-id",
        "cmdexec_storage_gcs",
        AIRFLOW_CONN_CMDEXEC_STORAGE_GCS=storage,
    )
    assert result.returncode == 1, result
    line = backend_line(result, "storage")
    assert "UNREACHABLE" in line, result
    assert "gs://g-bucket" in line, result
    assert "not valid JSON" in line, result
    assert gcs_secret not in result.output


def test_cluster_credentials_from_the_shared_aws_connection(home: CmdexecHome) -> None:
    """ecs.__default_config__ keys -> the Amazon provider's `aws` connection, found in the metadata DB.

    The environment has no AWS credentials at all (and no instance metadata), so reaching the
    cluster proves the keys came from the `aws` connection named by the cluster's aws_conn_id."""
    shared = CONFIG.replace(
        f"agent.command_executor.ecs.{CLUSTER}.access_key_id = AKIACHECKECS\n"
        f"agent.command_executor.ecs.{CLUSTER}.secret_access_key = {ECS_SECRET}\n",
        "agent.command_executor.ecs.__default_config__.access_key_id = AKIASHARED\n"
        f"agent.command_executor.ecs.__default_config__.secret_access_key = {ECS_SECRET}\n",
    )
    # A re-import keeps the cluster's own keys the file no longer sets (review L18): start without them.
    delete_connection(home, "cmdexec_ecs_default")
    imported = home.run("import-digdag-config", home.write("shared.properties", shared))
    assert imported.returncode == 0, imported
    assert "aws_conn_id='cmdexec_aws_default'" in imported.stdout, imported
    result = home.run("check", "--image", IMAGE)
    assert result.returncode == 0, result
    assert "OK" in backend_line(result, "ecs")
    assert_no_secrets(imported)
    assert_no_secrets(result)
    # without that connection there are no credentials: the check says so
    delete_connection(home, "cmdexec_aws_default")
    no_keys = home.run("check", "--image", IMAGE)
    assert no_keys.returncode == 1, no_keys
    assert "UNREACHABLE" in backend_line(no_keys, "ecs")


# -- Kubernetes -------------------------------------------------------------------------------------
OUT_SECRET = "check-out-storage-Secret-55dd"
WRONG_TOKEN = "check-wrong-Token-66ee"


@pytest.fixture(scope="module")
def kube_emulator() -> Iterator[Any]:
    """The project's Kubernetes API emulator (no pod is created by a check: only the API answers)."""
    from tests.k8s_emulator import KubeEmulator

    with KubeEmulator() as emulator:
        yield emulator


def kubernetes_env(emulator: Any, moto_url: str, kube_extra: dict[str, Any]) -> dict[str, str]:
    """Kubernetes is the executor type; its cluster connection (``kube_extra``: how it reaches the
    cluster) sends the output archive to a second storage connection, the input one to the default."""
    extra = {
        "cmdexec_poll_interval": 1,
        "cmdexec_storage_out_conn_id": "cmdexec_storage_check_out",
        **kube_extra,
    }
    out_storage = {
        "conn_type": "cmdexec_storage",
        "login": "AKIACHECKOUT",
        "password": OUT_SECRET,
        "extra": {"type": "s3", "bucket": OUT_BUCKET, "endpoint": moto_url, "path_style_access": True},
    }
    return {
        "AIRFLOW_VAR_CMDEXEC_EXECUTOR_TYPE": "kubernetes",
        "AIRFLOW_CONN_CMDEXEC_KUBERNETES_DEFAULT": json.dumps({"conn_type": "kubernetes", "extra": extra}),
        "AIRFLOW_CONN_CMDEXEC_STORAGE_CHECK_OUT": json.dumps(out_storage),
    }


def assert_no_kubernetes_secrets(result, emulator: Any) -> None:
    assert_no_secrets(result)
    for secret in (emulator.token, WRONG_TOKEN, OUT_SECRET):
        assert secret not in result.output, result


def probes(emulator: Any) -> list[str]:
    """The API calls the emulator answered, as ``METHOD path``."""
    return [f"{r.method} {r.path}" for r in emulator.requests]


def test_kubernetes_selected_and_reachable(home: CmdexecHome, kube_emulator: Any, moto_url: str) -> None:
    """The kube config's content in extra 'kube_config' (its token masked); two storage connections."""
    kube_config = json.dumps(kube_emulator.kubeconfig())
    env = kubernetes_env(kube_emulator, moto_url, {"kube_config": kube_config})
    result = home.run("check", "--image", IMAGE, **env)
    assert result.returncode == 0, result
    assert (
        "Executor type: kubernetes (Variable cmdexec_executor_type = 'kubernetes'); "
        "chain: kubernetes -> docker -> local" in result.stdout
    )
    assert "Selected: kubernetes" in result.stdout
    assert (
        f"OK             (selected) the API server at {kube_emulator.url} accepts the credentials of "
        "the kube config of extra 'kube_config'; namespace 'default' exists and its pods can be listed"
        in backend_line(result, "kubernetes")
    ), result
    storage_in, storage_out = backend_line(result, "storage-in"), backend_line(result, "storage-out")
    assert f"connection 'cmdexec_storage_default': s3://{BUCKET} is reachable" in storage_in
    assert f"connection 'cmdexec_storage_check_out': s3://{OUT_BUCKET} is reachable" in storage_out
    assert (
        "Verdict: OK: a task with these params runs on kubernetes in namespace 'default', and kubernetes, "
        "storage-in and storage-out are reachable" in result.stdout
    ), result
    called = set(probes(kube_emulator))
    assert {"GET /api/v1/namespaces/default/pods", "GET /api/v1/namespaces/default"} <= called
    assert_no_kubernetes_secrets(result, kube_emulator)


def test_unreachable_api_server(home: CmdexecHome, kube_emulator: Any, moto_url: str) -> None:
    kube_config = kube_emulator.kubeconfig()
    kube_config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    env = kubernetes_env(kube_emulator, moto_url, {"kube_config": json.dumps(kube_config)})
    result = home.run("check", "--image", IMAGE, **env)
    assert result.returncode == 1, result
    line = backend_line(result, "kubernetes")
    assert "UNREACHABLE" in line, result
    assert "the API server at http://127.0.0.1:9 does not answer (" in line, result
    assert line.endswith("): fix the server in the kube config of extra 'kube_config'"), result
    assert (
        "Verdict: FAIL: a task with these params runs on kubernetes, but kubernetes is unreachable: "
        in result.stdout
    )
    assert_no_kubernetes_secrets(result, kube_emulator)


def test_wrong_token(home: CmdexecHome, kube_emulator: Any, moto_url: str, tmp_path: Path) -> None:
    """A kube config file (extra 'kube_config_path') whose token the API server does not accept."""
    path = kube_emulator.write_kubeconfig(tmp_path / "kubeconfig", token=WRONG_TOKEN)
    env = kubernetes_env(kube_emulator, moto_url, {"kube_config_path": str(path)})
    result = home.run("check", "--image", IMAGE, **env)
    assert result.returncode == 1, result
    assert (
        f"UNREACHABLE    (selected) the API server at {kube_emulator.url} rejected the credentials of "
        f"the kube config of extra 'kube_config_path' ({path}) (401 Unauthorized): fix the user's token there"
        in backend_line(result, "kubernetes")
    ), result
    assert "runs on kubernetes, but kubernetes is unreachable" in result.stdout
    assert_no_kubernetes_secrets(result, kube_emulator)


def test_missing_namespace(home: CmdexecHome, kube_emulator: Any, moto_url: str, tmp_path: Path) -> None:
    path = kube_emulator.write_kubeconfig(tmp_path / "kubeconfig")
    from_flag = home.run(
        "check",
        "--image",
        IMAGE,
        "--namespace",
        "no-such-ns",
        **kubernetes_env(kube_emulator, moto_url, {"kube_config_path": str(path)}),
    )
    assert from_flag.returncode == 1, from_flag
    assert "Task params: docker.image='python:3.12', kubernetes.namespace='no-such-ns'" in from_flag.stdout
    assert (
        f"Verdict: FAIL: a task with these params runs on kubernetes, but kubernetes is invalid: namespace "
        f"'no-such-ns' does not exist at {kube_emulator.url}: fix --namespace (the task's "
        "kubernetes.namespace), or create the namespace" in from_flag.stdout
    ), from_flag
    from_connection = home.run(
        "check",
        "--image",
        IMAGE,
        **kubernetes_env(kube_emulator, moto_url, {"kube_config_path": str(path), "namespace": "batch"}),
    )
    assert from_connection.returncode == 1, from_connection
    assert (
        "namespace 'batch' does not exist at "
        f"{kube_emulator.url}: fix extra 'namespace' of connection 'cmdexec_kubernetes_default'"
        in backend_line(from_connection, "kubernetes")
    ), from_connection
    # a task that names a cluster connection that does not exist never runs elsewhere
    other = home.run(
        "check",
        "--image",
        IMAGE,
        "--kubernetes-conn-id",
        "cmdexec_kubernetes_nope",
        **kubernetes_env(kube_emulator, moto_url, {"kube_config_path": str(path)}),
    )
    assert other.returncode == 1, other
    assert (
        "Verdict: FAIL: a task with these params fails before it runs: kubernetes: the Kubernetes connection "
        "'cmdexec_kubernetes_nope' does not exist" in other.stdout
    ), other
    assert_no_kubernetes_secrets(from_flag, kube_emulator)
    assert_no_kubernetes_secrets(from_connection, kube_emulator)
