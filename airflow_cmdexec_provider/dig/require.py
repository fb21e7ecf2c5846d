"""Digdag's ``require>``: wait for another workflow's session of the same session time, starting it
when it does not exist.

What Digdag does (``RequireOperatorFactory``): it looks for the session of the required workflow
(in this project) whose session time is this task's ``session_time`` (default: this session's).
If there is none, it starts one (with ``params``) and waits; if there is one, it waits for it, and
starts it again only as ``rerun_on`` says (``none``, the default: never; ``failed``: when it did not
succeed; ``all``: always). When the required session ends with errors the task fails, unless
``ignore_failure: true``.

Here a session is a DAG run, and its session time the run's logical date (``timetable.py``), so the
required run is the one of the required DAG whose logical date is the session time, whatever
started it (its schedule, a trigger, an earlier ``require>``). :class:`RequireOperator` finds it,
or triggers one (run id ``require__<session time>``, ``params`` as its ``conf``), or clears it to
run it again, once per try (the task state store remembers which run it waits for), then checks
its state between reschedules (a sensor in ``reschedule`` mode: no worker slot while it waits;
every 5 s at first, then every quarter of the time waited, at most every 60 s).
A triggered run of a paused DAG stays queued: the task says so while it waits.

``airflow dags test`` runs one DAG and nothing else: there ``require>`` does not trigger; it
succeeds if the required run of that session time already succeeded (run it first with
``airflow dags test <workflow> <logical date>``) and fails at once otherwise, saying so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_cmdexec_provider.dig.errors import Reporter
from airflow_cmdexec_provider.dig.yaml_dialect import DigMap, plain
from airflow_cmdexec_provider.expressions import has_expression, js_string
from airflow_cmdexec_provider.params import session_time_of

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

RERUN_ON = ("none", "failed", "all")
OPTIONS = ("session_time", "rerun_on", "ignore_failure", "params")
_STATE_KEY = "cmdexec_require"
_DAG_TEST_USER = "dag_test"  # the triggering user of dag.test() / airflow dags test runs


def parse(
    report: Reporter, command: Any, config: DigMap, op_key: str, project: Path, timezone: Any
) -> tuple[str, dict[str, Any]] | None:
    """The required workflow's name and the RequireOperator options of a ``require>`` task, checked
    as the loader checks everything: each problem reported with its key, None if any."""
    workflow = command.strip().removesuffix(".dig") if isinstance(command, str) else ""
    if not workflow or "${" in workflow:
        report.problem(
            config,
            op_key,
            f"require>: {js_string(command)}",
            "name a workflow of this project literally (a ${...} here is not evaluated yet)",
        )
        return None
    problems = 0

    def problem(key: str, construct: str, message: str) -> None:
        nonlocal problems
        problems += 1
        report.problem(config, key, construct, message)

    if not (project / f"{workflow}.dig").is_file():
        problem(op_key, f"require>: {workflow}", f"there is no {workflow}.dig in the project {project}")
    written: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith(("_", "+")) or key.endswith(">"):
            continue
        if key in ("project_id", "project_name", "retry_attempt_name"):
            problem(
                key,
                f"require>: {key}",
                "a workflow of another project (or a retry name) is not supported: load that project "
                "into the same Airflow and require its DAG from a workflow of this one",
            )
        elif key not in OPTIONS:
            log.warning("%s, line %s: %s is not a require> option", *config.where(key), key)
        elif has_expression(value):
            problem(key, f"require>: {key}", "write it literally (${...} is not evaluated here yet)")
        else:
            written[key] = value
    options: dict[str, Any] = {"session_time": None}
    if "session_time" in written:
        parsed = None
        with contextlib.suppress(Exception):  # pendulum raises several types for a bad date
            parsed = pendulum.parse(str(written["session_time"]), tz=timezone)
        if isinstance(parsed, datetime):
            options["session_time"] = parsed
        else:
            problem(
                "session_time",
                f"require>: session_time: {written['session_time']}",
                "write an ISO 8601 time such as 2026-01-30T00:00:00+09:00",
            )
    options["rerun_on"] = str(written.get("rerun_on", "none"))
    if options["rerun_on"] not in RERUN_ON:
        problem("rerun_on", f"require>: rerun_on: {options['rerun_on']}", "give none, failed or all")
    options["ignore_failure"] = written.get("ignore_failure", False)
    if not isinstance(options["ignore_failure"], bool):
        problem(
            "ignore_failure", f"require>: ignore_failure: {options['ignore_failure']}", "give true or false"
        )
    options["run_conf"] = written.get("params") or {}
    if not isinstance(options["run_conf"], Mapping):
        problem("params", "require>: params", "must be a mapping of params")
    options["run_conf"] = plain(options["run_conf"])
    return None if problems else (workflow, options)


class RequireOperator(BaseSensorOperator):
    """Waits for the run of ``required_dag_id`` whose logical date is this task's session time.

    :param required_dag_id: the DAG of the required workflow.
    :param workflow: the required workflow's name, for the messages.
    :param session_time: the session time to require (default: this run's).
    :param rerun_on: ``none``, ``failed`` or ``all``, as in Digdag.
    :param ignore_failure: succeed even when the required run failed.
    :param run_conf: the ``conf`` of a run this task starts (Digdag's ``params``).
    """

    ui_color = "#e8eaf6"

    def __init__(
        self,
        *,
        required_dag_id: str,
        workflow: str,
        session_time: datetime | None = None,
        rerun_on: str = "none",
        ignore_failure: bool = False,
        run_conf: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # A required run may take long: the sensor must not time out before it ends (Digdag waits).
        super().__init__(mode="reschedule", poke_interval=60, timeout=timedelta(days=3650), **kwargs)
        self.required_dag_id = required_dag_id
        self.workflow = workflow
        self.session_time = session_time
        self.rerun_on = rerun_on
        self.ignore_failure = ignore_failure
        self.run_conf = dict(run_conf or {})

    def poke(self, context: Context) -> bool:
        session = self.session_time or session_time_of(context)
        dag_run = context["dag_run"]
        if getattr(dag_run, "triggering_user_name", None) == _DAG_TEST_USER:
            return self._under_dag_test(session)
        run_id = self._required_run(context, session)
        state = _dag_run_state(self.required_dag_id, run_id)
        if state == "success":
            self.log.info("require>: %s (run %s) succeeded", self.workflow, run_id)
            return True
        if state == "failed":
            return self._failed(run_id, session)
        self.log.info(
            "require>: waiting for %s, run %s (session %s), which is %s%s",
            self.workflow,
            run_id,
            session.isoformat(),
            state,
            " (a run of a paused DAG stays queued: unpause it)" if state == "queued" else "",
        )
        return False

    def _get_next_poke_interval(self, started_at: Any, run_duration: Any, poke_count: int) -> float:
        """BaseSensorOperator's hook for the wait before the next check: a quarter of the time waited
        so far, between 5 and 60 s (a short required run is noticed soon, a long one costs few checks)."""
        waited = float(run_duration())
        return max(5.0, min(60.0, waited / 4))

    def _required_run(self, context: Context, session: datetime) -> str:
        """The run id to wait for: decided once per try, remembered in the task state store."""
        ti = context["ti"]
        store = context.get("task_state_store")
        memo = store.get(_STATE_KEY) if store is not None else None
        if isinstance(memo, dict) and memo.get("try") == ti.try_number:
            return str(memo["run_id"])
        run_id = self._start(session)
        if store is not None:
            store.set(_STATE_KEY, {"try": ti.try_number, "run_id": run_id})
        return run_id

    def _start(self, session: datetime) -> str:
        existing = _run_at(self.required_dag_id, session)
        if existing is None:
            run_id = f"require__{session.isoformat()}"
            error = _trigger(self.required_dag_id, run_id, session, self.run_conf, reset=False)
            if error is None:
                self.log.info("require>: started %s, run %s (session %s)", self.workflow, run_id, session)
                return run_id
            existing = _run_at(self.required_dag_id, session)  # started by someone else meanwhile?
            if existing is None:
                raise AirflowFailException(
                    f"require>: could not start workflow {self.workflow} (DAG {self.required_dag_id}) for "
                    f"session {session.isoformat()}: {error}. Check that the DAG is loaded (load_project's "
                    "include) and has no import error"
                )
            return str(existing.run_id)
        state = _state_text(existing.state)
        rerun = self.rerun_on == "all" or (self.rerun_on == "failed" and state == "failed")
        if rerun and state in ("success", "failed"):
            error = _trigger(self.required_dag_id, existing.run_id, session, None, reset=True)
            if error is not None:
                raise AirflowFailException(
                    f"require>: could not run workflow {self.workflow} (run {existing.run_id}) again: {error}"
                )
            self.log.info(
                "require>: cleared %s run %s to run it again (rerun_on: %s)",
                self.workflow,
                existing.run_id,
                self.rerun_on,
            )
        else:
            self.log.info(
                "require>: %s already has run %s for session %s (%s)",
                self.workflow,
                existing.run_id,
                session,
                state,
            )
        return str(existing.run_id)

    def _failed(self, run_id: str, session: datetime) -> bool:
        message = (
            f"require>: workflow {self.workflow} (run {run_id}, session {session.isoformat()}) finished "
            "with errors"
        )
        if self.ignore_failure:
            self.log.warning("%s; ignore_failure is set: going on", message)
            return True
        raise AirflowFailException(f"{message}; set ignore_failure: true to go on anyway")

    def _under_dag_test(self, session: datetime) -> bool:
        existing = _run_at(self.required_dag_id, session)
        state = None if existing is None else _state_text(existing.state)
        if state == "success":
            self.log.info("require>: %s already succeeded for session %s", self.workflow, session.isoformat())
            return True
        if state == "failed":
            return self._failed(existing.run_id, session)  # type: ignore[union-attr]
        raise AirflowFailException(
            f"require>: airflow dags test runs this DAG only, so it cannot run workflow {self.workflow} "
            f"(DAG {self.required_dag_id}); its run for session {session.isoformat()} is "
            f"{'missing' if state is None else state}. Run it first: airflow dags test "
            f"{self.required_dag_id} {session.isoformat()}"
        )


# -- the execution API, through the task's supervisor ---------------------------------------------


def _run_at(dag_id: str, session: datetime) -> Any | None:
    """The run of ``dag_id`` whose logical date is ``session``, or None. The API finds the newest run
    *before* a date: one microsecond after the session time, that is the run at it if there is one."""
    from airflow.sdk.execution_time.comms import GetPreviousDagRun, PreviousDagRunResult
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    answer = SUPERVISOR_COMMS.send(
        GetPreviousDagRun(dag_id=dag_id, logical_date=session + timedelta(microseconds=1))
    )
    run = answer.dag_run if isinstance(answer, PreviousDagRunResult) else None
    if run is None or run.logical_date is None or run.logical_date != session:
        return None
    return run


def _dag_run_state(dag_id: str, run_id: str) -> str:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return _state_text(RuntimeTaskInstance.get_dagrun_state(dag_id, run_id))


def _state_text(state: Any) -> str:
    """``success`` for DagRunState.SUCCESS (a str enum) or "success"."""
    return str(getattr(state, "value", state))


def _trigger(
    dag_id: str, run_id: str, session: datetime, conf: Mapping[str, Any] | None, reset: bool
) -> str | None:
    """Trigger (or, with ``reset``, clear) a run; None on success, else what the API said."""
    from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    answer = SUPERVISOR_COMMS.send(
        TriggerDagRun(
            dag_id=dag_id,
            run_id=run_id,
            logical_date=session,
            conf=dict(conf) if conf else None,
            reset_dag_run=reset,
        )
    )
    if isinstance(answer, ErrorResponse):
        return f"{answer.error.value}: {answer.detail}"
    return None
