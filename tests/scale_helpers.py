"""Many deferred commands followed at once by CommandTriggers in one event loop, as one triggerer does.

Used by the scale test (correctness: every command ends, every log line arrives once and in order,
nothing is left) and by ``benchmarks/bench_triggerer_scale.py`` (CPU, line latency, API calls).
The commands are started with the backends' own ``submit`` (as a deferring worker does), then each
gets a real ``CommandTrigger`` whose ``run()`` is driven in a single asyncio loop; its log lines
are recorded with the time they reached the "task log".
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile, RemoteBackend, TaskSettings
from airflow_cmdexec_provider.triggers.command import CommandTrigger

# Each line carries its task, its number and the time the command printed it (for the latency).
LINE_SCRIPT = (
    'for i in $(seq 1 {lines}); do echo "scale {task} line $i at $(date +%s.%N)"; sleep {pause}; done\n'
)


@dataclass
class Followed:
    name: str
    backend: RemoteBackend
    handle: dict[str, Any]
    settings: dict[str, Any]
    lines: list[tuple[float, str]] = field(default_factory=list)  # (time received, text)
    event: dict[str, Any] | None = None


class RecordingTrigger(CommandTrigger):
    """A CommandTrigger whose task log is a list (the triggerer would send the lines to the task log)."""

    sink: list[tuple[float, str]]

    def _log_line(self, line: str) -> None:
        self.sink.append((time.time(), line))


def request(
    tmp_path: Path, task: str, lines: int, pause: float, dag_id: str = "scale", run_id: str = "scale-run"
) -> CommandRequest:
    io_dir = tmp_path / task / "io"
    io_dir.mkdir(parents=True)
    (io_dir / "runner.sh").write_text(LINE_SCRIPT.format(lines=lines, task=task, pause=pause))
    project = tmp_path / task / "project"
    project.mkdir()
    return CommandRequest(
        task_label=f"scale.{task}",
        project_dir=project,
        workdir="",
        io_dir=io_dir,
        command=("/bin/sh", IoFile("runner.sh")),
        labels={"dag_id": dag_id, "task_id": task, "run_id": run_id, "try_number": "1", "map_index": "-1"},
    )


def submit_all(
    make_backend, settings: TaskSettings, requests: list[CommandRequest], workers: int = 8
) -> list[Followed]:
    """Start every command (in a few threads, as several workers would), each with its own backend."""

    def start(req: CommandRequest) -> Followed:
        backend = make_backend()
        handle = backend.submit(req, lambda line: None)
        return Followed(req.labels["task_id"], backend, handle, settings.to_json())

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(start, requests))


async def _follow(followed: Followed, executor: str) -> None:
    trigger = RecordingTrigger(
        executor=executor, handle=followed.handle, settings=followed.settings, deadline=None
    )
    trigger.sink = followed.lines
    async for event in trigger.run():
        followed.event = event.payload
        return


def follow_all(followed: list[Followed], executor: str) -> float:
    """Run every trigger to its event in one event loop; return the CPU seconds the loop's process used."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)

    async def main() -> None:
        await asyncio.gather(*(_follow(f, executor) for f in followed))

    asyncio.run(main())
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def command_lines(f: Followed) -> list[int]:
    """The numbers of the command's own lines, in the order they reached the task log."""
    numbers = []
    for _, text in f.lines:
        parts = text.split()
        if len(parts) >= 4 and parts[0] == "scale" and parts[1] == f.name and parts[2] == "line":
            numbers.append(int(parts[3]))
    return numbers


def latencies(f: Followed) -> list[float]:
    """Seconds from the command printing a line to the line reaching the task log."""
    result = []
    for received, text in f.lines:
        parts = text.split()
        if len(parts) >= 6 and parts[0] == "scale" and parts[4] == "at":
            result.append(received - float(parts[5]))
    return result
