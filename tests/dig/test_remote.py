"""A loaded workflow on the Docker executor and on ECS (moto + the ECS emulator): same results as locally.

Kept to one workflow each (sh> -> py> store -> rb> read/store -> sh> report): the backends have
their own suites; these prove that what the loader builds (docker from _export, evaluated
``${image}``, project_dir, stores, Digdag's params) travels to containers unchanged.
"""

from __future__ import annotations

import pytest

from tests.ecs.conftest import TEST_IMAGE, ecs_aws_env, ecs_emulator, ecs_emulator_session  # noqa: F401
from tests.ecs.test_ecs_roundtrip import (
    BUCKET,
    CLUSTER,
    LOG_GROUP,
    register_task_definition,
    remaining_objects,
    set_connections,
)

EXPECTED_REPORT = "total=6 note=from python doubled=12"


def forget_task_definition_cache() -> None:
    """Every test starts from a fresh moto, so the image -> task definition cache must be fresh too."""
    from airflow.models import Variable

    from airflow_cmdexec_provider.backends.ecs import VariableTaskDefinitionCache

    Variable.delete(VariableTaskDefinitionCache.variable)


def prepare_ecs(emulator, monkeypatch):
    """A bucket, log group, cluster and task definition on a fresh emulator, and the connections to
    them; returns the S3 and ECS clients."""
    s3 = emulator.boto3_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    emulator.boto3_client("logs").create_log_group(logGroupName=LOG_GROUP)
    ecs = emulator.boto3_client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    register_task_definition(ecs, "cmdexec-dig", tags=True)
    set_connections(monkeypatch, emulator.endpoint_url)
    monkeypatch.delenv("AIRFLOW_VAR_CMDEXEC_EXECUTOR_TYPE", raising=False)
    forget_task_definition_cache()
    return s3, ecs


def containers_of(dag_id: str) -> list[str]:
    from docker_helpers import docker

    listed = docker(
        "ps", "--all", "--filter", f"label=io.github.cmdexec.dag_id={dag_id}", "--format", "{{.Names}}"
    )
    return [line for line in listed.stdout.splitlines() if line.strip()]


@pytest.mark.docker
def test_workflow_on_docker(project, run_workflow, monkeypatch):
    from docker_helpers import require_docker

    require_docker()
    for conn in ("CMDEXEC_ECS_DEFAULT", "CMDEXEC_STORAGE_DEFAULT"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn}", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_CMDEXEC_EXECUTOR_TYPE", "docker")
    result = run_workflow(
        project("remote"), "remote", dag_id_prefix="dig_docker_", run_conf={"image": TEST_IMAGE}
    )
    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    for task_id in ("where", "compute", "use", "report"):
        assert "runs on the docker executor" in result.log(task_id)
    assert "container=yes session=" in result.log("where")
    assert "rb> total=6 note=from python" in result.log("use")
    assert EXPECTED_REPORT in result.log("report")
    assert containers_of("dig_docker_remote") == []


@pytest.mark.ecs
def test_workflow_on_ecs(project, run_workflow, ecs_emulator, ecs_aws_env, monkeypatch, airflow_db):  # noqa: F811
    s3, _ = prepare_ecs(ecs_emulator, monkeypatch)
    result = run_workflow(
        project("remote"), "remote", dag_id_prefix="dig_ecs_", run_conf={"image": TEST_IMAGE}
    )
    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    for task_id in ("where", "compute", "use", "report"):
        assert "runs on the ecs executor" in result.log(task_id)
    assert "container=yes session=" in result.log("where")
    assert EXPECTED_REPORT in result.log("report")
    assert remaining_objects(s3) == []


@pytest.mark.ecs
def test_a_secret_in_env_stays_out_of_the_ecs_overrides(
    project,
    run_workflow,
    ecs_emulator,  # noqa: F811
    ecs_aws_env,  # noqa: F811
    monkeypatch,
    airflow_db,
):
    """ECS RunTask overrides are readable with ecs:DescribeTasks and in CloudTrail: an environment
    holding a ${secret:...} goes in an S3 environment file instead (deleted after the task)."""
    from airflow.models import Variable

    s3, ecs = prepare_ecs(ecs_emulator, monkeypatch)
    Variable.set("cmdexec_secret.api.token", "tok-3-of-ecs")
    try:
        result = run_workflow(
            project("remote"), "secret_env", dag_id_prefix="dig_ecs_", run_conf={"image": TEST_IMAGE}
        )
    finally:
        Variable.delete("cmdexec_secret.api.token")
    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    assert "runs on the ecs executor" in result.log("use")
    assert "holds a secret, kept out of the overrides" in result.log("use")
    arns = ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
    arns += ecs.list_tasks(cluster=CLUSTER)["taskArns"]
    tasks = ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
    assert tasks, "the task's RunTask is what this test reads"
    for task in tasks:
        overrides = str(task.get("overrides"))
        assert "environment" in overrides, overrides  # the overrides are there, with the URLs only
        assert "tok-3-of-ecs" not in overrides, overrides
    assert remaining_objects(s3) == []
