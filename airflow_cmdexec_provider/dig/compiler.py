"""Compile one loaded ``.dig`` workflow into an Airflow DAG, as Digdag's ``WorkflowCompiler`` builds it.

Digdag's model, and ours:

- a key ``+name`` is a task; a task with an operator (``sh>:``, ``_type:``) runs it, any other is a
  group whose children run in file order (``_parallel``: at once, or in batches of ``limit``;
  ``_background``: not waiting for the previous sibling; ``_after``: explicit edges). A group
  becomes a TaskGroup; edges go from the leaves of a node to the roots of the next one.
- ``_export`` is a scope's params: the root's are the DAG's ``params``, a group's its TaskGroup's
  ``default_args["params"]``, a task's own go with its local keys into the operator's ``params``
  (ranked with them, above upstream stored values; in Digdag a task's own export ranks just below
  the runtime params, so it differs only for a built-in name, which Digdag does not let you set).
- ``_check`` runs after its task and before the next sibling; ``_error`` runs when a task of its
  scope fails (``trigger_rule="one_failed"``), with the ``error`` param; an ``_end`` task after
  the main path keeps such a run failed, as in Digdag. Those of a group are inside its TaskGroup
  (``_check``, ``_error``), those of an operator task next to it (``<task>_check``, ``<task>_error``).
- ``call>``, literal ``for_each>``, ``loop>`` and ``for_range>`` generate their tasks at load time
  (Digdag: at run time) into a TaskGroup named after the task; Digdag names them ``<task>^sub+...``.

Every construct the loader does not support (``constructs.py``) is collected as a Problem with its
file and line, and the workflow then fails to load as a whole: never a DAG with tasks missing.
"""

from __future__ import annotations

import difflib
import itertools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import reduce
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, BaseOperator, TaskGroup, TriggerRule
from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput
from airflow.sdk.definitions.taskgroup import MappedTaskGroup, TaskGroup as _TaskGroup
from airflow.sdk.definitions.xcom_arg import XComArg

from airflow_cmdexec_provider.config import parse_duration
from airflow_cmdexec_provider.dig import overtime, require, sla, unroll
from airflow_cmdexec_provider.dig.constructs import CONSTRUCTS, operator_construct
from airflow_cmdexec_provider.dig.errors import DigLoadError, Problem
from airflow_cmdexec_provider.dig.loops import ITERATION_NAME, LoopInfo, LoopValuesOperator
from airflow_cmdexec_provider.dig.operators import (
    DigdagTask,
    DigPyOperator,
    DigRbOperator,
    DigShOperator,
    EchoOperator,
    FailOperator,
    IfOperator,
    WaitOperator,
)
from airflow_cmdexec_provider.dig.timetable import KINDS, DigdagTimetable
from airflow_cmdexec_provider.dig.yaml_dialect import DigMap, FileLoader, plain
from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.expressions import (
    SECRET_KEY,
    expressions_in,
    has_expression,
    js_string,
    secret_key,
    unsupported_reason,
)
from airflow_cmdexec_provider.params import ENV_KEY, deep_merge

log = logging.getLogger(__name__)

# Keys a group may hold besides its +children (Digdag's WorkflowCompiler.GROUPING_TASK_CONFIG_KEYS).
GROUP_KEYS = frozenset(
    {
        "timezone",
        "schedule",
        "sla",
        "_parallel",
        "_background",
        "_after",
        "_error",
        "_check",
        "_retry",
        "_export",
        "_secrets",
        "_disable",
    }
)
# Directives of an operator task that the loader reads.
TASK_KEYS = frozenset(
    {
        "_export",
        "_error",
        "_check",
        "_retry",
        "_env",
        "_workdir",
        "_type",
        "_command",
        "_background",
        "_after",
        "_disable",
    }
)
GENERATORS = ("call", "for_each", "loop", "for_range")
# Operator settings per operator (Digdag reads them from the task's merged config), and the
# keys each namespace (sh:/py:/rb:) may hold.
SETTINGS = {"sh": ("shell",), "py": ("python",), "rb": ("require", "ruby")}
OPERATOR_CLASSES = {"sh": DigShOperator, "py": DigPyOperator, "rb": DigRbOperator}
_EXPRESSION = re.compile(r"\$\{[^{}]*\}")


def task_id(name: str) -> str:
    """An Airflow id for a Digdag name: ``+`` stripped, characters outside ``[A-Za-z0-9_-]`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name.lstrip("+")) or "_"


def expression_keys(layers: list[Mapping[str, Any]]) -> list[str]:
    """The keys holding ``${...}``, in evaluation order: outer layers first, each in written order."""
    order: list[str] = []
    for layer in layers:
        for key, value in layer.items():
            if has_expression(value):
                if key in order:
                    order.remove(key)
                order.append(key)
    return order


@dataclass
class Node:
    """What one Digdag task compiled to: where edges into and out of it attach, and all its tasks."""

    roots: list[BaseOperator] = field(default_factory=list)
    leaves: list[BaseOperator] = field(default_factory=list)
    tasks: list[BaseOperator] = field(default_factory=list)


def connect(up: Node, down: Node) -> None:
    for leaf in up.leaves:
        for root in down.roots:
            leaf.set_downstream(root)


@dataclass(frozen=True)
class Scope:
    """Where a task is compiled: the Digdag name of its parent, the TaskGroup, the exports above it."""

    name: str  # Digdag full name of the parent, e.g. "+wf+group" or "+wf+repeat^sub"
    group: _TaskGroup | None
    exports: tuple[Mapping[str, Any], ...]  # every _export from the root down
    pending: Mapping[str, Any]  # exports that no TaskGroup holds (a task's own, for its _check/_error)
    workdir: str  # project-relative folder where call> finds files ("" = the project)
    calls: tuple[Path, ...]  # the files being called, against recursion
    loop: LoopInfo | None = None  # inside the _do of a loop over ${...} (loops.py)

    @property
    def config(self) -> dict[str, Any]:
        return reduce(deep_merge, self.exports, {})

    def enter(self, name: str, group: _TaskGroup | None, export: Mapping[str, Any]) -> Scope:
        return replace(self, name=name, group=group, exports=(*self.exports, export), pending={})


class Compiler:
    """Compiles one workflow file; ``compile()`` returns the DAG or raises DigLoadError."""

    def __init__(self, project: Path, file: Path, dag_id: str) -> None:
        self.project = project
        self.file = file
        self.dag_id = dag_id
        self.problems: list[Problem] = []
        self.files_read: list[Path] = []
        self.ids: dict[str, str] = {}  # full Airflow id -> Digdag name, against collisions
        self.has_error_tasks = False
        self.skip_on_overtime = False  # schedule: skip_on_overtime: true
        self.tz: Any = pendulum.timezone("UTC")  # the workflow's timezone, once compile() read it

    # -- problems --------------------------------------------------------------------------------
    def problem(self, where: DigMap, key: str | None, construct: str, message: str) -> None:
        file, line = where.where(key)
        self.problems.append(Problem(file, line, construct, message))

    def unsupported(
        self, where: DigMap, key: str | None, construct_key: str, written: str | None = None
    ) -> None:
        construct = CONSTRUCTS[construct_key]
        self.problem(where, key, written or construct.written.replace("`", "").rstrip(":"), construct.airflow)

    def check_expressions(self, value: Any, where: DigMap, key: str, secrets: bool = False) -> None:
        """Every ``${...}`` must be of the JavaScript that is evaluated when the task runs
        (``javascript.py``); one outside it is a load error with its reason. ``secrets``: where
        Digdag resolves ``${secret:key}`` (the ``sh>`` command, ``_env`` values)."""
        if isinstance(value, str):
            for e in expressions_in(value):
                if (secret := secret_key(e)) is not None:
                    if not secrets:
                        self.problem(
                            where,
                            key,
                            f"${{{e}}}",
                            "Digdag resolves secrets only in the sh> command and in _env values; "
                            "pass the secret to the task through _env",
                        )
                    elif not SECRET_KEY.fullmatch(secret):
                        self.problem(
                            where,
                            key,
                            f"${{{e}}}",
                            "not a secret key: words of letters, digits, _ and -, separated by dots",
                        )
                elif (reason := unsupported_reason(e)) is not None:
                    self.problem(where, key, f"${{{e}}}", f"{reason}; {CONSTRUCTS['javascript'].airflow}")
            rest = _EXPRESSION.sub("", value)
            if "${" in rest:  # an expression with braces inside, e.g. ${moment().format('{x}')}
                self.unsupported(where, key, "javascript", rest[rest.index("${") :][:60])
        elif isinstance(value, Mapping):
            for k, v in value.items():
                inner = value if isinstance(value, DigMap) else where
                self.check_expressions(v, inner, k, secrets or (k == "_env" and key == "_export"))
        elif isinstance(value, list):
            for v in value:
                self.check_expressions(v, where, key, secrets)

    def mapping(self, config: DigMap, key: str) -> DigMap:
        value = config.get(key)
        if value is None:
            return DigMap(config.file, config.line)
        if not isinstance(value, DigMap):
            self.problem(config, key, key, f"must be a mapping of keys, got {js_string(value)!r}")
            return DigMap(config.file, config.line)
        return value

    def new_id(self, scope: Scope, name: str, digdag_name: str, where: DigMap) -> str | None:
        """The Airflow id for ``name`` in ``scope``; None (and a problem) if another task has it."""
        local = task_id(name)
        # Airflow's TaskGroup.child_id is unannotated.
        full = scope.group.child_id(local) if scope.group is not None else local  # type: ignore[no-untyped-call]
        if full in self.ids:
            self.problem(
                where,
                None,
                digdag_name,
                f"its Airflow id {full!r} is also the id of {self.ids[full]}; rename one of the two tasks",
            )
            return None
        self.ids[full] = digdag_name
        return local

    # -- the workflow ----------------------------------------------------------------------------
    def compile(self) -> DAG | None:
        """The DAG, or None for Digdag's old project file (``digdag.dig`` holding only ``workflows:``,
        the list of the project's workflow files), which is not a workflow."""
        loader = FileLoader(self.file)
        try:
            root = loader.load()
        finally:
            self.files_read.extend(loader.read)
        if set(root) == {"workflows"} and isinstance(root["workflows"], list):
            return None
        timezone = self.tz = self.timezone(root)
        timetable = self.schedule(root, timezone)
        export = self.mapping(root, "_export")
        self.check_expressions(export, export, "_export")
        dag = DAG(
            self.dag_id,
            schedule=timetable,
            start_date=pendulum.datetime(2000, 1, 1, tz=timezone),
            catchup=True,  # the timetable starts a new schedule now and runs missed sessions, as Digdag
            params=plain(export),
            tags=["digdag"],
            description=f"Digdag workflow {self.file.name}",
        )
        name = f"+{self.file.stem}"
        with dag:
            scope = Scope(name, None, (export,), {}, "", (self.file,))
            node = self.content(root, scope, name)
            if self.has_error_tasks:  # keeps a run failed when an _error task succeeded
                connect(node, self.placeholder(scope, "_end", "(the end of the main path)", root))
            if "sla" in root:
                self.sla(root, scope, timezone)
            if self.skip_on_overtime:
                self.overtime_gate(dag, root, scope)
        if self.problems:
            raise DigLoadError(self.problems, [self.file.stem])
        return dag

    def sla(self, root: DigMap, scope: Scope, timezone: Any) -> None:
        """The TaskGroup ``_sla`` of the workflow's ``sla:`` (``sla.py``), beside its tasks: the
        deadline task, then the ``fail`` task and the ``+tasks``, which see the workflow's params."""
        config = self.mapping(root, "sla")
        parsed, problems = sla.parse(config)
        for key, construct, message in problems:
            self.problem(config, key, construct, message)
        name = f"{scope.name}^sla"
        group_id = self.new_id(scope, "_sla", name, config)
        if parsed is None or group_id is None:
            return
        group = _task_group(group_id, {})
        with group:
            inner = scope.enter(name, group, {})
            deadline_id = self.new_id(inner, "_deadline", f"{name} (its deadline)", config)
            if deadline_id is None:
                return
            waiting = sla.SlaOperator(
                task_id=deadline_id,
                sla=parsed,
                timezone=timezone.name,
                sla_group=group_id,
                workflow=self.file.stem,
            )
            after = Node([waiting], [waiting], [waiting])
            if parsed.fail:
                failing = DigMap(config.file, config.line)
                failing["fail>"] = "SLA violation"
                connect(after, self.operator_task(f"{name}^fail", failing, inner, "_fail"))
            tasks = DigMap(config.file, config.line)
            for key, value in config.items():
                if key.startswith("+"):
                    tasks[key] = value
                    tasks.key_lines[key] = config.where(key)
            if tasks:
                connect(after, self.group_body(tasks, inner))

    def overtime_gate(self, dag: DAG, root: DigMap, scope: Scope) -> None:
        """``schedule: skip_on_overtime: true``: the task ``_skip_on_overtime`` (``overtime.py``)
        before every task that has no upstream, the SLA's included: when it skips the run, so does
        every task after it."""
        schedule = self.mapping(root, "schedule")
        starts = [task for task in dag.tasks if not task.upstream_list]
        gate_id = self.new_id(scope, overtime.TASK_ID, f"{scope.name} (skip_on_overtime)", schedule)
        if gate_id is None:
            return
        gate = overtime.SkipOnOvertimeOperator(task_id=gate_id, workflow=self.file.stem)
        for task in starts:
            gate.set_downstream(task)

    def timezone(self, root: DigMap) -> Any:
        name = root.get("timezone", "UTC")
        try:
            return pendulum.timezone(str(name))
        except Exception:  # noqa: BLE001 - pendulum raises several types for unknown zones
            self.problem(
                root,
                "timezone",
                f"timezone: {name}",
                "unknown timezone; use a name such as UTC or America/Los_Angeles",
            )
            return pendulum.timezone("UTC")

    def schedule(self, root: DigMap, timezone: Any) -> DigdagTimetable | None:
        schedule = root.get("schedule")
        if schedule is None:
            return None
        if not isinstance(schedule, DigMap):
            self.problem(root, "schedule", "schedule", "must be a mapping such as {daily>: 07:00:00}")
            return None
        kinds = [k for k in schedule if k.endswith(">")]
        options: dict[str, Any] = {}
        for key in (k for k in schedule if not k.endswith(">")):
            if key in ("start", "end"):
                options[key] = str(schedule[key])
            elif key == "skip_on_overtime":
                if isinstance(schedule[key], bool):
                    self.skip_on_overtime = schedule[key]
                else:
                    self.problem(
                        schedule, key, f"schedule: skip_on_overtime: {schedule[key]}", "write true or false"
                    )
            elif key == "skip_delayed_by":
                options[key] = parse_duration(schedule[key])
                if options[key] is None:
                    self.problem(
                        schedule,
                        key,
                        f"schedule: skip_delayed_by: {schedule[key]}",
                        "write e.g. 30s, 10m or 1h",
                    )
            else:
                self.problem(
                    schedule,
                    key,
                    f"schedule: {key}",
                    "unknown schedule option; Digdag's are start, end, skip_delayed_by and skip_on_overtime",
                )
        if len(kinds) != 1 or kinds[0][:-1] not in KINDS:
            self.problem(
                root,
                "schedule",
                f"schedule: {', '.join(kinds) or '(none)'}",
                f"give exactly one of {', '.join(k + '>' for k in KINDS)}",
            )
            return None
        try:
            return DigdagTimetable(kinds[0][:-1], schedule[kinds[0]], timezone, **options)
        except Exception as exc:  # noqa: BLE001 - a bad value or cron expression
            self.problem(schedule, kinds[0], f"{kinds[0]} {schedule[kinds[0]]}", str(exc))
            return None

    # -- tasks -----------------------------------------------------------------------------------
    def content(self, config: DigMap, scope: Scope, name: str) -> Node:
        """The body of a task that holds tasks (the workflow, a group, a called file, a generated group)."""
        if self.operator_of(config) is not None:  # a workflow or generated task that is one operator
            return self.operator_task(name, config, scope)
        return self.group_body(config, scope)

    def node(self, name: str, config: DigMap, scope: Scope) -> Node:
        """One task (``+name``) of a group."""
        if config.get("_disable") is True:
            return self.placeholder(scope, name.rpartition("+")[2], name, config)
        if self.operator_of(config) is not None:
            return self.operator_task(name, config, scope)
        return self.group_node(name, config, scope)

    def group_node(self, name: str, config: DigMap, scope: Scope, local: str | None = None) -> Node:
        """A group: a TaskGroup holding its children; ``local`` is its id when not the end of ``name``."""
        airflow_id = self.new_id(scope, local or name.rpartition("+")[2] or name, name, config)
        if airflow_id is None:
            return Node()
        export = self.mapping(config, "_export")
        self.check_expressions(export, export, "_export")
        group = _task_group(airflow_id, deep_merge(scope.pending, export))
        with group:
            return self.group_body(config, scope.enter(name, group, export))

    def group_body(self, config: DigMap, scope: Scope) -> Node:
        for key in config:
            if key.startswith("+"):
                continue
            if key not in GROUP_KEYS:
                # Digdag suggests the directive a misspelt key may be (its EditDistance, 0.5)
                close = difflib.get_close_matches(key, sorted(GROUP_KEYS), n=1, cutoff=0.5)
                hint = f"did you mean {close[0]}? Else p" if close else "p"
                self.problem(
                    config,
                    key,
                    key,
                    "a group takes no local keys (Digdag: 'contains invalid keys'); "
                    f"{hint}ut params in _export or in a task",
                )
            elif key == "_retry":
                self.unsupported(config, key, "_retry group")
            elif key == "_secrets":
                self.unsupported(config, key, "_secrets")
        children: list[tuple[str, DigMap, Node]] = []
        for key, value in config.items():
            if not key.startswith("+"):
                continue
            if not isinstance(value, DigMap):
                self.problem(
                    config, key, key, f"a task must be a mapping (e.g. sh>: ...), got {js_string(value)!r}"
                )
                continue
            children.append((key, value, self.node(scope.name + key, value, scope)))
        node = (
            self.wire(children, config)
            if children
            else self.placeholder(scope, "_empty", "(an empty group)", config)
        )
        return self.specials(node, config, scope, scope.name, "")

    def placeholder(self, scope: Scope, local: str, digdag_name: str, where: DigMap) -> Node:
        """A task that does nothing: a disabled task, an empty group, the end of the main path."""
        airflow_id = self.new_id(scope, local, digdag_name, where)
        if airflow_id is None:
            return Node()
        task = EmptyOperator(task_id=airflow_id)
        return Node([task], [task], [task])

    def wire(self, children: list[tuple[str, DigMap, Node]], config: DigMap) -> Node:
        """Edges between the children, as WorkflowCompiler makes them; the group's roots and leaves."""
        with_upstream: set[int] = set()
        with_downstream: set[int] = set()

        def edge(up: int, down: int) -> None:
            connect(children[up][2], children[down][2])
            with_downstream.add(up)
            with_upstream.add(down)

        parallel, limit = self.parallel(config)
        if parallel:
            names: dict[str, int] = {}
            for index, (key, child, _) in enumerate(children):
                if child.get("_background") is True:
                    self.problem(
                        child,
                        "_background",
                        "_background",
                        "is not allowed in a _parallel group (Digdag: unnecessary); remove it",
                    )
                for after in self.after_names(child):
                    wanted = after if after.startswith("+") else "+" + after
                    if wanted in names:
                        edge(names[wanted], index)
                    else:
                        self.problem(
                            child,
                            "_after",
                            f"_after: {after}",
                            "names no earlier sibling task (Digdag: 'Dependency task does not exist')",
                        )
                names[key] = index
            if limit:
                batches = [
                    list(range(i, min(i + limit, len(children)))) for i in range(0, len(children), limit)
                ]
                for previous, batch in itertools.pairwise(batches):
                    for down in batch:
                        for up in previous:
                            edge(up, down)
        else:
            before: list[int] = []
            for index, (_, child, _) in enumerate(children):
                if "_after" in child:
                    self.problem(child, "_after", "_after", "is valid only in a group with _parallel: true")
                if child.get("_background") is True:
                    before.append(index)
                    continue
                for up in before:
                    edge(up, index)
                before = [index]
        return Node(
            [t for i, c in enumerate(children) if i not in with_upstream for t in c[2].roots],
            [t for i, c in enumerate(children) if i not in with_downstream for t in c[2].leaves],
            [t for c in children for t in c[2].tasks],
        )

    def parallel(self, config: DigMap) -> tuple[bool, int]:
        value = config.get("_parallel")
        if value is None or isinstance(value, bool):
            return bool(value), 0
        if isinstance(value, DigMap) and isinstance(value.get("limit"), int) and value["limit"] > 0:
            return True, value["limit"]
        if isinstance(value, str) and "${" in value:
            self.unsupported(config, "_parallel", "dynamic", f"_parallel: {value}")
        else:
            self.problem(
                config,
                "_parallel",
                f"_parallel: {js_string(value)}",
                "must be true, false or {limit: N} with N > 0",
            )
        return False, 0

    def after_names(self, child: DigMap) -> list[str]:
        value = child.get("_after")
        if value is None:
            return []
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            self.problem(child, "_after", "_after", "must be a task name or a list of task names")
            return []
        return names

    def specials(self, node: Node, config: DigMap, scope: Scope, name: str, id_prefix: str) -> Node:
        """Add the ``_check`` and ``_error`` tasks of the task ``name`` (compiled to ``node``)."""
        check = config.get("_check")
        if check is not None:
            checked = self.special(check, config, "_check", scope, name + "^check", id_prefix + "^check")
            connect(node, checked)
            node = Node(node.roots, checked.leaves, node.tasks + checked.tasks)
        error = config.get("_error")
        if error is not None and scope.loop is not None:
            self.problem(config, "_error", "_error", _INSIDE_RUNTIME_LOOP)
        elif error is not None:
            handler = self.special(error, config, "_error", scope, name + "^error", id_prefix + "^error")
            if handler.tasks:
                self.has_error_tasks = True
                for root in handler.roots:
                    root.trigger_rule = TriggerRule.ONE_FAILED
                    for task in node.tasks:
                        task.set_downstream(root)
                failing = [t.task_id for t in node.tasks if isinstance(t, DigdagTask)]
                for task in handler.tasks:
                    if isinstance(task, DigdagTask):
                        task.error_from = failing
            node = Node(node.roots, node.leaves, node.tasks + handler.tasks)
        return node

    def special(self, body: Any, config: DigMap, key: str, scope: Scope, name: str, local: str) -> Node:
        if not isinstance(body, DigMap):
            self.problem(
                config, key, key, f"must be a task (a mapping such as {{sh>: ...}}), got {js_string(body)!r}"
            )
            return Node()
        if self.operator_of(body) is not None:
            return self.operator_task(name, body, scope, local)
        return self.group_node(name, body, scope, local)

    # -- operator tasks --------------------------------------------------------------------------
    def operator_of(self, config: DigMap) -> tuple[str, Any, str] | None:
        """``(operator, command, key)`` of an operator task (``op>: command`` or ``_type``/``_command``)."""
        keys = [k for k in config if k.endswith(">")]
        if len(keys) > 1:
            self.problem(config, keys[1], ", ".join(keys), "a task can't have more than one operator")
        if keys:
            return keys[0][:-1], config[keys[0]], keys[0]
        if "_type" in config:
            return str(config["_type"]), config.get("_command"), "_type"
        return None

    def operator_task(self, name: str, config: DigMap, scope: Scope, local: str | None = None) -> Node:
        operator = self.operator_of(config)
        assert operator is not None, "called only for a task that has an operator"
        kind, command, op_key = operator
        construct = operator_construct(kind)
        for key in config:
            if key.startswith("+"):
                self.problem(config, key, key, f"a task with {op_key} can't have subtasks")
            elif key == "_secrets":
                self.unsupported(config, key, "_secrets")
            elif (
                # an unsupported operator (if>, for_range>, ...) is a load error, and uses _do itself
                construct.supported
                and key.startswith("_")
                and key not in TASK_KEYS
                and not (kind in ("for_each", "loop", "for_range") and key in ("_do", "_parallel"))
                and not (kind == "if" and key in ("_do", "_else_do"))
            ):
                log.warning(
                    "%s, line %s: %s is not used by %s (Digdag ignores it too)",
                    *config.where(key),
                    key,
                    op_key,
                )
        if not construct.supported:
            self.problem(config, op_key, f"{kind}>", construct.airflow)
            return Node()
        own_export = self.mapping(config, "_export")
        local_keys = DigMap(config.file, config.line)
        for key, value in config.items():
            if not key.startswith(("_", "+")) and not key.endswith(">"):
                local_keys[key] = value
                local_keys.key_lines[key] = config.where(key)
        for key, value in config.items():
            if key not in ("_do", "_else_do", "_check", "_error"):
                command_text = kind == "sh" and key in (op_key, "_command")
                self.check_expressions(value, config, key, command_text or key == "_env")
        airflow_id = self.new_id(scope, local or name.rpartition("+")[2] or name, name, config)
        if airflow_id is None:
            return Node()
        if kind in GENERATORS:
            if "_retry" in config:
                self.unsupported(config, "_retry", "_retry group", f"_retry on {kind}>")
            node = self.generated(kind, command, name, airflow_id, config, own_export, local_keys, scope)
        elif kind in ("if", "require") and scope.loop is not None:
            self.problem(config, op_key, f"{kind}>", _INSIDE_RUNTIME_LOOP)
            return Node()
        elif kind == "if":
            node = self.branch(command, name, airflow_id, config, own_export, local_keys, scope)
        elif kind == "require":
            node = self.required(command, airflow_id, config, op_key)
        else:
            node = self.command_task(kind, command, name, airflow_id, config, own_export, local_keys, scope)
        own_scope = replace(
            scope, exports=(*scope.exports, own_export), pending=deep_merge(scope.pending, own_export)
        )
        return self.specials(node, config, own_scope, name, airflow_id)

    def command_task(
        self,
        kind: str,
        command: Any,
        name: str,
        airflow_id: str,
        config: DigMap,
        own_export: DigMap,
        local_keys: DigMap,
        scope: Scope,
        branch_ids: Mapping[str, str] | None = None,
    ) -> Node:
        if command is None or isinstance(command, (DigMap, list)):
            self.problem(
                config, f"{kind}>" if f"{kind}>" in config else "_command", f"{kind}>", "needs a command text"
            )
            return Node()
        command = js_string(command)
        settings = deep_merge(deep_merge(scope.config, own_export), local_keys)
        exported_env = settings.get("_env")
        if exported_env is not None and not isinstance(exported_env, Mapping):
            self.problem(
                config, None, "_env", "an exported _env must be a mapping of variable names to values"
            )
        task_env = deep_merge(
            exported_env if isinstance(exported_env, Mapping) else {}, self.mapping(config, "_env")
        )
        workdir = config.get("_workdir", settings.get("_workdir", ""))
        kwargs: dict[str, Any] = {
            "task_id": airflow_id,
            "project_dir": str(self.project),
            "digdag_task_name": name,
            "params": plain(local_keys),
            "dig_local_keys": list(local_keys),
            "dig_export": plain(deep_merge(scope.pending, own_export)),
            "dig_expression_keys": expression_keys([*scope.exports, own_export]),
            "env": plain(task_env) or None,
            "workdir": self.workdir(workdir, config),
            "docker": self.setting_mapping(settings, "docker", config),
            "ecs": self.setting_mapping(settings, "ecs", config),
            **self.retry(config),
        }
        if scope.loop is not None:
            kwargs["dig_loop"] = scope.loop
        self.check_env(task_env, config)
        if kind == "echo":
            task: BaseOperator = EchoOperator(message=command, **kwargs)
        elif kind == "if":
            task = IfOperator(condition=command, **(branch_ids or {}), **kwargs)
        elif kind == "wait":
            if "${" not in command and parse_duration(command) is None:
                self.problem(
                    config,
                    "wait>" if "wait>" in config else "_command",
                    f"wait>: {command}",
                    "is not a duration; write e.g. 10s, 5m, 1h 30m or 1d",
                )
            task = WaitOperator(message=command, **kwargs)
        elif kind == "fail":
            task = FailOperator(message=command, **kwargs)
        else:
            names = SETTINGS[kind]
            namespace = self.namespace(settings, kind, names, config)
            values = {n: plain(settings.get(n)) for n in names}
            if kind == "sh":
                task = DigShOperator(command=command, shell=values["shell"], sh=namespace, **kwargs)
            elif kind == "py":
                task = DigPyOperator(method=command, python=values["python"], py=namespace, **kwargs)
            else:
                task = DigRbOperator(
                    method=command, require=values["require"], ruby=values["ruby"], rb=namespace, **kwargs
                )
        return Node([task], [task], [task])

    def namespace(
        self, settings: Mapping[str, Any], kind: str, names: tuple[str, ...], config: DigMap
    ) -> Any:
        """The ``sh:``/``py:``/``rb:`` namespace, without the keys the operator does not read (Digdag
        ignores them)."""
        value = settings.get(kind)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(config, None, f"{kind}:", f"must be a mapping such as {{{names[0]}: ...}}")
            return None
        ignored = sorted(set(value) - set(names))
        if ignored:
            log.warning(
                "%s, line %s: %s: %s are not %s> settings (Digdag ignores them too)",
                *config.where(None),
                kind,
                ", ".join(ignored),
                kind,
            )
        return {k: plain(v) for k, v in value.items() if k in names}

    def setting_mapping(self, settings: Mapping[str, Any], key: str, config: DigMap) -> dict[str, Any] | None:
        value = settings.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(config, key if key in config else None, f"{key}:", "must be a mapping of settings")
            return None
        settings_dict: dict[str, Any] = plain(value)
        return settings_dict

    def workdir(self, value: Any, config: DigMap) -> str:
        if not isinstance(value, str):
            self.problem(config, "_workdir", "_workdir", "must be a folder name relative to the project")
            return ""
        if "${" in value:
            return value  # evaluated when the task runs; the operator checks it then
        target = (self.project / value).resolve()
        if Path(value).is_absolute() or (target != self.project and self.project not in target.parents):
            self.problem(
                config,
                "_workdir",
                f"_workdir: {value}",
                f"must be a folder inside the project {self.project}",
            )
            return ""
        return value

    def check_env(self, env: Mapping[str, Any], config: DigMap) -> None:
        for key in env:
            if not ENV_KEY.fullmatch(key):
                self.problem(
                    config,
                    "_env",
                    f"_env: {key}",
                    "environment variable names must match [a-zA-Z_][a-zA-Z_0-9]*",
                )

    def retry(self, config: DigMap) -> dict[str, Any]:
        value = config.get("_retry")
        if value is None:
            return {}
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return {"retries": value, "retry_delay": timedelta(0)}
        if isinstance(value, DigMap) and isinstance(value.get("limit"), int):
            kwargs: dict[str, Any] = {
                "retries": value["limit"],
                "retry_delay": timedelta(seconds=int(value.get("interval") or 0)),
            }
            kind = value.get("interval_type", "constant")
            if kind == "exponential":
                kwargs["retry_exponential_backoff"] = 2.0
            elif kind != "constant":
                self.problem(
                    value, "interval_type", f"interval_type: {kind}", "must be constant or exponential"
                )
            if value.get("max_interval") is not None:
                kwargs["max_retry_delay"] = timedelta(seconds=int(value["max_interval"]))
            return kwargs
        self.problem(
            config,
            "_retry",
            f"_retry: {js_string(value)}",
            "must be a number of retries or {limit: N, interval: S, interval_type: constant|exponential}",
        )
        return {}

    # -- call>, for_each>, loop>, for_range> -----------------------------------------------------
    def generated(
        self,
        kind: str,
        command: Any,
        name: str,
        airflow_id: str,
        config: DigMap,
        own_export: DigMap,
        local_keys: DigMap,
        scope: Scope,
    ) -> Node:
        """The tasks Digdag generates when ``call>``/``for_each>``/``loop>``/``for_range>`` runs, as a
        TaskGroup."""
        workdir = scope.workdir
        calls = scope.calls
        export: Mapping[str, Any] = own_export
        if kind == "call":
            called = self.called(command, config, scope)
            if called is None:
                return Node()
            path, body = called
            workdir = "" if path.parent == self.project else str(path.parent.relative_to(self.project))
            calls = (*calls, path)
            called_export = self.mapping(body, "_export")
            self.check_expressions(called_export, called_export, "_export")
            export = reduce(
                deep_merge, [own_export, {"_workdir": workdir} if workdir else {}, called_export], {}
            )
        elif unroll.is_dynamic(kind, command, config):
            return self.runtime_loop(kind, command, name, airflow_id, config, own_export, local_keys, scope)
        else:
            generated = unroll.unrolled(self, kind, command, config)
            if generated is None:
                return Node()
            body = generated
        group = _task_group(airflow_id, deep_merge(scope.pending, export))
        with group:
            inner = replace(scope.enter(name + "^sub", group, export), workdir=workdir, calls=calls)
            return self.content(body, inner, name + "^sub")

    def runtime_loop(
        self,
        kind: str,
        command: Any,
        name: str,
        airflow_id: str,
        config: DigMap,
        own_export: DigMap,
        local_keys: DigMap,
        scope: Scope,
    ) -> Node:
        """A loop over ``${...}`` (``loops.py``): the group ``<task>`` holding ``_values`` (the
        iterations, when the task runs), the mapped group ``iteration`` (``_do``, once per
        iteration) and ``_end``."""
        key = next((k for k in ("count", f"{kind}>", "_command") if k in config), "_command")
        written = f"{kind}> over ${{...}}"
        if scope.loop is not None:
            self.problem(
                config,
                key,
                written,
                "cannot be inside another loop over ${...} (Airflow maps one level of task groups); "
                "write one of the two with literal values",
            )
            return Node()
        body = config.get("_do")
        if not isinstance(body, DigMap):
            self.problem(config, key, f"{kind}>", "needs _do: the task to run for each iteration")
            return Node()
        parallel = config.get("_parallel", False)
        limit = None
        if isinstance(parallel, DigMap) and isinstance(parallel.get("limit"), int) and parallel["limit"] > 0:
            limit = parallel["limit"]
        elif not isinstance(parallel, bool):
            self.problem(config, "_parallel", "_parallel", "must be true, false or {limit: N}")
            return Node()
        group = _task_group(airflow_id, deep_merge(scope.pending, own_export))
        with group:
            inner = scope.enter(name + "^sub", group, own_export)
            values_id = self.new_id(inner, "_values", f"{name} (its iterations)", config)
            if values_id is None:
                return Node()
            # The loop task's own keys (loop>'s count is its value): its values may be written with them.
            own = {k: v for k, v in local_keys.items() if (kind, k) != ("loop", "count")}
            values = LoopValuesOperator(
                task_id=values_id,
                loop_kind=kind,
                message=plain(unroll.generator_value(kind, command, config)),
                project_dir=str(self.project),
                digdag_task_name=name,
                params=plain(own),
                dig_local_keys=list(own),
                dig_export=plain(scope.pending),
                dig_expression_keys=expression_keys(list(scope.exports)),
            )
            iteration_id = self.new_id(inner, "iteration", f"{name} (each iteration)", config)
            if iteration_id is None:
                return Node()
            mapped = MappedTaskGroup(
                group_id=iteration_id,
                expand_input=DictOfListsExpandInput({"iteration": XComArg(values)}),
            )
            with mapped:
                loop = LoopInfo(values.task_id, str(mapped.group_id), sequential=parallel is False)
                body_name = name + "^sub" + ITERATION_NAME
                body_scope = replace(scope.enter(body_name, mapped, {}), loop=loop)
                if self.operator_of(body) is not None:
                    body_scope = replace(body_scope, loop=replace(loop, direct=True))
                    node = self.operator_task(body_name, body, body_scope, "do")
                else:
                    node = self.group_body(body, body_scope)
            end_id = self.new_id(inner, "_end", f"{name} (the end of the loop)", config)
            if end_id is None:
                return Node()
            # Runs after the iterations, and also when there is none (Airflow skips an empty mapped
            # group); fails (upstream_failed) when one of them failed.
            end = EmptyOperator(task_id=end_id, trigger_rule=TriggerRule.NONE_FAILED)
        for task in node.tasks:
            if limit is not None:
                task.max_active_tis_per_dagrun = limit
        end.set_upstream(node.leaves or [values])  # the mapped group already follows _values
        return Node([values], [end], [values, *node.tasks, end])

    def branch(
        self,
        command: Any,
        name: str,
        airflow_id: str,
        config: DigMap,
        own_export: DigMap,
        local_keys: DigMap,
        scope: Scope,
    ) -> Node:
        """Digdag's ``if>``, as a TaskGroup: the task ``if`` evaluates the condition when it runs and
        lets ``do`` (``_do``) or ``else_do`` (``_else_do``) run, skipping the other (a branch task);
        ``end`` runs after whichever ran, or after ``if`` alone, so the tasks after it run either way.
        Digdag names the tasks of either branch ``<task>^sub+...``."""
        key = "if>" if "if>" in config else "_command"
        bodies = {k: config[k] for k in ("_do", "_else_do") if k in config}
        if not bodies:
            self.problem(
                config, key, "if>", "needs _do or _else_do (Digdag: '_do or _else_do must be specified')"
            )
            return Node()
        for body_key, body in bodies.items():
            if not isinstance(body, DigMap):
                self.problem(
                    config,
                    body_key,
                    body_key,
                    f"must be a task (a mapping such as {{sh>: ...}}), got {js_string(body)!r}",
                )
                return Node()
        group = _task_group(airflow_id, deep_merge(scope.pending, own_export))
        branches = {"_do": "do", "_else_do": "else_do"}
        with group:
            inner = scope.enter(name, group, own_export)
            ids = {
                "end_task": f"{group.group_id}.end",
                **{
                    ("then_group" if body_key == "_do" else "else_group"): f"{group.group_id}.{branch_id}"
                    for body_key, branch_id in branches.items()
                    if body_key in bodies
                },
            }
            empty = DigMap(config.file, config.line)
            test = self.command_task("if", command, name, "if", config, empty, local_keys, inner, ids)
            if not test.tasks:
                return Node()
            end = EmptyOperator(task_id="end", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
            ending = Node([end], [end], [end])
            connect(test, ending)
            tasks = [*test.tasks, end]
            for body_key, branch_id in branches.items():
                if body_key in bodies:
                    with _task_group(branch_id, {}) as branch_group:
                        branch_scope = inner.enter(name + "^sub", branch_group, {})
                        body = self.content(bodies[body_key], branch_scope, name + "^sub")
                    connect(test, body)
                    connect(body, ending)
                    tasks.extend(body.tasks)
        return Node(test.roots, [end], tasks)

    def required(self, command: Any, airflow_id: str, config: DigMap, op_key: str) -> Node:
        """``require>: workflow`` (``require.py``): a workflow of this project, options written literally."""
        parsed = require.parse(self, command, config, op_key, self.project, self.tz)
        if parsed is None:
            return Node()
        workflow, options = parsed
        prefix = self.dag_id[: -len(self.file.stem)] if self.dag_id.endswith(self.file.stem) else ""
        task = require.RequireOperator(
            task_id=airflow_id,
            required_dag_id=prefix + workflow,
            workflow=workflow,
            **options,
            **self.retry(config),
        )
        return Node([task], [task], [task])

    def called(self, command: Any, config: DigMap, scope: Scope) -> tuple[Path, DigMap] | None:
        key = "call>" if "call>" in config else "_command"
        if not isinstance(command, str) or not command:
            self.problem(config, key, "call>", "needs the name of a workflow file")
            return None
        if "${" in command:
            self.problem(
                config,
                key,
                f"call>: {command}",
                "the file name must be written literally (a later "
                "version may evaluate it when the run starts)",
            )
            return None
        file_name = command if command.endswith(".dig") else command + ".dig"
        path = (self.project / scope.workdir / file_name).resolve()
        if self.project not in path.parents:
            self.problem(
                config, key, f"call>: {command}", f"the file must be inside the project {self.project}"
            )
            return None
        if path in scope.calls:
            chain = " -> ".join(p.name for p in (*scope.calls, path))
            self.problem(config, key, f"call>: {command}", f"calls itself ({chain})")
            return None
        if not path.is_file():
            self.files_read.append(path)  # its creation must invalidate the cache
            self.problem(config, key, f"call>: {command}", f"{path} does not exist")
            return None
        loader = FileLoader(path)
        try:
            body = loader.load()
        except DigLoadError as exc:
            self.problems.extend(exc.problems)
            return None
        finally:
            self.files_read.extend(loader.read)
        return path, body


_INSIDE_RUNTIME_LOOP = (
    "is not supported inside the _do of a loop over ${...}, which Airflow runs as a mapped task group "
    "(its branches or handlers would have to be mapped too); move it out of the loop, or write the "
    "loop's values literally"
)


def _task_group(group_id: str, export: Mapping[str, Any]) -> _TaskGroup:
    """A TaskGroup holding a scope's ``_export`` as ``default_args["params"]`` (see stores.group_exports)."""
    default_args: Any = {"params": plain(export)} if export else {}
    return TaskGroup(group_id, default_args=default_args)


def compile_workflow(
    project: Path, file: Path, dag_id: str
) -> tuple[DAG | None, list[Path], DigLoadError | None]:
    """Compile ``file``; return the DAG (None: not a workflow) or the error, and every file the result
    depends on."""
    compiler = Compiler(project, file, dag_id)
    try:
        return compiler.compile(), compiler.files_read, None
    except DigLoadError as exc:
        return None, compiler.files_read, exc
    except Exception as exc:  # noqa: BLE001 - Airflow refusing what we built: still a load error, never a crash
        message = str(exc) if isinstance(exc, CmdExecConfigError) else f"{type(exc).__name__}: {exc}"
        return None, compiler.files_read, DigLoadError([Problem(file, 1, file.name, message)], [file.stem])
