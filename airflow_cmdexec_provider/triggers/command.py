"""Wait for a command that runs remotely (a Docker container or an ECS task) in the triggerer.

The trigger holds only the backend's JSON handle and the task's non-secret params; it rebuilds the
backend from the Airflow connections, polls it (forwarding new log lines to the task log) and fires
one event when the command ended. It owns the task's ``execution_timeout``: past the deadline it
stops the remote command and cleans up before it reports, so a timeout never leaves a container or
an ECS task running (Airflow's own trigger timeout neither stops remote work nor calls ``on_kill``).
When a user marks the deferred task failed or successful, ``on_kill`` stops the remote command too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

STOP_WAIT_SECONDS = 60


class CommandTrigger(BaseTrigger):
    """Poll a remote command until it ends; see the module docstring.

    :param executor: ``docker`` or ``ecs``: the backend that started the command.
    :param handle: the backend's handle of the command (no secrets in it).
    :param docker: the task's Digdag ``docker`` params.
    :param ecs: the task's Digdag ``ecs`` params.
    :param task_label: ``dag_id.task_id`` for messages.
    :param deadline: epoch seconds when the task's ``execution_timeout`` runs out, or None.
    :param poll_interval: seconds between polls.
    """

    def __init__(
        self,
        *,
        executor: str,
        handle: dict[str, Any],
        docker: Mapping[str, Any] | None,
        ecs: Mapping[str, Any] | None,
        task_label: str,
        deadline: float | None,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__()
        self.executor = executor
        self.handle = dict(handle)
        self.docker = dict(docker) if docker is not None else None
        self.ecs = dict(ecs) if ecs is not None else None
        self.task_label = task_label
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "executor": self.executor,
                "handle": self.handle,
                "docker": self.docker,
                "ecs": self.ecs,
                "task_label": self.task_label,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
            },
        )

    def _backend(self) -> Any:
        from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook

        hook = CommandExecutorHook(executor=self.executor, docker=self.docker, ecs=self.ecs,
                                   task_label=self.task_label)
        return hook.backend(self.executor)

    def _log_line(self, line: str) -> None:
        self.log.info("%s", line)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        backend = await asyncio.to_thread(self._backend)
        while True:
            if self.deadline is not None and time.time() >= self.deadline:
                await asyncio.to_thread(self._stop_and_clean, backend, "execution_timeout")
                yield TriggerEvent({"status": "timeout", "handle": self.handle})
                return
            try:
                result = await asyncio.to_thread(backend.poll, self.handle, self._log_line)
            except Exception as exc:  # the remote side failed: report it, stop what may still run
                await asyncio.to_thread(self._stop_and_clean, backend, f"error while waiting: {exc}")
                yield TriggerEvent({"status": "error", "handle": self.handle, "message": str(exc)})
                return
            if result is not None:
                yield TriggerEvent({"status": "finished", "handle": self.handle,
                                    "exit_code": result.exit_code, "reason": result.reason})
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """The user marked the deferred task failed/successful or cleared it: stop the remote command."""
        backend = await asyncio.to_thread(self._backend)
        await asyncio.to_thread(self._stop_and_clean, backend, "the task was marked or cleared by a user")

    def _stop_and_clean(self, backend: Any, why: str) -> None:
        """Stop the remote command, wait (bounded) until it is stopped, and delete what it left."""
        self._log_line(f"Stopping {self.executor} command of task {self.task_label}: {why}")
        backend.stop(self.handle, f"Stopped by Airflow: {why}")
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            if backend.poll(self.handle, self._log_line) is not None:
                break
            time.sleep(1)
        backend.cleanup(self.handle, self._log_line)
        self._log_line(f"Stopped and cleaned up the {self.executor} command of task {self.task_label}")
