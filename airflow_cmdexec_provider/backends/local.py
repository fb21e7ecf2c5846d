"""Run the command as a process on the worker (Digdag's ``simple`` executor)."""

from __future__ import annotations

import contextlib
import os
import selectors
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
from airflow_cmdexec_provider.exceptions import BackendError, CommandNotFound

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
        # kill() may come before the process exists or before run() has recorded it (the command
        # can print, even finish its set-up, in between): it stays set, and run() checks it after.
        self._killed = threading.Event()

    @classmethod
    def from_settings(cls, settings: TaskSettings) -> LocalBackend:
        return cls()

    def run(self, request: CommandRequest, log_line: LineSink) -> CommandResult:
        argv = request.argv(request.io_dir)
        env = {**self._base_env, **request.env}
        if self._killed.is_set():
            raise BackendError(f"Task {request.task_label}: killed before its command started on the worker")
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
            if self._killed.is_set():  # kill() came while the process was being started
                self._stop(proc, wait=False)
            exit_code = self._forward_until_exit(proc, stdout.fileno(), log_line)
        finally:
            self._stop(proc, wait=True)
            stdout.close()
            self._proc = None
        if exit_code < 0:
            return CommandResult(128 - exit_code, f"killed by signal {signal.Signals(-exit_code).name}")
        return CommandResult(exit_code)

    def _forward_until_exit(self, proc: subprocess.Popen[bytes], fd: int, log_line: LineSink) -> int:
        """Forward output line by line until the command exits, then end what it left running.

        Reading to end-of-file alone would wait for a background child (``job &``) that still
        holds the pipe; the task ends with its command, as a process group (review L1).
        """
        pending = b""
        exit_code: int | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if exit_code is None:
                    ready = selector.select(timeout=0.2)
                    exit_code = proc.poll()
                    if exit_code is not None:
                        # What the command wrote stays in the pipe, which reaches EOF once the group is gone.
                        self._stop(proc, wait=True)
                    elif not ready:
                        continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    log_line(raw.decode("utf-8", errors="replace").rstrip("\r"))
        if pending:
            log_line(pending.decode("utf-8", errors="replace").rstrip("\r"))
        return proc.wait()

    def kill(self) -> None:
        """Stop the running process group, or keep the command from starting; safe to call from a
        signal handler."""
        self._killed.set()  # before reading _proc: run() records _proc before it reads the flag
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
