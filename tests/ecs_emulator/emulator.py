"""ECS emulator: moto in server mode (S3, ECS, CloudWatch Logs, ... on one loopback endpoint) whose
ECS tasks really run, as local Docker containers.

moto alone never runs anything (and reports exit code 0), so tests of an ECS backend against bare
moto prove nothing.  Here every RunTask starts ``docker run -d --network host <image> ...`` built
from the task definition and the overrides, streams the container's output into the CloudWatch
Logs stream named by the task definition's ``awslogs`` configuration, and drives the task through
PROVISIONING -> PENDING -> RUNNING -> (DEPROVISIONING) -> STOPPED with the container's real exit
code.  See ``EcsEmulator`` for the API, ``_http`` and ``_moto_patch`` for how requests are caught.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import queue
import re
import socket
import struct
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import docker
import docker.errors
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from . import _http, _moto_patch
from ._http import EcsInterceptor, TrackingWSGIServer

log = logging.getLogger("tests.ecs_emulator")

LABEL = "cmdexec-ecs-emulator"
LABEL_INSTANCE = f"{LABEL}.instance"
LABEL_PID = f"{LABEL}.pid"
LABEL_HOST = f"{LABEL}.host"
LABEL_TASK_ARN = f"{LABEL}.task-arn"
LABEL_TASK_ID = f"{LABEL}.task-id"
LABEL_CLUSTER = f"{LABEL}.cluster"

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account

# CloudWatch Logs limits (as enforced by Docker's awslogs driver)
_MAX_EVENT_BYTES = 262_144 - 26
_MAX_BATCH_BYTES = 1_048_576
_MAX_BATCH_EVENTS = 10_000
_PER_EVENT_BYTES = 26
# bufio.Scanner's default limit, which the ECS agent uses to read environment files
_MAX_ENV_FILE_LINE = 64 * 1024

_ENV_FILE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:s3:::([^/]+)/(.+)$")

LOG_GROUP_MISSING_REASON = (
    "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 "
    "times: failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log "
    "group does not exist. : exit status 1"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _image_ref(image: str) -> str:
    """docker.io/library/foo:latest style reference, as in CannotPullContainerError messages."""
    name, tag = image, "latest"
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def parse_env_file(data: bytes) -> dict[str, str]:
    """Parse an ECS environment file like the ECS agent does.

    ``#`` comment lines are skipped, lines without ``=`` ignored, the line is split at the first
    ``=``, and a line whose key or value is empty is NOT applied.  No quotes, no trimming.
    Raises ValueError for lines longer than 64 KiB (the agent's bufio.Scanner fails on them).
    """
    env: dict[str, str] = {}
    for raw in data.split(b"\n"):
        if len(raw) > _MAX_ENV_FILE_LINE:
            raise ValueError("bufio.Scanner: token too long")
        line = raw.decode("utf-8", "replace")
        if line.endswith("\r"):
            line = line[:-1]
        if line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key and value:
            env[key] = value
    return env


def _kv_list_to_dict(items: list[dict[str, Any]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name = item.get("name")
        if name is not None:
            out[str(name)] = "" if item.get("value") is None else str(item.get("value"))
    return out


class _TaskDefinitionView:
    """A task definition as moto's Task constructor should see it: never ``awsvpc``, so moto
    does not try to build an EC2 network interface (the emulator fills in the attachment)."""

    network_mode = None

    def __init__(self, td: Any) -> None:
        self._td = td

    def __getattr__(self, name: str) -> Any:
        return getattr(self._td, name)


@dataclass(eq=False)
class EmulatedTask:
    """What the emulator knows about one task it was asked to run (read it, don't change it)."""

    task_arn: str
    task_id: str
    cluster: str
    container_name: str
    image: str
    command: list[str] | None
    entrypoint: list[str] | None
    working_dir: str | None
    user: str | None
    log_group: str | None
    log_stream: str | None
    log_region: str | None
    create_log_group: bool
    environment_files: list[dict[str, Any]]
    explicit_environment: dict[str, str]
    launch_type: str
    #: the environment the container really got (explicit + env files + AWS_* defaults)
    environment: dict[str, str] = field(default_factory=dict)
    container_id: str | None = None
    exit_code: int | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    fail_to_start: str | None = None
    #: the container's output lines (stdout and stderr, last 10000), also without awslogs
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=10_000))
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    # internals
    moto_task: Any = field(default=None, repr=False)
    # Re-entrant: _finish_not_started runs both inside and outside a held lock (stop during start-up).
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    wake: threading.Event = field(default_factory=threading.Event, repr=False)
    stop_requested: bool = False
    stop_issued: bool = False
    running: bool = False
    exited: bool = False
    aborted: bool = False
    log_response: Any = field(default=None, repr=False)


class EcsEmulator:
    """moto server + really running ECS tasks.  Use as a context manager (or start()/stop()).

    Constructor (all keyword-only, all optional):
      region="us-east-1", host="127.0.0.1", port=0 (free port),
      stop_timeout=2 (seconds between SIGTERM and SIGKILL on StopTask / docker stop),
      log_flush_interval=0.2 (seconds between CloudWatch batches),
      provisioning_delay=0.0 (seconds a task stays PROVISIONING before it starts),
      deprovisioning_delay=0.0 (seconds a task stays DEPROVISIONING after its container exited),
      image_map=None (task definition image -> local image, e.g. an ECR URI -> "cmdexec-test:bookworm"),
      inject_aws_env=True (AWS_REGION, AWS_DEFAULT_REGION, AWS_EXECUTION_ENV in the container,
      unless the task sets them, as Fargate does).

    Attributes: endpoint_url, region, account_id, instance_id, aws_env (dict of env vars for
    clients), run_task_requests (every RunTask request body as received, parsed), ecs_requests
    (every ECS call: {"operation", "request", "result"}), started_tasks (containers really
    started), task_arns, tasks (task ARN -> EmulatedTask).

    Methods: start(), stop() (idempotent), boto3_client(service, **kw), task(arn_or_id),
    running_containers(), containers(include_stopped=True), wait_all_stopped(timeout),
    wait_task_stopped(arn, timeout), fail_next_run_task(reason), throttle_next(n, operation),
    fail_to_start_next(reason), stop_all_tasks(), reset(moto_state=True).
    """

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        host: str = "127.0.0.1",
        port: int = 0,
        stop_timeout: int = 2,
        log_flush_interval: float = 0.2,
        provisioning_delay: float = 0.0,
        deprovisioning_delay: float = 0.0,
        image_map: dict[str, str] | None = None,
        inject_aws_env: bool = True,
    ) -> None:
        self.region = region
        self.host = host
        self.port = port
        self.stop_timeout = int(stop_timeout)
        self.log_flush_interval = float(log_flush_interval)
        self.provisioning_delay = float(provisioning_delay)
        self.deprovisioning_delay = float(deprovisioning_delay)
        self.image_map = dict(image_map or {})
        self.inject_aws_env = inject_aws_env
        self.account_id = DEFAULT_ACCOUNT_ID
        self.instance_id = uuid.uuid4().hex[:12]
        self.endpoint_url: str = ""

        self._lock = threading.RLock()
        self._lifecycle_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._closing = False
        self._thread_prefix = f"ecs-emu-{self.instance_id}"
        self._threads: list[threading.Thread] = []
        self._server: TrackingWSGIServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._docker: docker.DockerClient | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._reset_bookkeeping()

    def _reset_bookkeeping(self) -> None:
        with self._lock:
            self.run_task_requests: list[dict[str, Any]] = []
            self.ecs_requests: list[dict[str, Any]] = []
            self.started_tasks = 0
            self.task_arns: list[str] = []
            self.tasks: dict[str, EmulatedTask] = {}
            self._tasks_by_id: dict[str, EmulatedTask] = {}
            self._throttles: dict[str, int] = {}
            self._run_task_failures: list[str] = []
            self._start_failures: list[str] = []
            self._client_tokens: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> EcsEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> EcsEmulator:
        with self._lifecycle_lock:
            if self._stopped:
                raise RuntimeError("an EcsEmulator cannot be restarted; create a new one")
            if self._started:
                return self
            self._docker = docker.from_env(timeout=60)
            self._docker.api.ping()
            self._sweep_abandoned_containers()
            _moto_patch.install(self)
            try:
                self._server = TrackingWSGIServer(
                    self.host, self.port, EcsInterceptor(self), thread_prefix=self._thread_prefix
                )
                self._serve_thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.1},
                    name=f"{self._thread_prefix}-serve",
                    daemon=True,
                )
                self._serve_thread.start()
                self.port = self._server.port
                self.endpoint_url = f"http://{self.host}:{self.port}"
            except BaseException:
                _moto_patch.uninstall(self)
                self._docker.close()
                raise
            self._started = True
            atexit.register(self.stop)
            log.debug("ECS emulator %s listening on %s", self.instance_id, self.endpoint_url)
            return self

    def stop(self) -> None:
        """Stop every task (containers killed and removed), the HTTP server and all threads."""
        with self._lifecycle_lock:
            if not self._started or self._stopped:
                self._stopped = True
                return
            self._stopped = True
        try:
            with self._lock:
                self._closing = True
            self.stop_all_tasks(reason="ECS emulator shut down", timeout=30)
        finally:
            self._remove_my_containers()
            if self._server is not None:
                self._server.shutdown()
                if self._serve_thread is not None:
                    self._serve_thread.join(10)
                alive = self._server.close_connections(timeout=5)
                if alive:
                    log.warning("ECS emulator: %d HTTP connection threads did not end", len(alive))
            _moto_patch.uninstall(self)
            for client in self._clients.values():
                with contextlib.suppress(Exception):
                    client.close()
            self._clients.clear()
            if self._docker is not None:
                self._docker.close()
            atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    # ------------------------------------------------------------------ clients
    @property
    def aws_env(self) -> dict[str, str]:
        """Environment variables that point any AWS SDK/CLI at this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def boto3_client(self, service: str, region: str | None = None, **kwargs: Any) -> Any:
        """A fresh boto3 client for this emulator (dummy credentials, path-style S3).
        Extra keyword arguments go to ``Session.client`` (e.g. ``config=Config(retries=...)``)."""
        session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=region or self.region,
        )
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        kwargs.setdefault("config", Config(s3={"addressing_style": "path"}))
        return session.client(service, **kwargs)

    def _client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.boto3_client(
                    service,
                    region=key[1],
                    config=Config(
                        s3={"addressing_style": "path"},
                        retries={"mode": "standard", "max_attempts": 3},
                        connect_timeout=5,
                        read_timeout=60,
                        max_pool_connections=50,
                    ),
                )
            return self._clients[key]

    # ------------------------------------------------------------------ test helpers
    def fail_next_run_task(self, reason: str = "AGENT") -> None:
        """The next RunTask returns no task and ``failures=[{"arn": ..., "reason": reason}]``."""
        with self._lock:
            self._run_task_failures.append(reason)

    def throttle_next(self, n: int = 1, operation: str = "RunTask") -> None:
        """The next ``n`` calls of the ECS ``operation`` get HTTP 400 ThrottlingException."""
        with self._lock:
            self._throttles[operation] = self._throttles.get(operation, 0) + int(n)

    def stop_throttling(self, operation: str) -> int:
        """Stop throttling ``operation``; returns how many throttled answers were still to come."""
        with self._lock:
            return self._throttles.pop(operation, 0)

    def fail_to_start_next(
        self,
        reason: str = (
            "CannotPullContainerError: pull image manifest has been retried 7 time(s): failed to "
            "resolve ref docker.io/library/example:latest: docker.io/library/example:latest: not found"
        ),
    ) -> None:
        """The next task created by RunTask goes STOPPED (TaskFailedToStart) without running."""
        with self._lock:
            self._start_failures.append(reason)

    def task(self, arn_or_id: str) -> EmulatedTask:
        with self._lock:
            return self._tasks_by_id[arn_or_id.rsplit("/", 1)[-1]]

    def containers(self, include_stopped: bool = True) -> list[str]:
        """Ids of this emulator's containers (running only unless include_stopped)."""
        assert self._docker is not None, "emulator not started"
        found = self._docker.api.containers(
            all=include_stopped, filters={"label": [f"{LABEL}=1", f"{LABEL_INSTANCE}={self.instance_id}"]}
        )
        return [c["Id"] for c in found]

    def running_containers(self) -> list[str]:
        return self.containers(include_stopped=False)

    def wait_task_stopped(self, arn_or_id: str, timeout: float = 30) -> EmulatedTask:
        et = self.task(arn_or_id)
        if not et.done.wait(timeout):
            raise TimeoutError(f"task {et.task_arn} not stopped after {timeout}s")
        return et

    def wait_all_stopped(self, timeout: float = 30) -> bool:
        """Wait until every task is STOPPED and its container removed; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            tasks = list(self.tasks.values())
        for et in tasks:
            if not et.done.wait(max(0.0, deadline - time.monotonic())):
                pending = [t.task_arn for t in tasks if not t.done.is_set()]
                raise TimeoutError(f"tasks still not stopped after {timeout}s: {pending}")
        return True

    def stop_all_tasks(self, reason: str = "stopped by the ECS emulator", timeout: float = 30) -> None:
        """Kill every task's container and wait until all tasks are STOPPED and threads ended."""
        with self._lock:
            tasks = list(self.tasks.values())
        for et in tasks:
            self._abort(et, reason)
        deadline = time.monotonic() + timeout
        for et in tasks:
            et.done.wait(max(0.0, deadline - time.monotonic()))
        self._join_threads(max(1.0, deadline - time.monotonic()))

    def reset(self, moto_state: bool = True) -> None:
        """Between tests: stop all tasks, remove their containers, clear counters, records and
        injections; with moto_state also wipe moto's state (all services)."""
        if not self.running:
            self._reset_bookkeeping()
            return
        self.stop_all_tasks(reason="ECS emulator reset")
        self._remove_my_containers()
        self._reset_bookkeeping()
        if moto_state:
            req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
            _moto_patch.reassert_transition()

    # ------------------------------------------------------------------ request hook (HTTP thread)
    def _on_ecs_request(self, operation: str, request: dict[str, Any]) -> Any:
        with self._lock:
            entry = {"operation": operation, "request": request, "result": "forwarded"}
            self.ecs_requests.append(entry)
            if operation == "RunTask":
                self.run_task_requests.append(request)
            left = self._throttles.get(operation, 0)
            if left > 0:
                self._throttles[operation] = left - 1
                entry["result"] = "throttled"
                return "throttle"
            if operation == "RunTask" and self._run_task_failures:
                reason = self._run_task_failures.pop(0)
                entry["result"] = "failed"
                cluster = str(request.get("cluster") or "default").rsplit("/", 1)[-1]
                arn = (
                    f"arn:aws:ecs:{self.region}:{self.account_id}:container-instance/"
                    f"{cluster}/{uuid.uuid4().hex}"
                )
                return {"tasks": [], "failures": [{"arn": arn, "reason": reason}]}
        return None

    # ------------------------------------------------------------------ moto backend hooks (HTTP thread)
    def _moto_run_task(
        self,
        backend: Any,
        *,
        cluster_str: str,
        task_definition_str: str,
        count: int,
        overrides: dict[str, Any] | None,
        started_by: str | None,
        tags: list[dict[str, str]] | None,
        launch_type: str | None,
        networking_configuration: dict[str, Any] | None,
        group: str | None,
        platform_version: str | None,
        capacity_provider_strategy: list[dict[str, Any]] | None,
    ) -> list[Any]:
        from moto.ecs.exceptions import InvalidParameterException
        from moto.ecs.models import Task

        if launch_type and launch_type not in ("EC2", "FARGATE", "EXTERNAL"):
            raise InvalidParameterException("launch type should be one of [EC2,FARGATE,EXTERNAL]")
        if launch_type and capacity_provider_strategy:
            raise InvalidParameterException(
                "Specify either Launch Type or Capacity Provider Strategy, but not both."
            )
        count = int(count or 1)
        if not 1 <= count <= 10:
            raise InvalidParameterException("count must be between 1 and 10.")
        cluster = backend._get_cluster(cluster_str)
        td = backend.describe_task_definition(task_definition_str)
        overrides = overrides or {}
        names = [c.get("name") for c in td.container_definitions]
        for co in overrides.get("containerOverrides") or []:
            if co.get("name") not in names:
                raise InvalidParameterException(
                    f"Override for container named {co.get('name')} is not a container in the TaskDefinition."
                )
        awsvpc = (networking_configuration or {}).get("awsvpcConfiguration")
        if td.network_mode == "awsvpc" and not awsvpc:
            raise InvalidParameterException(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified."
            )
        if awsvpc is not None and not awsvpc.get("subnets"):
            raise InvalidParameterException("subnets can not be empty.")
        if not launch_type and not capacity_provider_strategy:
            capacity_provider_strategy = cluster.default_capacity_provider_strategy
        cp_name = capacity_provider_strategy[0]["capacityProvider"] if capacity_provider_strategy else None
        if group is None:
            group = f"family:{td.family}"

        # ECS RunTask is idempotent per clientToken (botocore sends one per call, kept on retries)
        token = getattr(_http.current, "client_token", None)
        if token:
            with self._lock:
                earlier = self._client_tokens.get(token)
            if earlier is not None:
                return earlier

        backend.tasks.setdefault(cluster.name, {})
        created = []
        for _ in range(count):
            task = Task(
                cluster,
                _TaskDefinitionView(td),
                None,
                {},
                backend=backend,
                group=group,
                launch_type=launch_type or "",
                overrides=overrides,
                started_by=started_by or "",
                tags=tags or [],
                networking_configuration=None,
                platform_version=platform_version,
                capacity_provider_name=cp_name,
            )
            self._prepare_moto_task(task, td, overrides, launch_type, cp_name, networking_configuration)
            backend.tasks[cluster.name][task.task_arn] = task
            created.append(task)
        if token:
            with self._lock:
                self._client_tokens[token] = created
        for task in created:
            self._launch(task, td, overrides, cluster.name, launch_type, cp_name)
        return created

    def _prepare_moto_task(
        self,
        task: Any,
        td: Any,
        overrides: dict[str, Any],
        launch_type: str | None,
        cp_name: str | None,
        networking_configuration: dict[str, Any] | None,
    ) -> None:
        now = _now()
        cdef = td.container_definitions[0]
        fargate = launch_type == "FARGATE" or (cp_name or "").startswith("FARGATE")
        task.last_status = "PROVISIONING"
        task.desired_status = "RUNNING"
        task.created_at = now
        task.version = 1
        task.stop_code = None
        task.stopped_reason = None
        task.availability_zone = f"{self.region}a"
        task.connectivity = "CONNECTED"
        task.connectivity_at = now
        cpu = overrides.get("cpu") or td.cpu or (str(cdef.get("cpu")) if cdef.get("cpu") else None)
        memory = overrides.get("memory") or td.memory or (str(cdef["memory"]) if cdef.get("memory") else None)
        task.cpu = str(cpu) if cpu else None
        task.memory = str(memory) if memory else None
        if fargate and not task.platform_version:
            task.platform_version = "1.4.0"
            task.platform_family = "Linux"
        container = task.containers[0]
        container.task_arn = task.task_arn
        container.container_arn = (
            f"arn:aws:ecs:{self.region}:{self.account_id}:container/"
            f"{task.cluster_name}/{task.id}/{uuid.uuid4()}"
        )
        container.last_status = "PENDING"
        container.exitCode = None
        container.health_status = "UNKNOWN"
        if networking_configuration:
            task.network_configuration = networking_configuration
        awsvpc = (networking_configuration or {}).get("awsvpcConfiguration")
        if awsvpc:
            attachment_id = str(uuid.uuid4())
            eni = f"eni-{uuid.uuid4().hex[:17]}"
            task.attachments = [
                {
                    "id": attachment_id,
                    "type": "ElasticNetworkInterface",
                    "status": "ATTACHED",
                    "details": [
                        {"name": "subnetId", "value": awsvpc["subnets"][0]},
                        {"name": "networkInterfaceId", "value": eni},
                        {"name": "macAddress", "value": "02:42:ac:11:00:02"},
                        {"name": "privateDnsName", "value": "ip-127-0-0-1.ec2.internal"},
                        {"name": "privateIPv4Address", "value": "127.0.0.1"},
                    ],
                }
            ]
            container.network_interfaces = [
                {"attachmentId": attachment_id, "privateIpv4Address": "127.0.0.1"}
            ]

    def _launch(
        self,
        task: Any,
        td: Any,
        overrides: dict[str, Any],
        cluster_name: str,
        launch_type: str | None,
        cp_name: str | None,
    ) -> None:
        cdef = td.container_definitions[0]
        name = cdef.get("name")
        override = next(
            (co for co in overrides.get("containerOverrides") or [] if co.get("name") == name), {}
        )
        env = _kv_list_to_dict(cdef.get("environment"))
        env.update(_kv_list_to_dict(override.get("environment")))
        command = override["command"] if override.get("command") else cdef.get("command")
        log_cfg = cdef.get("logConfiguration") or {}
        log_group = log_stream = log_region = None
        create_group = False
        if log_cfg.get("logDriver") == "awslogs":
            opts = log_cfg.get("options") or {}
            log_group = opts.get("awslogs-group")
            log_region = opts.get("awslogs-region") or self.region
            create_group = str(opts.get("awslogs-create-group", "")).lower() == "true"
            prefix = opts.get("awslogs-stream-prefix")
            log_stream = f"{prefix}/{name}/{task.id}" if prefix else None  # else: the container id
        fargate = launch_type == "FARGATE" or (cp_name or "").startswith("FARGATE")
        et = EmulatedTask(
            task_arn=task.task_arn,
            task_id=task.id,
            cluster=cluster_name,
            container_name=name,
            image=cdef.get("image"),
            command=list(command) if command else None,
            entrypoint=list(cdef["entryPoint"]) if cdef.get("entryPoint") else None,
            working_dir=cdef.get("workingDirectory") or None,
            user=cdef.get("user") or None,
            log_group=log_group,
            log_stream=log_stream,
            log_region=log_region,
            create_log_group=create_group,
            environment_files=list(cdef.get("environmentFiles") or [])
            + list(override.get("environmentFiles") or []),
            explicit_environment=env,
            launch_type="FARGATE" if fargate else (launch_type or "EC2"),
            moto_task=task,
        )
        with self._lock:
            self.tasks[et.task_arn] = et
            self._tasks_by_id[et.task_id] = et
            self.task_arns.append(et.task_arn)
            if self._start_failures:
                et.fail_to_start = self._start_failures.pop(0)
            closing = self._closing
            if not closing:
                self._spawn(self._run, et, name=f"task-{et.task_id[:8]}")
        if closing:
            self._finish_not_started(et, reason="ECS emulator shut down")

    def _moto_stop_task(
        self, backend: Any, cluster_str: str, task_str: str, reason: str | None, original: Any
    ) -> Any:
        from moto.ecs.exceptions import InvalidParameterException

        cluster = backend._get_cluster(cluster_str)
        task_id = str(task_str or "").rsplit("/", 1)[-1]
        with self._lock:
            et = self._tasks_by_id.get(task_id)
        if et is None or et.cluster != cluster.name:
            known = backend.tasks.get(cluster.name) or {}
            if not task_id or not any(arn.rsplit("/", 1)[-1] == task_id for arn in known):
                raise InvalidParameterException("The referenced task was not found.")
            return original(backend, cluster_str, task_str, reason)
        task = et.moto_task
        with et.lock:
            if et.stop_requested or et.exited or et.done.is_set():
                return task
            et.stop_requested = True
            task.desired_status = "STOPPED"
            task.stop_code = "UserInitiated"
            task.stopped_reason = reason or "Task stopped by user"
            task.stopping_at = _now()
            issue = et.running and not et.stop_issued
            if issue:
                et.stop_issued = True
        et.wake.set()
        if issue:
            self._spawn(self._docker_stop, et.container_id, False, name=f"stop-{et.task_id[:8]}")
        return task

    # ------------------------------------------------------------------ the task worker
    def _spawn(self, target: Any, *args: Any, name: str) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=f"{self._thread_prefix}-{name}", daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()
        return t

    def _join_threads(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]

    def _docker_stop(self, container_id: str | None, kill: bool) -> None:
        if not container_id or self._docker is None:
            return
        try:
            if kill:
                self._docker.api.kill(container_id)
            else:
                self._docker.api.stop(container_id, timeout=self.stop_timeout)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.debug("docker stop/kill %s: %s", container_id[:12], exc)

    def _abort(self, et: EmulatedTask, reason: str) -> None:
        with et.lock:
            if et.done.is_set():
                return
            et.aborted = True
            if not et.stop_requested and not et.exited:
                task = et.moto_task
                task.desired_status = "STOPPED"
                task.stop_code = "UserInitiated"
                task.stopped_reason = reason
                task.stopping_at = _now()
            cid = et.container_id if et.running else None
        et.wake.set()
        if cid:
            self._docker_stop(cid, True)

    def _run(self, et: EmulatedTask) -> None:
        try:
            self._run_task(et)
        except Exception as exc:  # never leave a task hanging
            log.exception("ECS emulator: task %s failed inside the emulator", et.task_arn)
            if not et.done.is_set():
                if et.running:
                    self._finish_exited(et, exit_code=None, internal_error=f"emulator error: {exc}")
                else:
                    self._finish_not_started(et, reason=f"ResourceInitializationError: emulator error: {exc}")
        finally:
            if not et.done.is_set():
                self._remove_container(et)
                et.done.set()

    def _run_task(self, et: EmulatedTask) -> None:
        task = et.moto_task
        if self.provisioning_delay > 0:
            et.wake.wait(self.provisioning_delay)
        if et.aborted or et.stop_requested:
            return self._finish_not_started(et)
        task.pull_started_at = _now()
        task.last_status = "PENDING"
        if et.fail_to_start:
            return self._finish_not_started(et, reason=et.fail_to_start)

        # awslogs: the group must exist (or be created with awslogs-create-group=true)
        if et.log_group:
            error = self._check_log_group(et)
            if error:
                return self._finish_not_started(et, reason=error)

        env, error = self._resolve_environment(et)
        if error:
            return self._finish_not_started(et, reason=error)
        et.environment = env

        assert self._docker is not None
        api = self._docker.api
        image = self.image_map.get(et.image, et.image)
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            ref = _image_ref(et.image)
            return self._finish_not_started(
                et,
                reason=f"CannotPullContainerError: pull image manifest has been retried 7 time(s): "
                f"failed to resolve ref {ref}: {ref}: not found",
            )
        task.pull_stopped_at = _now()

        labels = {
            LABEL: "1",
            LABEL_INSTANCE: self.instance_id,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(),
            LABEL_TASK_ARN: et.task_arn,
            LABEL_TASK_ID: et.task_id,
            LABEL_CLUSTER: et.cluster,
        }
        with et.lock:
            if et.aborted or et.stop_requested:
                return self._finish_not_started(et)
            try:
                created = api.create_container(
                    image=image,
                    command=et.command,
                    entrypoint=et.entrypoint,
                    working_dir=et.working_dir,
                    user=et.user,
                    environment=env,
                    labels=labels,
                    name=f"cmdexec-ecs-{et.task_id}",
                    host_config=api.create_host_config(
                        network_mode="host", log_config={"type": "json-file", "config": {}}
                    ),
                )
            except docker.errors.APIError as exc:
                return self._finish_not_started(
                    et, reason=f"CannotCreateContainerError: {exc.explanation or exc}"
                )
            et.container_id = created["Id"]

        if et.log_group:
            if not et.log_stream:
                et.log_stream = et.container_id
            try:
                self._client("logs", et.log_region).create_log_stream(
                    logGroupName=et.log_group, logStreamName=et.log_stream
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                    return self._finish_not_started(
                        et, reason=f"ResourceInitializationError: failed to validate logger args: {exc}"
                    )

        try:
            api.start(et.container_id)
        except docker.errors.APIError as exc:
            return self._finish_not_started(et, reason=f"CannotStartContainerError: {exc.explanation or exc}")

        now = _now()
        container = task.containers[0]
        container.runtime_id = et.container_id
        container.last_status = "RUNNING"
        task.started_at = now
        task.last_status = "RUNNING"
        with self._lock:
            self.started_tasks += 1
        with et.lock:
            et.running = True
            pending = (et.stop_requested or et.aborted) and not et.stop_issued
            if pending:
                et.stop_issued = True
            kill = et.aborted
        if pending:
            self._docker_stop(et.container_id, kill)

        exit_code = self._pump_logs(et)
        self._finish_exited(et, exit_code)

    def _wait_exit(self, et: EmulatedTask) -> int | None:
        assert self._docker is not None
        failures_after_abort = 0
        while True:
            try:
                return int(self._docker.api.wait(et.container_id, timeout=30)["StatusCode"])
            except docker.errors.NotFound:
                return None
            except Exception as exc:  # noqa: BLE001 - read timeout: still running (log stream ended early?)
                log.debug("waiting for %s: %s", et.container_id, exc)
                if et.aborted:
                    failures_after_abort += 1
                    if failures_after_abort > 3:
                        return None
                    self._docker_stop(et.container_id, True)
                else:
                    time.sleep(0.5)

    # ------------------------------------------------------------------ logs
    def _check_log_group(self, et: EmulatedTask) -> str | None:
        logs = self._client("logs", et.log_region)
        try:
            logs.describe_log_streams(logGroupName=et.log_group, limit=1)
            return None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                return f"ResourceInitializationError: failed to validate logger args: {exc}"
        if not et.create_log_group:
            return LOG_GROUP_MISSING_REASON
        try:
            logs.create_log_group(logGroupName=et.log_group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                return f"ResourceInitializationError: failed to validate logger args: {exc}"
        return None

    def _open_log_frames(self, et: EmulatedTask, follow: bool) -> Any:
        assert self._docker is not None
        api = self._docker.api
        res = api._get(
            api._url("/containers/{0}/logs", et.container_id),
            params={"stdout": 1, "stderr": 1, "follow": int(follow), "timestamps": 0, "tail": "all"},
            stream=True,
        )
        api._raise_for_status(res)
        if follow:
            with contextlib.suppress(Exception):
                api._disable_socket_timeout(api._get_raw_response_socket(res))
        return res

    @staticmethod
    def _frames(res: Any) -> Any:
        """(stream type, bytes) frames of Docker's multiplexed log stream (1 stdout, 2 stderr)."""
        while True:
            header = res.raw.read(8)
            if len(header) < 8:
                return
            stream_type, length = struct.unpack(">BxxxL", header)
            if not length:
                continue
            data = res.raw.read(length)
            if not data:
                return
            yield stream_type, data

    def _pump_logs(self, et: EmulatedTask) -> int | None:
        """Read the container's output while it runs and send complete lines to CloudWatch in
        batches every log_flush_interval; when the output ends wait for the exit code, catch up
        on output the follow stream missed (Docker may drop the tail of it), flush, and return
        the exit code."""
        q: queue.Queue[tuple[int, bytes] | None] = queue.Queue()

        def reader() -> None:
            try:
                res = self._open_log_frames(et, follow=True)
                et.log_response = res
                for frame in self._frames(res):
                    q.put(frame)
            except Exception as exc:  # noqa: BLE001 - logged: the task's end is read from Docker anyway
                if not et.aborted:
                    log.warning("ECS emulator: reading logs of %s failed: %s", et.task_arn, exc)
            finally:
                q.put(None)

        reader_thread = self._spawn(reader, name=f"logs-{et.task_id[:8]}")
        logs = self._client("logs", et.log_region) if et.log_group else None
        buffers: dict[int, bytes] = {}
        received: dict[int, int] = {}
        pending: list[dict[str, Any]] = []
        last_ts = 0

        def add(raw: bytes, ts: int) -> None:
            text = raw.decode("utf-8", "replace")
            et.output.append(text)
            data = text.encode("utf-8")
            while data:  # split like the awslogs driver, on a UTF-8 boundary
                cut = min(len(data), _MAX_EVENT_BYTES)
                while cut < len(data) and cut > 0 and (data[cut] & 0xC0) == 0x80:
                    cut -= 1
                pending.append({"timestamp": ts, "message": data[:cut].decode("utf-8")})
                data = data[cut:]

        def feed(stream_type: int, data: bytes) -> None:
            nonlocal last_ts
            received[stream_type] = received.get(stream_type, 0) + len(data)
            buf = buffers.get(stream_type, b"") + data
            *lines, rest = buf.split(b"\n")
            buffers[stream_type] = rest
            ts = max(int(time.time() * 1000), last_ts)
            last_ts = ts
            for line in lines:
                if line:  # the awslogs driver sends no empty events
                    add(line, ts)

        def flush() -> None:
            nonlocal pending
            events, pending = pending, []
            if logs is None or not events:
                return
            batch: list[dict[str, Any]] = []
            size = 0
            for ev in [*events, None]:
                ev_size = len(ev["message"].encode()) + _PER_EVENT_BYTES if ev else 0
                if batch and (
                    ev is None or len(batch) >= _MAX_BATCH_EVENTS or size + ev_size > _MAX_BATCH_BYTES
                ):
                    try:
                        logs.put_log_events(
                            logGroupName=et.log_group, logStreamName=et.log_stream, logEvents=batch
                        )
                    except (ClientError, BotoCoreError) as exc:
                        log.warning("ECS emulator: PutLogEvents for %s failed: %s", et.task_arn, exc)
                    batch, size = [], 0
                if ev is not None:
                    batch.append(ev)
                    size += ev_size

        last_flush = time.monotonic()
        while True:
            try:
                item = q.get(timeout=self.log_flush_interval)
            except queue.Empty:
                item = (0, b"")
            if item is None:
                break
            if item[1]:
                feed(*item)
            if pending and time.monotonic() - last_flush >= self.log_flush_interval:
                flush()
                last_flush = time.monotonic()
        reader_thread.join(5)
        et.log_response = None

        exit_code = self._wait_exit(et)
        # catch up: the complete log minus what the follow stream delivered
        try:
            res = self._open_log_frames(et, follow=False)
            try:
                skip = dict(received)
                for stream_type, data in self._frames(res):
                    left = skip.get(stream_type, 0)
                    if left >= len(data):
                        skip[stream_type] = left - len(data)
                        continue
                    skip[stream_type] = 0
                    feed(stream_type, data[left:])
            finally:
                res.close()
        except Exception as exc:  # noqa: BLE001 - best effort: the lines read so far are delivered
            log.debug("ECS emulator: final log read of %s: %s", et.task_arn, exc)
        ts = max(int(time.time() * 1000), last_ts)
        for rest in buffers.values():
            if rest:
                add(rest, ts)
        flush()
        return exit_code

    # ------------------------------------------------------------------ environment
    def _resolve_environment(self, et: EmulatedTask) -> tuple[dict[str, str], str | None]:
        """Explicit environment (task definition + override, override wins) has precedence over
        environment files; among files the first one that sets a key wins (as the ECS agent)."""
        env = dict(et.explicit_environment)
        for ef in et.environment_files:
            value = str(ef.get("value") or "")
            if (ef.get("type") or "s3") != "s3":
                return {}, f"ResourceInitializationError: unsupported environment file type {ef.get('type')}"
            m = _ENV_FILE_ARN.match(value)
            if not m:
                return {}, (
                    "ResourceInitializationError: failed to download env files: unable to parse bucket "
                    f"and key from s3 ARN specified in environmentFile {value}"
                )
            bucket, key = m.group(1), m.group(2)
            try:
                body = self._client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            except (ClientError, BotoCoreError) as exc:
                return {}, (
                    "ResourceInitializationError: failed to download env files: unable to download env "
                    f"file with key {key} from bucket {bucket}, error: {exc}"
                )
            try:
                file_env = parse_env_file(body)
            except ValueError as exc:
                return {}, f"ResourceInitializationError: failed to read env file {value}: {exc}"
            for k, v in file_env.items():
                env.setdefault(k, v)
        if self.inject_aws_env:
            env.setdefault("AWS_REGION", self.region)
            env.setdefault("AWS_DEFAULT_REGION", self.region)
            env.setdefault(
                "AWS_EXECUTION_ENV", "AWS_ECS_FARGATE" if et.launch_type == "FARGATE" else "AWS_ECS_EC2"
            )
        return env, None

    # ------------------------------------------------------------------ finishing
    def _remove_container(self, et: EmulatedTask) -> None:
        if et.container_id and self._docker is not None:
            try:
                self._docker.api.remove_container(et.container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                log.warning("ECS emulator: removing container %s: %s", et.container_id[:12], exc)

    def _finish_not_started(self, et: EmulatedTask, reason: str | None = None) -> None:
        """STOPPED without a container exit: failed to start (reason) or stopped before it ran."""
        self._remove_container(et)
        task = et.moto_task
        container = task.containers[0]
        now = _now()
        with et.lock:
            user = et.stop_requested or et.aborted
            if (reason is not None and not user) or task.stop_code is None:
                task.stop_code = "TaskFailedToStart"
                task.stopped_reason = reason or "Task failed to start"
                container.reason = reason
            et.exited = True
        container.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stopping_at = getattr(task, "stopping_at", None) or now
        task.execution_stopped_at = now
        task.stopped_at = now
        et.stop_code = task.stop_code
        et.stopped_reason = task.stopped_reason
        task.last_status = "STOPPED"
        et.done.set()

    def _finish_exited(
        self, et: EmulatedTask, exit_code: int | None, internal_error: str | None = None
    ) -> None:
        task = et.moto_task
        container = task.containers[0]
        now = _now()
        with et.lock:
            et.exited = True
            user = et.stop_requested or et.aborted
        et.exit_code = exit_code
        container.exitCode = exit_code
        if internal_error:
            container.reason = internal_error
        container.last_status = "STOPPED"
        task.execution_stopped_at = now
        if not user:
            task.stop_code = "EssentialContainerExited"
            task.stopped_reason = "Essential container in task exited"
            task.stopping_at = now
        task.desired_status = "STOPPED"
        task.last_status = "DEPROVISIONING"
        self._remove_container(et)
        if self.deprovisioning_delay > 0:
            time.sleep(self.deprovisioning_delay)
        et.stop_code = task.stop_code
        et.stopped_reason = task.stopped_reason
        task.stopped_at = _now()
        task.last_status = "STOPPED"
        et.done.set()

    # ------------------------------------------------------------------ container hygiene
    def _remove_my_containers(self) -> None:
        if self._docker is None:
            return
        try:
            for cid in self.containers(include_stopped=True):
                with contextlib.suppress(docker.errors.NotFound):
                    self._docker.api.remove_container(cid, force=True, v=True)
        except Exception as exc:  # noqa: BLE001 - shutting down: logged, the rest of the cleanup goes on
            log.warning("ECS emulator: removing containers failed: %s", exc)

    def _sweep_abandoned_containers(self) -> None:
        """Remove containers left by emulators of processes (on this host) that no longer exist."""
        assert self._docker is not None
        host = socket.gethostname()
        for c in self._docker.api.containers(all=True, filters={"label": f"{LABEL}=1"}):
            labels = c.get("Labels") or {}
            pid = labels.get(LABEL_PID, "")
            if labels.get(LABEL_HOST) == host and pid.isdigit() and not _pid_alive(int(pid)):
                with contextlib.suppress(docker.errors.APIError):
                    self._docker.api.remove_container(c["Id"], force=True, v=True)
