"""What sh>, py> and rb> share: params, project and workdir, IO directory, stored values, kill, deferral."""

from __future__ import annotations

import copy
import os
import shutil
import time
import traceback
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowTaskTimeout

from airflow_cmdexec_provider import stores, tempfiles
from airflow_cmdexec_provider.backends.base import (
    CommandBackend,
    CommandRequest,
    CommandResult,
    IoFile,
    RemoteBackend,
    TaskSettings,
)
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError, CommandNotFound
from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook, HandleJournal
from airflow_cmdexec_provider.params import deep_merge, resolve_params, runtime_params, validate_env

if TYPE_CHECKING:
    from airflow.sdk import Context

# Airflow's own deferral timeout is only a safety net: the trigger stops the command at the deadline.
DEFER_TIMEOUT_MARGIN = 300
# Where a failed task leaves {message, stacktrace} for Digdag-style _error tasks (the ``error`` param).
ERROR_KEY = "cmdexec_error"
TEMPLATING = ("jinja", "digdag", "none")


class CommandOperator(BaseOperator):
    """Base of ShOperator, PyOperator and RbOperator: run a Digdag-style command through the selection hook.

    The XCom ``return_value`` is a JSON object of every value stored so far (``digdag.env.store``);
    see ``stores.py`` for how stored values travel and in which order they win.

    :param project_dir: the Digdag project: working directory of the command and, for remote
        executors, what is copied or shipped to the container. Default: the folder of the DAG file;
        a relative path is taken relative to that folder.
    :param workdir: Digdag ``_workdir``: a folder relative to the project to run in; it must stay inside.
    :param env: Digdag ``_env``: extra environment variables for the command. (templated)
    :param docker: Digdag ``docker`` params: ``image``, ``docker``, ``run_options``, ``pull_always``,
        ``selinux``, ``build``, ``build_options`` and ``docker_conn_id`` (registry login).
    :param ecs: Digdag ``ecs`` params: ``task_definition_arn`` and per-task cluster overrides.
    :param kubernetes: Digdag ``kubernetes`` params: ``{"Pod": {...}}`` merged into the pod spec, plus
        ``PersistentVolume``/``PersistentVolumeClaim`` and per-task cluster overrides.
    :param executor_options: params of third-party executors, keyed by executor name.
    :param executor: ``None``/``"auto"`` (the configured selection, e.g. ECS -> Docker -> local), or
        force one by name (``"ecs"``, ``"docker"``, ``"kubernetes"``, ``"local"``, a plugin's).
        ``command_executor`` is an alias that is safe in a DAG's ``default_args`` (Airflow's own
        operators also read ``executor`` from there).
    :param deferrable: wait for a remote command in the triggerer, freeing the worker slot (default:
        Airflow's ``[operators] default_deferrable``). No effect on the local executor.
    :param templating: how ``command``/``method``/``env`` are rendered: ``"jinja"`` (Airflow's
        default), ``"none"`` (the text runs unchanged, e.g. a Digdag command containing ``{{``), or
        ``"digdag"`` (Digdag's ``${name}``/``${a.b}`` evaluated with the task's params when it runs).
    :param digdag_task_name: the Digdag task name (``+workflow+group+task``) for the ``task_name``
        param, when it differs from the one made from the DAG and task ids (the ``.dig`` loader).
    :param error_from: for a Digdag ``_error`` handler: the task ids whose failure it handles; the
        first of them that failed gives the ``error`` param (``{"message": ..., "stacktrace": ...}``).
    :param airflow_executor: the Airflow executor that runs this task instance (BaseOperator's
        ``executor``, renamed because ``executor`` means the command executor here).
    """

    template_fields: Sequence[str] = ("env",)
    ui_color = "#e8f1fb"
    # The operator key that names the program (shell or interpreter), for "not found" errors.
    program_key: ClassVar[str] = "shell"
    # Whether the command's IO dir must come back after it ran (the runners' output.json).
    needs_outputs: ClassVar[bool] = True
    # Set when the task runs if env holds a secret (.dig tasks: ${secret:...} in _env).
    secret_env = False
    # Whether the task can store values (``digdag.env.store``). Tasks that cannot (sh>, echo>, fail>)
    # publish no store log and are walked through like plain Airflow tasks: no XCom read or write.
    can_store: ClassVar[bool] = True

    def __init__(
        self,
        *,
        project_dir: str | os.PathLike[str] | None = None,
        workdir: str = "",
        env: Mapping[str, Any] | None = None,
        docker: Mapping[str, Any] | None = None,
        ecs: Mapping[str, Any] | None = None,
        kubernetes: Mapping[str, Any] | None = None,
        executor_options: Mapping[str, Mapping[str, Any]] | None = None,
        executor: str | None = None,
        command_executor: str | None = None,
        airflow_executor: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        templating: str = "jinja",
        digdag_task_name: str | None = None,
        error_from: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(executor=airflow_executor, **kwargs)
        self.deferrable = deferrable
        self.project_dir = project_dir
        self.workdir = workdir
        self.env = env
        self.docker = docker
        self.ecs = ecs
        self.kubernetes = kubernetes
        self.executor_options = executor_options
        self.templating = templating
        self.digdag_task_name = digdag_task_name
        self.error_from = error_from
        # The task's own params (Digdag's task-local keys), copied now: Airflow's process_params later
        # writes dag_run.conf values into the very Param objects the task holds.
        self.local_params = _own_params(self.params)
        # An operator's own executor=... wins over a command_executor that came from default_args.
        from_defaults = (
            command_executor is not None
            and (kwargs.get("default_args") or {}).get("command_executor") == command_executor
        )
        self.command_executor = (
            executor
            if command_executor is None or (executor is not None and from_defaults)
            else command_executor
        )
        self._running_backend: CommandBackend | None = None  # the backend running the command, for on_kill
        # on_kill came (Airflow's SIGTERM handler lets execute go on): a backend chosen after it must
        # not start the command. Each try runs on its own copy of the operator.
        self._kill_requested = False

    # -- subclass contract -------------------------------------------------------------------
    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        """Write the runner files into ``io_dir``; return the command line and its environment."""
        raise NotImplementedError

    def collect(self, io_dir: Path, result: CommandResult) -> dict[str, Any]:
        """Check how the command ended (raise on failure) and return the values it stored."""
        raise NotImplementedError

    # -- templating ----------------------------------------------------------------------------
    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        if self.templating not in TEMPLATING:
            raise CmdExecConfigError(
                f"Task {self.task_label}: templating must be one of {', '.join(TEMPLATING)}, got "
                f"{self.templating!r}"
            )
        if self.templating == "jinja":
            import jinja2

            try:
                super().render_template_fields(context, jinja_env)
            except jinja2.TemplateSyntaxError as exc:
                raise CmdExecConfigError(
                    f"Task {self.task_label}: a templated field is not a valid Jinja template ({exc}). "
                    "Digdag text with '{{' (e.g. docker inspect --format '{{.Id}}') runs unchanged with "
                    "templating='none'; templating='digdag' evaluates ${...} instead of Jinja"
                ) from exc
        # "digdag": ${...} is evaluated in execute, once the task's params are known; "none": as written.

    def expand_digdag(self, params: Mapping[str, Any]) -> None:
        """With ``templating="digdag"``, evaluate ``${...}`` in the template fields with the params."""
        if self.templating != "digdag":
            return
        from airflow_cmdexec_provider.expressions import evaluate

        for name in self.template_fields:
            setattr(self, name, evaluate(getattr(self, name), params, f"Task {self.task_label}: {name}"))

    # -- execution ---------------------------------------------------------------------------
    @property
    def task_label(self) -> str:
        dag_id = self.dag_id if self.has_dag() else "<no dag>"  # type: ignore[no-untyped-call]  # Airflow: BaseOperator.has_dag is unannotated
        return f"{dag_id}.{self.task_id}"

    def settings(self) -> TaskSettings:
        return TaskSettings(
            task_label=self.task_label,
            docker=self.docker,
            ecs=self.ecs,
            kubernetes=self.kubernetes,
            executor_options=self.executor_options or {},
            timeout_seconds=self.execution_timeout.total_seconds() if self.execution_timeout else None,
        )

    def execute(self, context: Context) -> dict[str, Any] | None:
        try:
            return self._execute(context)
        except Exception as exc:
            self._record_error(context, exc)
            raise

    def _execute(self, context: Context) -> dict[str, Any] | None:
        label = self.task_label
        ti = context["ti"]
        log = stores.inherited_log(self, ti)
        project_dir = self._project_dir()
        params = self.digdag_params(context, log, project_dir)
        self.expand_digdag(params)
        env = validate_env(self.env, label)
        workdir = self._workdir(project_dir)
        hook = CommandExecutorHook(settings=self.settings(), executor=self.command_executor)
        journal = HandleJournal(context.get("task_state_store"), first_try=getattr(ti, "try_number", 1) <= 1)
        removed = tempfiles.sweep()
        if removed:
            self.log.info(
                "Task %s: removed the temporary files of killed tasks on this host: %s",
                label,
                ", ".join(removed),
            )
        io_root = tempfiles.private_dir("io")
        try:
            # The IO dir is shared with local commands that may change user: writable by all, inside
            # a private (0700) parent so that nobody else on the worker can reach it.
            io_dir = io_root / "io"
            io_dir.mkdir()
            io_dir.chmod(0o777)
            command, command_env = self.prepare(io_dir, params, env)
            request = CommandRequest(
                task_label=label,
                project_dir=project_dir,
                workdir=workdir,
                io_dir=io_dir,
                command=command,
                env=command_env,
                labels=_labels(context),
                needs_outputs=self.needs_outputs,
                secret_env=self.secret_env,
            )
            backend = self._running_backend = hook.get_backend()
            if self._kill_requested:  # on_kill came before the backend was recorded: it refuses to start
                backend.kill()
            if self.deferrable and isinstance(backend, RemoteBackend):
                self._defer(context, hook, backend, request, journal)
            if self.deferrable:
                self.log.info(
                    "Task %s: deferrable has no effect on the %s executor: waiting here", label, backend.name
                )
            try:
                result = hook.run(request, self._log_line, journal, backend)
            except CommandNotFound as exc:
                raise CmdExecConfigError(
                    f"Task {label}: {self.program_key} program {exc.program!r} was not found {exc.where}; "
                    f"install it or set {self.program_key}=... to one that exists"
                ) from exc
            stored = self.collect(io_dir, result)
        finally:
            self._running_backend = None
            shutil.rmtree(io_root, ignore_errors=True)
        return self._publish(context, log, stored)

    def digdag_params(
        self,
        context: Context,
        log: stores.StoreLog,
        project_dir: Path | None = None,
        local: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """This task's Digdag params, merged in Digdag's order (``params.resolve_params``).

        :param local: the task-local keys on top; default: the task's own ``params``.
        """
        exports = self.scope_exports(context)
        exported = {k: v for export in exports for k, v in export.items()}
        if local is None:
            # Airflow copies a TaskGroup's default_args params into the task's: those are the group's export.
            local = {k: v for k, v in self.local_params.items() if not (k in exported and exported[k] == v)}
        session = _values(self.dag.params) if self.has_dag() else {}  # type: ignore[no-untyped-call]  # Airflow: BaseOperator.has_dag is unannotated
        if conf.getboolean("core", "dag_run_conf_overrides_params", fallback=True):
            session.update(getattr(context.get("dag_run"), "conf", None) or {})  # as Airflow does: shallow
        by_scope = stores.stores_by_scope(self, log)
        runtime = runtime_params(
            {**context, "digdag_task_name": self.digdag_task_name}, str(project_dir or "")
        )
        if self.error_from:
            runtime["error"] = self._upstream_error(context)
        return resolve_params(
            session=session,
            scopes=list(zip(exports, by_scope, strict=True)),  # both: the DAG, then each TaskGroup
            runtime=runtime,
            local=local,
            task_label=self.task_label,
            warn=self.log.warning,
        )

    def scope_exports(self, context: Context) -> list[dict[str, Any]]:
        """The ``_export`` of each scope, the DAG's first (empty: its params are the session's), then
        each enclosing TaskGroup's."""
        return [{}, *stores.group_exports(self)]

    def _upstream_error(self, context: Context) -> dict[str, Any] | None:
        """The ``{message, stacktrace}`` the first failed task of ``error_from`` left (see
        ``_record_error``)."""
        for task_id in self.error_from or ():
            error = context["ti"].xcom_pull(task_ids=task_id, key=ERROR_KEY)
            for entry in error if isinstance(error, list) else [error]:
                if isinstance(entry, Mapping):
                    return dict(entry)
        return None

    def _publish(
        self, context: Context, log: stores.StoreLog, stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Push this task's store log; return every value stored so far (the XCom ``return_value``),
        or None when nothing was stored at all (no XCom, as for a BashOperator that prints nothing).

        A task that can store pushes its store log unless it is empty (nothing stored here or
        upstream) and every task reading it runs only after its success: such a task reads "nothing"
        from the missing log and stops its walk here, as it does at a log (``stores.inherited_log``).
        A task that cannot store pushes none: downstream tasks walk through it.
        """
        ti = context["ti"]
        if self.can_store:
            own_log = dict(log)
            if stored:
                own_log[stores.writer_id(self.task_id, getattr(ti, "map_index", -1))] = stored
            if own_log or stores.read_after_a_possible_failure(self):
                ti.xcom_push(key=stores.STORES_KEY, value=own_log)
        view: dict[str, Any] = {}
        for scope in stores.stores_by_scope(self, log):
            for values in scope:
                view = deep_merge(view, values)
        view = deep_merge(view, stored)
        return view or None

    def _record_error(self, context: Context, exc: Exception) -> None:
        """Leave ``{message, stacktrace}`` for error handlers (Digdag's ``error`` param of ``_error``
        tasks)."""
        ti = context.get("ti")
        if ti is None:
            return
        try:
            ti.xcom_push(
                key=ERROR_KEY,
                value={
                    "message": str(exc),
                    "stacktrace": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                },
            )
        except Exception:  # recording is a courtesy: never hide the task's own error
            self.log.debug("could not record the error of %s", self.task_label, exc_info=True)

    # -- deferrable mode ---------------------------------------------------------------------------
    def _defer(
        self,
        context: Context,
        hook: CommandExecutorHook,
        backend: RemoteBackend,
        request: CommandRequest,
        journal: HandleJournal,
    ) -> None:
        """Start the remote command (or take the one an earlier try started) and wait in the triggerer."""
        from airflow_cmdexec_provider.triggers.command import CommandTrigger

        handle = hook.submit(request, self._log_line, journal, backend)
        deadline = None
        timeout = None
        if self.execution_timeout is not None:
            started = getattr(context["ti"], "start_date", None)
            begin = started.timestamp() if started is not None else time.time()
            deadline = begin + self.execution_timeout.total_seconds()
            # Our trigger stops the remote command at the deadline; Airflow's own timeout is only a net.
            timeout = timedelta(seconds=max(deadline - time.time(), 0) + DEFER_TIMEOUT_MARGIN)
        trigger = CommandTrigger(
            executor=backend.name, handle=handle, settings=self.settings().to_json(), deadline=deadline
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._execute_complete(context, event)
        except Exception as exc:
            self._record_error(context, exc)
            raise

    def _execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any] | None:
        """Resume after the trigger fired: collect the outputs of the remote command and clean up.

        This may run on another worker than the one that deferred: everything comes from the handle
        and the backend (the container, the storage), nothing from the first worker's disk.
        """
        label = self.task_label
        journal = HandleJournal(context.get("task_state_store"))
        handle = event.get("handle") or {}
        name = str(handle.get("backend"))
        hook = CommandExecutorHook(settings=self.settings(), executor=name)
        backend = hook.backend(name)
        if not isinstance(backend, RemoteBackend):
            raise BackendError(f"Task {label}: the trigger reported on a {name} command, which is not remote")
        io_root = tempfiles.private_dir("io")
        cleaned = False
        try:
            status = event.get("status")
            if status == "timeout":
                raise AirflowTaskTimeout(
                    f"Task {label}: execution_timeout ({self.execution_timeout}) reached while waiting for "
                    f"its {name} command, which was stopped and cleaned up"
                )
            if status != "finished":
                raise BackendError(
                    f"Task {label}: waiting for the {name} command failed: {event.get('message')}"
                )
            result = CommandResult(int(event["exit_code"]), event.get("reason"))
            io_dir = io_root / "io"
            io_dir.mkdir()
            try:
                backend.fetch_outputs(handle, io_dir, result)
            finally:
                backend.discard(handle, self._log_line)
                cleaned = True
            stored = self.collect(io_dir, result)
        finally:
            if not cleaned:
                backend.discard(handle, self._log_line)
            journal.clear(force=True)  # saved by the try that deferred
            shutil.rmtree(io_root, ignore_errors=True)
        return self._publish(context, stores.inherited_log(self, context["ti"]), stored)

    def on_kill(self) -> None:
        self._kill_requested = True  # before reading the backend: _execute records it, then reads this
        backend = self._running_backend
        if backend is not None:
            self.log.info("Task %s was killed: stopping its command", self.task_label)
            backend.kill()

    def _log_line(self, line: str) -> None:
        self.log.info("%s", line)

    def _project_dir(self) -> Path:
        dag_folder = Path(self.dag.fileloc).parent if self.has_dag() and self.dag.fileloc else Path.cwd()  # type: ignore[no-untyped-call]  # Airflow: BaseOperator.has_dag is unannotated
        path = Path(self.project_dir) if self.project_dir is not None else dag_folder
        if not path.is_absolute():
            path = dag_folder / path
        if not path.is_dir():
            raise CmdExecConfigError(
                f"Task {self.task_label}: project_dir {str(path)!r} does not exist or is not a folder; "
                "set project_dir to the folder that holds the task's files"
            )
        return path.resolve()

    def _workdir(self, project_dir: Path) -> str:
        workdir = self.workdir or ""
        if not isinstance(workdir, str):
            raise CmdExecConfigError(f"Task {self.task_label}: workdir must be a string, got {workdir!r}")
        if os.path.isabs(workdir):
            raise CmdExecConfigError(
                f"Task {self.task_label}: workdir {workdir!r} must be relative to the project ({project_dir})"
            )
        target = (project_dir / workdir).resolve()
        if target != project_dir and project_dir not in target.parents:
            raise CmdExecConfigError(
                f"Task {self.task_label}: workdir {workdir!r} leaves the project {project_dir}; "
                "it must name a folder inside it"
            )
        if not target.is_dir():
            raise CmdExecConfigError(
                f"Task {self.task_label}: workdir {workdir!r} does not exist in the project {project_dir}"
            )
        return str(target.relative_to(project_dir)) if target != project_dir else ""


def _own_params(params: Any) -> dict[str, Any]:
    """Values of the params a task set itself (Airflow marks their source "task")."""
    getter = getattr(params, "get_param", None)
    if getter is None:
        return {}
    own = {}
    for key in params:
        param = getter(key)
        if getattr(param, "source", None) == "task" and param.has_value:
            own[key] = copy.deepcopy(param.value)
    return own


def _values(params: Any) -> dict[str, Any]:
    dump = getattr(params, "dump", None)
    return dict(dump()) if callable(dump) else dict(params)


def _labels(context: Context) -> dict[str, str]:
    ti = context["ti"]
    return {
        "dag_id": str(ti.dag_id),
        "task_id": str(ti.task_id),
        "run_id": str(ti.run_id),
        "try_number": str(ti.try_number),
        "map_index": str(getattr(ti, "map_index", -1)),
    }


def program(value: Any, key: str, default: Sequence[str], task_label: str) -> tuple[str, ...]:
    """Normalise a ``shell``/``python``/``ruby`` value: a string or a list of strings."""
    if value is None:
        return tuple(default)
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise CmdExecConfigError(
        f"Task {task_label}: invalid {key} {value!r}: give a program name or path, or a list such as "
        f"{list(default)!r}"
    )


def namespaced(
    value: Any,
    namespace: Mapping[str, Any] | None,
    key: str,
    allowed: Sequence[str],
    ns_name: str,
    task_label: str,
) -> Any:
    """Digdag's ``mergeDefault``: a top-level argument wins over the same key in the ``sh``/``py``/``rb``
    namespace (``_export: {py: {python: ...}}``)."""
    if namespace is None:
        return value
    if not isinstance(namespace, Mapping):
        raise CmdExecConfigError(
            f"Task {task_label}: {ns_name} must be a dict such as {{{allowed[0]!r}: ...}}, got {namespace!r}"
        )
    unknown = sorted(set(namespace) - set(allowed))
    if unknown:
        raise CmdExecConfigError(
            f"Task {task_label}: unknown keys {unknown} in {ns_name}; known: {list(allowed)}"
        )
    return value if value is not None else namespace.get(key)


def copy_runner(name: str, io_dir: Path, target: str) -> None:
    shutil.copyfile(Path(__file__).resolve().parent.parent / "runner" / name, io_dir / target)
