"""The one place that decides where a task's command runs: ECS, Docker or the worker itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseHook

from airflow_cmdexec_provider import config
from airflow_cmdexec_provider.backends.base import CommandBackend, CommandRequest, CommandResult, LineSink
from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError

# Digdag's agent.command_executor.type and the chain each one means (Digdag §1.2): the ECS executor
# falls back to Docker, which falls back to local, but only when a backend is not configured at all.
CHAINS: dict[str, tuple[str, ...]] = {
    "ecs": ("ecs", "docker", "local"),
    "docker": ("docker", "local"),
    "local": ("local",),
}
ALIASES = {"simple": "local"}


def normalize_executor(value: str | None, where: str) -> str | None:
    """Return ``None`` for automatic selection, else one of ``ecs``, ``docker``, ``local``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    name = ALIASES.get(str(value).strip().lower(), str(value).strip().lower())
    if name not in CHAINS:
        raise CmdExecConfigError(
            f"{where}: unknown executor {value!r}; use one of 'auto', 'ecs', 'docker', 'local'"
        )
    return name


class CommandExecutorHook(BaseHook):
    """Select a backend for one task and run its command there.

    Selection follows Digdag: the configured executor type (Variable ``cmdexec_executor_type``,
    default ``ecs``) gives a chain ECS -> Docker -> local. A backend is skipped only when it is not
    configured (``BackendNotConfigured``: no ECS connection/storage, no ``docker`` params); any
    other error fails the task, so a command never silently runs somewhere else. A forced
    ``executor`` runs there or fails with the reason.

    :param executor: ``None``/``"auto"`` for the configured selection, or ``ecs``, ``docker``, ``local``.
    :param docker: the task's Digdag ``docker`` params (``image``, ``run_options``, ...).
    :param ecs: the task's Digdag ``ecs`` params (``task_definition_arn``, cluster overrides).
    :param task_label: ``dag_id.task_id``, used in every message.
    :param timeout: the task's ``execution_timeout``: presigned URLs must outlive it.
    """

    hook_name = "Command Executor"

    def __init__(
        self,
        *,
        executor: str | None = None,
        docker: Mapping[str, Any] | None = None,
        ecs: Mapping[str, Any] | None = None,
        task_label: str,
        timeout: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task_label = task_label
        self.timeout = timeout
        self.forced = normalize_executor(executor, f"Task {task_label}: executor")
        self.docker = docker
        self.ecs = ecs

    def get_backend(self) -> CommandBackend:
        """Return the backend this task runs on, logging which one and why."""
        if self.forced is not None:
            chain: tuple[str, ...] = (self.forced,)
            why = f"forced by executor={self.forced!r}"
        else:
            configured = normalize_executor(config.executor_type(), "Variable cmdexec_executor_type") or "ecs"
            chain = CHAINS[configured]
            why = f"executor type {configured!r}"
        skipped: list[str] = []
        for name in chain:
            try:
                backend = self.backend(name)
            except BackendNotConfigured as exc:
                if self.forced is not None:
                    raise CmdExecConfigError(
                        f"Task {self.task_label}: executor {name!r} was forced but is not configured: {exc}"
                    ) from exc
                skipped.append(f"{name}: {exc}")
                continue
            reason = f"{why}; " + ("; ".join(f"skipped {s}" for s in skipped) if skipped else "first in chain")
            self.log.info("Task %s runs on the %s executor (%s)", self.task_label, name, reason)
            return backend
        raise CmdExecConfigError(f"Task {self.task_label}: no executor is available ({'; '.join(skipped)})")

    def backend(self, name: str) -> CommandBackend:
        """Build the named backend (``ecs``, ``docker``, ``local``) for this task, without selection."""
        return self._factories()[name]()

    def run(
        self,
        request: CommandRequest,
        log_line: LineSink,
        journal: HandleJournal | None = None,
        backend: CommandBackend | None = None,
    ) -> CommandResult:
        """Select the backend and run the request on it.

        With a ``journal`` (the task's state store), a remote backend's handle is saved as soon as
        the command started; a later try of the same task finds it and re-attaches to that container
        or ECS task instead of starting a second one (or collects its result if it already ended).
        """
        backend = backend or self.get_backend()
        try:
            if journal is not None and hasattr(backend, "resume"):
                backend.save_handle = journal.save
                handle = journal.load()
                if handle and handle.get("backend") == backend.name:
                    result = backend.resume(handle, request, log_line)
                    if result is not None:
                        return result
                elif handle:
                    self.log.warning("Ignoring the %s handle of an earlier try: this try runs on %s",
                                     handle.get("backend"), backend.name)
            return backend.run(request, log_line)
        finally:
            # The command ended (or was stopped and cleaned up): a retry must start afresh. Only a
            # worker that died never gets here, and then the next try re-attaches.
            if journal is not None:
                journal.clear()

    def _factories(self) -> dict[str, Callable[[], CommandBackend]]:
        return {"ecs": self._ecs_backend, "docker": self._docker_backend, "local": self._local_backend}

    def _local_backend(self) -> CommandBackend:
        from airflow_cmdexec_provider.backends.local import LocalBackend

        return LocalBackend()

    def _docker_backend(self) -> CommandBackend:
        docker_config = config.docker_config(self.docker, self.task_label)
        from airflow_cmdexec_provider.backends.docker import DockerBackend

        return DockerBackend(docker_config)

    def _ecs_backend(self) -> CommandBackend:
        ecs_config, storage_config = config.ecs_setup(self.ecs, self.docker, self.task_label)
        from airflow_cmdexec_provider.backends.ecs import EcsBackend

        # Presigned URLs must stay valid for the task's whole life (Digdag's 600 s default lost the
        # outputs of long tasks, spec §6.11): execution_timeout plus an hour, else the 7-day maximum.
        url_ttl = int(self.timeout.total_seconds()) + 3600 if self.timeout else None
        return EcsBackend(
            ecs_config,
            storage_config,
            td_cache=VariableTaskDefinitionCache(),
            url_ttl=url_ttl,
            poll_interval=ecs_config.poll_interval,
        )


class HandleJournal:
    """The handle of a remote command in the task's ``task_state_store`` (Airflow 3.3, AIP-103).

    The store survives the retries of a task instance (XComs do not: they are cleared before each
    try), so it is where a later try finds the container or ECS task of an earlier one.
    """

    key = "cmdexec_remote_command"

    def __init__(self, store: Any) -> None:
        self.store = store
        self._holds_handle = False  # so that a local command costs no state-store call at all

    def load(self) -> dict[str, Any] | None:
        value = self.store.get(self.key) if self.store is not None else None
        self._holds_handle = value is not None
        return value if isinstance(value, dict) else None

    def save(self, handle: Mapping[str, Any]) -> None:
        if self.store is not None:
            self.store.set(self.key, dict(handle))
            self._holds_handle = True

    def clear(self, force: bool = False) -> None:
        """Delete the handle; without ``force`` only if this journal loaded or saved one."""
        if self.store is not None and (self._holds_handle or force):
            self.store.delete(self.key)
            self._holds_handle = False


class VariableTaskDefinitionCache:
    """Image -> task definition ARN, remembered in the Airflow Variable ``cmdexec_ecs_task_definitions``.

    A Variable, not process memory: every Airflow task is a new process, and the Variable is shared
    by all workers, so the O(N) tag scan happens once per image, not once per task. Entries are
    validated on use (the backend re-describes the ARN), so a stale entry only costs a new scan.
    """

    variable = "cmdexec_ecs_task_definitions"

    def _load(self) -> dict[str, str]:
        from airflow.sdk import Variable

        try:
            data = Variable.get(self.variable, default=None, deserialize_json=True)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> str | None:
        return self._load().get(key)

    def set(self, key: str, value: str) -> None:
        from airflow.sdk import Variable

        data = self._load()
        data[key] = value
        Variable.set(self.variable, data, serialize_json=True,
                     description="airflow-cmdexec-provider: cache of ECS task definitions by docker.image tag")
