"""Typed configuration of the backends, loaded from task params, Airflow Variables and Connections.

Only this module and ``hooks/`` read Variables and Connections; backends receive the dataclasses.
Every error names the Digdag key and where it lives in Airflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The connection ids, fields and limits are also read as config.<NAME>: `X as X` re-exports them.
from airflow_cmdexec_provider.digdag_keys import (
    ECS_CONN_ID as ECS_CONN_ID,
    ECS_CONN_TYPE as ECS_CONN_TYPE,
    ECS_FIELDS as ECS_FIELDS,
    KUBERNETES_CONN_ID as KUBERNETES_CONN_ID,
    KUBERNETES_CONN_TYPE as KUBERNETES_CONN_TYPE,
    KUBERNETES_FIELDS as KUBERNETES_FIELDS,
    MAX_PRESIGN_SECONDS as MAX_PRESIGN_SECONDS,
    STORAGE_CONN_ID as STORAGE_CONN_ID,
    STORAGE_CONN_TYPE as STORAGE_CONN_TYPE,
    STORAGE_FIELDS as STORAGE_FIELDS,
    STORAGE_TYPES as STORAGE_TYPES,
    FieldSpec,
)
from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError

EXECUTOR_TYPE_VARIABLE = "cmdexec_executor_type"


def executor_type() -> str | None:
    """Digdag ``agent.command_executor.type``: Airflow Variable ``cmdexec_executor_type`` (default ``ecs``).

    ``None`` only when the Variable definitely does not exist; a failure to read it is an error.
    """
    return _lookup("variable", EXECUTOR_TYPE_VARIABLE)


def _as_bool(value: Any, key: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "true",
        "yes",
        "on",
        "1",
        "false",
        "no",
        "off",
        "0",
    ):
        return value.strip().lower() in ("true", "yes", "on", "1")
    raise CmdExecConfigError(f"{where}: {key} must be true or false, got {value!r}")


def _as_str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise CmdExecConfigError(
            f'{where}: {key} must be a list of strings (as in Digdag, e.g. ["-m", "1G"]), got {value!r}'
        )
    if not all(isinstance(v, str) for v in value):
        raise CmdExecConfigError(f"{where}: every item of {key} must be a string, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class RegistryLogin:
    """Registry credentials from an Airflow Docker connection (``docker.docker_conn_id``)."""

    server: str | None
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class DockerConfig:
    """Digdag ``docker.*`` task params (spec §3 and §5).

    ``cli`` is ``docker.docker`` as the task set it, ``None`` when it did not: Docker is then driven
    through its Engine API unless ``run_options``/``build_options`` (docker CLI flags) need the CLI.
    """

    image: str
    cli: str | None = None
    run_options: tuple[str, ...] = ()
    pull_always: bool = False
    selinux: bool = False
    build: tuple[str, ...] = ()
    build_options: tuple[str, ...] = ()
    docker_conn_id: str | None = None
    registry: RegistryLogin | None = None
    task_label: str = ""

    @property
    def docker(self) -> str:
        """The docker CLI program for the calls that go through the CLI (Digdag's default ``docker``)."""
        return self.cli or "docker"


DOCKER_KEYS = {
    "image",
    "docker",
    "run_options",
    "pull_always",
    "selinux",
    "build",
    "build_options",
    "docker_conn_id",
}


def docker_config(docker: Mapping[str, Any] | None, task_label: str) -> DockerConfig:
    """Validate the task's ``docker`` params. Absent means Docker is not configured for this task."""
    if docker is None:
        raise BackendNotConfigured("the task has no docker params (docker={'image': ...})")
    where = f"Task {task_label}: docker"
    if not isinstance(docker, Mapping):
        raise CmdExecConfigError(
            f"{where} must be a dict of Digdag docker.* keys, got {type(docker).__name__}"
        )
    image = docker.get("image")
    if not image or not isinstance(image, str):
        raise CmdExecConfigError(
            f"{where}.image is required but not set: give the image to run, "
            "e.g. docker={'image': 'python:3.12'}"
        )
    unknown = set(docker) - DOCKER_KEYS
    if unknown:
        raise CmdExecConfigError(
            f"{where}: unknown keys {sorted(unknown)}; known keys: {sorted(DOCKER_KEYS)}"
        )
    cli = docker.get("docker")
    if cli is not None and (not isinstance(cli, str) or not cli):
        raise CmdExecConfigError(f"{where}.docker must be the path of the docker CLI, got {cli!r}")
    conn_id = docker.get("docker_conn_id")
    if conn_id is not None and not isinstance(conn_id, str):
        raise CmdExecConfigError(f"{where}.docker_conn_id must be an Airflow connection id, got {conn_id!r}")
    build = docker.get("build")
    if isinstance(build, str):
        build = [build]
    return DockerConfig(
        image=image,
        cli=cli,
        run_options=_as_str_list(docker.get("run_options"), "docker.run_options", where),
        pull_always=_as_bool(docker.get("pull_always", False), "docker.pull_always", where),
        selinux=_as_bool(docker.get("selinux", False), "docker.selinux", where),
        build=_as_str_list(build, "docker.build", where),
        build_options=_as_str_list(docker.get("build_options"), "docker.build_options", where),
        docker_conn_id=conn_id,
        registry=_registry_login(conn_id, task_label) if conn_id else None,
        task_label=task_label,
    )


def _registry_login(conn_id: str, task_label: str) -> RegistryLogin:
    """Read registry credentials from a ``docker`` connection (apache-airflow-providers-docker's form)."""
    conn = get_connection(conn_id)
    if conn is None:
        raise CmdExecConfigError(
            f"Task {task_label}: docker.docker_conn_id {conn_id!r} is not an Airflow connection"
        )
    if not conn.login:
        raise CmdExecConfigError(f"Task {task_label}: Docker connection {conn_id!r} has no Username (login)")
    server = f"{conn.host}:{conn.port}" if conn.host and conn.port else conn.host
    return RegistryLogin(server=server or None, username=conn.login, password=conn.password or "")


def _convert(spec: FieldSpec, value: Any, where: str) -> Any:
    """Convert a raw Connection value to the field's type, or raise naming the Digdag key and field."""
    if value is None or (isinstance(value, str) and value.strip() == "" and spec.kind != "str"):
        return spec.default
    label = f"{where} field {spec.airflow_field!r} (Digdag {spec.digdag_key})"
    if spec.kind == "str":
        text = str(value).strip()
        return text or spec.default
    if spec.kind == "int":
        try:
            number = int(str(value).strip())
        except ValueError:
            raise CmdExecConfigError(f"{label} must be a whole number, got {value!r}") from None
        if number < 0:
            raise CmdExecConfigError(f"{label} must not be negative, got {value!r}")
        return number
    if spec.kind == "bool":
        return _as_bool(value, label, where)
    if spec.kind == "list":
        items = value if isinstance(value, (list, tuple)) else str(value).split(",")
        return tuple(str(i).strip() for i in items if str(i).strip())
    if spec.kind == "choice":
        text = str(value).strip()
        for choice in spec.choices:
            if text.lower() == choice.lower():
                return choice
        raise CmdExecConfigError(f"{label} must be one of {', '.join(spec.choices)}, got {value!r}")
    if spec.kind == "duration":
        seconds = parse_duration(value)
        if seconds is None:
            raise CmdExecConfigError(
                f"{label} must be a duration: seconds, or Digdag's form such as 90s, 30m, 1h or 1d 2h, "
                f"got {value!r}"
            )
        return seconds
    raise AssertionError(spec.kind)


_DURATION = re.compile(r"(\d+)\s*([dhms])")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: Any) -> int | None:
    """Seconds of a whole number or of a Digdag duration ("1h", "30m", "1d 2h 3m 4s"); None if neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    text = str(value).strip().lower()
    if text.isdigit():
        return int(text) or None
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        return None
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in parts) or None


def _read_fields(conn: Any, fields: Sequence[FieldSpec], where: str) -> dict[str, Any]:
    """Read every field of ``fields`` from an Airflow Connection, keyed by Airflow field name."""
    extra = conn.extra_dejson if conn.extra else {}
    values: dict[str, Any] = {}
    for spec in fields:
        if spec.extra_name is not None:
            raw = extra.get(spec.extra_name)
        else:
            raw = getattr(conn, spec.airflow_field, None)
        values[spec.airflow_field] = _convert(spec, raw, where)
    return values


@dataclass(frozen=True, kw_only=True)
class EcsConfig:
    """One ECS cluster (Digdag agent.command_executor.ecs.<name>.*) plus the task's ECS params."""

    conn_id: str
    cluster_name: str
    region: str | None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    aws_conn_id: str | None = None
    endpoint_url: str | None = None
    launch_type: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = True
    max_retries: int = 3
    capacity_provider_name: str | None = None
    container_cpu: int | None = None
    container_memory: int | None = None
    task_cpu: str | None = None
    task_memory: str | None = None
    started_by: str | None = None
    placement_strategy_type: str | None = None
    placement_strategy_field: str | None = None
    use_environment_file: bool = False
    platform_version: str | None = None
    retry_task_scripts_downloads: int = 8
    retry_task_output_uploads: int = 7
    enable_curl_fail_opt_on_uploads: bool = True
    poll_interval: float = 2.0
    max_wait_for_fetch_log_events: int = 60
    max_wait_for_fetch_log_events_non_zero_status: int = 300
    # The task's own keys (Digdag ecs.task_definition_arn and docker.image).
    task_definition_arn: str | None = None
    image: str | None = None
    task_label: str = ""

    def __post_init__(self) -> None:
        where = f"Task {self.task_label}: ECS connection {self.conn_id!r}"
        if not self.cluster_name:
            raise CmdExecConfigError(
                f"{where}: extra 'cluster_name' (Digdag agent.command_executor.ecs.name) is required"
            )
        if self.placement_strategy_field and not self.placement_strategy_type:
            raise CmdExecConfigError(
                f"{where}: extra 'placement_strategy_field' needs 'placement_strategy_type' "
                "(Digdag ecs.<name>.placement_strategy_type)"
            )
        if self.poll_interval < 1:
            # 0 would be a busy loop against the ECS and Logs APIs and in the triggerer (review L6)
            raise CmdExecConfigError(
                f"{where}: extra 'poll_interval' must be at least 1 second, got {self.poll_interval}"
            )
        if self.launch_type and self.capacity_provider_name:
            raise CmdExecConfigError(
                f"{where}: set either extra 'launch_type' or 'capacity_provider_name', not both "
                "(AWS rejects the pair)"
            )
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise CmdExecConfigError(
                f"{where}: give both the access key id (Login) and the secret access key (Password), "
                "or neither"
            )


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """Temporal storage (Digdag agent.command_executor.ecs.temporal_storage.*)."""

    conn_id: str
    type: str
    bucket: str
    prefix: str = "cmdexec"
    endpoint: str | None = None
    path_style_access: bool = False
    region: str | None = None
    access_key_id: str | None = None
    secret: str | None = field(default=None, repr=False)  # S3 secret key, or GCS credentials JSON
    credentials_file: str | None = None
    aws_conn_id: str | None = None
    gcs_credentials_json_path: str | None = None
    direct_download_expiration: int | None = None
    direct_upload_expiration: int | None = None
    task_label: str = ""

    def __post_init__(self) -> None:
        where = f"Task {self.task_label}: temporal storage connection {self.conn_id!r}"
        if self.type not in STORAGE_TYPES:
            raise CmdExecConfigError(
                f"{where}: extra 'type' (Digdag temporal_storage.type) must be s3 or gcs, got {self.type!r}"
            )
        if not self.bucket:
            raise CmdExecConfigError(
                f"{where}: extra 'bucket' (Digdag temporal_storage.{self.type}.bucket) is required"
            )
        for name in ("direct_download_expiration", "direct_upload_expiration"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= MAX_PRESIGN_SECONDS:
                raise CmdExecConfigError(
                    f"{where}: extra {name!r} must be between 1 and {MAX_PRESIGN_SECONDS} seconds, "
                    f"got {value}"
                )

    @property
    def endpoint_url(self) -> str | None:
        """The S3 endpoint as a URL: Digdag allows a bare host such as ``s3.amazonaws.com``."""
        if not self.endpoint:
            return None
        return self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"


ECS_TASK_KEYS = {"task_definition_arn", "conn_id", "storage_conn_id"}
_ECS_OVERRIDABLE = {spec.extra_name for spec in ECS_FIELDS if spec.extra_name} | {"cluster_name"}


def get_connection(conn_id: str) -> Any | None:
    """Return the Airflow Connection, or None when it definitely does not exist.

    "Definitely" matters: the Task SDK turns any failure of a secrets backend (a timeout of the
    API server, a throttled Secrets Manager) into "not found", and automatic selection would then
    silently run the command somewhere else (review H3). So every backend is asked here and any
    failure raises ``ConfigLookupError`` with its cause. Outside a task (the ``airflow-cmdexec``
    CLI, where there is no supervisor) the lookup goes through ``airflow.models``.
    """
    return _lookup("connection", conn_id)


SECRET_VARIABLE_PREFIX = "cmdexec_secret."


def digdag_secret(key: str, task_label: str) -> str:
    """Digdag's ``${secret:key}``: the Airflow Variable ``cmdexec_secret.<key>`` (from the metadata DB
    or a secrets backend), registered with the log masker before anything can print it."""
    from airflow.sdk.log import mask_secret

    name = SECRET_VARIABLE_PREFIX + key
    value = _lookup("variable", name)
    if value is None:
        raise CmdExecConfigError(
            f"Task {task_label}: ${{secret:{key}}}: there is no secret {key!r}; set it as the Airflow "
            f"Variable {name} (airflow variables set {name} VALUE, or in the secrets backend)"
        )
    text = value if isinstance(value, str) else json.dumps(value)
    mask_secret(text, name)
    return text


class ConfigLookupError(CmdExecConfigError):
    """A Connection or Variable could not be read: it may exist, so nothing may fall back."""


def _lookup(kind: str, key: str) -> Any | None:
    """A Connection (``kind="connection"``) or a Variable's value, or None when definitely absent."""
    if not _in_task_context():
        return _lookup_outside_task(kind, key)
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

    failures: list[str] = []
    for backend in ensure_secrets_backend_loaded():
        name = type(backend).__name__
        try:
            if isinstance(backend, ExecutionAPISecretsBackend):
                value = _from_api_server(kind, key)
            elif kind == "connection":
                value = backend.get_connection(conn_id=key)
            else:
                value = backend.get_variable(key=key)
        except Exception as exc:  # noqa: BLE001 - a secrets backend failed: we cannot tell whether the key exists
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if value is not None:
            return _masked(kind, key, value)
    if failures:
        raise ConfigLookupError(
            f"the Airflow {kind} {key!r} could not be read ({'; '.join(failures)}); it may exist, so the "
            "task does not fall back to another executor. Fix the secrets backend or retry the task"
        )
    return None


def _from_api_server(kind: str, key: str) -> Any | None:
    """Ask the API server through the task's supervisor; only its "not found" answer means absent."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse, GetConnection, GetVariable, VariableResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    request = GetConnection(conn_id=key) if kind == "connection" else GetVariable(key=key)
    msg = SUPERVISOR_COMMS.send(request)
    if isinstance(msg, ErrorResponse):
        if msg.error in (ErrorType.CONNECTION_NOT_FOUND, ErrorType.VARIABLE_NOT_FOUND):
            return None
        raise RuntimeError(f"the API server answered {msg.error.value}: {msg.detail}")
    if kind == "connection":
        from airflow.sdk.execution_time.context import _process_connection_result_conn

        return _process_connection_result_conn(msg)
    return msg.value if isinstance(msg, VariableResult) else None


def _masked(kind: str, key: str, value: Any) -> Any:
    """Register the secret parts with the log masker, as the Task SDK's own lookups do."""
    from airflow.sdk.log import mask_secret

    if kind == "connection":
        if value.password:
            mask_secret(value.password)
        if value.extra:
            mask_secret(value.extra)
    return value


def _lookup_outside_task(kind: str, key: str) -> Any | None:
    from airflow.sdk.exceptions import AirflowNotFoundException

    if kind == "variable":
        from airflow.models import Variable as VariableModel

        return VariableModel.get(key, default_var=None)
    from airflow.models import Connection as ConnectionModel
    from airflow.sdk.log import mask_secret

    try:
        conn = ConnectionModel.get_connection_from_secrets(key)
    except AirflowNotFoundException:
        return None
    if conn.password:
        mask_secret(conn.password)
    return conn


def ecs_config_from_connection(
    conn: Any,
    conn_id: str,
    overrides: Mapping[str, Any],
    task_label: str,
    task_definition_arn: str | None,
    image: str | None,
) -> EcsConfig:
    """Build an EcsConfig from a ``cmdexec_ecs`` Connection plus the task's overrides."""
    where = f"Task {task_label}: ECS connection {conn_id!r}"
    values = _read_fields(conn, ECS_FIELDS, where)
    by_name = {spec.extra_name or spec.airflow_field: spec for spec in ECS_FIELDS}
    kwargs: dict[str, Any] = {}
    for airflow_field, value in values.items():
        name = airflow_field[len("extra.") :] if airflow_field.startswith("extra.") else airflow_field
        kwargs[name] = value
    for key, raw in overrides.items():
        spec = by_name.get(key)
        kwargs[key] = _convert(spec, raw, f"Task {task_label}: ecs") if spec is not None else raw
    kwargs["access_key_id"] = kwargs.pop("login", None)
    kwargs["secret_access_key"] = kwargs.pop("password", None)
    return EcsConfig(
        conn_id=conn_id, task_label=task_label, task_definition_arn=task_definition_arn, image=image, **kwargs
    )


def storage_config_from_connection(conn: Any, conn_id: str, task_label: str) -> StorageConfig:
    """Build a StorageConfig from a ``cmdexec_storage`` Connection."""
    where = f"Task {task_label}: temporal storage connection {conn_id!r}"
    extra = conn.extra_dejson if conn.extra else {}
    if not extra.get("type"):
        raise CmdExecConfigError(
            f"{where}: extra 'type' (Digdag temporal_storage.type) is required: s3 or gcs"
        )
    values = _read_fields(conn, STORAGE_FIELDS, where)
    return StorageConfig(
        conn_id=conn_id,
        type=values["extra.type"],
        bucket=values["extra.bucket"] or "",
        prefix=(values["extra.prefix"] or "cmdexec").strip("/"),
        endpoint=values["extra.endpoint"],
        path_style_access=values["extra.path_style_access"],
        region=values["extra.region"],
        access_key_id=values["login"],
        secret=values["password"],
        credentials_file=values["extra.credentials_file"],
        aws_conn_id=values["extra.aws_conn_id"],
        gcs_credentials_json_path=values["extra.gcs_credentials_json_path"],
        direct_download_expiration=values["extra.direct_download_expiration"],
        direct_upload_expiration=values["extra.direct_upload_expiration"],
        task_label=task_label,
    )


def ecs_setup(
    ecs: Mapping[str, Any] | None, docker: Mapping[str, Any] | None, task_label: str
) -> tuple[EcsConfig, StorageConfig]:
    """Load the ECS cluster and temporal storage for a task (Digdag §1.3).

    ``BackendNotConfigured`` (fall back to Docker/local) only when configuration is ABSENT: no
    cluster connection, no storage connection, or a task with neither ``ecs.task_definition_arn``
    nor ``docker.image``. A connection that exists but is wrong is a ``CmdExecConfigError``.
    """
    ecs = dict(ecs or {})
    where = f"Task {task_label}: ecs"
    unknown = set(ecs) - ECS_TASK_KEYS - _ECS_OVERRIDABLE
    if unknown:
        raise CmdExecConfigError(
            f"{where}: unknown keys {sorted(unknown)}; use task_definition_arn, conn_id, storage_conn_id "
            f"or a cluster key ({', '.join(sorted(_ECS_OVERRIDABLE))})"
        )
    task_definition_arn = ecs.get("task_definition_arn")
    image = (docker or {}).get("image") if isinstance(docker, Mapping) else None
    # A task that names its ECS task definition must run on ECS or fail: it never falls back (review H3).
    required = bool(task_definition_arn) or "conn_id" in ecs or "storage_conn_id" in ecs
    conn_id = ecs.get("conn_id") or ECS_CONN_ID
    storage_conn_id = ecs.get("storage_conn_id") or STORAGE_CONN_ID
    if not task_definition_arn and not image:
        if required:
            raise CmdExecConfigError(f"{where}: set ecs.task_definition_arn or docker.image for the ECS task")
        raise BackendNotConfigured("the task has neither ecs.task_definition_arn nor docker.image")
    conn = get_connection(conn_id)
    if conn is None:
        if required:
            raise CmdExecConfigError(
                f"{where}: the ECS cluster connection {conn_id!r} does not exist, and this task names its "
                "ECS setup (ecs.task_definition_arn, conn_id or storage_conn_id), so it does not run "
                f"anywhere else; create the connection (type {ECS_CONN_TYPE!r}) or remove the task's "
                "ecs params"
            )
        raise BackendNotConfigured(f"no ECS cluster connection {conn_id!r}")
    storage_conn = get_connection(storage_conn_id)
    if storage_conn is None:
        if required:
            raise CmdExecConfigError(
                f"{where}: the temporal storage connection {storage_conn_id!r} does not exist, and this task "
                "names its ECS setup, so it does not run anywhere else; create the connection (type "
                f"{STORAGE_CONN_TYPE!r})"
            )
        raise BackendNotConfigured(f"no temporal storage connection {storage_conn_id!r}")
    overrides = {k: v for k, v in ecs.items() if k not in ECS_TASK_KEYS}
    ecs_config = ecs_config_from_connection(conn, conn_id, overrides, task_label, task_definition_arn, image)
    storage = storage_config_from_connection(storage_conn, storage_conn_id, task_label)
    return ecs_config, storage


@dataclass(frozen=True, kw_only=True)
class KubernetesConfig:
    """One Kubernetes cluster (Digdag agent.command_executor.kubernetes.*) plus the task's kubernetes params.

    Cluster access is what the cncf provider's ``kubernetes`` connection holds: at most one of
    ``in_cluster``, ``kube_config_path`` and ``kube_config`` (the parsed content); none of them means
    the provider's default (in-cluster if possible, else ``~/.kube/config``).
    """

    conn_id: str
    image: str
    namespace: str | None = None  # None: the kube config context's namespace, else "default"
    in_cluster: bool = False
    kube_config_path: str | None = None
    kube_config: Mapping[str, Any] | None = field(default=None, repr=False)
    cluster_context: str | None = None
    disable_verify_ssl: bool = False
    disable_tcp_keepalive: bool = False
    default_pod_ttl: int | None = None
    poll_interval: float = 2.0
    # The task's own keys (Digdag kubernetes.Pod, .PersistentVolume, .PersistentVolumeClaim).
    pod: Mapping[str, Any] = field(default_factory=dict)
    persistent_volume: Mapping[str, Any] | None = None
    persistent_volume_claim: Mapping[str, Any] | None = None
    task_label: str = ""


KUBERNETES_TASK_KEYS = ("conn_id", "namespace", "Pod", "PersistentVolume", "PersistentVolumeClaim")
_KUBERNETES_EXTRAS = {spec.extra_name: spec for spec in KUBERNETES_FIELDS if spec.extra_name}


def _cncf_extra(extra: Mapping[str, Any], name: str) -> Any:
    """An extra of a cncf ``kubernetes`` connection, also under its pre-2.3 name
    ``extra__kubernetes__<name>``."""
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__kubernetes__{name}")
    return None if value == "" else value


def kube_config_content(value: Any, where: str) -> dict[str, Any]:
    """The cncf connection's extra ``kube_config`` (JSON or YAML text, or an object) as a mapping."""
    import yaml

    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise CmdExecConfigError(f"{where} extra 'kube_config' is not JSON or YAML: {exc}") from None
    if not isinstance(value, Mapping):
        raise CmdExecConfigError(
            f"{where} extra 'kube_config' must be a kube config (a mapping with clusters, "
            f"users and contexts), got {type(value).__name__}"
        )
    _mask_kube_config(value)
    return dict(value)


def _mask_kube_config(kube_config: Mapping[str, Any]) -> None:
    """Register the credentials of a kube config with the log masker (its token is a secret)."""
    from airflow.sdk.log import mask_secret

    for user in kube_config.get("users") or []:
        credentials = (user or {}).get("user") or {}
        for key in ("token", "password", "client-key-data"):
            if isinstance(credentials.get(key), str):
                mask_secret(credentials[key])


def kubernetes_config_from_connection(
    conn: Any,
    conn_id: str,
    task_label: str,
    *,
    image: str = "",
    namespace: str | None = None,
    pod: Mapping[str, Any] | None = None,
    persistent_volume: Mapping[str, Any] | None = None,
    persistent_volume_claim: Mapping[str, Any] | None = None,
) -> KubernetesConfig:
    """Build a KubernetesConfig from a cncf ``kubernetes`` Connection plus the task's params."""
    where = f"Task {task_label}: Kubernetes connection {conn_id!r}"
    if conn.conn_type and conn.conn_type != KUBERNETES_CONN_TYPE:
        raise CmdExecConfigError(
            f"{where} has type {conn.conn_type!r}; it must be a {KUBERNETES_CONN_TYPE!r} connection "
            "(apache-airflow-providers-cncf-kubernetes)"
        )
    extra = conn.extra_dejson if conn.extra else {}
    access = {name: _cncf_extra(extra, name) for name in ("in_cluster", "kube_config_path", "kube_config")}
    in_cluster = access["in_cluster"] is not None and _as_bool(
        access["in_cluster"], "extra 'in_cluster'", where
    )
    chosen = [name for name, value in access.items() if value and (name != "in_cluster" or in_cluster)]
    if len(chosen) > 1:
        raise CmdExecConfigError(
            f"{where}: extras {' and '.join(repr(c) for c in chosen)} exclude each other; keep one "
            "(Digdag: master/certs_ca_data/oauth_token, or use_kube_config with kube_config_path)"
        )
    ours = {
        name: _convert(spec, extra.get(name), where)
        for name, spec in _KUBERNETES_EXTRAS.items()
        if name.startswith("cmdexec_")
    }
    flags = {}
    for name in ("disable_verify_ssl", "disable_tcp_keepalive"):
        raw = _cncf_extra(extra, name)
        flags[name] = _as_bool(raw, f"extra {name!r}", where) if raw is not None else False
    path = access["kube_config_path"]
    return KubernetesConfig(
        conn_id=conn_id,
        image=image,
        namespace=namespace or _cncf_extra(extra, "namespace"),
        in_cluster=in_cluster,
        kube_config_path=str(path) if path else None,
        kube_config=kube_config_content(access["kube_config"], where) if access["kube_config"] else None,
        cluster_context=_cncf_extra(extra, "cluster_context"),
        default_pod_ttl=ours["cmdexec_default_pod_ttl"],
        poll_interval=max(float(ours["cmdexec_poll_interval"]), 0.5),
        pod=dict(pod or {}),
        persistent_volume=persistent_volume,
        persistent_volume_claim=persistent_volume_claim,
        task_label=task_label,
        **flags,
    )


def kubernetes_setup(
    kubernetes: Mapping[str, Any] | None, docker: Mapping[str, Any] | None, task_label: str
) -> tuple[KubernetesConfig, StorageConfig, StorageConfig]:
    """Load the Kubernetes cluster and its input/output temporal storage for a task (Digdag
    config_storage.in/out).

    ``BackendNotConfigured`` (fall back to Docker/local) only when configuration is ABSENT: no cluster
    connection, no default storage connection, or a task without an image (``docker.image`` or
    ``kubernetes.Pod.image``). A connection that exists but is wrong is a ``CmdExecConfigError``, and
    so is anything missing for a task that names its Kubernetes setup (``conn_id`` or ``namespace``).
    """
    where = f"Task {task_label}: kubernetes"
    if kubernetes is not None and not isinstance(kubernetes, Mapping):
        raise CmdExecConfigError(
            f"{where} must be a dict ({', '.join(KUBERNETES_TASK_KEYS)}), got {type(kubernetes).__name__}"
        )
    params = dict(kubernetes or {})
    unknown = set(params) - set(KUBERNETES_TASK_KEYS)
    if unknown:
        raise CmdExecConfigError(
            f"{where}: unknown keys {sorted(unknown)}; use {', '.join(KUBERNETES_TASK_KEYS)}"
        )
    for key in ("conn_id", "namespace"):
        if key in params and (not isinstance(params[key], str) or not params[key]):
            raise CmdExecConfigError(f"{where}.{key} must be a non-empty string, got {params[key]!r}")
    for key in ("Pod", "PersistentVolume", "PersistentVolumeClaim"):
        if params.get(key) is not None and not isinstance(params[key], Mapping):
            raise CmdExecConfigError(
                f"{where}.{key} must be a dict (as in a Kubernetes manifest), got {params[key]!r}"
            )
    for key in ("PersistentVolume", "PersistentVolumeClaim"):
        if params.get(key) is not None:
            _check_manifest(params[key], f"{where}.{key}")
    pod = dict(params.get("Pod") or {})
    # A task that names its cluster must run there or fail: it never falls back (review H3).
    required = "conn_id" in params or "namespace" in params
    image = pod.get("image") or ((docker or {}).get("image") if isinstance(docker, Mapping) else None)
    if not image or not isinstance(image, str):
        if required:
            raise CmdExecConfigError(
                f"{where}: set docker.image (or kubernetes.Pod.image): the image of the pod"
            )
        raise BackendNotConfigured("the task has no docker.image (nor kubernetes.Pod.image)")
    conn_id = params.get("conn_id") or KUBERNETES_CONN_ID
    conn = get_connection(conn_id)
    if conn is None:
        if required:
            raise CmdExecConfigError(
                f"{where}: the Kubernetes connection {conn_id!r} does not exist, and this task names its "
                "Kubernetes setup (kubernetes.conn_id or namespace), so it does not run anywhere else; "
                f"create the connection (type {KUBERNETES_CONN_TYPE!r}) or remove the task's "
                "kubernetes params"
            )
        raise BackendNotConfigured(f"no Kubernetes cluster connection {conn_id!r}")
    k8s = kubernetes_config_from_connection(
        conn,
        conn_id,
        task_label,
        image=image,
        namespace=params.get("namespace"),
        pod=pod,
        persistent_volume=params.get("PersistentVolume"),
        persistent_volume_claim=params.get("PersistentVolumeClaim"),
    )
    extra = conn.extra_dejson if conn.extra else {}
    storages = []
    for direction in ("in", "out"):
        name = f"cmdexec_storage_{direction}_conn_id"
        storage_conn_id = _convert(_KUBERNETES_EXTRAS[name], extra.get(name), where)
        storage_conn = get_connection(storage_conn_id)
        if storage_conn is None:
            if required or extra.get(name):
                raise CmdExecConfigError(
                    f"{where}: the temporal storage connection {storage_conn_id!r} (extra {name!r} of the "
                    f"Kubernetes connection {conn_id!r}, Digdag config_storage.{direction}) does not exist; "
                    f"create it (type {STORAGE_CONN_TYPE!r})"
                )
            raise BackendNotConfigured(f"no temporal storage connection {storage_conn_id!r}")
        storages.append(storage_config_from_connection(storage_conn, storage_conn_id, task_label))
    return k8s, storages[0], storages[1]


def _check_manifest(manifest: Mapping[str, Any], where: str) -> None:
    """A PersistentVolume(Claim) the task declares: it needs its name (the pod's volumes refer to it)
    and a spec."""
    name = (
        (manifest.get("metadata") or {}).get("name")
        if isinstance(manifest.get("metadata"), Mapping)
        else None
    )
    if not isinstance(name, str) or not name:
        raise CmdExecConfigError(f"{where} needs metadata.name (the name the pod's volumes refer to)")
    if not isinstance(manifest.get("spec"), Mapping):
        raise CmdExecConfigError(f"{where} needs a spec (as in a Kubernetes manifest)")
    unknown = set(manifest) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown:
        raise CmdExecConfigError(f"{where}: unknown keys {sorted(unknown)}; give metadata and spec")


# --------------------------------------------------------------------------------------------------
# Outside a task (the airflow-cmdexec CLI), and the full Digdag key of every FieldSpec.
# --------------------------------------------------------------------------------------------------
DIGDAG_TYPE_KEY = "agent.command_executor.type"
DIGDAG_DEFAULT_CONFIG = "__default_config__"  # Digdag's shared ECS credentials
AWS_CONN_ID = "cmdexec_aws_default"  # where the importer puts ecs.__default_config__.* (conn type "aws")
ECS_CONN_ID_PREFIX = "cmdexec_ecs_"  # other clusters: cmdexec_ecs_<name>


def _in_task_context() -> bool:
    """True inside a running task: the Task SDK supervisor answers Connection/Variable requests."""
    import sys

    task_runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def storage_field_applies(spec: FieldSpec, storage_type: str | None) -> bool:
    """Whether a STORAGE_FIELDS entry is read for this storage type (``s3.*`` only for s3, ...)."""
    head = spec.digdag_key.split(".", 1)[0]
    return head not in STORAGE_TYPES or head == storage_type


def convert_field(spec: FieldSpec, value: Any, key: str, conn_id: str) -> Any:
    """Convert one Digdag value for ``spec``; errors name the Digdag key and the Airflow field."""
    where = f"{key}: Connection {conn_id!r}"
    try:
        return _convert(spec, value, where)
    except CmdExecConfigError:
        if spec.kind != "bool":
            raise
        # _convert's bool message repeats the location; say it once.
        raise CmdExecConfigError(
            f"{where} field {spec.airflow_field!r} (Digdag {spec.digdag_key}) must be true or false, "
            f"got {value!r}"
        ) from None


def load_ecs_config(conn_id: str = ECS_CONN_ID, task_label: str = "airflow-cmdexec") -> EcsConfig:
    """Load and validate one ECS cluster connection (no task overrides)."""
    conn = get_connection(conn_id)
    if conn is None:
        raise BackendNotConfigured(f"no ECS cluster connection {conn_id!r}")
    return ecs_config_from_connection(conn, conn_id, {}, task_label, None, None)


def load_storage_config(conn_id: str = STORAGE_CONN_ID, task_label: str = "airflow-cmdexec") -> StorageConfig:
    """Load and validate one temporal storage connection."""
    conn = get_connection(conn_id)
    if conn is None:
        raise BackendNotConfigured(f"no temporal storage connection {conn_id!r}")
    return storage_config_from_connection(conn, conn_id, task_label)
