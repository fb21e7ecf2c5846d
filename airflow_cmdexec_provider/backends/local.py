"""Run the command as a process on the worker (Digdag's ``simple`` executor)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping

from airflow_cmdexec_provider.backends.base import (
    CommandBackend,
    CommandRequest,
    CommandResult,
    LineSink,
    TaskSettings,
)
from airflow_cmdexec_provider.exceptions import CommandNotFound

KILL_GRACE_SECONDS = 10.0


class LocalBackend(CommandBackend):
    """Run in the project (or its workdir) with the worker's environment plus the request's.

    The process leads its own session, so a kill reaches everything it started: TERM to the group,
    then KILL after ``kill_grace`` seconds. Output (stdout and stderr merged, as Digdag does) is
    forwarded line by line while the process runs.
    """

    name = "local"

    def __init__(self, base_env: Mapping[str, str] | None = None, kill_grace: float = KILL_GRACE_SECONDS):
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._kill_grace = kill_grace
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_settings(cls, settings: TaskSettings) -> LocalBackend:
        return cls()

    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult:
        argv = request.argv(request.io_dir)
        env = {**self._base_env, **request.env}
        try:
            proc = subprocess.Popen(
                argv,
                cwd=request.working_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            missing = argv[0] if exc.filename in (None, argv[0]) else exc.filename
            raise CommandNotFound(missing, "on the worker (not an executable on PATH)") from exc
        self._proc = proc
        stdout = proc.stdout
        assert stdout is not None
        try:
            for raw in iter(stdout.readline, b""):
                log_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            exit_code = proc.wait()
        finally:
            self._stop(proc, wait=True)
            stdout.close()
            self._proc = None
        if exit_code < 0:
            return CommandResult(128 - exit_code, f"killed by signal {signal.Signals(-exit_code).name}")
        return CommandResult(exit_code)

    def kill(self) -> None:
        """Stop the running process group; safe to call from a signal handler."""
        proc = self._proc
        if proc is not None:
            self._stop(proc, wait=False)

    def _stop(self, proc: subprocess.Popen[bytes], wait: bool) -> None:
        """TERM the whole process group, then KILL it if it is still there after the grace period."""
        # The process leads its own session, so its group id is its pid, even after it was reaped
        # (os.getpgid would then fail and miss the background children left in the group, review L1).
        pgid = proc.pid
        if proc.poll() is not None and not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)

        def _escalate() -> None:
            deadline = time.monotonic() + self._kill_grace
            while time.monotonic() < deadline:
                proc.poll()  # reap the leader, or its zombie keeps the group "alive"
                if not _group_alive(pgid):
                    return
                time.sleep(0.05)
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()

        if wait:
            _escalate()
        else:
            threading.Thread(target=_escalate, name="cmdexec-local-kill", daemon=True).start()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
