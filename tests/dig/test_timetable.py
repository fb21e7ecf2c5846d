"""DigdagTimetable: Digdag's session times (the start of the period) and run times, DST, registration."""

from __future__ import annotations

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction

from airflow_cmdexec_provider.dig.timetable import DigdagTimetable
from airflow_cmdexec_provider.exceptions import CmdExecConfigError

LA = pendulum.timezone("America/Los_Angeles")


def at(*args: int) -> pendulum.DateTime:
    return pendulum.datetime(*args, tz=LA)


@pytest.mark.parametrize(
    ("kind", "spec", "after", "session", "run"),
    [
        ("daily", "10:00:00", at(2026, 1, 29, 12), at(2026, 1, 30), at(2026, 1, 30, 10)),
        ("hourly", "30:00", at(2026, 1, 29, 12, 5), at(2026, 1, 29, 13), at(2026, 1, 29, 13, 30)),
        ("weekly", "Sun, 10:00:00", at(2026, 1, 29), at(2026, 2, 1), at(2026, 2, 1, 10)),
        ("weekly", "monday,01:02:03", at(2026, 1, 29), at(2026, 2, 2), at(2026, 2, 2, 1, 2, 3)),
        ("monthly", "1,09:00:00", at(2026, 1, 29), at(2026, 2, 1), at(2026, 2, 1, 9)),
        ("minutes_interval", "15", at(2026, 1, 29, 12, 1), at(2026, 1, 29, 12, 15), at(2026, 1, 29, 12, 15)),
        ("cron", "42 4 1 * *", at(2026, 1, 29), at(2026, 2, 1, 4, 42), at(2026, 2, 1, 4, 42)),
    ],
)
def test_session_time_is_the_start_of_the_period_and_runs_after_the_delay(kind, spec, after, session, run):
    timetable = DigdagTimetable(kind, spec, LA)
    info = timetable.next_dagrun_info(
        last_automated_data_interval=DataInterval(after, after),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
    )
    assert info.logical_date == session  # Digdag's session_time
    assert info.data_interval == DataInterval(session, run)
    assert info.run_after == run
    assert timetable._get_prev(session) < session < timetable._get_next(session)  # last/next_session_time


def test_daylight_saving_day_keeps_the_session_at_midnight():
    daily = DigdagTimetable("daily", "10:00:00", LA)
    # 2026-03-08: clocks go forward in Los Angeles; the session is still local midnight
    info = daily.next_dagrun_info(
        last_automated_data_interval=DataInterval(at(2026, 3, 7), at(2026, 3, 7, 10)),
        restriction=TimeRestriction(earliest=None, latest=None, catchup=True),
    )
    assert info.logical_date.in_timezone(LA).isoformat() == "2026-03-08T00:00:00-08:00"
    assert daily._get_next(info.logical_date).in_timezone(LA).isoformat() == "2026-03-09T00:00:00-07:00"


def test_a_new_schedule_starts_with_the_first_session_not_yet_due():
    daily = DigdagTimetable("daily", "10:00:00", LA)
    now = pendulum.now(LA)
    info = daily.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=at(2000, 1, 1), latest=None, catchup=False),
    )
    assert info.run_after >= now
    assert info.run_after - now <= pendulum.duration(days=1)
    assert info.logical_date.in_timezone(LA).time() == pendulum.time(0)
    # catchup (on for loaded workflows) runs missed sessions, never the years since start_date
    caught_up = daily.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=at(2000, 1, 1), latest=None, catchup=True),
    )
    assert caught_up.logical_date == info.logical_date
    ended = daily.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=None, latest=at(2001, 1, 1), catchup=False),
    )
    assert ended is None


def test_manual_run_belongs_to_the_newest_due_session():
    hourly = DigdagTimetable("hourly", "30:00", LA)
    assert hourly.infer_manual_data_interval(run_after=at(2026, 1, 29, 9, 45)) == DataInterval(
        at(2026, 1, 29, 9), at(2026, 1, 29, 9, 30)
    )
    assert hourly.infer_manual_data_interval(run_after=at(2026, 1, 29, 9, 15)).start == at(2026, 1, 29, 8)


def test_serializes_and_is_registered_as_a_plugin():
    timetable = DigdagTimetable("weekly", "Sun, 10:00:00", LA)
    again = DigdagTimetable.deserialize(timetable.serialize())
    assert (again.kind, again.spec, again.summary) == ("weekly", "Sun, 10:00:00", "weekly>: Sun, 10:00:00")
    assert again._timezone.name == "America/Los_Angeles"
    from airflow import plugins_manager
    from airflow.serialization.encoders import encode_timetable

    assert (
        "airflow_cmdexec_provider.dig.timetable.DigdagTimetable" in plugins_manager.get_timetables_plugins()
    )
    assert encode_timetable(timetable)["__var"] == timetable.serialize()


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        ("daily", "10:00", "not HH:MM:SS"),
        ("hourly", "61:00", "out of range"),
        ("weekly", "Someday,10:00:00", "weekday"),
        ("monthly", "32,10:00:00", "1 to 31"),
        ("minutes_interval", "90", "1 to 59"),
        ("daily", True, "needs a value"),
    ],
)
def test_bad_values_say_what_is_expected(kind, spec, message):
    with pytest.raises(CmdExecConfigError, match=message):
        DigdagTimetable(kind, spec, LA)


def test_missed_sessions_run_after_an_outage_unless_older_than_skip_delayed_by():
    """Digdag's scheduler backfills the sessions it missed while down; skip_delayed_by drops those
    whose run time is more than that ago (Digdag's example: minutes_interval 1, skip_delayed_by 3m)."""
    now = pendulum.now("UTC").replace(second=0, microsecond=0)
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)
    last = DataInterval(now - pendulum.duration(minutes=10), now - pendulum.duration(minutes=10))
    every_minute = DigdagTimetable("minutes_interval", "1", "UTC")
    assert every_minute.next_dagrun_info(
        last_automated_data_interval=last, restriction=restriction
    ).logical_date == (now - pendulum.duration(minutes=9))
    skipping = DigdagTimetable("minutes_interval", "1", "UTC", skip_delayed_by=180)
    info = skipping.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    assert now - pendulum.duration(minutes=3) <= info.run_after <= now - pendulum.duration(minutes=2)


def test_start_and_end_dates_bound_the_sessions_in_the_workflow_timezone():
    daily = DigdagTimetable("daily", "10:00:00", LA, start="2099-03-01", end="2099-03-02")
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)
    first = daily.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert first.logical_date == at(2099, 3, 1)  # not before start, whenever the schedule begins
    second = daily.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=restriction)
    assert second.logical_date == at(2099, 3, 2)  # end is included
    assert (
        daily.next_dagrun_info(last_automated_data_interval=second.data_interval, restriction=restriction)
        is None
    )
    again = DigdagTimetable.deserialize(daily.serialize())
    assert (again.start, again.end, again.skip_delayed_by) == ("2099-03-01", "2099-03-02", None)
    with pytest.raises(CmdExecConfigError, match="not a date YYYY-MM-DD"):
        DigdagTimetable("daily", "10:00:00", LA, start="March")


def test_a_workflow_with_schedule_options_loads_them(tmp_path):
    from airflow_cmdexec_provider.dig import load_project

    (tmp_path / "bounded.dig").write_text(
        "timezone: Asia/Tokyo\n"
        "schedule:\n  hourly>: 05:00\n  start: 2099-01-01\n  end: 2099-12-31\n  skip_delayed_by: 1h\n"
        "+a:\n  echo>: ${session_time}\n"
    )
    dag = load_project(tmp_path)["bounded"]
    assert dag.catchup  # missed sessions run, as in Digdag
    timetable = dag.timetable
    assert (timetable.start, timetable.end, timetable.skip_delayed_by) == ("2099-01-01", "2099-12-31", 3600)
