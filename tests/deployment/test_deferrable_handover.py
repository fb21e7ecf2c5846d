"""Scenario b: deferrable Docker and ECS tasks are submitted on worker-a, watched by the triggerer
(its own host) and completed on worker-b.

How the hand-over is forced: the tasks run on their own Celery queue, ``cmdexec_handover``, which
no worker consumes at first. The test makes worker-a consume it (Celery remote control,
``add_consumer``) and waits until both tasks started there (state running or deferred, hostname
worker-a). Then worker-a stops consuming the queue and worker-b starts: when the trigger fires, the
task's resume (``execute_complete``) can only be picked up by worker-b. Each command prints a line
every 4 s for 40 s, so it is still running at the switch even if one task deferred well after the other.
"""

from __future__ import annotations

import time

import pytest

from tests.deployment.harness import Figures, wait_until

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_handover"
QUEUE = "cmdexec_handover"
TASKS = {"docker_job": "docker", "ecs_job": "ecs"}


def test_deferred_tasks_resume_on_the_other_worker(deployment, watch_containers):
    figures = Figures("b. deferrable Docker + ECS, submit on worker-a, resume on worker-b")
    watch = watch_containers(DAG_ID)
    ecs_before = len(deployment.ecs_tasks(DAG_ID))
    started = time.monotonic()
    # (state, hostname, triggerer hostname) of each task, each time it changed
    seen: dict[str, list[tuple]] = {t: [] for t in TASKS}

    def look(run_id: str) -> dict[str, dict]:
        tis = deployment.task_instances(DAG_ID, run_id)
        for task_id, ti in tis.items():
            view = (ti["state"], ti["hostname"], (ti.get("triggerer_job") or {}).get("hostname"))
            if not seen[task_id] or seen[task_id][-1] != view:
                seen[task_id].append(view)
        return tis

    deployment.consume("worker-a", QUEUE, on=True)
    try:
        run_id = deployment.trigger(DAG_ID)

        def deferred_or_ended() -> bool:
            return all(
                ti["state"] in ("deferred", "success", "failed", "up_for_retry")
                for ti in look(run_id).values()
            )

        wait_until(deferred_or_ended, 240, "both tasks to be deferred by worker-a")
        deployment.consume("worker-a", QUEUE, on=False)
        deployment.consume("worker-b", QUEUE, on=True)
        figures["handover_after_seconds"] = round(time.monotonic() - started, 1)
        wait_until(
            lambda: look(run_id) and deployment.run_state(DAG_ID, run_id) not in ("queued", "running"),
            300,
            "the run to finish after the hand-over",
        )
    finally:
        deployment.consume("worker-a", QUEUE, on=False)
        deployment.consume("worker-b", QUEUE, on=False)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    figures["seen"] = seen
    tis = deployment.task_instances(DAG_ID, run_id)
    figures["tasks"] = {
        t: {k: ti[k] for k in ("state", "hostname", "try_number", "duration")} for t, ti in tis.items()
    }
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in TASKS}
    figures["containers_created"] = created = watch.names(run_id)
    figures["ecs_tasks_started"] = ecs_started = len(deployment.ecs_tasks(DAG_ID)) - ecs_before
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()

    problems = []
    for task_id, label in TASKS.items():
        ti, log = tis[task_id], logs[task_id]
        if ("deferred", "worker-a", "triggerer") not in seen[task_id]:
            problems.append(
                f"{task_id} was not deferred by worker-a and watched by the triggerer: {seen[task_id]}"
            )
        if ti["state"] != "success":
            problems.append(f"{task_id} is {ti['state']}:\n{log[-3000:]}")
            continue
        if ti["hostname"] != "worker-b":
            problems.append(f"{task_id} resumed on {ti['hostname']!r}, not worker-b")
        numbers = [
            int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if line.startswith(f"{label}-line ")
        ]
        if numbers != list(range(1, 11)):
            problems.append(f"{task_id}: incomplete or repeated log lines {numbers}:\n{log[-3000:]}")
        stored = deployment.xcom(DAG_ID, run_id, task_id)
        if stored != {"label": label, "lines": 10}:
            problems.append(f"{task_id}: stored values {stored}")
    if len(created) != 1:
        problems.append(f"containers created: {created} (one expected)")
    if ecs_started != 1:
        problems.append(f"ECS tasks started: {ecs_started} (one expected)")
    if not deployment.nothing_left(leftovers):
        problems.append(f"left behind: {leftovers}")
    assert not problems, "\n".join(problems)
