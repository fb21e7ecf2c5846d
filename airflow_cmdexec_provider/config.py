"""Typed configuration of the backends, loaded from task params, Airflow Variables and Connections.

Only this module and ``hooks/`` read Variables and Connections; backends receive the dataclasses.
Every error names the Digdag key and where it lives in Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError

EXECUTOR_TYPE_VARIABLE = "cmdexec_executor_type"


def executor_type() -> str | None:
    """Digdag ``agent.command_executor.type``: Airflow Variable ``cmdexec_executor_type`` (default ``ecs``)."""
    from airflow.sdk import Variable

    return Variable.get(EXECUTOR_TYPE_VARIABLE, default=None)


def _as_bool(value: Any, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise CmdExecConfigError(f"{where}: {key} must be true or false, got {value!r}")


def _as_str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise CmdExecConfigError(
            f"{where}: {key} must be a list of strings (as in Digdag, e.g. [\"-m\", \"1G\"]), got {value!r}"
        )
    if not all(isinstance(v, str) for v in value):
        raise CmdExecConfigError(f"{where}: every item of {key} must be a string, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class DockerConfig:
    """Digdag ``docker.*`` task params (spec §3 and §5)."""

    image: str
    docker: str = "docker"
    run_options: tuple[str, ...] = ()
    pull_always: bool = False
    selinux: bool = False
    build: tuple[str, ...] = ()
    build_options: tuple[str, ...] = ()
    docker_conn_id: str | None = None
    task_label: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


DOCKER_KEYS = {"image", "docker", "run_options", "pull_always", "selinux", "build", "build_options",
               "docker_conn_id"}


def docker_config(docker: Mapping[str, Any] | None, task_label: str) -> DockerConfig:
    """Validate the task's ``docker`` params. Absent means Docker is not configured for this task."""
    if docker is None:
        raise BackendNotConfigured("the task has no docker params (docker={'image': ...})")
    where = f"Task {task_label}: docker"
    if not isinstance(docker, Mapping):
        raise CmdExecConfigError(f"{where} must be a dict of Digdag docker.* keys, got {type(docker).__name__}")
    image = docker.get("image")
    if not image or not isinstance(image, str):
        raise CmdExecConfigError(
            f"{where}.image is required but not set: give the image to run, e.g. docker={{'image': 'python:3.12'}}"
        )
    cli = docker.get("docker", "docker")
    if not isinstance(cli, str) or not cli:
        raise CmdExecConfigError(f"{where}.docker must be the path of the docker CLI, got {cli!r}")
    conn_id = docker.get("docker_conn_id")
    if conn_id is not None and not isinstance(conn_id, str):
        raise CmdExecConfigError(f"{where}.docker_conn_id must be an Airflow connection id, got {conn_id!r}")
    build = docker.get("build")
    if isinstance(build, str):
        build = [build]
    return DockerConfig(
        image=image,
        docker=cli,
        run_options=_as_str_list(docker.get("run_options"), "docker.run_options", where),
        pull_always=_as_bool(docker.get("pull_always", False), "docker.pull_always", where),
        selinux=_as_bool(docker.get("selinux", False), "docker.selinux", where),
        build=_as_str_list(build, "docker.build", where),
        build_options=_as_str_list(docker.get("build_options"), "docker.build_options", where),
        docker_conn_id=conn_id,
        task_label=task_label,
        extra={k: v for k, v in docker.items() if k not in DOCKER_KEYS},
    )


def ecs_setup(ecs: Mapping[str, Any] | None, docker: Mapping[str, Any] | None, task_label: str) -> tuple[Any, Any]:
    """Load the ECS cluster and temporal storage configuration for a task."""
    raise BackendNotConfigured("ECS is not configured (no ECS cluster connection)")
