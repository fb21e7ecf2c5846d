"""The two ways the Docker backend talks to the Docker daemon: its Engine API, or the docker CLI.

``EngineApi`` (the default) uses the docker SDK's ``APIClient``, configured from ``DOCKER_HOST``,
``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` as ``docker.from_env`` is; in the triggerer it follows
containers with aiohttp on the same socket, so a deferred task costs one idle connection there: no
thread, no process, no polling. ``DockerCli`` runs the docker CLI (Digdag's way); the backend uses it
when a task sets ``docker.docker`` (the CLI path) or ``run_options``/``build_options``, which are CLI
flags passed on unchanged. Both give the backend (``backends/docker.py``) the same steps.

Errors: ``NoSuchContainer``/``NoSuchImage``/``NoSuchPath`` for what the daemon does not know,
``NameInUse`` for a container name that is taken, ``DaemonUnreachable`` when nothing answers,
``DaemonError`` (with the daemon's own message) for any other refusal, ``WatchError`` when a state
or a log cannot be read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from airflow_cmdexec_provider.backends.base import LineSink, WatchError
from airflow_cmdexec_provider.config import DockerConfig
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.params import is_startup_env_name

# Docker's env-file reader takes lines of at most 64 KiB - 1 bytes ("token too long" beyond).
ENV_FILE_MAX_LINE = 64 * 1024 - 1
# Names the docker CLI (or what it runs: credential helpers, buildx, the Go runtime) reads itself:
# a container value that must travel in the CLI's own environment may not carry one (review M14).
_CLI_ENV = re.compile(
    r"^(DOCKER_.*|HOME|PATH|SSL_.*|TMPDIR|GODEBUG|BUILDKIT_.*|BUILDX_.*|XDG_.*|.*_PROXY)$", re.IGNORECASE
)
# Files that hold secrets for one CLI call (env file, registry login): named with the worker's pid,
# so that a later task can remove what a killed worker left (``sweep_private_dirs``).
PRIVATE_PREFIX = "cmdexec-env-"
PRIVATE_MAX_AGE_SECONDS = 300
DOCKER_HUB = "https://index.docker.io/v1/"
STREAM_CHUNK = 1 << 20
CLI_TIMEOUT_SECONDS = 120
# The docker CLI's own error lines, and what the daemon says about a missing image or a taken name.
_DAEMON_ERROR = re.compile(r"^(?:docker: )?Error response from daemon: (.*)$")
_CLI_ERROR = re.compile(r"^(?:docker: )?Error: (.*)$")
_CANNOT_CONNECT = ("Cannot connect to the Docker daemon", "error during connect")


class NoSuchContainer(BackendError):
    """The daemon does not know the container."""


class NoSuchImage(BackendError):
    """The daemon does not have the image."""


class NoSuchPath(BackendError):
    """The container has no such file or folder."""


class NameInUse(BackendError):
    """A container with the name exists already."""


class DaemonUnreachable(BackendError):
    """Nothing answers at the daemon's address."""


class DaemonError(BackendError):
    """The daemon refused a request; the message is the daemon's own."""


class LogStream(Protocol):
    """The entries of a container's log (``TIMESTAMP text``, one per line or part of a line)."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class Watcher(Protocol):
    """What the triggerer needs to follow a container without a thread or a process per poll."""

    def log_entries(self, name: str, since: int | None, follow: bool) -> AsyncIterator[bytes]: ...

    async def inspect(self, name: str) -> dict[str, Any] | None: ...


def dockerfile(image: str, build: Iterable[str]) -> str:
    """Digdag's generated Dockerfile: FROM the image, one RUN per line of every build command."""
    lines = [f"FROM {image.replace(chr(10), '')}"]
    lines += [f"RUN {line}" for command in build for line in command.split("\n") if line]
    return "\n".join(lines) + "\n"


# -- the Engine API -----------------------------------------------------------------------------------
class EngineApi:
    """Docker through its Engine API (the docker SDK), and aiohttp for the triggerer."""

    def __init__(self, config: DockerConfig) -> None:
        from docker.utils import kwargs_from_env

        self.config = config
        self.client_kwargs = kwargs_from_env()
        self.host = self.client_kwargs.get("base_url") or "unix:///var/run/docker.sock"
        self._client: Any = None

    def describe(self) -> str:
        return f"the Docker Engine API at {self.host}"

    def new_client(self) -> Any:
        """An API client of its own (version negotiated with the daemon): for calls that may come from
        a signal handler while another call of the main client is in progress (kill).

        The version comes from ``GET /_ping``, as the docker CLI negotiates it, not from the SDK's
        ``version="auto"``: that asks ``GET /version``, which Docker 20.10 answers in 12-15 ms here
        against 1-3 ms for ``/_ping``, and every task makes a client (benchmarks/README.md)."""
        import docker
        import requests

        try:
            with docker.APIClient(
                version=docker.constants.MINIMUM_DOCKER_API_VERSION, **self.client_kwargs
            ) as probe:
                response = probe.get(f"{probe.base_url}/_ping", timeout=probe.timeout)
                response.raise_for_status()
                # A daemon older than API 1.25 names no version in its ping: ask it as the SDK would.
                offered = (
                    response.headers.get("API-Version") or probe.version(api_version=False)["ApiVersion"]
                )
            # Made with a fixed version, a client asks nothing before its first call.
            return docker.APIClient(version=speakable_version(offered), **self.client_kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException, KeyError) as exc:
            raise self.unreachable(exc) from exc

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def unreachable(self, exc: BaseException) -> DaemonUnreachable:
        return DaemonUnreachable(
            f"Task {self.config.task_label}: the Docker daemon is not reachable at {self.host}: {exc}. Start "
            "dockerd or point DOCKER_HOST at a running daemon"
        )

    @contextmanager
    def errors(self, missing: type[BackendError] = NoSuchContainer) -> Iterator[None]:
        """Map the SDK's exceptions to ours; ``missing`` is what a 404 means for this call."""
        import docker
        import requests

        try:
            yield
        except docker.errors.NotFound as exc:
            text = _explanation(exc)
            raise (NoSuchContainer if "No such container" in text else missing)(text) from exc
        except docker.errors.APIError as exc:
            if exc.status_code == 409 and "is already in use" in _explanation(exc):
                raise NameInUse(_explanation(exc)) from exc
            raise DaemonError(_explanation(exc)) from exc
        except requests.exceptions.ConnectionError as exc:
            raise self.unreachable(exc) from exc
        except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
            raise DaemonError(str(exc)) from exc

    def _auth(self) -> dict[str, str] | None:
        registry = self.config.registry
        if registry is None:
            return None
        return {
            "username": registry.username,
            "password": registry.password,
            "serveraddress": registry.server or DOCKER_HUB,
        }

    def image_exists(self, image: str) -> bool:
        try:
            with self.errors(missing=NoSuchImage):
                self.client.inspect_image(image)
        except NoSuchImage:
            return False
        return True

    def pull(self, image: str, log_line: LineSink) -> None:
        with self.errors(missing=NoSuchImage):
            _forward_progress(
                self.client.pull(image, stream=True, decode=True, auth_config=self._auth()), log_line
            )

    def build(self, dockerfile_text: str, tag: str, pull: bool, context: Path, log_line: LineSink) -> None:
        import io
        import tarfile

        data = dockerfile_text.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        archive.seek(0)
        registry = self.config.registry
        with self.errors(missing=NoSuchImage):
            if registry is not None:  # the SDK sends the logins it holds with the build (for FROM)
                self.client.login(
                    registry.username, registry.password, registry=registry.server or DOCKER_HUB
                )
            _forward_progress(
                self.client.build(
                    fileobj=archive, custom_context=True, tag=tag, pull=pull, forcerm=True, decode=True
                ),
                log_line,
            )

    def create(
        self,
        name: str,
        image: str,
        argv: list[str],
        working_dir: str,
        env: Mapping[str, str],
        labels: Mapping[str, str],
        log_line: LineSink,
    ) -> None:
        """Create the container (not started). A missing image is pulled first, as ``docker create`` does."""
        for attempt in (1, 2):
            try:
                with self.errors(missing=NoSuchImage):
                    self.client.create_container(
                        image,
                        command=argv,
                        name=name,
                        labels=dict(labels),
                        environment=dict(env),
                        working_dir=working_dir,
                        host_config=self.client.create_host_config(),
                    )
                return
            except NoSuchImage:
                if attempt == 2:
                    raise
            log_line(f"Unable to find image '{image}' locally: pulling it")
            try:
                self.pull(image, log_line)
            except DaemonError as exc:
                raise NoSuchImage(str(exc)) from exc

    def copy_in(self, name: str, chunks: Iterator[bytes]) -> None:
        with self.errors():
            self.client.put_archive(name, "/", chunks)

    def start(self, name: str) -> None:
        with self.errors():
            self.client.start(name)

    def inspect(self, name: str) -> dict[str, Any] | None:
        """The container's description, None if it does not exist; ``WatchError`` if it cannot be read."""
        try:
            with self.errors():
                info: dict[str, Any] = self.client.inspect_container(name)
                return info
        except NoSuchContainer:
            return None
        except BackendError as exc:
            raise WatchError(f"cannot inspect container {name}: {exc}") from exc

    @contextmanager
    def log_entries(self, name: str, since: int | None, follow: bool) -> Iterator[LogStream]:
        """The log's entries stamped at ``since`` (epoch seconds) or later, in the daemon's order.

        Asked for directly on the client's session: the SDK's ``logs()`` would first inspect the
        container (to learn whether it has a TTY; ours never do), one more request per task."""
        import requests

        params = {"stdout": "1", "stderr": "1", "timestamps": "1", "follow": "1" if follow else "0"}
        if since:
            params["since"] = str(since)
        client = self.client
        url = f"{client.base_url}/v{client.api_version}/containers/{quote(name)}/logs"
        try:
            response = client.get(url, params=params, stream=True, timeout=None)
        except requests.exceptions.RequestException as exc:
            raise WatchError(f"cannot read the log of container {name}: {exc}") from exc
        try:
            if response.status_code == 404:
                raise NoSuchContainer(f"container {name} no longer exists")
            if not response.ok:
                raise WatchError(f"cannot read the log of container {name}: {response.text.strip()}")
            yield _FrameStream(response)
        finally:
            response.close()

    @contextmanager
    def copy_out(self, name: str, path: str) -> Iterator[Iterator[bytes]]:
        with self.errors(missing=NoSuchPath):
            chunks, _ = self.client.get_archive(name, path, chunk_size=STREAM_CHUNK)

        def read() -> Iterator[bytes]:
            with self.errors():
                yield from chunks

        yield read()

    def stop(self, name: str, grace: int) -> None:
        """Ask the daemon to stop the container (TERM, KILL after ``grace`` s), with a client of its own."""
        client = self.new_client()
        try:
            with self.errors():
                client.stop(name, timeout=grace)
        except NoSuchContainer:
            pass
        finally:
            client.close()

    def remove(self, name: str) -> None:
        try:
            with self.errors():
                self.client.remove_container(name, force=True, v=True)
        except NoSuchContainer:
            pass

    def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Containers (any state) carrying all these labels: ``{"name": ..., "labels": {...}}``."""
        with self.errors():
            found = self.client.containers(
                all=True, filters={"label": [f"{k}={v}" for k, v in labels.items()]}
            )
        return [{"name": c["Names"][0].lstrip("/"), "labels": c.get("Labels") or {}} for c in found]

    @asynccontextmanager
    async def watcher(self) -> AsyncIterator[Watcher | None]:
        """An aiohttp client on the daemon's socket; None for hosts it cannot reach (``ssh://``)."""
        import aiohttp

        if self.host.startswith("unix://"):
            connector: Any = aiohttp.UnixConnector(path=self.host[len("unix://") :])
            origin = "http://docker"
        elif self.host.startswith(("tcp://", "http://", "https://")):
            tls = self.client_kwargs.get("tls")
            connector = aiohttp.TCPConnector(ssl=_ssl_context(tls) if tls else False)
            origin = re.sub(r"^(tcp|https?)://", "https://" if tls else "http://", self.host)
        else:
            yield None
            return
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            yield _AsyncEngine(session, origin, self.host)


def speakable_version(offered: str) -> str:
    """The API version to speak to a daemon that offers ``offered``: the older of it and the newest
    this docker SDK knows (the docker CLI's rule); a daemon older than the SDK supports is an error."""
    from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
    from docker.errors import InvalidVersion
    from docker.utils import version_lt

    if version_lt(offered, MINIMUM_DOCKER_API_VERSION):
        raise InvalidVersion(
            f"the daemon speaks Docker API {offered}; "
            f"the docker SDK needs {MINIMUM_DOCKER_API_VERSION} or later"
        )
    return offered if version_lt(offered, DEFAULT_DOCKER_API_VERSION) else DEFAULT_DOCKER_API_VERSION


def _explanation(exc: Any) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _forward_progress(messages: Iterable[Mapping[str, Any]], log_line: LineSink) -> None:
    """Log a pull's or a build's messages (not the progress bars); raise on the error it reports."""
    for message in messages:
        if message.get("error"):
            raise DaemonError(str(message["error"]).strip())
        text = message.get("stream") or (message.get("status") if not message.get("progressDetail") else None)
        if text and text.strip():
            log_line(f"{message['id']}: {text.strip()}" if message.get("id") else text.strip())


class _FrameStream:
    """The entries of Docker's multiplexed stream: per entry an 8-byte header (stream, 0, 0, 0, size
    as 4 bytes big-endian), then the entry."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def __iter__(self) -> Iterator[bytes]:
        import requests
        import urllib3

        read = self.response.raw.read
        try:
            while header := read(8):
                yield read(int.from_bytes(header[4:8], "big"))
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise WatchError(f"the container's log stream broke: {exc}") from exc

    def close(self) -> None:
        self.response.close()


def _ssl_context(tls: Any) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=tls.ca_cert) if tls.verify else ssl.create_default_context()
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert:
        context.load_cert_chain(*tls.cert)
    return context


# API versions the daemons answered with, by address: negotiated once per triggerer process.
_API_VERSIONS: dict[str, str] = {}


class _AsyncEngine:
    """Follows containers over HTTP: ``GET /containers/{id}/logs?follow=1`` and ``GET .../json``."""

    def __init__(self, session: Any, origin: str, host: str) -> None:
        self.session = session
        self.origin = origin
        self.host = host

    async def _base(self) -> str:
        import aiohttp

        if self.host not in _API_VERSIONS:
            from docker.errors import InvalidVersion

            try:
                async with self.session.get(f"{self.origin}/_ping") as response:
                    response.raise_for_status()
                    offered = response.headers.get("API-Version")
                if offered is None:  # a daemon older than API 1.25
                    async with self.session.get(f"{self.origin}/version") as response:
                        response.raise_for_status()
                        offered = (await response.json())["ApiVersion"]
                _API_VERSIONS[self.host] = speakable_version(offered)
            except (aiohttp.ClientError, OSError, KeyError, ValueError, InvalidVersion) as exc:
                raise WatchError(f"the Docker daemon at {self.host} does not answer: {exc}") from exc
        return f"{self.origin}/v{_API_VERSIONS[self.host]}"

    async def log_entries(self, name: str, since: int | None, follow: bool) -> AsyncIterator[bytes]:
        """The entries of a container's log from ``since`` on: those there are, or (``follow``) until
        the container stopped.

        The answer is Docker's multiplexed stream: per entry an 8-byte header (stream, 0, 0, 0, size
        as 4 bytes big-endian), then the entry."""
        import aiohttp

        params = {"follow": "1" if follow else "0", "stdout": "1", "stderr": "1", "timestamps": "1"}
        if since:
            params["since"] = str(since)
        url = f"{await self._base()}/containers/{quote(name)}/logs"
        try:
            async with self.session.get(url, params=params) as response:
                if response.status == 404:
                    raise NoSuchContainer(f"container {name} no longer exists")
                if response.status != 200:
                    raise WatchError(
                        f"reading the log of container {name} failed: {(await response.text()).strip()}"
                    )
                while True:
                    try:
                        header = await response.content.readexactly(8)
                    except asyncio.IncompleteReadError as exc:
                        if exc.partial:
                            raise WatchError(f"the log stream of container {name} was cut") from exc
                        return
                    yield await response.content.readexactly(int.from_bytes(header[4:8], "big"))
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise WatchError(f"the log stream of container {name} broke: {exc}") from exc

    async def inspect(self, name: str) -> dict[str, Any] | None:
        import aiohttp

        url = f"{await self._base()}/containers/{quote(name)}/json"
        try:
            async with self.session.get(url) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise WatchError(f"cannot inspect container {name}: {(await response.text()).strip()}")
                info: dict[str, Any] = await response.json()
                return info
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise WatchError(f"cannot inspect container {name}: {exc}") from exc


# -- the docker CLI -----------------------------------------------------------------------------------
class DockerCli:
    """Docker through the docker CLI named by ``docker.docker`` (default ``docker``).

    The environment goes into a private env file (0600) that exists only while ``docker create``
    reads it; values an env file cannot hold go as ``-e NAME`` with the value in the CLI's own
    environment. A registry login is a throw-away ``--config`` dir given to every call that may pull.
    """

    def __init__(self, config: DockerConfig) -> None:
        self.config = config
        path = shutil.which(config.docker)
        if path is None:
            raise CmdExecConfigError(
                f"Task {config.task_label}: docker CLI {config.docker!r} was not found (key docker.docker); "
                "install Docker or set docker.docker to the CLI's path"
            )
        self.cli = path

    def describe(self) -> str:
        return f"the docker CLI {self.cli}"

    # -- running the CLI ------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = CLI_TIMEOUT_SECONDS) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                [self.cli, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise DaemonError(f"'docker {args[0]}' did not return within {timeout:.0f} s") from exc

    def _check(self, proc: subprocess.CompletedProcess[bytes], what: str) -> None:
        if proc.returncode == 0:
            return
        message = daemon_message(proc.stderr) or _last_line(proc.stderr) or f"exit {proc.returncode}"
        if any(text in message for text in _CANNOT_CONNECT):
            raise DaemonUnreachable(
                f"Task {self.config.task_label}: the Docker daemon is not reachable through {self.cli!r}: "
                f"{message}. Start dockerd or point DOCKER_HOST at a running daemon"
            )
        if "No such container:path" in message or "Could not find the file" in message:
            raise NoSuchPath(message)
        if "No such container" in message:
            raise NoSuchContainer(message)
        if "No such image" in message or "Unable to find image" in _text(proc.stderr):
            raise NoSuchImage(message)
        if "is already in use by container" in message:
            raise NameInUse(message)
        raise DaemonError(f"{message} (docker {what})")

    # -- private files ----------------------------------------------------------------------------
    @contextmanager
    def _private_dir(self) -> Iterator[Path]:
        """A throw-away dir (0700) for the secrets of one CLI call: the registry login as a CLI config
        (``config.json``, given with ``--config`` to every call that may pull) and the env file."""
        path = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
        try:
            registry = self.config.registry
            if registry is not None:
                auth = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
                _write_private(
                    path / "config.json",
                    json.dumps({"auths": {registry.server or DOCKER_HUB: {"auth": auth}}}),
                )
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _login_args(self, private: Path) -> list[str]:
        return ["--config", str(private)] if self.config.registry is not None else []

    # -- images -----------------------------------------------------------------------------------
    def image_exists(self, image: str) -> bool:
        proc = self._run("image", "inspect", "--format", "{{.Id}}", image)
        try:
            self._check(proc, "image inspect")
        except NoSuchImage:
            return False
        return True

    def pull(self, image: str, log_line: LineSink) -> None:
        self._streamed(["pull", image], "pull", log_line)

    def build(self, dockerfile_text: str, tag: str, pull: bool, context: Path, log_line: LineSink) -> None:
        with tempfile.TemporaryDirectory(prefix="cmdexec-build-") as context_dir:
            path = Path(context_dir) / "Dockerfile"
            path.write_text(dockerfile_text, encoding="utf-8")
            argv = [
                "build",
                *self.config.build_options,
                "-f",
                str(path),
                "--force-rm",
                *(["--pull"] if pull else []),
                "-t",
                tag,
                context_dir,
            ]
            # In the project, as Digdag runs it: relative paths in build_options resolve there.
            self._streamed(argv, "build", log_line, cwd=context)

    def _streamed(self, args: list[str], what: str, log_line: LineSink, cwd: Path | None = None) -> None:
        """A pull or build (with the registry login), its output going to the task log line by line."""
        with self._private_dir() as private:
            proc = subprocess.Popen(
                [self.cli, *self._login_args(private), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
            )
            tail: list[str] = []
            assert proc.stdout is not None
            with proc.stdout:
                for raw in proc.stdout:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    log_line(line)
                    tail = [*tail[-19:], line]
            proc.wait()
        if proc.returncode != 0:
            output = "\n".join(tail).encode()
            self._check(subprocess.CompletedProcess(args, proc.returncode, b"", output), what)

    # -- containers -------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        image: str,
        argv: list[str],
        working_dir: str,
        env: Mapping[str, str],
        labels: Mapping[str, str],
        log_line: LineSink,
    ) -> None:
        """``docker create`` in the working dir (relative paths in run_options resolve there, review
        M12). The env file is in a private dir that a shell around the CLI removes as soon as the CLI
        returned, also when this worker is killed meanwhile (the shell is in a session of its own)."""
        passthrough = cli_env(env, self.config.task_label)
        sweep_private_dirs()
        with self._private_dir() as private:
            env_file = private / "env"
            _write_private(env_file, "".join(f"{k}={v}\n" for k, v in env.items() if k not in passthrough))
            args = [*self._login_args(private), "create", *self.config.run_options, "--name", name]
            for key, value in labels.items():
                args += ["--label", f"{key}={value}"]
            args += ["-w", working_dir, "--env-file", str(env_file)]
            for key in passthrough:
                args += ["-e", key]
            remove_after = 'dir=$1; shift; "$@"; rc=$?; rm -rf -- "$dir"; exit $rc'
            proc = subprocess.run(
                ["/bin/sh", "-c", remove_after, "sh", str(private), self.cli, *args, image, *argv],
                capture_output=True,
                cwd=working_dir,
                env={**os.environ, **passthrough},
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                check=False,
            )
        for line in _text(proc.stderr).splitlines():
            if line.startswith(("Unable to find image", "Status:")) or ": Pull" in line:
                log_line(line)
        self._check(proc, "create")

    def copy_in(self, name: str, chunks: Iterator[bytes]) -> None:
        proc = subprocess.Popen(
            [self.cli, "cp", "-", f"{name}:/"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        assert proc.stderr is not None
        try:
            with proc.stdin:
                for chunk in chunks:
                    proc.stdin.write(chunk)
        except BrokenPipeError:
            pass  # the CLI gave up: its error follows
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        stderr = proc.stderr.read()
        proc.stderr.close()
        self._check(subprocess.CompletedProcess(["cp"], proc.wait(), b"", stderr), "cp")

    def start(self, name: str) -> None:
        self._check(self._run("start", name), "start")

    def inspect(self, name: str) -> dict[str, Any] | None:
        try:
            proc = self._run("container", "inspect", name)
            self._check(proc, "container inspect")
        except NoSuchContainer:
            return None
        except BackendError as exc:
            raise WatchError(f"cannot inspect container {name}: {exc}") from exc
        info: dict[str, Any] = json.loads(proc.stdout)[0]
        return info

    @contextmanager
    def log_entries(self, name: str, since: int | None, follow: bool) -> Iterator[LogStream]:
        args = [self.cli, "logs", "--timestamps", *(["--follow"] if follow else [])]
        if since:
            args += ["--since", str(since)]
        proc = subprocess.Popen(
            [*args, name], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        stream = _CliLogStream(proc, name)
        try:
            yield stream
        finally:
            stream.close()

    @contextmanager
    def copy_out(self, name: str, path: str) -> Iterator[Iterator[bytes]]:
        proc = subprocess.Popen(
            [self.cli, "cp", f"{name}:{path}", "-"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout = proc.stdout
        assert stdout is not None
        assert proc.stderr is not None
        try:
            yield iter(lambda: stdout.read(STREAM_CHUNK), b"")
        finally:
            stdout.close()
            stderr = proc.stderr.read()
            proc.stderr.close()
            code = proc.wait()
        self._check(subprocess.CompletedProcess(["cp"], code, b"", stderr), "cp")

    def stop(self, name: str, grace: int) -> None:
        with suppress(NoSuchContainer):
            self._check(
                self._run("stop", "-t", str(grace), name, timeout=grace + CLI_TIMEOUT_SECONDS), "stop"
            )

    def remove(self, name: str) -> None:
        with suppress(NoSuchContainer):
            self._check(self._run("rm", "--force", "--volumes", name), "rm")

    def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = [arg for key, value in labels.items() for arg in ("--filter", f"label={key}={value}")]
        proc = self._run(
            "ps", "--all", "--no-trunc", *filters, "--format", "{{json .Names}}\t{{json .Labels}}"
        )
        self._check(proc, "ps")
        found = []
        for line in _text(proc.stdout).splitlines():
            names, _, labels_text = line.partition("\t")
            pairs = (item.partition("=") for item in json.loads(labels_text).split(",") if item)
            found.append({"name": json.loads(names).split(",")[0], "labels": {k: v for k, _, v in pairs}})
        return found

    @asynccontextmanager
    async def watcher(self) -> AsyncIterator[Watcher]:
        yield _AsyncCli(self)


class _CliLogStream:
    """``docker logs --timestamps``: its lines are the entries; a failure shows in its exit code."""

    def __init__(self, proc: subprocess.Popen[bytes], name: str) -> None:
        self.proc = proc
        self.name = name

    def __iter__(self) -> Iterator[bytes]:
        assert self.proc.stdout is not None
        messages = []
        for line in self.proc.stdout:
            if _ENTRY.match(line):
                yield from _cli_entries(line)
            else:
                messages.append(line)
        if self.proc.wait() != 0:
            _raise_log_failure(self.name, b"".join(messages))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _AsyncCli:
    """Follows a container through one long-lived ``docker logs --follow`` per container."""

    def __init__(self, cli: DockerCli) -> None:
        self.cli = cli.cli

    async def log_entries(self, name: str, since: int | None, follow: bool) -> AsyncIterator[bytes]:
        args = [
            "logs",
            "--timestamps",
            *(["--follow"] if follow else []),
            *(["--since", str(since)] if since else []),
            name,
        ]
        proc = await asyncio.create_subprocess_exec(
            self.cli, *args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        messages = []
        try:
            async for line in proc.stdout:
                if _ENTRY.match(line):
                    for entry in _cli_entries(line):
                        yield entry
                else:
                    messages.append(line)
            if await proc.wait() != 0:
                _raise_log_failure(name, b"".join(messages))
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def inspect(self, name: str) -> dict[str, Any] | None:
        proc = await asyncio.create_subprocess_exec(
            self.cli,
            "container",
            "inspect",
            name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
        if proc.returncode == 0:
            info: dict[str, Any] = json.loads(stdout)[0]
            return info
        if b"No such container" in stderr:
            return None
        raise WatchError(f"cannot inspect container {name}: {daemon_message(stderr) or _last_line(stderr)}")


_ENTRY = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* ")
# Docker logs a longer line as parts of this many bytes, each with its own timestamp; the CLI prints
# the parts of a line on one line: TIMESTAMP part TIMESTAMP part ... TIMESTAMP rest.
PART_BYTES = 16 * 1024


def _cli_entries(line: bytes) -> Iterator[bytes]:
    """The log entries of one line of ``docker logs --timestamps``."""
    while True:
        cut = line.index(b" ") + 1 + PART_BYTES
        if not _ENTRY.match(line, cut):
            yield line
            return
        yield line[:cut]
        line = line[cut:]


def _raise_log_failure(name: str, output: bytes) -> None:
    message = daemon_message(output) or _last_line(output) or "docker logs failed"
    if "No such container" in message:
        raise NoSuchContainer(f"container {name} no longer exists")
    raise WatchError(f"cannot read the log of container {name}: {message}")


def daemon_message(output: bytes) -> str | None:
    """The error the docker CLI printed: the daemon's (``Error response from daemon: ...``) first, as
    the CLI's own ``Error: ...`` lines after it only sum it up."""
    lines = [line.strip() for line in _text(output).splitlines()]
    for pattern in (_DAEMON_ERROR, _CLI_ERROR):
        for line in lines:
            match = pattern.match(line)
            if match:
                return match.group(1)
    return None


def _text(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")


def _last_line(output: bytes) -> str:
    lines = [line for line in _text(output).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def cli_env(env: Mapping[str, str], task_label: str) -> dict[str, str]:
    """The values an env file cannot hold (line breaks, or a line over the CLI's limit): they go in the
    CLI's own environment, named with ``-e NAME``; a name the CLI would read itself is refused."""
    passthrough = {
        k: v for k, v in env.items() if "\n" in v or "\r" in v or len(f"{k}={v}".encode()) > ENV_FILE_MAX_LINE
    }
    for key in passthrough:
        if _CLI_ENV.match(key) or is_startup_env_name(key):
            raise CmdExecConfigError(
                f"Task {task_label}: env var {key!r} has a multi-line or very long value, which the docker "
                "CLI can only pass on from its own environment, where this name would change how the CLI "
                "itself runs; rename the variable, or run the task without docker.docker and "
                "docker.run_options (the Engine API takes any value)"
            )
    return passthrough


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def sweep_private_dirs() -> None:
    """Remove the private dirs (env files, registry logins) that killed workers of this host left.

    A dir is left only if its worker and the shell around its ``docker create`` were both killed. It
    is removed once it is older than ``PRIVATE_MAX_AGE_SECONDS`` and the process whose id is in its
    name no longer exists (a reused id only delays the removal).
    """
    root = Path(tempfile.gettempdir())
    now = time.time()
    for entry in root.glob(f"{PRIVATE_PREFIX}*"):
        match = re.match(rf"{PRIVATE_PREFIX}(\d+)-", entry.name)
        try:
            if not match or now - entry.lstat().st_mtime < PRIVATE_MAX_AGE_SECONDS or _alive(int(match[1])):
                continue
        except OSError:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
