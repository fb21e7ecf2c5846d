"""Digdag's ``sla:``: when a workflow run is not finished by a deadline, run its SLA tasks.

What Digdag does (``AttemptBuilder``, ``SlaCalculator``, ``SessionMonitorExecutor``,
``WorkflowExecutor.addSlaMonitorTasks``):

- ``time: HH:MM[:SS]`` is the first such wall-clock time, in the workflow's ``timezone``, at or
  after the run's *run time* (the scheduled time, not the session time and not when it really
  started; that time plus 24 hours when it has passed that day); ``duration: HH:MM[:SS]`` is that
  long after the run time. Exactly one of the two.
- At the deadline, if the run is still going, Digdag adds tasks to it, next to the running ones:
  ``^sla^alert`` (a notification "SLA violation", unless ``alert: false``), ``^sla^fail`` (a task
  failing with "SLA violation", which fails the run, when ``fail: true``) and the ``+tasks`` of
  ``sla:``, with the workflow's params. A run finished by then gets none of them.

Here the loader builds those tasks up front, in a TaskGroup ``_sla`` beside the workflow's tasks:
``_sla._deadline`` (:class:`SlaOperator`) waits for the deadline, then ``_sla._fail`` and the
``+tasks`` run after it. The waiting task is a sensor in ``reschedule`` mode: between its checks
it holds no worker slot and no triggerer slot, and it works the same under ``airflow dags test``
(which runs one task at a time, so there the SLA tasks run only if the deadline has passed when the
sensor first looks). It checks every 5 s at first, then every quarter of the time it has waited,
at most every 60 s, and at the deadline itself: a run finished in time is complete at the next
check, so at most 60 s later, and that check skips the SLA tasks. The Airflow run's ``run_after``
is Digdag's run time: the schedule's run time for a scheduled run (``timetable.py``), the moment
of the trigger for a manual one. The alert is an ERROR line "SLA violation" in the task's log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context

KEYS = ("time", "duration", "alert", "fail")
# A task instance in one of these states will not run again in this run unless cleared.
_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_CLOCK = re.compile(r"(\d+):(\d+)(?::(\d+))?")
_BOOLEANS = {True: True, False: False, "true": True, "false": False}


@dataclass(frozen=True)
class Sla:
    option: str  # "time" or "duration"
    hours: int
    minutes: int
    seconds: int
    alert: bool
    fail: bool


def parse(config: Mapping[str, Any]) -> tuple[Sla | None, list[tuple[str | None, str, str]]]:
    """The SLA of a workflow's ``sla:`` mapping, or the problems with it as ``(key, construct,
    message)``. Digdag's checks: exactly one of ``time``/``duration``, in ``HH:MM`` or ``HH:MM:SS``;
    no key but those, ``alert``, ``fail`` and ``+tasks``."""
    problems: list[tuple[str | None, str, str]] = []
    for key in config:
        if not key.startswith("+") and key not in KEYS:
            problems.append(
                (key, f"sla: {key}", "is not an SLA option: give time or duration, alert, fail and +tasks")
            )
    given = [k for k in ("time", "duration") if k in config]
    if len(given) != 1:
        problems.append((None, "sla", "give either time: HH:MM[:SS] or duration: HH:MM[:SS], not both"))
        return None, problems
    option = given[0]
    match = _CLOCK.fullmatch(str(config[option]).strip())
    numbers = [int(n or 0) for n in match.groups()] if match else []
    if not numbers or (option == "time" and (numbers[0] > 23 or numbers[1] > 59 or numbers[2] > 59)):
        problems.append((option, f"sla: {option}: {config[option]}", "needs to be HH:MM or HH:MM:SS"))
    flags = {}
    for key, default in (("alert", True), ("fail", False)):
        value = config.get(key, default)
        flags[key] = _BOOLEANS.get(value.strip() if isinstance(value, str) else value)
        if flags[key] is None:
            problems.append((key, f"sla: {key}: {value}", "must be true or false"))
    if problems:
        return None, problems
    hours, minutes, seconds = numbers
    return Sla(option, hours, minutes, seconds, alert=bool(flags["alert"]), fail=bool(flags["fail"])), []


def deadline(sla: Sla, run_time: datetime, timezone: str) -> datetime:
    """Digdag's trigger time of ``sla`` for a run whose run time is ``run_time``."""
    if sla.option == "duration":
        return run_time + timedelta(hours=sla.hours, minutes=sla.minutes, seconds=sla.seconds)
    local = pendulum.instance(run_time).in_timezone(timezone)
    # Digdag sets the hour, minute and second of the run time's local day and keeps the rest
    # (the milliseconds); if that is before the run time, it adds one day (24 hours).
    due = local.set(hour=sla.hours, minute=sla.minutes, second=sla.seconds)
    if due < local:
        due = due.add(hours=24)
    return due


class SlaOperator(BaseSensorOperator):
    """Waits for the deadline of a workflow's ``sla:``; then succeeds, so that the SLA tasks after it
    run, if any task of the run outside ``sla_group`` is still unfinished; skips them all (itself
    included) once every such task is finished first.

    :param sla: the parsed ``sla:`` of the workflow.
    :param timezone: the workflow's ``timezone`` (for ``time:``).
    :param sla_group: the id of the TaskGroup holding this task and the SLA tasks.
    :param workflow: the Digdag workflow name, for the messages.
    """

    ui_color = "#fbe9e7"

    def __init__(self, *, sla: Sla, timezone: str, sla_group: str, workflow: str, **kwargs: Any) -> None:
        # Checks at most every 60 s (see _get_next_poke_interval); as a sensor it must not time out
        # before the deadline, which a duration may put days away.
        super().__init__(mode="reschedule", poke_interval=60, timeout=timedelta(days=3650), **kwargs)
        self.sla = sla
        self.timezone = timezone
        self.sla_group = sla_group
        self.workflow = workflow
        self._left = 0.0

    def poke(self, context: Context) -> bool:
        dag_run = context["dag_run"]
        due = deadline(self.sla, dag_run.run_after, self.timezone)
        states = context["ti"].get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id])
        prefix = f"{self.sla_group}."
        unfinished = sorted(
            task_id
            for task_id, state in states.get(dag_run.run_id, {}).items()
            if not task_id.startswith(prefix) and state not in _FINISHED
        )
        if not unfinished:
            message = (
                f"workflow {self.workflow} finished before its SLA deadline {due.isoformat()}: "
                "the SLA tasks do not run"
            )
            self.log.info("%s", message)
            raise AirflowSkipException(message)
        now = pendulum.now("UTC")
        if now >= due:
            report = self.log.error if self.sla.alert else self.log.info
            report(
                "SLA violation: workflow %s is not finished at its deadline %s (sla: %s %02d:%02d:%02d); "
                "not finished: %s. The SLA tasks run now.",
                self.workflow,
                due.isoformat(),
                self.sla.option,
                self.sla.hours,
                self.sla.minutes,
                self.sla.seconds,
                ", ".join(unfinished),
            )
            return True
        self._left = (due - now).total_seconds()
        self.log.info(
            "SLA deadline %s; %d task(s) not finished yet: %s",
            due.isoformat(),
            len(unfinished),
            ", ".join(unfinished[:10]) + (", ..." if len(unfinished) > 10 else ""),
        )
        return False

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        """BaseSensorOperator's hook for the wait before the next check: a quarter of the time waited
        so far, between 5 and 60 s, and never past the deadline."""
        waited = float(run_duration())
        return max(1.0, min(self._left, max(5.0, min(60.0, waited / 4))))
