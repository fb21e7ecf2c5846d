"""The Kubernetes API emulator itself, driven only through the official ``kubernetes`` client and a
kube config: pods really run in Docker, report the kubelet's phases and container states, stream
their logs, honour deletion and deadlines; bad specs and bad tokens fail loudly.  No mocks."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.k8s.conftest import TEST_IMAGE
from tests.k8s_emulator import KubeEmulator

pytestmark = pytest.mark.k8s

NS = "default"
LOG_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


# ----------------------------------------------------------------------------- helpers
def pod_body(
    name: str,
    command: list[str],
    *,
    volumes: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
    **container: Any,
) -> dict[str, Any]:
    """A restartPolicy Never pod with one container "main" running ``command`` in the test image."""
    main = {"name": "main", "image": TEST_IMAGE, "command": command, **container}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"test": "k8s-emulator"}},
        "spec": {"restartPolicy": "Never", "containers": [main], **(spec or {})},
    }
    if volumes:
        body["spec"]["volumes"] = volumes
    return body


def wait_pod(
    api: client.CoreV1Api,
    name: str,
    done: Any,
    timeout: float = 60,
    namespace: str = NS,
    since: client.V1Pod | None = None,
) -> client.V1Pod:
    """Watch the pod until ``done(pod)``; returns that pod.  From its current state, or with
    ``since`` (the pod as created) every state it went through."""
    pod = since or api.read_namespaced_pod(name, namespace)
    if done(pod):
        return pod
    w = watch.Watch()
    for event in w.stream(
        api.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=pod.metadata.resource_version,
        timeout_seconds=int(timeout),
    ):
        if event["type"] != "DELETED" and done(event["object"]):
            w.stop()
            return event["object"]
    raise AssertionError(
        f"pod {name} did not get there in {timeout}s: {api.read_namespaced_pod(name, namespace).status}"
    )


def phase_in(*phases: str) -> Any:
    return lambda pod: pod.status.phase in phases


def wait_gone(api: client.CoreV1Api, name: str, timeout: float = 60, namespace: str = NS) -> None:
    w = watch.Watch()
    try:
        pod = api.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return  # already gone
        raise
    for event in w.stream(
        api.list_namespaced_pod,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=pod.metadata.resource_version,
        timeout_seconds=int(timeout),
    ):
        if event["type"] == "DELETED":
            w.stop()
            return
    raise AssertionError(f"pod {name} not deleted after {timeout}s")


def delete_and_wait(api: client.CoreV1Api, name: str, namespace: str = NS) -> None:
    try:
        api.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_gone(api, name, namespace=namespace)


def log_text(api: client.CoreV1Api, name: str, namespace: str = NS, **options: Any) -> str:
    """The pod's log as text.  (Client 36.x returns the repr of the bytes when the content is
    preloaded, kubernetes-client/python#2596; reading the raw response avoids it.)"""
    return api.read_namespaced_pod_log(name, namespace, _preload_content=False, **options).data.decode()


def stdout_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("line-")]


def container_state(pod: client.V1Pod, name: str = "main") -> client.V1ContainerState:
    return next(s.state for s in pod.status.container_statuses if s.name == name)


def docker_id(pod: client.V1Pod, name: str = "main") -> str:
    status = next(s for s in pod.status.container_statuses if s.name == name)
    assert status.container_id, status
    assert status.container_id.startswith("docker://"), status
    return status.container_id.removeprefix("docker://")


def docker_container_gone(container_id: str) -> bool:
    docker_client = docker.from_env(timeout=30)
    try:
        docker_client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return True
    finally:
        docker_client.close()
    return False


def api_error(exc_info: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    return json.loads(exc_info.value.body)


class StreamReader:
    """Reads a streamed response (log follow) piece by piece."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.text = ""
        self._chunks: Iterator[bytes] = response.stream(amt=None, decode_content=False)

    def read_until(self, needle: str) -> str:
        for chunk in self._chunks:
            self.text += chunk.decode()
            if needle in self.text:
                return self.text
        raise AssertionError(f"stream ended without {needle!r}: {self.text!r}")

    def read_to_end(self) -> str:
        for chunk in self._chunks:
            self.text += chunk.decode()
        self.response.release_conn()
        return self.text


# ----------------------------------------------------------------------------- tests
def test_pod_prints_lines_succeeds_and_its_log_streams_while_it_runs(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api, tmp_path: Path
) -> None:
    api = k8s_core_api
    gate = tmp_path / "gate"
    gate.mkdir()
    script = (
        "echo line-1; while [ ! -e /gate/open ]; do sleep 0.1; done; "
        "echo line-2; echo line-3; echo line-4; echo err-done >&2"
    )
    api.create_namespaced_pod(
        NS,
        pod_body(
            "printer",
            ["sh", "-c", script],
            volumes=[{"name": "gate", "hostPath": {"path": str(gate), "type": "Directory"}}],
            volumeMounts=[{"name": "gate", "mountPath": "/gate"}],
        ),
    )
    try:
        wait_pod(api, "printer", phase_in("Running"))
        follow = StreamReader(api.read_namespaced_pod_log("printer", NS, follow=True, _preload_content=False))
        assert follow.read_until("line-1\n") == "line-1\n"
        # the container waits for the gate: the stream delivered line-1 while the pod runs
        running = api.read_namespaced_pod("printer", NS)
        assert running.status.phase == "Running"
        assert container_state(running).running.started_at is not None
        assert running.status.container_statuses[0].ready is True
        (gate / "open").touch()
        full = follow.read_to_end()
        # Docker (like containerd) copies stdout and stderr separately: their relative order may vary
        assert stdout_lines(full) == ["line-1", "line-2", "line-3", "line-4"]
        assert sorted(full.splitlines()) == ["err-done", "line-1", "line-2", "line-3", "line-4"]

        pod = wait_pod(api, "printer", phase_in("Succeeded", "Failed"))
        assert pod.status.phase == "Succeeded"
        status = pod.status.container_statuses[0]
        assert (status.restart_count, status.ready, status.started) == (0, False, False)
        terminated = status.state.terminated
        assert (terminated.exit_code, terminated.reason) == (0, "Completed")
        assert terminated.started_at <= terminated.finished_at
        assert terminated.container_id == status.container_id
        assert status.container_id.startswith("docker://")
        assert status.image == f"docker.io/library/{TEST_IMAGE}"
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
        assert pod.status.start_time is not None
        assert pod.status.pod_ip == pod.status.host_ip

        assert log_text(api, "printer") == full
        stamped = log_text(api, "printer", timestamps=True).splitlines()
        assert all(LOG_TIMESTAMP.match(line) for line in stamped), stamped
        assert [line.split(" ", 1)[1] for line in stamped] == full.splitlines()
        assert log_text(api, "printer", tail_lines=2) == "".join(full.splitlines(keepends=True)[-2:])
        assert log_text(api, "printer", limit_bytes=10) == full[:10]
        assert log_text(api, "printer", since_seconds=3600) == full
        assert log_text(api, "printer", stream="Stderr") == "err-done\n"
        assert log_text(api, "printer", stream="Stdout") == "line-1\nline-2\nline-3\nline-4\n"
        # sinceTime (not a parameter of the Python client's method, so the raw call)
        later = api.api_client.call_api(
            f"/api/v1/namespaces/{NS}/pods/printer/log",
            "GET",
            query_params=[("sinceTime", "2999-01-01T00:00:00Z")],
            auth_settings=["BearerToken"],
            _preload_content=False,
        ).data
        assert later == b""
        # the whole stream ends at once for a container that already ended
        assert (
            StreamReader(
                api.read_namespaced_pod_log("printer", NS, follow=True, _preload_content=False)
            ).read_to_end()
            == full
        )
    finally:
        delete_and_wait(api, "printer")
    assert k8s_emulator.pods_created == 1
    assert k8s_emulator.containers_started == 1


def test_exit_code_7_fails_with_reason_error(k8s_core_api: client.CoreV1Api) -> None:
    api = k8s_core_api
    api.create_namespaced_pod(NS, pod_body("exit7", ["sh", "-c", "echo bye; exit 7"]))
    try:
        pod = wait_pod(api, "exit7", phase_in("Succeeded", "Failed"))
        assert pod.status.phase == "Failed"
        terminated = container_state(pod).terminated
        assert (terminated.exit_code, terminated.reason) == (7, "Error")
        ready = next(c for c in pod.status.conditions if c.type == "Ready")
        assert (ready.status, ready.reason) == ("False", "PodCompleted")
        assert log_text(api, "exit7") == "bye\n"
    finally:
        delete_and_wait(api, "exit7")


def test_memory_limit_oom_kills_and_limits_are_enforced(k8s_core_api: client.CoreV1Api) -> None:
    api = k8s_core_api
    limits = {"memory": "64Mi", "cpu": "500m"}
    report = (
        "cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max 2>/dev/null || "
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    body = pod_body(
        "oom", ["python3", "-c", "x = b'x' * (256 << 20); print('survived')"], resources={"limits": limits}
    )
    body["spec"]["containers"].append(
        {
            "name": "limits",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", report],
            "resources": {"limits": limits},
        }
    )
    api.create_namespaced_pod(NS, body)
    try:
        pod = wait_pod(api, "oom", phase_in("Succeeded", "Failed"))
        assert pod.status.phase == "Failed"
        assert pod.status.qos_class == "Guaranteed"  # requests default to the limits
        oom = container_state(pod, "main").terminated
        assert (oom.exit_code, oom.reason) == (137, "OOMKilled")
        assert container_state(pod, "limits").terminated.reason == "Completed"
        enforced = log_text(api, "oom", container="limits").split()
        assert "50000" in enforced, enforced  # 0.5 CPU of 100 ms
        assert str(64 << 20) in enforced, enforced  # 64 MiB
        assert "survived" not in log_text(api, "oom", container="main")
    finally:
        delete_and_wait(api, "oom")


def test_missing_image_err_image_pull_then_back_off_and_nothing_runs(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api
) -> None:
    api = k8s_core_api
    image = "cmdexec-no-such-image:1"
    created = api.create_namespaced_pod(NS, pod_body("noimage", ["true"], image=image))
    try:
        reasons: list[str] = []

        def back_off(pod: client.V1Pod) -> bool:
            waiting = pod.status.container_statuses and container_state(pod).waiting
            if waiting and (not reasons or reasons[-1] != waiting.reason):
                reasons.append(waiting.reason)
            return bool(waiting) and waiting.reason == "ImagePullBackOff"

        pod = wait_pod(api, "noimage", back_off, since=created)
        assert reasons == ["ContainerCreating", "ErrImagePull", "ImagePullBackOff"]
        assert pod.status.phase == "Pending"
        waiting = container_state(pod).waiting
        assert f'Back-off pulling image "{image}"' in waiting.message
        assert f"docker.io/library/{image}: not found" in waiting.message
        assert pod.status.container_statuses[0].container_id is None
        assert k8s_emulator.containers() == []
        assert k8s_emulator.containers_started == 0

        with pytest.raises(ApiException) as err:
            api.read_namespaced_pod_log("noimage", NS)
        assert err.value.status == 400
        assert (
            api_error(err)["message"]
            == 'container "main" in pod "noimage" is waiting to start: trying and failing to pull image'
        )
        events = api.list_namespaced_event(NS, field_selector="involvedObject.name=noimage").items
        assert any(e.reason == "Failed" and f'Failed to pull image "{image}"' in e.message for e in events)
        assert any(e.reason == "BackOff" for e in events)
    finally:
        delete_and_wait(api, "noimage")


def test_deleting_a_running_pod_stops_its_container_with_the_grace_period(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api
) -> None:
    api = k8s_core_api
    script = "trap 'echo got-TERM; exit 0' TERM; echo started; while true; do sleep 0.1; done"
    api.create_namespaced_pod(NS, pod_body("victim", ["sh", "-c", script]))
    pod = wait_pod(api, "victim", phase_in("Running"))
    container = docker_id(pod)
    follow = StreamReader(api.read_namespaced_pod_log("victim", NS, follow=True, _preload_content=False))
    follow.read_until("started\n")

    deleted = api.delete_namespaced_pod("victim", NS, grace_period_seconds=20)
    assert deleted.metadata.deletion_timestamp is not None
    assert deleted.metadata.deletion_grace_period_seconds == 20
    events = []
    for event in watch.Watch().stream(
        api.list_namespaced_pod,
        NS,
        field_selector="metadata.name=victim",
        resource_version=deleted.metadata.resource_version,
        timeout_seconds=60,
    ):
        events.append(event)
        if event["type"] == "DELETED":
            break
    assert events[-1]["type"] == "DELETED", [e["type"] for e in events]
    final = events[-1]["object"]
    # SIGTERM reached the command, which exited 0 well within the grace period
    assert final.status.phase == "Succeeded"
    assert container_state(final).terminated.exit_code == 0
    assert follow.read_to_end() == "started\ngot-TERM\n"
    assert docker_container_gone(container)
    with pytest.raises(ApiException) as err:
        api.read_namespaced_pod("victim", NS)
    assert err.value.status == 404
    assert api_error(err)["reason"] == "NotFound"
    assert k8s_emulator.pods_deleted == 1


def test_force_deletion_removes_the_object_at_once_and_kills_the_container(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api
) -> None:
    api = k8s_core_api
    api.create_namespaced_pod(NS, pod_body("stubborn", ["sleep", "300"]))  # PID 1 ignores SIGTERM
    container = docker_id(wait_pod(api, "stubborn", phase_in("Running")))
    api.delete_namespaced_pod("stubborn", NS, body=client.V1DeleteOptions(grace_period_seconds=0))
    with pytest.raises(ApiException) as err:
        api.read_namespaced_pod("stubborn", NS)
    assert err.value.status == 404
    k8s_emulator.wait_for(lambda: docker_container_gone(container), timeout=120, what="container removed")


def test_active_deadline_seconds_fails_the_pod(k8s_core_api: client.CoreV1Api) -> None:
    api = k8s_core_api
    api.create_namespaced_pod(
        NS,
        pod_body(
            "deadline",
            ["sleep", "300"],
            spec={"activeDeadlineSeconds": 1, "terminationGracePeriodSeconds": 0},
        ),
    )
    try:
        pod = wait_pod(api, "deadline", phase_in("Succeeded", "Failed"))
        assert (pod.status.phase, pod.status.reason) == ("Failed", "DeadlineExceeded")
        assert pod.status.message == "Pod was active on the node longer than the specified deadline"
        assert container_state(pod).terminated.exit_code == 137
    finally:
        delete_and_wait(api, "deadline")


def test_watch_streams_added_modified_deleted_with_increasing_resource_versions(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api
) -> None:
    api = k8s_core_api
    start = api.list_namespaced_pod(NS, label_selector="app=watched").metadata.resource_version
    api.create_namespaced_pod(NS, pod_body("watched", ["sh", "-c", "echo hi"], labels={"app": "watched"}))
    api.create_namespaced_pod(NS, pod_body("unwatched", ["true"], labels={"app": "other"}))
    try:
        seen: list[tuple[str, str, int]] = []
        w = watch.Watch()
        for event in w.stream(
            api.list_namespaced_pod,
            NS,
            label_selector="app=watched",
            resource_version=start,
            timeout_seconds=60,
        ):
            pod = event["object"]
            seen.append((event["type"], pod.metadata.name, int(pod.metadata.resource_version)))
            if (
                pod.status.phase == "Succeeded"
                and event["type"] == "MODIFIED"
                and not pod.metadata.deletion_timestamp
            ):
                api.delete_namespaced_pod("watched", NS)
            if event["type"] == "DELETED":
                w.stop()
        assert {name for _, name, _ in seen} == {"watched"}
        assert seen[0][0] == "ADDED"
        assert seen[-1][0] == "DELETED"
        assert {t for t, _, _ in seen[1:-1]} == {"MODIFIED"}
        versions = [rv for _, _, rv in seen]
        assert versions == sorted(set(versions)), versions

        # a watch without resourceVersion starts with the current objects; timeoutSeconds ends it
        wait_pod(api, "unwatched", phase_in("Succeeded"))  # no more changes to it
        current = list(
            watch.Watch().stream(api.list_namespaced_pod, NS, label_selector="app=other", timeout_seconds=1)
        )
        assert [(e["type"], e["object"].metadata.name) for e in current] == [("ADDED", "unwatched")]
    finally:
        delete_and_wait(api, "unwatched")
        delete_and_wait(api, "watched")
    assert k8s_emulator.watch_requests >= 2


def test_unknown_fields_and_unsupported_features_are_rejected(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api
) -> None:
    api = k8s_core_api
    typo = pod_body("typo", ["true"])
    typo["spec"]["containers"][0]["comand"] = ["true"]
    with pytest.raises(ApiException) as err:
        api.create_namespaced_pod(NS, typo)
    assert err.value.status == 400
    assert 'strict decoding error: unknown field "spec.containers[0].comand"' in api_error(err)["message"]

    always = pod_body("always", ["true"])
    del always["spec"]["restartPolicy"]  # unset means Always
    with pytest.raises(ApiException) as err:
        api.create_namespaced_pod(NS, always)
    status = api_error(err)
    assert (err.value.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == "spec.restartPolicy"
    assert "Always" in status["message"]
    assert "tests/k8s_emulator/README.md" in status["message"]

    probes = pod_body("probes", ["true"], livenessProbe={"exec": {"command": ["true"]}})
    probes["spec"]["initContainers"] = [{"name": "init", "image": TEST_IMAGE}]
    with pytest.raises(ApiException) as err:
        api.create_namespaced_pod(NS, probes)
    fields = {c["field"] for c in api_error(err)["details"]["causes"]}
    assert fields == {"spec.initContainers", "spec.containers[0].livenessProbe"}

    with pytest.raises(ApiException) as err:
        api.create_namespaced_pod(NS, pod_body("Bad_Name", ["true"], image=""))
    assert {c["field"] for c in api_error(err)["details"]["causes"]} == {
        "metadata.name",
        "spec.containers[0].image",
    }
    assert api.list_namespaced_pod(NS).items == []
    assert k8s_emulator.pods_created == 0


def test_secret_env_value_from_waits_for_the_secret_then_runs(k8s_core_api: client.CoreV1Api) -> None:
    api = k8s_core_api
    script = "echo \"token=$TOKEN greeting=$(GREETING) pod=$POD ns=$NS\"; echo 'literal=$$(GREETING)'"
    api.create_namespaced_pod(
        NS,
        pod_body(
            "envpod",
            ["sh", "-c", script],
            env=[
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-creds", "key": "token"}}},
                {
                    "name": "GREETING",
                    "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}},
                },
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            ],
        ),
    )
    try:

        def config_error(pod: client.V1Pod) -> bool:
            waiting = pod.status.container_statuses and container_state(pod).waiting
            return bool(waiting) and waiting.reason == "CreateContainerConfigError"

        blocked = wait_pod(api, "envpod", config_error)
        assert container_state(blocked).waiting.message == 'secret "app-creds" not found'
        assert blocked.status.phase == "Pending"
        api.create_namespaced_secret(
            NS,
            client.V1Secret(metadata=client.V1ObjectMeta(name="app-creds"), string_data={"token": "s3cr3t"}),
        )
        api.create_namespaced_config_map(
            NS,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name="app-config"), data={"greeting": "hello"}),
        )
        stored = api.read_namespaced_secret("app-creds", NS)
        assert stored.data == {"token": base64.b64encode(b"s3cr3t").decode()}
        assert stored.string_data is None
        assert wait_pod(api, "envpod", phase_in("Succeeded", "Failed")).status.phase == "Succeeded"
        # $(VAR) is expanded by Kubernetes, $$ escapes it
        assert (
            log_text(api, "envpod")
            == "token=s3cr3t greeting=hello pod=envpod ns=default\nliteral=$(GREETING)\n"
        )
    finally:
        delete_and_wait(api, "envpod")
        api.delete_namespaced_secret("app-creds", NS)
        api.delete_namespaced_config_map("app-config", NS)


def test_secret_config_map_and_empty_dir_volumes(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api
) -> None:
    api = k8s_core_api
    api.create_namespaced_secret(
        NS,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="files"), string_data={"a.txt": "secret-a", "b.txt": "secret-b"}
        ),
    )
    api.create_namespaced_config_map(
        NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="conf"), data={"app.ini": "[x]\ny=1\n"})
    )
    volumes = [
        {"name": "sec", "secret": {"secretName": "files", "items": [{"key": "a.txt", "path": "sub/a"}]}},
        {"name": "conf", "configMap": {"name": "conf"}},
        {"name": "shared", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
    ]
    writer = (
        "cat /sec/sub/a; ls /sec; cat /conf/app.ini; echo from-writer > /shared/note; "
        "touch /sec/x 2>/dev/null || echo read-only"
    )
    reader = "while [ ! -e /shared/note ]; do sleep 0.1; done; cat /shared/note; df -k /mem | tail -1"
    body = pod_body(
        "vols",
        ["sh", "-c", writer],
        volumes=volumes,
        securityContext={"runAsUser": 1000},
        volumeMounts=[
            {"name": "sec", "mountPath": "/sec"},
            {"name": "conf", "mountPath": "/conf"},
            {"name": "shared", "mountPath": "/shared"},
        ],
    )
    body["spec"]["containers"].append(
        {
            "name": "reader",
            "image": TEST_IMAGE,
            "command": ["sh", "-c", reader],
            "volumeMounts": [
                {"name": "shared", "mountPath": "/shared"},
                {"name": "mem", "mountPath": "/mem"},
            ],
        }
    )
    api.create_namespaced_pod(NS, body)
    try:
        assert wait_pod(api, "vols", phase_in("Succeeded", "Failed")).status.phase == "Succeeded"
        assert log_text(api, "vols", container="main") == "secret-asub\n[x]\ny=1\nread-only\n"
        shared, mem = log_text(api, "vols", container="reader").splitlines()
        assert shared == "from-writer"
        assert mem.split()[0] == "tmpfs"
        assert mem.split()[1] == str(8 * 1024)
        assert len(k8s_emulator.volumes()) == 2  # the two emptyDirs, until the pod is deleted
    finally:
        delete_and_wait(api, "vols")
        api.delete_namespaced_secret("files", NS)
        api.delete_namespaced_config_map("conf", NS)
    k8s_emulator.wait_for(lambda: not k8s_emulator.volumes(), timeout=120, what="emptyDir volumes removed")


def test_namespaces_persistent_volumes_and_claims(
    k8s_emulator: KubeEmulator, k8s_core_api: client.CoreV1Api, tmp_path: Path
) -> None:
    api = k8s_core_api
    host_dir = tmp_path / "pv"
    host_dir.mkdir()
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team-a")))
    try:
        assert {"default", "team-a"} <= {n.metadata.name for n in api.list_namespace().items}
        assert api.read_namespace("team-a").status.phase == "Active"
        api.create_persistent_volume(
            {
                "metadata": {"name": "host-pv"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual",
                    "hostPath": {"path": str(host_dir)},
                },
            }
        )
        claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}
        api.create_namespaced_persistent_volume_claim(
            "team-a", {"metadata": {"name": "static"}, "spec": {**claim, "storageClassName": "manual"}}
        )
        api.create_namespaced_persistent_volume_claim(
            "team-a", {"metadata": {"name": "dynamic"}, "spec": claim}
        )
        static = api.read_namespaced_persistent_volume_claim("static", "team-a")
        assert (static.status.phase, static.spec.volume_name) == ("Bound", "host-pv")
        dynamic = api.read_namespaced_persistent_volume_claim("dynamic", "team-a")
        assert dynamic.status.phase == "Bound"
        assert dynamic.spec.storage_class_name == "standard"
        assert api.read_persistent_volume("host-pv").status.phase == "Bound"

        volumes = [
            {"name": "s", "persistentVolumeClaim": {"claimName": "static"}},
            {"name": "d", "persistentVolumeClaim": {"claimName": "dynamic"}},
        ]
        mounts = [{"name": "s", "mountPath": "/s"}, {"name": "d", "mountPath": "/d"}]
        writer = pod_body(
            "writer",
            ["sh", "-c", "echo kept > /d/data; echo host > /s/file"],
            volumes=volumes,
            volumeMounts=mounts,
        )
        api.create_namespaced_pod("team-a", writer)
        assert (
            wait_pod(api, "writer", phase_in("Succeeded", "Failed"), namespace="team-a").status.phase
            == "Succeeded"
        )
        delete_and_wait(api, "writer", namespace="team-a")
        assert (host_dir / "file").read_text() == "host\n"
        reader = pod_body("reader", ["cat", "/d/data"], volumes=volumes, volumeMounts=mounts)
        api.create_namespaced_pod("team-a", reader)
        wait_pod(api, "reader", phase_in("Succeeded", "Failed"), namespace="team-a")
        assert log_text(api, "reader", namespace="team-a") == "kept\n"
        delete_and_wait(api, "reader", namespace="team-a")

        api.delete_namespaced_persistent_volume_claim("static", "team-a")
        assert api.read_persistent_volume("host-pv").status.phase == "Released"  # Retain: the data stays
        api.delete_persistent_volume("host-pv")
        assert k8s_emulator.volumes(), "the dynamic claim's Docker volume exists until the claim is deleted"
    finally:
        api.delete_namespace("team-a")
        k8s_emulator.wait_for(
            lambda: "team-a" not in {n.metadata.name for n in api.list_namespace().items},
            timeout=60,
            what="namespace team-a deleted",
        )
    assert api.list_persistent_volume().items == []  # the provisioned volume went with its claim
    assert k8s_emulator.volumes() == []
    assert (host_dir / "file").exists()


def test_bearer_token_is_required(k8s_emulator: KubeEmulator, k8s_kubeconfig: Path, tmp_path: Path) -> None:
    wrong = k8s_emulator.write_kubeconfig(tmp_path / "wrong", token="not-the-token")
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(config.new_client_from_config(str(wrong))).list_namespaced_pod(NS)
    assert err.value.status == 401
    assert api_error(err) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    anonymous = client.Configuration(host=k8s_emulator.url)
    with pytest.raises(ApiException) as err:
        client.VersionApi(client.ApiClient(anonymous)).get_code()
    assert err.value.status == 401
    good = config.new_client_from_config(str(k8s_kubeconfig))
    assert client.VersionApi(good).get_code().major == "1"
    assert [r.status for r in k8s_emulator.requests] == [401, 401, 200]


def test_airflow_kubernetes_hook_loads_the_kube_config(
    k8s_core_api: client.CoreV1Api, k8s_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    extra = {"kube_config_path": str(k8s_kubeconfig), "namespace": NS}
    monkeypatch.setenv("AIRFLOW_CONN_K8S_EMULATOR", json.dumps({"conn_type": "kubernetes", "extra": extra}))
    hook = KubernetesHook(conn_id="k8s_emulator")
    assert hook.get_namespace() == NS
    k8s_core_api.create_namespaced_pod(NS, pod_body("hooked", ["echo", "via-hook"]))
    try:
        assert [p.metadata.name for p in hook.core_v1_client.list_namespaced_pod(NS).items] == ["hooked"]
        assert wait_pod(k8s_core_api, "hooked", phase_in("Succeeded", "Failed")).status.phase == "Succeeded"
        assert hook.get_pod("hooked", NS).status.phase == "Succeeded"
    finally:
        delete_and_wait(k8s_core_api, "hooked")
