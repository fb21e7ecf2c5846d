"""The backend protocol: what every place that runs commands provides, and what remote ones add.

A ``CommandRequest`` says what to run and where; a backend runs it and returns a ``CommandResult``.
Files that the operator prepared for the command (runner scripts, input.json) live in a per-try
IO directory on the worker; the command names them with ``IoFile`` and every backend maps them to
where that directory is visible to the command. Whatever the command writes into the IO directory
comes back to the worker.

Two kinds of backend:

- ``CommandBackend``: runs a command and can kill it (``run``/``kill``). The local backend is one.
- ``RemoteBackend``: the command runs somewhere that outlives the worker process (a container, an
  ECS task, a pod). Its life is split into steps over a JSON ``Handle`` (no secrets in it), so that
  a later process can take over: ``submit`` starts it, ``poll``/``watch`` follow it, ``exists``
  checks a saved handle, ``fetch_outputs`` brings the IO dir back, ``stop`` asks it to end and
  ``cleanup`` removes whatever it left. ``run``, ``wait``, ``resume`` and ``watch`` are built here
  from those steps once for every remote backend; the operator, the selection hook and the trigger
  rely on this contract only.

A backend is registered by name in ``backends/registry.py`` (third parties: the entry point group
``airflow_cmdexec_provider.backends``) and built for one task with ``from_settings``, which raises
``BackendNotConfigured`` only when its configuration is definitely absent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from airflow_cmdexec_provider.exceptions import BackendError

log = logging.getLogger(__name__)

LineSink = Callable[[str], None]
Handle = dict[str, Any]
HandleSink = Callable[[Handle], None]

# Watching a remote command never kills it: a failed status or log read is retried, backing off up
# to this many seconds between attempts, for as long as the command may run (review M1).
MAX_WATCH_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class IoFile:
    """A file in the request's IO directory, named in a command line."""

    name: str


@dataclass(frozen=True, kw_only=True)
class CommandRequest:
    """What to run: a command line in a working directory of a project, with an environment."""

    task_label: str
    project_dir: Path
    workdir: str
    io_dir: Path
    command: tuple[str | IoFile, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Whether what the command writes into the IO dir must come back (py>/rb>: output.json). sh>
    # reports only its exit code, so a remote backend may skip copying the IO dir back.
    needs_outputs: bool = True
    # Whether env holds a secret (``${secret:...}`` of a .dig task): a remote backend must not put it
    # where others can read it (ECS RunTask overrides, a Kubernetes pod spec).
    secret_env: bool = False

    @property
    def working_dir(self) -> Path:
        return self.project_dir / self.workdir if self.workdir else self.project_dir

    def argv(self, io_dir: str | Path) -> list[str]:
        """Return the command line with IO files resolved under ``io_dir``."""
        return [str(Path(io_dir) / a.name) if isinstance(a, IoFile) else a for a in self.command]


@dataclass(frozen=True)
class CommandResult:
    """How the command ended. ``reason`` explains an abnormal end (OOM kill, ECS stop reason)."""

    exit_code: int
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskSettings:
    """What a backend may read of one task to configure itself: JSON values only, no secrets.

    ``docker``, ``ecs`` and ``kubernetes`` are the task's Digdag params of the same names;
    ``executor_options`` holds the params of third-party backends, keyed by backend name.
    """

    task_label: str
    docker: Mapping[str, Any] | None = None
    ecs: Mapping[str, Any] | None = None
    kubernetes: Mapping[str, Any] | None = None
    executor_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    timeout_seconds: float | None = None

    def wants_remote(self) -> bool:
        """Whether the task carries params of any backend but local (else it can only run locally)."""
        return any(v is not None for v in (self.docker, self.ecs, self.kubernetes)) or bool(
            self.executor_options
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "task_label": self.task_label,
            "docker": _plain(self.docker),
            "ecs": _plain(self.ecs),
            "kubernetes": _plain(self.kubernetes),
            "executor_options": _plain(self.executor_options),
            "timeout_seconds": self.timeout_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSettings:
        return cls(
            task_label=data["task_label"],
            docker=data.get("docker"),
            ecs=data.get("ecs"),
            kubernetes=data.get("kubernetes"),
            executor_options=data.get("executor_options") or {},
            timeout_seconds=data.get("timeout_seconds"),
        )


def _plain(value: Any) -> Any:
    """Deep copy of mappings and sequences into dicts and lists (for JSON and trigger serialisation)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class WatchError(BackendError):
    """Reading the state or the log of a remote command failed; the command itself may still run."""


class CommandGone(BackendError):
    """The remote command no longer exists (removed, or forgotten by the service): a definite end."""


class CommandBackend(ABC):
    """A place to run commands. ``kill`` may be called from a signal handler while ``run`` blocks.

    ``fallback`` is the chain that follows this backend when it is the configured executor type
    (Digdag: the ECS executor falls back to Docker, which falls back to local).
    """

    name: ClassVar[str]
    fallback: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: TaskSettings) -> CommandBackend:
        """Build the backend for one task; ``BackendNotConfigured`` only when its configuration is absent."""

    @abstractmethod
    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult:
        """Run the command to its end and return how it ended."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the command that ``run`` is running, if any."""


class RemoteBackend(CommandBackend):
    """A backend whose command outlives the worker process; see the module docstring.

    ``save_handle`` is set by the selection hook to the task's journal: a backend calls it with the
    handle before it starts remote work (identifiers only) and again once the work exists, so a
    worker crash at any moment leaves a handle through which a later try finds the work. (The
    Docker backend saves while it creates the container, done before it starts it: a try that died
    in between left a created container that the next try finds by its labels and removes.)
    ``forget_handle`` is set by the selection hook too: it deletes the saved handle; a backend may
    call it as the command's remains are removed (``_end``) rather than after.
    """

    poll_interval: float = 2.0

    def __init__(self) -> None:
        self.save_handle: HandleSink | None = None
        self.forget_handle: Callable[[], None] | None = None
        self._current: Handle | None = None
        self._killed = threading.Event()

    # -- steps each remote backend implements ------------------------------------------------
    @abstractmethod
    def submit(self, request: CommandRequest, log_line: LineSink, earlier: Handle | None = None) -> Handle:
        """Start the command and return its handle. On failure nothing is left behind.

        ``earlier`` is a handle saved with ``"starting": True`` by a try that died while starting the
        command: reuse its identifiers, so that whatever it created is found instead of duplicated.
        """

    @abstractmethod
    def poll(self, handle: Handle, log_line: LineSink) -> CommandResult | None:
        """Forward new log lines; return the result once the command ended, else None.

        Raises ``WatchError`` when the state or log could not be read (retried by the caller) and
        ``CommandGone`` when the command no longer exists.
        """

    @abstractmethod
    def exists(self, handle: Handle) -> bool:
        """Whether the work a saved handle names still exists (running or ended but not removed)."""

    @abstractmethod
    def fetch_outputs(self, handle: Handle, io_dir: Path, result: CommandResult) -> None:
        """Bring the files the command wrote into its IO dir back into ``io_dir``."""

    @abstractmethod
    def stop(self, handle: Handle, reason: str) -> None:
        """Ask the command to end (TERM, then KILL after a grace); returns without waiting for it."""

    @abstractmethod
    def cleanup(self, handle: Handle, log_line: LineSink) -> None:
        """Remove the container/task/pod (stopping it first if it still runs) and every temporal
        object; idempotent, whatever happened before."""

    # -- built from the steps, the same for every remote backend ------------------------------
    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult:
        handle = self.submit(request, log_line)
        forget_inputs(request.io_dir)
        return self._follow(handle, request.io_dir, log_line)

    def resume(self, handle: Handle, request: CommandRequest, log_line: LineSink) -> CommandResult | None:
        """Re-attach to the command of an earlier try: the rest of its log, its result, its outputs.

        Returns None when that command no longer exists; whatever it left is removed and the caller
        runs the command afresh.
        """
        if handle.get("starting"):
            started = self.submit(request, log_line, earlier=handle)
            forget_inputs(request.io_dir)
            return self._follow(started, request.io_dir, log_line)
        if not self.exists(handle):
            log_line(
                f"The {self.name} command of an earlier try ({_describe(handle)}) no longer exists: "
                "running the command again"
            )
            self.discard(handle, log_line)
            return None
        log_line(
            f"Re-attached to the {self.name} command started by an earlier try of this task "
            f"({_describe(handle)}): not starting another one"
        )
        return self._follow(handle, request.io_dir, log_line)

    def _follow(self, handle: Handle, io_dir: Path, log_line: LineSink) -> CommandResult:
        self._current = handle
        try:
            result = self.wait(handle, log_line)
            self.fetch_outputs(handle, io_dir, result)
            return result
        finally:
            self._current = None
            self._end(handle, log_line)

    def _end(self, handle: Handle, log_line: LineSink) -> None:
        """Remove what the ended (or stopped) command left; the hook forgets its handle afterwards.
        Backends that find an earlier try's remains without a handle forget it meanwhile instead."""
        self.discard(handle, log_line)

    def wait(self, handle: Handle, log_line: LineSink) -> CommandResult:
        """Poll until the command ends. Failed reads are retried with a warning; they never stop it."""
        backoff = WatchBackoff(self.poll_interval)
        while True:
            try:
                result = self.poll(handle, log_line)
            except WatchError as exc:
                time.sleep(backoff.failed(exc, log_line))
                continue
            if result is not None:
                return result
            backoff.succeeded()
            time.sleep(self.poll_interval)

    async def watch(self, handle: Handle, log_line: LineSink) -> CommandResult:
        """``wait`` for the triggerer's event loop. Backends override it with something cheaper
        (one stream per container, one batched status call per cluster) when they can."""
        backoff = WatchBackoff(self.poll_interval)
        while True:
            try:
                result = await asyncio.to_thread(self.poll, handle, log_line)
            except WatchError as exc:
                await asyncio.sleep(backoff.failed(exc, log_line))
                continue
            if result is not None:
                return result
            backoff.succeeded()
            await asyncio.sleep(self.poll_interval)

    def kill(self) -> None:
        """Stop the command ``run``/``resume`` follows; ``wait`` then returns with how it ended."""
        self._killed.set()
        handle = self._current
        if handle is not None:
            self.stop(handle, "Stopped by Airflow: the task was killed or timed out")

    def discard(self, handle: Handle, log_line: LineSink) -> None:
        """``cleanup`` that logs instead of raising: used on every exit path, where an error of its
        own must not hide the task's (review L8)."""
        try:
            self.cleanup(handle, log_line)
        except Exception as exc:  # noqa: BLE001 - an error of the cleanup must not hide the task's
            log_line(
                f"WARNING: could not clean up after the {self.name} command ({_describe(handle)}): {exc}"
            )


def alongside(call: Callable[..., Any], *args: Any) -> Future[Any]:
    """Run ``call(*args)`` in a thread of its own while the caller goes on (two round trips to two
    services, e.g. the API server and the Docker daemon, then cost the longer one, not their sum).
    ``result()`` waits for it and raises what it raised."""
    future: Future[Any] = Future()

    def target() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=target, name="cmdexec-alongside", daemon=True).start()
    return future


class WatchBackoff:
    """Retry delays for failed watch calls: the poll interval doubling up to a minute, one warning each."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.delay = interval
        self.failures = 0

    def failed(self, exc: Exception, log_line: LineSink) -> float:
        self.failures += 1
        delay = self.delay
        log_line(
            f"WARNING: could not read the command's state or log ({exc}); the command goes on, "
            f"retrying in {delay:.0f} s"
        )
        self.delay = min(self.delay * 2, MAX_WATCH_BACKOFF_SECONDS)
        return delay

    def succeeded(self) -> None:
        self.delay = self.interval
        self.failures = 0


def forget_inputs(io_dir: Path) -> None:
    """Remove the runner files and ``input.json`` (the params) from the worker's disk once the remote
    command has its copy: a worker killed while it waits then leaves no secret behind. What the
    command writes comes back into the same (now empty) folder."""
    for child in io_dir.iterdir():
        if child.is_file() or child.is_symlink():
            child.unlink(missing_ok=True)


def _describe(handle: Mapping[str, Any]) -> str:
    """A short human name of the work a handle points at (no secrets are in handles)."""
    for key in ("container", "task_arn", "pod"):
        if handle.get(key):
            return f"{key.replace('_', ' ')} {handle[key]}"
    return "not started yet"
