"""The one place that decides where a task's command runs, and that hands its handle from try to try."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseHook

from airflow_cmdexec_provider import config
from airflow_cmdexec_provider.backends import registry
from airflow_cmdexec_provider.backends.base import (
    CommandBackend,
    CommandRequest,
    CommandResult,
    Handle,
    LineSink,
    RemoteBackend,
    TaskSettings,
)
from airflow_cmdexec_provider.exceptions import BackendNotConfigured, CmdExecConfigError

DEFAULT_EXECUTOR_TYPE = "ecs"  # Digdag's default agent.command_executor.type


def normalize_executor(value: str | None, where: str) -> str | None:
    """Return ``None`` for automatic selection, else the canonical name of a registered backend."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    if not isinstance(value, str):
        raise CmdExecConfigError(f"{where}: executor must be a string, got {value!r}")
    name = registry.canonical_name(value)
    if not registry.is_known(name):
        raise CmdExecConfigError(
            f"{where}: unknown executor {value!r}; use one of {', '.join(['auto', *registry.known_names()])}"
        )
    return name


def chain_of(executor_type: str) -> tuple[str, ...]:
    """The backends tried, in order, when ``executor_type`` is the configured type (Digdag §1.2)."""
    return (executor_type, *registry.backend_class(executor_type).fallback)


class CommandExecutorHook(BaseHook):
    """Select a backend for one task, and run or start its command there.

    Selection follows Digdag: the configured executor type (Variable ``cmdexec_executor_type``,
    default ``ecs``) gives a chain, e.g. ECS -> Docker -> local. A backend is skipped only when its
    configuration is definitely absent (``BackendNotConfigured``); any other error, including a
    Connection or Variable that could not be read, fails the task, so a command never silently runs
    somewhere else. A forced ``executor`` runs there or fails with the reason. A task with no params
    for any backend but local (no ``docker``, ``ecs``, ``kubernetes``) can only run locally, so it
    runs there without any lookup.

    :param settings: what the backends may read of the task (its Digdag params, label, timeout).
    :param executor: ``None``/``"auto"`` for the configured selection, or a backend name.
    """

    hook_name = "Command Executor"

    def __init__(self, *, settings: TaskSettings, executor: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.task_label = settings.task_label
        self.forced = normalize_executor(executor, f"Task {settings.task_label}: executor")

    def get_backend(self) -> CommandBackend:
        """Return the backend this task runs on, logging which one and why."""
        if self.forced is not None:
            try:
                backend = self.backend(self.forced)
            except BackendNotConfigured as exc:
                raise CmdExecConfigError(
                    f"Task {self.task_label}: executor {self.forced!r} was forced "
                    f"but is not configured: {exc}"
                ) from exc
            self.log.info(
                "Task %s runs on the %s executor (forced by executor=%r)",
                self.task_label,
                self.forced,
                self.forced,
            )
            return backend
        if not self.settings.wants_remote():
            self.log.info(
                "Task %s runs on the local executor (it has no docker, ecs or kubernetes params)",
                self.task_label,
            )
            return self.backend("local")
        configured = normalize_executor(config.executor_type(), "Variable cmdexec_executor_type")
        configured = configured or DEFAULT_EXECUTOR_TYPE
        skipped: list[str] = []
        for name in chain_of(configured):
            try:
                backend = self.backend(name)
            except BackendNotConfigured as exc:
                skipped.append(f"{name}: {exc}")
                continue
            reason = "; ".join(f"skipped {s}" for s in skipped) if skipped else "first in chain"
            self.log.info(
                "Task %s runs on the %s executor (executor type %r; %s)",
                self.task_label,
                name,
                configured,
                reason,
            )
            return backend
        raise CmdExecConfigError(f"Task {self.task_label}: no executor is available ({'; '.join(skipped)})")

    def backend(self, name: str) -> CommandBackend:
        """Build the named backend for this task, without selection."""
        try:
            backend_class = registry.backend_class(name)
        except CmdExecConfigError as exc:
            raise CmdExecConfigError(f"Task {self.task_label}: {exc}") from exc
        return backend_class.from_settings(self.settings)

    def run(
        self, request: CommandRequest, log_line: LineSink, journal: HandleJournal, backend: CommandBackend
    ) -> CommandResult:
        """Run the request on ``backend``, taking over the command of an earlier try if there is one.

        A remote backend saves its handle in the journal as soon as it starts creating remote work,
        so a later try of the same task finds the container/ECS task/pod and re-attaches to it (or
        collects its result if it already ended) instead of starting a second one.
        """
        try:
            if isinstance(backend, RemoteBackend):
                backend.save_handle = journal.save
                backend.forget_handle = journal.clear
                earlier = self.take_over(journal, backend, log_line)
                if earlier is not None:
                    result = backend.resume(earlier, request, log_line)
                    if result is not None:
                        return result
            else:
                self.take_over(journal, backend, log_line)
            return backend.run(request, log_line)
        finally:
            # The command ended, or was stopped and cleaned up: a retry must start afresh. Only a
            # worker that died never gets here, and then the next try finds the handle.
            journal.clear()

    def submit(
        self, request: CommandRequest, log_line: LineSink, journal: HandleJournal, backend: RemoteBackend
    ) -> Handle:
        """Start the command for a deferrable wait (or find the one an earlier try started)."""
        backend.save_handle = journal.save
        earlier = self.take_over(journal, backend, log_line)
        if earlier is not None and earlier.get("starting"):
            return backend.submit(request, log_line, earlier=earlier)
        if earlier is not None and backend.exists(earlier):
            log_line(
                f"Task {self.task_label}: an earlier try started this {backend.name} command: waiting for "
                "it, not starting another one"
            )
            return earlier
        if earlier is not None:
            backend.discard(earlier, log_line)
        try:
            return backend.submit(request, log_line)
        except BaseException:
            journal.clear()  # nothing was left running: a stale handle must not wedge later tries
            raise

    def take_over(self, journal: HandleJournal, backend: CommandBackend, log_line: LineSink) -> Handle | None:
        """The handle an earlier try left for ``backend``; a handle of another backend is ended first.

        Selection may change between tries (a connection added or removed): the earlier try's
        command must not go on unseen while this try runs it again (review M10).
        """
        handle = journal.load()
        if handle is None:
            return None
        if handle.get("backend") == backend.name:
            return handle
        other = handle.get("backend")
        log_line(
            f"Task {self.task_label}: an earlier try ran this command on the {other} executor; this try runs "
            f"on {backend.name}: stopping and removing the earlier one first"
        )
        try:
            earlier_backend = self.backend(str(other))
        except Exception as exc:
            raise CmdExecConfigError(
                f"Task {self.task_label}: an earlier try left a {other} command that cannot be stopped "
                f"({exc}); it may still run. Stop it by hand, then clear the task's state store and retry"
            ) from exc
        if isinstance(earlier_backend, RemoteBackend):
            earlier_backend.stop(handle, "Stopped by Airflow: a later try of the task runs elsewhere")
            earlier_backend.discard(handle, log_line)
        journal.clear(force=True)
        return None


class HandleJournal:
    """The handle of a remote command in the task's ``task_state_store`` (Airflow 3.3, AIP-103).

    The store survives the retries of a task instance (XComs do not: they are cleared before each
    try), so it is where a later try finds the container, ECS task or pod of an earlier one. The first
    try of a task instance cannot have an earlier one, so it never reads the store: a local command
    then costs no state-store call at all.
    """

    key = "cmdexec_remote_command"

    def __init__(self, store: Any, first_try: bool = False) -> None:
        self.store = store
        self.first_try = first_try
        self._holds_handle = False

    def load(self) -> Handle | None:
        if self.store is None or self.first_try:
            return None
        value = self.store.get(self.key)
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
