"""Digdag's ``schedule:`` as an Airflow timetable whose logical date is Digdag's ``session_time``.

Digdag schedules a session at a *session time* and runs it a fixed delay later
(``digdag-docs/src/scheduling_workflow.rst``): ``daily>: 10:00:00`` has the session time 00:00 of
each day and runs at 10:00; ``hourly>: 30:00`` the top of each hour, run at :30; ``weekly>:
Sun,09:00:00`` Sunday 00:00, run at 09:00; ``monthly>: 1,09:00:00`` the 1st at 00:00, run at 09:00;
``minutes_interval>: M`` and ``cron>: EXPR`` run at the session time itself. All in the workflow's
timezone; the run time is the session time plus the delay in seconds, as Digdag computes it (so on
a daylight-saving day ``daily>: 10:00:00`` runs at 11:00 or 09:00 wall-clock time, as in Digdag).
Here each run's data interval is ``[session time, run time]``, so its logical date (the interval's
start) is the session time, which ``params.runtime_params`` turns into ``session_time``; its
``_get_prev``/``_get_next`` give ``last_session_time``/``next_session_time``. A new schedule
starts with the first session whose run time is still ahead, as Digdag's does; after the scheduler
was down, every missed session runs (the DAG has ``catchup=True``), as Digdag's scheduler
backfills them, except those whose run time is more than ``skip_delayed_by`` ago. ``start`` and
``end`` (dates, ``end`` included) bound the session times.

The class is registered by the provider's Airflow plugin (``dig.plugin``) so that the scheduler
can deserialize it.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from airflow._shared.timezones.timezone import coerce_datetime, parse_timezone, utcnow
from airflow.timetables._cron import CronMixin
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable

from airflow_cmdexec_provider.exceptions import CmdExecConfigError

KINDS = ("hourly", "daily", "weekly", "monthly", "minutes_interval", "cron")
_DAYS = {
    name: i
    for i, names in enumerate(
        [
            ("sun", "sunday"),
            ("mon", "monday"),
            ("tue", "tuesday"),
            ("wed", "wednesday"),
            ("thu", "thursday"),
            ("fri", "friday"),
            ("sat", "saturday"),
        ]
    )
    for name in names
}


def _clock(text: str, parts: int, kind: str) -> int:
    """``HH:MM:SS`` (parts=3) or ``MM:SS`` (parts=2) as seconds."""
    if not re.fullmatch(r"\d{1,2}(:\d{1,2}){" + str(parts - 1) + "}", text.strip()):
        form = "HH:MM:SS" if parts == 3 else "MM:SS"
        raise CmdExecConfigError(f"{kind}>: {text!r} is not {form}")
    numbers = [int(n) for n in text.strip().split(":")]
    limits = [24, 60, 60][-parts:]
    if any(n >= limit for n, limit in zip(numbers, limits, strict=True)):
        raise CmdExecConfigError(f"{kind}>: {text!r} is out of range")
    seconds = 0
    for n in numbers:
        seconds = seconds * 60 + n
    return seconds


def cron_and_delay(kind: str, spec: Any) -> tuple[str, int]:
    """The cron expression of the session times and the delay (seconds) to the run, as in Digdag."""
    text = str(spec).strip() if isinstance(spec, (str, int)) and not isinstance(spec, bool) else None
    if not text:
        raise CmdExecConfigError(f"{kind}>: needs a value, got {spec!r}")
    if kind == "hourly":
        return "0 * * * *", _clock(text, 2, kind)
    if kind == "daily":
        return "0 0 * * *", _clock(text, 3, kind)
    if kind in ("weekly", "monthly"):
        day, _, clock = text.partition(",")
        day = day.strip()
        if kind == "weekly":
            if day.lower() not in _DAYS:
                raise CmdExecConfigError(f"weekly>: {text!r}: the day must be a weekday name such as Sun")
            return f"0 0 * * {_DAYS[day.lower()]}", _clock(clock, 3, kind)
        if not day.isdigit() or not 1 <= int(day) <= 31:
            raise CmdExecConfigError(f"monthly>: {text!r}: the day must be a day of the month, 1 to 31")
        return f"0 0 {int(day)} * *", _clock(clock, 3, kind)
    if kind == "minutes_interval":
        if not text.isdigit() or not 1 <= int(text) <= 59:
            raise CmdExecConfigError(f"minutes_interval>: {text!r} must be a number of minutes from 1 to 59")
        return f"*/{int(text)} * * * *", 0
    if kind == "cron":
        return text, 0
    raise CmdExecConfigError(f"unknown schedule {kind}>; use one of {', '.join(k + '>' for k in KINDS)}")


class DigdagTimetable(CronMixin, Timetable):
    """Runs a Digdag ``schedule:``; the logical date of each run is its ``session_time``.

    :param kind: ``hourly``, ``daily``, ``weekly``, ``monthly``, ``minutes_interval`` or ``cron``.
    :param spec: the value written after ``kind>:``, e.g. ``"10:00:00"``.
    :param timezone: the workflow's timezone.
    """

    def __init__(
        self,
        kind: str,
        spec: str,
        timezone: Any,
        start: str | None = None,
        end: str | None = None,
        skip_delayed_by: int | None = None,
    ) -> None:
        cron, delay = cron_and_delay(kind, spec)
        super().__init__(cron, timezone)
        self.kind = kind
        self.spec = str(spec)
        self.delay = datetime.timedelta(seconds=delay)
        self.start = start
        self.end = end
        self.skip_delayed_by = skip_delayed_by
        # start/end are dates of the workflow's timezone: sessions from start 00:00 to the end of end.
        self._start = self._local_midnight(start, "start") if start else None
        self._end = self._local_midnight(end, "end") + datetime.timedelta(days=1) if end else None
        if self._start and self._end and self._end <= self._start:
            raise CmdExecConfigError(f"schedule: end {end} is before start {start}")
        self.description = f"Digdag {kind}>: {self.spec}"
        self.validate()

    def _local_midnight(self, text: str, key: str) -> Any:
        try:
            day = datetime.date.fromisoformat(str(text).strip())
        except ValueError:
            raise CmdExecConfigError(f"schedule: {key}: {text!r} is not a date YYYY-MM-DD") from None
        return coerce_datetime(datetime.datetime(day.year, day.month, day.day, tzinfo=self._timezone))

    @property
    def summary(self) -> str:
        return f"{self.kind}>: {self.spec}"

    def serialize(self) -> dict[str, Any]:
        from airflow.serialization.encoders import encode_timezone

        return {
            "kind": self.kind,
            "spec": self.spec,
            "timezone": encode_timezone(self._timezone),
            "start": self.start,
            "end": self.end,
            "skip_delayed_by": self.skip_delayed_by,
        }

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> DigdagTimetable:
        return cls(
            data["kind"],
            data["spec"],
            parse_timezone(data["timezone"]),
            data.get("start"),
            data.get("end"),
            data.get("skip_delayed_by"),
        )

    def infer_manual_data_interval(self, *, run_after: Any) -> DataInterval:
        """A manual run belongs to the newest session that is due at ``run_after``."""
        session = self._align_to_prev(coerce_datetime(run_after - self.delay))
        return DataInterval(session, session + self.delay)

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        now = coerce_datetime(utcnow())
        due = now - self.delay  # sessions up to here have reached their run time
        if last_automated_data_interval is not None:
            # After the scheduler was down, Digdag runs every missed session (its "backfill"), but
            # those whose run time is more than skip_delayed_by ago.
            session = self._get_next(last_automated_data_interval.start)
            if not restriction.catchup:  # skip the missed sessions but the newest
                session = max(session, self._align_to_prev(due))
            if self.skip_delayed_by is not None:
                late = due - datetime.timedelta(seconds=self.skip_delayed_by)
                session = max(session, self._align_to_next(late))
        else:  # a new schedule starts with the first session that is not due yet, as Digdag's does
            session = self._align_to_next(due)
            if restriction.earliest is not None:
                session = max(session, self._align_to_next(restriction.earliest))
        if self._start is not None:
            session = max(session, self._align_to_next(self._start))
        if (self._end is not None and session >= self._end) or (
            restriction.latest is not None and session > restriction.latest
        ):
            return None
        return DagRunInfo.interval(start=session, end=session + self.delay)
