"""``sla:`` (dig/sla.py): the deadline, as Digdag computes it, and the SLA tasks under dag.test().

dag.test() runs one task at a time, so these runs make the deadline pass before the workflow can
finish (a zero duration, or a time equal to the run time); the deployment test
(tests/deployment/test_sla.py) has the deadline pass while a task really runs.
"""

from __future__ import annotations

import pendulum
import pytest

from airflow_cmdexec_provider.dig import DigLoadError, load_project
from airflow_cmdexec_provider.dig.sla import Sla, deadline


def sla(option: str, clock: tuple[int, int, int]) -> Sla:
    return Sla(option, *clock, alert=True, fail=False)


@pytest.mark.parametrize(
    ("option", "clock", "run_time", "expected"),
    [
        # time: the same day when still ahead, in the workflow's timezone
        ("time", (2, 2, 0), "2026-01-30T02:00:00-08:00", "2026-01-30T02:02:00-08:00"),
        # ... the next day when passed; exactly the run time counts as not passed
        ("time", (2, 2, 0), "2026-01-30T02:30:00-08:00", "2026-01-31T02:02:00-08:00"),
        ("time", (2, 0, 0), "2026-01-30T02:00:00-08:00", "2026-01-30T02:00:00-08:00"),
        # Digdag keeps the run time's sub-second part: 02:00 is then not before the run time
        ("time", (2, 0, 0), "2026-01-30T02:00:00.250-08:00", "2026-01-30T02:00:00.250-08:00"),
        # duration: from the run time, any number of hours
        ("duration", (0, 2, 0), "2026-01-30T02:00:00-08:00", "2026-01-30T02:02:00-08:00"),
        ("duration", (30, 0, 5), "2026-01-30T02:00:00-08:00", "2026-01-31T08:00:05-08:00"),
    ],
)
def test_the_deadline_is_digdags_trigger_time(option, clock, run_time, expected):
    due = deadline(sla(option, clock), pendulum.parse(run_time), "America/Los_Angeles")
    assert due == pendulum.parse(expected)


def test_a_time_deadline_is_the_wall_clock_time_of_the_workflow_timezone():
    # 23:30 UTC is 08:30 in Tokyo: "09:00" is half an hour later, not 9.5 hours
    due = deadline(sla("time", (9, 0, 0)), pendulum.datetime(2026, 1, 30, 23, 30, tz="UTC"), "Asia/Tokyo")
    assert due == pendulum.datetime(2026, 1, 31, 0, 0, tz="UTC")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"time": "01:00", "duration": "00:10"}, "give either time: HH:MM[:SS] or duration"),
        ({"+notice": {"echo>": "x"}}, "give either time: HH:MM[:SS] or duration"),
        ({"duration": "soon"}, "sla: duration: soon: needs to be HH:MM or HH:MM:SS"),
        ({"time": "25:00"}, "sla: time: 25:00: needs to be HH:MM or HH:MM:SS"),
        ({"time": "01:00", "fail": "yes"}, "sla: fail: yes: must be true or false"),
        ({"time": "01:00", "_parallel": True}, "sla: _parallel: is not an SLA option"),
    ],
)
def test_a_bad_sla_is_a_load_error_naming_the_key(tmp_path, body, expected):
    import yaml

    (tmp_path / "late.dig").write_text(yaml.safe_dump({"sla": body, "+work": {"echo>": "w"}}))
    with pytest.raises(DigLoadError) as info:
        load_project(tmp_path)
    assert expected in str(info.value)


def test_the_sla_group_stands_beside_the_workflow(project):
    dag = load_project(project("slas"), include=["missed"])["missed"]
    assert sorted(dag.task_ids) == [
        "_sla._deadline",
        "_sla._fail",
        "_sla.after_notice",
        "_sla.notice",
        "first",
        "second",
    ]
    assert dag.get_task("_sla._deadline").upstream_task_ids == set()
    assert dag.get_task("_sla._fail").upstream_task_ids == {"_sla._deadline"}
    assert dag.get_task("_sla.notice").upstream_task_ids == {"_sla._deadline"}
    assert dag.get_task("_sla.after_notice").upstream_task_ids == {"_sla.notice"}
    assert dag.get_task("_sla._deadline").reschedule  # holds no worker slot while it waits


def test_a_run_finished_before_its_deadline_skips_the_sla_tasks(project, run_workflow):
    result = run_workflow(project("slas"), "in_time")
    assert result.state == "success", result.errors
    assert result.task_states == {
        "work": "success",
        "_sla._deadline": "skipped",
        "_sla.notice": "skipped",
    }
    assert any("finished before its SLA deadline" in line for line in result.log_lines("_sla._deadline"))


def test_a_missed_deadline_runs_the_sla_tasks_alerts_and_fails_the_run(project, run_workflow):
    result = run_workflow(project("slas"), "missed", logical_date=pendulum.datetime(2026, 1, 30, tz="UTC"))
    assert result.state == "failed"
    assert result.task_states == {
        "first": "success",
        "second": "success",
        "_sla._deadline": "success",
        "_sla._fail": "failed",
        "_sla.notice": "success",
        "_sla.after_notice": "success",
    }
    alerts = [
        r
        for r in result.records
        if r.task_id == "_sla._deadline" and r.message.startswith("SLA violation: workflow missed")
    ]
    assert [r.level for r in alerts] == ["error"], result.log_lines("_sla._deadline")
    assert "not finished: second" in alerts[0].message or "not finished: first, second" in alerts[0].message
    assert result.error_text("_sla._fail") == "SLA violation"
    # the SLA tasks see the workflow's params, session ones included
    assert "batch: not finished by the deadline of 2026-01-30" in result.log_lines("_sla.notice")
    assert "notified" in result.log_lines("_sla.after_notice")


def test_a_time_sla_without_alert_or_fail_runs_its_tasks_and_the_run_succeeds(project, run_workflow):
    midnight = pendulum.datetime(2026, 1, 30, tz="UTC")  # "00:00" is the run time itself: passed
    result = run_workflow(project("slas"), "quiet", logical_date=midnight, run_after=midnight)
    assert result.state == "success", result.errors
    assert result.task_states["_sla.notice"] == "success"
    assert "late" in result.log_lines("_sla.notice")
    levels = {
        r.level for r in result.records if r.task_id == "_sla._deadline" and "SLA violation" in r.message
    }
    assert levels == {"info"}
