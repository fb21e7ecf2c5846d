"""Wait for a remote command (a container, an ECS task, a pod) in the triggerer.

The trigger holds only the backend's JSON handle and the task's settings (no secrets); it rebuilds
the backend from the Airflow connections, follows the command with the backend's ``watch``
(forwarding new log lines to the task log) and fires one event when the command ended. It owns
the task's ``execution_timeout``: past the deadline it stops the remote command and cleans up
before it reports (Airflow's own trigger timeout neither stops remote work nor calls ``on_kill``).
When a user marks the deferred task failed or successful, ``on_kill`` stops the command.

Whatever fails while stopping or cleaning up, the trigger still yields its event (review H4), so
the task always resumes and reports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_cmdexec_provider.backends.base import CommandGone, Handle, RemoteBackend, TaskSettings

# Airflow cancels a trigger's on_kill after 30 s ([triggerer] on_kill_timeout): stop and clean up
# within that, without waiting for the remote command to be gone (review M13).
ON_KILL_BUDGET_SECONDS = 25


class CommandTrigger(BaseTrigger):
    """Follow a remote command until it ends; see the module docstring.

    :param executor: the name of the backend that started the command.
    :param handle: the backend's handle of the command (no secrets in it).
    :param settings: the task's ``TaskSettings`` as JSON.
    :param deadline: epoch seconds when the task's ``execution_timeout`` runs out, or None.
    """

    def __init__(
        self, *, executor: str, handle: Handle, settings: dict[str, Any], deadline: float | None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Airflow's BaseTrigger.__init__ is unannotated
        self.executor = executor
        self.handle = dict(handle)
        self.settings = dict(settings)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "executor": self.executor,
                "handle": self.handle,
                "settings": self.settings,
                "deadline": self.deadline,
            },
        )

    @property
    def task_label(self) -> str:
        return str(self.settings.get("task_label"))

    def _backend(self) -> RemoteBackend:
        from airflow_cmdexec_provider.backends import registry

        backend = registry.backend_class(self.executor).from_settings(TaskSettings.from_json(self.settings))
        if not isinstance(backend, RemoteBackend):
            raise TypeError(f"the {self.executor} executor cannot be waited for in the triggerer")
        return backend

    def _log_line(self, line: str) -> None:
        self.log.info("%s", line)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            backend = await asyncio.to_thread(self._backend)
        except Exception as exc:  # noqa: BLE001 - the task's retry takes the command over
            # Nothing is stopped: the command may be fine, and the task's retry takes it over.
            yield self._event("error", message=f"cannot follow the {self.executor} command: {exc}")
            return
        timeout = None if self.deadline is None else max(self.deadline - time.time(), 0.0)
        try:
            result = await asyncio.wait_for(backend.watch(self.handle, self._log_line), timeout)
        except TimeoutError:
            await self._stop_and_clean(backend, "execution_timeout")
            yield self._event("timeout")
            return
        except CommandGone as exc:
            yield self._event("error", message=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug or an unexpected answer: report it, the worker cleans up
            yield self._event("error", message=f"{type(exc).__name__}: {exc}")
            return
        yield self._event("finished", exit_code=result.exit_code, reason=result.reason)

    def _event(self, status: str, **payload: Any) -> TriggerEvent:
        # Airflow's TriggerEvent.__init__ is unannotated.
        return TriggerEvent({"status": status, "handle": self.handle, **payload})  # type: ignore[no-untyped-call]

    async def on_kill(self) -> None:
        """The user marked the deferred task failed/successful or cleared it: stop the remote command."""
        backend = await asyncio.to_thread(self._backend)
        await self._stop_and_clean(backend, "the task was marked or cleared by a user")

    async def _stop_and_clean(self, backend: RemoteBackend, why: str) -> None:
        """Ask the command to stop and remove what it left, within Airflow's on_kill budget; never raise."""
        self._log_line(f"Stopping the {self.executor} command of task {self.task_label}: {why}")

        def stop_and_clean() -> None:
            try:
                backend.stop(self.handle, f"Stopped by Airflow: {why}")
            except Exception as exc:  # noqa: BLE001 - a failed stop must not skip the cleanup
                self._log_line(f"WARNING: could not stop the {self.executor} command: {exc}")
            backend.discard(self.handle, self._log_line)

        try:
            await asyncio.wait_for(asyncio.to_thread(stop_and_clean), ON_KILL_BUDGET_SECONDS)
        except TimeoutError:
            self._log_line(
                f"WARNING: stopping the {self.executor} command took more than "
                f"{ON_KILL_BUDGET_SECONDS} s; it goes on in the background"
            )
            return
        self._log_line(f"Stopped and cleaned up the {self.executor} command of task {self.task_label}")
