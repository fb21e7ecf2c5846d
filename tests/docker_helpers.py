"""Helpers of the Docker tests: the test image, the docker CLI, containers made by the backend.

Every Docker test runs against the real Docker Engine (``scripts/ensure-docker.sh``) and the local
test image (``scripts/build-test-image.sh``; override with ``CMDEXEC_TEST_IMAGE``). Nothing is pulled.
Other engineers' test runs share the daemon: everything a test session starts carries its own
dag-id prefix (``DAG_PREFIX``), and the leftover checks look at (and remove) only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import airflow.sdk  # noqa: F401  # first: importing the provider's config before airflow is a circular import
import pytest

from airflow_cmdexec_provider.backends.base import CommandRequest, CommandResult, IoFile
from airflow_cmdexec_provider.backends.docker import LABEL_PREFIX, DockerBackend, container_name
from airflow_cmdexec_provider.config import docker_config

IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
MANAGED = f"{LABEL_PREFIX}managed=true"
# The dag_id prefix of everything this test session starts: unique per session, so that the leftover
# checks never see (or remove) the containers of another run on the same daemon.
DAG_PREFIX = f"dockertest{os.getpid()}"
# The two ways the backend talks to Docker, as docker params: the Engine API (the default) and the
# docker CLI (Digdag's docker.docker set).
TRANSPORTS = {"api": {}, "cli": {"docker": "docker"}}


def docker_cli() -> str | None:
    return shutil.which("docker")


def _docker_problem() -> str | None:
    cli = docker_cli()
    if cli is None:
        return "no docker CLI on PATH (run scripts/ensure-docker.sh)"
    try:
        proc = subprocess.run(
            [cli, "image", "inspect", "--format", "{{.Id}}", IMAGE],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker CLI failed: {exc}"
    if proc.returncode != 0:
        return (
            f"Docker Engine or test image {IMAGE} not available ({proc.stderr.strip()}); "
            "run scripts/ensure-docker.sh and scripts/build-test-image.sh"
        )
    return None


_PROBLEM: list[str | None] = []


def docker_problem() -> str | None:
    if not _PROBLEM:
        _PROBLEM.append(_docker_problem())
    return _PROBLEM[0]


def require_docker() -> None:
    """Docker tests need the engine and the test image: fail with how to get them (never skip)."""
    problem = docker_problem()
    if problem:
        pytest.fail(
            f"{problem} (run scripts/ensure-docker.sh and scripts/build-test-image.sh, "
            "or use scripts/test.sh, which does)"
        )


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [docker_cli() or "docker", *args], check=False, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def inspect_container(name: str) -> dict[str, Any] | None:
    proc = docker("container", "inspect", name, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def managed_containers(dag_prefix: str = DAG_PREFIX) -> list[str]:
    """Containers (running or stopped) that the backend created for this session's DAGs (dag_id prefix)."""
    proc = docker(
        "ps",
        "-a",
        "--filter",
        f"label={MANAGED}",
        "--format",
        '{{.Names}}\t{{.Label "' + LABEL_PREFIX + 'dag_id"}}',
    )
    names = []
    for line in proc.stdout.splitlines():
        name, _, dag_id = line.partition("\t")
        if dag_id.startswith(dag_prefix):
            names.append(name)
    return names


def leftovers_checked() -> Iterator[None]:
    """For a ``no_leftovers`` fixture: fail the test if a container of this session's Docker tests is
    left after it (and remove it)."""
    require_docker()
    before = set(managed_containers())
    yield
    left = [name for name in managed_containers() if name not in before]
    for name in left:
        docker("rm", "--force", name, check=False)
    assert not left, f"containers left behind: {left}"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until ``predicate`` is true; the timeout only keeps a broken test from hanging."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_running(name: str, timeout: float = 60) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        info = inspect_container(name)
        return info if info and info["State"]["Running"] else None

    return wait_for(running, timeout, f"container {name} to run")


def unique_labels(test: str, try_number: int = 1, task_id: str = "task") -> dict[str, str]:
    return {
        "dag_id": f"{DAG_PREFIX}_{test}",
        "task_id": task_id,
        "run_id": f"manual__{uuid.uuid4().hex}",
        "try_number": str(try_number),
        "map_index": "-1",
    }


def write_wrapper(
    path: Path, log: Path, hold_on: str | None = None, go: Path | None = None, extra: str = ""
) -> Path:
    """A docker CLI wrapper: appends its argv (one JSON list per line) to ``log``, runs docker, then
    appends ``["<done>", command, exit code]``.

    ``hold_on``: a call of this docker command (``create``, ``cp``, ...) waits until the file ``go``
    exists before it runs. ``extra``: shell lines run first (``$cmd`` is the docker command).
    """
    real = docker_cli()
    hold = (
        f'if [ "$cmd" = "{hold_on}" ]; then while [ ! -e \'{go}\' ]; do sleep 0.05; done; fi\n'
        if hold_on
        else ""
    )
    path.write_text(
        "#!/bin/sh\n"
        f"python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> '{log}'\n"
        'cmd=$1; [ "$cmd" = "--config" ] && cmd=$3\n'
        f"{extra}{hold}"
        f"'{real}' \"$@\"\n"
        "rc=$?\n"
        f'echo "[\\"<done>\\", \\"$cmd\\", $rc]" >> \'{log}\'\n'
        "exit $rc\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def wrapper_calls(log: Path) -> list[list[str]]:
    """The argv of every call the wrapper received, in order."""
    return [call for call in _wrapper_lines(log) if call[:1] != ["<done>"]]


def wrapper_done(log: Path) -> list[tuple[str, int]]:
    """(docker command, exit code) of every call that finished."""
    return [(call[1], call[2]) for call in _wrapper_lines(log) if call[:1] == ["<done>"]]


def _wrapper_lines(log: Path) -> list[list[Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def cli_command(argv: list[str]) -> str:
    """The docker command of a recorded CLI call (``create``, ``cp``, ...), after ``--config DIR``."""
    return argv[2] if argv[:1] == ["--config"] else argv[0]


@dataclass
class Sink:
    """A log sink that keeps every line with the monotonic time it arrived."""

    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            self.times.append(time.monotonic())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Project:
    """A project folder and a per-try IO folder, laid out as the operators do."""

    root: Path
    io_dir: Path

    @classmethod
    def create(cls, base: Path) -> Project:
        root = base / "project"
        root.mkdir()
        io_parent = base / "iotmp"
        io_parent.mkdir(mode=0o700)
        io_dir = io_parent / "io"
        io_dir.mkdir()
        io_dir.chmod(0o777)
        return cls(root.resolve(), io_dir.resolve())

    def sh_request(
        self,
        script: str,
        *,
        labels: Mapping[str, str],
        env: Mapping[str, str] | None = None,
        workdir: str = "",
        shell: tuple[str, ...] = ("/bin/sh",),
    ) -> CommandRequest:
        (self.io_dir / "runner.sh").write_text(script if script.endswith("\n") else script + "\n")
        return CommandRequest(
            task_label=f"{labels['dag_id']}.{labels['task_id']}",
            project_dir=self.root,
            workdir=workdir,
            io_dir=self.io_dir,
            command=(*shell, IoFile("runner.sh")),
            env=dict(env or {}),
            labels=dict(labels),
        )


def backend(
    params: Mapping[str, Any] | None = None, stop_grace: int | None = None, **keys: Any
) -> DockerBackend:
    config = docker_config({"image": IMAGE, **(params or {}), **keys}, "dockertest.task")
    return DockerBackend(config) if stop_grace is None else DockerBackend(config, stop_grace=stop_grace)


class BackgroundRun:
    """``DockerBackend.run`` in a thread, so that a test can look at the container while it runs."""

    def __init__(
        self, docker_backend: DockerBackend, request: CommandRequest, sink: Sink | None = None
    ) -> None:
        self.backend = docker_backend
        self.request = request
        self.sink = sink or Sink()
        self.result: CommandResult | None = None
        self.error: BaseException | None = None
        self.name = container_name(request.labels)
        self._thread = threading.Thread(target=self._run, name="docker-backend-run", daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.backend.run(self.request, self.sink)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def start(self) -> BackgroundRun:
        self._thread.start()
        return self

    def join(self, timeout: float) -> CommandResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"DockerBackend.run did not return within {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def join_error(self, timeout: float) -> BaseException | None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"DockerBackend.run did not return within {timeout}s")
        return self.error


def cmdlines_containing(needle: bytes) -> list[tuple[int, bytes]]:
    """Every process on this host (as far as /proc shows) whose command line contains ``needle``."""
    hits = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if needle in cmdline:
            hits.append((int(entry), cmdline))
    return hits


def remove_image(tag: str) -> None:
    docker("image", "rm", "--force", tag, check=False)


def private_dirs(pid: int) -> list[Path]:
    """The CLI transport's private dirs (env file, registry login) of the worker process ``pid``."""
    return sorted(Path(tempfile.gettempdir()).glob(f"cmdexec-env-{pid}-*"))


# -- a recording proxy of the Engine API ---------------------------------------------------------------
@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    headers: dict[str, str]


class EngineRecorder:
    """The Docker Engine API on a unix socket of its own (``DOCKER_HOST=recorder.host``).

    It forwards every byte to the real daemon both ways and records each request's method, path
    (with its query) and headers, so a test sees exactly what the backend asked the daemon for.
    ``hold(pattern)`` makes the requests whose ``METHOD path`` matches wait until ``release()``.
    """

    def __init__(self, upstream: str = "/var/run/docker.sock") -> None:
        self.upstream = upstream
        self.dir = Path(tempfile.mkdtemp(prefix="cmdexec-rec-"))  # short: a socket path has ~100 bytes
        self.path = self.dir / "docker.sock"
        self.requests: list[ApiRequest] = []
        self.held = threading.Event()  # set once a held request arrived
        self._hold: re.Pattern[str] | None = None
        self._release = threading.Event()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))
        self._server.listen(64)
        threading.Thread(target=self._accept, name="engine-recorder", daemon=True).start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def hold(self, pattern: str) -> None:
        self._hold = re.compile(pattern)

    def release(self) -> None:
        self._release.set()

    def calls(self, pattern: str = "") -> list[str]:
        """``METHOD path`` of the recorded requests matching ``pattern`` (a regex), in order."""
        return [
            f"{r.method} {r.path}" for r in list(self.requests) if re.search(pattern, f"{r.method} {r.path}")
        ]

    def close(self) -> None:
        self._release.set()
        self._server.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            daemon.connect(self.upstream)
            threading.Thread(target=self._requests, args=(client, daemon), daemon=True).start()
            threading.Thread(target=_pipe, args=(daemon, client), daemon=True).start()

    def _requests(self, client: socket.socket, daemon: socket.socket) -> None:
        """Client to daemon: read each request (head, then its body by length or chunks), record it,
        forward it."""
        reader = client.makefile("rb")
        try:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)
                }
                self.requests.append(ApiRequest(method, path, headers))
                if self._hold is not None and self._hold.search(f"{method} {path}"):
                    self.held.set()
                    self._release.wait()
                daemon.sendall(head)
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size_line = reader.readline()
                        daemon.sendall(size_line)
                        size = int(size_line.split(b";")[0], 16)
                        daemon.sendall(reader.read(size + 2))  # the chunk and its CRLF
                        if size == 0:
                            break
                elif int(headers.get("content-length", "0")):
                    daemon.sendall(reader.read(int(headers["content-length"])))
        except OSError:
            return
        finally:
            _shut(daemon)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        _shut(target)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def recording_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineRecorder]:
    """For a ``recorder`` fixture: an ``EngineRecorder`` that the backends built in the test use
    (``DOCKER_HOST``)."""
    proxy = EngineRecorder()
    monkeypatch.setenv("DOCKER_HOST", proxy.host)
    yield proxy
    proxy.close()
