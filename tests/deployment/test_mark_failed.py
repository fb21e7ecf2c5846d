"""Scenario d: marking a deferred task failed through the REST API stops its container / ECS task
within 30 s (the trigger is cancelled in the triggerer, whose on_kill stops the command)."""

from __future__ import annotations

import time

import pytest

from tests.deployment.harness import Figures, wait_until

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_mark_failed"
STOP_WITHIN = 30  # seconds, from the brief: a user who marks a task failed expects it to stop


def test_marking_deferred_tasks_failed_stops_their_commands(deployment):
    figures = Figures("d. mark deferred Docker/ECS tasks failed via REST")
    ecs_before = {t.task_arn for t in deployment.ecs_tasks(DAG_ID)}
    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID)

    def docker_running() -> bool:
        return any(deployment.container_running(name) for name in deployment.our_containers(DAG_ID))

    def ecs_running() -> bool:
        return any(t.task_arn not in ecs_before and not t.done.is_set() for t in deployment.ecs_tasks(DAG_ID))

    command_running = {"docker_sleeper": docker_running, "ecs_sleeper": ecs_running}
    problems = []
    for task_id, running in command_running.items():

        def deferred_and_running(task_id=task_id, running=running) -> bool:
            ti = deployment.task_instance(DAG_ID, run_id, task_id)
            if ti["state"] in ("failed", "success", "up_for_retry", "upstream_failed"):
                return True
            return (
                ti["state"] == "deferred"
                and running()
                and "sleeper-started" in deployment.task_log(DAG_ID, run_id, task_id)
            )

        wait_until(deferred_and_running, 240, f"{task_id} to be deferred with its command running")
        if not running():
            problems.append(
                f"{task_id}: its command never ran while deferred:\n"
                + deployment.task_log(DAG_ID, run_id, task_id)[-3000:]
            )
    figures["deferred_after_seconds"] = round(time.monotonic() - started, 1)

    marked = time.monotonic()
    pending = {t: running for t, running in command_running.items() if running()}
    for task_id in pending:
        deployment.set_task_state(DAG_ID, run_id, task_id, "failed")
    stop_seconds = {}
    while pending and time.monotonic() < marked + STOP_WITHIN:
        for task_id, still_running in list(pending.items()):
            if not still_running():
                stop_seconds[task_id] = round(time.monotonic() - marked, 1)
                del pending[task_id]
        time.sleep(0.5)
    figures["stopped_after_seconds"] = stop_seconds
    figures["still_running_after_30s"] = sorted(pending)
    deployment.wait_run(DAG_ID, run_id, timeout=120)
    # The trigger's cleanup (container removal, temporal objects) follows the stop: give it time.
    cleanup_deadline = time.monotonic() + 30
    while not deployment.nothing_left(leftovers := deployment.leftovers(DAG_ID)):
        if time.monotonic() > cleanup_deadline:
            break  # reported below with what is left
        time.sleep(1)
    figures["leftovers"] = leftovers
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in command_running}
    figures.print()

    for task_id in pending:
        problems.append(
            f"{task_id}: still running {STOP_WITHIN}s after it was marked failed:\n{logs[task_id][-3000:]}"
        )
    if not deployment.nothing_left(leftovers):
        problems.append(f"left behind: {leftovers}")
    assert not problems, "\n".join(problems)
