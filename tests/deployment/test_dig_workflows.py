"""Digdag workflows on the real deployment (dags/deploy_dig.py).

``sla:`` (dig/sla.py): the deadline task checks between reschedules while the workflow's task runs on
a Celery worker: past the deadline it alerts and the SLA tasks run beside the running task
(``fail: true`` then fails the run); a run done first skips them and succeeds. ``${secret:...}``:
the task gets the value, its log shows it masked. ``schedule: skip_on_overtime`` (dig/overtime.py):
a scheduled session skips while an earlier one still runs."""

from __future__ import annotations

import time
from urllib.parse import quote

import pendulum
import pytest

from tests.deployment.harness import Figures, wait_until

pytestmark = pytest.mark.deployment


def run_and_report(deployment, dag_id, title):
    """Trigger a run, wait for it, print its figures; ``(run_id, state, task instances)``."""
    figures = Figures(title)
    started = time.monotonic()
    run_id = deployment.trigger(dag_id)
    state = deployment.wait_run(dag_id, run_id, timeout=300)
    figures["wall_seconds"] = round(time.monotonic() - started, 1)
    tis = deployment.task_instances(dag_id, run_id)
    figures["tasks"] = {t: {k: ti[k] for k in ("state", "start_date", "end_date")} for t, ti in tis.items()}
    figures.print()
    return run_id, state, tis


def test_a_missed_sla_runs_its_tasks_while_the_workflow_still_runs(deployment):
    dag_id = "deploy_dig_late"
    run_id, state, tis = run_and_report(deployment, dag_id, "sla: deadline 5 s into a 30 s task")

    states = {t: ti["state"] for t, ti in tis.items()}
    assert states == {
        "slow": "success",
        "_sla._deadline": "success",
        "_sla._fail": "failed",
        "_sla.notice": "success",
    }, {t: deployment.task_log(dag_id, run_id, t)[-2000:] for t in tis}
    assert state == "failed"  # fail: true
    # the SLA tasks ran while +slow was running, not after it
    slow_end = pendulum.parse(tis["slow"]["end_date"])
    assert pendulum.parse(tis["_sla.notice"]["end_date"]) < slow_end
    assert pendulum.parse(tis["_sla._deadline"]["end_date"]) < slow_end
    deadline_log = deployment.task_log(dag_id, run_id, "_sla._deadline")
    assert "SLA violation: workflow late is not finished at its deadline" in deadline_log, deadline_log
    assert "not finished: slow" in deadline_log
    assert "late for the session of 20" in deployment.task_log(dag_id, run_id, "_sla.notice")


def test_a_run_done_before_its_sla_deadline_skips_the_sla_tasks(deployment):
    dag_id = "deploy_dig_on_time"
    run_id, state, tis = run_and_report(deployment, dag_id, "sla: a run done before its deadline")

    assert state == "success"
    assert {t: ti["state"] for t, ti in tis.items()} == {
        "quick": "success",
        "_sla._deadline": "skipped",
        "_sla.notice": "skipped",
    }
    assert "finished before its SLA deadline" in deployment.task_log(dag_id, run_id, "_sla._deadline")


def test_a_secret_reaches_the_task_and_its_log_shows_it_masked(deployment):
    """${secret:deploy.token} is the Airflow Variable cmdexec_secret.deploy.token (set here through the
    REST API); the command gets it in _env and in its text; the task log that the worker's supervisor
    writes shows *** instead."""
    name = "cmdexec_secret.deploy.token"
    deployment.api("POST", "/api/v2/variables", json={"key": name, "value": "deploy-tok-77"})
    try:
        run_id, state, _ = run_and_report(deployment, "deploy_dig_secrets", "dig: a secret in _env")
        log = deployment.task_log("deploy_dig_secrets", run_id, "use")
    finally:
        deployment.api("DELETE", f"/api/v2/variables/{name}")
    assert state == "success", log[-3000:]
    assert "token in env: ***, in the text: ***" in log, log[-3000:]
    assert "deploy-tok-77" not in log


def test_require_starts_the_required_session_and_waits_for_it(deployment):
    """require>: the scheduler runs the upstream run that the task triggers for its session time, with
    require>'s params as its conf; the task goes on once that run succeeded."""
    run_id, state, tis = run_and_report(deployment, "deploy_dig_downstream", "dig: require> a new session")
    assert state == "success", {
        t: deployment.task_log("deploy_dig_downstream", run_id, t)[-2000:] for t in tis
    }
    run = deployment.api("GET", f"/api/v2/dags/deploy_dig_downstream/dagRuns/{run_id}")
    session = pendulum.parse(run["run_after"])  # a manual run's session time
    upstream_run = f"require__{session.isoformat()}"
    upstream = deployment.api("GET", f"/api/v2/dags/deploy_dig_upstream/dagRuns/{upstream_run}")
    assert (upstream["state"], pendulum.parse(upstream["logical_date"])) == ("success", session)
    log = deployment.task_log("deploy_dig_upstream", upstream_run, "produce")
    shown = session.replace(microsecond=0).isoformat()  # Digdag's session_time has whole seconds
    assert f"upstream session {shown} value=from-downstream" in log, log[-2000:]


def test_require_with_rerun_on_all_runs_the_required_session_again(deployment):
    upstream_run = "require__2026-01-30T00:00:00+00:00"
    first_id, first, _ = run_and_report(deployment, "deploy_dig_again", "dig: require> rerun_on all, 1st")
    assert first == "success", deployment.task_log("deploy_dig_again", first_id, "need")[-2000:]
    assert deployment.task_instances("deploy_dig_upstream", upstream_run)["produce"]["try_number"] == 1
    second_id, second, _ = run_and_report(deployment, "deploy_dig_again", "dig: require> rerun_on all, 2nd")
    assert second == "success", deployment.task_log("deploy_dig_again", second_id, "need")[-2000:]
    # the same upstream run, cleared and run again
    assert deployment.task_instances("deploy_dig_upstream", upstream_run)["produce"]["try_number"] == 2
    assert "cleared upstream run" in deployment.task_log("deploy_dig_again", second_id, "need")


def test_skip_on_overtime_skips_a_scheduled_session_while_an_earlier_one_runs(deployment):
    """schedule: skip_on_overtime: true (dig/overtime.py), with scheduled runs made as the scheduler
    makes them: a June 2026 run starts while the 2026-01-01 session still runs its 30 s task, so its
    _skip_on_overtime task skips it (every task skipped); a September run started after both ended
    looks past the skipped run to the finished January one, and runs. The first run is the newest
    session the schedule (1 January) has had: after an earlier one, the scheduler would catch up the
    sessions missed since (catchup=True, as Digdag) and make the next run itself."""
    dag_id = "deploy_dig_overtime"
    figures = Figures("skip_on_overtime: a session while the one before still runs")
    first = deployment.create_scheduled_run(dag_id, "2026-01-01T00:00:00+00:00")
    wait_until(
        lambda: deployment.task_instances(dag_id, first).get("work", {}).get("state") == "running",
        120,
        "the first session's task to run",
    )
    second = deployment.create_scheduled_run(dag_id, "2026-06-01T00:00:00+00:00")
    second_state = deployment.wait_run(dag_id, second, timeout=300)
    first_state_then = deployment.run_state(dag_id, first)
    first_state = deployment.wait_run(dag_id, first, timeout=300)
    third = deployment.create_scheduled_run(dag_id, "2026-09-01T00:00:00+00:00")
    third_state = deployment.wait_run(dag_id, third, timeout=300)
    states = {
        run: {t: ti["state"] for t, ti in deployment.task_instances(dag_id, run).items()}
        for run in (first, second, third)
    }
    figures["states"] = states
    figures.print()

    assert first_state_then == "running"  # the second session was decided while the first ran
    assert (first_state, second_state, third_state) == ("success", "success", "success")
    assert states[first] == {"_skip_on_overtime": "success", "work": "success"}
    assert states[second] == {"_skip_on_overtime": "skipped", "work": "skipped"}
    assert states[third] == {"_skip_on_overtime": "success", "work": "success"}
    gate_log = deployment.task_log(dag_id, second, "_skip_on_overtime")
    expected = f"the session of 2026-01-01T00:00:00+00:00 of workflow overtime (run {first}) is still running"
    assert expected in gate_log, gate_log
    assert "worked for 2026-09-01" in deployment.task_log(dag_id, third, "work")


def test_a_loop_over_a_param_runs_its_iterations_one_after_another(deployment):
    """for_each> over ${tables} (dig/loops.py) on the real scheduler and Celery workers: the mapped
    copies of _do run in the order of the values, each after the one before it has ended."""
    dag_id = "deploy_dig_loop"
    run_id, state, _ = run_and_report(deployment, dag_id, "dig: for_each> over a param, no _parallel")
    answer = deployment.api(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances", params={"limit": 1000}
    )
    copies = sorted(
        (ti for ti in answer["task_instances"] if ti["task_id"].startswith("each.iteration.")),
        key=lambda ti: (ti["map_index"], ti["task_id"] != "each.iteration.show"),
    )
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in copies]
    assert [(t["task_id"], t["map_index"], t["state"]) for t in copies] == [
        (f"each.iteration.{task}", index, "success") for index in range(3) for task in ("show", "after_show")
    ]

    def log_of(copy):
        return deployment.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{copy['task_id']}/logs/"
            f"{copy['try_number']}",
            params={"full_content": "true", "map_index": copy["map_index"]},
            headers={"Accept": "application/json"},
        )["content"]

    def printed_at(copy, text):
        """When the copy's log got ``text``: its command ran then (a copy's start_date is that of its
        first look at the previous copy, when it had to wait)."""
        entries = [e for e in log_of(copy) if isinstance(e, dict) and text in str(e.get("event", ""))]
        assert entries, (copy, text)
        return pendulum.parse(entries[0]["timestamp"])

    tables = ("alpha", "beta", "gamma")
    shows, after_shows = copies[0::2], copies[1::2]
    for index, table in enumerate(tables):
        assert printed_at(after_shows[index], f"shown {table}")
        if index:  # the command of copy k ran after copy k - 1 had ended
            previous_end = pendulum.parse(after_shows[index - 1]["end_date"])
            assert printed_at(shows[index], f"table {table}") >= previous_end, (index, previous_end)
    assert "all 3 tables" in deployment.task_log(dag_id, run_id, "done")
