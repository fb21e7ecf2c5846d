"""The runner protocol shared by the local, Docker and ECS backends.

A ``CommandRequest`` says what to run and where; a backend runs it and returns a ``CommandResult``.
Files that the operator prepared for the command (runner scripts, input.json) live in a per-try
IO directory on the worker; the command names them with ``IoFile`` and every backend maps them to
where that directory is visible to the command (the same path locally and in Docker, a shipped
copy on ECS). Whatever the command writes into the IO directory comes back to the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class IoFile:
    """A file in the request's IO directory, named in a command line."""

    name: str


@dataclass(frozen=True, kw_only=True)
class CommandRequest:
    """What to run: a command line in a working directory of a project, with an environment."""

    task_label: str
    project_dir: Path
    workdir: str
    io_dir: Path
    command: tuple[str | IoFile, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def working_dir(self) -> Path:
        return self.project_dir / self.workdir if self.workdir else self.project_dir

    def argv(self, io_dir: str | Path) -> list[str]:
        """Return the command line with IO files resolved under ``io_dir``."""
        return [str(Path(io_dir) / a.name) if isinstance(a, IoFile) else a for a in self.command]


@dataclass(frozen=True)
class CommandResult:
    """How the command ended. ``reason`` explains an abnormal end (OOM kill, ECS stop reason)."""

    exit_code: int
    reason: str | None = None


class CommandBackend(Protocol):
    """A place to run commands. ``kill`` may be called from a signal handler while ``run`` blocks."""

    name: str

    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult: ...

    def kill(self) -> None: ...
