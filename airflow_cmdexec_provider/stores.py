"""Values stored with ``digdag.env.store``: who stored what, and in which order a task sees them.

Every command task that can store (``py>``, ``rb>``) publishes, besides its XCom ``return_value``
(every value stored so far, for plain Airflow tasks), a *store log* under the XCom key
``cmdexec_stores``: ``{writer: own stores}`` for itself and every command task upstream of it that
stored something; a log that would be empty is not published (one API write less per task) unless a
task reading it may run after a failure of this one (``read_after_a_possible_failure``). A
task merges the logs of its nearest upstream command tasks that can store (walking through plain
Airflow tasks, through command tasks that cannot store, such as ``sh>``, and through command tasks
that left no log because they failed; one that succeeded without a log stored nothing, and nothing
was stored above it) and orders the writers as Digdag does
(``WorkflowExecutor.collectParams``): scope by scope from the DAG down to the task's innermost
TaskGroup, and within a scope in graph order, so that the nearest writer wins and a branch that
stored nothing changes nothing. Tasks at the same position (parallel siblings) are ordered by
definition order (the order in which they were added to the DAG): the later sibling wins. The map
indexes of a mapped (``.expand``) task are merged in map-index order; inside a mapped task group
(a ``.dig`` loop over ``${...}``), a task reads the tasks of its own group in its own copy only.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from typing import Any

STORES_KEY = "cmdexec_stores"
StoreLog = dict[str, dict[str, Any]]


def writer_id(task_id: str, map_index: int | None) -> str:
    return task_id if map_index is None or map_index < 0 else f"{task_id}[{map_index}]"


def _split_writer(writer: str) -> tuple[str, int]:
    if writer.endswith("]") and "[" in writer:
        task_id, _, index = writer[:-1].rpartition("[")
        if index.isdigit():
            return task_id, int(index)
    return writer, -1


def is_command_task(task: Any) -> bool:
    """A CommandOperator, or a mapped one (whose stores are per map index)."""
    from airflow_cmdexec_provider.operators.base import CommandOperator

    if isinstance(task, CommandOperator):
        return True
    operator_class = getattr(task, "operator_class", None)
    return isinstance(operator_class, type) and issubclass(operator_class, CommandOperator)


def can_store(task: Any) -> bool:
    """A command task (mapped or not) whose kind can store values, and so publishes a store log."""
    if not is_command_task(task):
        return False
    operator_class = getattr(task, "operator_class", None)
    return bool(getattr(operator_class if isinstance(operator_class, type) else task, "can_store", True))


def inherited_log(task: Any, ti: Any) -> StoreLog:
    """The store log of every command task upstream of ``task`` in this run.

    Only tasks that can store are asked (one XCom read each, the nearest ones only); the others, and
    plain Airflow tasks, are walked through without any call. A task that can store publishes its log
    only when it is not empty (``CommandOperator._publish``), so a missing log means "nothing stored
    up to here" when the task surely succeeded: it is upstream of a task that ran with the default
    trigger rule (all_success) through tasks that all have it. Otherwise (an error handler after a
    failure, ``all_done``), a missing log may be that of a task that failed: the walk goes on above it.
    """
    log: StoreLog = {}
    seen: set[str] = set()
    succeeded = _all_success(task)
    frontier = [(upstream, succeeded) for upstream in task.upstream_list]
    while frontier:
        upstream, surely_succeeded = frontier.pop()
        if upstream.task_id in seen:
            continue
        seen.add(upstream.task_id)
        if can_store(upstream):
            published = ti.xcom_pull(
                task_ids=upstream.task_id, key=STORES_KEY, **_same_copy(task, upstream, ti)
            )
            logs = published if isinstance(published, list) else [published]
            found = [entry for entry in logs if isinstance(entry, Mapping)]
            for entry in found:
                log.update(entry)
            if found or surely_succeeded:
                continue  # its log already holds everything stored upstream of it, or nothing was
        above = surely_succeeded and _all_success(upstream)
        frontier.extend((further, above) for further in upstream.upstream_list)
    return log


def _same_copy(task: Any, upstream: Any, ti: Any) -> dict[str, Any]:
    """In a mapped task group, an upstream task of the same group is read in this task's copy only
    (Airflow's xcom_pull reads every copy); any other upstream task, in all of its copies."""
    mine = _closest_mapped_group(task)
    if mine is not None and mine is _closest_mapped_group(upstream):
        return {"map_indexes": getattr(ti, "map_index", -1)}
    return {}


def _closest_mapped_group(task: Any) -> Any:
    closest = getattr(task, "get_closest_mapped_task_group", None)
    return closest() if callable(closest) else None


def read_after_a_possible_failure(task: Any) -> bool:
    """Whether a task that reads this task's store log may run even if this task failed: then an empty
    log must be published, else that reader would take the missing log for a failure and walk on
    above it (one XCom read per task above; in a chain of ``all_done`` tasks, all of them).

    The readers are the command tasks downstream, reached through tasks that publish no log (plain
    Airflow tasks, ``sh>``); the walk stops after a task that can store. No API call: the DAG is in
    memory.
    """
    seen: set[str] = set()
    frontier = list(task.downstream_list)
    while frontier:
        downstream = frontier.pop()
        if downstream.task_id in seen:
            continue
        seen.add(downstream.task_id)
        if not _all_success(downstream):
            return True
        if not can_store(downstream):
            frontier.extend(downstream.downstream_list)
    return False


def _all_success(task: Any) -> bool:
    """Whether ``task`` runs only after every task directly upstream of it succeeded."""
    rule = getattr(task, "trigger_rule", "all_success")
    return str(getattr(rule, "value", rule)) == "all_success"


def group_chain(task: Any) -> tuple[str, ...]:
    """The ids of the TaskGroups holding ``task``, outermost first."""
    chain: list[str] = []
    group = getattr(task, "task_group", None)
    while group is not None and getattr(group, "group_id", None) is not None:
        chain.append(group.group_id)
        group = group.parent_group
    return tuple(reversed(chain))


def group_exports(task: Any) -> list[dict[str, Any]]:
    """Each enclosing TaskGroup's ``default_args["params"]`` (a Digdag scope's ``_export``),
    outermost first."""
    exports: list[dict[str, Any]] = []
    group = getattr(task, "task_group", None)
    while group is not None and getattr(group, "group_id", None) is not None:
        params = (getattr(group, "default_args", None) or {}).get("params") or {}
        exports.append(_values(params))
        group = group.parent_group
    return list(reversed(exports))


def _values(params: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values of a params mapping (an Airflow ParamsDict holds Param objects)."""
    dump = getattr(params, "dump", None)
    if callable(dump):
        return dict(dump())
    return {k: getattr(v, "value", v) for k, v in params.items()}


def graph_order(dag: Any) -> dict[str, int]:
    """A topological order of the DAG's tasks, ties broken by definition order."""
    definition = {task_id: i for i, task_id in enumerate(dag.task_dict)}
    waiting = {task_id: len(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}
    ready = [(definition[t], t) for t, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: dict[str, int] = {}
    while ready:
        _, task_id = heapq.heappop(ready)
        order[task_id] = len(order)
        for downstream in dag.task_dict[task_id].downstream_task_ids:
            waiting[downstream] -= 1
            if waiting[downstream] == 0:
                heapq.heappush(ready, (definition[downstream], downstream))
    return order


def stores_by_scope(task: Any, log: Mapping[str, Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The logged stores a task sees, one list per scope (DAG, then each enclosing TaskGroup), each in
    graph order: a writer belongs to the innermost scope it shares with ``task``."""
    chain = group_chain(task)
    order = graph_order(task.dag)
    scopes: list[list[tuple[tuple[int, int], Mapping[str, Any]]]] = [[] for _ in range(len(chain) + 1)]
    for writer, stored in log.items():
        task_id, map_index = _split_writer(writer)
        if task_id not in task.dag.task_dict or not stored:
            continue  # a task no longer in the DAG, or nothing stored
        depth = _common_depth(group_chain(task.dag.task_dict[task_id]), chain)
        scopes[depth].append(((order.get(task_id, len(order)), map_index), stored))
    return [[stored for _, stored in sorted(entries, key=lambda e: e[0])] for entries in scopes]


def _common_depth(a: Sequence[str], b: Sequence[str]) -> int:
    depth = 0
    for x, y in zip(a, b, strict=False):  # the common prefix of two chains of any lengths
        if x != y:
            break
        depth += 1
    return depth
