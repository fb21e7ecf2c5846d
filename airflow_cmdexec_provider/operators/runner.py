"""What py> and rb> share: the input.json / output.json runner protocol (Digdag §8.3-8.7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from airflow_cmdexec_provider.backends.base import CommandResult
from airflow_cmdexec_provider.exceptions import CmdExecConfigError, CommandFailed
from airflow_cmdexec_provider.operators.base import CommandOperator


class RunnerOperator(CommandOperator):
    """A command run through a language runner that reads ``input.json`` and writes ``output.json``."""

    language: ClassVar[str]

    def write_input(self, io_dir: Path, params: dict[str, Any]) -> None:
        (io_dir / "input.json").write_text(json.dumps({"params": params}))

    def check_method(self) -> str:
        method = self.method  # type: ignore[attr-defined]
        if not isinstance(method, str) or not method.strip():
            raise CmdExecConfigError(
                f"Task {self.task_label}: method is empty; give what to call, e.g. 'tasks.my_workflow.step1'"
            )
        return method.strip()

    def collect(self, io_dir: Path, result: CommandResult) -> dict[str, Any]:
        output = self._read_output(io_dir / "output.json", result)
        if result.exit_code != 0:
            raise CommandFailed(self._failure_message(result, output), result.exit_code)
        if output is None:
            raise CommandFailed(
                f"Task {self.task_label}: output.json does not exist although the {self.language} command "
                "exited 0; the runner did not finish (see the log above)",
                1,
            )
        if output.get("export_params"):
            self.log.warning(
                "Task %s: digdag.env.export(%s) has no effect on Airflow (there are no child tasks); "
                "use digdag.env.store to pass values downstream",
                self.task_label,
                sorted(output["export_params"]),
            )
        stored = output.get("store_params") or {}
        if not isinstance(stored, dict):
            raise CommandFailed(f"Task {self.task_label}: output.json store_params is not an object", 1)
        return stored

    def _read_output(self, path: Path, result: CommandResult) -> dict[str, Any] | None:
        if not path.exists():
            return None
        try:
            output = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            if result.exit_code == 0:
                raise CommandFailed(f"Task {self.task_label}: cannot parse output.json: {exc}", 1) from exc
            return None
        return output if isinstance(output, dict) else None

    def _failure_message(self, result: CommandResult, output: dict[str, Any] | None) -> str:
        message = f"Task {self.task_label}: {self.language} command failed with code {result.exit_code}"
        if result.reason:
            message += f" ({result.reason})"
        error = (output or {}).get("error")
        if isinstance(error, dict):
            message += f"\n{error.get('class', 'Error')}: {error.get('message', '')}"
            backtrace = error.get("backtrace") or []
            if backtrace:
                message += "\n" + "".join(line if line.endswith("\n") else line + "\n" for line in backtrace)
        elif output is None:
            message += "\n(no output.json: the command failed before the runner could report; see the log above)"
        return message.rstrip("\n")
