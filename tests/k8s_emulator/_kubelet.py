"""The emulator's one node: a scheduler and kubelet that run each pod's containers as Docker
containers (host network) and report their state in the pod's status as the kubelet does.

One worker thread per pod drives it: scheduled (nodeSelector, bound claims) -> volumes set up
-> each container's image checked, environment resolved, container created and started ->
exits collected -> phase.  A deletion or ``activeDeadlineSeconds`` stops the running
containers with the grace period (SIGTERM, then SIGKILL); a deleted pod's containers and
volumes are removed before the object disappears.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import os
import queue
import re
import shutil
import socket
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions

from ._schema import quantity
from ._store import Store
from ._validation import now_rfc3339

log = logging.getLogger("tests.k8s_emulator")

LABEL = "cmdexec-k8s-emulator"
LABEL_INSTANCE = f"{LABEL}.instance"
LABEL_PID = f"{LABEL}.pid"
LABEL_HOST = f"{LABEL}.host"
LABEL_NAMESPACE = f"{LABEL}.namespace"
LABEL_POD = f"{LABEL}.pod"
LABEL_POD_UID = f"{LABEL}.pod-uid"
LABEL_CONTAINER = f"{LABEL}.container"
LABEL_VOLUME = f"{LABEL}.volume"

NODE_LABELS_BASE = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
TERMINAL_PHASES = ("Succeeded", "Failed")
DYNAMIC_PROVISIONER = "cmdexec-k8s-emulator"  # the csi driver name of volumes it provisions

_MAX_PULL_BACKOFF = 300.0  # seconds, as the kubelet's image pull back-off
_RETRY_SECONDS = 1.0  # scheduling, volume set-up and container config errors are retried this often
_MIN_NANO_CPUS = 10_000_000  # Docker refuses less than 0.01 CPU
_MIN_KILL_GRACE = 2  # seconds: the kubelet never kills a container with less


def _utc_from_docker(text: str | None) -> str | None:
    """Docker's RFC3339Nano time as metav1.Time (whole seconds)."""
    if not text or text.startswith("0001-"):
        return None
    return text[:19] + "Z"


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' $(VAR) expansion of env values, command and args: ``$(NAME)`` becomes the
    variable's value when it is defined (else stays as written), ``$$`` becomes ``$``."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def image_reference(image: str) -> str:
    """A fully qualified image reference (docker.io/library/busybox:latest), as the kubelet's
    runtime reports and names it in pull errors."""
    if "@" in image:
        name, tag = image, ""
    else:
        last = image.rsplit("/", 1)[-1]
        name, tag = (
            (image.rsplit(":", 1)[0], ":" + image.rsplit(":", 1)[1]) if ":" in last else (image, ":latest")
        )
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name + tag


class ConfigError(Exception):
    """A container cannot be configured yet (missing secret, key, ...): CreateContainerConfigError."""


class MountError(Exception):
    """A volume cannot be set up yet: the pod stays ContainerCreating (event FailedMount)."""


@dataclass(eq=False)
class ContainerRun:
    spec: dict[str, Any]
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    docker_id: str | None = None
    image_ref: str = ""
    image_id: str = ""
    next_attempt: float = 0.0  # monotonic time of the next start attempt (after a failure)
    pull_failures: int = 0
    exited: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> bool:
        return "terminated" in self.state


@dataclass(eq=False)
class PodRun:
    """What the node knows about one pod (internal; read through KubeEmulator)."""

    namespace: str
    name: str
    uid: str
    spec: dict[str, Any]
    containers: list[ContainerRun]
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    scheduled: bool = False
    start_time: str | None = None
    started_monotonic: float = 0.0
    volumes_ready: bool = False
    mounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # volume -> ("bind"|"volume", source)
    docker_volumes: list[str] = field(default_factory=list)
    host_dir: Path | None = None
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    terminal: bool = False
    deletion_grace: int | None = None  # set when the pod is being deleted
    removed_from_api: bool = False  # deleted with grace 0: the object is gone already
    kill_now: bool = False  # emulator reset: SIGKILL, no grace
    stop_threads: list[threading.Thread] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


class Node:
    def __init__(
        self,
        *,
        store: Store,
        docker_client: docker.DockerClient,
        instance_id: str,
        node_name: str,
        host_ip: str,
        work_dir: Path,
        image_pull_backoff: float,
        on_pod_removed: Callable[[], None],
    ) -> None:
        self.store = store
        self.api = docker_client.api
        self.instance_id = instance_id
        self.node_name = node_name
        self.host_ip = host_ip
        self.work_dir = work_dir
        self.image_pull_backoff = image_pull_backoff
        self.on_pod_removed = on_pod_removed
        self.node_labels = {**NODE_LABELS_BASE, "kubernetes.io/hostname": node_name}
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], PodRun] = {}
        # A Docker volume still used by a container is removed once that container is: both
        # happen under this lock, so a volume deleted while its container goes is not missed.
        self._volume_lock = threading.RLock()
        self._volumes_to_remove: set[str] = set()
        self._threads: list[threading.Thread] = []
        self.closing = False
        self.containers_started = 0

    # ------------------------------------------------------------------ labels and names
    def _labels(self, **extra: str) -> dict[str, str]:
        return {
            LABEL: "1",
            LABEL_INSTANCE: self.instance_id,
            LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname(),
            **extra,
        }

    def _spawn(self, target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
        thread = threading.Thread(
            target=target, args=args, name=f"k8s-emu-{self.instance_id}-{name}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    # ------------------------------------------------------------------ public (API server side)
    def run(self, namespace: str, name: str) -> PodRun | None:
        with self._lock:
            return self._runs.get((namespace, name))

    def runs(self) -> list[PodRun]:
        with self._lock:
            return list(self._runs.values())

    def admit(self, pod: dict[str, Any]) -> None:
        """Start driving a pod just stored by the API server."""
        meta = pod["metadata"]
        run = PodRun(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            spec=pod["spec"],
            containers=[ContainerRun(spec=c) for c in pod["spec"]["containers"]],
        )
        with self._lock:
            self._runs[run.key] = run
        self._spawn(self._work, run, name=f"pod-{run.uid[:8]}")

    def request_deletion(
        self, namespace: str, name: str, grace: int, removed_from_api: bool, kill: bool = False
    ) -> None:
        run = self.run(namespace, name)
        if run is None:
            return
        with run.lock:
            if run.deletion_grace is None or grace < run.deletion_grace:
                run.deletion_grace = grace
            run.removed_from_api = run.removed_from_api or removed_from_api
            run.kill_now = run.kill_now or kill
        run.wake.set()

    # ------------------------------------------------------------------ events
    def record_event(
        self,
        run: PodRun,
        type_: str,
        reason: str,
        message: str,
        container: str | None = None,
        component: str = "kubelet",
    ) -> None:
        """A core/v1 Event about the pod; a repeat of the same event raises its count."""
        field_path = f"spec.containers{{{container}}}" if container else None
        now = now_rfc3339()
        with self.store.lock:
            _, events = self.store.list("events", run.namespace)
            for event in events:
                involved = event["involvedObject"]
                if (
                    involved.get("uid") == run.uid
                    and event["reason"] == reason
                    and event["message"] == message
                    and involved.get("fieldPath") == field_path
                ):

                    def bump(e: dict[str, Any]) -> None:
                        e["count"] = e.get("count", 1) + 1
                        e["lastTimestamp"] = now

                    self.store.update("events", run.namespace, event["metadata"]["name"], bump)
                    return
            involved = {
                "kind": "Pod",
                "namespace": run.namespace,
                "name": run.name,
                "uid": run.uid,
                "apiVersion": "v1",
            }
            if field_path:
                involved["fieldPath"] = field_path
            self.store.create(
                "events",
                {
                    "kind": "Event",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": f"{run.name}.{uuid.uuid4().hex[:16]}",
                        "namespace": run.namespace,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": now,
                    },
                    "involvedObject": involved,
                    "reason": reason,
                    "message": message,
                    "source": {
                        "component": component,
                        **({"host": self.node_name} if component == "kubelet" else {}),
                    },
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                    "type": type_,
                    "eventTime": None,
                    "reportingComponent": component,
                    "reportingInstance": self.node_name if component == "kubelet" else "",
                },
            )

    # ------------------------------------------------------------------ the pod worker
    def _work(self, run: PodRun) -> None:
        try:
            self._drive(run)
        except Exception as exc:  # an emulator bug must not leave the pod hanging silently
            log.exception(
                "Kubernetes emulator: pod %s/%s failed inside the emulator", run.namespace, run.name
            )
            run.reason, run.message = "EmulatorError", f"the Kubernetes emulator failed: {exc}"
            run.terminal = True
            self._publish(run)
            with run.lock:
                deleting = run.deletion_grace is not None
            if deleting or self.closing:
                self._remove(run)
        finally:
            run.done.set()

    def _drive(self, run: PodRun) -> None:
        while not self.closing:
            run.wake.clear()
            with run.lock:
                deletion_grace = run.deletion_grace
            if deletion_grace is not None:
                self._terminate(run, deletion_grace)
                self._remove(run)
                return
            if not run.terminal:
                self._step(run)
            self._publish(run)
            run.wake.wait(None if run.terminal else self._next_wakeup(run))
        self._remove(run)

    def _step(self, run: PodRun) -> None:
        """Move the pod on as far as it goes now; what must wait is retried on the next call."""
        if not run.scheduled:
            self._schedule(run)
            if not run.scheduled:
                return
            self._publish(run)
        if run.start_time is None:  # the kubelet has seen the pod: containers ContainerCreating
            run.start_time = now_rfc3339()
            run.started_monotonic = time.monotonic()
            self._set_condition(run, "Initialized", "True")
            self._set_condition(run, "PodReadyToStartContainers", "False")
            self._publish(run)
        deadline = run.spec.get("activeDeadlineSeconds")
        if deadline is not None and time.monotonic() - run.started_monotonic >= deadline:
            self.record_event(
                run,
                "Normal",
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )
            run.reason = "DeadlineExceeded"
            run.message = "Pod was active on the node longer than the specified deadline"
            self._terminate(run, int(run.spec["terminationGracePeriodSeconds"]))
            return
        if not run.volumes_ready:
            try:
                self._set_up_volumes(run)
            except MountError as exc:
                self.record_event(run, "Warning", "FailedMount", str(exc))
                return
            run.volumes_ready = True
            self._set_condition(run, "PodReadyToStartContainers", "True")
        for c in run.containers:
            if c.exited.is_set() and c.running:
                self._collect_exit(c)
            if c.docker_id is None and "waiting" in c.state:
                self._try_start(run, c)
        if all(c.terminated for c in run.containers):
            run.terminal = True

    def _next_wakeup(self, run: PodRun) -> float:
        now = time.monotonic()
        waits = [_RETRY_SECONDS]
        for c in run.containers:
            if c.docker_id is None and "waiting" in c.state and c.next_attempt > now:
                waits.append(c.next_attempt - now)
        deadline = run.spec.get("activeDeadlineSeconds")
        if deadline is not None and run.started_monotonic:
            waits.append(max(0.0, run.started_monotonic + deadline - now))
        return max(0.05, min(waits))

    # ------------------------------------------------------------------ scheduling
    def _unschedulable_reason(self, run: PodRun) -> str | None:
        selector = run.spec.get("nodeSelector") or {}
        if any(self.node_labels.get(k) != v for k, v in selector.items()):
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        for volume in run.spec.get("volumes") or []:
            claim_name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim_name:
                continue
            claim = self.store.get("persistentvolumeclaims", run.namespace, claim_name)
            if claim is None:
                return f'persistentvolumeclaim "{claim_name}" not found'
            if claim["metadata"].get("deletionTimestamp"):
                return f'persistentvolumeclaim "{claim_name}" is being deleted'
            if (claim.get("status") or {}).get("phase") != "Bound":
                return "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        return None

    def _schedule(self, run: PodRun) -> None:
        reason = self._unschedulable_reason(run)
        if reason:
            message = (
                f"{reason} preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            )
            if self._set_condition(run, "PodScheduled", "False", "Unschedulable", message):
                self.record_event(run, "Warning", "FailedScheduling", message, component="default-scheduler")
            return
        self.store.update(
            "pods", run.namespace, run.name, lambda pod: pod["spec"].__setitem__("nodeName", self.node_name)
        )
        run.scheduled = True
        self._set_condition(run, "PodScheduled", "True")
        self.record_event(
            run,
            "Normal",
            "Scheduled",
            f"Successfully assigned {run.namespace}/{run.name} to {self.node_name}",
            component="default-scheduler",
        )

    # ------------------------------------------------------------------ volumes
    def _object_data(self, resource: str, namespace: str, name: str) -> dict[str, bytes] | None:
        """A secret's or config map's keys and values as bytes; None if it does not exist."""
        obj = self.store.get(resource, namespace, name)
        if obj is None:
            return None
        if resource == "secrets":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _write_key_files(self, run: PodRun, volume: dict[str, Any], kind: str) -> str:
        source = volume[kind]
        resource, ref_name, label = (
            ("secrets", source.get("secretName"), "secret")
            if kind == "secret"
            else ("configmaps", source.get("name"), "configmap")
        )
        data = self._object_data(resource, run.namespace, ref_name)
        prefix = f'MountVolume.SetUp failed for volume "{volume["name"]}" :'
        if data is None:
            if not source.get("optional"):
                raise MountError(f'{prefix} {label} "{ref_name}" not found')
            data = {}
        files: dict[str, tuple[bytes, int]] = {}
        default_mode = source.get("defaultMode", 0o644)
        if source.get("items"):
            for item in source["items"]:
                if item["key"] not in data:
                    if source.get("optional"):
                        continue
                    raise MountError(f"{prefix} {label} references non-existent config key: {item['key']}")
                files[item["path"]] = (data[item["key"]], item.get("mode", default_mode))
        else:
            files = {key: (value, default_mode) for key, value in data.items()}
        target = self._pod_dir(run) / volume["name"]
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        target.chmod(0o755)
        for rel, (content, mode) in files.items():
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode)
        return str(target)

    def _pod_dir(self, run: PodRun) -> Path:
        if run.host_dir is None:
            run.host_dir = self.work_dir / "pods" / run.uid
            run.host_dir.mkdir(parents=True, exist_ok=True)
        return run.host_dir

    @staticmethod
    def _check_host_path(path: str, type_: str, volume: str) -> None:
        prefix = f'MountVolume.SetUp failed for volume "{volume}" : hostPath type check failed:'
        if type_ == "DirectoryOrCreate":
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif type_ == "FileOrCreate":
            os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
            Path(path).touch(mode=0o644, exist_ok=True)
        elif type_:
            checks = {
                "Directory": (stat.S_ISDIR, "a directory"),
                "File": (stat.S_ISREG, "a file"),
                "Socket": (stat.S_ISSOCK, "a socket file"),
                "CharDevice": (stat.S_ISCHR, "a character device"),
                "BlockDevice": (stat.S_ISBLK, "a block device"),
            }
            test, what = checks[type_]
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                raise MountError(f"{prefix} {path} is not {what}") from None
            if not test(mode):
                raise MountError(f"{prefix} {path} is not {what}")
        elif not os.path.exists(path):  # containerd creates a missing bind source as a directory
            os.makedirs(path, mode=0o755, exist_ok=True)

    def _docker_volume(
        self, name: str, role: str, driver_opts: dict[str, str] | None = None, **labels: str
    ) -> str:
        """A labelled local Docker volume, world-writable as the kubelet makes emptyDir folders."""
        try:
            self.api.inspect_volume(name)
        except docker.errors.NotFound:
            created = self.api.create_volume(
                name=name,
                driver="local",
                driver_opts=driver_opts or {},
                labels=self._labels(**{LABEL_VOLUME: role}, **labels),
            )
            if not driver_opts:  # a tmpfs is mounted only when used; its mode comes from its options
                os.chmod(created["Mountpoint"], 0o777)
        return name

    def _set_up_volumes(self, run: PodRun) -> None:
        for volume in run.spec.get("volumes") or []:
            name = volume["name"]
            if name in run.mounts:
                continue
            if volume.get("emptyDir") is not None:
                opts = None
                if volume["emptyDir"].get("medium") == "Memory":
                    options = ["mode=1777"]
                    if volume["emptyDir"].get("sizeLimit"):
                        options.append(f"size={math.ceil(quantity(volume['emptyDir']['sizeLimit']))}")
                    opts = {"type": "tmpfs", "device": "tmpfs", "o": ",".join(options)}
                docker_name = f"cmdexec-k8s-emu_{run.uid}_{name}"
                self._docker_volume(docker_name, "emptyDir", opts, **{LABEL_POD_UID: run.uid})
                run.docker_volumes.append(docker_name)
                run.mounts[name] = ("volume", docker_name)
            elif volume.get("hostPath") is not None:
                self._check_host_path(volume["hostPath"]["path"], volume["hostPath"].get("type", ""), name)
                run.mounts[name] = ("bind", volume["hostPath"]["path"])
            elif volume.get("secret") is not None:
                run.mounts[name] = ("bind", self._write_key_files(run, volume, "secret"))
            elif volume.get("configMap") is not None:
                run.mounts[name] = ("bind", self._write_key_files(run, volume, "configMap"))
            elif volume.get("persistentVolumeClaim") is not None:
                run.mounts[name] = self._claim_mount(run, volume)

    def _claim_mount(self, run: PodRun, volume: dict[str, Any]) -> tuple[str, str]:
        claim_name = volume["persistentVolumeClaim"]["claimName"]
        claim = self.store.get("persistentvolumeclaims", run.namespace, claim_name)
        pv_name = ((claim or {}).get("spec") or {}).get("volumeName")
        pv = self.store.get("persistentvolumes", "", pv_name) if pv_name else None
        if pv is None:
            raise MountError(
                f'MountVolume.SetUp failed for volume "{volume["name"]}" : persistentvolumeclaim '
                f'"{claim_name}" is not bound'
            )
        if pv["spec"].get("hostPath"):
            self._check_host_path(
                pv["spec"]["hostPath"]["path"], pv["spec"]["hostPath"].get("type", ""), volume["name"]
            )
            return ("bind", pv["spec"]["hostPath"]["path"])
        return ("volume", pv["spec"]["csi"]["volumeHandle"])

    def provision_volume(self, claim: dict[str, Any]) -> str:
        """A Docker volume for a dynamically provisioned claim; returns its name."""
        return self._docker_volume(
            f"cmdexec-k8s-emu_pvc-{claim['metadata']['uid']}",
            "pvc",
            **{LABEL_NAMESPACE: claim["metadata"]["namespace"]},
        )

    def delete_volume(self, name: str) -> None:
        """Remove a Docker volume now, or once the (ended) containers still holding it are removed."""
        with self._volume_lock:
            try:
                self.api.remove_volume(name, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # in use by a container of a pod not deleted yet
                    self._volumes_to_remove.add(name)
                else:
                    log.warning("Kubernetes emulator: removing volume %s: %s", name, exc)

    def _remove_released_volumes(self) -> None:
        with self._volume_lock:
            names, self._volumes_to_remove = self._volumes_to_remove, set()
            for name in names:
                self.delete_volume(name)

    def _mounts(self, run: PodRun, container: dict[str, Any]) -> list[docker.types.Mount]:
        mounts = []
        for mount in container.get("volumeMounts") or []:
            kind, source = run.mounts[mount["name"]]
            volume = next(v for v in run.spec["volumes"] if v["name"] == mount["name"])
            read_only = bool(mount.get("readOnly")) or "secret" in volume or "configMap" in volume
            sub_path = mount.get("subPath")
            if sub_path:
                if kind == "volume":  # Docker 20.10 cannot mount part of a volume: bind its folder
                    kind, source = "bind", self.api.inspect_volume(source)["Mountpoint"]
                source = os.path.join(source, sub_path)
                if not os.path.exists(source):
                    os.makedirs(source, mode=0o755, exist_ok=True)
            mounts.append(
                docker.types.Mount(target=mount["mountPath"], source=source, type=kind, read_only=read_only)
            )
        return mounts

    # ------------------------------------------------------------------ environment
    def _field_value(self, run: PodRun, field_path: str) -> str:
        pod = self.store.get("pods", run.namespace, run.name) or {}
        meta = pod.get("metadata") or {}
        for prefix, key in (("metadata.labels['", "labels"), ("metadata.annotations['", "annotations")):
            if field_path.startswith(prefix):
                return (meta.get(key) or {}).get(field_path[len(prefix) : -2], "")
        return {
            "metadata.name": run.name,
            "metadata.namespace": run.namespace,
            "metadata.uid": run.uid,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": run.spec.get("serviceAccountName", ""),
            "status.hostIP": self.host_ip,
            "status.hostIPs": self.host_ip,
            "status.podIP": self.host_ip,
            "status.podIPs": self.host_ip,
        }[field_path]

    def _key_ref(self, run: PodRun, kind: str, ref: dict[str, Any]) -> str | None:
        resource, label = ("secrets", "Secret") if kind == "secretKeyRef" else ("configmaps", "ConfigMap")
        data = self._object_data(resource, run.namespace, ref["name"])
        if data is None:
            if ref.get("optional"):
                return None
            raise ConfigError(f'{label.lower()} "{ref["name"]}" not found')
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise ConfigError(f"couldn't find key {ref['key']} in {label} {run.namespace}/{ref['name']}")
        return data[ref["key"]].decode("utf-8", "replace")

    def _environment(self, run: PodRun, container: dict[str, Any]) -> dict[str, str]:
        """envFrom, then env in order ($(VAR) expanded against what came before), as the kubelet."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            kind = "secretRef" if source.get("secretRef") else "configMapRef"
            ref = source[kind]
            resource, label = ("secrets", "secret") if kind == "secretRef" else ("configmaps", "configmap")
            data = self._object_data(resource, run.namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{label} "{ref["name"]}" not found')
            for key, value in data.items():
                env[source.get("prefix", "") + key] = value.decode("utf-8", "replace")
        for var in container.get("env") or []:
            source = var.get("valueFrom")
            if source is None:
                env[var["name"]] = expand(var.get("value", ""), env.get)
                continue
            if source.get("fieldRef"):
                env[var["name"]] = self._field_value(run, source["fieldRef"]["fieldPath"])
                continue
            kind = "secretKeyRef" if source.get("secretKeyRef") else "configMapKeyRef"
            referenced = self._key_ref(run, kind, source[kind])
            if referenced is not None:
                env[var["name"]] = referenced
        return env

    @staticmethod
    def _user(run: PodRun, container: dict[str, Any], image_user: str) -> str | None:
        """Docker's ``user`` from runAsUser/runAsGroup (the container's win over the pod's);
        raises ConfigError for runAsNonRoot with a root user, as the kubelet."""
        pod_ctx = run.spec.get("securityContext") or {}
        ctx = {**pod_ctx, **(container.get("securityContext") or {})}
        uid, gid = ctx.get("runAsUser"), ctx.get("runAsGroup")
        if ctx.get("runAsNonRoot"):
            user = str(uid) if uid is not None else image_user.split(":", 1)[0]
            if not user.isdigit() and user:
                raise ConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user "
                    "is non-root"
                )
            if not user or int(user) == 0:
                raise ConfigError(
                    "container has runAsNonRoot and image will run as root (pod: "
                    f'"{run.name}_{run.namespace}({run.uid})", container: {container["name"]})'
                )
        if uid is None and gid is None:
            return None
        user = str(uid) if uid is not None else (image_user.split(":", 1)[0] or "0")
        return f"{user}:{gid}" if gid is not None else user

    # ------------------------------------------------------------------ starting containers
    def _image_present(self, image: str) -> dict[str, Any] | None:
        try:
            return self.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:  # an invalid reference is also "not found" for a pull
            if exc.status_code in (400, 404):
                return None
            raise

    def _image_missing(self, run: PodRun, c: ContainerRun, now: float) -> None:
        """The image is not on the node and cannot be pulled: ErrImagePull and a back-off that
        doubles (ErrImageNeverPull for pull policy Never)."""
        image = c.spec["image"]
        if c.spec.get("imagePullPolicy") == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            c.state = {"waiting": {"reason": "ErrImageNeverPull", "message": message}}
            c.next_attempt = now + _RETRY_SECONDS
            self.record_event(run, "Warning", "ErrImageNeverPull", message, c.name)
            return
        ref = image_reference(image)
        message = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed to resolve '
            f'reference "{ref}": {ref}: not found'
        )
        c.pull_failures += 1
        c.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
        c.next_attempt = now + min(self.image_pull_backoff * 2 ** (c.pull_failures - 1), _MAX_PULL_BACKOFF)
        self.record_event(run, "Normal", "Pulling", f'Pulling image "{image}"', c.name)
        self.record_event(run, "Warning", "Failed", f'Failed to pull image "{image}": {message}', c.name)
        self.record_event(run, "Warning", "Failed", "Error: ErrImagePull", c.name)

    def _show_back_off(self, run: PodRun, c: ContainerRun) -> None:
        """On the kubelet's next look after a failed pull, the container shows ImagePullBackOff."""
        waiting = c.state["waiting"]
        if waiting.get("reason") == "ErrImagePull":
            image = c.spec["image"]
            c.state = {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": f'Back-off pulling image "{image}": ErrImagePull: {waiting["message"]}',
                }
            }
            self.record_event(run, "Normal", "BackOff", f'Back-off pulling image "{image}"', c.name)
            self.record_event(run, "Warning", "Failed", "Error: ImagePullBackOff", c.name)

    def _try_start(self, run: PodRun, c: ContainerRun) -> None:
        """Image, configuration, create, start: each failure leaves the container waiting with the
        kubelet's reason, retried after a back-off."""
        now = time.monotonic()
        if now < c.next_attempt:
            self._show_back_off(run, c)
            return
        spec = c.spec
        image_info = self._image_present(spec["image"])
        if image_info is None:
            self._image_missing(run, c, now)
            return
        if not c.image_ref:
            self.record_event(
                run,
                "Normal",
                "Pulled",
                f'Container image "{spec["image"]}" already present on machine',
                c.name,
            )
        c.image_ref = image_reference(spec["image"])
        c.image_id = (image_info.get("RepoDigests") or [image_info["Id"]])[0]
        try:
            env = self._environment(run, spec)
            user = self._user(run, spec, (image_info.get("Config") or {}).get("User") or "")
        except ConfigError as exc:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}
            c.next_attempt = now + _RETRY_SECONDS
            self.record_event(run, "Warning", "Failed", f"Error: {exc}", c.name)
            return
        lookup = env.get
        command = [expand(a, lookup) for a in spec.get("command") or []] or None
        args = [expand(a, lookup) for a in spec.get("args") or []]
        try:
            created = self.api.create_container(
                image=spec["image"],
                entrypoint=command,
                command=args or ([] if command else None),
                working_dir=spec.get("workingDir") or None,
                environment=env,
                user=user,
                labels=self._labels(
                    **{
                        LABEL_NAMESPACE: run.namespace,
                        LABEL_POD: run.name,
                        LABEL_POD_UID: run.uid,
                        LABEL_CONTAINER: c.name,
                    }
                ),
                name=f"cmdexec-k8s-emu_{c.name}_{run.name}_{run.namespace}_{run.uid[:8]}",
                host_config=self._host_config(run, spec),
            )
        except docker.errors.APIError as exc:
            message = str(exc.explanation or exc)
            c.state = {"waiting": {"reason": "CreateContainerError", "message": message}}
            c.next_attempt = now + 5 * _RETRY_SECONDS
            self.record_event(run, "Warning", "Failed", f"Error: {message}", c.name)
            return
        c.docker_id = created["Id"]
        self.record_event(run, "Normal", "Created", f"Created container: {c.name}", c.name)
        with run.lock:
            abandon = run.deletion_grace is not None or self.closing
        if abandon:  # deleted while it was being created: never start it
            c.state = self._unknown_termination()
            return
        try:
            self.api.start(c.docker_id)
        except docker.errors.APIError as exc:
            message = str(exc.explanation or exc)
            # as the kubelet reports a process that could not be started (startedAt is the zero time)
            c.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": "1970-01-01T00:00:00Z",
                    "finishedAt": now_rfc3339(),
                    "containerID": f"docker://{c.docker_id}",
                }
            }
            self.record_event(
                run, "Warning", "Failed", f'Error: failed to start container "{c.name}": {message}', c.name
            )
            return
        info = self.api.inspect_container(c.docker_id)
        c.state = {
            "running": {"startedAt": _utc_from_docker(info["State"].get("StartedAt")) or now_rfc3339()}
        }
        with self._lock:
            self.containers_started += 1
        self.record_event(run, "Normal", "Started", f"Started container {c.name}", c.name)
        self._spawn(self._wait_exit, run, c, name=f"wait-{c.docker_id[:12]}")

    def _host_config(self, run: PodRun, spec: dict[str, Any]) -> dict[str, Any]:
        limits = (spec.get("resources") or {}).get("limits") or {}
        requests_ = (spec.get("resources") or {}).get("requests") or {}
        pod_ctx = run.spec.get("securityContext") or {}
        ctx = spec.get("securityContext") or {}
        kwargs: dict[str, Any] = {
            "network_mode": "host",
            "log_config": {"type": "json-file", "config": {}},
            "mounts": self._mounts(run, spec),
        }
        if "memory" in limits:
            memory = math.ceil(quantity(limits["memory"]))
            kwargs["mem_limit"] = memory
            kwargs["memswap_limit"] = memory  # no swap, as the kubelet
        if "cpu" in limits:
            kwargs["nano_cpus"] = max(_MIN_NANO_CPUS, int(quantity(limits["cpu"]) * 1_000_000_000))
        if "cpu" in requests_:
            kwargs["cpu_shares"] = max(2, int(quantity(requests_["cpu"]) * 1024))
        if pod_ctx.get("supplementalGroups"):
            kwargs["group_add"] = [str(g) for g in pod_ctx["supplementalGroups"]]
        if ctx.get("allowPrivilegeEscalation") is False:
            kwargs["security_opt"] = ["no-new-privileges"]
        if ctx.get("readOnlyRootFilesystem"):
            kwargs["read_only"] = True
        capabilities = ctx.get("capabilities") or {}
        if capabilities.get("add"):
            kwargs["cap_add"] = capabilities["add"]
        if capabilities.get("drop"):
            kwargs["cap_drop"] = capabilities["drop"]
        return self.api.create_host_config(**kwargs)

    # ------------------------------------------------------------------ exits and stops
    def _wait_exit(self, run: PodRun, c: ContainerRun) -> None:
        while not self.closing:
            try:
                self.api.wait(c.docker_id, timeout=30)
                break
            except docker.errors.NotFound:
                break
            except (requests.exceptions.RequestException, docker.errors.APIError) as exc:
                log.debug("waiting for %s: %s", c.docker_id, exc)
        c.exited.set()
        run.wake.set()

    def _collect_exit(self, c: ContainerRun) -> None:
        try:
            state = self.api.inspect_container(c.docker_id)["State"]
        except docker.errors.NotFound:
            c.state = self._unknown_termination()
            return
        if state.get("Running"):
            return
        code = int(state.get("ExitCode", 0))
        reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        c.state = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": _utc_from_docker(state.get("StartedAt")),
                "finishedAt": _utc_from_docker(state.get("FinishedAt")) or now_rfc3339(),
                "containerID": f"docker://{c.docker_id}",
            }
        }

    @staticmethod
    def _unknown_termination() -> dict[str, Any]:
        """A container that never ran in a pod that ended (as the kubelet reports it)."""
        return {
            "terminated": {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": None,
                "finishedAt": None,
            }
        }

    def _stop_container(self, c: ContainerRun, grace: int) -> None:
        try:
            self.api.stop(c.docker_id, timeout=grace)
        except docker.errors.NotFound:
            pass
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            log.debug("docker stop %s: %s", c.docker_id, exc)

    def _terminate(self, run: PodRun, grace: int) -> None:
        """Stop every running container (SIGTERM, SIGKILL after ``grace`` s) and end the pod."""
        grace = max(grace, _MIN_KILL_GRACE)
        if run.kill_now:
            for c in run.containers:
                if c.running and c.docker_id:
                    self._kill(c.docker_id)
        stopping = []
        for c in run.containers:
            if c.running and c.docker_id and not c.exited.is_set():
                self.record_event(run, "Normal", "Killing", f"Stopping container {c.name}", c.name)
                stopping.append(self._spawn(self._stop_container, c, grace, name=f"stop-{c.docker_id[:12]}"))
        while any(t.is_alive() for t in stopping):
            run.wake.wait(0.2)
            run.wake.clear()
            with run.lock:
                requested = run.deletion_grace
            shorter = requested is not None and max(requested, _MIN_KILL_GRACE) < grace
            if shorter or self.closing or run.kill_now:  # a new deletion with less grace: kill now
                for c in run.containers:
                    if c.running and c.docker_id:
                        self._kill(c.docker_id)
        for c in run.containers:
            if c.running:
                c.exited.wait(10)
                self._collect_exit(c)
            elif "waiting" in c.state:
                c.state = self._unknown_termination()
        run.terminal = True
        self._publish(run)

    def _kill(self, docker_id: str) -> None:
        with contextlib.suppress(docker.errors.APIError):
            self.api.kill(docker_id)

    def _remove(self, run: PodRun) -> None:
        """The pod's end on the node: containers, volumes and files removed, then the object."""
        with self._volume_lock:
            for c in run.containers:
                if c.docker_id:
                    self._remove_container(c.docker_id)
            for name in run.docker_volumes:
                self.delete_volume(name)
            self._remove_released_volumes()
        if run.host_dir is not None:
            shutil.rmtree(run.host_dir, ignore_errors=True)
        with self._lock:
            self._runs.pop(run.key, None)
        with run.lock:
            deleting = run.deletion_grace is not None
        if deleting:
            self.store.delete("pods", run.namespace, run.name)
            self.on_pod_removed()  # deletions that waited for the pod (claims, its namespace)

    # ------------------------------------------------------------------ status
    def _set_condition(
        self, run: PodRun, type_: str, status: str, reason: str | None = None, message: str | None = None
    ) -> bool:
        """Set a pod condition; True if it changed (lastTransitionTime moves only then)."""
        old = run.conditions.get(type_)
        if old and (old["status"], old.get("reason"), old.get("message")) == (status, reason, message):
            return False
        cond: dict[str, Any] = {
            "type": type_,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": old["lastTransitionTime"]
            if old and old["status"] == status
            else now_rfc3339(),
        }
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        run.conditions[type_] = cond
        return True

    @staticmethod
    def phase(run: PodRun) -> str:
        """The kubelet's getPhase for restartPolicy Never."""
        if run.reason:  # DeadlineExceeded (or the emulator failed)
            return "Failed"
        states = [c.state for c in run.containers]
        if any("waiting" in s for s in states):
            return "Pending"
        if any("running" in s for s in states):
            return "Running"
        return "Succeeded" if all(s["terminated"]["exitCode"] == 0 for s in states) else "Failed"

    def _container_status(self, c: ContainerRun) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": c.name,
            "state": c.state,
            "lastState": {},
            "ready": c.running,
            "restartCount": 0,
            "image": c.image_ref or c.spec["image"],
            "imageID": c.image_id,
            "started": c.running,
        }
        if c.docker_id:
            status["containerID"] = f"docker://{c.docker_id}"
        return status

    def _publish(self, run: PodRun) -> None:
        """Write the pod's status as the kubelet knows it now (a MODIFIED event if it changed)."""
        phase = self.phase(run)
        if run.start_time is not None:
            not_ready = [c.name for c in run.containers if not c.running]
            if phase in TERMINAL_PHASES:
                self._set_condition(run, "Ready", "False", "PodCompleted")
                self._set_condition(run, "ContainersReady", "False", "PodCompleted")
            elif not_ready:
                message = f"containers with unready status: [{' '.join(not_ready)}]"
                self._set_condition(run, "Ready", "False", "ContainersNotReady", message)
                self._set_condition(run, "ContainersReady", "False", "ContainersNotReady", message)
            else:
                self._set_condition(run, "Ready", "True")
                self._set_condition(run, "ContainersReady", "True")
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [run.conditions[t] for t in order if t in run.conditions],
        }
        if run.reason:
            status["reason"] = run.reason
            status["message"] = run.message
        if run.start_time is not None:
            status["hostIP"] = self.host_ip
            status["hostIPs"] = [{"ip": self.host_ip}]
            status["podIP"] = self.host_ip
            status["podIPs"] = [{"ip": self.host_ip}]
            status["startTime"] = run.start_time
            status["containerStatuses"] = [self._container_status(c) for c in run.containers]

        def write(pod: dict[str, Any]) -> None:
            pod["status"] = {**status, "qosClass": pod["status"].get("qosClass")}

        self.store.update("pods", run.namespace, run.name, write)

    # ------------------------------------------------------------------ logs
    def _log_entries(
        self, docker_id: str, *, follow: bool, since_ns: int | None
    ) -> tuple[Any, Iterator[LogEntry]]:
        """(response to close, entries) of the container's Docker log (json-file, one entry a line)."""
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "timestamps": 1,
            "follow": int(follow),
            "tail": "all",
        }
        if since_ns:
            params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        res = self.api._get(
            self.api._url("/containers/{0}/logs", docker_id),
            params=params,
            stream=True,
            timeout=None if follow else 60,
        )
        self.api._raise_for_status(res)
        return res, _log_frames(res)

    def write_log(
        self,
        c: ContainerRun,
        options: LogOptions,
        write: Callable[[bytes], None],
        client_gone: Callable[[], bool],
    ) -> None:
        """Write the container's log as the kubelet serves it; with ``follow`` until it ends.

        Docker's follow stream can end before the last lines of a container that just exited,
        so after it ends the log is read once more from the last entry written."""
        assert c.docker_id is not None
        written = 0
        cursor = _LogCursor()

        def emit(entry: LogEntry) -> bool:
            nonlocal written
            stream, ns, content = entry
            if (options.stream == "Stdout" and stream != 1) or (options.stream == "Stderr" and stream != 2):
                return True
            line = (format_log_time(ns).encode() + b" " if options.timestamps else b"") + content
            if options.limit_bytes is not None:
                line = line[: options.limit_bytes - written]
            write(line)
            written += len(line)
            return options.limit_bytes is None or written < options.limit_bytes

        res, frames = self._log_entries(c.docker_id, follow=False, since_ns=options.since_ns)
        try:
            entries = [e for e in frames if cursor.new(e)]
        finally:
            res.close()
        if options.tail_lines is not None:
            entries = entries[-options.tail_lines :] if options.tail_lines else []
        for entry in entries:
            if not emit(entry):
                return
        if not options.follow:
            return
        for follow in (True, False):
            try:
                res, frames = self._log_entries(
                    c.docker_id, follow=follow, since_ns=cursor.since(options.since_ns)
                )
            except docker.errors.NotFound:  # the pod was deleted: its log is gone
                return
            lines: queue.Queue[LogEntry | None] = queue.Queue()
            self._spawn(self._pump_log, frames, lines, name=f"log-{c.docker_id[:12]}")
            try:
                while True:
                    try:
                        next_entry = lines.get(timeout=0.5)
                    except queue.Empty:
                        if client_gone() or self.closing:
                            return
                        continue
                    if next_entry is None:
                        break
                    if cursor.new(next_entry) and not emit(next_entry):
                        return
            finally:
                res.close()

    @staticmethod
    def _pump_log(frames: Iterator[LogEntry], lines: queue.Queue[LogEntry | None]) -> None:
        """Move Docker log entries to a queue (None at the end), so the reader can check its
        client between entries."""
        try:
            for entry in frames:
                lines.put(entry)
        except Exception as exc:  # noqa: BLE001  # the response was closed under it, or Docker went away
            log.debug("Kubernetes emulator: log stream ended: %r", exc)
        finally:
            lines.put(None)

    # ------------------------------------------------------------------ shutdown and hygiene
    def stop_all(self, timeout: float) -> None:
        """Kill every pod's containers, remove everything the pods created, end the workers."""
        self.closing = True
        for run in self.runs():
            for c in run.containers:
                if c.docker_id:
                    self._kill(c.docker_id)
            run.wake.set()
        deadline = time.monotonic() + timeout
        for run in self.runs():
            run.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def my_containers(self, include_stopped: bool = True) -> list[str]:
        found = self.api.containers(
            all=include_stopped, filters={"label": [f"{LABEL}=1", f"{LABEL_INSTANCE}={self.instance_id}"]}
        )
        return [c["Id"] for c in found]

    def my_volumes(self) -> list[str]:
        found = self.api.volumes(filters={"label": [f"{LABEL}=1", f"{LABEL_INSTANCE}={self.instance_id}"]})
        return [v["Name"] for v in found.get("Volumes") or []]

    def remove_everything(self) -> None:
        """Remove every container and volume of this emulator (what stop() leaves nothing of)."""
        with self._volume_lock:
            for container_id in self.my_containers():
                self._remove_container(container_id)
            for name in self.my_volumes():
                self.delete_volume(name)
            self._volumes_to_remove.clear()

    def _remove_container(self, container_id: str) -> None:
        try:
            self.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            log.warning("Kubernetes emulator: removing container %s: %s", container_id[:12], exc)


LogEntry = tuple[int, int, bytes]  # (stream 1 stdout | 2 stderr, time in ns, content with its newline)


@dataclass
class LogOptions:
    follow: bool = False
    timestamps: bool = False
    since_ns: int | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None
    stream: str = "All"


class _LogCursor:
    """Where a log has been read to, so that a re-read from that time skips what was written."""

    def __init__(self) -> None:
        self.last_ns: int | None = None
        self.seen_at_last = 0  # entries with exactly that time (Docker's since is inclusive)
        self._from: int | None = None
        self._skip = 0

    def since(self, default: int | None) -> int | None:
        """Start a re-read: the ``since`` to ask Docker for."""
        self._from, self._skip = self.last_ns, self.seen_at_last
        return self.last_ns if self.last_ns is not None else default

    def new(self, entry: LogEntry) -> bool:
        ns = entry[1]
        if self._from is not None:
            if ns < self._from:
                return False
            if ns == self._from and self._skip:
                self._skip -= 1
                return False
        if self.last_ns is None or ns > self.last_ns:
            self.last_ns, self.seen_at_last = ns, 1
        elif ns == self.last_ns:
            self.seen_at_last += 1
        return True


def _log_frames(res: Any) -> Iterator[LogEntry]:
    """Frames of Docker's multiplexed log stream with timestamps: (stream, time ns, content)."""
    while True:
        header = res.raw.read(8)
        if len(header) < 8:
            return
        stream_type, length = struct.unpack(">BxxxL", header)
        data = res.raw.read(length) if length else b""
        if length and not data:
            return
        stamp, _, content = data.partition(b" ")
        yield stream_type, parse_docker_time(stamp.decode()), content


def parse_docker_time(text: str) -> int:
    """RFC3339Nano (as Docker writes it: UTC, trailing zeros cut) -> nanoseconds since the epoch."""
    base, _, fraction = text.rstrip("Z").partition(".")
    seconds = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


def format_log_time(ns: int) -> str:
    """The kubelet's log timestamp: RFC3339 with exactly nine fraction digits, UTC."""
    seconds = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{seconds}.{ns % 1_000_000_000:09d}Z"


def parse_since_time(text: str) -> int:
    """sinceTime (RFC3339) -> nanoseconds since the epoch, cut to whole seconds: the API server
    passes it on to the kubelet formatted as RFC3339 without a fraction."""
    m = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)", text.strip(), re.IGNORECASE
    )
    if not m:
        raise ValueError(text)
    offset = "+00:00" if m.group(2).upper() == "Z" else m.group(2)
    return int(datetime.fromisoformat(m.group(1) + offset).timestamp()) * 1_000_000_000


def seconds_ago_ns(seconds: int) -> int:
    return int((datetime.now(UTC) - timedelta(seconds=seconds)).timestamp() * 1_000_000_000)
