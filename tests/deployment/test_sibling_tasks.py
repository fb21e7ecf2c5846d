"""Scenario a: two sibling Docker tasks in a TaskGroup whose full task ids share their first 30
characters run at the same time (each waits for the other one, see ``tasks.deploy.meet``); both
succeed, each in its own container, and each one's log and stored values are its own."""

from __future__ import annotations

import time

import pytest

from tests.deployment.harness import Figures

pytestmark = pytest.mark.deployment

DAG_ID = "deploy_siblings"
ALPHA = "extract_customer_tables.load_table_alpha"
BRAVO = "extract_customer_tables.load_table_bravo"


def test_siblings_with_a_long_common_prefix_run_apart(deployment, watch_containers):
    assert ALPHA[:30] == BRAVO[:30]
    figures = Figures("a. sibling Docker tasks, same first 30 characters")
    watch = watch_containers(DAG_ID)
    started = time.monotonic()
    run_id = deployment.trigger(DAG_ID)
    state = deployment.wait_run(DAG_ID, run_id, timeout=300)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    tis = deployment.task_instances(DAG_ID, run_id)
    figures["tasks"] = {
        t: {k: ti[k] for k in ("state", "hostname", "try_number", "duration")} for t, ti in tis.items()
    }
    created = watch.names(run_id)
    figures["containers_created"] = created
    logs = {t: deployment.task_log(DAG_ID, run_id, t) for t in (ALPHA, BRAVO)}
    figures["leftovers"] = leftovers = deployment.leftovers(DAG_ID)
    figures.print()

    assert state == "success", {t: (ti["state"], logs.get(t, "")[-3000:]) for t, ti in tis.items()}
    assert len(set(created)) == 2, f"each task needs its own container: {created}"
    for me, other in (("alpha", "bravo"), ("bravo", "alpha")):
        task_id = ALPHA if me == "alpha" else BRAVO
        assert f"I am {me}" in logs[task_id], logs[task_id]
        assert f"I am {other}" not in logs[task_id], logs[task_id]
        assert deployment.xcom(DAG_ID, run_id, task_id) == {"who": me}
    assert deployment.nothing_left(leftovers), leftovers
