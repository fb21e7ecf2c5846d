"""Scenario d: marking a deferred task failed through the REST API stops its container / ECS task
within 30 s (the trigger is cancelled in the triggerer, whose on_kill stops the command)."""

from __future__ import annotations

import time

import pytest

from tests.deployment.harness import Figures, wait_until

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_mark_failed"
STOP_WITHIN = 30


def test_marking_deferred_tasks_failed_stops_their_commands(deployment):
    figures = Figures("d. mark deferred Docker/ECS tasks failed via REST")
    ecs_before = {t.task_arn for t in deployment.ecs_tasks(DAG_ID)}
    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID)
    for task_id in ("docker_sleeper", "ecs_sleeper"):
        deployment.wait_task_state(DAG_ID, run_id, task_id, ["deferred"], timeout=240)

    def docker_running() -> list[str]:
        return [name for name in deployment.our_containers(DAG_ID)
                if deployment.container_running(name)]

    def ecs_running() -> list:
        return [t for t in deployment.ecs_tasks(DAG_ID) if t.task_arn not in ecs_before and not t.done.is_set()]

    wait_until(lambda: docker_running() and "sleeper-started" in deployment.task_log(DAG_ID, run_id, "docker_sleeper"),
               120, "the docker sleeper to run")
    wait_until(lambda: ecs_running() and "sleeper-started" in deployment.task_log(DAG_ID, run_id, "ecs_sleeper"),
               120, "the ECS sleeper to run")
    figures["deferred_after_seconds"] = round(time.monotonic() - started, 1)

    stop_seconds = {}
    marked = time.monotonic()
    deployment.set_task_state(DAG_ID, run_id, "docker_sleeper", "failed")
    deployment.set_task_state(DAG_ID, run_id, "ecs_sleeper", "failed")
    pending = {"docker_sleeper": docker_running, "ecs_sleeper": ecs_running}
    deadline = marked + STOP_WITHIN
    while pending and time.monotonic() < deadline:
        for task_id, still_running in list(pending.items()):
            if not still_running():
                stop_seconds[task_id] = round(time.monotonic() - marked, 1)
                del pending[task_id]
        time.sleep(0.5)
    figures["stopped_after_seconds"] = stop_seconds
    figures["still_running_after_30s"] = sorted(pending)
    # Give the cleanup (container removal, S3 objects) its time before counting leftovers.
    wait_until(lambda: deployment.run_state(DAG_ID, run_id) == "failed", 60, "the run to be failed")
    time.sleep(5)
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in ("docker_sleeper", "ecs_sleeper")}
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()

    assert not pending, (f"still running {STOP_WITHIN}s after the task was marked failed: {sorted(pending)}\n"
                         + "\n".join(f"--- {t}\n{logs[t][-3000:]}" for t in pending))
    for task_id, log in logs.items():
        assert "sleeper-not-stopped" not in log
    assert deployment.nothing_left(leftovers), leftovers
