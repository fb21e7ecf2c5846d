"""Run the command in a Kubernetes pod (Digdag's ``kubernetes`` executor, spec §9.4).

As on ECS, the worker ships the project and the IO dir through temporal storage (``shipping.py``;
Digdag's ``config_storage.in`` / ``.out``) and the pod's one container runs ``container_script.py``:
download through a presigned URL, run the command, upload the IO dir, print the end marker.

- One pod per try, ``restartPolicy: Never``, named after the task with a hash of its full ids
  (dag, task, run, map index, try), so a try that died while creating it finds it again.
- The exit code comes from the container's terminated state. What means the command will never
  run or was stopped (an image that cannot be pulled, a missing secret, OOMKilled, the pod's
  deadline) fails the task at once with the kubelet's reason.
- The log is read with the kubelet's timestamps from the last line shown on (``sinceTime``), so no
  line is shown twice or lost, also after a re-attach (the position is in the handle).
- The task's ``kubernetes.Pod`` is merged into the pod; ``PersistentVolume`` /
  ``PersistentVolumeClaim`` are created before the pod and deleted after it, as Digdag does.
- The pod, those volumes and the temporal objects are deleted after success, failure, timeout and kill.

The cluster is reached through the cncf provider's ``KubernetesHook`` (in-cluster, kube config path
or content, context), each backend with its own client configuration.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Both come with the [kubernetes] extra; without them the registry says to install it.
from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from airflow_cmdexec_provider import config
from airflow_cmdexec_provider.backends.base import (
    CommandGone,
    CommandRequest,
    CommandResult,
    Handle,
    LineSink,
    RemoteBackend,
    TaskSettings,
    WatchError,
)
from airflow_cmdexec_provider.backends.container_script import (
    ENV_SCRIPT,
    EXIT_DOWNLOAD_FAILED,
    EXIT_UPLOAD_FAILED,
    PHASE_DOWNLOAD,
    PHASE_SETUP,
    PHASE_UPLOAD,
    container_script,
    env_script,
    parse_marker_line,
)
from airflow_cmdexec_provider.backends.shipping import (
    download_outputs,
    object_prefix,
    presigned_urls,
    upload_project,
)
from airflow_cmdexec_provider.config import KubernetesConfig, StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.storage import open_storage
from airflow_cmdexec_provider.storage.base import TemporalStorage

log = logging.getLogger(__name__)

CONTAINER = "command"
LABEL_PREFIX = "io.github.cmdexec/"
POD_LABEL = LABEL_PREFIX + "pod"  # on the pod and on the volumes created for it
MANAGED_BY = {"app.kubernetes.io/managed-by": "airflow-cmdexec"}
STOP_GRACE_SECONDS = 10
# The pod's own deadline when only execution_timeout is set: Airflow stops the pod at the timeout;
# this is for a worker that died and never comes back.
DEADLINE_MARGIN_SECONDS = 60
# curl retries of the container script (Digdag's Kubernetes executor has no keys for them).
CURL_DOWNLOAD_RETRIES = 8
CURL_UPLOAD_RETRIES = 7
LOG_DRAIN_SECONDS = (
    2.0  # a log read right after the container ended may still miss its last lines: read again
)
REQUEST_TIMEOUT = (10, 60)  # connect, read (seconds) of every API call
# Container states after which the command never runs: fail now instead of waiting for minutes.
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
# kubernetes.Pod keys that go to the command's container; every other one is a pod spec field.
CONTAINER_KEYS = frozenset(
    {"image", "imagePullPolicy", "resources", "volumeMounts", "volumeDevices", "env", "envFrom"}
)
RESERVED_SPEC_KEYS = {
    "containers": "the command's container is ours: give its keys (resources, volumeMounts, ...) directly",
    "restartPolicy": "a pod runs once (Never): Airflow retries the task",
    "activeDeadlineSeconds": "set default_pod_ttl on the connection, or the task's execution_timeout",
}


class KubernetesBackend(RemoteBackend):
    """Run requests as pods of one cluster, shipping files through temporal storage."""

    name = "kubernetes"
    fallback = ("docker", "local")

    @classmethod
    def from_settings(cls, settings: TaskSettings) -> KubernetesBackend:
        k8s_config, input_config, output_config = config.kubernetes_setup(
            settings.kubernetes, settings.docker, settings.task_label
        )
        return cls(k8s_config, input_config, output_config, timeout_seconds=settings.timeout_seconds)

    def __init__(
        self,
        config: KubernetesConfig,
        input_config: StorageConfig,
        output_config: StorageConfig,
        *,
        timeout_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.input_config = input_config
        self.output_config = output_config
        self.timeout_seconds = timeout_seconds
        self.poll_interval = config.poll_interval
        self.container_overrides, self.spec_overrides, self.metadata_overrides = split_pod_overrides(
            config.pod, self.label
        )
        self.api = k8s.CoreV1Api(self._api_client())
        self.namespace = config.namespace or self._context_namespace() or "default"
        self._input: TemporalStorage | None = None
        self._output: TemporalStorage | None = None
        self._urls: list[str] = []
        self._last_save = 0.0

    @property
    def label(self) -> str:
        return f"Task {self.config.task_label}"

    # -- clients ---------------------------------------------------------------------------------
    def _api_client(self) -> k8s.ApiClient:
        """A client of the cluster, through the cncf provider's hook; a wrong setup is a config error.

        The hook gets the connection's values rather than its id (they were read once, with a
        definite answer, by ``config``), and a configuration object of its own: without one the
        kubernetes library loads into its process-wide default, which other tasks share.
        """
        cfg = self.config
        hook = KubernetesHook(
            conn_id=None,
            kubernetes_conn_id=None,
            client_configuration=k8s.Configuration(),
            in_cluster=cfg.in_cluster or None,
            config_file=cfg.kube_config_path,
            config_dict=dict(cfg.kube_config) if cfg.kube_config else None,
            cluster_context=cfg.cluster_context,
            disable_verify_ssl=cfg.disable_verify_ssl,
            disable_tcp_keepalive=cfg.disable_tcp_keepalive,
        )
        try:
            return hook.get_conn()
        except Exception as exc:  # ConfigException, a missing file, a kube config without the context, ...
            raise CmdExecConfigError(
                f"{self.label}: Kubernetes connection {cfg.conn_id!r}: cannot load the cluster access from "
                f"{self._access()} (Digdag kubernetes.<name>.master/... or kube_config_path): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _access(self) -> str:
        """How the connection reaches the cluster, for messages."""
        cfg = self.config
        if cfg.in_cluster:
            return "in_cluster"
        if cfg.kube_config_path:
            return f"kube_config_path {cfg.kube_config_path!r}"
        if cfg.kube_config:
            return "kube_config"
        return "the cncf provider's default (in-cluster, else ~/.kube/config)"

    def _context_namespace(self) -> str | None:
        """The namespace of the kube config context in use, or of the service account when in-cluster."""
        import yaml

        cfg = self.config
        service_account = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        in_cluster = cfg.in_cluster or (
            not cfg.kube_config and not cfg.kube_config_path and service_account.is_file()
        )
        if in_cluster:  # (without any setting, the cncf provider tries in-cluster first)
            return service_account.read_text().strip() if service_account.is_file() else None
        kube_config: Any = cfg.kube_config
        if kube_config is None:
            default = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]
            path = Path(os.path.expanduser(cfg.kube_config_path or default))
            kube_config = yaml.safe_load(path.read_text()) if path.is_file() else None
        if not isinstance(kube_config, Mapping):
            return None
        wanted = cfg.cluster_context or kube_config.get("current-context")
        for context in kube_config.get("contexts") or []:
            if isinstance(context, Mapping) and context.get("name") == wanted:
                return (context.get("context") or {}).get("namespace")
        return None

    @property
    def input_storage(self) -> TemporalStorage:
        if self._input is None:
            self._input = open_storage(self.input_config)
        return self._input

    @property
    def output_storage(self) -> TemporalStorage:
        if self._output is None:
            same = self.output_config == self.input_config
            self._output = self.input_storage if same else open_storage(self.output_config)
        return self._output

    # -- submit --------------------------------------------------------------------------------------
    def submit(self, request: CommandRequest, log_line: LineSink, earlier: Handle | None = None) -> Handle:
        """Ship the project, create the task's volumes and its pod; return the handle.

        With ``earlier`` (the handle of a try that died while starting) the same names are used, so
        the pod and volumes that try may have created are found and taken over, not duplicated.
        """
        if earlier is not None:
            handle = dict(earlier)
            log_line(
                f"An earlier try of this task died while starting pod {handle['pod']}: starting it again "
                "with the same names, taking over what that try created"
            )
        else:
            handle = {
                "backend": self.name,
                "starting": True,
                "namespace": self.namespace,
                "pod": pod_name(request.labels),
                "keys": {
                    "input": f"{object_prefix(self.input_config, request)}/input.tar.gz",
                    "output": f"{object_prefix(self.output_config, request)}/output.tar.gz",
                },
                "volumes": {
                    kind: (manifest.get("metadata") or {}).get("name")
                    for kind, manifest in (
                        ("PersistentVolume", self.config.persistent_volume),
                        ("PersistentVolumeClaim", self.config.persistent_volume_claim),
                    )
                    if manifest
                },
                "end_marker": f"--cmdexec-end-{uuid.uuid4().hex}--",
                "deadline": self._deadline(),
                "log": {"time": None, "count": 0},
            }
        self._save(handle)  # before anything exists: a crash from here on leaves a findable handle
        self._current = handle
        try:
            urls = presigned_urls(
                input_storage=self.input_storage,
                input_config=self.input_config,
                input_key=handle["keys"]["input"],
                output_storage=self.output_storage,
                output_config=self.output_config,
                output_key=handle["keys"]["output"],
                output_lifetime=self._url_lifetime(),
                task=self.label,
            )
            self._urls = list(urls.values())
            pod_env = {**request.env, **urls}
            if request.secret_env:  # not in the pod spec, which others may read: sourced from the archive
                (request.io_dir / ENV_SCRIPT).write_text(env_script(dict(request.env)), encoding="utf-8")
                pod_env = dict(urls)
            upload_project(
                request, self.input_storage, handle["keys"]["input"], "the Kubernetes pod", log_line
            )
            if self._killed.is_set():
                raise BackendError(f"{self.label}: killed before its pod was created")
            self._create_volumes(handle, log_line)
            self._create_pod(handle, self.pod_body(request, handle, pod_env), log_line)
        except BaseException:
            self.discard(handle, log_line)
            self._current = None
            raise
        handle.pop("starting", None)
        self._save(handle)
        return handle

    def _save(self, handle: Handle) -> None:
        if self.save_handle is not None:
            self.save_handle(handle)

    def _deadline(self) -> dict[str, Any] | None:
        """The pod's activeDeadlineSeconds: default_pod_ttl (Digdag), or execution_timeout plus a margin."""
        candidates = []
        if self.config.default_pod_ttl:
            candidates.append((self.config.default_pod_ttl, "default_pod_ttl of the Kubernetes connection"))
        if self.timeout_seconds:
            candidates.append(
                (
                    int(self.timeout_seconds) + DEADLINE_MARGIN_SECONDS,
                    f"execution_timeout plus {DEADLINE_MARGIN_SECONDS} s",
                )
            )
        if not candidates:
            return None
        seconds, source = min(candidates)
        return {"seconds": seconds, "source": source}

    def _url_lifetime(self) -> int | None:
        """The output URL lives as long as the pod may: its deadline plus an hour, else the maximum."""
        deadline = self._deadline()
        return deadline["seconds"] + 3600 if deadline else None

    def pod_body(self, request: CommandRequest, handle: Handle, env: Mapping[str, str]) -> dict[str, Any]:
        """The pod: our container running the container script, with the task's kubernetes.Pod merged in.

        Kubernetes expands ``$(VAR)`` and ``$$`` in command, args and env values: every ``$`` is
        doubled so that bash and the command see exactly the text they were given.
        """
        script = container_script(
            request,
            end_marker=handle["end_marker"],
            retry_downloads=CURL_DOWNLOAD_RETRIES,
            retry_uploads=CURL_UPLOAD_RETRIES,
            fail_on_upload=True,
            source_env_script=request.secret_env,
        )
        container = {
            "name": CONTAINER,
            "image": self.config.image,
            "command": ["/bin/bash", "-c", _literal(script)],
            "env": [{"name": key, "value": _literal(value)} for key, value in env.items()],
        }
        spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "containers": [merged(container, self.container_overrides)],
        }
        if handle.get("deadline"):
            spec["activeDeadlineSeconds"] = handle["deadline"]["seconds"]
        metadata = merged(
            self.metadata_overrides,
            {
                "name": handle["pod"],
                "namespace": handle["namespace"],
                "labels": {**pod_labels(request.labels), POD_LABEL: handle["pod"]},
                "annotations": {LABEL_PREFIX + key: str(value) for key, value in request.labels.items()},
            },
        )
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": merged(spec, self.spec_overrides),
        }

    def _create_volumes(self, handle: Handle, log_line: LineSink) -> None:
        """Create the PersistentVolume, then the PersistentVolumeClaim the task declares (Digdag #1691)."""
        for kind, manifest in (
            ("PersistentVolume", self.config.persistent_volume),
            ("PersistentVolumeClaim", self.config.persistent_volume_claim),
        ):
            if not manifest:
                continue
            name = handle["volumes"][kind]
            body = merged(
                dict(manifest),
                {
                    "apiVersion": "v1",
                    "kind": kind,
                    "metadata": {"labels": {**MANAGED_BY, POD_LABEL: handle["pod"]}},
                },
            )
            try:
                if kind == "PersistentVolume":
                    self.api.create_persistent_volume(body, _request_timeout=REQUEST_TIMEOUT)
                else:
                    self.api.create_namespaced_persistent_volume_claim(
                        handle["namespace"], body, _request_timeout=REQUEST_TIMEOUT
                    )
            except ApiException as exc:
                if exc.status != 409:
                    raise self._api_error(f"creating {kind} {name!r} failed", exc) from exc
                if not self._owns_volume(handle, kind, name):
                    raise CmdExecConfigError(
                        f"{self.label}: kubernetes.{kind} {name!r} already exists and was not created for "
                        "this task's pod; give it another name, or mount the existing one through "
                        "kubernetes.Pod.volumes"
                    ) from exc
                log_line(f"Found {kind} {name} created by an earlier try")
                continue
            except Exception as exc:
                raise BackendError(f"{self.label}: creating {kind} {name!r} failed: {exc}") from exc
            log_line(f"Created {kind} {name}")

    def _create_pod(self, handle: Handle, body: dict[str, Any], log_line: LineSink) -> None:
        name, namespace = handle["pod"], handle["namespace"]
        try:
            self.api.create_namespaced_pod(
                namespace, body, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 409:
                raise self._api_error(
                    f"creating pod {name!r} in namespace {namespace!r} failed", exc
                ) from exc
            existing = self.read_pod(handle)
            labels = (existing or {}).get("metadata", {}).get("labels") or {}
            if labels.get(POD_LABEL) != name:
                raise BackendError(
                    f"{self.label}: a pod {namespace}/{name} exists that this task did not create; "
                    "delete it, then retry the task"
                ) from exc
            log_line(f"Found pod {namespace}/{name}, created by an earlier try: following it")
            return
        except Exception as exc:
            raise BackendError(
                f"{self.label}: creating pod {name!r} failed: {self._scrub(str(exc))}"
            ) from exc
        log_line(f"Created pod {namespace}/{name} (image {self.config.image})")

    def _api_error(self, what: str, exc: ApiException) -> Exception:
        """Bad input (400, 422) is a config error; the rest (403, 404 namespace, 5xx) a backend error."""
        message = self._scrub(api_message(exc))
        if exc.status in (400, 422):
            return CmdExecConfigError(f"{self.label}: {what}: {message}; check the task's kubernetes params")
        return BackendError(f"{self.label}: {what}: {message}")

    def _scrub(self, text: str) -> str:
        """An API error may quote the pod it rejects: never let a presigned URL through."""
        for url in self._urls:
            text = text.replace(url, "***").replace(_literal(url), "***")
        return text

    # -- following ---------------------------------------------------------------------------------
    def read_pod(self, handle: Mapping[str, Any]) -> dict[str, Any] | None:
        """The pod as the API returns it, or None once it is gone. ``WatchError`` when it cannot be read."""
        try:
            response = self.api.read_namespaced_pod(
                handle["pod"], handle["namespace"], _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise WatchError(f"reading pod {handle['pod']} failed: {api_message(exc)}") from exc
        except Exception as exc:  # the API server is unreachable, a timeout, ...
            raise WatchError(f"reading pod {handle['pod']} failed: {type(exc).__name__}: {exc}") from exc
        pod: dict[str, Any] = json.loads(response.data)
        return pod

    def exists(self, handle: Handle) -> bool:
        return bool(handle.get("pod")) and self.read_pod(handle) is not None

    def poll(self, handle: Handle, log_line: LineSink) -> CommandResult | None:
        pod = self.read_pod(handle)
        if pod is None:
            if self._killed.is_set():
                return CommandResult(143, "stopped by Airflow: the pod was deleted")
            raise CommandGone(f"{self.label}: pod {handle['namespace']}/{handle['pod']} no longer exists")
        return self.on_pod(handle, pod, log_line)

    def on_pod(self, handle: Handle, pod: Mapping[str, Any], log_line: LineSink) -> CommandResult | None:
        """One look at the pod: forward new log lines; return the result once the command ended."""
        status = pod.get("status") or {}
        phase = status.get("phase")
        state = next(
            (
                c.get("state") or {}
                for c in status.get("containerStatuses") or []
                if c.get("name") == CONTAINER
            ),
            {},
        )
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        shown = phase if not waiting.get("reason") else f"{phase} ({waiting['reason']})"
        if shown != handle.get("shown_phase"):
            log_line(f"Pod {handle['pod']} is {shown}{self._unschedulable(status)}")
            handle["shown_phase"] = shown
        if waiting.get("reason") in FATAL_WAITING_REASONS:
            return CommandResult(
                1, f"{waiting['reason']}: {waiting.get('message') or 'the container cannot start'}"
            )
        if terminated is not None:
            marker = self._drain_log(handle, log_line)
            return self._result(handle, status, terminated, marker)
        if phase in (
            "Succeeded",
            "Failed",
        ):  # ended before its container ran (deadline while pulling, evicted)
            return CommandResult(
                1, self._pod_reason(handle, status) or f"the pod {phase} before its container ran"
            )
        if state.get("running"):
            self.read_log(handle, log_line)
            self._save_progress(handle)
        return None

    @staticmethod
    def _unschedulable(status: Mapping[str, Any]) -> str:
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return f": not scheduled yet ({condition.get('reason')}: {condition.get('message')})"
        return ""

    def _result(
        self,
        handle: Handle,
        status: Mapping[str, Any],
        terminated: Mapping[str, Any],
        marker: Mapping[str, Any] | None,
    ) -> CommandResult:
        exit_code = int(terminated.get("exitCode", 1))
        reason = terminated.get("reason")
        if self._killed.is_set():
            return CommandResult(exit_code, "stopped by Airflow")
        if reason == "OOMKilled":
            return CommandResult(
                exit_code,
                "OOMKilled: the container ran out of memory; raise resources.limits.memory in kubernetes.Pod",
            )
        pod_reason = self._pod_reason(handle, status)
        if pod_reason:
            return CommandResult(exit_code or 1, pod_reason)
        phase = marker.get("phase") if marker else None
        if phase in (PHASE_SETUP, PHASE_DOWNLOAD) or (exit_code == EXIT_DOWNLOAD_FAILED and marker is None):
            return CommandResult(exit_code, "the container could not download or unpack the project archive")
        if phase == PHASE_UPLOAD or (exit_code == EXIT_UPLOAD_FAILED and marker is None):
            return CommandResult(exit_code, "the container could not upload its outputs")
        return CommandResult(exit_code)

    @staticmethod
    def _pod_reason(handle: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
        """Why the pod itself failed (its deadline, an eviction), or None."""
        if status.get("reason") == "DeadlineExceeded":
            deadline = handle.get("deadline") or {}
            return (
                f"DeadlineExceeded: the pod ran longer than {deadline.get('seconds')} s "
                f"({deadline.get('source')}); Digdag: Pod execution timeout"
            )
        if status.get("phase") == "Failed" and status.get("reason"):
            return f"{status['reason']}: {status.get('message') or 'the pod failed'}"
        return None

    def _save_progress(self, handle: Handle) -> None:
        """Persist the log position (at most once a second), so a re-attach does not repeat lines."""
        if self.save_handle is None or handle["log"] == handle.get("saved_log"):
            return
        now = time.monotonic()
        if now - self._last_save >= 1.0:
            handle["saved_log"] = dict(handle["log"])
            self.save_handle(handle)
            self._last_save = now

    def read_log(self, handle: Handle, log_line: LineSink) -> bool:
        """Forward the lines after the last one forwarded; return True once the end marker was seen.

        ``handle["log"]`` is the kubelet's timestamp of the last line forwarded (nanoseconds) and how
        many lines carried that very timestamp: the next read starts at that second (the API's
        ``sinceTime`` has whole seconds) and skips what was already shown.
        """
        if "marker" in handle:
            return True
        position = handle["log"]
        query = [("container", CONTAINER), ("timestamps", "true")]
        if position["time"] is not None:
            query.append(
                ("sinceTime", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(position["time"] // 10**9)))
            )
        text = self._get_log(handle, query)
        skip = position["count"]

        def show(line: str) -> None:
            log_line(line)
            handle["log_lines"] = handle.get("log_lines", 0) + 1  # saved with the position: how far it is

        for raw in text.splitlines():
            stamp, _, line = raw.partition(" ")
            at = parse_log_time(stamp)
            if at is None:  # not a timestamped line: keep it whole
                at, line = position["time"] or 0, raw
            elif position["time"] is not None and at < position["time"]:
                continue
            elif at == position["time"] and skip > 0:
                skip -= 1
                continue
            position["count"] = position["count"] + 1 if at == position["time"] else 1
            position["time"] = at
            parsed = parse_marker_line(line, handle["end_marker"])
            if parsed is None and not line:
                position["blanks"] = position.get("blanks", 0) + 1  # shown when a line follows
                continue
            # The script prints a line break before its marker: that one blank line is not the command's.
            blanks = position.pop("blanks", 0) - (parsed is not None and not parsed[0])
            for _ in range(blanks):
                show("")
            if parsed is None:
                show(line)
                continue
            before, phase, code = parsed
            if before:
                show(before)
            handle["marker"] = {"phase": phase, "code": code}
            return True
        return False

    def _get_log(self, handle: Mapping[str, Any], query: list[tuple[str, str]]) -> str:
        """GET .../log. The official client has no ``sinceTime`` argument, so this is its call_api."""
        try:
            response = self.api.api_client.call_api(
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "GET",
                path_params={"namespace": handle["namespace"], "name": handle["pod"]},
                query_params=query,
                header_params={"Accept": "text/plain"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if exc.status == 400:  # the container has not started (yet): nothing to read
                return ""
            raise WatchError(f"reading the log of pod {handle['pod']} failed: {api_message(exc)}") from exc
        except Exception as exc:
            raise WatchError(
                f"reading the log of pod {handle['pod']} failed: {type(exc).__name__}: {exc}"
            ) from exc
        text: str = response.data.decode("utf-8", errors="replace")
        return text

    def _drain_log(self, handle: Handle, log_line: LineSink) -> dict[str, Any] | None:
        """After the container ended, read its log to the end marker, waiting a bounded time for it."""
        deadline = time.monotonic() + LOG_DRAIN_SECONDS
        while not self.read_log(handle, log_line):
            if time.monotonic() >= deadline or self._killed.is_set():
                return None
            time.sleep(1.0)
        marker: dict[str, Any] = handle["marker"]
        return marker

    def fetch_outputs(self, handle: Handle, io_dir: Path, result: CommandResult) -> None:
        download_outputs(
            self.output_storage,
            handle["keys"]["output"],
            io_dir,
            result,
            f"{self.label}: pod {handle['pod']}",
        )

    # -- ending ------------------------------------------------------------------------------------
    def stop(self, handle: Handle, reason: str) -> None:
        """Delete the pod (its container gets TERM, then KILL after 10 s); do not wait for it."""
        self._killed.set()
        if not handle.get("pod"):
            return
        try:
            self._delete_pod(handle)
            log.info("Deleted pod %s/%s: %s", handle["namespace"], handle["pod"], reason)
        except Exception as exc:  # noqa: BLE001 - the API may be unreachable: cleanup tries again
            log.warning("Deleting pod %s failed: %s", handle["pod"], exc)

    def _delete_pod(self, handle: Mapping[str, Any]) -> bool:
        """Delete the pod; False when it was already gone."""
        try:
            self.api.delete_namespaced_pod(
                handle["pod"],
                handle["namespace"],
                grace_period_seconds=STOP_GRACE_SECONDS,
                _request_timeout=REQUEST_TIMEOUT,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise BackendError(
                f"{self.label}: deleting pod {handle['pod']} failed: {api_message(exc)}"
            ) from exc
        return True

    def cleanup(self, handle: Handle, log_line: LineSink) -> None:
        """Delete the pod, the volumes created for it and every temporal object, whatever happened."""
        try:
            if handle.get("pod") and self._delete_pod(handle):
                log_line(f"Deleted pod {handle['namespace']}/{handle['pod']}")
            for kind in ("PersistentVolumeClaim", "PersistentVolume"):  # the claim first: it holds the volume
                name = (handle.get("volumes") or {}).get(kind)
                if name and self._owns_volume(handle, kind, name):
                    self._delete_volume(handle, kind, name)
                    log_line(f"Deleted {kind} {name}")
        finally:
            self.input_storage.delete([handle["keys"]["input"]])
            self.output_storage.delete([handle["keys"]["output"]])

    def _owns_volume(self, handle: Mapping[str, Any], kind: str, name: str) -> bool:
        """Whether the volume exists and was created for this handle's pod (never delete another's)."""
        try:
            if kind == "PersistentVolume":
                volume = self.api.read_persistent_volume(name, _request_timeout=REQUEST_TIMEOUT)
            else:
                volume = self.api.read_namespaced_persistent_volume_claim(
                    name, handle["namespace"], _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise BackendError(f"{self.label}: reading {kind} {name!r} failed: {api_message(exc)}") from exc
        owner: str | None = (volume.metadata.labels or {}).get(POD_LABEL)
        pod: str = handle["pod"]
        return owner == pod

    def _delete_volume(self, handle: Mapping[str, Any], kind: str, name: str) -> None:
        """Delete it; Kubernetes keeps it until the pod that uses it is gone (its protection finalizer)."""
        try:
            if kind == "PersistentVolume":
                self.api.delete_persistent_volume(name, _request_timeout=REQUEST_TIMEOUT)
            else:
                self.api.delete_namespaced_persistent_volume_claim(
                    name, handle["namespace"], _request_timeout=REQUEST_TIMEOUT
                )
        except ApiException as exc:
            if exc.status != 404:
                raise BackendError(
                    f"{self.label}: deleting {kind} {name!r} failed: {api_message(exc)}"
                ) from exc


# -- the pod ---------------------------------------------------------------------------------------
def split_pod_overrides(
    pod: Mapping[str, Any], task: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Digdag's ``kubernetes.Pod`` as (container keys, pod spec keys, metadata); unknown keys are errors.

    Container keys (``resources``, ``volumeMounts``, ``env``, ...) go to the command's container, as
    in Digdag; ``metadata`` gives labels and annotations; every other key must be a pod spec field
    (``nodeSelector``, ``tolerations``, ``affinity``, ``serviceAccountName``, ``volumes``, ...).
    """
    spec_keys = set(k8s.V1PodSpec.attribute_map.values()) - CONTAINER_KEYS
    container: dict[str, Any] = {}
    spec: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key, value in pod.items():
        if key in RESERVED_SPEC_KEYS:
            raise CmdExecConfigError(f"{task}: kubernetes.Pod.{key} cannot be set: {RESERVED_SPEC_KEYS[key]}")
        if key == "metadata":
            if not isinstance(value, Mapping) or set(value) - {"labels", "annotations"}:
                raise CmdExecConfigError(
                    f"{task}: kubernetes.Pod.metadata may hold labels and annotations only, got {value!r}"
                )
            metadata = dict(value)
        elif key in CONTAINER_KEYS:
            if key != "image":  # the image is KubernetesConfig.image already
                container[key] = value
        elif key in spec_keys:
            spec[key] = value
        else:
            raise CmdExecConfigError(
                f"{task}: unknown key kubernetes.Pod.{key}; use a pod spec field "
                f"({', '.join(sorted(spec_keys))}), a container field "
                f"({', '.join(sorted(CONTAINER_KEYS))}) or metadata"
            )
    return container, spec, metadata


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` merged into ``base``: mappings recursively, lists appended, anything else replaced."""
    result = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = [*result[key], *value]
        else:
            result[key] = value
    return result


def _literal(text: str) -> str:
    """Text that Kubernetes' ``$(VAR)`` expansion leaves as it is (``$$`` stands for ``$``)."""
    return text.replace("$", "$$")


def pod_name(labels: Mapping[str, str]) -> str:
    """``cmdexec-<dag>-<task>-<hash>``: a DNS-1123 label of at most 63 characters, one per try.

    The hash covers the full dag, task, run, map index and try, so the name is the same for every
    attempt to start one try and different for every other try.
    """
    ids = "|".join(
        str(labels.get(key, "")) for key in ("dag_id", "task_id", "run_id", "map_index", "try_number")
    )
    digest = hashlib.sha256(ids.encode()).hexdigest()[:12]
    readable = re.sub(r"[^a-z0-9]+", "-", f"{labels.get('dag_id', '')}-{labels.get('task_id', '')}".lower())
    readable = readable[: 63 - len("cmdexec--") - len(digest)].strip("-")
    return f"cmdexec-{readable}-{digest}" if readable else f"cmdexec-{digest}"


def pod_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels naming the task try (values cut to what a label allows; the annotations hold them whole)."""
    run_key = hashlib.sha1(f"{labels.get('run_id')}|{labels.get('map_index')}".encode()).hexdigest()[:12]
    return {
        **MANAGED_BY,
        LABEL_PREFIX + "dag-id": _label_value(labels.get("dag_id", "")),
        LABEL_PREFIX + "task-id": _label_value(labels.get("task_id", "")),
        LABEL_PREFIX + "run-key": run_key,
        LABEL_PREFIX + "try-number": _label_value(labels.get("try_number", "")),
    }


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def parse_log_time(stamp: str) -> int | None:
    """Nanoseconds since the epoch of a kubelet log timestamp (RFC3339 with up to 9 fraction digits)."""
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", stamp)
    if match is None:
        return None
    *fields, fraction = match.groups()
    seconds = calendar.timegm((*(int(f) for f in fields), 0, 0, 0))
    return seconds * 10**9 + int((fraction or "0").ljust(9, "0"))


def api_message(exc: ApiException) -> str:
    """``<status> <reason>: <the API server's message>`` of a failed call."""
    message = ""
    try:
        body = json.loads(exc.body) if exc.body else {}
        message = body.get("message", "") if isinstance(body, dict) else ""
    except (TypeError, ValueError):
        message = str(exc.body or "")[:500]
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
