"""The operators a loaded ``.dig`` workflow runs: sh>/py>/rb> with Digdag's evaluation, echo>, fail>,
if>, wait>.

A Digdag task evaluates ``${...}`` in *every* value of its config, not only in the command
(``OperatorManager``/``ConfigEvalEngine``): its own keys in the order written, each seeing the
params below it and the own keys evaluated before it (``size: ${size}`` takes the exported
``size``; ``b: ${a} too`` the local ``a``), exported params, and operator settings
(``docker: {image: ...}``). The :class:`DigdagTask` mixin does that when the task runs, on top of
the operators' ``templating="digdag"`` (which evaluates ``command``/``method``/``env``).

The loader says which params are the task's own (``dig_local_keys``, its ``params``) and gives its
own ``_export`` apart (``dig_export``): Airflow also marks a TaskGroup's ``default_args["params"]``
(a group's ``_export``) as the task's own, which would wrongly rank a group export above upstream
stored values, and a local key must be evaluated against the value below it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.standard.operators.branch import BranchMixIn
from airflow.sdk.exceptions import AirflowFailException

from airflow_cmdexec_provider import stores
from airflow_cmdexec_provider.config import digdag_secret, parse_duration
from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.expressions import evaluate, expressions_in, secret_key
from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator
from airflow_cmdexec_provider.operators.base import CommandOperator
from airflow_cmdexec_provider.params import deep_merge

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_cmdexec_provider.dig.loops import LoopInfo


class DigdagTask(CommandOperator):
    """What every operator of a loaded ``.dig`` workflow adds to CommandOperator.

    :param dig_local_keys: the task's own keys (its ``params``), in the order written.
    :param dig_export: the task's own ``_export``: above the stored values, below its own keys.
    :param dig_expression_keys: the exported params whose ``.dig`` value holds ``${...}``, in
        evaluation order (from the root scope down).
    """

    # Operator settings that may hold ${...} besides the operator's template fields.
    dig_settings: ClassVar[tuple[str, ...]] = ("docker", "ecs", "workdir")
    # Where Digdag resolves ${secret:key} (ShOperatorFactory, GrantedPrivilegedVariables).
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        dig_local_keys: Sequence[str] = (),
        dig_export: Mapping[str, Any] | None = None,
        dig_expression_keys: Sequence[str] = (),
        dig_loop: LoopInfo | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(templating="digdag", **kwargs)
        self.dig_local_keys = tuple(dig_local_keys)
        self.dig_export = dict(dig_export or {})
        self.dig_expression_keys = tuple(dig_expression_keys)
        self.dig_loop = dig_loop
        self._iteration: dict[str, Any] | None = None

    def execute(self, context: Context) -> Any:
        if self.dig_loop is not None:
            from airflow_cmdexec_provider.dig import loops

            loops.wait_for_previous_copy(self, context, self.dig_loop)
            self._iteration = loops.iteration(context, self.dig_loop)
            self.digdag_task_name = (self.digdag_task_name or "").replace(
                loops.ITERATION_NAME, self._iteration["name"]
            )
        return super().execute(context)

    def scope_exports(self, context: Context) -> list[dict[str, Any]]:
        """In a copy of a run-time loop's ``_do``, the iteration's exports are those of the mapped
        group's scope (or the task's own, when it is the whole ``_do``), as Digdag exports them in
        its generated task."""
        exports = super().scope_exports(context)
        loop = self.dig_loop
        if loop is None or loop.direct or self._iteration is None:
            return exports
        chain = stores.group_chain(self)  # exports[0] is the DAG's; exports[1:] follow this chain
        if loop.group in chain:
            depth = 1 + chain.index(loop.group)
            exports[depth] = deep_merge(exports[depth], self._iteration["export"])
        return exports

    def digdag_params(
        self,
        context: Context,
        log: stores.StoreLog,
        project_dir: Path | None = None,
        local: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        # The task's own keys as the .dig file wrote them (copied at parse time: dag_run.conf cannot
        # change them), evaluated one by one against the params below them.
        own = {k: v for k, v in self.local_params.items() if k in self.dig_local_keys}
        export = self.dig_export
        if self.dig_loop is not None and self.dig_loop.direct and self._iteration is not None:
            export = deep_merge(export, self._iteration["export"])  # the generated task's _export
        params = deep_merge(super().digdag_params(context, log, project_dir, local={}), export)
        # A ${secret:...} in a param (only an exported _env may hold one) stays as written, as Digdag's
        # ConfigEvalEngine leaves it: secrets are resolved only into env and the sh> command.
        for key in self.dig_expression_keys:
            if key in params and key not in own:
                params[key] = evaluate(
                    params[key], params, f"Task {self.task_label}: param {key}", _secret_reference
                )
        for key in self.dig_local_keys:
            value = evaluate(own.get(key), params, f"Task {self.task_label}: param {key}", _secret_reference)
            params = deep_merge(params, {key: value})
        return params

    def expand_digdag(self, params: Mapping[str, Any]) -> None:
        for name in (*self.template_fields, *self.dig_settings):
            template = getattr(self, name)
            secret = self._secret if name in self.secret_fields else None
            if name == "env" and secret is not None and _mentions_secret(template):
                # The environment will hold a secret: backends keep it out of what others can read
                # (ECS RunTask overrides, Kubernetes pod specs).
                self.secret_env = True
            setattr(self, name, evaluate(template, params, f"Task {self.task_label}: {name}", secret))

    def _secret(self, key: str) -> str:
        return digdag_secret(key, self.task_label)


def _secret_reference(key: str) -> str:
    return f"${{secret:{key}}}"


def _mentions_secret(value: Any) -> bool:
    """Whether the text as written (strings inside mappings too) holds a ``${secret:...}``."""
    if isinstance(value, str):
        return any(secret_key(e) is not None for e in expressions_in(value))
    if isinstance(value, Mapping):
        return any(_mentions_secret(v) for v in value.values())
    return False


class DigShOperator(DigdagTask, ShOperator):
    """``sh>`` of a ``.dig`` file. ``${secret:key}`` in its command text and ``_env`` values is the
    Airflow Variable ``cmdexec_secret.<key>``, masked in the logs (``config.digdag_secret``)."""

    dig_settings = (*DigdagTask.dig_settings, "shell", "sh")
    secret_fields = ("command", "env")


class DigPyOperator(DigdagTask, PyOperator):
    """``py>`` of a ``.dig`` file."""

    dig_settings = (*DigdagTask.dig_settings, "python", "py")
    secret_fields = ("env",)


class DigRbOperator(DigdagTask, RbOperator):
    """``rb>`` of a ``.dig`` file."""

    dig_settings = (*DigdagTask.dig_settings, "require", "ruby", "rb")
    secret_fields = ("env",)


class _MessageOperator(DigdagTask):
    """A Digdag operator that only evaluates a text with the task's params (no command to run)."""

    template_fields: Sequence[str] = ("message",)
    ui_color = "#f4f1e8"
    can_store = False

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def _execute(self, context: Context) -> dict[str, Any] | None:
        log = stores.inherited_log(self, context["ti"])
        self.expand_digdag(self.digdag_params(context, log, self._project_dir()))
        self.act()
        return self._publish(context, log, {})

    def act(self) -> None:
        raise NotImplementedError


class EchoOperator(_MessageOperator):
    """Digdag ``echo>``: log the evaluated message."""

    def act(self) -> None:
        self.log.info("%s", self.message)


class FailOperator(_MessageOperator):
    """Digdag ``fail>``: fail (no retries) with the evaluated message, ``error.message`` for ``_error``."""

    def act(self) -> None:
        raise AirflowFailException(self.message)


class IfOperator(_MessageOperator, BranchMixIn):
    """Digdag ``if>``: evaluate the condition with the task's params, then let ``then_group``
    (``_do``) run if it is true, ``else_group`` (``_else_do``) if false, and skip the other; the
    ``end_task`` after both runs either way (a branch task)."""

    inherits_from_skipmixin = True
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        condition: str,
        end_task: str,
        then_group: str | None = None,
        else_group: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message=condition, **kwargs)
        self.end_task = end_task
        self.then_group = then_group
        self.else_group = else_group
        self._holds = False

    def execute(self, context: Context) -> None:
        super().execute(context)  # evaluates the condition; a bad one is the task's recorded error
        chosen = self.then_group if self._holds else self.else_group
        # Skipping raises DownstreamTasksSkipped, which the task runner takes for success.
        self.do_branch(context, [task_id for task_id in (chosen, self.end_task) if task_id])

    def act(self) -> None:
        """Digdag reads the evaluated condition as a boolean (``params.get("_command", boolean.class)``):
        ``true`` or ``false``, as Jackson spells them; anything else fails the task."""
        text = self.message.strip()
        if text not in _BOOLEANS:
            raise CmdExecConfigError(
                f"Task {self.task_label}: if>: the condition must be true or false, got {self.message!r}; "
                "write a comparison such as ${n > 0} or a param holding true or false"
            )
        self._holds = _BOOLEANS[text]


_BOOLEANS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


class WaitOperator(_MessageOperator):
    """Digdag ``wait>``: wait the evaluated duration (``10s``, ``5m``, ``1h 30m``, ``1d``) from the
    moment the task evaluated it. Digdag's default, non-blocking, frees the agent while it waits:
    here the task defers to the triggerer (a ``DateTimeTrigger``) when ``blocking`` is false, or,
    when unset, when the task is deferrable (``[operators] default_deferrable``); otherwise it
    sleeps on the worker. ``poll_interval`` is accepted and not needed: the triggerer wakes the
    task at the time."""

    ui_color = "#e8f1f4"

    def _execute(self, context: Context) -> None:
        log = stores.inherited_log(self, context["ti"])
        params = self.digdag_params(context, log, self._project_dir())
        self.expand_digdag(params)
        seconds = parse_duration(self.message)
        if seconds is None:
            raise CmdExecConfigError(
                f"Task {self.task_label}: wait>: {self.message!r} is not a duration; write e.g. 10s, 5m, "
                "1h 30m or 1d"
            )
        blocking = params.get("blocking")
        if blocking is not None and not isinstance(blocking, bool):
            text = str(blocking).strip()
            if text not in _BOOLEANS:
                raise CmdExecConfigError(
                    f"Task {self.task_label}: wait>: blocking must be true or false, got {blocking!r}"
                )
            blocking = _BOOLEANS[text]
        # From now, not from the try's start_date, which dag.test() sets when the run is created; a
        # resumed (deferred) task does not come back here: the trigger holds the time.
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        self.log.info("Waiting %s (until %s)", self.message, until.isoformat())
        if blocking is False or (blocking is None and self.deferrable):
            from airflow.providers.standard.triggers.temporal import DateTimeTrigger

            self.defer(trigger=DateTimeTrigger(moment=until), method_name="waited")
        while (left := (until - datetime.now(UTC)).total_seconds()) > 0:
            time.sleep(min(left, 60.0))
        return None

    def waited(self, context: Context, event: Any = None) -> None:
        """Back from the triggerer, which sends the time it waited for (this is a fresh instance: its
        message is not evaluated)."""
        self.log.info("Waited until %s", event)
