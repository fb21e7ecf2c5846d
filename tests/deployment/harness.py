"""Airflow as a real deployment: separate components, each "host" in its own mount and UTS namespace.

    PostgreSQL and Redis (Debian packages, scripts/ensure-services.sh), started on loopback ports
    the ECS emulator (tests/ecs_emulator: moto server for S3/ECS/CloudWatch + real containers)
    api-server, scheduler, dag-processor            on this machine
    triggerer                                       on "host" ``triggerer``
    airflow celery worker                           on "hosts" ``worker-a`` and ``worker-b``

A "host" (:class:`Host`) is a mount + UTS namespace with its own hostname and a private ``/tmp``
(a tmpfs mounted inside), held open by a ``sleep`` process; components are started inside it with
``nsenter``, so a worker can be stopped and started again on the same host (same ``/tmp``). The
hosts share only what a real deployment shares: the Docker daemon socket (``/run``), PostgreSQL,
Redis, S3 (loopback ports) and the DAG folder (outside ``/tmp``).

Everything lives in one folder outside ``/tmp`` (``/var/tmp/cmdexec-deploy-*``: it must stay
visible inside the hosts): the Airflow home, the DAG folder (a copy of ``tests/deployment/dags``),
the shared log folder, the database files. :meth:`Deployment.stop` stops every process, removes
the containers made for the deployment's DAGs and the folder, whatever happened before.

Set ``CMDEXEC_DEPLOY_SHARED_TMPDIR=1`` to give every component ``TMPDIR`` = a folder that the
Docker daemon sees at the same path (what a deployment that shares one Docker daemon between hosts
needs for bind mounts of worker temp folders); by default the hosts use their private ``/tmp``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")

DAG_PREFIX = "deploy_"  # every DAG of tests/deployment/dags: the leftover checks look only at these
LABEL_PREFIX = "io.github.cmdexec."
MANAGED_LABEL = f"{LABEL_PREFIX}managed=true"
BUCKET = "cmdexec-deploy-temporal"
CLUSTER = "cmdexec-deploy"
LOG_GROUP = "/cmdexec/deploy"
TASK_DEFINITION_FAMILY = "cmdexec-deploy-runner"
HOSTS = ("triggerer", "worker-a", "worker-b")
WORKERS = ("worker-a", "worker-b")
WORKER_CONCURRENCY = 8
USERNAME = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


class DeploymentError(RuntimeError):
    """The deployment could not start or answer; the message carries the components' log tails."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Call ``predicate`` until it returns something true; AssertionError naming ``what`` at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- processes and hosts ---------------------------------------------------------------------------
class Component:
    """One long-running process (in its own process group) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 20) -> None:
        """TERM the process group, KILL what is left after ``grace`` seconds."""
        stop_all([self], grace)


def stop_all(components: Iterable[Component], grace: float = 20) -> None:
    """TERM the process groups of ``components`` at once; KILL what is left after ``grace`` seconds."""
    components = list(components)
    for component in components:
        if component.alive():
            _signal_group(component.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for component in components:
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for component in components:
        _signal_group(component.pid, signal.SIGKILL)  # children that outlived their leader, too
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.proc.wait(timeout=30)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _code_paths_under_tmp() -> list[Path]:
    """The checkout and the virtualenv's real folder, where they live under /tmp."""
    venv = Path(sys.prefix).resolve()
    paths = {ROOT.resolve(), venv}
    return sorted(p for p in paths if p.is_relative_to("/tmp") and " " not in str(p))


class Host:
    """A pretend machine: a mount and UTS namespace with its own hostname and a private /tmp."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_dir = log_dir
        # A checkout (or its virtualenv) under /tmp stays visible on the host: it is bound back
        # into the private /tmp, as if every machine had the code installed at the same path.
        keep = " ".join(str(p) for p in _code_paths_under_tmp())
        script = (
            'set -e; old="/run/cmdexec-host-$1-oldtmp"; '
            'if [ -n "$2" ]; then mkdir -p "$old"; mount --bind /tmp "$old"; fi; '
            'mount -t tmpfs -o mode=1777,size=4g "cmdexec-$1-tmp" /tmp; '
            'for path in $2; do mkdir -p "$path"; mount --bind "$old${path#/tmp}" "$path"; done; '
            'hostname "$1"; echo ready; exec sleep infinity'
        )
        self._holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--fork",
                "--",
                "/bin/sh",
                "-c",
                script,
                "host",
                name,
                keep,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self._holder.stdout is not None
        first = self._holder.stdout.readline().decode(errors="replace").strip()
        if first != "ready":
            rest = self._holder.stdout.read().decode(errors="replace")
            self.stop()
            raise DeploymentError(f"host {name}: could not make its namespaces (needs root): {first}\n{rest}")

    def _enter(self) -> list[str]:
        # unshare(1) itself is in the new namespaces (it calls unshare(2) before it forks the shell)
        return ["nsenter", f"--target={self._holder.pid}", "--mount", "--uts", f"--wd={ROOT}", "--"]

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> Component:
        return Component(
            f"{self.name}/{name}", [*self._enter(), *argv], env, self.log_dir / f"{self.name}-{name}.log"
        )

    def run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._enter(), *argv], check=False, capture_output=True, text=True, timeout=timeout
        )

    def tmp_entries(self, pattern: str = "cmdexec-*") -> list[str]:
        """What matches ``pattern`` in this host's private /tmp."""
        proc = self.run(["find", "/tmp", "-mindepth", "1", "-maxdepth", "1", "-name", pattern])
        if proc.returncode != 0:
            raise AssertionError(f"cannot list /tmp of host {self.name}: {proc.stderr}")
        return sorted(proc.stdout.split())

    def stop(self) -> None:
        _signal_group(self._holder.pid, signal.SIGKILL)
        self._holder.wait(timeout=30)
        if self._holder.stdout is not None:
            self._holder.stdout.close()


# -- services ----------------------------------------------------------------------------------------
def _postgres_bin(program: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise DeploymentError(f"PostgreSQL's {program} is not installed: run scripts/ensure-services.sh")
    return found[-1]


def start_postgres(base: Path, log_dir: Path) -> tuple[Component, int]:
    """initdb + postgres (as the ``postgres`` user, trust auth on loopback only); returns (process, port)."""
    data = base / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    init = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            _postgres_bin("initdb"),
            "-D",
            str(data),
            "--auth=trust",
            "--username=airflow",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if init.returncode != 0:
        raise DeploymentError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = free_port()
    server = Component(
        "postgres",
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            _postgres_bin("postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=400",
        ],
        os.environ,
        log_dir / "postgres.log",
    )

    def ready() -> bool:
        if not server.alive():
            raise DeploymentError(f"postgres exited:\n{server.tail()}")
        probe = ["pg_isready", "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "-d", "postgres"]
        return subprocess.run(probe, check=False, capture_output=True).returncode == 0

    wait_until(ready, 60, "PostgreSQL to accept connections")
    create = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "airflow",
            "-d",
            "postgres",
            "-c",
            "CREATE DATABASE airflow",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if create.returncode != 0:
        raise DeploymentError(f"CREATE DATABASE failed: {create.stderr}")
    return server, port


def start_redis(base: Path, log_dir: Path) -> tuple[Component, int]:
    if shutil.which("redis-server") is None:
        raise DeploymentError("redis-server is not installed: run scripts/ensure-services.sh")
    data = base / "redis"
    data.mkdir()
    port = free_port()
    server = Component(
        "redis",
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        os.environ,
        log_dir / "redis.log",
    )

    def ready() -> bool:
        if not server.alive():
            raise DeploymentError(f"redis-server exited:\n{server.tail()}")
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping())
        except redis.exceptions.ConnectionError:
            return False

    wait_until(ready, 60, "Redis to answer")
    return server, port


# -- the deployment -----------------------------------------------------------------------------------
@dataclass
class Figures:
    """What a scenario measured, printed at its end so that it can be quoted."""

    scenario: str
    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def print(self) -> None:
        """Print the figures (shown when the test fails) and keep them in
        test-output/deployment-figures.jsonl (one line per scenario run), to quote from a green run."""
        line = json.dumps(self.values, default=str, sort_keys=False)
        print(f"\n[deployment figures] {self.scenario}: {line}")
        out = ROOT / "test-output" / "deployment-figures.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as figures:
            figures.write(json.dumps({"scenario": self.scenario, **self.values}, default=str) + "\n")


class Deployment:
    """The whole deployment; see the module docstring. Use :meth:`start` / :meth:`stop`."""

    def __init__(self, dag_ids: Iterable[str]) -> None:
        self.dag_ids = tuple(dag_ids)
        self.base = Path(tempfile.mkdtemp(prefix="cmdexec-deploy-", dir="/var/tmp"))
        self.base.chmod(0o755)  # the postgres user must reach its data folder
        self.log_dir = self.base / "component-logs"
        self.log_dir.mkdir()
        self.dags = self.base / "dags"
        self.project = self.dags / "project"
        self.task_logs = self.base / "logs"
        self.shared_tmp = (
            self.base / "shared-tmp" if os.environ.get("CMDEXEC_DEPLOY_SHARED_TMPDIR") == "1" else None
        )
        self.started_at = time.time()
        self.startup_seconds: dict[str, float] = {}  # how long each start-up phase took, for the report
        self.components: dict[str, Component] = {}
        self.hosts: dict[str, Host] = {}
        self.emulator: Any = None
        self.api_url = ""
        self.password = secrets.token_urlsafe(16)
        self._token: str | None = None
        self._env: dict[str, str] = {}
        self._celery: Any = None
        self._http: Any = None

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> Deployment:
        shutil.copytree(HERE / "dags", self.dags, ignore=shutil.ignore_patterns("__pycache__"))
        self.task_logs.mkdir()
        if self.shared_tmp is not None:
            self.shared_tmp.mkdir(mode=0o1777)
        began = time.monotonic()
        postgres, pg_port = start_postgres(self.base, self.log_dir)
        self.components["postgres"] = postgres
        redis_server, redis_port = start_redis(self.base, self.log_dir)
        self.components["redis"] = redis_server
        self._start_emulator()
        self._env = self._airflow_env(pg_port, redis_port)
        self.startup_seconds["services"] = round(time.monotonic() - began, 1)
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            check=False,
            env=self._env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if migrate.returncode != 0:
            raise DeploymentError(
                f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-5000:]}"
            )
        migrated = time.monotonic() - began
        self.startup_seconds["db_migrate"] = round(migrated - self.startup_seconds["services"], 1)
        api_port = int(urllib.parse.urlsplit(self.api_url).port or 0)
        self._start(
            "api-server",
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"],
        )
        self._start("scheduler", [AIRFLOW, "scheduler", "--skip-serve-logs"])
        self._start("dag-processor", [AIRFLOW, "dag-processor"])
        for name in HOSTS:
            self.hosts[name] = Host(name, self.log_dir)
        self._start("triggerer", [AIRFLOW, "triggerer", "--skip-serve-logs"], host="triggerer")
        for worker in WORKERS:
            self.start_worker(worker)
        self._wait_healthy()
        self.startup_seconds["total"] = round(time.monotonic() - began, 1)
        return self

    def _start_emulator(self) -> None:
        from tests.ecs_emulator import EcsEmulator

        self.emulator = EcsEmulator().start()
        self.emulator.boto3_client("s3").create_bucket(Bucket=BUCKET)
        self.emulator.boto3_client("logs").create_log_group(logGroupName=LOG_GROUP)
        ecs = self.emulator.boto3_client("ecs")
        ecs.create_cluster(clusterName=CLUSTER)
        ecs.register_task_definition(
            family=TASK_DEFINITION_FAMILY,
            containerDefinitions=[
                {
                    "name": "main",
                    "image": IMAGE,
                    "memory": 256,
                    "essential": True,
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": LOG_GROUP,
                            "awslogs-region": self.emulator.region,
                            "awslogs-stream-prefix": "cmdexec",
                        },
                    },
                }
            ],
            tags=[{"key": "digdag.docker.image", "value": IMAGE}],
        )

    def _airflow_env(self, pg_port: int, redis_port: int) -> dict[str, str]:
        from cryptography.fernet import Fernet

        self.api_url = f"http://127.0.0.1:{free_port()}"
        home = self.base / "airflow-home"
        home.mkdir()
        passwords = self.base / "passwords.json"
        passwords.write_text(json.dumps({USERNAME: self.password}))
        passwords.chmod(0o600)
        database = f"postgresql+psycopg2://airflow@127.0.0.1:{pg_port}/airflow"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "_AIRFLOW", "AWS_", "PYTEST_"))
        }
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                # The hosts have no DNS names: Airflow records each component's plain hostname.
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "socket.gethostname",
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__EXPOSE_CONFIG": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://airflow@127.0.0.1:{pg_port}/airflow",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
                # Generous timeouts: the machine is shared and slow; a slow answer is not what is tested here.
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs),  # shared by every host
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "90",
                "AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT": json.dumps(
                    {
                        "conn_type": "cmdexec_ecs",
                        "extra": {
                            "cluster_name": CLUSTER,
                            "region": self.emulator.region,
                            "poll_interval": 1,
                        },
                    }
                ),
                "AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT": json.dumps(
                    {
                        "conn_type": "cmdexec_storage",
                        "extra": {
                            "type": "s3",
                            "bucket": BUCKET,
                            "endpoint": self.emulator.endpoint_url,
                            "path_style_access": True,
                        },
                    }
                ),
                **self.emulator.aws_env,
                "CMDEXEC_TEST_IMAGE": IMAGE,
                "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.shared_tmp is not None:
            env["TMPDIR"] = str(self.shared_tmp)
        return env

    def _start(self, name: str, argv: list[str], host: str | None = None) -> Component:
        old = self.components.get(name)
        if old is not None and old.alive():
            raise DeploymentError(f"{name} is already running")
        component = (
            self.hosts[host].start(name, argv, self._env)
            if host
            else Component(name, argv, self._env, self.log_dir / f"{name}.log")
        )
        self.components[name] = component
        return component

    def start_worker(self, worker: str, queues: str = "default") -> Component:
        """Start (or start again, on the same host) the Celery worker of host ``worker``."""
        return self._start(
            worker,
            [
                AIRFLOW,
                "celery",
                "worker",
                "--skip-serve-logs",
                "--queues",
                queues,
                "--concurrency",
                str(WORKER_CONCURRENCY),
                "--without-gossip",
                "--without-mingle",
            ],
            host=worker,
        )

    def _wait_healthy(self, timeout: float = 300) -> None:
        def check_alive() -> None:
            dead = [c.name for c in self.components.values() if not c.alive()]
            if dead:
                raise DeploymentError(f"{', '.join(dead)} exited during start-up\n{self.diagnostics()}")

        def api_up() -> bool:
            check_alive()
            try:
                return self.http().get("/api/v2/monitor/health").status_code == 200
            except Exception:  # noqa: BLE001 - not listening yet
                return False

        def components_healthy() -> bool:
            check_alive()
            health = self.http().get("/api/v2/monitor/health").json()
            return all(
                health.get(part, {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        def workers_up() -> bool:
            check_alive()
            replies = self.celery().control.ping(timeout=2)
            return {f"celery@{w}" for w in WORKERS} <= {name for reply in replies for name in reply}

        def dags_parsed() -> bool:
            check_alive()
            errors = self.api("GET", "/api/v2/importErrors")["import_errors"]
            if errors:
                raise DeploymentError("DAG import errors:\n" + "\n".join(e["stack_trace"] for e in errors))
            found = {d["dag_id"] for d in self.api("GET", "/api/v2/dags", params={"limit": 100})["dags"]}
            return set(self.dag_ids) <= found

        try:
            wait_until(api_up, timeout, "the api-server's health endpoint", interval=1)
            wait_until(
                components_healthy,
                timeout,
                "scheduler, triggerer and dag-processor to be healthy",
                interval=1,
            )
            wait_until(workers_up, timeout, "both Celery workers to answer a ping", interval=1)
            wait_until(dags_parsed, timeout, f"the DAGs {self.dag_ids} to be parsed", interval=1)
        except AssertionError as exc:
            raise DeploymentError(f"{exc}\n{self.diagnostics()}") from None

    def remove_leftovers(self) -> dict[str, Any]:
        """Remove what a scenario left (see :meth:`leftovers`), so that the next one counts only its own;
        return what was removed."""
        found = self.leftovers()
        for name in found["containers"]:
            subprocess.run(
                ["docker", "rm", "--force", "--volumes", name], check=False, capture_output=True, timeout=120
            )
        for folder in found["daemon_host_tmp"]:
            (Path(folder) / "io").rmdir()
            Path(folder).rmdir()
        for host in self.hosts.values():
            host.run(
                [
                    "find",
                    "/tmp",
                    "-mindepth",
                    "1",
                    "-maxdepth",
                    "1",
                    "-name",
                    "cmdexec-*",
                    "-exec",
                    "rm",
                    "-rf",
                    "{}",
                    "+",
                ]
            )
        if self.shared_tmp is not None:
            for path in self.shared_tmp.glob("cmdexec-*"):
                shutil.rmtree(path, ignore_errors=True)
        s3 = self.emulator.boto3_client("s3")
        for key in found["s3_objects"]:
            s3.delete_object(Bucket=BUCKET, Key=key)
        if found["ecs_containers"]:
            self.emulator.stop_all_tasks(reason="left running by a deployment scenario")
        return found

    def stop(self) -> list[str]:
        """Stop everything and remove what the deployment made; return the containers it had to remove."""
        # Those that run tasks first, then those that schedule and serve them, then their services.
        for group in (
            (*WORKERS, "triggerer"),
            ("scheduler", "dag-processor", "api-server"),
            ("redis", "postgres"),
        ):
            stop_all(self.components[name] for name in group if name in self.components)
        for host in self.hosts.values():
            host.stop()
        removed = self.our_containers()
        for name in removed:
            subprocess.run(
                ["docker", "rm", "--force", "--volumes", name], check=False, capture_output=True, timeout=120
            )
        for folder in self.daemon_made_tmp_folders():
            (Path(folder) / "io").rmdir()
            Path(folder).rmdir()
        if self._http is not None:
            self._http.close()
        if self.emulator is not None:
            self.emulator.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        return removed

    def diagnostics(self, lines: int = 40) -> str:
        """The last lines of every component's log."""
        parts = [
            f"--- {c.name} ({'running' if c.alive() else f'exited {c.proc.returncode}'}) ---\n{c.tail(lines)}"
            for c in self.components.values()
        ]
        return "\n".join(parts)

    # -- clients --------------------------------------------------------------------------------
    def http(self) -> Any:
        import httpx

        if self._http is None:
            self._http = httpx.Client(base_url=self.api_url, timeout=60)
        return self._http

    def celery(self) -> Any:
        """A Celery app on the deployment's broker, for remote control of the workers."""
        if self._celery is None:
            from celery import Celery

            self._celery = Celery("cmdexec-deploy-control", broker=self._env["AIRFLOW__CELERY__BROKER_URL"])
        return self._celery

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            response = self.http().post("/auth/token", json={"username": USERNAME, "password": self.password})
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        """A REST API call (``/api/v2/...``) with the simple auth manager's token; the JSON answer."""
        response = self.http().request(method, path, headers={**self._auth(), **(headers or {})}, **kwargs)
        if response.status_code == 401:  # the token expired: get a new one once
            self._token = None
            response = self.http().request(
                method, path, headers={**self._auth(), **(headers or {})}, **kwargs
            )
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    # -- DAG runs and task instances ---------------------------------------------------------------
    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Trigger a manual run (no logical date); return its run id."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def create_scheduled_run(self, dag_id: str, logical_date: str) -> str:
        """Create a run as the scheduler does when a schedule fires (``run_type`` scheduled, queued,
        its task instances made from the serialized DAG), at ``logical_date`` (ISO 8601); return its
        run id. The REST API can only trigger manual runs, and waiting for a schedule to fire would
        cost minutes; this is the scheduler's own call (``SerializedDAG.create_dagrun``), run against
        the deployment's database, and the scheduler then starts the run as any other."""
        script = (
            "import sys, pendulum\n"
            "from airflow.models.serialized_dag import SerializedDagModel\n"
            "from airflow.utils.session import create_session\n"
            "from airflow.utils.state import DagRunState\n"
            "from airflow.utils.types import DagRunTriggeredByType, DagRunType\n"
            "dag_id, when = sys.argv[1], pendulum.parse(sys.argv[2])\n"
            "with create_session() as session:\n"
            "    dag = SerializedDagModel.get_dag(dag_id, session=session)\n"
            "    run = dag.create_dagrun(\n"
            "        run_id=f'scheduled__{when.isoformat()}', logical_date=when,\n"
            "        data_interval=(when, when), run_after=when, run_type=DagRunType.SCHEDULED,\n"
            "        triggered_by=DagRunTriggeredByType.TIMETABLE, state=DagRunState.QUEUED,\n"
            "        session=session)\n"
            "    print(run.run_id)\n"
        )
        done = subprocess.run(
            [str(VENV_BIN / "python"), "-c", script, dag_id, logical_date],
            check=False,
            env=self._env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"could not create a scheduled run of {dag_id}:\n{done.stderr[-3000:]}")
        return done.stdout.strip().splitlines()[-1]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait until the run is no longer queued/running; return its state."""
        try:
            return wait_until(
                lambda: (s := self.run_state(dag_id, run_id)) not in ("queued", "running") and s,
                timeout,
                f"DAG run {dag_id} {run_id} to finish",
                interval=1,
            )
        except AssertionError as exc:
            states = {t: ti["state"] for t, ti in self.task_instances(dag_id, run_id).items()}
            raise AssertionError(f"{exc}; task states: {states}\n{self.diagnostics()}") from None

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """``{task_id: task instance}`` (state, try_number, duration, hostname, id, ...) from the REST API."""
        answer = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances", params={"limit": 1000}
        )
        return {ti["task_id"]: ti for ti in answer["task_instances"]}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}")

    def tries(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of a task instance (hostname, state, ...), oldest first."""
        answer = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/tries")
        return sorted(answer["task_instances"], key=lambda t: t["try_number"])

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> Any:
        return self.api(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}",
            json={"new_state": state},
        )

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) else value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> str:
        """A try's task log through the REST API, one message per line (the latest try by default)."""
        if try_number is None:
            try_number = self.task_instance(dag_id, run_id, task_id)["try_number"]
        answer = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
        )
        lines = []
        for entry in answer["content"]:
            if isinstance(entry, str):
                lines.append(entry)
                continue
            lines.append(str(entry.get("event", "")))
            for detail in entry.get("error_detail") or []:  # a failed try's exception, for the failure report
                if isinstance(detail, dict):
                    lines.append(f"  {detail.get('exc_type')}: {detail.get('exc_value')}")
        return "\n".join(lines)

    def task_log_file(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """A try's log file in the shared log folder as written so far (also while it runs)."""
        path = (
            self.task_logs
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / f"attempt={try_number}.log"
        )
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- Celery queues ----------------------------------------------------------------------------
    def consume(self, worker: str, queue: str, on: bool) -> None:
        """Make ``worker`` start (``on``) or stop consuming ``queue`` (Celery remote control); check it."""
        control = self.celery().control
        destination = [f"celery@{worker}"]
        replies = (
            control.add_consumer(queue, destination=destination, reply=True, timeout=10)
            if on
            else control.cancel_consumer(queue, destination=destination, reply=True, timeout=10)
        )
        if not replies:
            raise AssertionError(
                f"worker {worker} did not answer the request to {'add' if on else 'cancel'} {queue}"
            )
        # The worker answers the request before its consumer has changed: look until it has (a
        # single look right after the answer failed once, on a loaded machine, with the queue added
        # a moment later).
        names: set[str] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            active = control.inspect(destination=destination, timeout=10).active_queues() or {}
            names = {q["name"] for q in active.get(destination[0], [])}
            if (queue in names) == on:
                return
            time.sleep(0.5)
        raise AssertionError(
            f"worker {worker} consumes {sorted(names)} 20 s after asking it to "
            f"{'add' if on else 'cancel'} {queue}"
        )

    # -- processes of a task ------------------------------------------------------------------------
    def task_processes(self, ti_id: str) -> tuple[int, int]:
        """(task process, its supervisor) running task instance ``ti_id`` on a worker."""
        needle = f"airflow worker -- {ti_id}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if cmdline.startswith(needle):
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                return int(entry), parent
        raise AssertionError(f"no task process 'airflow worker -- {ti_id}' found")

    # -- containers, ECS tasks, leftovers ----------------------------------------------------------------
    def watch_containers(self, dag_id: str) -> ContainerWatch:
        """Record the containers created for ``dag_id`` from now on (use it as a context manager)."""
        return ContainerWatch(dag_id)

    def container_running(self, name: str) -> bool:
        proc = subprocess.run(
            ["docker", "container", "inspect", "--format", "{{.State.Running}}", name],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.returncode == 0 and proc.stdout.strip() == "true"

    def ecs_tasks(self, dag_id: str, task_id: str | None = None) -> list[Any]:
        """The ECS tasks (emulator) started for ``dag_id`` (and ``task_id``): their S3 keys name them."""
        needle = f"/{dag_id}/{task_id}/" if task_id else f"/{dag_id}/"
        return [
            t
            for t in list(self.emulator.tasks.values())
            if any(needle in value for value in t.environment.values())
        ]

    def our_containers(self, dag_id: str | None = None) -> list[str]:
        """Containers (running or not) with our managed label, made for this deployment's DAGs."""
        proc = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label={MANAGED_LABEL}",
                "--format",
                '{{.Names}}\t{{.Label "' + LABEL_PREFIX + 'dag_id"}}',
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        names = []
        for line in proc.stdout.splitlines():
            name, _, owner = line.partition("\t")
            if owner.startswith(dag_id or DAG_PREFIX):
                names.append(name)
        return names

    def daemon_made_tmp_folders(self) -> list[str]:
        """Empty ``/tmp/cmdexec-*/io`` folders on this machine (the Docker daemon's host) made since the
        deployment started, with the Docker daemon's mode (0755; a worker's mkdtemp makes 0700): the
        daemon creates a missing bind-mount source, here a worker's IO folder that exists only in
        that worker host's private /tmp."""
        found = []
        for io_dir in Path("/tmp").glob("cmdexec-*/io"):
            folder = io_dir.parent
            try:
                info = folder.stat()
                empty = not any(io_dir.iterdir()) and [p.name for p in folder.iterdir()] == ["io"]
            except OSError:
                continue
            if empty and info.st_ctime >= self.started_at and stat.S_IMODE(info.st_mode) == 0o755:
                found.append(str(folder))
        return sorted(found)

    def s3_objects(self) -> list[str]:
        s3 = self.emulator.boto3_client("s3")
        return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def leftovers(self, dag_id: str | None = None) -> dict[str, Any]:
        """Everything that should be gone: our containers, cmdexec-* folders in each host's /tmp (and in
        the shared TMPDIR, if any) and those the Docker daemon made in this machine's /tmp, S3 objects,
        running ECS emulator containers."""
        found: dict[str, Any] = {
            "containers": self.our_containers(dag_id),
            "tmp": {name: host.tmp_entries() for name, host in self.hosts.items()},
            "daemon_host_tmp": self.daemon_made_tmp_folders(),
            "s3_objects": self.s3_objects(),
            "ecs_containers": self.emulator.running_containers(),
        }
        if self.shared_tmp is not None:
            found["tmp"]["shared"] = sorted(p.name for p in self.shared_tmp.glob("cmdexec-*"))
        return found

    @staticmethod
    def nothing_left(leftovers: Mapping[str, Any]) -> bool:
        return not (
            leftovers["containers"]
            or leftovers["s3_objects"]
            or leftovers["ecs_containers"]
            or leftovers["daemon_host_tmp"]
            or any(leftovers["tmp"].values())
        )


class ContainerWatch:
    """``docker events`` of the containers created for one DAG, recorded while the watch is open.

    Asking the daemon afterwards (``--since``/``--until``) is not enough: it keeps only its last
    few hundred events, and a shared daemon makes many.
    """

    def __init__(self, dag_id: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(
            [
                "docker",
                "events",
                "--since",
                f"{time.time():.3f}",
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--filter",
                f"label={LABEL_PREFIX}dag_id={dag_id}",
                "--format",
                "{{json .}}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"docker-events-{dag_id}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip():
                self.events.append(json.loads(line))

    def names(self, run_id: str | None = None) -> list[str]:
        """Names of the containers created (for the DAG run ``run_id``, or all)."""
        attributes = [event["Actor"]["Attributes"] for event in list(self.events)]
        return [a["name"] for a in attributes if run_id is None or a.get(f"{LABEL_PREFIX}run_id") == run_id]

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=30)
        self._reader.join(timeout=30)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> ContainerWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _q(run_id: str) -> str:
    """A run id in a URL path (manual run ids have ``:`` and ``+``)."""
    return urllib.parse.quote(run_id, safe="")
