"""Scenario c: SIGKILL of the worker (the Celery pool process that supervises the task, and the task
process) while a Docker and an ECS command run. The scheduler notices (Celery reports the lost
worker process), the task is up for retry (``retries=1``), and the retry re-attaches to the running
container / ECS task: exactly one container and one ECS task ran for the logical run."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from tests.deployment.harness import Figures, wait_until

SWEEP = "from airflow_cmdexec_provider import tempfiles; print(*tempfiles.sweep())"

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_worker_kill"
TASKS = {"docker_job": "docker", "ecs_job": "ecs"}


def test_worker_killed_mid_command_retry_reattaches(deployment, watch_containers):
    figures = Figures("c. SIGKILL of worker task process + supervisor during Docker and ECS commands")
    watch = watch_containers(DAG_ID)
    ecs_before = len(deployment.ecs_tasks(DAG_ID))
    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID)

    problems = []
    killed = {}
    waiting = dict(TASKS)

    def kill_at_the_third_line() -> bool:
        """Kill each task's worker as soon as its command printed its third line (whichever task gets
        there first: the other one goes on printing meanwhile); True once none is left to kill."""
        for task_id, label in list(waiting.items()):
            ti = deployment.task_instance(DAG_ID, run_id, task_id)
            if ti["state"] in ("failed", "success", "up_for_retry"):
                problems.append(
                    f"{task_id} ended ({ti['state']}) before the kill:\n"
                    + deployment.task_log(DAG_ID, run_id, task_id, 1)[-3000:]
                )
            elif ti["state"] == "running" and f"{label}-line 3" in deployment.task_log_file(
                DAG_ID, run_id, task_id, 1
            ):
                task_pid, supervisor_pid = deployment.task_processes(ti["id"])
                os.kill(supervisor_pid, signal.SIGKILL)
                os.kill(task_pid, signal.SIGKILL)
                killed[task_id] = {
                    "host": ti["hostname"],
                    "task_pid": task_pid,
                    "supervisor_pid": supervisor_pid,
                }
            else:
                continue
            del waiting[task_id]
        return not waiting

    wait_until(kill_at_the_third_line, 240, f"{', '.join(waiting)} to print a third line")
    figures["killed"] = killed

    state = deployment.wait_run(DAG_ID, run_id, timeout=400)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    tis = deployment.task_instances(DAG_ID, run_id)
    figures["run_state"] = state
    figures["tasks"] = {
        t: {k: ti[k] for k in ("state", "hostname", "try_number", "duration")} for t, ti in tis.items()
    }
    figures["tries"] = {
        t: [(x["try_number"], x["state"], x["hostname"]) for x in deployment.tries(DAG_ID, run_id, t)]
        for t in TASKS
    }
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in TASKS}
    figures["containers_created"] = created = watch.names(run_id)
    figures["ecs_tasks_started"] = ecs_started = len(deployment.ecs_tasks(DAG_ID)) - ecs_before
    # A SIGKILLed task process cannot remove its own IO folder: the next cmdexec task on that host
    # does (tempfiles.sweep runs at the start of every task). Run that sweep on each worker, and count
    # what it took; anything still there after it is a leftover.
    figures["swept_after_the_kill"] = swept = {
        name: deployment.hosts[name].run([sys.executable, "-c", SWEEP]).stdout.split()
        for name in ("worker-a", "worker-b")
    }
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()
    if any(not name.startswith("cmdexec-io-") for names in swept.values() for name in names):
        problems.append(f"the sweep found more than the killed tries' IO folders: {swept}")

    for task_id, label in TASKS.items():
        if task_id not in killed:
            continue
        ti, log = tis[task_id], logs[task_id]
        if ti["state"] != "success" or ti["try_number"] != 2:
            problems.append(
                f"{task_id}: {ti['state']} after try {ti['try_number']} (the retry must succeed):\n"
                f"{log[-3000:]}"
            )
            continue
        if "Re-attached" not in log:
            problems.append(f"{task_id}: the retry did not re-attach:\n{log[-3000:]}")
        stored = deployment.xcom(DAG_ID, run_id, task_id)
        if stored != {"label": label, "lines": 10}:
            problems.append(f"{task_id}: stored values {stored}")
    if "docker_job" in killed and len(created) != 1:
        problems.append(f"containers created for the logical run: {created} (one expected)")
    if "ecs_job" in killed and ecs_started != 1:
        problems.append(f"ECS tasks started for the logical run: {ecs_started} (one expected)")
    if not deployment.nothing_left(leftovers):
        problems.append(f"left behind: {leftovers}")
    assert not problems, "\n".join(problems)
