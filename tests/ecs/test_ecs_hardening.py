"""ECS behaviours fixed by the review (H3, H4, M1, M4, M5, M6, M13, M15, L9, L10), end to end on the ECS
emulator (moto in server mode; every task really runs its container in Docker)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile, TaskSettings
from tests.ecs.conftest import TEST_IMAGE
from tests.ecs.test_ecs_roundtrip import (  # noqa: F401 - ecs_world_fixture is a fixture
    BUCKET,
    CLUSTER,
    ecs_world_fixture,
    make_dag,
    register_task_definition,
    remaining_objects,
)

pytestmark = pytest.mark.ecs


def _backend(task_label: str = "ecs_hardening.t", **ecs):
    from airflow_cmdexec_provider.backends.ecs import EcsBackend, MemoryCache

    backend = EcsBackend.from_settings(
        TaskSettings(task_label=task_label, docker={"image": TEST_IMAGE}, ecs=ecs or None)
    )
    backend.td_cache = MemoryCache()
    return backend


def _request(tmp_path: Path, command: str, project: Path) -> CommandRequest:
    io_dir = tmp_path / "io"
    io_dir.mkdir()
    (io_dir / "runner.sh").write_text(command + "\n")
    return CommandRequest(
        task_label="ecs_hardening.t",
        project_dir=project,
        workdir="",
        io_dir=io_dir,
        command=("/bin/sh", IoFile("runner.sh")),
        labels={
            "dag_id": "ecs_hardening",
            "task_id": "t",
            "run_id": "r1",
            "try_number": "1",
            "map_index": "-1",
        },
    )


# -- M4: a container that never started ------------------------------------------------------------------


def test_a_task_whose_container_never_starts_fails_at_once_with_ecs_reason(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    missing_image = "cmdexec-test:no-such-tag"
    register_task_definition(ecs_world["ecs"], "cmdexec-missing-image", tags=True, image=missing_image)
    with make_dag("ecs_never_started", ecs_world["project"], docker={"image": missing_image}) as dag:
        ShOperator(task_id="t", command="echo never")
    started = time.monotonic()
    result = run_dag(dag)
    elapsed = time.monotonic() - started
    assert result.task_states["t"] == "failed"
    error = result.error_text("t")
    assert "CannotPullContainerError" in error
    assert "without an exit code" in error
    assert ecs_world["emulator"].started_tasks == 0
    # Before the fix the worker waited max_wait_for_fetch_log_events_non_zero_status (300 s) for a log
    # that cannot come. Not a timing assertion of our speed: 300 s is the wait that must not happen.
    assert elapsed < 240, elapsed
    assert "did not arrive" not in result.log("t")
    assert remaining_objects(ecs_world["s3"]) == []


# -- M5: the end marker anywhere in a line -------------------------------------------------------------


def test_output_without_a_trailing_newline_is_kept_and_does_not_hide_the_marker(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("ecs_no_newline", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command="echo first; printf 'last words without newline'")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    lines = result.log_lines("t")
    assert "first" in lines
    assert "last words without newline" in lines
    assert not any("cmdexec-end" in line for line in lines)  # the marker itself is never shown
    assert not any("did not arrive" in line for line in lines)


# -- L9: the command's own exit 90/91 is not a transfer failure ------------------------------------------


def test_a_command_exiting_91_is_reported_as_its_own_code(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    with make_dag("ecs_exit_91", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command="exit 91")
    result = run_dag(dag)
    error = result.error_text("t")
    assert "command failed with code 91" in error
    assert "upload" not in error  # the outputs were uploaded fine: the phase says "done"


# -- L10: an empty workdir ---------------------------------------------------------------------------


def test_an_empty_workdir_exists_in_the_container(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    (ecs_world["project"] / "empty_dir").mkdir()
    with make_dag("ecs_empty_workdir", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command="pwd", workdir="empty_dir")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert any(line.endswith("/project/empty_dir") for line in result.log_lines("t"))


# -- M6: the newest revision tagged with the image wins, also after it was cached -------------------------


def test_a_newer_revision_of_the_cached_family_wins(ecs_world, run_dag):
    from airflow_cmdexec_provider.operators import ShOperator

    emulator, ecs = ecs_world["emulator"], ecs_world["ecs"]
    with make_dag("ecs_revisions_1", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command="true")
    assert run_dag(dag).state == "success"
    newer = register_task_definition(ecs, "cmdexec-runner", tags=True)  # revision 2, same image
    with make_dag("ecs_revisions_2", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command="true")
    assert run_dag(dag).state == "success"
    used = [r["taskDefinition"] for r in emulator.run_task_requests]
    assert used[-1] == newer, used


# -- H3: configuration named by the task never falls back ---------------------------------------------------


def test_a_task_naming_its_task_definition_fails_instead_of_falling_back(
    ecs_world, run_dag, monkeypatch, tmp_path
):
    from airflow_cmdexec_provider.operators import ShOperator

    monkeypatch.delenv("AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT")
    marker = tmp_path / "ran"
    with make_dag("ecs_named_td", ecs_world["project"]) as dag:
        ShOperator(
            task_id="t",
            command=f"touch {marker}",
            ecs={"task_definition_arn": ecs_world["td_arn"]},
            docker={"image": TEST_IMAGE},
        )
    result = run_dag(dag)
    assert result.task_states["t"] == "failed"
    assert "cmdexec_ecs_default" in result.error_text("t")
    assert "does not run anywhere else" in result.error_text("t")
    assert not marker.exists()


class FlakySecretsBackend:
    """A secrets backend that fails (as a throttled Secrets Manager or a timed-out Vault does) for one key."""

    def get_connection(self, conn_id: str):
        if conn_id == "cmdexec_ecs_default":
            raise TimeoutError("secrets backend timed out")
        return None

    def get_variable(self, key: str):
        return None

    def get_config(self, key: str):
        return None


def test_a_secrets_backend_failure_fails_the_task_instead_of_running_it_elsewhere(
    ecs_world, run_dag, monkeypatch, tmp_path
):
    """Review H3: before the fix the task ran on Docker or locally when the ECS connection could not be
    read."""
    from airflow.sdk.execution_time import supervisor

    from airflow_cmdexec_provider.operators import ShOperator

    real = supervisor.ensure_secrets_backend_loaded
    monkeypatch.setattr(supervisor, "ensure_secrets_backend_loaded", lambda: [FlakySecretsBackend(), *real()])
    monkeypatch.delenv("AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT")  # the connection lives only in the failing backend
    marker = tmp_path / "ran"
    with make_dag("ecs_flaky_secrets", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command=f"touch {marker}")
    result = run_dag(dag)
    assert result.task_states["t"] == "failed"
    error = result.error_text("t")
    assert "cmdexec_ecs_default" in error
    assert "could not be read" in error
    assert "timed out" in error
    assert not marker.exists()
    assert ecs_world["emulator"].started_tasks == 0


# -- M1: a log that cannot be read never ends the command ---------------------------------------------------


def test_failing_log_reads_are_warnings_and_the_task_still_succeeds(ecs_world, run_dag, monkeypatch):
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    from airflow_cmdexec_provider.operators import ShOperator

    failures = {"left": 3}
    real_call = BaseClient._make_api_call

    def flaky(self, operation, params):
        if operation == "GetLogEvents" and failures["left"] > 0:
            failures["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, operation
            )
        return real_call(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", flaky)
    ecs_world["emulator"].throttle_next(3, operation="DescribeTasks")
    with make_dag("ecs_flaky_logs", ecs_world["project"], docker={"image": TEST_IMAGE}) as dag:
        ShOperator(task_id="t", command="echo one; sleep 4; echo two")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert failures["left"] == 0
    log = result.log("t")
    assert "could not read the container's log" in log
    assert "the command goes on" in log
    assert "one" in result.log_lines("t")
    assert "two" in result.log_lines("t")


def test_a_throttled_describe_tasks_does_not_hold_back_the_log(ecs_world, tmp_path):
    """Issue 11: while DescribeTasks is throttled, the triggerer's watch backs off its state reads but
    still brings the log every round; the task ends normally once ECS answers again. Before the fix a
    throttled round delivered nothing, and its back-off (doubling to a minute) held every line back."""
    from tests import scale_helpers

    emulator = ecs_world["emulator"]
    backend = _backend()
    script = "echo first; sleep 3; for i in 1 2 3; do echo during $i; sleep 1; done; sleep 5; echo last"
    handle = backend.submit(_request(tmp_path, script, ecs_world["project"]), lambda line: None)
    followed = scale_helpers.Followed("t", backend, handle, backend_settings_json())

    def seen(text: str) -> bool:
        return any(line == text for _, line in followed.lines)

    async def until(condition, seconds: float, what: str) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, f"{what}: {followed.lines}"
            await asyncio.sleep(0.1)

    async def main() -> int:
        following = asyncio.create_task(scale_helpers._follow(followed, "ecs"))
        await until(lambda: seen("first"), 180, "the first line")
        emulator.throttle_next(1_000_000, operation="DescribeTasks")
        try:
            await until(lambda: seen("during 3"), 60, "the lines printed while DescribeTasks is throttled")
        finally:
            left = emulator.stop_throttling("DescribeTasks")
        await asyncio.wait_for(following, 300)
        return left

    left = asyncio.run(main())
    # DescribeTasks really was throttled while the lines came (botocore may still have been retrying
    # the first throttled call, so whether the warning was already logged is a matter of timing).
    assert left < 1_000_000
    texts = [line for _, line in followed.lines]
    assert followed.event is not None
    assert followed.event["status"] == "finished", followed.event
    assert followed.event["exit_code"] == 0, followed.event
    own = [line for line in texts if line == "first" or line.startswith("during ") or line == "last"]
    assert own == ["first", "during 1", "during 2", "during 3", "last"], texts
    backend.discard(followed.handle, lambda line: None)


def backend_settings_json() -> dict:
    return TaskSettings(task_label="ecs_hardening.t", docker={"image": TEST_IMAGE}).to_json()


# -- M15 / H4: handles saved before anything exists, checked before they are reused ------------------------


def test_a_try_that_died_while_starting_is_found_through_its_run_token(ecs_world, tmp_path):
    """The handle is saved before upload; a crash after RunTask leaves a task the next try adopts."""
    saved: list[dict] = []
    first = _backend()
    first.save_handle = lambda h: saved.append(json.loads(json.dumps(h)))
    request = _request(tmp_path, "echo adopted; sleep 3", ecs_world["project"])
    handle = first.submit(request, print)
    starting = saved[0]
    assert starting["starting"] is True
    assert starting["task_arn"] is None
    assert set(starting["keys"]) >= {"input", "output"}

    # The worker "died" right after RunTask: the next try only has the starting handle.
    second = _backend()
    lines: list[str] = []
    (tmp_path / "retry").mkdir()
    retried = _request(tmp_path / "retry", "echo adopted; sleep 3", ecs_world["project"])
    result = second.resume(starting, retried, lines.append)
    assert result is not None
    assert result.exit_code == 0
    emulator = ecs_world["emulator"]
    assert len(emulator.run_task_requests) == 2  # RunTask repeated with the same token ...
    assert emulator.started_tasks == 1
    assert emulator.task_arns == [handle["task_arn"]]
    assert "adopted" in lines
    assert remaining_objects(ecs_world["s3"]) == []


def test_a_stale_handle_does_not_wedge_a_deferrable_retry(ecs_world, tmp_path):
    """Review H4: a handle naming an ECS task that ECS forgot is discarded and the command starts afresh."""
    from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook, HandleJournal

    s3 = ecs_world["s3"]
    stale_key = "cmdexec/stale/input.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=stale_key, Body=b"old")
    stale = {
        "backend": "ecs",
        "cluster": CLUSTER,
        "task_arn": f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/0123456789abcdef0123456789abcdef",
        "container_name": "main",
        "keys": {"input": stale_key},
        "end_marker": "--x--",
        "run_token": "t",
        "awslogs": None,
    }
    store = InMemoryStateStore({HandleJournal.key: stale})
    journal = HandleJournal(store)
    settings = TaskSettings(task_label="ecs_hardening.t", docker={"image": TEST_IMAGE})
    hook = CommandExecutorHook(settings=settings)
    backend = hook.backend("ecs")
    handle = hook.submit(_request(tmp_path, "echo fresh", ecs_world["project"]), print, journal, backend)
    assert handle["task_arn"] != stale["task_arn"]
    assert store.data[HandleJournal.key]["task_arn"] == handle["task_arn"]
    assert stale_key not in remaining_objects(s3)  # the stale handle's objects were removed
    result = backend.wait(handle, print)
    assert result.exit_code == 0
    backend.discard(handle, print)
    assert remaining_objects(s3) == []


class InMemoryStateStore:
    """The get/set/delete surface of Airflow's task_state_store, for driving the hook directly."""

    def __init__(self, data: dict) -> None:
        self.data = dict(data)

    def get(self, key):
        return self.data.get(key)

    def set(self, key, value):
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)


# -- M13: the trigger's on_kill stops and cleans up without waiting for STOPPED ------------------------------


def test_trigger_on_kill_stops_the_task_and_deletes_its_objects(ecs_world, tmp_path):
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    backend = _backend()
    handle = backend.submit(_request(tmp_path, "sleep 300", ecs_world["project"]), print)
    settings = TaskSettings(task_label="ecs_hardening.t", docker={"image": TEST_IMAGE}).to_json()
    trigger = CommandTrigger(executor="ecs", handle=handle, settings=settings, deadline=None)
    asyncio.run(trigger.on_kill())
    emulator = ecs_world["emulator"]
    emulator.wait_task_stopped(handle["task_arn"], timeout=60)
    task = emulator.task(handle["task_arn"])
    assert task.stop_code == "UserInitiated"
    assert "marked or cleared by a user" in (task.stopped_reason or "")
    assert remaining_objects(ecs_world["s3"]) == []


def test_trigger_yields_an_event_even_when_cleanup_fails(ecs_world, tmp_path, monkeypatch):
    """Review H4: an exception while stopping or cleaning up must not keep the task from resuming."""
    from airflow_cmdexec_provider.storage.s3 import S3TemporalStorage
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    backend = _backend()
    handle = backend.submit(_request(tmp_path, "sleep 300", ecs_world["project"]), print)

    def broken_delete(self, keys):
        raise ConnectionError("S3 is unreachable")

    monkeypatch.setattr(S3TemporalStorage, "delete", broken_delete)
    settings = TaskSettings(task_label="ecs_hardening.t", docker={"image": TEST_IMAGE}).to_json()
    trigger = CommandTrigger(executor="ecs", handle=handle, settings=settings, deadline=time.time() + 2)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert payload["status"] == "timeout"
    ecs_world["emulator"].wait_task_stopped(handle["task_arn"], timeout=60)
    monkeypatch.undo()
    backend.discard(handle, print)
    assert remaining_objects(ecs_world["s3"]) == []
