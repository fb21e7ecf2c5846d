"""``for_each>``, ``loop>`` and ``for_range>`` over values known only when the task runs
(``for_each>: {table: ${tables}}``, ``loop>: ${n}``): Airflow's mapped TaskGroups.

Digdag evaluates the generator's config when the task runs and generates one ``_do`` per iteration
(``ForEachOperatorFactory`` & co.). Here the loader compiles ``_do`` once, inside a mapped TaskGroup
``<task>.iteration``, after a task ``<task>._values`` (:class:`LoopValuesOperator`) that evaluates
the values with the task's params (stored values included) and returns the iterations, Digdag's
names and exports (``unroll.ITERATIONS``, the functions the loader unrolls literal values with).
Airflow expands the group to one copy per iteration; each task of a copy reads its iteration (one
XCom read) and takes its exports as Digdag's generated task does, and its name
(``+wf+each^sub+for-0=table=0=users``) for ``task_name``. ``_end`` after the group lets the tasks
after the loop run when there is no iteration at all (Airflow skips an empty mapped group), and
fails when an iteration failed.

Digdag runs the iterations one after another unless ``_parallel`` is set, and stops at the first
that fails. Airflow runs mapped copies side by side, so in a loop without ``_parallel`` each task
that starts a copy first waits for the previous copy to end (reschedule, no worker slot held while
waiting), and is skipped, with the copies after it, when the previous copy failed.
``_parallel: {limit: N}`` lets at most N copies of each task run at once.

Airflow maps at most ``[core] max_map_length`` copies (1024 by default); a longer list fails the
``_values`` task, naming the setting.

Not inside such a loop (load errors): another loop over ``${...}`` (Airflow maps one level of
groups), ``if>`` and ``_error`` (their branches and handlers would have to be mapped as well),
``require>`` and ``sla:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSkipException

from airflow_cmdexec_provider import stores
from airflow_cmdexec_provider.dig import unroll
from airflow_cmdexec_provider.dig.operators import _MessageOperator
from airflow_cmdexec_provider.exceptions import CmdExecConfigError

if TYPE_CHECKING:
    from airflow.sdk import Context

ITERATION_NAME = "+<iteration>"  # in a compiled task's Digdag name: the iteration's, once known
_DONE = frozenset({"success", "skipped", "failed", "upstream_failed", "removed"})
_FAILED = frozenset({"failed", "upstream_failed"})
WAIT_SECONDS = 2.0  # between looks at the previous copy, while it runs


@dataclass(frozen=True)
class LoopInfo:
    """What a task compiled inside a run-time loop knows of it."""

    values_task: str  # the task id of the loop's _values task
    group: str  # the group id of the mapped group
    sequential: bool  # no _parallel: a copy waits for the one before it
    direct: bool = False  # the task is the whole _do (its own _export is the iteration's)


class LoopValuesOperator(_MessageOperator):
    """``<task>._values``: the loop's iterations, from its config evaluated with its params."""

    ui_color = "#f1eef8"

    def __init__(self, *, loop_kind: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loop_kind = loop_kind

    def _execute(self, context: Context) -> Any:  # the iterations: a list, which Airflow maps over
        log = stores.inherited_log(self, context["ti"])
        self.expand_digdag(self.digdag_params(context, log, self._project_dir()))
        try:
            iterations = unroll.ITERATIONS[self.loop_kind](self.message)
        except unroll.BadLoop as exc:
            raise CmdExecConfigError(f"Task {self.task_label}: {self.loop_kind}>: {exc}") from exc
        from airflow.configuration import conf

        most = conf.getint("core", "max_map_length", fallback=1024)
        if len(iterations) > most:
            raise CmdExecConfigError(
                f"Task {self.task_label}: {self.loop_kind}> has {len(iterations)} iterations; Airflow maps "
                f"at most {most} copies of a task group ([core] max_map_length): raise that setting, or "
                "loop over fewer values"
            )
        self.log.info(
            "%s>: %d iteration(s)%s",
            self.loop_kind,
            len(iterations),
            "".join(f"\n  {name}: {export}" for name, export in iterations[:50]),
        )
        return [{"name": name, "export": export} for name, export in iterations]

    def act(self) -> None:  # the iterations are computed in _execute
        return None


def iteration(context: Context, loop: LoopInfo) -> dict[str, Any]:
    """This copy's iteration: ``{"name": ..., "export": {...}}``."""
    ti = context["ti"]
    values = ti.xcom_pull(task_ids=loop.values_task)
    index = getattr(ti, "map_index", -1)
    if not isinstance(values, list) or not 0 <= index < len(values):
        raise CmdExecConfigError(
            f"the iterations of {loop.values_task} are not readable for copy {index} of {loop.group}"
        )
    found: dict[str, Any] = values[index]
    return found


def wait_for_previous_copy(task: Any, context: Context, loop: LoopInfo) -> None:
    """In a loop without ``_parallel``: reschedule while the copy before this one runs, skip when it
    failed or was stopped (Digdag stops a sequential loop at its first failure)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    ti = context["ti"]
    index = getattr(ti, "map_index", -1)
    if index <= 0 or not loop.sequential or _upstream_inside(task, loop.group):
        return
    prefix = loop.group + "."
    members = [t for t in task.dag.task_dict if t.startswith(prefix)]
    answer = RuntimeTaskInstance.get_task_states(
        dag_id=task.dag_id, task_ids=members, run_ids=[ti.run_id], map_index=index - 1
    )
    states = {key: str(getattr(s, "value", s)) for key, s in (answer.get(ti.run_id) or {}).items()}
    previous = {t: states.get(f"{t}_{index - 1}") for t in members}
    stop = None
    if any(state in _FAILED for state in previous.values()):
        stop = (
            f"iteration {index - 1} of the loop failed: Digdag stops a loop without _parallel at its "
            "first failure, so this iteration and the ones after it do not run"
        )
    starts = [t for t in members if not _upstream_inside(task.dag.task_dict[t], loop.group)]
    if stop is None and any(previous.get(t) == "skipped" for t in starts):
        stop = f"iteration {index - 1} of the loop was stopped: so is this one"
    if stop is not None:
        task.log.info("%s", stop)  # the task log shows a skip's reason only if it is logged
        raise AirflowSkipException(stop)
    if not all(state in _DONE for state in previous.values()):
        task.log.info("Waiting for iteration %d of the loop to end (Digdag runs them one by one)", index - 1)
        raise AirflowRescheduleException(  # type: ignore[no-untyped-call]  # Airflow: unannotated
            datetime.now(UTC) + timedelta(seconds=WAIT_SECONDS)
        )


def _upstream_inside(task: Any, group: str) -> bool:
    return any(up.startswith(group + ".") for up in task.upstream_task_ids)
