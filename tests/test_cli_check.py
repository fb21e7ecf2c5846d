"""``airflow-cmdexec check``: which executor a task would use and why, and whether it is reachable.

ECS and S3 are a real moto server (``ThreadedMotoServer`` on a free loopback port) reached through
the standard mechanisms (``AWS_ENDPOINT_URL``, or the connections' endpoint extras); Docker is the
machine's Docker daemon, pinged through the docker CLI.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_support import ROOT, VENV_BIN, CmdexecHome, migrated_template

CLUSTER = "cmdexec-check"
BUCKET = "cmdexec-check-bucket"
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
        boto3.client("ecs", **kwargs).create_cluster(clusterName=CLUSTER)
        boto3.client("s3", **kwargs).create_bucket(Bucket=BUCKET)
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
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        subprocess.run([str(ROOT / "scripts" / "ensure-docker.sh")], check=True, timeout=900)


def assert_no_secrets(result) -> None:
    for secret in (ECS_SECRET, STORAGE_SECRET):
        assert secret not in result.output, result


def backend_line(result, name: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.strip().startswith(name + " "))


def test_ecs_selected_and_reachable_through_aws_endpoint_url(home: CmdexecHome) -> None:
    result = home.run("check", "--image", "python:3.12")
    assert result.returncode == 0, result
    assert (
        "Executor type: ecs (Variable cmdexec_executor_type is not set: Digdag's default); "
        "chain: ecs -> docker -> local" in result.stdout
    )
    assert "Selected: ecs" in result.stdout
    assert f"(selected) cluster '{CLUSTER}' is ACTIVE in us-east-1" in backend_line(result, "ecs")
    assert "OK" in backend_line(result, "storage") and f"s3://{BUCKET} is reachable" in result.stdout
    assert "Verdict: OK: a task with these params runs on ecs, and ecs is reachable" in result.stdout
    assert_no_secrets(result)


def test_task_definition_arn_selects_ecs_too(home: CmdexecHome) -> None:
    result = home.run(
        "check", "--task-definition-arn", "arn:aws:ecs:us-east-1:123456789012:task-definition/t:1"
    )
    assert result.returncode == 0, result
    assert "Selected: ecs" in result.stdout


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
    result = home.run("check", "--image", "python:3.12")
    assert result.returncode == 1, result
    assert "UNREACHABLE" in backend_line(result, "ecs")
    assert "cluster 'no-such-cluster' not found" in result.stdout
    assert "Verdict: FAIL: a task with these params runs on ecs, but ecs is unreachable" in result.stdout
    assert_no_secrets(result)


def test_missing_bucket_fails(home: CmdexecHome) -> None:
    other = CONFIG.replace(f"s3.bucket = {BUCKET}", "s3.bucket = no-such-bucket")
    assert home.run("import-digdag-config", home.write("other.properties", other)).returncode == 0
    result = home.run("check", "--image", "python:3.12")
    assert result.returncode == 1, result
    assert "UNREACHABLE" in backend_line(result, "storage") and "s3://no-such-bucket" in result.stdout
    assert_no_secrets(result)


def test_endpoints_from_the_connections(home: CmdexecHome, moto_url: str) -> None:
    """No AWS_ENDPOINT_URL: the ECS connection's endpoint_url extra and the storage's s3.endpoint."""
    config = CONFIG + (
        f"agent.command_executor.ecs.{CLUSTER}.endpoint_url = {moto_url}\n"
        f"agent.command_executor.ecs.temporal_storage.s3.endpoint = {moto_url}\n"
    )
    assert home.run("import-digdag-config", home.write("endpoints.properties", config)).returncode == 0
    result = home.run("check", "--image", "python:3.12", AWS_ENDPOINT_URL="")
    assert result.returncode == 0, result
    assert "OK" in backend_line(result, "ecs") and "OK" in backend_line(result, "storage")
    # and without any endpoint, the real AWS is not reachable from here
    assert home.run("import-digdag-config", home.write("plain.properties", CONFIG)).returncode == 0
    unreachable = home.run("check", "--image", "python:3.12", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    assert unreachable.returncode == 1, unreachable
    assert_no_secrets(result)
    assert_no_secrets(unreachable)


def test_half_configured_ecs_falls_back(home: CmdexecHome) -> None:
    broken = CONFIG.replace(f"agent.command_executor.ecs.{CLUSTER}.secret_access_key = {ECS_SECRET}\n", "")
    result = home.run("import-digdag-config", home.write("broken.properties", broken))
    assert result.returncode == 1  # the importer refuses half a key pair...
    assert "give both the access key id (Login) and the secret access key (Password)" in result.stderr
    # without temporal storage ECS is "not configured": the task falls back to Docker
    delete = subprocess.run(
        [str(VENV_BIN / "airflow"), "connections", "delete", "cmdexec_storage_default"],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert delete.returncode == 0, delete.stderr
    no_storage = home.run("check", "--image", "python:3.12")
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
    assert unknown.returncode == 1 and "unknown executor 'lambda'" in unknown.stderr


@pytest.mark.docker
def test_docker_selected_by_the_variable_and_reachable(home: CmdexecHome, docker_daemon: None) -> None:
    typed = CONFIG + "agent.command_executor.type = docker\n"
    assert home.run("import-digdag-config", home.write("docker.properties", typed)).returncode == 0
    result = home.run("check", "--image", "python:3.12")
    assert result.returncode == 0, result
    assert (
        "Executor type: docker (Variable cmdexec_executor_type = 'docker'); chain: docker -> local"
        in result.stdout
    )
    assert "Selected: docker" in result.stdout
    assert "(selected) the Docker daemon answers" in backend_line(result, "docker")
    assert "ecs" not in [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]


def test_unreachable_docker_daemon_fails(home: CmdexecHome) -> None:
    result = home.run(
        "check", "--image", "python:3.12", "--executor", "docker", DOCKER_HOST="tcp://127.0.0.1:9"
    )
    assert result.returncode == 1, result
    assert "UNREACHABLE" in backend_line(result, "docker")
    assert (
        "Verdict: FAIL: a task with these params runs on docker, but docker is unreachable" in result.stdout
    )


def test_invalid_connection_fails_before_the_task_runs(home: CmdexecHome) -> None:
    broken = (
        '{{"conn_type": "cmdexec_ecs", "login": "AKIABROKEN", "password": "{}", '
        '"extra": {{"cluster_name": "c", "max_retries": "many"}}}}'.format(ECS_SECRET)
    )
    result = home.run(
        "check",
        "--image",
        "python:3.12",
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
        '{{"conn_type": "cmdexec_storage", "password": "{}", '
        '"extra": {{"type": "gcs", "bucket": "g-bucket"}}}}'.format(gcs_secret)
    )
    result = home.run(
        "check",
        "--image",
        "python:3.12",
        "--storage-conn-id",
        "cmdexec_storage_gcs",
        AIRFLOW_CONN_CMDEXEC_STORAGE_GCS=storage,
    )
    assert result.returncode == 1, result
    line = backend_line(result, "storage")
    assert "UNREACHABLE" in line and "gs://g-bucket" in line and "not valid JSON" in line, result
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
    imported = home.run("import-digdag-config", home.write("shared.properties", shared))
    assert imported.returncode == 0, imported
    assert "aws_conn_id: (unset) -> 'cmdexec_aws_default'" in imported.stdout, imported
    result = home.run("check", "--image", "python:3.12")
    assert result.returncode == 0, result
    assert "OK" in backend_line(result, "ecs")
    assert_no_secrets(imported)
    assert_no_secrets(result)
    # without that connection there are no credentials: the check says so
    delete = subprocess.run(
        [str(VENV_BIN / "airflow"), "connections", "delete", "cmdexec_aws_default"],
        env=home.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert delete.returncode == 0, delete.stderr
    no_keys = home.run("check", "--image", "python:3.12")
    assert no_keys.returncode == 1, no_keys
    assert "UNREACHABLE" in backend_line(no_keys, "ecs")
