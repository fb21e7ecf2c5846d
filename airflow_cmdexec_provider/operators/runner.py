"""What py> and rb> share: the input.json / output.json runner protocol (Digdag §8.3-8.7)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, ClassVar, Literal

from airflow_cmdexec_provider.backends.base import CommandResult
from airflow_cmdexec_provider.exceptions import CmdExecConfigError, CommandFailed
from airflow_cmdexec_provider.operators.base import CommandOperator

# output.json comes back from a container that shares (Docker) or returns (ECS) the IO dir: read no
# more than this, so that a runaway or hostile command cannot exhaust the worker's memory.
OUTPUT_LIMIT = 64 * 1024 * 1024


class UnusableOutput(Exception):
    """output.json exists but cannot be used; the message says why."""


class RunnerOperator(CommandOperator):
    """A command run through a language runner that reads ``input.json`` and writes ``output.json``.

    Subclasses have ``method`` (what the runner calls) and ``script`` (Digdag's ``script:``: a whole
    script run instead of the runner; it reads ``input.json`` and writes ``output.json`` itself).
    """

    language: ClassVar[str]
    method_example: ClassVar[str]
    # Digdag's py> reports the error on a line of its own ("Error messages from python: ..."), rb> on the
    # first line ("Ruby command failed with code 1: ...").
    error_heading: ClassVar[str]

    method: str | None
    script: str | None

    def write_input(self, io_dir: Path, params: dict[str, Any]) -> None:
        (io_dir / "input.json").write_text(json.dumps({"params": params}))

    def method_or_script(self) -> tuple[Literal["method", "script"], str]:
        """Return ``("method", method)`` or ``("script", script)``: exactly one of the two must be given."""
        label = self.task_label
        if self.method is not None and self.script is not None:
            raise CmdExecConfigError(
                f"Task {label}: give either method= (what to call) or script= (the {self.language} script "
                "text), not both"
            )
        if self.script is not None:
            if not isinstance(self.script, str) or not self.script.strip():
                raise CmdExecConfigError(
                    f"Task {label}: script is empty; give the text of the {self.language} script, or "
                    f"method= with what to call, e.g. {self.method_example!r}"
                )
            return "script", self.script
        if self.method is None:
            raise CmdExecConfigError(
                f"Task {label}: give method= with what to call, e.g. {self.method_example!r}, or script= "
                f"with the text of a {self.language} script"
            )
        if not isinstance(self.method, str) or not self.method.strip():
            raise CmdExecConfigError(
                f"Task {label}: method is empty; give what to call, e.g. {self.method_example!r}"
            )
        return "method", self.method.strip()

    def collect(self, io_dir: Path, result: CommandResult) -> dict[str, Any]:
        try:
            output = self._read_output(io_dir / "output.json")
            problem = None
        except UnusableOutput as exc:
            output, problem = None, str(exc)
        if result.exit_code != 0:
            raise CommandFailed(self._failure_message(result, output, problem), result.exit_code)
        if problem is not None:
            raise CommandFailed(f"Task {self.task_label}: {problem}", 1)
        if output is None:
            what = (
                "the script did not write it (a script= must write output.json, the path in its second "
                "argument, as in Digdag)"
                if self.script is not None
                else "the runner did not finish (see the log above)"
            )
            raise CommandFailed(
                f"Task {self.task_label}: output.json does not exist although the {self.language} command "
                f"exited 0; {what}",
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

    @staticmethod
    def _read_output(path: Path) -> dict[str, Any] | None:
        """Read output.json, or return None if there is none; raise UnusableOutput if it cannot be used.

        With Docker the command shares the IO dir and could replace output.json with a symlink to
        /dev/zero, a device node or a FIFO: open it without following links and without blocking,
        read only a regular file, and never more than OUTPUT_LIMIT.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            kind = "a symbolic link" if path.is_symlink() else "not readable"
            raise UnusableOutput(f"output.json is {kind} ({exc.strerror}): refused") from exc
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise UnusableOutput("output.json is not a regular file: refused")
            data = file.read(OUTPUT_LIMIT + 1)
        if len(data) > OUTPUT_LIMIT:
            raise UnusableOutput(
                f"output.json is larger than {OUTPUT_LIMIT // (1024 * 1024)} MiB: refused; store smaller "
                "values (large data belongs in files or external storage)"
            )
        try:
            output = json.loads(data)
        except ValueError as exc:
            raise UnusableOutput(f"cannot parse output.json: {exc}") from exc
        if not isinstance(output, dict):
            raise UnusableOutput("output.json is not a JSON object")
        return output

    def _failure_message(
        self, result: CommandResult, output: dict[str, Any] | None, problem: str | None
    ) -> str:
        """Digdag's report of a failed py>/rb> command, prefixed with the task."""
        message = f"Task {self.task_label}: {self.language} command failed with code {result.exit_code}"
        executor = f"\nError messages from CommandExecutor: {result.reason}" if result.reason else ""
        error = (output or {}).get("error")
        report = self._error_report(error) if isinstance(error, dict) else ""
        # Digdag's py> names the executor's message before the python error; rb> has the error on line 1.
        message += (executor + report) if self.error_heading else (report + executor)
        if problem is not None:
            message += f"\n({problem})"
        elif output is None:
            message += (
                "\n(no output.json: the command failed before the runner could report; see the log above)"
            )
        return message

    def _error_report(self, error: dict[str, Any]) -> str:
        """``<heading>: message (Class)`` and a ``\\tfrom <frame>`` line per frame of the user's code."""
        report = self.error_heading
        if error.get("message"):
            report += f": {error['message']}"
        if error.get("class"):
            report += f" ({error['class']})"
        for frame in error.get("backtrace") or []:
            first, *rest = str(frame).rstrip("\n").split("\n")
            report += f"\n\tfrom {first}" + "".join(f"\n\t{line}" for line in rest)
        return report
