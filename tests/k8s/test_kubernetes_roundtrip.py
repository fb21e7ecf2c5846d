"""The Kubernetes executor end to end: real Airflow runs (``dag.test``), the project's Kubernetes API
emulator (pods really run in Docker) reached only through a kube config, and S3 on moto as the
temporal storage. Nothing here is mocked."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest

from tests.k8s.conftest import TEST_IMAGE
from tests.k8s.kube_world import kube_world_fixture, make_dag, moto_endpoint  # noqa: F401 - fixtures

pytestmark = pytest.mark.k8s


def test_sh_py_rb_sh_round_trip_runs_in_pods(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

    with make_dag("k8s_round_trip", kube_world.project) as dag:
        hello = ShOperator(
            task_id="hello",
            command='echo "sh> $greeting in pod: $(test -f /.dockerenv && echo yes)"; '
            "ls -A; echo \"pid=$$\"; echo 'literal=$(greeting)'",
        )
        step1 = PyOperator(task_id="step1", method="tasks.wf.step1")
        step2 = RbOperator(task_id="step2", method="Wf.step2", require="tasks/wf")
        report = ShOperator(
            task_id="report", command='echo "report: numbers=$numbers note=$note total=$total"'
        )
        hello >> step1 >> step2 >> report
    result = run_dag(dag)

    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    assert "runs on the kubernetes executor" in result.log("hello")
    assert "sh> hello k8s in pod: yes" in result.log("hello")
    assert ".secret" not in result.log("hello")  # dot-paths are not shipped
    # Kubernetes' $(VAR) expansion did not touch the command: bash saw $$ and $(HOME) as written.
    assert re.search(r"^pid=\d+$", result.log("hello"), re.MULTILINE)
    assert "literal=$(greeting)" in result.log("hello")
    assert "py> in pod: True hello k8s" in result.log("step1")
    assert "rb> sum=6 note=HELLO K8S" in result.log("step2")
    assert "report: numbers=[1,2,3] note=HELLO K8S total=6" in result.log("report")
    assert result.xcom("report") == {"numbers": [1, 2, 3], "note": "HELLO K8S", "total": 6}
    assert "" not in result.log_lines("report")  # the line break the script prints before its end marker
    for task_id in ("hello", "step1", "step2", "report"):  # each line once: no duplicates from re-reads
        lines = [
            line for line in result.log_lines(task_id) if line.startswith(("sh>", "py>", "rb>", "report:"))
        ]
        assert len(lines) == len(set(lines)) == 1, lines
    pods = kube_world.pods_created()
    assert len(pods) == 4
    assert kube_world.emulator.pods_created == 4
    for pod in pods:
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never"
        [container] = spec["containers"]
        assert container["image"] == TEST_IMAGE
        assert "X-Amz-Signature" not in json.dumps(container["command"])  # URLs never on a command line
        assert any("X-Amz-Signature" in e["value"] for e in container["env"])
        name = pod["metadata"]["name"]
        assert len(name) <= 63
        assert name.startswith("cmdexec-")
        assert pod["metadata"]["labels"]["io.github.cmdexec/try-number"] == "1"
    assert len({p["metadata"]["name"] for p in pods}) == 4
    assert not any("X-Amz-Signature" in record.message for record in result.records)  # URLs never logged
    assert kube_world.emulator.pods() == []  # every pod deleted


def test_failing_python_command_reports_the_exception(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator

    with make_dag("k8s_failing", kube_world.project) as dag:
        PyOperator(task_id="fail", method="tasks.wf.fail")
    result = run_dag(dag)

    assert result.task_states["fail"] == "failed"
    error = result.error_text("fail")
    assert "Python command failed with code 1" in error
    assert "Error messages from python: bad value from the pod (ValueError)" in error
    assert "wf.py" in error  # the user's backtrace came back through the output archive


def test_exit_code_of_a_shell_command_fails_the_task(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("k8s_exit", kube_world.project) as dag:
        ShOperator(task_id="exit7", command="echo before; exit 7")
    result = run_dag(dag)

    assert result.task_states["exit7"] == "failed"
    assert "command failed with code 7" in result.error_text("exit7")
    assert "before" in result.log("exit7")
    assert kube_world.emulator.pods() == []


def test_oom_killed_fails_with_the_reason(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator

    pod = {"resources": {"limits": {"memory": "300Mi"}, "requests": {"memory": "64Mi"}}}
    with make_dag("k8s_oom", kube_world.project, kubernetes={"Pod": pod}) as dag:
        PyOperator(task_id="oom", method="tasks.wf.eat_memory")
    result = run_dag(dag)

    assert result.task_states["oom"] == "failed"
    assert "OOMKilled" in result.error_text("oom")
    assert "allocating" in result.log("oom")
    [body] = kube_world.pods_created()
    assert body["spec"]["containers"][0]["resources"]["limits"] == {"memory": "300Mi"}


def test_image_that_cannot_be_pulled_fails_fast(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("k8s_no_image", kube_world.project, docker={"image": "cmdexec-no-such-image:never"}) as dag:
        ShOperator(task_id="nope", command="echo never runs", execution_timeout=timedelta(minutes=10))
    result = run_dag(dag)

    assert result.task_states["nope"] == "failed"
    error = result.error_text("nope")
    assert "ErrImagePull" in error or "ImagePullBackOff" in error
    assert "never runs" not in result.log("nope")
    assert kube_world.emulator.containers_started == 0
    assert kube_world.emulator.pods() == []


def test_execution_timeout_deletes_the_pod(kube_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("k8s_timeout", kube_world.project) as dag:
        ShOperator(task_id="slow", command="echo started; sleep 300", execution_timeout=timedelta(seconds=15))
    result = run_dag(dag)

    assert result.task_states["slow"] == "failed"
    assert "started" in result.log("slow")
    [body] = kube_world.pods_created()
    assert body["spec"]["activeDeadlineSeconds"] == 15 + 60  # the pod's own net, should the worker die
    kube_world.emulator.wait_deletions(timeout=60)
    assert kube_world.emulator.pods() == []
    assert kube_world.emulator.running_containers() == []


def test_log_is_streamed_without_gaps_or_duplicates(kube_world, run_dag):
    """Lines every 0.1 s, read every second from the last second shown (sinceTime has whole seconds):
    every line once, in order."""
    from airflow_cmdexec_provider.operators import ShOperator

    command = 'for i in $(seq 1 40); do echo "line-$i"; sleep 0.1; done; echo; printf "no newline at the end"'
    with make_dag("k8s_log_stream", kube_world.project) as dag:
        ShOperator(task_id="chatty", command=command)
    result = run_dag(dag)

    assert result.state == "success", result.error_text("chatty")
    lines = result.log_lines("chatty")
    printed = [line for line in lines if line.startswith("line-")]
    assert printed == [f"line-{i}" for i in range(1, 41)]
    end = lines.index("no newline at the end")
    assert lines[end - 1] == ""  # the command's own empty line is kept ...
    deleted = next(i for i, line in enumerate(lines) if line.startswith("Deleted pod"))
    assert "" not in lines[end:deleted]  # ... and the script's line break before its marker is not shown
