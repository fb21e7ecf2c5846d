"""``check``: which executor a task would use and why, and whether that backend is reachable."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_cmdexec_provider.cli.common import EXIT_ERROR, EXIT_OK, TASK_LABEL, Output
from airflow_cmdexec_provider.cli.importer import _strip_task_prefix


# --------------------------------------------------------------------------------------------------
# check: which executor, why, and is it reachable
# --------------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    name: str
    state: str  # OK, UNREACHABLE, NOT CONFIGURED, INVALID, SKIPPED
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "OK"


def _selection(
    executor: str | None, docker: Mapping[str, Any] | None, ecs: Mapping[str, Any] | None
) -> tuple[Any, list[tuple[str, str]], str | None, BaseException | None]:
    """Run CommandExecutorHook's own selection; record what each backend said."""
    from airflow_cmdexec_provider.backends.base import TaskSettings
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

    settings = TaskSettings(task_label=TASK_LABEL, docker=docker, ecs=ecs)
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
            [cli, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        return Verdict("docker", "UNREACHABLE", f"the docker CLI {cli!r} was not found")
    except subprocess.TimeoutExpired:
        return Verdict("docker", "UNREACHABLE", f"'{cli} version' did not answer within 30 s")
    if proc.returncode != 0 or not proc.stdout.strip():
        detail = (proc.stderr.strip().splitlines() or ["no server version"])[-1]
        return Verdict("docker", "UNREACHABLE", f"the Docker daemon does not answer ({cli}): {detail}")
    return Verdict("docker", "OK", f"the Docker daemon answers (server {proc.stdout.strip()}, CLI {cli})")


def check(
    output: Output,
    image: str | None,
    task_definition_arn: str | None,
    executor: str | None,
    ecs_conn_id: str | None,
    storage_conn_id: str | None,
) -> int:
    from airflow_cmdexec_provider import config
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError
    from airflow_cmdexec_provider.hooks.command_executor import chain_of, normalize_executor

    docker = {"image": image} if image else None
    ecs: dict[str, Any] = {}
    if task_definition_arn:
        ecs["task_definition_arn"] = task_definition_arn
    if ecs_conn_id:
        ecs["conn_id"] = ecs_conn_id
    if storage_conn_id:
        ecs["storage_conn_id"] = storage_conn_id

    for conn_id in (
        ecs_conn_id or config.ECS_CONN_ID,
        storage_conn_id or config.STORAGE_CONN_ID,
        config.AWS_CONN_ID,
    ):
        conn = config.get_connection(conn_id)
        if conn is not None and conn.password:
            output.add_secret(conn.password)

    params = []
    if image:
        params.append(f"docker.image={image!r}")
    if task_definition_arn:
        params.append(f"ecs.task_definition_arn={task_definition_arn!r}")
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

    backend, attempts, selected, failure = _selection(executor, docker, ecs or None)
    if not forced and docker is None and not ecs:
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
    for name in chain:
        if name == "local":
            verdicts[name] = [Verdict("local", "OK", "runs on the worker itself")]
        elif name == "docker":
            cli = backend.config.docker if selected == "docker" else "docker"
            verdict = _probe_docker(cli)
            if selected != "docker" and docker is None:
                verdict.message += " (not used by this task: no docker.image)"
            verdicts[name] = [verdict]
        elif name == "ecs":
            from airflow_cmdexec_provider.hooks.connections import check_ecs_cluster, check_temporal_storage

            try:
                ecs_config = config.load_ecs_config(ecs_conn_id or config.ECS_CONN_ID, TASK_LABEL)
                storage_config = config.load_storage_config(
                    storage_conn_id or config.STORAGE_CONN_ID, TASK_LABEL
                )
            except BackendNotConfigured as exc:
                verdicts[name] = [Verdict("ecs", "NOT CONFIGURED", str(exc))]
            except CmdExecConfigError as exc:
                verdicts[name] = [Verdict("ecs", "INVALID", _strip_task_prefix(str(exc)))]
            else:
                verdicts[name] = [
                    _probe("ecs", check_ecs_cluster, ecs_config),
                    _probe("storage", check_temporal_storage, storage_config),
                ]

    output.out("Backends:")
    for name in chain:
        for verdict in verdicts.get(name, []):
            marker = "(selected) " if name == selected and verdict.name in ("ecs", "docker", "local") else ""
            output.out(f"  {verdict.name:<8} {verdict.state:<14} {marker}{verdict.message}")

    if failure is not None:
        output.out(
            f"Verdict: FAIL: a task with these params fails before it runs: "
            f"{_strip_task_prefix(str(failure))}"
        )
        return EXIT_ERROR
    selected_ok = all(v.ok for v in verdicts.get(selected or "", []))
    if selected_ok:
        output.out(f"Verdict: OK: a task with these params runs on {selected}, and {selected} is reachable")
        return EXIT_OK
    output.out(f"Verdict: FAIL: a task with these params runs on {selected}, but {selected} is unreachable")
    return EXIT_ERROR
