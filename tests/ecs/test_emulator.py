"""The ECS emulator itself: tasks really run in Docker, report real exit codes, stream logs into
CloudWatch (moto), honour StopTask, and the failure injections behave.  No mocks."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import docker
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.ecs_emulator import LABEL, EcsEmulator, parse_env_file

pytestmark = pytest.mark.ecs

IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
CLUSTER = "cmdexec-test"
LOG_GROUP = "/ecs/cmdexec-test"
PREFIX = "cmdexec"
CONTAINER = "main"


# ----------------------------------------------------------------------------- helpers
_CLIENTS: dict[tuple[str, str], Any] = {}


def client(emu: EcsEmulator, service: str) -> Any:
    """Cached boto3 client (creating one costs ~0.1 s)."""
    key = (emu.instance_id, service)
    if key not in _CLIENTS:
        _CLIENTS[key] = emu.boto3_client(service)
    return _CLIENTS[key]


def setup_ecs(
    emu: EcsEmulator,
    *,
    family: str = "cmdexec-task",
    create_group: bool = True,
    awslogs: bool = True,
    fargate: bool = False,
    log_options: dict[str, str] | None = None,
    **container: Any,
) -> str:
    """Cluster + (optionally) log group + task definition; returns the task definition ARN."""
    ecs = client(emu, "ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    cdef: dict[str, Any] = {"name": CONTAINER, "image": IMAGE, "memory": 256, "essential": True}
    if awslogs:
        options = {
            "awslogs-group": LOG_GROUP,
            "awslogs-region": emu.region,
            "awslogs-stream-prefix": PREFIX,
            **(log_options or {}),
        }
        cdef["logConfiguration"] = {"logDriver": "awslogs", "options": options}
        if create_group:
            client(emu, "logs").create_log_group(logGroupName=LOG_GROUP)
    cdef.update(container)
    kwargs: dict[str, Any] = {"family": family, "containerDefinitions": [cdef]}
    if fargate:
        kwargs.update(networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512")
    return ecs.register_task_definition(**kwargs)["taskDefinition"]["taskDefinitionArn"]


def run(emu: EcsEmulator, command: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
    override: dict[str, Any] = {"name": CONTAINER}
    if command is not None:
        override["command"] = command
    override.update(kwargs.pop("container_override", {}))
    kwargs.setdefault("cluster", CLUSTER)
    kwargs.setdefault("taskDefinition", "cmdexec-task")
    kwargs.setdefault("count", 1)
    kwargs.setdefault("launchType", "EC2")
    kwargs.setdefault("overrides", {"containerOverrides": [override]})
    resp = client(emu, "ecs").run_task(**kwargs)
    assert resp["failures"] == [], resp["failures"]
    assert len(resp["tasks"]) == 1
    return resp["tasks"][0]


def describe(emu: EcsEmulator, arn: str) -> dict[str, Any]:
    resp = client(emu, "ecs").describe_tasks(cluster=CLUSTER, tasks=[arn])
    assert len(resp["tasks"]) == 1, resp
    return resp["tasks"][0]


def wait_status(emu: EcsEmulator, arn: str, status: str = "STOPPED", timeout: float = 120) -> dict[str, Any]:
    """Poll until the task has ``status``; the timeout only keeps a broken test from hanging."""
    ecs = client(emu, "ecs")
    deadline = time.monotonic() + timeout
    while True:
        task = ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]
        if task["lastStatus"] == status:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task not {status} after {timeout}s: {task['lastStatus']}")
        time.sleep(0.1)


def stream_name(arn: str) -> str:
    return f"{PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}"


def log_events(emu: EcsEmulator, arn: str) -> list[dict[str, Any]]:
    resp = client(emu, "logs").get_log_events(
        logGroupName=LOG_GROUP, logStreamName=stream_name(arn), startFromHead=True
    )
    return resp["events"]


def log_lines(emu: EcsEmulator, arn: str) -> list[str]:
    return [e["message"] for e in log_events(emu, arn)]


def emulator_containers() -> list[str]:
    """`docker ps -a --filter label=cmdexec-ecs-emulator=1`, limited to this test process."""
    client = docker.from_env()
    try:
        found = client.api.containers(
            all=True, filters={"label": [f"{LABEL}=1", f"{LABEL}.pid={os.getpid()}"]}
        )
    finally:
        client.close()
    return [c["Id"] for c in found]


# ----------------------------------------------------------------------------- tests
def test_run_task_real_exit_code_and_logs(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    task = run(emu, ["/bin/bash", "-c", "echo hello; echo oops >&2; exit 3"], startedBy="test-1")
    arn = task["taskArn"]
    assert task["lastStatus"] in ("PROVISIONING", "PENDING")
    assert task["desiredStatus"] == "RUNNING"
    assert "exitCode" not in task["containers"][0]

    stopped = wait_status(emu, arn)
    container = stopped["containers"][0]
    assert container["exitCode"] == 3
    assert container["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["startedAt"] <= stopped["stoppedAt"]
    assert stopped["startedBy"] == "test-1"

    events = log_events(emu, arn)
    assert sorted(e["message"] for e in events) == ["hello", "oops"]
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)
    assert abs(timestamps[0] / 1000 - time.time()) < 3600  # milliseconds of the wall clock

    assert emu.started_tasks == 1
    assert emu.task_arns == [arn]
    assert emu.task(arn).exit_code == 3
    assert emulator_containers() == []
    # moto must not advance the task by itself (it would report exit code 0)
    for _ in range(5):
        assert describe(emu, arn)["containers"][0]["exitCode"] == 3


def test_awsvpc_and_every_run_task_field_recorded_as_sent(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu, fargate=True)
    request = {
        "cluster": CLUSTER,
        "taskDefinition": "cmdexec-task",
        "count": 1,
        "launchType": "FARGATE",
        "startedBy": "airflow-cmdexec",
        "networkConfiguration": {
            "awsvpcConfiguration": {"subnets": ["subnet-0abc"], "assignPublicIp": "ENABLED"}
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": CONTAINER,
                    "command": ["/bin/bash", "-c", "echo vpc-ok"],
                    "environment": [{"name": "X", "value": "1"}],
                    "cpu": 256,
                    "memory": 512,
                }
            ],
            "cpu": "512",
            "memory": "1024",
        },
        "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}],
        "tags": [{"key": "owner", "value": "tests"}],
    }
    ecs = client(emu, "ecs")
    resp = ecs.run_task(**request)
    assert resp["failures"] == []
    arn = resp["tasks"][0]["taskArn"]
    assert resp["tasks"][0]["attachments"][0]["type"] == "ElasticNetworkInterface"

    # capacity provider strategy instead of a launch type, no security groups either
    request2 = {
        "cluster": CLUSTER,
        "taskDefinition": "cmdexec-task",
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1", "subnet-2"]}},
        "overrides": {"containerOverrides": [{"name": CONTAINER, "command": ["true"]}]},
    }
    arn2 = ecs.run_task(**request2)["tasks"][0]["taskArn"]

    recorded = [dict(r) for r in emu.run_task_requests]
    # botocore adds an idempotency token to every RunTask call
    assert all(r.pop("clientToken") for r in recorded)
    assert recorded == [request, request2]
    stopped = wait_status(emu, arn)
    assert stopped["containers"][0]["exitCode"] == 0
    assert stopped["cpu"] == "512"
    assert stopped["memory"] == "1024"
    assert stopped["overrides"]["containerOverrides"][0]["command"] == ["/bin/bash", "-c", "echo vpc-ok"]
    assert log_lines(emu, arn) == ["vpc-ok"]
    assert emu.task(arn).environment["AWS_EXECUTION_ENV"] == "AWS_ECS_FARGATE"
    assert wait_status(emu, arn2)["containers"][0]["exitCode"] == 0

    # awsvpc without a network configuration is refused, as by ECS
    with pytest.raises(ClientError) as err:
        ecs.run_task(cluster=CLUSTER, taskDefinition="cmdexec-task", launchType="FARGATE")
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"


def test_environment_entrypoint_workdir_and_environment_files(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    s3 = client(emu, "s3")
    s3.create_bucket(Bucket="envs")
    s3.put_object(
        Bucket="envs",
        Key="run/one.env",
        Body=b"# a comment\nB=file1\nC=file1\nEMPTY=\nEQ=a=b=c\nnovalue\n=x\nCRLF=yes\r\n",
    )
    s3.put_object(Bucket="envs", Key="run/two.env", Body=b"C=file2\nF=file2\n")
    setup_ecs(
        emu,
        entryPoint=["/usr/bin/env"],
        command=["bash", "-c", "echo td-command"],
        workingDirectory="/tmp",
        environment=[
            {"name": "A", "value": "td"},
            {"name": "B", "value": "td"},
            {"name": "D", "value": "td"},
        ],
        environmentFiles=[{"type": "s3", "value": "arn:aws:s3:::envs/run/one.env"}],
    )
    task = run(
        emu,
        ["bash", "-c", "pwd; env | sort"],
        container_override={
            "environment": [{"name": "D", "value": "override"}, {"name": "E", "value": "over ride"}],
            "environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::envs/run/two.env"}],
        },
    )
    default_cmd = run(emu)  # no command override: the task definition's command
    arn = task["taskArn"]
    assert wait_status(emu, arn)["containers"][0]["exitCode"] == 0
    lines = log_lines(emu, arn)
    assert lines[0] == "/tmp"
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    # explicit environment beats environment files; the first file wins; override beats the TD
    assert env["A"] == "td"
    assert env["B"] == "td"
    assert env["C"] == "file1"
    assert env["D"] == "override"
    assert env["E"] == "over ride"
    assert env["EQ"] == "a=b=c"
    assert env["F"] == "file2"
    assert env["CRLF"] == "yes"
    assert "EMPTY" not in env
    assert "novalue" not in env
    assert env["AWS_REGION"] == emu.region
    assert {k: v for k, v in emu.task(arn).environment.items() if k in env} == {
        k: v for k, v in env.items() if k in emu.task(arn).environment
    }
    assert wait_status(emu, default_cmd["taskArn"])["containers"][0]["exitCode"] == 0
    assert log_lines(emu, default_cmd["taskArn"]) == ["td-command"]

    # a missing environment file: the task fails to start
    bad = run(
        emu,
        ["true"],
        container_override={"environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::envs/missing.env"}]},
    )
    stopped = wait_status(emu, bad["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("ResourceInitializationError: failed to download env files")
    assert "exitCode" not in stopped["containers"][0]


def test_parse_env_file_like_the_ecs_agent() -> None:
    assert parse_env_file(b"#c\nA=1\nB=x=y\nC=\n=v\nD\nA=2\r\n") == {"A": "2", "B": "x=y"}


def test_stop_task_stops_the_container(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    arn = run(emu, ["sleep", "300"], startedBy="stopper")["taskArn"]
    wait_status(emu, arn, "RUNNING")
    assert len(emu.running_containers()) == 1
    ecs = client(emu, "ecs")
    assert ecs.list_tasks(cluster=CLUSTER, startedBy="stopper")["taskArns"] == [arn]

    resp = ecs.stop_task(cluster=CLUSTER, task=arn, reason="cancelled by the test")
    assert resp["task"]["desiredStatus"] == "STOPPED"
    assert resp["task"]["lastStatus"] != "STOPPED" or "exitCode" in resp["task"]["containers"][0]
    stopped = wait_status(emu, arn)  # within 120 s, long before the sleep 300 could end by itself
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "cancelled by the test"
    # Killed by a signal (TERM, or KILL after the stop timeout): the command did not end on its own.
    assert stopped["containers"][0]["exitCode"] in (137, 143)
    assert emu.running_containers() == []
    assert emulator_containers() == []
    # ListTasks defaults to desiredStatus RUNNING, as ECS does
    assert ecs.list_tasks(cluster=CLUSTER)["taskArns"] == []
    assert ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"] == [arn]
    # stopping again is harmless
    assert ecs.stop_task(cluster=CLUSTER, task=arn)["task"]["stoppedReason"] == "cancelled by the test"


def test_logs_arrive_while_the_task_runs(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    # Ticks for at least 300 s (the test stops the task long before): it is still running, and
    # still printing, however slowly the machine gets to each step below.
    script = 'for i in $(seq 1 3000); do echo "tick $i"; sleep 0.1; done'
    arn = run(emu, ["/bin/bash", "-c", script])["taskArn"]

    def lines_after(count: int) -> list[str]:
        """Poll until the log has more than ``count`` lines; the timeout only keeps a broken test from
        hanging."""
        deadline = time.monotonic() + 120
        while True:
            try:
                lines = log_lines(emu, arn)
            except ClientError:  # stream not created yet
                lines = []
            if len(lines) > count or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)

    seen = lines_after(4)
    assert len(seen) >= 5, seen
    assert describe(emu, arn)["lastStatus"] == "RUNNING"
    more = lines_after(len(seen))
    assert len(more) > len(seen)
    assert more[: len(seen)] == seen
    assert more[:3] == ["tick 1", "tick 2", "tick 3"]
    assert describe(emu, arn)["lastStatus"] == "RUNNING"
    client(emu, "ecs").stop_task(cluster=CLUSTER, task=arn, reason="enough")
    stopped = wait_status(emu, arn)
    assert stopped["stopCode"] == "UserInitiated"
    final = log_events(emu, arn)
    ts = [e["timestamp"] for e in final]
    assert ts == sorted(ts)
    assert [e["message"] for e in final] == [f"tick {i}" for i in range(1, len(final) + 1)]


def test_run_task_client_token_is_idempotent(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    first = run(emu, ["true"], clientToken="token-1")
    again = run(emu, ["true"], clientToken="token-1")
    assert again["taskArn"] == first["taskArn"]
    other = run(emu, ["true"], clientToken="token-2")
    assert other["taskArn"] != first["taskArn"]
    emu.wait_all_stopped(30)
    assert emu.started_tasks == 2
    assert len(emu.run_task_requests) == 3


def test_fail_next_run_task(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    emu.fail_next_run_task("AGENT")
    resp = client(emu, "ecs").run_task(
        cluster=CLUSTER,
        taskDefinition="cmdexec-task",
        overrides={"containerOverrides": [{"name": CONTAINER, "command": ["true"]}]},
    )
    assert resp["tasks"] == []
    assert len(resp["failures"]) == 1
    assert resp["failures"][0]["reason"] == "AGENT"
    assert resp["failures"][0]["arn"].startswith("arn:aws:ecs:")
    assert emu.started_tasks == 0
    assert emu.task_arns == []
    assert len(emu.run_task_requests) == 1
    assert emulator_containers() == []
    # only the next one
    arn = run(emu, ["true"])["taskArn"]
    assert wait_status(emu, arn)["containers"][0]["exitCode"] == 0
    assert emu.started_tasks == 1


def test_throttling(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    no_retry = emu.boto3_client("ecs", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    emu.throttle_next(1, "RunTask")
    with pytest.raises(ClientError) as err:
        no_retry.run_task(
            cluster=CLUSTER,
            taskDefinition="cmdexec-task",
            overrides={"containerOverrides": [{"name": CONTAINER, "command": ["true"]}]},
        )
    error = err.value.response
    assert error["Error"]["Code"] == "ThrottlingException"
    assert error["Error"]["Message"] == "Rate exceeded"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    assert emu.started_tasks == 0
    assert emu.task_arns == []
    assert len(emu.run_task_requests) == 1  # recorded although throttled

    # raw wire form (JSON 1.1 error document)
    emu.throttle_next(1, "DescribeTasks")
    req = urllib.request.Request(
        emu.endpoint_url + "/",
        data=json.dumps({"cluster": CLUSTER, "tasks": ["x"]}).encode(),
        headers={
            "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.DescribeTasks",
            "Content-Type": "application/x-amz-json-1.1",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as http_err:
        urllib.request.urlopen(req, timeout=10)
    assert http_err.value.code == 400
    assert json.loads(http_err.value.read()) == {"__type": "ThrottlingException", "message": "Rate exceeded"}

    # with retries the SDK gets through; every attempt reached the emulator
    arn = run(emu, ["true"])["taskArn"]
    emu.throttle_next(2, "DescribeTasks")
    retrying = emu.boto3_client("ecs", config=Config(retries={"mode": "standard", "total_max_attempts": 5}))
    before = sum(1 for r in emu.ecs_requests if r["operation"] == "DescribeTasks")
    retrying.describe_tasks(cluster=CLUSTER, tasks=[arn])
    calls = [r for r in emu.ecs_requests if r["operation"] == "DescribeTasks"][before:]
    assert [c["result"] for c in calls] == ["throttled", "throttled", "forwarded"]
    wait_status(emu, arn)


def test_fail_to_start_and_unknown_image(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    reason = "CannotPullContainerError: pull access denied for nope"
    emu.fail_to_start_next(reason)
    task = run(emu, ["true"])
    stopped = wait_status(emu, task["taskArn"])
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"] == reason
    assert "exitCode" not in stopped["containers"][0]
    assert emu.started_tasks == 0

    ecs = client(emu, "ecs")
    ecs.register_task_definition(
        family="no-image", containerDefinitions=[{"name": CONTAINER, "image": "nope/missing:1", "memory": 64}]
    )
    arn = run(emu, ["true"], taskDefinition="no-image")["taskArn"]
    stopped = wait_status(emu, arn)
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert stopped["stoppedReason"].startswith("CannotPullContainerError:")
    assert "docker.io/nope/missing:1" in stopped["stoppedReason"]
    assert emu.started_tasks == 0
    assert emulator_containers() == []


def test_log_group_missing_created_or_not_configured(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu, create_group=False)
    arn = run(emu, ["echo", "never"])["taskArn"]
    stopped = wait_status(emu, arn)
    assert stopped["stopCode"] == "TaskFailedToStart"
    assert "log group does not exist" in stopped["stoppedReason"]
    assert stopped["stoppedReason"].startswith("ResourceInitializationError:")
    assert emu.started_tasks == 0

    setup_ecs(emu, family="create-group", create_group=False, log_options={"awslogs-create-group": "true"})
    arn = run(emu, ["/bin/bash", "-c", "echo created; printf 'no newline'"], taskDefinition="create-group")[
        "taskArn"
    ]
    assert wait_status(emu, arn)["containers"][0]["exitCode"] == 0
    assert log_lines(emu, arn) == ["created", "no newline"]

    setup_ecs(emu, family="no-logs", awslogs=False)
    arn = run(emu, ["/bin/bash", "-c", "echo quiet; exit 7"], taskDefinition="no-logs")["taskArn"]
    assert wait_status(emu, arn)["containers"][0]["exitCode"] == 7
    assert list(emu.task(arn).output) == ["quiet"]
    streams = client(emu, "logs").describe_log_streams(logGroupName=LOG_GROUP)["logStreams"]
    assert len(streams) == 1  # only the create-group task's stream


def test_presigned_urls_work_from_inside_the_container(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    s3 = client(emu, "s3")
    s3.create_bucket(Bucket="xfer")
    s3.put_object(Bucket="xfer", Key="in.txt", Body=b"payload from the host")
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "xfer", "Key": "in.txt"}, ExpiresIn=600
    )
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "xfer", "Key": "out.txt"}, ExpiresIn=600
    )
    script = (
        'curl -fsS "$GET_URL"; echo; printf "written in the task" > /tmp/o && curl -fsS -T /tmp/o "$PUT_URL"'
    )
    arn = run(
        emu,
        ["/bin/bash", "-c", script],
        container_override={
            "environment": [{"name": "GET_URL", "value": get_url}, {"name": "PUT_URL", "value": put_url}]
        },
    )["taskArn"]
    assert wait_status(emu, arn)["containers"][0]["exitCode"] == 0
    assert log_lines(emu, arn) == ["payload from the host"]
    assert s3.get_object(Bucket="xfer", Key="out.txt")["Body"].read() == b"written in the task"


def test_unknown_tasks_and_overrides(ecs_emulator: EcsEmulator) -> None:
    emu = ecs_emulator
    setup_ecs(emu)
    ecs = client(emu, "ecs")
    missing = f"arn:aws:ecs:{emu.region}:{emu.account_id}:task/{CLUSTER}/{uuid.uuid4().hex}"
    resp = ecs.describe_tasks(cluster=CLUSTER, tasks=[missing])
    assert resp["tasks"] == []
    assert resp["failures"] == [{"arn": missing, "reason": "MISSING"}]
    with pytest.raises(ClientError) as err:
        ecs.stop_task(cluster=CLUSTER, task=missing)
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as err:
        ecs.run_task(
            cluster=CLUSTER,
            taskDefinition="cmdexec-task",
            overrides={"containerOverrides": [{"name": "other", "command": ["true"]}]},
        )
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert emu.task_arns == []


def test_separate_emulator_shutdown_leaves_nothing(ecs_emulator: EcsEmulator) -> None:
    """stop() kills and removes running task containers and ends every thread; idempotent."""
    with EcsEmulator(stop_timeout=1) as emu2:
        setup_ecs(emu2)
        arn = run(emu2, ["sleep", "300"])["taskArn"]
        wait_status(emu2, arn, "RUNNING")
        assert len(emu2.running_containers()) == 1
        prefix = f"ecs-emu-{emu2.instance_id}"
    assert not [t.name for t in threading.enumerate() if t.name.startswith(prefix)]
    client = docker.from_env()
    try:
        left = client.api.containers(all=True, filters={"label": f"{LABEL}.instance={emu2.instance_id}"})
    finally:
        client.close()
    assert left == []
    assert emu2.task(arn).moto_task.last_status == "STOPPED"
    emu2.stop()  # idempotent
    # the session emulator still works (moto's state is shared: the log group exists already)
    setup_ecs(ecs_emulator, create_group=False)
    arn = run(ecs_emulator, ["true"])["taskArn"]
    assert wait_status(ecs_emulator, arn)["containers"][0]["exitCode"] == 0
