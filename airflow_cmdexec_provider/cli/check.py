"""``check``: which executor a task would use and why, and whether that backend is reachable."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_cmdexec_provider.cli.common import EXIT_ERROR, EXIT_OK, TASK_LABEL, Output
from airflow_cmdexec_provider.cli.importer import _strip_task_prefix

# The backends whose verdict line carries "(selected)"; the others are parts of one (its storage).
BACKEND_NAMES = ("ecs", "kubernetes", "docker", "local")
# Verdicts that say what a task needs, not whether something answers.
TASK_DEFINITION = "task-def"


# --------------------------------------------------------------------------------------------------
# check: which executor, why, and is it reachable
# --------------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    name: str
    state: str  # OK, UNREACHABLE, NOT CONFIGURED, INVALID, NOT FOUND
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "OK"


def _selection(
    settings: Any, executor: str | None
) -> tuple[Any, list[tuple[str, str]], str | None, BaseException | None]:
    """Run CommandExecutorHook's own selection; record what each backend said."""
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured
    from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook

    attempts: list[tuple[str, str]] = []

    class SelectionProbe(CommandExecutorHook):
        def backend(self, name: str) -> Any:
            try:
                built = super().backend(name)
            except BackendNotConfigured as exc:
                attempts.append((name, f"not configured: {exc}"))
                raise
            attempts.append((name, "selected"))
            return built

    hook = SelectionProbe(settings=settings, executor=executor)
    try:
        backend = hook.get_backend()
    except Exception as exc:  # noqa: BLE001 - reported as the verdict
        return None, attempts, None, exc
    selected = next((name for name, what in attempts if what == "selected"), None)
    return backend, attempts, selected, None


def _probe(name: str, check: Callable[[Any], str], backend_config: Any) -> Verdict:
    """One of the connection checks the UI's Test buttons run (``hooks.connections``)."""
    from airflow_cmdexec_provider.hooks.connections import ConnectionCheckFailed

    try:
        return Verdict(name, "OK", check(backend_config))
    except ConnectionCheckFailed as exc:
        return Verdict(name, "UNREACHABLE", str(exc))


def _probe_docker(cli: str) -> Verdict:
    try:
        proc = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except FileNotFoundError:
        return Verdict("docker", "UNREACHABLE", f"the docker CLI {cli!r} was not found")
    except subprocess.TimeoutExpired:
        return Verdict("docker", "UNREACHABLE", f"'{cli} version' did not answer within 30 s")
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = (proc.stderr.strip().splitlines() or ["no server version"])[-1]
        return Verdict("docker", "UNREACHABLE", f"the Docker daemon does not answer ({cli}): {detail}")
    return Verdict("docker", "OK", f"the Docker daemon answers (server {proc.stdout.strip()}, CLI {cli})")


# -- ECS --------------------------------------------------------------------------------------------
def _ecs_verdicts(
    ecs_conn_id: str, storage_conn_id: str, selected_backend: Any
) -> tuple[list[Verdict], str | None]:
    """The cluster and its temporal storage (the Test buttons' checks); for the selected ECS backend
    also the task definition the task would run (review L17). Returns the verdicts and its ARN."""
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError
    from airflow_cmdexec_provider.hooks.connections import check_ecs_cluster, check_temporal_storage

    try:
        ecs_config = config.load_ecs_config(ecs_conn_id, TASK_LABEL)
        storage_config = config.load_storage_config(storage_conn_id, TASK_LABEL)
    except BackendNotConfigured as exc:
        return [Verdict("ecs", "NOT CONFIGURED", str(exc))], None
    except CmdExecConfigError as exc:
        return [Verdict("ecs", "INVALID", _strip_task_prefix(str(exc)))], None
    cluster = _probe("ecs", check_ecs_cluster, ecs_config)
    verdicts = [cluster]
    arn = None
    if selected_backend is not None and cluster.ok:
        task_definition, arn = _task_definition_verdict(selected_backend)
        verdicts.append(task_definition)
    verdicts.append(_probe("storage", check_temporal_storage, storage_config))
    return verdicts, arn


def _task_definition_verdict(backend: Any) -> tuple[Verdict, str | None]:
    """Resolve the task definition with the backend's own lookup, as the task's submit does.

    A fresh backend of the same configuration, whose cache lives in memory: the check always
    looks the image up in ECS and never writes the Variable that tasks share as their cache.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from airflow_cmdexec_provider.backends.ecs import IMAGE_TAG, EcsBackend
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    ecs = EcsBackend(backend.config, backend.storage_config)
    try:
        td = ecs.task_definition()
    except CmdExecConfigError as exc:
        return Verdict(TASK_DEFINITION, "NOT FOUND", _strip_task_prefix(str(exc))), None
    except (ClientError, BotoCoreError) as exc:
        from airflow_cmdexec_provider.hooks.connections import _first_line

        return Verdict(
            TASK_DEFINITION,
            "UNREACHABLE",
            f"the task definition could not be looked up ({type(exc).__name__}: {_first_line(exc)}): the "
            "credentials need ecs:ListTaskDefinitions, ecs:ListTagsForResource and "
            "ecs:DescribeTaskDefinition",
        ), None
    arn = td["taskDefinitionArn"]
    container = td["containerDefinitions"][0]
    how = (
        "ecs.task_definition_arn"
        if ecs.config.task_definition_arn
        else f"the newest ACTIVE one tagged {IMAGE_TAG}={ecs.config.image!r}"
    )
    return Verdict(
        TASK_DEFINITION, "OK", f"{arn} ({how}); the command runs in its container {container['name']!r}"
    ), arn


# -- Kubernetes -------------------------------------------------------------------------------------
def _kubernetes_verdicts(
    output: Output, settings: Any, selected_backend: Any, namespace_flag: str | None
) -> tuple[list[Verdict], str | None]:
    """The cluster, reached through the task's own client, and its input and output temporal storage
    (the Test button's check). Returns the verdicts and the namespace."""
    from airflow_cmdexec_provider.backends import registry
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError
    from airflow_cmdexec_provider.hooks.connections import check_temporal_storage

    backend = selected_backend
    if backend is None:  # not the selected one: built as a task would build it, to probe it anyway
        try:
            backend = registry.backend_class("kubernetes").from_settings(settings)
        except BackendNotConfigured as exc:
            return [Verdict("kubernetes", "NOT CONFIGURED", str(exc))], None
        except CmdExecConfigError as exc:
            return [Verdict("kubernetes", "INVALID", _strip_task_prefix(str(exc)))], None
    for credential in backend.api.api_client.configuration.api_key.values():  # e.g. a token from a file
        output.add_secret(credential.removeprefix("Bearer "))
    verdicts = [_probe_kubernetes(backend, namespace_flag)]
    storages = [("storage", backend.input_config)]
    if backend.output_config.conn_id != backend.input_config.conn_id:
        storages = [("storage-in", backend.input_config), ("storage-out", backend.output_config)]
    for name, storage_config in storages:
        verdict = _probe(name, check_temporal_storage, storage_config)
        verdict.message = f"connection {storage_config.conn_id!r}: {verdict.message}"
        verdicts.append(verdict)
    return verdicts, backend.namespace


def _cluster_access(cfg: Any) -> str:
    """Where the task's client finds the cluster and its credentials, as the fields to fix."""
    if cfg.in_cluster:
        return "the pod's service account (extra 'in_cluster')"
    if cfg.kube_config_path:
        return f"the kube config of extra 'kube_config_path' ({cfg.kube_config_path})"
    if cfg.kube_config:
        return "the kube config of extra 'kube_config'"
    return "the default kube config (in-cluster, else ~/.kube/config; or set extra 'kube_config_path')"


def _probe_kubernetes(backend: Any, namespace_flag: str | None) -> Verdict:
    """List one pod of the task's namespace and read the namespace, through the backend's own client.

    Listing pods of a namespace that does not exist answers an empty list, so the namespace is read
    too; credentials that may not read namespaces leave that unchecked (a pod creation would tell).
    """
    from kubernetes.client.rest import ApiException

    from airflow_cmdexec_provider.backends.kubernetes import api_message
    from airflow_cmdexec_provider.hooks.connections import CHECK_TIMEOUT, _first_line

    cfg = backend.config
    server = backend.api.api_client.configuration.host
    access = _cluster_access(cfg)
    namespace = backend.namespace
    if namespace_flag:
        namespace_field = "--namespace (the task's kubernetes.namespace)"
    elif cfg.namespace:
        namespace_field = f"extra 'namespace' of connection {cfg.conn_id!r}"
    else:
        namespace_field = f"extra 'namespace' of connection {cfg.conn_id!r} (else the kube config context's)"
    state = "OK"
    message = (
        f"the API server at {server} accepts the credentials of {access}; namespace {namespace!r} "
        "exists and its pods can be listed"
    )
    reading_namespace = False
    try:
        backend.api.list_namespaced_pod(namespace, limit=1, _request_timeout=CHECK_TIMEOUT)
        reading_namespace = True
        backend.api.read_namespace(namespace, _request_timeout=CHECK_TIMEOUT)
    except ApiException as exc:
        if exc.status == 401:
            state, message = (
                "UNREACHABLE",
                (
                    f"the API server at {server} rejected the credentials of "
                    f"{access} (401 Unauthorized): fix the user's token there"
                ),
            )
        elif reading_namespace and exc.status == 404:
            state, message = (
                "INVALID",
                (
                    f"namespace {namespace!r} does not exist at {server}: fix "
                    f"{namespace_field}, or create the namespace"
                ),
            )
        elif reading_namespace and exc.status == 403:
            message = (
                f"the API server at {server} accepts the credentials of {access} and lists pods in "
                f"namespace {namespace!r} (they may not read namespaces: its existence is unchecked)"
            )
        elif exc.status == 403:
            state, message = (
                "UNREACHABLE",
                (
                    f"the credentials of {access} may not list pods in namespace "
                    f"{namespace!r} ({api_message(exc)}): grant them the pods of "
                    f"that namespace (RBAC), or fix {namespace_field}"
                ),
            )
        else:
            state, message = (
                "UNREACHABLE",
                (f"the API server at {server} answered {api_message(exc)}: check {access}"),
            )
    except Exception as exc:  # noqa: BLE001 - urllib3's connection errors, a timeout, TLS
        reason = getattr(exc, "reason", None) or exc  # urllib3's MaxRetryError wraps the connection error
        state, message = (
            "UNREACHABLE",
            (
                f"the API server at {server} does not answer "
                f"({_first_line(reason)}): fix the server in {access}"
            ),
        )
    return Verdict("kubernetes", state, message)


# -- secrets ----------------------------------------------------------------------------------------
def _mask_connection(output: Output, conn_id: str) -> Mapping[str, Any]:
    """Mask the connection's password and the credentials of a kube config in its extras; return them."""
    import yaml

    from airflow_cmdexec_provider import config

    conn = config.get_connection(conn_id)
    if conn is None:
        return {}
    output.add_secret(conn.password)
    extra = conn.extra_dejson if conn.extra else {}
    kube_config = extra.get("kube_config") or extra.get("extra__kubernetes__kube_config")
    if isinstance(kube_config, str):
        try:
            kube_config = yaml.safe_load(kube_config)
        except yaml.YAMLError:
            output.add_secret(kube_config)  # unreadable: no part of it may be shown
    if isinstance(kube_config, Mapping):
        for user in kube_config.get("users") or []:
            credentials = (user or {}).get("user") if isinstance(user, Mapping) else None
            for value in (credentials or {}).values():
                output.add_secret(value)
    return extra


def _mask_secrets(output: Output, ecs_conn_id: str, storage_conn_id: str, kubernetes_conn_id: str) -> None:
    """Every secret of the connections the check reads is masked in whatever it prints."""
    from airflow_cmdexec_provider import config

    for conn_id in (ecs_conn_id, storage_conn_id, config.AWS_CONN_ID):
        _mask_connection(output, conn_id)
    kubernetes_extra = _mask_connection(output, kubernetes_conn_id)
    for direction in ("in", "out"):
        named = kubernetes_extra.get(f"cmdexec_storage_{direction}_conn_id")
        if isinstance(named, str) and named:
            _mask_connection(output, named)


# --------------------------------------------------------------------------------------------------
def check(
    output: Output,
    *,
    image: str | None = None,
    task_definition_arn: str | None = None,
    executor: str | None = None,
    ecs_conn_id: str | None = None,
    storage_conn_id: str | None = None,
    kubernetes_conn_id: str | None = None,
    namespace: str | None = None,
) -> int:
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError
    from airflow_cmdexec_provider.hooks.command_executor import chain_of, normalize_executor

    docker = {"image": image} if image else None
    ecs: dict[str, Any] = {}
    if task_definition_arn:
        ecs["task_definition_arn"] = task_definition_arn
    if ecs_conn_id:
        ecs["conn_id"] = ecs_conn_id
    if storage_conn_id:
        ecs["storage_conn_id"] = storage_conn_id
    kubernetes: dict[str, Any] = {}
    if kubernetes_conn_id:
        kubernetes["conn_id"] = kubernetes_conn_id
    if namespace:
        kubernetes["namespace"] = namespace
    settings = TaskSettings(
        task_label=TASK_LABEL, docker=docker, ecs=ecs or None, kubernetes=kubernetes or None
    )
    ecs_conn_id = ecs_conn_id or config.ECS_CONN_ID
    storage_conn_id = storage_conn_id or config.STORAGE_CONN_ID
    _mask_secrets(output, ecs_conn_id, storage_conn_id, kubernetes_conn_id or config.KUBERNETES_CONN_ID)

    params = [
        f"{key}={value!r}"
        for key, value in (
            ("docker.image", image),
            ("ecs.task_definition_arn", task_definition_arn),
            ("kubernetes.conn_id", kubernetes_conn_id),
            ("kubernetes.namespace", namespace),
        )
        if value
    ]
    none = "(none: no docker.image, no ecs.task_definition_arn)"
    output.out(f"Task params: {', '.join(params) if params else none}")
    try:
        forced = normalize_executor(executor, "--executor")
        configured_raw = config.executor_type()
        configured = normalize_executor(configured_raw, f"Variable {config.EXECUTOR_TYPE_VARIABLE}") or "ecs"
    except CmdExecConfigError as exc:
        output.err(f"error: {exc}")
        return EXIT_ERROR
    if forced:
        chain: tuple[str, ...] = (forced,)
        output.out(f"Executor: forced to {forced!r} (--executor)")
    else:
        chain = chain_of(configured)
        source = (
            f"Variable {config.EXECUTOR_TYPE_VARIABLE} = {configured_raw!r}"
            if configured_raw
            else f"Variable {config.EXECUTOR_TYPE_VARIABLE} is not set: Digdag's default"
        )
        output.out(f"Executor type: {configured} ({source}); chain: {' -> '.join(chain)}")

    backend, attempts, selected, failure = _selection(settings, executor)
    if not forced and not settings.wants_remote():
        output.out(
            "  no docker, ecs or kubernetes params: only the local executor can run this task "
            "(no Variable or Connection is read for it)"
        )
    for name, what in attempts:
        if what != "selected":
            output.out(f"  {name}: skipped, {what}")
    if selected:
        output.out(f"Selected: {selected}")

    # Reachability of every backend in the chain, whether or not it is the one selected.
    verdicts: dict[str, list[Verdict]] = {}
    where = ""  # what the selected backend runs the task with: a task definition, a namespace
    for name in chain:
        selected_backend = backend if name == selected else None
        if name == "local":
            verdicts[name] = [Verdict("local", "OK", "runs on the worker itself")]
        elif name == "docker":
            verdict = _probe_docker(backend.config.docker if selected_backend else "docker")
            if not selected_backend and docker is None:
                verdict.message += " (not used by this task: no docker.image)"
            verdicts[name] = [verdict]
        elif name == "ecs":
            verdicts[name], arn = _ecs_verdicts(ecs_conn_id, storage_conn_id, selected_backend)
            where = f" with task definition {arn}" if arn and selected_backend else where
        elif name == "kubernetes":
            verdicts[name], used = _kubernetes_verdicts(output, settings, selected_backend, namespace)
            where = f" in namespace {used!r}" if used and selected_backend else where

    output.out("Backends:")
    for name in chain:
        for verdict in verdicts.get(name, []):
            marker = "(selected) " if name == selected and verdict.name in BACKEND_NAMES else ""
            output.out(f"  {verdict.name:<11} {verdict.state:<14} {marker}{verdict.message}")

    if failure is not None:
        output.out(
            f"Verdict: FAIL: a task with these params fails before it runs: "
            f"{_strip_task_prefix(str(failure))}"
        )
        return EXIT_ERROR
    checked = verdicts.get(selected or "", [])
    problem = next((v for v in checked if not v.ok), None)
    if problem is not None:
        output.out(
            f"Verdict: FAIL: a task with these params runs on {selected}, but {problem.name} is "
            f"{problem.state.lower()}: {problem.message}"
        )
        return EXIT_ERROR
    reachable = [v.name for v in checked if v.name != TASK_DEFINITION]
    names = " and ".join([", ".join(reachable[:-1]), reachable[-1]] if len(reachable) > 2 else reachable)
    output.out(
        f"Verdict: OK: a task with these params runs on {selected}{where}, and {names} "
        f"{'is' if len(reachable) == 1 else 'are'} reachable"
    )
    return EXIT_OK
