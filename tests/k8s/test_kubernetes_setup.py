"""Selecting and configuring the Kubernetes executor: it is used when its connections exist and the task
has an image, skipped (Docker, then local) only when they are absent, and a wrong setup is an error
that never falls back. The task's kubernetes.Pod reaches the pod spec; PersistentVolume(Claim)s are
created before the pod and deleted after it. Against the Kubernetes API emulator and moto's S3."""

from __future__ import annotations

import json

import pytest

from tests.k8s.conftest import TEST_IMAGE
from tests.k8s.kube_world import kube_world_fixture, make_dag, moto_endpoint  # noqa: F401 - fixtures

pytestmark = pytest.mark.k8s


def select(docker=None, kubernetes=None, executor=None):
    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook

    settings = TaskSettings(task_label="dag.task", docker=docker, kubernetes=kubernetes)
    return CommandExecutorHook(settings=settings, executor=executor).get_backend()


def set_conn(monkeypatch, conn_id: str, value: dict | None) -> None:
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, json.dumps(value))


# -- selection -------------------------------------------------------------------------------------
def test_selected_when_configured_with_the_chain_and_the_reason(kube_world, capsys):
    backend = select(docker={"image": TEST_IMAGE})
    assert backend.name == "kubernetes"
    assert backend.namespace == "default"  # from the kube config's context
    assert (
        "runs on the kubernetes executor (executor type 'kubernetes'; first in chain)"
        in capsys.readouterr().out
    )
    assert select(kubernetes={"Pod": {"image": TEST_IMAGE}}).config.image == TEST_IMAGE  # the pod's own image


@pytest.mark.parametrize(
    ("absent", "params", "expected", "why"),
    [
        (
            "CMDEXEC_KUBERNETES_DEFAULT",
            {"docker": {"image": TEST_IMAGE}},
            "docker",
            "no Kubernetes cluster connection 'cmdexec_kubernetes_default'",
        ),
        (
            "CMDEXEC_STORAGE_DEFAULT",
            {"docker": {"image": TEST_IMAGE}},
            "docker",
            "no temporal storage connection 'cmdexec_storage_default'",
        ),
        (
            None,
            {"kubernetes": {"Pod": {"nodeSelector": {"disk": "ssd"}}}},
            "local",
            "the task has no docker.image (nor kubernetes.Pod.image)",
        ),
    ],
    ids=["no-cluster-connection", "no-storage-connection", "no-image"],
)
def test_falls_back_only_when_configuration_is_absent(
    kube_world, monkeypatch, capsys, absent, params, expected, why
):
    if absent:
        monkeypatch.delenv(f"AIRFLOW_CONN_{absent}")
    backend = select(**params)
    assert backend.name == expected
    assert f"skipped kubernetes: {why}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"kube_config_path": "/nonexistent/kubeconfig"},
            "cannot load the cluster access from kube_config_path",
        ),
        ({"kube_config": "clusters: [unclosed"}, "extra 'kube_config' is not JSON or YAML"),
        ({"kube_config": "just text"}, "extra 'kube_config' must be a kube config"),
        (
            {"kube_config": "{}", "in_cluster": True},
            "extras 'in_cluster' and 'kube_config' exclude each other",
        ),
        (
            {"kube_config_path": "KUBECONFIG", "cluster_context": "no-such-context"},
            "cannot load the cluster access",
        ),
        ({"kube_config_path": "KUBECONFIG", "cmdexec_default_pod_ttl": "soon"}, "must be a duration"),
        (
            {"kube_config_path": "KUBECONFIG", "cmdexec_storage_in_conn_id": "no_such_storage"},
            "the temporal storage connection 'no_such_storage' (extra 'cmdexec_storage_in_conn_id'",
        ),
    ],
)
def test_a_wrong_setup_is_an_error_never_a_fallback(kube_world, monkeypatch, extra, message):
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    extra = {k: str(kube_world.kubeconfig) if v == "KUBECONFIG" else v for k, v in extra.items()}
    set_conn(monkeypatch, "cmdexec_kubernetes_default", {"conn_type": "kubernetes", "extra": extra})
    with pytest.raises(CmdExecConfigError) as info:
        select(docker={"image": TEST_IMAGE})
    assert message in str(info.value)
    assert "Task dag.task: " in str(info.value)
    assert kube_world.emulator.pods_created == 0


def test_kube_config_content_works_like_a_path_and_its_token_is_masked(kube_world, monkeypatch):
    from airflow.sdk._shared.secrets_masker import redact

    content = kube_world.kubeconfig.read_text()
    set_conn(
        monkeypatch,
        "cmdexec_kubernetes_default",
        {"conn_type": "kubernetes", "extra": {"kube_config": content}},
    )
    backend = select(docker={"image": TEST_IMAGE})
    assert backend.api.list_namespaced_pod("default").items == []  # the client reaches the cluster
    assert kube_world.emulator.token not in str(redact(f"token {kube_world.emulator.token}"))


def test_a_task_that_names_its_cluster_never_falls_back(kube_world, monkeypatch):
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    with pytest.raises(CmdExecConfigError, match="the Kubernetes connection 'other' does not exist"):
        select(docker={"image": TEST_IMAGE}, kubernetes={"conn_id": "other"})
    with pytest.raises(CmdExecConfigError, match=r"set docker.image \(or kubernetes.Pod.image\)"):
        select(kubernetes={"namespace": "default"})
    monkeypatch.delenv("AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT")
    with pytest.raises(CmdExecConfigError, match="temporal storage connection 'cmdexec_storage_default'"):
        select(docker={"image": TEST_IMAGE}, kubernetes={"namespace": "default"})


@pytest.mark.parametrize(
    ("kubernetes", "message"),
    [
        (
            {"pod": {}},
            "unknown keys ['pod']; use conn_id, namespace, Pod, PersistentVolume, PersistentVolumeClaim",
        ),
        ({"Pod": {"nodeSelectr": {}}}, "unknown key kubernetes.Pod.nodeSelectr"),
        ({"Pod": {"containers": []}}, "kubernetes.Pod.containers cannot be set"),
        ({"Pod": {"restartPolicy": "Always"}}, "kubernetes.Pod.restartPolicy cannot be set"),
        (
            {"Pod": {"metadata": {"name": "x"}}},
            "kubernetes.Pod.metadata may hold labels and annotations only",
        ),
        ({"Pod": []}, "kubernetes.Pod must be a dict"),
        ({"PersistentVolumeClaim": {"spec": {}}}, "kubernetes.PersistentVolumeClaim needs metadata.name"),
        ({"PersistentVolume": {"metadata": {"name": "v"}}}, "kubernetes.PersistentVolume needs a spec"),
    ],
)
def test_bad_task_params_are_errors(kube_world, kubernetes, message):
    from airflow_cmdexec_provider.exceptions import CmdExecConfigError

    with pytest.raises(CmdExecConfigError) as info:
        select(docker={"image": TEST_IMAGE}, kubernetes=kubernetes)
    assert message in str(info.value)


# -- the pod ---------------------------------------------------------------------------------------
def test_pod_overrides_reach_the_pod_spec(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    pod = {
        "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}, "requests": {"cpu": "100m"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}],
        "serviceAccountName": "default",
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "env": [{"name": "EXTRA", "value": "from Pod.env"}],
        "metadata": {"labels": {"team": "data"}, "annotations": {"owner": "me"}},
    }
    with make_dag(
        "k8s_pod_overrides", kube_world.project, kubernetes={"Pod": pod, "namespace": "default"}
    ) as dag:
        ShOperator(task_id="spec", command='echo mounted > /scratch/f && cat /scratch/f; echo "extra=$EXTRA"')
    result = run_dag(dag)

    assert result.state == "success", result.error_text("spec")
    assert "mounted" in result.log("spec")
    assert "extra=from Pod.env" in result.log("spec")
    [body] = kube_world.pods_created()
    spec, meta = body["spec"], body["metadata"]
    [container] = spec["containers"]
    assert container["resources"] == pod["resources"]
    assert container["volumeMounts"] == pod["volumeMounts"]
    assert container["env"][-1] == {"name": "EXTRA", "value": "from Pod.env"}  # after ours
    for key in ("nodeSelector", "tolerations", "serviceAccountName", "volumes"):
        assert spec[key] == pod[key]
    assert meta["labels"]["team"] == "data"
    assert meta["annotations"]["owner"] == "me"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "airflow-cmdexec"


def test_pod_body_merges_affinity_and_escapes_dollars(kube_world, tmp_path):
    """The emulator refuses affinity (one node): the body itself is checked here."""
    from airflow_cmdexec_provider.backends.base import CommandRequest
    from airflow_cmdexec_provider.backends.kubernetes import merged, pod_labels, pod_name

    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    backend = select(
        docker={"image": TEST_IMAGE},
        kubernetes={"Pod": {"affinity": affinity, "env": [{"name": "B", "value": "2"}]}},
    )
    labels = {
        "dag_id": "d" * 80,
        "task_id": "Task.With_Odd:chars",
        "run_id": "manual__2026-01-01T00:00:00+00:00",
        "map_index": "-1",
        "try_number": "3",
    }
    request = CommandRequest(
        task_label="d.t",
        project_dir=kube_world.project,
        workdir="",
        io_dir=tmp_path,
        command=("echo", "$(A)", "$$"),
        labels=labels,
    )
    handle = {"pod": pod_name(labels), "namespace": "default", "end_marker": "--end--", "deadline": None}
    body = backend.pod_body(request, handle, {"A": "$(B) costs $5"})

    assert body["spec"]["affinity"] == affinity
    container = body["spec"]["containers"][0]
    assert container["env"] == [{"name": "A", "value": "$$(B) costs $$5"}, {"name": "B", "value": "2"}]
    assert "'$$(A)' '$$$$'" in container["command"][2]  # Kubernetes turns $$ back into $
    assert "activeDeadlineSeconds" not in body["spec"]
    name = body["metadata"]["name"]
    assert len(name) <= 63
    assert name.startswith("cmdexec-ddd")
    assert name[-1].isalnum()
    assert name == pod_name(labels) != pod_name({**labels, "try_number": "4"})
    assert body["metadata"]["annotations"]["io.github.cmdexec/run_id"] == labels["run_id"]
    assert pod_labels(labels)["io.github.cmdexec/task-id"] == "Task.With_Odd-chars"
    assert merged({"a": {"b": 1}, "l": [1]}, {"a": {"c": 2}, "l": [2], "x": 3}) == {
        "a": {"b": 1, "c": 2},
        "l": [1, 2],
        "x": 3,
    }


def test_default_pod_ttl_sets_the_deadline_and_fails_the_task_with_the_reason(
    kube_world, monkeypatch, run_dag
):
    from airflow_cmdexec_provider.operators import ShOperator

    for key, value in kube_world.connections(cmdexec_default_pod_ttl="3s").items():
        monkeypatch.setenv(key, value)
    with make_dag("k8s_ttl", kube_world.project) as dag:
        ShOperator(task_id="long", command="echo long; sleep 120")
    result = run_dag(dag)

    assert result.task_states["long"] == "failed"
    error = result.error_text("long")
    assert "DeadlineExceeded" in error
    assert "3 s (default_pod_ttl of the Kubernetes connection)" in error
    [body] = kube_world.pods_created()
    assert body["spec"]["activeDeadlineSeconds"] == 3
    assert kube_world.emulator.pods() == []


# -- PersistentVolume / PersistentVolumeClaim ------------------------------------------------------
def test_volume_and_claim_are_created_before_the_pod_and_deleted_after_it(kube_world, run_dag, tmp_path):
    from airflow_cmdexec_provider.operators import ShOperator

    host_dir = tmp_path / "pv"
    host_dir.mkdir()
    host_dir.chmod(0o777)
    kubernetes = {
        "PersistentVolume": {
            "metadata": {"name": "cmdexec-test-pv"},
            "spec": {
                "capacity": {"storage": "1Mi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "hostPath": {"path": str(host_dir)},
            },
        },
        "PersistentVolumeClaim": {
            "metadata": {"name": "cmdexec-test-claim"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "volumeName": "cmdexec-test-pv",
                "resources": {"requests": {"storage": "1Mi"}},
            },
        },
        "Pod": {
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "cmdexec-test-claim"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
    }
    with make_dag("k8s_volumes", kube_world.project, kubernetes=kubernetes) as dag:
        ShOperator(task_id="write", command="echo kept > /data/out.txt")
    result = run_dag(dag)

    assert result.state == "success", result.error_text("write")
    assert (host_dir / "out.txt").read_text() == "kept\n"  # the claim was bound and mounted
    log = result.log("write")
    assert log.index("Created PersistentVolume cmdexec-test-pv") < log.index("Created PersistentVolumeClaim")
    assert log.index("Created PersistentVolumeClaim cmdexec-test-claim") < log.index("Created pod")
    assert log.index("Deleted pod") < log.index("Deleted PersistentVolumeClaim cmdexec-test-claim")
    assert "Deleted PersistentVolume cmdexec-test-pv" in log
    posted = [r.path.rsplit("/", 1)[-1] for r in kube_world.emulator.requests if r.method == "POST"]
    assert posted == ["persistentvolumes", "persistentvolumeclaims", "pods"]
    kube_world.emulator.wait_for(
        lambda: not kube_world.emulator.objects("persistentvolumes"), timeout=120, what="the volume deleted"
    )
    assert kube_world.emulator.objects("persistentvolumeclaims") == []


def test_a_claim_that_exists_and_is_not_ours_is_an_error_and_kept(kube_world, run_dag, k8s_core_api):
    from airflow_cmdexec_provider.operators import ShOperator

    claim = {
        "metadata": {"name": "someone-elses"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    k8s_core_api.create_namespaced_persistent_volume_claim("default", claim)
    try:
        with make_dag(
            "k8s_foreign_claim", kube_world.project, kubernetes={"PersistentVolumeClaim": claim}
        ) as dag:
            ShOperator(task_id="t", command="echo never")
        result = run_dag(dag)

        assert result.task_states["t"] == "failed"
        assert (
            "kubernetes.PersistentVolumeClaim 'someone-elses' already exists and was not created"
            in result.error_text("t")
        )
        assert [c["metadata"]["name"] for c in kube_world.emulator.objects("persistentvolumeclaims")] == [
            "someone-elses"
        ]
        assert kube_world.emulator.pods_created == 0
    finally:
        k8s_core_api.delete_namespaced_persistent_volume_claim("someone-elses", "default")


def test_the_core_package_works_without_the_kubernetes_extra():
    """Without the kubernetes client (blocked here; the cncf provider needs it too), everything else
    imports and the kubernetes executor says which extra to install."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['kubernetes'] = None\n"
        "from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator\n"
        "from airflow_cmdexec_provider import cli, config\n"
        "from airflow_cmdexec_provider.backends import registry\n"
        "from airflow_cmdexec_provider.exceptions import CmdExecConfigError\n"
        "assert registry.backend_class('ecs').name == 'ecs'\n"
        "try:\n"
        "    registry.backend_class('kubernetes')\n"
        "except CmdExecConfigError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "the kubernetes executor cannot be loaded" in proc.stdout
    assert "pip install 'airflow-cmdexec-provider[kubernetes]'" in proc.stdout
