"""One triggerer's event loop follows 200 deferred ECS commands on the ECS emulator: each ends, each log line
arrives once and in order, and nothing is left (correctness at scale; timings belong to the benchmark).

The loop batches: one DescribeTasks per round for up to 100 tasks, one FilterLogEvents per log group
for up to 100 streams (``backends/ecs_watch.py``); the emulator counts the ECS calls.
"""

from __future__ import annotations

import os

import pytest

from airflow_cmdexec_provider.backends.base import TaskSettings
from tests import scale_helpers
from tests.ecs.conftest import TEST_IMAGE
from tests.ecs.test_ecs_roundtrip import ecs_world_fixture, remaining_objects  # noqa: F401 - a fixture

pytestmark = pytest.mark.ecs

TASKS = int(os.environ.get("CMDEXEC_SCALE_ECS_TASKS", "200"))
LINES = 5


def test_one_event_loop_follows_many_deferred_ecs_commands(ecs_world, tmp_path):
    from airflow_cmdexec_provider.backends.ecs import EcsBackend, MemoryCache

    settings = TaskSettings(task_label="scale.t", docker={"image": TEST_IMAGE})
    shared_cache = MemoryCache()

    def make_backend() -> EcsBackend:
        backend = EcsBackend.from_settings(settings)
        backend.td_cache = shared_cache
        return backend

    requests = [scale_helpers.request(tmp_path, f"e{i:03d}", LINES, 1) for i in range(TASKS)]
    followed = scale_helpers.submit_all(make_backend, settings, requests)
    emulator = ecs_world["emulator"]
    described_before = sum(1 for r in emulator.ecs_requests if r["operation"] == "DescribeTasks")

    scale_helpers.follow_all(followed, "ecs")

    assert emulator.started_tasks == TASKS
    for f in followed:
        assert f.event is not None, f.name
        assert f.event["status"] == "finished", (f.name, f.event)
        assert f.event["exit_code"] == 0, (f.name, f.event, f.lines[-5:])
        assert scale_helpers.command_lines(f) == list(range(1, LINES + 1)), (f.name, f.lines)
    # Batched: one DescribeTasks per 100 tasks per round, however long the rounds go on (a loaded
    # machine makes more rounds). A round ends where a task is described again; following each task
    # on its own would make rounds of one call per task.
    calls = [r for r in emulator.ecs_requests if r["operation"] == "DescribeTasks"][described_before:]
    assert calls
    rounds: list[list[list[str]]] = []
    in_round: set[str] = set()
    for call in calls:
        arns = list(call["request"]["tasks"])
        assert len(arns) <= 100, len(arns)
        if not rounds or in_round & set(arns):
            rounds.append([])
            in_round = set()
        rounds[-1].append(arns)
        in_round |= set(arns)
    per_round = -(-TASKS // 100)
    assert all(len(round_) <= per_round for round_ in rounds), [len(r) for r in rounds if len(r) > per_round]
    assert {arn for round_ in rounds for arns in round_ for arn in arns} == {
        f.handle["task_arn"] for f in followed
    }
    for f in followed:
        f.backend.discard(f.handle, lambda line: None)
    assert remaining_objects(ecs_world["s3"]) == []
    assert emulator.running_containers() == []
