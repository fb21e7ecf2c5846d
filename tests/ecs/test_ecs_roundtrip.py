"""The ECS executor end to end: moto in server mode + the ECS emulator, which really runs each task's
container in Docker and writes its output to CloudWatch Logs. Nothing here is mocked."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.ecs.conftest import TEST_IMAGE

pytestmark = pytest.mark.ecs

BUCKET = "cmdexec-temporal"
CLUSTER = "cmdexec-test"
LOG_GROUP = "/cmdexec/tasks"


@pytest.fixture(name="ecs_world")  # imported by other modules as ecs_world_fixture
def ecs_world_fixture(airflow_db, ecs_emulator, ecs_aws_env, monkeypatch, tmp_path):
    """A cluster, a bucket, a log group, a task definition tagged with the test image, and the two
    Airflow connections (as AIRFLOW_CONN_* environment variables) that make ECS the executor."""
    s3 = ecs_emulator.boto3_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    ecs_emulator.boto3_client("logs").create_log_group(logGroupName=LOG_GROUP)
    ecs = ecs_emulator.boto3_client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    td_arn = register_task_definition(ecs, "cmdexec-runner", tags=True)
    set_connections(monkeypatch, ecs_emulator.endpoint_url)
    forget_task_definition_cache()
    project = tmp_path / "project"
    (project / "tasks").mkdir(parents=True)
    (project / "tasks" / "__init__.py").write_text("")
    (project / "tasks" / "wf.py").write_text(
        "import os, digdag\n"
        "def step1(greeting):\n"
        "    print('py> in container:', os.path.exists('/.dockerenv'), greeting)\n"
        "    digdag.env.store(numbers=[1, 2, 3], note=greeting.upper())\n"
        "def fail():\n"
        "    raise ValueError('bad value from ECS')\n"
    )
    (project / "tasks" / "wf.rb").write_text(
        "class Wf\n"
        "  def self.step2(numbers, note)\n"
        '    puts "rb> sum=#{numbers.sum} note=#{note}"\n'
        "    Digdag.env.store(total: numbers.sum)\n"
        "  end\n"
        "end\n"
    )
    (project / ".secret").write_text("dot files are not shipped")
    return {"emulator": ecs_emulator, "s3": s3, "ecs": ecs, "td_arn": td_arn, "project": project}


def forget_task_definition_cache() -> None:
    """Every test starts from a fresh moto, so the image -> task definition cache must be fresh too."""
    from airflow.models import Variable

    from airflow_cmdexec_provider.backends.ecs import VariableTaskDefinitionCache

    Variable.delete(VariableTaskDefinitionCache.variable)


def register_task_definition(
    ecs, family: str, tags: bool, awslogs: bool = True, image: str = TEST_IMAGE
) -> str:
    container = {"name": "main", "image": image, "memory": 256, "essential": True}
    if awslogs:
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": LOG_GROUP,
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "cmdexec",
            },
        }
    kwargs = {"family": family, "containerDefinitions": [container]}
    if tags:
        kwargs["tags"] = [{"key": "digdag.docker.image", "value": image}]
    return ecs.register_task_definition(**kwargs)["taskDefinition"]["taskDefinitionArn"]


def set_connections(
    monkeypatch, endpoint_url: str, storage_extra: dict | None = None, cluster: str = CLUSTER
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT",
        json.dumps(
            {
                "conn_type": "cmdexec_ecs",
                "extra": {
                    "cluster_name": cluster,
                    "region": "us-east-1",
                    "poll_interval": 1,
                    "max_wait_for_fetch_log_events": 20,
                },
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT",
        json.dumps(
            {
                "conn_type": "cmdexec_storage",
                "extra": storage_extra
                or {"type": "s3", "bucket": BUCKET, "endpoint": endpoint_url, "path_style_access": True},
            }
        ),
    )


def remaining_objects(s3) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def make_dag(dag_id: str, project: Path, **default_args):
    from airflow.sdk import DAG

    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"greeting": "hello ecs"},
        default_args={"project_dir": str(project), **default_args},
    )


def test_sh_py_rb_round_trip_runs_in_ecs_tasks(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

    emulator, project = ecs_world["emulator"], ecs_world["project"]
    with make_dag("ecs_round_trip", project, docker={"image": TEST_IMAGE}) as dag:
        hello = ShOperator(
            task_id="hello",
            command='echo "sh> $greeting in container: $(test -f /.dockerenv && echo yes)"; ls -A',
        )
        step1 = PyOperator(task_id="step1", method="tasks.wf.step1")
        step2 = RbOperator(task_id="step2", method="Wf.step2", require="tasks/wf")
        report = ShOperator(
            task_id="report", command='echo "report: numbers=$numbers note=$note total=$total"'
        )
        hello >> step1 >> step2 >> report
    result = run_dag(dag)

    assert result.state == "success", {t: result.error_text(t) for t in result.task_states}
    assert "runs on the ecs executor" in result.log("hello")
    assert "sh> hello ecs in container: yes" in result.log("hello")
    assert ".secret" not in result.log("hello")  # dot-paths are not shipped
    assert "py> in container: True hello ecs" in result.log("step1")
    assert "rb> sum=6 note=HELLO ECS" in result.log("step2")
    assert "report: numbers=[1,2,3] note=HELLO ECS total=6" in result.log("report")
    assert result.xcom("report") == {"numbers": [1, 2, 3], "note": "HELLO ECS", "total": 6}
    assert emulator.started_tasks == 4
    assert remaining_objects(ecs_world["s3"]) == []  # every temporal object deleted
    for request in emulator.run_task_requests:
        override = request["overrides"]["containerOverrides"][0]
        assert "X-Amz-Signature" not in json.dumps(override["command"])  # URLs never on a command line
        assert request["cluster"] == CLUSTER
        assert "launchType" not in request  # nothing configured: none sent


def test_failing_python_command_reports_the_exception_and_cleans_up(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator

    with make_dag(
        "ecs_failing", ecs_world["project"], ecs={"task_definition_arn": ecs_world["td_arn"]}
    ) as dag:
        PyOperator(task_id="fail", method="tasks.wf.fail")
    result = run_dag(dag)

    assert result.task_states["fail"] == "failed"
    error = result.error_text("fail")
    assert "Python command failed with code 1" in error
    assert "Error messages from python: bad value from ECS (ValueError)" in error
    assert "wf.py" in error  # the user's backtrace came back through the output archive
    assert remaining_objects(ecs_world["s3"]) == []


def test_exit_code_of_a_shell_command_fails_the_task(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("ecs_exit", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="exit7", command="echo before; exit 7")
    result = run_dag(dag)

    assert result.task_states["exit7"] == "failed"
    assert "command failed with code 7" in result.error_text("exit7")
    assert "before" in result.log("exit7")
    assert remaining_objects(ecs_world["s3"]) == []


def test_execution_timeout_stops_the_ecs_task(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import RbOperator

    (ecs_world["project"] / "tasks" / "slow.rb").write_text(
        "class Slow\n  def self.run\n    puts 'started'\n    $stdout.flush\n    sleep 300\n  end\nend\n"
    )
    with make_dag("ecs_timeout", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        RbOperator(
            task_id="slow", method="Slow.run", require="tasks/slow", execution_timeout=timedelta(seconds=12)
        )
    result = run_dag(dag)

    emulator = ecs_world["emulator"]
    assert result.task_states["slow"] == "failed"
    emulator.wait_all_stopped(timeout=30)
    assert emulator.running_containers() == []
    [task] = emulator.tasks.values()
    assert task.stop_code == "UserInitiated"
    assert "Stopped by Airflow" in (task.stopped_reason or "")
    assert remaining_objects(ecs_world["s3"]) == []


def test_too_large_environment_goes_through_an_env_file(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    big = {f"PARAM_{i}": "x" * 300 + str(i) for i in range(40)}  # ~12 KB: over the 8192 overrides limit
    env = {"MULTI": "line one\nline two", "PLAIN": "plain value"}
    with make_dag("ecs_big_env", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(
            task_id="big",
            command='echo "p39=$PARAM_39"; echo "plain=$PLAIN"; printf "multi=%s\\n" "$MULTI"',
            params=big,
            env=env,
        )
    result = run_dag(dag)

    assert result.state == "success", result.error_text("big")
    log = result.log("big")
    assert "p39=" + "x" * 300 + "39" in log
    assert "plain=plain value" in log
    assert "multi=line one" in log
    assert "line two" in log
    [request] = ecs_world["emulator"].run_task_requests
    override = request["overrides"]["containerOverrides"][0]
    assert override["environmentFiles"][0]["value"].startswith(f"arn:aws:s3:::{BUCKET}/")
    assert len(json.dumps(request["overrides"]["containerOverrides"])) < 8192
    assert remaining_objects(ecs_world["s3"]) == []  # the env file is deleted too


def test_aws_error_fails_the_task_and_never_falls_back(ecs_world, run_dag, monkeypatch, tmp_path):
    from airflow_cmdexec_provider.operators import ShOperator

    set_connections(monkeypatch, ecs_world["emulator"].endpoint_url, cluster="no-such-cluster")
    marker = tmp_path / "ran-somewhere"
    with make_dag("ecs_error", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command=f"touch {marker}")
    result = run_dag(dag)

    assert result.task_states["t"] == "failed"
    error = result.error_text("t")
    assert "RunTask" in error
    assert "no-such-cluster" in error
    assert ecs_world["emulator"].started_tasks == 0
    assert not marker.exists()  # did not run locally nor in a local container either
    assert remaining_objects(ecs_world["s3"]) == []


def test_task_definition_lookup_by_image_tag_is_cached(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    emulator = ecs_world["emulator"]
    for i in range(5):  # other definitions the scan has to pass
        register_task_definition(ecs_world["ecs"], f"other-{i}", tags=False)
    with make_dag("ecs_td_cache", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        first = ShOperator(task_id="first", command="echo one")
        second = ShOperator(task_id="second", command="echo two")
        third = ShOperator(task_id="third", command="echo three")
        first >> second >> third
    result = run_dag(dag)

    assert result.state == "success"
    operations = [r["operation"] for r in emulator.ecs_requests]
    assert operations.count("ListTaskDefinitions") == 1  # only the first task scans
    assert operations.count("ListTagsForResource") >= 1
    tag_calls_after_first = operations[operations.index("RunTask") :].count("ListTagsForResource")
    assert tag_calls_after_first == 0
    assert operations.count("DescribeTaskDefinition") == 3  # one per task, validating the cache


def test_agent_failure_and_task_failed_to_start_are_retried(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    emulator = ecs_world["emulator"]
    emulator.fail_next_run_task(reason="AGENT")
    emulator.throttle_next(2, operation="DescribeTasks")
    with make_dag("ecs_retries", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="agent", command="echo survived the agent")
    result = run_dag(dag)
    assert result.state == "success", result.error_text("agent")
    assert "survived the agent" in result.log("agent")
    assert emulator.started_tasks == 1
    assert len(emulator.run_task_requests) == 2

    emulator.reset(moto_state=False)
    emulator.fail_to_start_next(reason="CannotPullContainerError: pull access denied")
    with make_dag("ecs_failed_to_start", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag2:
        ShOperator(task_id="restart", command="echo started the second time")
    result = run_dag(dag2)
    assert result.state == "success", result.error_text("restart")
    assert "failed to start" in result.log("restart")
    assert "started the second time" in result.log("restart")


def test_task_definition_without_awslogs_warns_and_still_runs(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import PyOperator

    td_arn = register_task_definition(ecs_world["ecs"], "no-logs", tags=False, awslogs=False)
    with make_dag("ecs_no_logs", ecs_world["project"], ecs={"task_definition_arn": td_arn}) as dag:
        PyOperator(task_id="quiet", method="tasks.wf.step1")
    result = run_dag(dag)
    assert result.state == "success", result.error_text("quiet")
    assert "does not use the awslogs log driver" in result.log("quiet")
    assert result.xcom("quiet") == {"numbers": [1, 2, 3], "note": "HELLO ECS"}


def test_gcs_temporal_storage_round_trip(ecs_world, run_dag, monkeypatch, tmp_path):
    import gcp_storage_emulator.server as gcs

    from airflow_cmdexec_provider.operators import PyOperator
    from tests.ecs.gcs_helpers import TokenServer, fake_service_account, free_port

    port = free_port()
    server = gcs.create_server("127.0.0.1", port, in_memory=True, default_bucket="cmdexec-gcs")
    server.start()
    tokens = TokenServer()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
        monkeypatch.setenv(
            "AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT",
            json.dumps(
                {
                    "conn_type": "cmdexec_storage",
                    "password": json.dumps(fake_service_account(tokens.url)),
                    "extra": {"type": "gcs", "bucket": "cmdexec-gcs", "endpoint": endpoint},
                }
            ),
        )
        with make_dag("ecs_gcs", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
            PyOperator(task_id="gcs", method="tasks.wf.step1")
        result = run_dag(dag)
        assert result.state == "success", result.error_text("gcs")
        assert result.xcom("gcs") == {"numbers": [1, 2, 3], "note": "HELLO ECS"}
        from google.cloud import storage

        client = storage.Client(
            project="test", client_options={"api_endpoint": endpoint}, credentials=_anonymous()
        )
        assert [b.name for b in client.list_blobs("cmdexec-gcs")] == []  # temporal objects deleted
    finally:
        tokens.stop()
        server.stop()


def _anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def test_unique_run_keys_do_not_collide(ecs_world):
    """Storage keys carry dag, task, run and try plus a random part: retries never share objects."""
    from airflow_cmdexec_provider.backends.base import CommandRequest
    from airflow_cmdexec_provider.backends.ecs import EcsBackend
    from airflow_cmdexec_provider.config import EcsConfig, StorageConfig

    backend = EcsBackend(
        EcsConfig(conn_id="c", cluster_name=CLUSTER, region="us-east-1"),
        StorageConfig(conn_id="s", type="s3", bucket=BUCKET),
    )
    request = CommandRequest(
        task_label="d.t",
        project_dir=ecs_world["project"],
        workdir="",
        io_dir=Path("/tmp"),
        command=("true",),
        labels={
            "dag_id": "d",
            "task_id": "t",
            "run_id": str(uuid.uuid4()),
            "try_number": "2",
            "map_index": "-1",
        },
    )
    first, second = backend._base_key(request), backend._base_key(request)
    assert first != second
    assert first.startswith("cmdexec/d/t/")
    assert "/try2-" in first


def test_use_environment_file_keeps_params_and_env_out_of_the_run_task_overrides(
    ecs_world, run_dag, monkeypatch
):
    """Review M7: with use_environment_file the environment travels in an S3 object that the ECS agent
    reads, not in RunTask's containerOverrides (visible to ecs:DescribeTasks and in CloudTrail); without
    it the task log says where the environment is readable."""
    from airflow_cmdexec_provider.operators import ShOperator

    emulator, project = ecs_world["emulator"], ecs_world["project"]
    secret = "tok-Secret-7f3a9"
    command = 'echo "token has $(printf %s "$API_TOKEN" | wc -c) characters; greeting=$greeting"'
    with make_dag("ecs_plain_env", project, docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="plain", command=command, env={"API_TOKEN": secret})
    plain = run_dag(dag)
    assert plain.state == "success", plain.error_text("plain")
    assert "is in the RunTask container overrides, readable with ecs:DescribeTasks" in plain.log("plain")
    assert secret in json.dumps(emulator.run_task_requests[-1]["overrides"])  # Digdag's way, documented

    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT",
        json.dumps(
            {
                "conn_type": "cmdexec_ecs",
                "extra": {
                    "cluster_name": CLUSTER,
                    "region": "us-east-1",
                    "poll_interval": 1,
                    "max_wait_for_fetch_log_events": 20,
                    "use_environment_file": True,
                },
            }
        ),
    )
    with make_dag("ecs_env_file", project, docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="filed", command=command, env={"API_TOKEN": secret})
    result = run_dag(dag)

    assert result.state == "success", result.error_text("filed")
    assert f"token has {len(secret)} characters; greeting=hello ecs" in result.log("filed")
    assert "passed in an S3 environment file" in result.log("filed")
    override = emulator.run_task_requests[-1]["overrides"]["containerOverrides"][0]
    names = {entry["name"] for entry in override["environment"]}
    assert "API_TOKEN" not in names
    assert "greeting" not in names
    assert secret not in json.dumps(override)
    assert override["environmentFiles"][0]["type"] == "s3"
    assert secret not in result.log("filed")
    assert remaining_objects(ecs_world["s3"]) == []  # the env file is deleted with the archives
