"""Kubernetes API emulator: the core/v1 REST API the official ``kubernetes`` client calls, on
loopback over plain HTTP with a bearer token, whose pods really run as Docker containers.

No Kubernetes API server can run here, and tests of a Kubernetes backend against a mock prove
nothing.  Here a created pod is scheduled on the one node, its containers are created and
started with ``docker`` (host network, limits, volumes, environment), and its status, events,
logs and deletion follow what a kubelet reports.  See ``KubeEmulator`` for the API and
README.md for what is modelled and what is not.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import glob
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import yaml

from . import _validation
from ._api import BUILTIN_NAMESPACES, KubeApi, RecordedRequest
from ._http import Server
from ._kubelet import LABEL, LABEL_HOST, LABEL_PID, Node, PodRun
from ._store import Store

if TYPE_CHECKING:  # pragma: no cover
    from typing import Self

log = logging.getLogger("tests.k8s_emulator")

_WORK_DIR_PREFIX = "cmdexec-k8s-emulator-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class KubeEmulator:
    """A core/v1 Kubernetes API whose pods run in Docker.  Use as a context manager (or
    start()/stop()); everything it created in Docker is removed by stop() and at exit.

    Constructor (keyword-only, all optional):
      token (the bearer token clients must send; random if not given), host="127.0.0.1",
      port=0 (a free port), node_name="cmdexec-k8s-node",
      image_pull_backoff=10.0 (seconds before the first retry of a missing image; doubles up to
      300 s, as the kubelet's back-off).

    Attributes: url, token, instance_id, node_name, store (read it through the methods below),
    requests (every request: RecordedRequest with method, path, query, parsed body, status),
    counters pods_created, pods_deleted, containers_started, watch_requests, log_requests.

    Methods: start(), stop(), write_kubeconfig(path, namespace=, context=, token=),
    kubeconfig(...) (the same as a dict), pod(ns, name), pods(ns=None), objects(resource, ns=None),
    events(ns, pod=None), pod_run(ns, name) (the node's view: container ids, ...),
    containers(include_stopped=True), running_containers(), volumes(), wait_for(predicate, timeout),
    wait_deletions(timeout), reset().
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        node_name: str = "cmdexec-k8s-node",
        image_pull_backoff: float = 10.0,
    ) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.port = port
        self.node_name = node_name
        self.image_pull_backoff = float(image_pull_backoff)
        self.instance_id = uuid.uuid4().hex[:12]
        self.url = ""
        self.store = Store()
        self.closing = False
        self._lock = threading.Lock()
        self._lifecycle_lock = threading.Lock()
        self._started = self._stopped = False
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._docker: docker.DockerClient | None = None
        self._node: Node | None = None
        self._work_dir: Path | None = None
        self._api = KubeApi(self)
        self._reset_records()

    def _reset_records(self) -> None:
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self._counters: collections.Counter[str] = collections.Counter()
            if self._node is not None:
                self._node.containers_started = 0

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        with self._lifecycle_lock:
            if self._stopped:
                raise RuntimeError("a KubeEmulator cannot be restarted; create a new one")
            if self._started:
                return self
            self._docker = docker.from_env(timeout=60, max_pool_size=64)
            self._docker.api.ping()
            self._sweep_abandoned()
            self._work_dir = Path(tempfile.mkdtemp(prefix=f"{_WORK_DIR_PREFIX}{os.getpid()}-"))
            self._node = Node(
                store=self.store,
                docker_client=self._docker,
                instance_id=self.instance_id,
                node_name=self.node_name,
                host_ip="127.0.0.1",
                work_dir=self._work_dir,
                image_pull_backoff=self.image_pull_backoff,
                on_pod_removed=self._api.finalize,
            )
            self._create_builtin_namespaces()
            try:
                self._server = Server(self.host, self.port, self._api)
            except BaseException:
                self._docker.close()
                shutil.rmtree(self._work_dir, ignore_errors=True)
                raise
            self.port = self._server.port
            self.url = f"http://{self.host}:{self.port}"
            self._serve_thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"k8s-emu-{self.instance_id}-serve",
                daemon=True,
            )
            self._serve_thread.start()
            self._started = True
            atexit.register(self.stop)
            log.debug("Kubernetes emulator %s listening on %s", self.instance_id, self.url)
            return self

    def stop(self) -> None:
        """Stop serving, kill and remove every pod's containers, volumes and files."""
        with self._lifecycle_lock:
            if not self._started or self._stopped:
                self._stopped = True
                return
            self._stopped = True
        self.closing = True
        try:
            if self._server is not None:
                self._server.shutdown()
                self.store.wake_watchers()
                self._server.close_connections()
                self._server.server_close()
            if self._serve_thread is not None:
                self._serve_thread.join(10)
            self.node.stop_all(timeout=30)
        finally:
            self.node.remove_everything()
            if self._work_dir is not None:
                shutil.rmtree(self._work_dir, ignore_errors=True)
            if self._docker is not None:
                self._docker.close()
            atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    @property
    def node(self) -> Node:
        assert self._node is not None, "the emulator is not started"
        return self._node

    def _create_builtin_namespaces(self) -> None:
        for name in BUILTIN_NAMESPACES:
            self.store.create("namespaces", _validation.prepare_namespace({"metadata": {"name": name}}))

    def _sweep_abandoned(self) -> None:
        """Remove what emulators of dead processes on this host left behind (containers,
        volumes, work folders); never anything of a live process."""
        assert self._docker is not None
        api = self._docker.api
        host = socket.gethostname()

        def abandoned(labels: dict[str, str] | None) -> bool:
            pid = (labels or {}).get(LABEL_PID, "")
            return (labels or {}).get(LABEL_HOST) == host and pid.isdigit() and not _pid_alive(int(pid))

        for c in api.containers(all=True, filters={"label": f"{LABEL}=1"}):
            if abandoned(c.get("Labels")):
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_container(c["Id"], force=True, v=True)
        for volume in api.volumes(filters={"label": f"{LABEL}=1"}).get("Volumes") or []:
            if abandoned(volume.get("Labels")):
                with contextlib.suppress(docker.errors.APIError):
                    api.remove_volume(volume["Name"], force=True)
        for folder in glob.glob(os.path.join(tempfile.gettempdir(), f"{_WORK_DIR_PREFIX}*-*")):
            pid = os.path.basename(folder)[len(_WORK_DIR_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ clients
    def kubeconfig(
        self, *, namespace: str = "default", context: str = "cmdexec-k8s-emulator", token: str | None = None
    ) -> dict[str, Any]:
        """A kube config (as a dict) for this emulator: plain HTTP, bearer token."""
        name = f"cmdexec-k8s-emulator-{self.instance_id}"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": self.token if token is None else token}}],
            "contexts": [
                {"name": context, "context": {"cluster": name, "user": name, "namespace": namespace}}
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = "default",
        context: str = "cmdexec-k8s-emulator",
        token: str | None = None,
    ) -> Path:
        """Write the kube config (mode 0600: it holds the token) to ``path`` and return it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(
                self.kubeconfig(namespace=namespace, context=context, token=token), f, sort_keys=False
            )
        return path

    # ------------------------------------------------------------------ records and counters
    def _record_request(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] += 1

    @property
    def pods_created(self) -> int:
        return self._counters["pods_created"]

    @property
    def pods_deleted(self) -> int:
        return self._counters["pods_deleted"]

    @property
    def watch_requests(self) -> int:
        return self._counters["watch_requests"]

    @property
    def log_requests(self) -> int:
        return self._counters["log_requests"]

    @property
    def containers_started(self) -> int:
        return self.node.containers_started

    # ------------------------------------------------------------------ inspection
    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod as the API returns it (a copy), None if there is none."""
        return self.store.get("pods", namespace, name)

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.list("pods", namespace)[1]

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource ("secrets", "persistentvolumes", ...), all namespaces if None."""
        return self.store.list(resource, namespace)[1]

    def events(self, namespace: str, pod: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.store.list("events", namespace)[1]
            if pod is None or e["involvedObject"].get("name") == pod
        ]

    def pod_run(self, namespace: str, name: str) -> PodRun | None:
        """The node's view of a pod (Docker container ids, volumes); None once it is removed."""
        return self.node.run(namespace, name)

    def containers(self, include_stopped: bool = True) -> list[str]:
        """Ids of this emulator's Docker containers (only running ones unless include_stopped)."""
        return self.node.my_containers(include_stopped)

    def running_containers(self) -> list[str]:
        return self.containers(include_stopped=False)

    def volumes(self) -> list[str]:
        """Names of this emulator's Docker volumes (emptyDir, provisioned claims)."""
        return self.node.my_volumes()

    @staticmethod
    def wait_for(predicate: Any, timeout: float = 30, interval: float = 0.1, what: str = "condition") -> Any:
        """Poll ``predicate()`` until it returns something truthy (returned); TimeoutError after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached after {timeout}s")
            time.sleep(interval)

    def wait_deletions(self, timeout: float = 60) -> None:
        """Wait until every pod being deleted is gone, from the API and from Docker (a deleted
        pod ends after its grace period); TimeoutError otherwise."""

        def done() -> bool:
            in_api = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in self.pods()}
            deleting = [key for key, pod in in_api.items() if pod["metadata"].get("deletionTimestamp")]
            removing = [run.key for run in self.node.runs() if run.key not in in_api]
            return not deleting and not removing

        self.wait_for(done, timeout=timeout, what="deleted pods gone")

    def reset(self) -> None:
        """Between tests: kill and remove every pod, delete every object and Docker volume,
        recreate the built-in namespaces, clear records and counters."""
        if not self.running:
            self._reset_records()
            return
        for pod in self.pods():
            meta = pod["metadata"]
            self.store.delete("pods", meta["namespace"], meta["name"])
            self.node.request_deletion(meta["namespace"], meta["name"], 0, removed_from_api=True, kill=True)
        self.wait_for(lambda: not self.node.runs(), timeout=60, what="all pods removed")
        self.store.clear()
        self.node.remove_everything()
        self._create_builtin_namespaces()
        self._reset_records()
