"""sh>: run a shell command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from airflow_cmdexec_provider.backends.base import CommandResult, IoFile
from airflow_cmdexec_provider.exceptions import CmdExecConfigError, CommandFailed
from airflow_cmdexec_provider.operators.base import CommandOperator, namespaced, program
from airflow_cmdexec_provider.params import env_from_params


class ShOperator(CommandOperator):
    """Digdag ``sh>``: run ``command`` with ``shell`` in the project (or ``workdir``).

    The command is written to a script file and run by the shell. Every param whose key is a valid
    variable name becomes an environment variable (strings raw, other values compact JSON), and
    ``env`` goes on top; so ``${name}`` in the command is expanded by the shell, and a value such as
    ``$(rm -rf ~)`` stays inert text. Names that change how a process starts (``BASH_ENV``,
    ``LD_PRELOAD``, ``PATH``, ... see ``params.is_startup_env_name``) are never taken from params,
    ``dag_run.conf`` or stored values: only ``env=`` may set them.

    With the default ``templating="jinja"``, ``command`` is a Jinja template like BashOperator's:
    ``{{ params.x }}`` *is* pasted into the script text, so never template values that untrusted
    users choose; use ``${x}`` (the environment variable) instead. ``templating="none"`` runs a
    command containing ``{{`` unchanged; ``templating="digdag"`` substitutes ``${...}`` into the
    text as Digdag does (what the ``.dig`` loader uses).

    :param command: the shell script text, e.g. ``"echo hi ${name}"`` or ``"tasks/step.sh"``. (templated)
    :param shell: the shell program, a string or a list (default ``["/bin/sh"]``).
    :param sh: Digdag's ``sh:`` namespace, e.g. ``{"shell": ["/bin/bash"]}`` in ``default_args``;
        ``shell=`` wins over it.
    """

    template_fields: Sequence[str] = ("command", "env")
    template_fields_renderers: ClassVar[dict[str, str]] = {"command": "bash", "env": "json"}
    program_key = "shell"
    needs_outputs = False  # sh> reports only its exit code
    can_store = False  # and stores nothing (Digdag: TaskResult.empty)

    def __init__(
        self,
        *,
        command: str,
        shell: str | Sequence[str] | None = None,
        sh: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.shell = shell
        self.sh = sh

    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        if not isinstance(self.command, str) or not self.command.strip():
            raise CmdExecConfigError(
                f"Task {self.task_label}: command is empty; give the shell command to run"
            )
        shell_value = namespaced(self.shell, self.sh, "shell", ("shell",), "sh", self.task_label)
        shell = program(shell_value, "shell", ["/bin/sh"], self.task_label)
        script = self.command if self.command.endswith("\n") else self.command + "\n"
        (io_dir / "runner.sh").write_text(script, encoding="utf-8")
        return (*shell, IoFile("runner.sh")), {**env_from_params(params, self._skipped_env), **env}

    def _skipped_env(self, names: list[str]) -> None:
        self.log.warning(
            "Task %s: params %s are not exported as environment variables: these names change how a "
            "process starts; set them with env=... if the task needs them",
            self.task_label,
            ", ".join(names),
        )

    def collect(self, io_dir: Path, result: CommandResult) -> dict[str, Any]:
        if result.exit_code != 0:
            reason = f" ({result.reason})" if result.reason else ""
            raise CommandFailed(
                f"Task {self.task_label}: command failed with code {result.exit_code}{reason}",
                result.exit_code,
            )
        return {}
