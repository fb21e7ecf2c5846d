"""sh>: run a shell command."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.backends.base import CommandResult, IoFile
from airflow_cmdexec_provider.exceptions import CmdExecConfigError, CommandFailed
from airflow_cmdexec_provider.operators.base import CommandOperator, program
from airflow_cmdexec_provider.params import env_from_params


class ShOperator(CommandOperator):
    """Digdag ``sh>``: run ``command`` with ``shell`` in the project (or ``workdir``).

    The command is written to a script file and run by the shell; it is never interpolated with
    params. Instead every param whose key is a valid variable name becomes an environment variable
    (strings raw, other values compact JSON), and ``env`` goes on top. So ``${name}`` in the command
    is expanded by the shell, and a value such as ``$(rm -rf ~)`` stays inert text.

    :param command: the shell script text, e.g. ``"echo hi ${name}"`` or ``"tasks/step.sh"``. (templated)
    :param shell: the shell program, a string or a list (default ``["/bin/sh"]``).
    """

    template_fields: Sequence[str] = ("command", "env")
    template_fields_renderers = {"command": "bash", "env": "json"}
    program_key = "shell"

    def __init__(self, *, command: str, shell: str | Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.shell = shell

    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        if not isinstance(self.command, str) or not self.command.strip():
            raise CmdExecConfigError(f"Task {self.task_label}: command is empty; give the shell command to run")
        shell = program(self.shell, "shell", ["/bin/sh"], self.task_label)
        script = self.command if self.command.endswith("\n") else self.command + "\n"
        (io_dir / "runner.sh").write_text(script)
        return (*shell, IoFile("runner.sh")), {**env_from_params(params), **env}

    def collect(self, io_dir: Path, result: CommandResult) -> dict[str, Any]:
        if result.exit_code != 0:
            reason = f" ({result.reason})" if result.reason else ""
            raise CommandFailed(
                f"Task {self.task_label}: command failed with code {result.exit_code}{reason}", result.exit_code
            )
        return {}
