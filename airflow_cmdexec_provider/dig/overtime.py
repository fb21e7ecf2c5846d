"""Digdag's ``schedule: {skip_on_overtime: true}``: a scheduled session does not run while an earlier
session of the same workflow is still running.

Digdag decides it when the schedule fires (``ScheduleExecutor``): with an attempt of the workflow
still active, it creates no session and moves on to the next schedule time. Airflow's scheduler has
no such rule (``max_active_runs`` delays the next run, it does not skip it), so the run is created
and its first task, :class:`SkipOnOvertimeOperator` (``_skip_on_overtime``, upstream of every other
task of the workflow, ``sla:`` included), skips it: the run ends with every task skipped, and the
task's log names the run that is still active.

Which runs count, and the decisions taken here:

- Only **scheduled** runs are skipped, as in Digdag, whose manual and backfilled sessions ignore the
  option; a manual run, a backfill and ``airflow dags test`` always run.
- An earlier session is one with an earlier logical date (Digdag's session time), still **queued or
  running**. The task asks how many runs of the DAG are active (one call); when it is the only one
  it runs at once. Otherwise it looks at the run before it, and past the runs that it skipped
  itself (they ended at once, "success" with every task skipped, while the session that made them
  skip may still be running), up to ``LOOKBACK`` runs back.
- A run started by hand with no logical date (Airflow 3's default for manual runs) has no place in
  that order, so it does not make a scheduled session skip. Digdag would skip it (any active
  attempt counts); here the scheduled session runs beside it. The log says so when it happens.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context

TASK_ID = "_skip_on_overtime"
ACTIVE = ("queued", "running")
LOOKBACK = 100  # runs looked at, at most, past the runs this task skipped


class SkipOnOvertimeOperator(BaseOperator):
    """Skip this scheduled run while an earlier run of the DAG is still queued or running."""

    ui_color = "#e8e8e8"

    def __init__(self, *, workflow: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workflow = workflow

    def execute(self, context: Context) -> None:
        dag_run = context["dag_run"]
        run_type = _text(getattr(dag_run, "run_type", ""))
        if run_type != "scheduled":
            self.log.info(
                "skip_on_overtime: this is a %s run, which always runs (Digdag skips scheduled sessions "
                "only)",
                run_type or "manual",
            )
            return
        session = dag_run.logical_date
        active = _active_runs(self.dag_id)
        if active <= 1 or session is None:  # this run alone (a scheduled run always has a logical date)
            self.log.info("skip_on_overtime: no other run of workflow %s is active", self.workflow)
            return
        earlier = self._active_earlier_run(session)
        if earlier is None:
            self.log.info(
                "skip_on_overtime: %d other run(s) of workflow %s are active, none of them an earlier "
                "session (a run started by hand without a logical date, or a later one): this session "
                "runs",
                active - 1,
                self.workflow,
            )
            return
        message = (
            f"skip_on_overtime: the session of {_iso(earlier.logical_date)} of workflow {self.workflow} "
            f"(run {earlier.run_id}) is still {_text(earlier.state)}, so this session "
            f"({_iso(session)}) is skipped, as Digdag skips it; every task of this run is skipped"
        )
        self.log.info("%s", message)  # the task log shows a skip's reason only if it is logged
        raise AirflowSkipException(message)

    def _active_earlier_run(self, session: datetime) -> Any | None:
        """The nearest earlier run that is still queued or running, looking past the runs that this
        task skipped; None if the run before is a finished session that was not skipped."""
        before = session
        for _ in range(LOOKBACK):
            previous = _run_before(self.dag_id, before)
            if previous is None:
                return None
            if _text(previous.state) in ACTIVE:
                return previous
            if _task_state(self.dag_id, previous.run_id, self.task_id) != "skipped":
                return None
            before = previous.logical_date
        return None


# -- the execution API, through the task's supervisor ---------------------------------------------


def _active_runs(dag_id: str) -> int:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.get_dr_count(dag_id=dag_id, states=list(ACTIVE))


def _run_before(dag_id: str, logical_date: datetime) -> Any | None:
    from airflow.sdk.execution_time.comms import GetPreviousDagRun, PreviousDagRunResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    answer = SUPERVISOR_COMMS.send(GetPreviousDagRun(dag_id=dag_id, logical_date=logical_date))
    return answer.dag_run if isinstance(answer, PreviousDagRunResult) else None


def _task_state(dag_id: str, run_id: str, task_id: str) -> str | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=[task_id], run_ids=[run_id])
    state = states.get(run_id, {}).get(task_id)
    return None if state is None else _text(state)


def _text(value: Any) -> str:
    """``scheduled`` for DagRunType.SCHEDULED (a str enum) or "scheduled"."""
    return str(getattr(value, "value", value) or "")


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "(no logical date)"
