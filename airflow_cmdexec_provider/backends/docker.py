"""Run the command in a container through the docker CLI (Digdag's ``docker`` executor).

We use the CLI, not the Docker API, because users copy ``docker.docker`` (the CLI path) and
``docker.run_options`` (CLI flags) from Digdag and expect them to work unchanged.

Differences from Digdag (its section 9.2), on purpose:
- the environment goes through a private ``--env-file`` (values never on a command line), values
  that an env file cannot hold (multi-line, very long) through ``-e NAME`` with the value in the
  CLI's own environment; the worker's environment does not reach the container;
- every container has a unique name per task try and labels (dag_id, task_id, run_id, try), and
  is stopped and removed on success, failure, kill and timeout; an OOM kill is reported as such;
- build output and pulls go to the task log; the build context is an empty folder, not the project.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.backends.base import (
    CommandGone,
    CommandRequest,
    CommandResult,
    LineSink,
    RemoteBackend,
    TaskSettings,
    WatchError,
)
from airflow_cmdexec_provider.config import DockerConfig, docker_config
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError, CommandNotFound

STOP_GRACE_SECONDS = 10
# Docker's env-file parser reads one line per variable with a 64 KiB line buffer.
ENV_FILE_MAX_VALUE = 32 * 1024
# Variables the docker CLI itself reads: a value for the container must not change the CLI.
_CLI_ENV = re.compile(r"^(DOCKER_.*|PATH|HOME|XDG_.*|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)$")
LABEL_PREFIX = "io.github.cmdexec."


def container_name(labels: Mapping[str, str]) -> str:
    """A unique, deterministic name per task try: the same try never gets two containers."""
    def slug(text: str, size: int) -> str:
        return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:size] or "x"

    run_key = hashlib.sha1(f"{labels.get('run_id')}|{labels.get('map_index')}".encode()).hexdigest()[:10]
    return (
        f"cmdexec-{slug(labels.get('dag_id', 'dag'), 24)}-{slug(labels.get('task_id', 'task'), 24)}"
        f"-{run_key}-try{labels.get('try_number', '1')}"
    )


def build_tag(config: DockerConfig) -> str:
    """The tag of a ``build`` image: a hash of what makes it (base image, RUN lines, build options)."""
    digest = hashlib.sha1(
        json.dumps(
            {"image": config.image, "build": list(config.build), "build_options": list(config.build_options)},
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    return f"cmdexec-build:{digest}"


class DockerBackend(RemoteBackend):
    """Run a request in a container with the project and the IO dir mounted at the same paths."""

    name = "docker"
    fallback = ("local",)

    @classmethod
    def from_settings(cls, settings: TaskSettings) -> DockerBackend:
        return cls(docker_config(settings.docker, settings.task_label))

    def __init__(self, config: DockerConfig, stop_grace: int = STOP_GRACE_SECONDS) -> None:
        super().__init__()
        self.config = config
        self.stop_grace = stop_grace
        self._container: str | None = None
        self._cli: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed_flag = False
        self._lock = threading.Lock()
        self.poll_interval = 1.0

    # -- public protocol -----------------------------------------------------------------------
    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult:
        cli = self._resolve_cli()
        with self._docker_config_dir() as docker_config_dir:
            name = container_name(request.labels)
            # No `docker image inspect` / `container inspect` before the run: each CLI call costs a
            # process start and a daemon round trip on every task. `docker run` pulls a missing image
            # itself (with the login's config dir) and reports a name conflict; both are handled below.
            image = self._prepare_image(cli, docker_config_dir, request, log_line)
            with _env_file(request.env) as (env_file, passthrough):
                argv = self._run_argv(cli, name, image, request, env_file, passthrough)
                if docker_config_dir:
                    argv[1:1] = ["--config", docker_config_dir]
                cli_env = {**os.environ, **passthrough}
                # No lock here: kill() may run in a signal handler on this very thread. The order
                # (publish, then check _killed; kill() sets _killed, then reads) loses no kill.
                self._container = name
                if self._killed_flag:
                    self._container = None
                    raise BackendError(f"Task {self.config.task_label} was killed before its container started")
                handle = self._new_handle(name, image, request)
                self._save(handle)
                progress = _Progress(handle, log_line, self._save)
                try:
                    for attempt in (1, 2):
                        exit_code, tail = _stream(argv, cli_env, progress, self._started, tick=progress.tick)
                        conflict = exit_code == 125 and "is already in use by container" in (_daemon_error(tail) or "")
                        if not (conflict and attempt == 1) or self._killed_flag:
                            break
                        log_line(f"Removing leftover container {name} of an earlier attempt of this try")
                        self._remove(cli, name)
                    return self._result(cli, name, image, request, exit_code, tail)
                finally:
                    self._remove(cli, name)
                    self._container = self._proc = None

    def _started(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        if self._killed_flag:  # kill() came while `docker run` was being started
            proc.kill()

    def kill(self) -> None:
        """Stop (TERM, then KILL after the grace period) and remove the running container."""
        self._killed_flag = True  # a run that has not started its container yet will not start it
        with self._lock:
            name, cli = self._container, self._cli
        if name and cli:
            _run_quiet([cli, "stop", "-t", str(self.stop_grace), name], timeout=self.stop_grace + 30)
            self._remove(cli, name)
            # If `docker run` had not created the container yet when we stopped it, it would start it
            # now: end the CLI, and run() removes whatever it created.
            proc = self._proc
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()

    # -- steps ---------------------------------------------------------------------------------
    def _resolve_cli(self) -> str:
        cli = shutil.which(self.config.docker)
        if cli is None:
            raise CmdExecConfigError(
                f"Task {self.config.task_label}: docker CLI {self.config.docker!r} was not found "
                "(key docker.docker); install Docker or set docker.docker to the CLI's path"
            )
        self._cli = cli
        return cli

    @contextmanager
    def _docker_config_dir(self) -> Iterator[str | None]:
        """A throw-away CLI config dir holding the registry login, if the task has one."""
        registry = self.config.registry
        if registry is None:
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="cmdexec-docker-config-") as tmp:
            argv = [self._cli or "docker", "--config", tmp, "login", "--username", registry.username,
                    "--password-stdin"]
            if registry.server:
                argv.append(registry.server)
            proc = subprocess.run(argv, input=registry.password.encode(), capture_output=True, timeout=120)
            if proc.returncode != 0:
                raise BackendError(
                    f"Task {self.config.task_label}: docker login to {registry.server or 'Docker Hub'} as "
                    f"{registry.username!r} failed (connection {self.config.docker_conn_id!r}): "
                    f"{_last_line(proc.stderr)}"
                )
            yield tmp

    def _prepare_image(
        self, cli: str, docker_config_dir: str | None, request: CommandRequest, log_line: LineSink
    ) -> str:
        """Build or pull when the task asks for it; otherwise `docker run` pulls a missing image itself."""
        if self.config.build:
            return self._build(cli, log_line)
        if self.config.pull_always:
            self._pull(cli, docker_config_dir, self.config.image, log_line)
        return self.config.image

    def _image_exists(self, cli: str, image: str) -> bool:
        proc = subprocess.run([cli, "image", "inspect", "--format", "{{.Id}}", image],
                              capture_output=True, timeout=60)
        if proc.returncode == 0:
            return True
        error = proc.stderr.decode(errors="replace")
        if "No such image" in error or "not found" in error.lower():
            return False
        raise BackendError(
            f"Task {self.config.task_label}: the Docker daemon is not reachable through {cli!r}: "
            f"{_last_line(proc.stderr)}. Start dockerd or point DOCKER_HOST at a running daemon."
        )

    def _pull(self, cli: str, docker_config_dir: str | None, image: str, log_line: LineSink) -> None:
        argv = [cli, *(["--config", docker_config_dir] if docker_config_dir else []), "pull", image]
        exit_code, tail = _stream(argv, dict(os.environ), log_line)
        if exit_code != 0:
            raise BackendError(
                f"Task {self.config.task_label}: docker pull {image} failed (exit {exit_code}): "
                f"{tail[-1] if tail else 'no output'}. Check docker.image, docker_conn_id and the registry."
            )

    def _build(self, cli: str, log_line: LineSink) -> str:
        tag = build_tag(self.config)
        if self._image_exists(cli, tag):
            log_line(f"Reusing docker image {tag}")
            return tag
        log_line(f"Building docker image {tag} from {self.config.image}")
        with tempfile.TemporaryDirectory(prefix="cmdexec-build-") as context_dir:
            dockerfile = Path(context_dir) / "Dockerfile"
            lines = [f"FROM {self.config.image.replace(chr(10), '')}"]
            lines += [f"RUN {line}" for command in self.config.build for line in command.split("\n") if line]
            dockerfile.write_text("\n".join(lines) + "\n")
            argv = [cli, "build", *self.config.build_options, "-f", str(dockerfile), "--force-rm", "-t", tag,
                    context_dir]
            exit_code, tail = _stream(argv, dict(os.environ), log_line)
        if exit_code != 0:
            raise BackendError(
                f"Task {self.config.task_label}: docker build failed (exit {exit_code}) for docker.build "
                f"on {self.config.image}: {tail[-1] if tail else 'no output'}"
            )
        return tag

    def _remove_leftover(self, cli: str, name: str, log_line: LineSink) -> None:
        proc = subprocess.run([cli, "container", "inspect", "--format", "{{.State.Status}}", name],
                              capture_output=True, timeout=60)
        if proc.returncode == 0:
            log_line(f"Removing leftover container {name} ({proc.stdout.decode().strip()}) of an earlier attempt")
            self._remove(cli, name)

    def _run_argv(
        self, cli: str, name: str, image: str, request: CommandRequest, env_file: str, passthrough: Mapping[str, str]
    ) -> list[str]:
        mode = "rw,Z" if self.config.selinux else "rw"
        project, io_dir = str(request.project_dir), str(request.io_dir)
        argv = [cli, "run", *self.config.run_options, "--name", name]
        for key, value in {"managed": "true", **request.labels}.items():
            argv += ["--label", f"{LABEL_PREFIX}{key}={value}"]
        argv += ["-v", f"{project}:{project}:{mode}", "-v", f"{io_dir}:{io_dir}:{mode}"]
        argv += ["-w", str(request.working_dir), "--env-file", env_file]
        for key in passthrough:
            argv += ["-e", key]
        return [*argv, image, *request.argv(request.io_dir)]

    def _result(
        self, cli: str, name: str, image: str, request: CommandRequest, exit_code: int, tail: Sequence[str]
    ) -> CommandResult:
        # 125-127 are also ordinary exit codes of user commands: only the CLI's own error line tells.
        daemon_error = _daemon_error(tail) if exit_code in (125, 126, 127) else None
        if daemon_error:
            if "executable file not found" in daemon_error or "no such file or directory" in daemon_error:
                raise CommandNotFound(request.argv(request.io_dir)[0], f"in the image {image}")
            if "Cannot connect to the Docker daemon" in daemon_error:
                raise BackendError(
                    f"Task {self.config.task_label}: the Docker daemon is not reachable through {cli!r}: "
                    f"{daemon_error}. Start dockerd or point DOCKER_HOST at a running daemon."
                )
            if any(line.startswith("Unable to find image") for line in tail):
                raise BackendError(
                    f"Task {self.config.task_label}: the image {image} is not on this Docker host and could not be "
                    f"pulled: {daemon_error}. Check docker.image, docker.docker_conn_id and the registry."
                )
            raise BackendError(
                f"Task {self.config.task_label}: docker could not run the container (exit {exit_code}): "
                f"{daemon_error}"
            )
        if exit_code == 137 and self._oom_killed(cli, name):
            return CommandResult(137, "OOMKilled: the container ran out of memory; raise the limit in "
                                      "docker.run_options (e.g. -m)")
        return CommandResult(exit_code)

    def _oom_killed(self, cli: str, name: str) -> bool:
        proc = subprocess.run([cli, "container", "inspect", "--format", "{{.State.OOMKilled}}", name],
                              capture_output=True, timeout=60)
        return proc.stdout.decode().strip() == "true"

    def _remove(self, cli: str, name: str) -> None:
        proc = _run_quiet([cli, "rm", "--force", "--volumes", name], timeout=120)
        if proc is not None and proc.returncode != 0 and b"already in progress" in proc.stderr:
            # kill() and run() both remove; the one that lost the race returns only once it is gone.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                probe = _run_quiet([cli, "container", "inspect", "--format", "{{.Id}}", name], timeout=60)
                if probe is None or probe.returncode != 0:
                    return
                time.sleep(0.1)


    # -- durable execution: handle, re-attach, polling (deferrable) ------------------------------
    def _new_handle(self, name: str, image: str, request: CommandRequest) -> dict[str, Any]:
        return {"backend": self.name, "container": name, "image": image, "io_dir": str(request.io_dir),
                "lines_shown": 0, "last_ts": None}

    def _save(self, handle: dict[str, Any]) -> None:
        if self.save_handle is not None:
            self.save_handle(handle)

    def submit(self, request: CommandRequest, log_line: LineSink, earlier: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start the container detached (for deferrable mode) and return its handle."""
        cli = self._resolve_cli()
        with self._docker_config_dir() as docker_config_dir:
            image = self._prepare_image(cli, docker_config_dir, request, log_line)
            name = container_name(request.labels)
            self._remove_leftover(cli, name, log_line)
            with _env_file(request.env) as (env_file, passthrough):
                argv = self._run_argv(cli, name, image, request, env_file, passthrough)
                argv.insert(argv.index("run") + 1, "--detach")
                handle = self._new_handle(name, image, request)
                self._save(handle)
                proc = subprocess.run(argv, env={**os.environ, **passthrough}, capture_output=True, timeout=300)
        if proc.returncode != 0:
            self._remove(cli, name)
            tail = proc.stderr.decode(errors="replace").splitlines()
            self._result(cli, name, image, request, proc.returncode, tail)  # raises a clear error
            raise BackendError(f"Task {self.config.task_label}: docker run failed: {_last_line(proc.stderr)}")
        log_line(f"Started container {name}")
        return handle

    def poll(self, handle: dict[str, Any], log_line: LineSink) -> CommandResult | None:
        """Forward the container's new log lines; once it exited, return its result."""
        cli = self._resolve_cli()
        state = _run_quiet([cli, "container", "inspect", "--format",
                            "{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}", handle["container"]],
                           timeout=60)
        if state is None:
            raise WatchError(f"docker did not answer about container {handle['container']}")
        if state.returncode != 0:
            if b"No such container" in state.stderr:
                raise CommandGone(f"Task {self.config.task_label}: container {handle['container']} is gone")
            raise WatchError(f"docker container inspect failed: {_last_line(state.stderr)}")
        status, exit_code, oom = state.stdout.decode().split()
        self._forward_logs(cli, handle, log_line)
        if status in ("created", "running", "restarting", "paused"):
            return None
        if oom == "true":
            return CommandResult(int(exit_code), "OOMKilled: the container ran out of memory; raise the limit in "
                                                 "docker.run_options (e.g. -m)")
        return CommandResult(int(exit_code))

    def _forward_logs(self, cli: str, handle: dict[str, Any], log_line: LineSink) -> None:
        """Log the lines an earlier look did not show: by timestamp, or by count for a blocking try's log."""
        argv = [cli, "logs", "--timestamps"]
        if handle.get("last_ts"):
            argv += ["--since", handle["last_ts"]]
        proc = _run_quiet([*argv, handle["container"]], timeout=120)
        if proc is None or proc.returncode != 0:
            return
        entries = []
        for raw in (proc.stdout + proc.stderr).decode("utf-8", errors="replace").splitlines():
            ts, _, line = raw.partition(" ")
            entries.append((ts, line))
        entries.sort(key=lambda e: e[0])  # stdout and stderr come back apart: merge by time
        if not handle.get("last_ts"):
            entries = entries[handle.get("lines_shown", 0):]
        else:
            entries = [e for e in entries if e[0] > handle["last_ts"]]
        for ts, line in entries:
            log_line(line)
            handle["last_ts"] = ts
        handle["lines_shown"] = handle.get("lines_shown", 0) + len(entries)
        if entries:
            self._save(handle)

    def exists(self, handle: dict[str, Any]) -> bool:
        probe = _run_quiet([self._resolve_cli(), "container", "inspect", "--format", "{{.State.Status}}",
                            handle["container"]], timeout=60)
        return probe is not None and probe.returncode == 0

    def fetch_outputs(self, handle: dict[str, Any], io_dir: Path, result: CommandResult) -> None:
        """Copy what the container wrote into its IO dir (an earlier try's) into ``io_dir``."""
        source = Path(handle["io_dir"])
        if source != io_dir and source.is_dir():
            for child in source.iterdir():
                if child.is_file() and not child.is_symlink():
                    shutil.copyfile(child, io_dir / child.name)

    def stop(self, handle: dict[str, Any], reason: str) -> None:
        cli = self._resolve_cli()
        _run_quiet([cli, "stop", "-t", str(self.stop_grace), handle["container"]], timeout=self.stop_grace + 30)

    def cleanup(self, handle: dict[str, Any], log_line: LineSink) -> None:
        """Remove the container and the earlier try's private IO folder."""
        self._remove(self._resolve_cli(), handle["container"])
        io_root = Path(handle["io_dir"]).parent
        if io_root.name.startswith("cmdexec-") and io_root.is_dir():
            shutil.rmtree(io_root, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------------
@contextmanager
def _env_file(env: Mapping[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Write the env values a docker env file can hold to a private file; return the others apart."""
    passthrough = {k: v for k, v in env.items() if "\n" in v or "\r" in v or len(v) > ENV_FILE_MAX_VALUE}
    for key in passthrough:
        if _CLI_ENV.match(key):
            raise CmdExecConfigError(
                f"env var {key!r} has a multi-line or very long value, which Docker can only receive through "
                "the docker CLI's own environment, where this name would change the CLI itself; rename it"
            )
    fd, path = tempfile.mkstemp(prefix="cmdexec-env-")  # mode 0600: only the worker's user reads it
    try:
        with os.fdopen(fd, "w") as f:
            for key, value in env.items():
                if key not in passthrough:
                    f.write(f"{key}={value}\n")
        yield path, passthrough
    finally:
        os.unlink(path)


def _stream(
    argv: Sequence[str], env: Mapping[str, str], log_line: LineSink,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> tuple[int, list[str]]:
    """Run a docker CLI command, forwarding its output line by line; return the exit code and last lines.

    ``tick`` is called about once a second, also while the command prints nothing.
    """
    tail: list[str] = []
    proc = subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    if started is not None:
        started(proc)
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        pending = b""
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if tick is not None:
                tick()
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", errors="replace").rstrip("\r")
                log_line(line)
                tail = [*tail[-19:], line]
        if pending:
            line = pending.decode("utf-8", errors="replace").rstrip("\r")
            log_line(line)
            tail = [*tail[-19:], line]
        return proc.wait(), tail
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


def _run_quiet(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _daemon_error(tail: Sequence[str]) -> str | None:
    """The docker CLI's own error line (``docker: Error response from daemon: ...``), if any."""
    for line in reversed(tail):
        if line.startswith("docker:") or "Error response from daemon" in line:
            return line
    return None


def _last_line(output: bytes) -> str:
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class _Progress:
    """Counts the log lines shown and saves that count (at most once a second) in the handle."""

    def __init__(self, handle: dict[str, Any], log_line: LineSink, save: Callable[[dict[str, Any]], None]):
        self.handle = handle
        self.log_line = log_line
        self.save = save
        self.saved = 0
        self.last_save = time.monotonic()

    def __call__(self, line: str) -> None:
        self.log_line(line)
        self.handle["lines_shown"] += 1

    def tick(self) -> None:
        now = time.monotonic()
        if self.handle["lines_shown"] != self.saved and now - self.last_save >= 1.0:
            self.saved = self.handle["lines_shown"]
            self.last_save = now
            self.save(self.handle)
