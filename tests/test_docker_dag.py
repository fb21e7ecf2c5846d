"""ShOperator, PyOperator and RbOperator on Docker in real DAG runs (``dag.test()`` via ``run_dag``).

What these prove, with the real Docker Engine:
- the same DAG (sh -> py store -> rb read/store -> sh print) gives the same XComs on the local
  executor and on Docker through both transports (Engine API, docker CLI), and the commands really
  ran in containers (PID 1 of their own namespace), on a copy of the project;
- a container cannot change the DAG folder (the default project), and sibling tasks whose ids share
  a long prefix get containers of their own (reviews H6, H1);
- the automatic selection: docker.image and no ECS -> Docker, no docker params -> local, each task
  logging one line with the executor and why; ``docker: {}`` is a config error;
- execution_timeout, on_kill (SIGTERM to the task) and failures leave no container behind;
- an unreachable daemon, a missing image/CLI/interpreter are clear errors, never a local run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import airflow.sdk  # noqa: F401  # first: importing the provider's config before airflow is a circular import
import pytest
from airflow.sdk import DAG
from docker_helpers import (
    DAG_PREFIX,
    IMAGE,
    LABEL_PREFIX,
    docker,
    leftovers_checked,
    managed_containers,
    wait_for,
)

from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

LOGICAL_DATE = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ECS_CONNS = ("cmdexec_ecs_default", "cmdexec_storage_default")
EXECUTOR_VARIABLE = "cmdexec_executor_type"


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    yield from leftovers_checked()


@pytest.fixture
def no_ecs(airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Automatic selection with no ECS cluster and no executor type: ECS is skipped, Docker is next.

    Removes (and afterwards restores) an ECS connection or executor-type Variable that another test
    may have left in the session's metadata DB or environment.
    """
    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session

    for conn_id in ECS_CONNS:
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    monkeypatch.delenv(f"AIRFLOW_VAR_{EXECUTOR_VARIABLE.upper()}", raising=False)
    saved_conns, saved_var = [], None
    with create_session() as session:
        for conn in session.query(Connection).filter(Connection.conn_id.in_(ECS_CONNS)):
            saved_conns.append(
                Connection(
                    conn_id=conn.conn_id,
                    conn_type=conn.conn_type,
                    uri=None,
                    host=conn.host,
                    login=conn.login,
                    password=conn.password,
                    port=conn.port,
                    extra=conn.extra,
                    schema=conn.schema,
                )
            )
            session.delete(conn)
        var = session.query(Variable).filter(Variable.key == EXECUTOR_VARIABLE).one_or_none()
        if var is not None:
            saved_var = var.val
            session.delete(var)
    yield
    with create_session() as session:
        for conn in saved_conns:
            session.add(conn)
        if saved_var is not None:
            session.add(Variable(key=EXECUTOR_VARIABLE, val=saved_var))


# -- the example project of this test: py> and rb> store, sh> reads ------------------------------------------
PY_TASKS = """\
import os

import digdag


class Flow(object):
    def compute(self, greeting, count, session_date, multi):
        print("py> pid=%d" % os.getpid())
        numbers = list(range(1, int(count) + 1))
        digdag.env.store({
            "numbers": numbers,
            "total": sum(numbers),
            "ratio": sum(numbers) / 8.0,
            "nested": {"a": {"b": [1, "two", None, True]}},
            "text": u"h\\u00e9llo \\u2713\\nsecond line\\t\\"quoted\\"",
            "greeting_seen": greeting,
            "session_date_seen": session_date,
            "multi_seen": multi,
            "empty": "",
            "flag": False,
        })
        with open("from_py.txt", "w") as f:
            f.write("written by py> in %s\\n" % os.getcwd())

    def fail(self):
        raise ValueError("py> failed on purpose")
"""

RB_TASKS = """\
class Flow
  def self.enrich(total, text, nested, numbers)
    puts "rb> pid=#{Process.pid}"
    Digdag.env.store(doubled: total * 2, shout: text.upcase, count_seen: numbers.length,
                     nested: {"a" => {"c" => "from ruby"}}, big: 2**40, half: 0.5)
  end

  def self.fail
    raise ArgumentError, "rb> failed on purpose"
  end
end
"""

REPORT_SH = """\
#!/bin/sh
set -eu
echo "report parent=$PPID"  # run by the runner shell, which is PID 1 in Docker
echo "total=${total} doubled=${doubled} shout=${shout}"
echo "nested=${nested}"
printf 'multi=[%s]\\n' "$multi"
"""


def make_project(root: Path) -> Path:
    (root / "tasks").mkdir(parents=True)
    (root / "tasks" / "__init__.py").write_text("")
    (root / "tasks" / "flow.py").write_text(PY_TASKS)
    (root / "tasks" / "flow.rb").write_text(RB_TASKS)
    report = root / "tasks" / "report.sh"
    report.write_text(REPORT_SH)
    report.chmod(0o755)
    return root.resolve()


def chain_dag(dag_id: str, project: Path, docker_params: dict | None) -> DAG:
    """sh -> py (store) -> rb (read, store) -> sh (print). ``docker_params`` None: no Docker at all."""
    default_args = {"project_dir": str(project), "retries": 0}
    if docker_params is not None:
        default_args["docker"] = docker_params
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        params={"greeting": "hello", "count": 4, "multi": "line one\nline two\n  three  "},
        default_args=default_args,
    ) as dag:
        prepare = ShOperator(task_id="prepare", command='echo "prepare pid=$$ greeting=${greeting}"')
        compute = PyOperator(task_id="compute", method="tasks.flow.Flow.compute")
        enrich = RbOperator(task_id="enrich", method="Flow.enrich", require="tasks/flow")
        report = ShOperator(task_id="report", command="tasks/report.sh")
        prepare >> compute >> enrich >> report
    return dag


TASKS = ("prepare", "compute", "enrich", "report")


def selection_lines(result, task_id: str) -> list[str]:
    return [line for line in result.log_lines(task_id) if re.search(r"runs on the \w+ executor", line)]


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_same_dag_same_xcoms_on_local_and_docker(run_dag, tmp_path: Path) -> None:
    local_project = make_project(tmp_path / "local")
    docker_project = make_project(tmp_path / "docker")
    local = run_dag(chain_dag(f"{DAG_PREFIX}_chain_local", local_project, None), logical_date=LOGICAL_DATE)
    in_docker = run_dag(
        chain_dag(f"{DAG_PREFIX}_chain_docker", docker_project, {"image": IMAGE}), logical_date=LOGICAL_DATE
    )
    # The same DAG through the docker CLI (Digdag's docker.docker set).
    via_cli = run_dag(
        chain_dag(f"{DAG_PREFIX}_chain_cli", docker_project, {"image": IMAGE, "docker": "docker"}),
        logical_date=LOGICAL_DATE,
    )
    assert local.state == "success", local.errors
    assert in_docker.state == "success", {t: in_docker.log(t) for t in TASKS}
    assert via_cli.state == "success", {t: via_cli.log(t) for t in TASKS}

    # The same XComs, value for value (nothing environment-dependent is stored).
    for task_id in TASKS:
        assert in_docker.xcom(task_id) == local.xcom(task_id), task_id
        assert via_cli.xcom(task_id) == local.xcom(task_id), task_id
    for result, how in ((in_docker, "the Docker Engine API"), (via_cli, "the docker CLI")):
        for task_id in TASKS:
            assert any(f"runs in Docker through {how}" in line for line in result.log_lines(task_id)), task_id
    stored = in_docker.xcom("report")
    assert stored == {
        "numbers": [1, 2, 3, 4],
        "total": 10,
        "ratio": 1.25,
        "nested": {"a": {"b": [1, "two", None, True], "c": "from ruby"}},
        "text": 'h\u00e9llo \u2713\nsecond line\t"quoted"',
        "greeting_seen": "hello",
        "session_date_seen": "2026-03-04",
        "multi_seen": "line one\nline two\n  three  ",
        "empty": "",
        "flag": False,
        "doubled": 20,
        "shout": 'H\u00c9LLO \u2713\nSECOND LINE\t"QUOTED"',
        "count_seen": 4,
        "big": 2**40,
        "half": 0.5,
    }
    # A file the command writes into the project stays there locally; in Docker it goes with the
    # container (the container works on a copy of the project).
    assert (local_project / "from_py.txt").read_text() == f"written by py> in {local_project}\n"
    assert not (docker_project / "from_py.txt").exists()
    assert "from_py.txt" not in {p.name for p in docker_project.rglob("*")}

    # Where each command ran: PID 1 of its own PID namespace in Docker (report.sh: its parent, the
    # runner shell), an ordinary process locally.
    expect = {
        "prepare": "prepare pid=",
        "compute": "py> pid=",
        "enrich": "rb> pid=",
        "report": "report parent=",
    }
    for task_id, prefix in expect.items():
        docker_pids = [
            line[len(prefix) :].split()[0] for line in in_docker.log_lines(task_id) if line.startswith(prefix)
        ]
        local_pids = [
            line[len(prefix) :].split()[0] for line in local.log_lines(task_id) if line.startswith(prefix)
        ]
        assert docker_pids == ["1"], (task_id, in_docker.log(task_id))
        assert len(local_pids) == 1, (task_id, local.log(task_id))
        assert local_pids[0] != "1", (task_id, local.log(task_id))
    # sh> got the params and stores as environment variables, a multi-line one intact.
    for result in (local, in_docker):
        report = result.log_lines("report")
        assert "total=10 doubled=20 shout=H\u00c9LLO \u2713" in report
        assert "multi=[line one" in report
        assert "line two" in report
        assert "  three  ]" in report

    # Selection: one line per task saying which executor and why.
    for task_id in TASKS:
        (line,) = selection_lines(in_docker, task_id)
        assert "runs on the docker executor" in line
        assert "skipped ecs: no ECS cluster connection" in line
        (line,) = selection_lines(local, task_id)
        assert "runs on the local executor (it has no docker, ecs or kubernetes params)" in line


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_example_dag_on_docker_matches_the_local_example(run_dag) -> None:
    """example_dags/cmdexec_example_docker.py: the example project in containers, same XComs."""
    import importlib.util

    root = Path(__file__).resolve().parent.parent / "example_dags"
    dags = {}
    for name in ("cmdexec_example", "cmdexec_example_docker"):
        spec = importlib.util.spec_from_file_location(f"_dockertest_{name}", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dags[name] = module.dag
    assert dags["cmdexec_example_docker"].default_args["docker"]["image"] == IMAGE
    local = run_dag(dags["cmdexec_example"], logical_date=LOGICAL_DATE)
    in_docker = run_dag(dags["cmdexec_example_docker"], logical_date=LOGICAL_DATE)
    assert local.state == "success", local.errors
    assert in_docker.state == "success", in_docker.errors
    for task_id in ("prepare", "compute", "enrich", "report", "summary"):
        assert in_docker.xcom(task_id) == local.xcom(task_id), task_id
    assert in_docker.xcom("report")["doubled"] == 12
    for task_id in ("prepare", "compute", "enrich", "report"):
        (line,) = selection_lines(in_docker, task_id)
        assert "runs on the docker executor" in line


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_failures_are_reported_and_leave_no_container(run_dag, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    with DAG(
        dag_id=f"{DAG_PREFIX}_failures",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"project_dir": str(project), "retries": 0, "docker": {"image": IMAGE}},
    ) as dag:
        ShOperator(task_id="sh_exit", command="echo about to fail\nexit 3")
        PyOperator(task_id="py_raise", method="tasks.flow.Flow.fail")
        RbOperator(task_id="rb_raise", method="Flow.fail", require="tasks/flow")
        ShOperator(
            task_id="oom",
            command="exec python3 -c 'b = bytearray(512 * 1024 * 1024)'",
            docker={"image": IMAGE, "run_options": ["-m", "64m", "--memory-swap", "64m"]},
        )
    result = run_dag(dag)
    assert result.state == "failed"
    assert set(result.task_states.values()) == {"failed"}, result.task_states
    assert "command failed with code 3" in result.error_text("sh_exit")
    assert "about to fail" in result.log_lines("sh_exit")
    assert "Error messages from python: py> failed on purpose (ValueError)" in result.error_text("py_raise")
    assert "Ruby command failed with code 1: rb> failed on purpose (ArgumentError)" in result.error_text(
        "rb_raise"
    )
    assert "code 137" in result.error_text("oom")
    assert "OOMKilled" in result.error_text("oom")


def _marker_dag(dag_id: str, project: Path, **docker_keys) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"project_dir": str(project), "retries": 0},
    ) as dag:
        ShOperator(task_id="touch", command=f"touch {project}/ran-$(hostname)", docker=docker_keys or None)
    return dag


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_config_and_backend_errors_never_fall_back_to_local(run_dag, tmp_path: Path) -> None:
    """Each task would leave a marker file in the project if its command ran anywhere; none does."""
    project = make_project(tmp_path / "p")
    marker = f"touch {project}/ran-$(hostname)-"
    with DAG(
        dag_id=f"{DAG_PREFIX}_errors",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"project_dir": str(project), "retries": 0},
    ) as dag:
        ShOperator(task_id="empty_docker", command=marker + "empty", docker={})
        ShOperator(
            task_id="missing_image", command=marker + "image", docker={"image": "cmdexec-no-such-image:never"}
        )
        ShOperator(
            task_id="missing_cli",
            command=marker + "cli",
            docker={"image": IMAGE, "docker": "/nonexistent/bin/docker"},
        )
        ShOperator(
            task_id="pull_always", command=marker + "pull", docker={"image": IMAGE, "pull_always": True}
        )
        ShOperator(
            task_id="missing_shell", command=marker + "shell", shell="/bin/zsh9", docker={"image": IMAGE}
        )
        PyOperator(
            task_id="missing_python",
            method="tasks.flow.Flow.compute",
            python="python9",
            docker={"image": IMAGE},
        )
        RbOperator(
            task_id="missing_ruby",
            method="Flow.enrich",
            require="tasks/flow",
            ruby="ruby9",
            docker={"image": IMAGE},
        )
    result = run_dag(dag)
    assert set(result.task_states.values()) == {"failed"}, result.task_states
    assert list(project.glob("ran-*")) == []
    assert not (project / "from_py.txt").exists()
    for task_id in result.task_states:
        assert not any("runs on the local executor" in line for line in result.log_lines(task_id)), task_id

    errors = {task_id: result.error_text(task_id) for task_id in result.task_states}
    assert "docker.image is required but not set" in errors["empty_docker"]
    assert (
        "the image cmdexec-no-such-image:never is not on this Docker host and could not be pulled"
        in errors["missing_image"]
    )
    assert "docker CLI '/nonexistent/bin/docker' was not found (key docker.docker)" in errors["missing_cli"]
    assert f"pulling the image {IMAGE} failed (docker.pull_always)" in errors["pull_always"]
    assert f"shell program '/bin/zsh9' was not found in the image {IMAGE}" in errors["missing_shell"]
    assert f"python program 'python9' was not found in the image {IMAGE}" in errors["missing_python"]
    assert "set python=..." in errors["missing_python"]
    assert f"ruby program 'ruby9' was not found in the image {IMAGE}" in errors["missing_ruby"]


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_unreachable_daemon_fails_without_running_locally(
    run_dag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "p")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    result = run_dag(_marker_dag(f"{DAG_PREFIX}_nodaemon", project, image=IMAGE))
    assert result.task_states == {"touch": "failed"}
    assert "the Docker daemon is not reachable" in result.error_text("touch")
    assert "/nonexistent.sock" in result.error_text("touch")
    assert list(project.glob("ran-*")) == []
    (line,) = selection_lines(result, "touch")
    assert "runs on the docker executor" in line


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_execution_timeout_removes_the_container(run_dag, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    dag_id = f"{DAG_PREFIX}_timeout"
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"project_dir": str(project), "retries": 0, "docker": {"image": IMAGE}},
    ) as dag:
        ShOperator(
            task_id="sleepy",
            command="trap 'echo got TERM; exit 143' TERM\necho started\nsleep 300 &\nwait\ntouch never-here",
            execution_timeout=timedelta(seconds=20),
        )
    # How the container ended: stopped by the timeout (its trap exits 143), not by its command ending
    # 300 s later (the task used to wait for that: closing the log stream waited for its next line).
    deaths = subprocess.Popen(
        [
            "docker",
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=die",
            "--filter",
            f"label=io.github.cmdexec.dag_id={dag_id}",
            "--format",
            '{{index .Actor.Attributes "exitCode"}}',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert deaths.stdout is not None
    exit_codes: list[str] = []
    reader = threading.Thread(
        target=lambda: exit_codes.extend(line.strip() for line in deaths.stdout), daemon=True
    )
    reader.start()
    try:
        result = run_dag(dag)
        # The container is gone once the task failed; its die event reaches the stream soon after.
        wait_for(lambda: exit_codes, 60, "the container's die event")
    finally:
        deaths.terminate()
        deaths.wait(timeout=30)
        reader.join(30)
    assert exit_codes == ["143"]
    assert result.task_states == {"sleepy": "failed"}
    assert type(result.error("sleepy")).__name__ == "AirflowTaskTimeout"
    assert "started" in result.log_lines("sleepy")  # the container ran when the timeout came
    assert managed_containers(dag_id) == []


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_on_kill_stops_and_removes_the_container(run_dag, tmp_path: Path) -> None:
    """SIGTERM to the task (as Airflow's supervisor sends it) -> on_kill -> docker stop, rm."""
    project = make_project(tmp_path / "p")
    dag_id = f"{DAG_PREFIX}_onkill"
    with DAG(
        dag_id=dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"project_dir": str(project), "retries": 0, "docker": {"image": IMAGE}},
    ) as dag:
        ShOperator(
            task_id="sleepy",
            command="trap 'echo got TERM; exit 143' TERM\necho started\nsleep 300 &\nwait\ntouch never-here",
            execution_timeout=timedelta(seconds=90),  # a broken on_kill fails the test, not hangs it
        )
    original = signal.getsignal(signal.SIGTERM)
    sent: list[str] = []

    def killer() -> None:
        try:
            # Deadlines near the task's execution_timeout (90 s): they only end a broken test.
            (name,) = wait_for(lambda: managed_containers(dag_id), 90, "the task's container")
            # Its command printed "started", after it set its TERM trap: the SIGTERM below finds it set.
            wait_for(
                lambda: "started" in docker("logs", name, check=False).stdout.split(),
                90,
                "the container's command to start",
            )
            labels = docker("container", "inspect", "--format", "{{json .Config.Labels}}", name).stdout
            sent.append(labels)
            handler = signal.getsignal(signal.SIGTERM)
            # Only signal ourselves when Airflow's task runner handles SIGTERM (it calls on_kill).
            if getattr(handler, "__name__", "") == "_on_term":
                os.kill(os.getpid(), signal.SIGTERM)
                sent.append("SIGTERM")
        except AssertionError as exc:
            sent.append(f"error: {exc}")

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = run_dag(dag)
    finally:
        thread.join(60)
        signal.signal(signal.SIGTERM, original)
    assert sent, sent
    assert sent[-1] == "SIGTERM", sent
    assert f'"{LABEL_PREFIX}task_id":"sleepy"' in sent[0]
    assert f'"{LABEL_PREFIX}dag_id":"{dag_id}"' in sent[0]
    assert f'"{LABEL_PREFIX}try_number":"1"' in sent[0]
    assert f'"{LABEL_PREFIX}run_id":"{result.run_id}"' in sent[0]
    assert result.task_states == {"sleepy": "failed"}
    # TERM first: the command could clean up.
    assert "got TERM" in result.log_lines("sleepy"), result.error_text("sleepy")
    assert "command failed with code 143" in result.error_text("sleepy")
    assert managed_containers(dag_id) == []
    assert not (project / "never-here").exists()


@pytest.mark.usefixtures("no_ecs")
def test_docker_without_image_is_a_config_error_even_without_docker(run_dag, tmp_path: Path) -> None:
    """docker: {} fails before any Docker call (so this needs no Docker Engine)."""
    project = make_project(tmp_path / "p")
    result = run_dag(_marker_dag(f"{DAG_PREFIX}_noimage", project, run_options=["-m", "1g"]))
    assert result.task_states == {"touch": "failed"}
    assert "docker.image is required but not set" in result.error_text("touch")
    assert list(project.glob("ran-*")) == []


DAG_FILE = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_cmdexec_provider.operators import ShOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1),
         default_args={{"docker": {{"image": {image!r}}}, "retries": 0}}) as dag:
    ShOperator(
        task_id="tamper",
        command="echo hacked >> tamper_dag.py && rm other_dag.py && echo x > planted.py && echo tampered",
    )
"""


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_a_container_cannot_change_the_dag_folder(run_dag, tmp_path: Path) -> None:
    """review H6: the default project is the DAG file's folder; the container gets a copy of it."""
    import importlib.util

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "tamper_dag.py").write_text(DAG_FILE.format(dag_id=f"{DAG_PREFIX}_tamper", image=IMAGE))
    (dags / "other_dag.py").write_text("# another team's DAG\n")
    before = _snapshot(dags)
    spec = importlib.util.spec_from_file_location(f"_{DAG_PREFIX}_tamper_dag", dags / "tamper_dag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = run_dag(module.dag)
    assert result.task_states == {"tamper": "success"}, result.error_text("tamper")
    assert "tampered" in result.log_lines("tamper")
    assert _snapshot(dags) == before


@pytest.mark.docker
@pytest.mark.usefixtures("no_leftovers", "no_ecs")
def test_sibling_tasks_with_a_long_common_prefix_get_containers_of_their_own(run_dag, tmp_path: Path) -> None:
    """review H1 in a DAG (dag.test runs them one after the other; side by side: test_docker_backend)."""
    from airflow.sdk import TaskGroup

    project = make_project(tmp_path / "p")
    with (
        DAG(
            dag_id=f"{DAG_PREFIX}_siblings",
            schedule=None,
            start_date=datetime(2026, 1, 1),
            default_args={"project_dir": str(project), "retries": 0, "docker": {"image": IMAGE}},
        ) as dag,
        TaskGroup("extract_group_with_a_long_name"),
    ):
        for suffix in "ab":
            ShOperator(task_id=f"load_table_{suffix}", command=f"echo loaded {suffix}")
    result = run_dag(dag)
    task_ids = [f"extract_group_with_a_long_name.load_table_{suffix}" for suffix in "ab"]
    assert result.task_states == dict.fromkeys(task_ids, "success"), result.errors
    started = [
        [line for line in result.log_lines(t) if line.startswith("Started container ")] for t in task_ids
    ]
    assert len(started[0]) == len(started[1]) == 1
    assert started[0] != started[1]
    for task_id, suffix in zip(task_ids, "ab", strict=True):
        assert f"loaded {suffix}" in result.log_lines(task_id)
