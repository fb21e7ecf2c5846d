"""Scenario f: 50 Docker tasks of one run, at most 16 at a time (DAG max_active_tasks), on the two
workers: all succeed, and nothing is left: no container, no ``cmdexec-*`` IO folder in any host's
/tmp, no temporal object."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.deployment.harness import Figures

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_fifty"
TASKS = 50


def _max_overlap(tis: list[dict]) -> int:
    """How many task instances ran at the same time at most (from their start and end dates)."""
    events = []
    for ti in tis:
        if ti["start_date"] and ti["end_date"]:
            events.append((datetime.fromisoformat(ti["start_date"]), 1))
            events.append((datetime.fromisoformat(ti["end_date"]), -1))
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


# The run may take up to 900 s on a slow machine, and the deployment starts inside this test's time.
@pytest.mark.timeout(1800)
def test_fifty_concurrent_docker_tasks_leave_nothing(deployment, watch_containers):
    figures = Figures("f. 50 Docker tasks, max_active_tasks 16")
    watch = watch_containers(DAG_ID)
    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID)
    state = deployment.wait_run(DAG_ID, run_id, timeout=900)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    tis = deployment.task_instances(DAG_ID, run_id)
    states: dict[str, int] = {}
    for ti in tis.values():
        states[ti["state"]] = states.get(ti["state"], 0) + 1
    figures["task_states"] = states
    figures["per_host"] = {
        h: sum(1 for ti in tis.values() if ti["hostname"] == h) for h in ("worker-a", "worker-b")
    }
    figures["max_concurrent"] = _max_overlap(list(tis.values()))
    durations = sorted(ti["duration"] for ti in tis.values() if ti["duration"] is not None)
    if durations:
        figures["task_duration_seconds"] = {
            "min": round(durations[0], 1),
            "median": round(durations[len(durations) // 2], 1),
            "max": round(durations[-1], 1),
        }
    figures["containers_created"] = len(watch.names(run_id))
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()

    failed = [t for t, ti in tis.items() if ti["state"] != "success"]
    assert (state, len(tis)) == ("success", TASKS), (
        f"{len(failed)} of {len(tis)} tasks did not succeed; first: {failed[:1]}\n"
        + (deployment.task_log(DAG_ID, run_id, failed[0])[-3000:] if failed else "")
    )
    for task_id in ("t00", "t49"):
        log = deployment.task_log(DAG_ID, run_id, task_id)
        number = int(task_id[1:])
        assert f"task-{number} start" in log, log
        assert f"task-{number} done" in log, log
    assert figures.values["containers_created"] == TASKS
    assert figures.values["max_concurrent"] <= 16
    assert deployment.nothing_left(leftovers), leftovers
