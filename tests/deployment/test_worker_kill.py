"""Scenario c: SIGKILL of the worker (the Celery pool process that supervises the task, and the task
process) while a Docker and an ECS command run. The scheduler notices (Celery reports the lost
worker process), the task is up for retry (``retries=1``), and the retry re-attaches to the running
container / ECS task: exactly one container and one ECS task ran for the logical run."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.deployment.harness import Figures, wait_until

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_worker_kill"
TASKS = {"docker_job": "docker", "ecs_job": "ecs"}


def test_worker_killed_mid_command_retry_reattaches(deployment):
    figures = Figures("c. SIGKILL of worker task process + supervisor during Docker and ECS commands")
    ecs_before = len(deployment.ecs_tasks(DAG_ID))
    started_wall = time.time()
    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID)

    killed = {}
    for task_id, label in TASKS.items():
        def third_line_printed(task_id=task_id, label=label) -> dict | None:
            ti = deployment.task_instance(DAG_ID, run_id, task_id)
            if ti["state"] in ("failed", "success", "up_for_retry"):
                raise AssertionError(f"{task_id} ended ({ti['state']}) before the kill:\n"
                                     + deployment.task_log(DAG_ID, run_id, task_id)[-3000:])
            log = deployment.task_log_file(DAG_ID, run_id, task_id, 1)
            return ti if ti["state"] == "running" and f"{label}-line 3" in log else None

        ti = wait_until(third_line_printed, 240, f"{task_id} to print its third line")
        task_pid, supervisor_pid = deployment.task_processes(ti["id"])
        os.kill(supervisor_pid, signal.SIGKILL)
        os.kill(task_pid, signal.SIGKILL)
        killed[task_id] = {"host": ti["hostname"], "task_pid": task_pid, "supervisor_pid": supervisor_pid}
    figures["killed"] = killed

    state = deployment.wait_run(DAG_ID, run_id, timeout=400)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    tis = deployment.task_instances(DAG_ID, run_id)
    figures["tasks"] = {t: {k: ti[k] for k in ("state", "hostname", "try_number", "duration")} for t, ti in tis.items()}
    figures["tries"] = {t: [(x["try_number"], x["state"], x["hostname"]) for x in deployment.tries(DAG_ID, run_id, t)]
                        for t in TASKS}
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in TASKS}
    figures["containers_created"] = created = deployment.containers_created(run_id, since=started_wall)
    figures["ecs_tasks_started"] = ecs_started = len(deployment.ecs_tasks(DAG_ID)) - ecs_before
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()

    assert state == "success", {t: (ti["state"], logs[t][-3000:]) for t, ti in tis.items()}
    for task_id, label in TASKS.items():
        assert tis[task_id]["try_number"] == 2, f"{task_id} was not retried by the scheduler"
        assert "Re-attached" in logs[task_id], f"{task_id}: the retry did not re-attach:\n{logs[task_id]}"
        assert deployment.xcom(DAG_ID, run_id, task_id) == {"label": label, "lines": 10}
    assert len(created) == 1, f"one container for the logical run, not {created}"
    assert ecs_started == 1, f"one ECS task for the logical run, not {ecs_started}"
    assert deployment.nothing_left(leftovers), leftovers
