"""Following many ECS tasks at once in the triggerer, with a few API calls per round for all of them.

Per cluster (and credentials) one loop per triggerer process serves every deferred ECS task of
that cluster. Each round (the connection's ``poll_interval``) it makes:

- one DescribeTasks per 100 followed tasks (ECS's maximum per call);
- one FilterLogEvents per log group per 100 streams of running tasks, which returns only the
  streams' new events: a stream without new data costs nothing more.

The states and the logs have a beat each (the streams read are those of the tasks the states
saw running), their batches go out in parallel, and each beat is fixed: a slow answer delays the
next round by what it took beyond the interval, not by the whole interval on top of it (at a few
hundred tasks, that is what keeps a line's way to the task log short). Each backs off on its own:
while DescribeTasks is throttled (and botocore retries it), the log still arrives every round.

Per-task GetLogEvents/DescribeTasks every 2 s (what the blocking path and most operators do) would
throttle an account at a few dozen concurrent tasks (review M1, L15). A failed or throttled round
is retried with a doubled interval (up to a minute) and never ends a task; the interval recovers
after a good round.

Per stream, events are delivered in (timestamp, eventId) order, each once: the cursor is the last
timestamp delivered plus the ids delivered at that timestamp. Docker's awslogs driver sends a
stream's events in order, so nothing older than the cursor arrives later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_cmdexec_provider.aws import aws_message
from airflow_cmdexec_provider.backends.base import (
    MAX_WATCH_BACKOFF_SECONDS,
    CommandGone,
    CommandResult,
    Handle,
    LineSink,
    WatchError,
)

if TYPE_CHECKING:
    from airflow_cmdexec_provider.backends.ecs import EcsBackend

log = logging.getLogger(__name__)

DESCRIBE_BATCH = 100  # DescribeTasks accepts at most 100 tasks
STREAMS_BATCH = 100  # FilterLogEvents accepts at most 100 log stream names
MISSING_ROUNDS_LIMIT = 30

_LOOPS: dict[tuple[Any, ...], _ClusterLoop] = {}


async def follow(backend: EcsBackend, handle: Handle, log_line: LineSink) -> CommandResult:
    """Wait for the task of ``handle`` to end, forwarding its log, in the process-wide loop of its cluster."""
    key = backend.watch_key()
    loop = _LOOPS.get(key)
    if (
        loop is None or loop.event_loop is not asyncio.get_running_loop()
    ):  # one per event loop (dag.test runs many)
        loop = _LOOPS[key] = _ClusterLoop(backend)
    return await loop.follow(_Followed(handle=handle, log_line=log_line, backend=backend))


@dataclass
class _Followed:
    """One task followed by a loop, and its place in its log stream."""

    handle: Handle
    log_line: LineSink
    backend: EcsBackend
    future: asyncio.Future[CommandResult] | None = None
    cursor: int | None = None  # timestamp (ms) of the last event delivered
    ids_at_cursor: set[str] = field(default_factory=set)
    missing_rounds: int = 0
    drain_until: float | None = None

    @property
    def arn(self) -> str:
        return str(self.handle["task_arn"])

    @property
    def stream(self) -> tuple[str, str, str | None] | None:
        awslogs = self.handle.get("awslogs") or {}
        if not awslogs.get("stream"):
            return None
        return awslogs["group"], awslogs["stream"], awslogs.get("region")

    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Forward the events not delivered before, in order (up to the end marker)."""
        fresh = []
        for event in sorted(events, key=_event_order):
            timestamp, event_id = int(event.get("timestamp", 0)), str(event.get("eventId"))
            if self.cursor is not None and (
                timestamp < self.cursor or (timestamp == self.cursor and event_id in self.ids_at_cursor)
            ):
                continue
            if timestamp != self.cursor:
                self.cursor, self.ids_at_cursor = timestamp, set()
            self.ids_at_cursor.add(event_id)
            fresh.append(event)
        self.backend.forward_events(self.handle, fresh, self.log_line)


def _event_order(event: dict[str, Any]) -> tuple[int, int, str]:
    event_id = str(event.get("eventId", ""))
    return int(event.get("timestamp", 0)), int(event_id) if event_id.isdigit() else 0, event_id


class _Pacing:
    """When a kind of call (the task states, the logs) is next due: every round while it succeeds;
    after a failure (throttling) the wait doubles, up to a minute, and recovers on the first success."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.delay = interval
        self.next_at = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def failed(self) -> float:
        self.delay = min(self.delay * 2, MAX_WATCH_BACKOFF_SECONDS)
        self.next_at = time.monotonic() + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.delay, self.next_at = self.interval, 0.0


class _ClusterLoop:
    """The rounds of one cluster: see the module docstring."""

    def __init__(self, backend: EcsBackend) -> None:
        self.backend = backend  # whose clients (same cluster, same credentials) make the shared calls
        self.event_loop = asyncio.get_running_loop()
        self.interval = max(backend.poll_interval, 1.0)
        self.followed: dict[str, _Followed] = {}
        # Two beats, the states and the logs, each every interval with its own back-off, so that
        # neither a slow nor a throttled call of one kind delays the other.
        self._beats: dict[str, asyncio.Task[None]] = {}
        # Apart: a throttled DescribeTasks must not hold back the log, nor a throttled log the states.
        self.states = _Pacing(self.interval)
        self.logs = _Pacing(self.interval)

    async def follow(self, followed: _Followed) -> CommandResult:
        followed.future = asyncio.get_running_loop().create_future()
        self.followed[followed.arn] = followed
        for name, step in (("states", self._states_round), ("logs", self._logs_round)):
            beat = self._beats.get(name)
            if beat is None or beat.done():  # each ends when nothing is left to follow
                self._beats[name] = asyncio.create_task(self._beat(step))
        try:
            return await followed.future
        finally:  # also when the trigger is cancelled
            self.followed.pop(followed.arn, None)

    async def _beat(self, step: Callable[[], Awaitable[None]]) -> None:
        while self.followed:
            began = time.monotonic()
            try:
                await step()
            except Exception as exc:  # noqa: BLE001 - a bug must not leave every trigger of the cluster waiting forever
                for followed in list(self.followed.values()):
                    if followed.future is not None and not followed.future.done():
                        followed.future.set_exception(exc)
                return
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))  # a fixed beat

    async def _logs_round(self) -> None:
        # Streams of the tasks seen running (or stopped, for the end of their log) by the states.
        reading = [
            f
            for f in self.followed.values()
            if f.stream is not None
            and "marker" not in f.handle
            and f.handle.get("last_status") not in (None, "PROVISIONING", "PENDING")
        ]
        events = await self._read_logs_due(reading)
        for f in reading:
            if f.stream is not None and f.future is not None and not f.future.done():
                f.deliver(events.get(f.stream[1], []))

    async def _states_round(self) -> None:
        followed = list(self.followed.values())
        described = await self._describe_due([f.arn for f in followed])
        if described is None:
            return
        for f in followed:
            if f.future is None or f.future.done():
                continue
            try:
                result = self._on_description(f, described.get(f.arn))
            except CommandGone as exc:
                f.future.set_exception(exc)
                continue
            if result is not None:
                f.future.set_result(result)

    async def _describe_due(self, arns: list[str]) -> dict[str, dict[str, Any]] | None:
        """The tasks' states, or None when not due (backing off) or failed: then nothing ends this round."""
        if not self.states.due():
            return None
        try:
            described = await self._describe(arns)
        except WatchError as exc:
            delay = self.states.failed()
            for followed in list(self.followed.values()):
                followed.log_line(
                    f"WARNING: could not read the ECS task's state ({exc}); the command goes on, "
                    f"retrying in {delay:.0f} s"
                )
            return None
        self.states.succeeded()
        return described

    async def _read_logs_due(self, followed: list[_Followed]) -> dict[str, list[dict[str, Any]]]:
        if not followed or not self.logs.due():
            return {}
        events, failures = await self._read_logs(followed)
        if not failures:
            self.logs.succeeded()
            return events
        delay = self.logs.failed()
        for f, message in failures:
            f.log_line(
                f"WARNING: could not read the container's log ({message}); the command goes on, "
                f"retrying in {delay:.0f} s"
            )
        return events

    async def _describe(self, arns: list[str]) -> dict[str, dict[str, Any]]:
        """The state of every followed task: one DescribeTasks per 100 tasks, all at once."""
        batches = [arns[start : start + DESCRIBE_BATCH] for start in range(0, len(arns), DESCRIBE_BATCH)]
        found: dict[str, dict[str, Any]] = {}
        for tasks in await asyncio.gather(
            *(asyncio.to_thread(self._describe_batch, batch) for batch in batches)
        ):
            found.update({task["taskArn"]: task for task in tasks})
        return found

    def _describe_batch(self, arns: list[str]) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        backend = self.backend
        try:
            response = backend.ecs.describe_tasks(cluster=backend.config.cluster_name, tasks=arns)
        except (ClientError, BotoCoreError) as exc:
            raise WatchError(f"ECS DescribeTasks failed: {aws_message(exc)}") from exc
        return list(response.get("tasks") or [])

    async def _read_logs(
        self, followed: list[_Followed]
    ) -> tuple[dict[str, list[dict[str, Any]]], list[tuple[_Followed, str]]]:
        """New events of the followed streams, by stream name, and the tasks whose read failed (with
        why); one FilterLogEvents per log group and 100 streams, all at once."""
        by_group: dict[tuple[str, str | None], list[tuple[_Followed, str]]] = {}
        for f in followed:
            if f.stream is None:
                continue  # _round passes only tasks whose log stream is known
            group, stream, region = f.stream
            by_group.setdefault((group, region), []).append((f, stream))
        batches = [
            (group, region, members[start : start + STREAMS_BATCH])
            for (group, region), members in by_group.items()
            for start in range(0, len(members), STREAMS_BATCH)
        ]
        events: dict[str, list[dict[str, Any]]] = {}
        failures: list[tuple[_Followed, str]] = []
        for batch, (found, failure) in zip(
            batches,
            await asyncio.gather(*(asyncio.to_thread(self._read_batch, *batch) for batch in batches)),
            strict=True,
        ):
            for event in found:
                events.setdefault(event.get("logStreamName", ""), []).append(event)
            if failure is not None:
                failures.extend((f, failure) for f, _ in batch[2])
        return events, failures

    def _read_batch(
        self, group: str, region: str | None, chunk: list[tuple[_Followed, str]]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The batch's new events, and why the read failed (None if it did not)."""
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamNames": [stream for _, stream in chunk]}
        cursors = [f.cursor for f, _ in chunk]
        if None not in cursors:
            kwargs["startTime"] = min(c for c in cursors if c is not None)
        found: list[dict[str, Any]] = []
        try:
            while True:
                response = self.backend.logs(region).filter_log_events(**kwargs)
                found.extend(response.get("events", []))
                if not response.get("nextToken"):
                    return found, None
                kwargs["nextToken"] = response["nextToken"]
        except (ClientError, BotoCoreError) as exc:
            if "ResourceNotFoundException" in str(exc):  # no stream yet
                return found, None
            return found, aws_message(exc)

    def _on_description(self, f: _Followed, task: dict[str, Any] | None) -> CommandResult | None:
        handle, backend = f.handle, f.backend
        if task is None:
            f.missing_rounds += 1
            if f.missing_rounds > MISSING_ROUNDS_LIMIT:
                raise CommandGone(f"{backend.label}: ECS task {f.arn} no longer exists")
            return None
        f.missing_rounds = 0
        status = task.get("lastStatus")
        if status != handle.get("last_status"):
            f.log_line(f"ECS task {f.arn.rsplit('/', 1)[-1]} is {status}")
            handle["last_status"] = status
        if status != "STOPPED":
            return None
        exit_code = backend.exit_code(handle, task)
        if exit_code is None or "marker" in handle or f.stream is None:
            return backend.result(handle, task)
        if f.drain_until is None:
            f.drain_until = time.monotonic() + backend.drain_limit(failed=exit_code != 0)
        if time.monotonic() >= f.drain_until:
            f.log_line(
                f"WARNING: the end of the container's log did not arrive within "
                f"{backend.drain_limit(failed=exit_code != 0)} s; the log above may be incomplete"
            )
            return backend.result(handle, task)
        return None  # stopped: keep reading its log until the end marker arrives
