"""What sh>, py> and rb> share: params, project and workdir, IO directory, stored values, kill."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowTaskTimeout

from airflow_cmdexec_provider.backends.base import CommandRequest, CommandResult, IoFile
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError, CommandNotFound
from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook, HandleJournal
from airflow_cmdexec_provider.params import deep_merge, digdag_params, validate_env

if TYPE_CHECKING:
    from airflow.sdk import Context

# Airflow's own deferral timeout is only a safety net: the trigger stops the command at the deadline.
DEFER_TIMEOUT_MARGIN = 300


class CommandOperator(BaseOperator):
    """Base of ShOperator, PyOperator and RbOperator: run a Digdag-style command through the selection hook.

    The XCom ``return_value`` is a JSON object of every value stored so far (``digdag.env.store``):
    the stores of upstream tasks merged with this task's own, so downstream tasks see them as params.

    :param project_dir: the Digdag project: working directory of the command and, for Docker and ECS,
        the folder shared with or shipped to the container. Default: the folder of the DAG file;
        a relative path is taken relative to that folder.
    :param workdir: Digdag ``_workdir``: a folder relative to the project to run in; it must stay inside.
    :param env: Digdag ``_env``: extra environment variables for the command. (templated)
    :param docker: Digdag ``docker`` params: ``image``, ``docker``, ``run_options``, ``pull_always``,
        ``selinux``, ``build``, ``build_options`` and ``docker_conn_id`` (registry login).
    :param ecs: Digdag ``ecs`` params: ``task_definition_arn`` and per-task cluster overrides.
    :param executor: ``None``/``"auto"`` (the configured selection, ECS -> Docker -> local), or force
        ``"ecs"``, ``"docker"`` or ``"local"``. ``command_executor`` is an alias that is safe in a DAG's
        ``default_args`` (Airflow's own operators also read ``executor`` from there).
    :param deferrable: wait for a Docker container or an ECS task in the triggerer, freeing the worker
        slot (default: Airflow's ``[operators] default_deferrable``). No effect on the local executor.
    :param airflow_executor: the Airflow executor that runs this task instance (BaseOperator's
        ``executor``, renamed because ``executor`` means the command executor here).
    """

    template_fields: Sequence[str] = ("env",)
    ui_color = "#e8f1fb"
    # The operator key that names the program (shell or interpreter), for "not found" errors.
    program_key: ClassVar[str] = "shell"

    def __init__(
        self,
        *,
        project_dir: str | os.PathLike[str] | None = None,
        workdir: str = "",
        env: Mapping[str, Any] | None = None,
        docker: Mapping[str, Any] | None = None,
        ecs: Mapping[str, Any] | None = None,
        executor: str | None = None,
        command_executor: str | None = None,
        airflow_executor: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(executor=airflow_executor, **kwargs)
        self.deferrable = deferrable
        self.project_dir = project_dir
        self.workdir = workdir
        self.env = env
        self.docker = docker
        self.ecs = ecs
        # An operator's own executor=... wins over a command_executor that came from default_args.
        defaults = kwargs.get("default_args") or {}
        from_defaults = command_executor is not None and command_executor is defaults.get("command_executor")
        if command_executor is None or (executor is not None and from_defaults):
            command_executor = executor
        self.command_executor = command_executor
        self._running_backend: Any = None  # the backend running this task's command, for on_kill

    # -- subclass contract -------------------------------------------------------------------
    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        """Write the runner files into ``io_dir``; return the command line and its environment."""
        raise NotImplementedError

    def collect(self, io_dir: Path, result: CommandResult) -> dict[str, Any]:
        """Check how the command ended (raise on failure) and return the values it stored."""
        raise NotImplementedError

    # -- execution ---------------------------------------------------------------------------
    @property
    def task_label(self) -> str:
        dag_id = self.dag_id if self.has_dag() else "<no dag>"
        return f"{dag_id}.{self.task_id}"

    def execute(self, context: Context) -> dict[str, Any]:
        label = self.task_label
        upstream = self._upstream_store(context)
        params = digdag_params(context, upstream, label)
        env = validate_env(self.env, label)
        project_dir = self._project_dir()
        workdir = self._workdir(project_dir)
        hook = self._make_hook(self.command_executor)
        journal = HandleJournal(context.get("task_state_store"))
        io_root = Path(tempfile.mkdtemp(prefix="cmdexec-"))
        keep_io = False
        try:
            # The IO dir is shared with containers that may run as another user: writable by all,
            # inside a private (0700) parent so that nobody else on the worker can reach it.
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
            )
            backend = self._running_backend = hook.get_backend()
            if self.deferrable:
                if hasattr(backend, "submit"):
                    # A Docker container keeps writing into the IO dir until it ends.
                    keep_io = backend.name == "docker"
                    self._defer_remote(context, backend, request, journal)
                self.log.info("Task %s: deferrable has no effect on the local executor: waiting here", label)
            try:
                result = hook.run(request, self._log_line, journal, backend=backend)
            except CommandNotFound as exc:
                raise CmdExecConfigError(
                    f"Task {label}: {self.program_key} program {exc.program!r} was not found {exc.where}; "
                    f"install it or set {self.program_key}=... to one that exists"
                ) from exc
            stored = self.collect(io_dir, result)
        finally:
            self._running_backend = None
            if not keep_io:
                shutil.rmtree(io_root, ignore_errors=True)
        return deep_merge(upstream, stored)

    def _make_hook(self, executor: str | None) -> CommandExecutorHook:
        return CommandExecutorHook(
            executor=executor,
            docker=self.docker,
            ecs=self.ecs,
            task_label=self.task_label,
            timeout=self.execution_timeout,
        )

    # -- deferrable mode ---------------------------------------------------------------------------
    def _defer_remote(self, context: Context, backend: Any, request: CommandRequest, journal: HandleJournal) -> None:
        """Start the remote command (or take the one an earlier try started) and wait in the triggerer."""
        from airflow_cmdexec_provider.triggers.command import CommandTrigger

        handle = journal.load()
        if handle and handle.get("backend") == backend.name:
            self.log.info("Task %s: an earlier try started this %s command: waiting for it, not starting "
                          "another one", self.task_label, backend.name)
        else:
            backend.save_handle = journal.save
            handle = backend.submit(request, self._log_line)
        deadline = None
        timeout = None
        if self.execution_timeout is not None:
            started = getattr(context["ti"], "start_date", None)
            begin = started.timestamp() if started is not None else time.time()
            deadline = begin + self.execution_timeout.total_seconds()
            # Our trigger stops the remote command at the deadline; Airflow's own timeout is only a net.
            timeout = timedelta(seconds=max(deadline - time.time(), 0) + DEFER_TIMEOUT_MARGIN)
        trigger = CommandTrigger(
            executor=backend.name,
            handle=handle,
            docker=self.docker,
            ecs=self.ecs,
            task_label=self.task_label,
            deadline=deadline,
            poll_interval=getattr(backend, "poll_interval", 2.0),
        )
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after the trigger fired: collect the outputs of the remote command and clean up."""
        label = self.task_label
        journal = HandleJournal(context.get("task_state_store"))
        handle = event.get("handle") or {}
        backend = self._make_hook(handle.get("backend")).backend(handle.get("backend", "local"))
        io_root = Path(tempfile.mkdtemp(prefix="cmdexec-"))
        try:
            status = event.get("status")
            if status == "timeout":
                raise AirflowTaskTimeout(
                    f"Task {label}: execution_timeout ({self.execution_timeout}) reached while waiting for its "
                    f"{handle.get('backend')} command, which was stopped and cleaned up"
                )
            if status != "finished":
                raise BackendError(f"Task {label}: waiting for the {handle.get('backend')} command failed: "
                                   f"{event.get('message')}")
            result = CommandResult(int(event["exit_code"]), event.get("reason"))
            io_dir = io_root / "io"
            io_dir.mkdir()
            try:
                backend.collect(handle, io_dir, result)
            finally:
                backend.cleanup(handle, self._log_line)
            stored = self.collect(io_dir, result)
        finally:
            journal.clear(force=True)  # saved by the try that deferred
            shutil.rmtree(io_root, ignore_errors=True)
        return deep_merge(self._upstream_store(context), stored)

    def on_kill(self) -> None:
        backend = self._running_backend
        if backend is not None:
            self.log.info("Task %s was killed: stopping its command", self.task_label)
            backend.kill()

    def _log_line(self, line: str) -> None:
        self.log.info("%s", line)

    def _project_dir(self) -> Path:
        dag_folder = Path(self.dag.fileloc).parent if self.has_dag() and self.dag.fileloc else Path.cwd()
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

    def _upstream_store(self, context: Context) -> dict[str, Any]:
        """Merge the values stored upstream: farther tasks first, so that nearer ones win."""
        ti = context["ti"]
        merged: dict[str, Any] = {}
        for task_id in _store_sources(self):
            value = ti.xcom_pull(task_ids=task_id, key="return_value")
            if isinstance(value, Mapping):
                merged = deep_merge(merged, value)
        return merged


def _store_sources(task: BaseOperator) -> list[str]:
    """Upstream command tasks whose XCom carries stored values, farthest first.

    A command task's XCom already holds everything stored before it, so the walk stops there; it
    goes on through plain Airflow tasks, so a store reaches past tasks that store nothing.
    """
    distance: dict[str, int] = {}
    frontier = deque([(task, 0)])  # breadth first: each task gets its shortest distance
    seen: set[str] = set()
    while frontier:
        current, depth = frontier.popleft()
        for upstream in current.upstream_list:
            if upstream.task_id in seen:
                continue
            seen.add(upstream.task_id)
            if isinstance(upstream, CommandOperator):
                distance[upstream.task_id] = depth + 1
            else:
                frontier.append((upstream, depth + 1))
    return sorted(distance, key=lambda t: (-distance[t], t))


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


def copy_runner(name: str, io_dir: Path, target: str) -> None:
    shutil.copyfile(Path(__file__).resolve().parent.parent / "runner" / name, io_dir / target)
