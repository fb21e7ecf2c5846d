"""Why a Digdag workflow cannot be loaded: every problem with its file, line and construct."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from airflow_cmdexec_provider.exceptions import CmdExecConfigError

if TYPE_CHECKING:
    from typing import Self


@dataclass(frozen=True)
class Problem:
    """One thing in a ``.dig`` file that the loader cannot turn into Airflow tasks."""

    file: Path
    line: int
    construct: str  # what is written in the file, e.g. "emr>", "_retry on a group", "${1 + 1}"
    message: str  # why, and what to do instead

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.construct}: {self.message}"


class DigLoadError(CmdExecConfigError):
    """A workflow that was asked for cannot be loaded; the message lists every problem found.

    ``loaded`` names the workflows of the same call that did load: the message then says how to load
    them alone, since one workflow that cannot load fails the whole DAG file (Airflow shows the
    file's import error, and none of its DAGs)."""

    def __init__(
        self, problems: list[Problem], workflows: list[str] | None = None, loaded: list[str] | None = None
    ) -> None:
        self.problems = list(problems)
        self.workflows = workflows
        self.loaded = loaded
        names = ", ".join(workflows or sorted({p.file.stem for p in problems}))
        lines = "\n".join(f"  {p}" for p in self.problems)
        message = f"Digdag workflow(s) {names} cannot be loaded as Airflow DAGs:\n{lines}"
        if loaded:
            message += (
                f"\nThe other workflow(s) asked for load: {', '.join(loaded)}. To load them while these "
                f"are fixed, name them: load_project(..., include={sorted(loaded)!r})"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[type[Self], tuple[list[Problem], list[str] | None, list[str] | None]]:
        return (type(self), (self.problems, self.workflows, self.loaded))


class Reporter(Protocol):
    """Where a problem goes (the compiler, which collects them into one load error); ``where`` is
    the DigMap holding ``key``."""

    def problem(self, where: Any, key: str | None, construct: str, message: str) -> None: ...

    def unsupported(
        self, where: Any, key: str | None, construct_key: str, written: str | None = None
    ) -> None: ...
