"""Run the command in a Docker container (Digdag's ``docker`` executor), with a workspace of its own.

A try's container is created (not started), the project (the files ECS ships) and the IO dir's
files are copied into it at the same absolute paths as on the worker, then it is started; once it
ended, its IO dir is copied back out into the worker's IO dir. Nothing of the worker's disk is
mounted: a command cannot change the DAG folder or another try's files (review H6), and a deferred
task completes wherever its trigger and its resumption run, as long as they reach the same Docker
daemon (reviews H5, M11). Files a command writes into the project are lost with its container.

The daemon is driven through its Engine API by default, or through the docker CLI when the task
sets ``docker.docker`` or CLI flags (``run_options``, ``build_options``): see ``docker_transports.py``.

Differences from Digdag (its section 9.2), on purpose:
- the environment never appears on a command line (API: in the create request; CLI: a private env
  file that exists only while ``docker create`` runs); the worker's environment does not reach it;
- every container has a name unique per task try (a hash of the full dag/task/run/map index/try)
  and labels naming that try; it is stopped and removed after success, failure, kill and timeout;
- an OOM kill is reported as such; build output and pulls go to the task log; ``build`` images are
  tagged per project.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import json
import logging
import os
import queue
import re
import stat
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.backends.base import (
    CommandGone,
    CommandRequest,
    CommandResult,
    Handle,
    LineSink,
    RemoteBackend,
    TaskSettings,
    WatchBackoff,
    WatchError,
    alongside,
)
from airflow_cmdexec_provider.backends.docker_transports import (
    DaemonError,
    DockerCli,
    EngineApi,
    NameInUse,
    NoSuchContainer,
    NoSuchImage,
    NoSuchPath,
    dockerfile,
)
from airflow_cmdexec_provider.config import DockerConfig, docker_config
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError, CommandNotFound
from airflow_cmdexec_provider.runner.workdir import iter_project_files, link_info

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10
LABEL_PREFIX = "io.github.cmdexec."
# The labels that name a task instance; with try_number they name one try.
INSTANCE_LABELS = ("dag_id", "task_id", "run_id", "map_index")
OOM_REASON = (
    "OOMKilled: the container ran out of memory; raise its memory limit (docker.run_options, e.g. -m 2g)"
)
# What a container may send back in its IO dir: more fails the task instead of filling the worker's disk.
MAX_OUTPUT_BYTES = 1 << 30
MAX_OUTPUT_ENTRIES = 10_000
CHUNK = 1 << 20
SAVE_INTERVAL_SECONDS = 1.0  # how often (at most) the log position is saved in the task's state store
# The runtime's error when the program to run does not exist (runc; "stat" for a path).
_PROGRAM_MISSING = re.compile(
    r'exec: "([^"]+)": (?:executable file not found|stat \S+: no such file or directory)'
)
_STAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")
_END = object()


def container_name(labels: Mapping[str, str]) -> str:
    """The container of one task try: readable slugs, then a hash of the full identity, so that two
    tries (or two tasks whose ids share a long prefix) never get the same name (review H1)."""
    identity = "|".join(str(labels.get(key, "")) for key in (*INSTANCE_LABELS, "try_number"))
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    task = _slug(str(labels.get("task_id", "task")))[-32:].strip("-.")  # the end of a task id names it best
    dag = _slug(str(labels.get("dag_id", "dag")))[:24]
    return f"cmdexec-{dag}-{task}-try{labels.get('try_number', '1')}-{digest}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.") or "x"


def build_tag(config: DockerConfig, project_dir: Path) -> str:
    """The image a ``build`` makes: named per project (review L12, Digdag: per project id), tagged with
    a hash of what makes it (base image, build lines, build options)."""
    project = hashlib.sha1(str(project_dir).encode()).hexdigest()[:12]
    recipe = json.dumps(
        {"image": config.image, "build": list(config.build), "build_options": list(config.build_options)},
        separators=(",", ":"),
    )
    return f"cmdexec-build-{project}:{hashlib.sha1(recipe.encode()).hexdigest()}"


class DockerBackend(RemoteBackend):
    """Run a request in a container of its own; see the module docstring."""

    name = "docker"
    fallback = ("local",)

    @classmethod
    def from_settings(cls, settings: TaskSettings) -> DockerBackend:
        return cls(docker_config(settings.docker, settings.task_label))

    def __init__(self, config: DockerConfig, stop_grace: int = STOP_GRACE_SECONDS) -> None:
        super().__init__()
        self.config = config
        self.stop_grace = stop_grace
        self.poll_interval = 1.0
        self._transport: EngineApi | DockerCli | None = None
        self._saved_position: tuple[Any, Any] | None = None
        self._last_save = 0.0

    @property
    def label(self) -> str:
        return f"Task {self.config.task_label}"

    @property
    def transport(self) -> EngineApi | DockerCli:
        if self._transport is None:
            self._transport = DockerCli(self.config) if self.cli_reason() else EngineApi(self.config)
        return self._transport

    def cli_reason(self) -> str | None:
        """Why this task needs the docker CLI, or None: the Engine API does it."""
        if self.config.cli is not None:
            return "docker.docker is set"
        if self.config.run_options:
            return "docker.run_options are docker CLI flags"
        if self.config.build_options:
            return "docker.build_options are docker CLI flags"
        return None

    # -- starting ------------------------------------------------------------------------------------
    def submit(self, request: CommandRequest, log_line: LineSink, earlier: Handle | None = None) -> Handle:
        """Create the container, copy the workspace in, start it; return its handle.

        ``earlier`` is the handle of a try that died while starting: its container is taken over if
        it was started, else removed and made anew. On any failure nothing is left behind.
        """
        transport = self.transport
        log_line(
            f"{self.label} runs in Docker through {transport.describe()} "
            f"({self.cli_reason() or 'the default'})"
        )
        if earlier is not None:
            adopted = self._adopt(earlier, log_line)
            if adopted is not None:
                return adopted
        image = self._image(request, log_line)
        name = container_name(request.labels)
        handle: Handle = {
            "backend": self.name,
            "starting": True,
            "container": name,
            "io_dir": str(request.io_dir),
            "outputs": request.needs_outputs,
        }
        # The state-store write (a round trip to the API server) goes on while the daemon creates the
        # container and copies the workspace in; it is done before the container starts. A crash
        # before then leaves a created container that no handle may name: the next try finds it by
        # its labels and removes it (``_remove_earlier_tries``), so nothing runs twice or stays.
        saving = alongside(self._save, dict(handle))
        created = False
        try:
            self._remove_earlier_tries(request, log_line)
            self._create(name, image, request, log_line)
            created = True
            self._copy_in(name, request)
            saving.result()
            self._current = handle  # kill() stops it from here on
            if self._killed.is_set():
                raise BackendError(f"{self.label} was killed before its container started")
            self._start(name, image, request)
            if self._killed.is_set():  # kill() came while the container was being started
                self.stop(handle, "Stopped by Airflow: the task was killed while its container started")
        except BaseException:
            self._current = None
            saving.exception()  # waits for the save; its error, if any, is not the one to report
            self._discard_failed_start(handle, request, created, log_line)
            raise
        # Not saved again here (a state-store write is a round trip to the API server, ~20-30 ms): a
        # retry that finds the "starting" handle inspects the container itself (``_adopt``) and takes
        # it over if it was started, which is what it does with a started handle. The first saved log
        # position (a second on, if the command still runs) replaces it.
        del handle["starting"]
        log_line(f"Started container {name}")
        return handle

    def _end(self, handle: Handle, log_line: LineSink) -> None:
        """Remove the container while the hook forgets the handle (two services, one wait): a crash
        in between leaves a container no handle names, which the next try removes by its labels."""
        if self.forget_handle is None:
            super()._end(handle, log_line)
            return
        removing = alongside(self.discard, handle, log_line)
        try:
            self.forget_handle()
        except Exception as exc:  # noqa: BLE001 - the hook forgets it again once the command ended, and fails then
            log.warning("Could not forget the handle of container %s yet: %s", handle["container"], exc)
        finally:
            removing.result()  # discard logs its failures, it does not raise

    def _discard_failed_start(
        self, handle: Handle, request: CommandRequest, created: bool, log_line: LineSink
    ) -> None:
        """Remove the container of a start that failed, if this try made it: the name may be taken by a
        container of another task (review H1), and a create cut short may still have made ours."""
        try:
            ours = created or self._names_this_try(handle["container"], request)
        except BackendError as exc:  # the daemon does not answer: the task's own error says more
            log_line(f"WARNING: could not check whether container {handle['container']} is left: {exc}")
            return
        if ours:
            self.discard(handle, log_line)

    def _adopt(self, earlier: Handle, log_line: LineSink) -> Handle | None:
        """The earlier try's container if it was started; None (after removing it) if it was not."""
        name = earlier["container"]
        info = self.transport.inspect(name)
        if info is None:
            return None
        if info["State"]["Status"] == "created":
            log_line(
                f"Removing container {name}, which an earlier try of this task created but did not start"
            )
            self.transport.remove(name)
            return None
        log_line(
            f"Taking over container {name}, which an earlier try of this task started: "
            "not starting another one"
        )
        handle = {key: value for key, value in earlier.items() if key != "starting"}
        self._save(handle)
        return handle

    def _image(self, request: CommandRequest, log_line: LineSink) -> str:
        """The image to run: built for ``build``, pulled for ``pull_always``; else ``create`` pulls it
        if missing."""
        config, transport = self.config, self.transport
        if config.build:
            tag = build_tag(config, request.project_dir)
            # With pull_always every task builds again, pulling the base: the layers are reused if it
            # did not move.
            if not config.pull_always and transport.image_exists(tag):
                log_line(f"Reusing docker image {tag}")
                return tag
            log_line(f"Building docker image {tag} from {config.image}")
            try:
                transport.build(
                    dockerfile(config.image, config.build),
                    tag,
                    config.pull_always,
                    request.project_dir,
                    log_line,
                )
            except (DaemonError, NoSuchImage) as exc:
                raise BackendError(
                    f"{self.label}: docker build failed for docker.build on {config.image}: {exc}"
                ) from exc
            return tag
        if config.pull_always:
            log_line(f"Pulling docker image {config.image} (docker.pull_always)")
            try:
                transport.pull(config.image, log_line)
            except (DaemonError, NoSuchImage) as exc:
                raise BackendError(
                    f"{self.label}: pulling the image {config.image} failed (docker.pull_always): {exc}. "
                    "Check docker.image, docker.docker_conn_id and the registry"
                ) from exc
        return config.image

    def _remove_earlier_tries(self, request: CommandRequest, log_line: LineSink) -> None:
        """Remove what earlier tries of this task instance left (a crashed try's container that no
        handle names); never a container whose labels name another task instance."""
        current = int(request.labels.get("try_number", "1"))
        if current <= 1:
            return
        labels = {
            f"{LABEL_PREFIX}managed": "true",
            **{
                f"{LABEL_PREFIX}{key}": request.labels[key]
                for key in INSTANCE_LABELS
                if key in request.labels
            },
        }
        for container in self.transport.containers(labels):
            their_try = container["labels"].get(f"{LABEL_PREFIX}try_number", "")
            if their_try.isdigit() and int(their_try) < current:
                log_line(f"Removing container {container['name']}, left by try {their_try} of this task")
                try:
                    self.transport.remove(container["name"])
                except BackendError as exc:  # an old leftover must not fail this try (review L19: say so)
                    log_line(f"WARNING: could not remove container {container['name']}: {exc}")

    def _create(self, name: str, image: str, request: CommandRequest, log_line: LineSink) -> None:
        labels = {
            f"{LABEL_PREFIX}managed": "true",
            **{f"{LABEL_PREFIX}{k}": str(v) for k, v in request.labels.items()},
        }
        for attempt in (1, 2):
            try:
                self.transport.create(
                    name,
                    image,
                    request.argv(request.io_dir),
                    str(request.working_dir),
                    request.env,
                    labels,
                    log_line,
                )
                return
            except NameInUse as exc:
                if attempt == 2 or not self._names_this_try(name, request):
                    raise BackendError(
                        f"{self.label}: the container name {name} is taken by a container of another "
                        f"task; it is left alone: {exc}"
                    ) from exc
                log_line(f"Removing leftover container {name} of an earlier attempt of this try")
                self.transport.remove(name)
            except NoSuchImage as exc:
                raise BackendError(
                    f"{self.label}: the image {image} is not on this Docker host and could not be pulled: "
                    f"{exc}. Check docker.image, docker.docker_conn_id and the registry"
                ) from exc
            except DaemonError as exc:
                raise BackendError(f"{self.label}: Docker could not create the container: {exc}") from exc

    def _names_this_try(self, name: str, request: CommandRequest) -> bool:
        info = self.transport.inspect(name)
        labels = ((info or {}).get("Config") or {}).get("Labels") or {}
        return all(labels.get(f"{LABEL_PREFIX}{key}") == str(value) for key, value in request.labels.items())

    def _copy_in(self, name: str, request: CommandRequest) -> None:
        try:
            self.transport.copy_in(name, workspace_archive(request))
        except CmdExecConfigError as exc:  # a link leaving the project
            raise CmdExecConfigError(f"{self.label}: {exc}") from exc
        except DaemonError as exc:
            raise BackendError(
                f"{self.label}: could not copy the project and the IO folder into container {name}: {exc}"
            ) from exc

    def _start(self, name: str, image: str, request: CommandRequest) -> None:
        try:
            self.transport.start(name)
        except DaemonError as exc:
            program = request.argv(request.io_dir)[0]
            missing = _PROGRAM_MISSING.search(str(exc))
            if missing and missing.group(1) == program:  # not a mount or a path error (review M11)
                raise CommandNotFound(program, f"in the image {image}") from exc
            raise BackendError(f"{self.label}: Docker could not start container {name}: {exc}") from exc

    # -- following -----------------------------------------------------------------------------------
    def poll(self, handle: Handle, log_line: LineSink) -> CommandResult | None:
        """One look (for hosts the triggerer cannot follow, see ``watch``): the state, then the log since
        the handle's position; the result once the container stopped."""
        info = self.transport.inspect(handle["container"])
        if info is None:
            raise self._gone(handle)
        self._read_log(handle, log_line, follow=False)
        return self._finish(handle, info["State"]) if _ended(info["State"]) else None

    def wait(self, handle: Handle, log_line: LineSink) -> CommandResult:
        """Follow the log as it is written (lowest latency) until the container stopped, then read how
        it ended. Failed reads are retried with a warning; they never stop the command (review M1)."""
        backoff = WatchBackoff(self.poll_interval)
        while True:
            log_error = self._try_read_log(handle, log_line, follow=True)
            try:
                info = self.transport.inspect(handle["container"])
            except WatchError as exc:
                time.sleep(backoff.failed(exc, log_line))
                continue
            if info is not None and _ended(info["State"]):
                log_error = self._try_read_log(handle, log_line, follow=False)
            outcome = self._outcome(handle, info, log_error, backoff, log_line)
            if isinstance(outcome, CommandResult):
                return outcome
            time.sleep(outcome)

    async def watch(self, handle: Handle, log_line: LineSink) -> CommandResult:
        """``wait`` in the triggerer's event loop: one log stream per container (an idle HTTP connection
        on the Engine API, one ``docker logs --follow`` on the CLI), no thread and no polling."""
        async with self.transport.watcher() as watcher:
            if watcher is None:
                return await super().watch(handle, log_line)
            backoff = WatchBackoff(self.poll_interval)
            while True:
                log_error = await self._watch_log(watcher, handle, log_line, follow=True)
                try:
                    info = await watcher.inspect(handle["container"])
                except WatchError as exc:
                    await asyncio.sleep(backoff.failed(exc, log_line))
                    continue
                if info is not None and _ended(info["State"]):
                    log_error = await self._watch_log(watcher, handle, log_line, follow=False)
                outcome = self._outcome(handle, info, log_error, backoff, log_line)
                if isinstance(outcome, CommandResult):
                    return outcome
                await asyncio.sleep(outcome)

    def _outcome(
        self,
        handle: Handle,
        info: dict[str, Any] | None,
        log_error: WatchError | None,
        backoff: WatchBackoff,
        log_line: LineSink,
    ) -> CommandResult | float:
        """After the log stream ended: the result if the container stopped (its log read to the end),
        else the seconds to wait before following again (the stream broke, or a daemon restart ended it)."""
        if info is None:
            raise self._gone(handle)
        if _ended(info["State"]):
            if log_error is not None:
                log_line(
                    f"WARNING: the end of the container's log could not be read ({log_error}); "
                    "the log above may be incomplete"
                )
            return self._finish(handle, info["State"])
        if log_error is not None:
            return backoff.failed(log_error, log_line)
        backoff.succeeded()
        return self.poll_interval

    def _try_read_log(self, handle: Handle, log_line: LineSink, follow: bool) -> WatchError | None:
        try:
            self._read_log(handle, log_line, follow)
        except WatchError as exc:
            return exc
        return None

    def _read_log(self, handle: Handle, log_line: LineSink, follow: bool) -> None:
        """Forward the container's log from the handle's position: to its end, or (``follow``) until
        the container stopped. Docker may end a follow before the last entries of a container that
        just stopped, so a follow is always completed by a read to the end (which alone shows a last
        line without a line break). A thread reads the stream; this one waits on a queue, so that it
        saves the position every second and stays interruptible (kill, execution_timeout).

        The reading thread opens and closes the stream itself: closing it from this thread while the
        other one is blocked in a read waits for that read, i.e. for the container's next line or its
        end, which comes only after the stop that follows an execution_timeout (the task then hung
        until its command ended by itself)."""
        cursor = _LogCursor(handle, log_line)
        entries: queue.SimpleQueue[Any] = queue.SimpleQueue()
        try:
            threading.Thread(
                target=_pump,
                args=(self.transport, handle["container"], cursor.since, follow, entries),
                name="cmdexec-docker-log",
                daemon=True,
            ).start()
            while True:
                try:
                    item = entries.get(timeout=SAVE_INTERVAL_SECONDS)
                except queue.Empty:
                    self._save_progress(handle)
                    continue
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                cursor.feed(item)
                self._save_progress(handle)
            if not follow:
                cursor.close()
        except NoSuchContainer as exc:
            raise self._gone(handle) from exc
        finally:
            self._save_progress(handle)

    async def _watch_log(
        self, watcher: Any, handle: Handle, log_line: LineSink, follow: bool
    ) -> WatchError | None:
        """``_read_log`` in the event loop; returns the read's failure, if any."""
        cursor = _LogCursor(handle, log_line)
        try:
            async for entry in watcher.log_entries(handle["container"], cursor.since, follow):
                cursor.feed(entry)
        except WatchError as exc:
            return exc
        except NoSuchContainer as exc:
            raise self._gone(handle) from exc
        finally:
            self._save_progress(handle)
        if not follow:
            cursor.close()
        return None

    def _finish(self, handle: Handle, state: Mapping[str, Any]) -> CommandResult:
        handle["ended"] = True  # cleanup need not stop it
        exit_code = int(state.get("ExitCode", 1))
        return CommandResult(exit_code, OOM_REASON if state.get("OOMKilled") else None)

    def _gone(self, handle: Handle) -> CommandGone:
        return CommandGone(f"{self.label}: container {handle['container']} no longer exists")

    def _save(self, handle: Handle) -> None:
        if self.save_handle is not None:
            self.save_handle(handle)
            self._last_save = time.monotonic()

    def _save_progress(self, handle: Handle) -> None:
        """Save the log position (at most once a second, counted from the handle's own save), so a
        re-attach does not repeat lines. A command that ends within a second saves none: its handle
        is cleared when it ends, so the write would be wasted."""
        position = (handle.get("log_since"), handle.get("log_skip"))
        now = time.monotonic()
        if self.save_handle is None or position == self._saved_position:
            return
        if now - self._last_save < SAVE_INTERVAL_SECONDS:
            return
        self.save_handle(handle)
        self._saved_position = position
        self._last_save = now

    def exists(self, handle: Handle) -> bool:
        return self.transport.inspect(handle["container"]) is not None

    # -- ending --------------------------------------------------------------------------------------
    def fetch_outputs(self, handle: Handle, io_dir: Path, result: CommandResult) -> None:
        """Copy the container's IO dir out into ``io_dir`` (on whichever worker this runs); not for a
        command whose IO dir is not needed afterwards (sh>): a copy costs the daemon a process."""
        if handle.get("outputs") is False:
            return
        name, source = handle["container"], handle["io_dir"]
        try:
            with self.transport.copy_out(name, source) as chunks:
                extract_outputs(chunks, io_dir, Path(source).name, self.label)
        except NoSuchPath as exc:
            if result.exit_code == 0:
                raise BackendError(
                    f"{self.label}: container {name} has no IO folder {source} although its command "
                    f"exited 0: {exc}"
                ) from exc
        except NoSuchContainer as exc:
            raise BackendError(
                f"{self.label}: container {name} no longer exists: the files its command wrote are lost"
            ) from exc
        except DaemonError as exc:
            raise BackendError(
                f"{self.label}: could not copy the IO folder out of container {name}: {exc}"
            ) from exc

    def stop(self, handle: Handle, reason: str) -> None:
        """``docker stop``: TERM, then KILL after the grace period; returns once it stopped (at most
        the grace)."""
        try:
            self.transport.stop(handle["container"], self.stop_grace)
            log.info("Stopped container %s: %s", handle["container"], reason)
        except BackendError as exc:  # cleanup goes on, and removes it by force
            log.warning("Stopping container %s failed: %s", handle["container"], exc)

    def cleanup(self, handle: Handle, log_line: LineSink) -> None:
        """Remove the container (stopping it first, gracefully, if it may still run); failures raise
        (``discard`` logs them, review L19)."""
        name = handle["container"]
        if not handle.get("ended"):
            self.stop(handle, "Stopped by Airflow: the task ended before its container")
        try:
            self.transport.remove(name)
        except BackendError as exc:
            raise BackendError(f"{self.label}: could not remove container {name}: {exc}") from exc


def _ended(state: Mapping[str, Any]) -> bool:
    return state.get("Status") in ("exited", "dead")


def _pump(
    transport: Any, name: str, since: int | None, follow: bool, entries: queue.SimpleQueue[Any]
) -> None:
    try:
        with transport.log_entries(name, since, follow) as stream:
            for entry in stream:
                entries.put(entry)
    except Exception as exc:  # noqa: BLE001 - handed to the thread that waits for the entries
        entries.put(exc)
    else:
        entries.put(_END)


# -- the log position ------------------------------------------------------------------------------------
class _LogCursor:
    """Forwards a container's log entries to the task log from the position the handle holds on.

    An entry is ``TIMESTAMP text``; a line longer than 16 KiB comes as several entries, the last one
    ending with a line break. The daemon returns entries in the order of its log, which is not
    quite the order of their timestamps (stdout and stderr are stamped apart). So the position is an
    anchor (a whole second, one before the newest entry shown) and how many entries stamped at or
    after it were read up to the last line shown: a later read asks for the entries since the anchor
    (the same ones first, in the same order) and skips that many. A re-attach thus repeats no line
    that was saved as shown, and skips none.
    """

    def __init__(self, handle: Handle, log_line: LineSink) -> None:
        self.handle = handle
        self.log_line = log_line
        self.since: int | None = handle.get("log_since")  # the anchor, in seconds; None: the start
        self.to_skip: int = handle.get("log_skip", 0)
        self.stamps: list[int] = []  # nanoseconds of the entries read since the anchor
        self.newest = 0  # nanoseconds of the newest entry read
        self.pending = b""  # the parts of a line read so far (a part may end inside a character)

    def feed(self, entry: bytes) -> None:
        stamp, _, text = entry.partition(b" ")
        at_ns = _nanoseconds(stamp.decode("ascii", errors="replace"))
        if at_ns is None:
            return
        self.stamps.append(at_ns)
        self.newest = max(self.newest, at_ns)
        if self.to_skip:
            self.to_skip -= 1
            return
        self.pending += text
        if text.endswith(b"\n"):
            self._show()

    def close(self) -> None:
        """The log was read to its end: show a last line that had no line break."""
        if self.pending:
            self._show()

    def _show(self) -> None:
        line = self.pending.removesuffix(b"\n").rstrip(b"\r").decode("utf-8", errors="replace")
        self.pending = b""
        self.log_line(line)
        anchor = self.newest // 1_000_000_000 - 1
        if self.since is None or anchor > self.since:
            self.since = anchor
            self.stamps = [at_ns for at_ns in self.stamps if at_ns >= anchor * 1_000_000_000]
        self.handle["log_since"] = self.since
        self.handle["log_skip"] = len(self.stamps)
        self.handle["log_lines"] = self.handle.get("log_lines", 0) + 1


def _nanoseconds(stamp: str) -> int | None:
    """Nanoseconds since the epoch of a Docker log timestamp (RFC 3339 with up to 9 decimals)."""
    match = _STAMP.fullmatch(stamp)
    if match is None:
        return None
    moment = datetime.fromisoformat(match[1] + ("+00:00" if match[3] == "Z" else match[3]))
    return int(moment.timestamp()) * 1_000_000_000 + int((match[2] or "0").ljust(9, "0"))


# -- the workspace, in and out ---------------------------------------------------------------------------
def workspace_archive(request: CommandRequest) -> Iterator[bytes]:
    """The project (what ECS ships: ``iter_project_files``) and the IO dir's files, as an uncompressed
    tar stream for the container's ``/``, at the same absolute paths as on the worker.

    Folders are writable by any user (the image may run as another user than root), file modes are
    kept, links stay links and must not leave the project; sockets, FIFOs and devices are left out.
    It is made while it is sent, in chunks of about 1 MiB: memory stays flat whatever the size.
    """
    tar = _TarChunks()
    project = str(request.project_dir)
    for rel, _ in iter_project_files(Path(project)):
        path = os.path.join(project, rel)
        yield from tar.folders(os.path.dirname(path), project)
        try:
            yield from tar.add_file(path)
        except OSError as exc:
            if exc.errno != errno.ELOOP:  # a link: open() with O_NOFOLLOW refuses it
                raise
            yield from tar.add(link_info(Path(project), rel, Path(path), _arcname(path)))
    yield from tar.folders(str(request.working_dir), project)  # it must exist, even if empty
    io_dir = str(request.io_dir)
    yield from tar.folders(io_dir, io_dir)
    for name in sorted(os.listdir(io_dir)):
        path = os.path.join(io_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            yield from tar.add_file(path)
    yield tar.end()


def _arcname(path: str) -> str:
    return path.lstrip("/")


class _TarChunks:
    """Tar records as byte chunks of about ``CHUNK`` bytes (uid/gid 0, no owner names)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.made: set[str] = set()  # the folders written

    def add(self, info: tarfile.TarInfo, fd: int | None = None) -> Iterator[bytes]:
        try:  # the plain header where it can hold the entry (the cheapest to make), else PAX
            self.buffer += info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        except ValueError:
            self.buffer += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if fd is not None:
            left = info.size
            while left:
                # A file that shrank meanwhile is padded with zeros: the archive stays valid.
                piece = os.read(fd, min(left, CHUNK)) or bytes(min(left, CHUNK))
                self.buffer += piece
                left -= len(piece)
                if len(self.buffer) >= CHUNK:
                    yield self._take()
            self.buffer += bytes(-info.size % tarfile.BLOCKSIZE)
        if len(self.buffer) >= CHUNK:
            yield self._take()

    def add_file(self, path: str) -> Iterator[bytes]:
        """A regular file, opened without following a link (``ELOOP`` if it is one); other kinds are
        left out."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                info = tarfile.TarInfo(_arcname(path))
                info.mode = stat.S_IMODE(st.st_mode)
                info.size = st.st_size
                info.mtime = int(st.st_mtime)
                yield from self.add(info, fd)
        finally:
            os.close(fd)

    def folders(self, path: str, root: str) -> Iterator[bytes]:
        """Entries (mode 0777) for ``path`` and its parents up to ``root`` that are not written yet."""
        missing = []
        while path not in self.made:
            missing.append(path)
            if path == root or path == os.path.dirname(path):
                break
            path = os.path.dirname(path)
        for folder in reversed(missing):
            self.made.add(folder)
            info = tarfile.TarInfo(_arcname(folder))
            info.type = tarfile.DIRTYPE
            info.mode = 0o777
            info.mtime = int(time.time())
            yield from self.add(info)

    def end(self) -> bytes:
        self.buffer += bytes(2 * tarfile.BLOCKSIZE)
        return self._take()

    def _take(self) -> bytes:
        chunk = bytes(self.buffer)
        self.buffer.clear()
        return chunk


def extract_outputs(chunks: Iterator[bytes], dest: Path, top: str, label: str) -> None:
    """Extract the IO folder a container sent back (a tar stream of ``top/...``) into ``dest``.

    Refused, failing the task: absolute paths, ``..``, links leaving ``dest``, devices, writing
    through a link that leaves it (tarfile's "data" filter), more than ``MAX_OUTPUT_ENTRIES`` entries
    or ``MAX_OUTPUT_BYTES`` bytes. Nothing comes back from an empty stream (the copy failed: the
    transport says why).
    """
    chunks = iter(chunks)
    first = next(chunks, b"")
    if not first:
        return
    entries = size = 0
    with tarfile.open(fileobj=_ChunkReader(first, chunks), mode="r|") as tar:
        for member in tar:
            if member.name == top:
                continue
            if not member.name.startswith(f"{top}/"):
                raise BackendError(
                    f"{label}: the container sent back {member.name!r}, outside its IO folder: refused"
                )
            entries += 1
            size += member.size
            if entries > MAX_OUTPUT_ENTRIES or size > MAX_OUTPUT_BYTES:
                raise BackendError(
                    f"{label}: the command left more than {MAX_OUTPUT_ENTRIES} files or "
                    f"{MAX_OUTPUT_BYTES >> 20} MiB in its IO folder; write large results elsewhere (storage, "
                    "the project is not copied back)"
                )
            member.name = member.name[len(top) + 1 :]
            if member.islnk() and member.linkname.startswith(f"{top}/"):
                member.linkname = member.linkname[len(top) + 1 :]
            try:
                tar.extract(member, dest, filter="data")
            except tarfile.FilterError as exc:
                raise BackendError(
                    f"{label}: the container sent back an unsafe entry in its IO folder ({exc}): refused"
                ) from exc


class _ChunkReader(io.RawIOBase):
    """A readable over byte chunks, for tarfile's stream mode."""

    def __init__(self, first: bytes, rest: Iterator[bytes]) -> None:
        self.chunk = memoryview(first)
        self.offset = 0
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.offset >= len(self.chunk):
            chunk = next(self.rest, None)
            if chunk is None:
                return 0
            self.chunk, self.offset = memoryview(chunk), 0
        size = min(len(buffer), len(self.chunk) - self.offset)
        buffer[:size] = self.chunk[self.offset : self.offset + size]
        self.offset += size
        return size
