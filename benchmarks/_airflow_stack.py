"""A throw-away Airflow for the benchmarks and ``tests/test_scale_lines.py``: home, SQLite DB, services.

``AirflowHome`` is a temp ``AIRFLOW_HOME`` with its own dags folder and migrated SQLite metadata DB,
and the environment every Airflow command of it runs with: the caller's environment WITHOUT any
``AIRFLOW_*`` variable (so no connection, Variable, secrets backend or executor of the caller leaks
in; a cmdexec task with nothing configured runs locally), with ``PYTHONPATH`` starting at this
checkout (the shared virtualenv may have another copy of the package installed) and ``TMPDIR``
inside the home.

``AirflowStack`` runs the real services on it, as a small deployment does: ``airflow api-server``
(the execution API the tasks talk to), ``airflow dag-processor`` and ``airflow scheduler`` with the
``LocalExecutor``. Every port is a free one on 127.0.0.1 (other people run Airflow on this machine
too), every service runs in its own process group and is stopped (TERM, then KILL) with it.
SQLite is enough here: Airflow 3 tasks never open the metadata DB (they go through the API
server), so only the three services write to it (``airflow standalone`` does the same).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_CLI = str(Path(sys.executable).parent / "airflow")
LOCAL_EXECUTOR_WORKER = "airflow worker -- LocalExecutor"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowHome:
    """A temp AIRFLOW_HOME with a dags folder, a SQLite DB and the environment to run Airflow on it."""

    def __init__(self, prefix: str, config: dict[str, str] | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.dags = self.path / "dags"
        self.dags.mkdir()
        self.db = self.path / "airflow.db"
        tmp = self.path / "tmp"
        tmp.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(self.path),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.db}",
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
            # The tasks' temp folders (IO folders, runner files) go inside the home, so that even a
            # task killed mid-run leaves nothing behind once the home is removed.
            TMPDIR=str(tmp),
        )
        env.update(config or {})
        self.env = env

    def airflow(self, *args: str, timeout: float = 300, log: Path | None = None) -> str:
        """Run an ``airflow`` command on this home; return its output, or raise with its tail."""
        with open(log or os.devnull, "w") as sink:
            proc = subprocess.run(
                [AIRFLOW_CLI, *args],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                cwd=self.path,
                check=False,
            )
            sink.write(proc.stdout)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
        return proc.stdout

    def migrate(self) -> None:
        self.airflow("db", "migrate")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata DB directly (no Airflow import in this process)."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> Path:
        return (
            self.path
            / "logs"
            / f"dag_id={dag_id}"
            / f"run_id={run_id}"
            / f"task_id={task_id}"
            / (f"attempt={try_number}.log")
        )

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class AirflowStack:
    """api-server + dag-processor + scheduler (LocalExecutor) on an ``AirflowHome``; a context manager."""

    SERVICES = ("api-server", "dag-processor", "scheduler")

    def __init__(self, home: AirflowHome, parallelism: int = 16) -> None:
        api_port = free_port()
        home.env.update(
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM=str(parallelism),
            AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=str(parallelism),
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(api_port),
            AIRFLOW__API__WORKERS="1",  # the default (4) is too many for a 2-core machine
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{api_port}/execution/",
            # The scheduler's log server must not take the fixed default port 8793 of somebody else's.
            AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
            AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
            # Shared by the API server (which signs task tokens) and the workers; never printed.
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_urlsafe(32),
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            # This machine is shared and noisy: a slow answer of the API server must not fail a task.
            AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT="60",
            # A private server on loopback: every request is admin, so no password is made or logged.
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        )
        self.home = home
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        for service in self.SERVICES:
            with open(self.home.path / f"{service}.log", "wb") as out:
                self.procs[service] = subprocess.Popen(
                    [AIRFLOW_CLI, service],
                    env=self.home.env,
                    cwd=self.home.path,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - one thread here; prctl is async-signal-safe
                )
        deadline = time.monotonic() + timeout
        while not (self._api_healthy() and self.worker_pids()):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Airflow services not ready after {timeout:.0f} s:\n{self.tails()}")
            time.sleep(0.5)

    def stop(self, grace: float = 60) -> None:
        """Stop the scheduler first (it ends running tasks, which still need the API server to report),
        then the others: TERM each process group, KILL what is left after ``grace`` seconds."""
        for service in reversed(self.SERVICES):
            proc = self.procs.pop(service, None)
            if proc is None:
                continue
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
            _signal_group(proc.pid, signal.SIGKILL)  # also the group's stragglers (workers, task processes)
            proc.wait()

    def _api_healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def _check_alive(self) -> None:
        for service, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {service} exited with {proc.returncode}:\n{self.tails()}")

    def tails(self, chars: int = 3000) -> str:
        parts = []
        for service in self.SERVICES:
            log = self.home.path / f"{service}.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {service}.log (end)\n{text[-chars:]}")
        return "\n".join(parts)

    # -- DAG runs ------------------------------------------------------------------------------------
    def wait_parsed(self, dag_ids: list[str], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            marks = ",".join("?" * len(dag_ids))
            found = {
                row[0]
                for row in self.home.query(f"SELECT dag_id FROM dag WHERE dag_id IN ({marks})", *dag_ids)
            }
            if found == set(dag_ids):
                return
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"DAGs {sorted(set(dag_ids) - found)} not parsed after {timeout:.0f} s:\n{self.tails()}"
                )
            time.sleep(1)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> None:
        """Start a run through the REST API (an ``airflow dags trigger`` would cost a CLI start, ~10 s
        here)."""
        import urllib.request

        body = json.dumps({"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}).encode()
        request = urllib.request.Request(
            f"{self.api_url}/api/v2/dags/{dag_id}/dagRuns",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status != 200:
                raise RuntimeError(
                    f"triggering {dag_id} failed: {response.status} {response.read()[:2000]!r}"
                )

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the run ended and every worker is idle again (its task processes reaped)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.home.query(
                "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id
            )
            state = rows[0][0] if rows else None
            if state in ("success", "failed") and self.workers_idle():
                return state
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {state} after {timeout:.0f} s:\n{self.tails()}"
                )
            time.sleep(0.5)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        rows = self.home.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
        )
        return dict(rows)

    def failure_report(self, dag_id: str, run_id: str, chars: int = 3000) -> str:
        """The task states, the end of each unsuccessful task's log, and the services' logs."""
        states = self.task_states(dag_id, run_id)
        parts = [f"run {dag_id}/{run_id}: task states {states}"]
        for task_id, state in sorted(states.items()):
            if state != "success":
                log = self.home.task_log(dag_id, run_id, task_id)
                text = log.read_text(errors="replace") if log.exists() else "(no log file)"
                parts.append(f"--- {task_id} ({state}) log (end)\n{text[-chars:]}")
        parts.append(self.tails(chars))
        return "\n".join(parts)

    # -- worker processes -----------------------------------------------------------------------------
    def worker_pids(self) -> list[int]:
        """The LocalExecutor's worker processes: the scheduler's children with the worker title."""
        scheduler = self.procs.get("scheduler")
        if scheduler is None:
            return []
        return [pid for pid in _children(scheduler.pid) if _cmdline(pid).startswith(LOCAL_EXECUTOR_WORKER)]

    def workers_idle(self) -> bool:
        return all(_cmdline(pid).endswith("<idle>") for pid in self.worker_pids())

    def worker_cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds of the workers themselves, and of every task process they ran and reaped.

        A LocalExecutor worker is the supervisor of each task it runs: it forks the task process,
        reads its log messages and writes the log file (and the scheduler's stdout). The task
        process runs the operator and reaps the command it started. From ``/proc/PID/stat``:
        the worker's own utime + stime, and its cutime + cstime, which hold the CPU of every child
        it waited for, recursively. So once the workers are idle again, nothing is missed.
        """
        own = children = 0.0
        for pid in self.worker_pids():
            worker_own, worker_children = process_cpu(pid)
            own += worker_own
            children += worker_children
        return own, children


def process_cpu(pid: int) -> tuple[float, float]:
    """(utime + stime, cutime + cstime) of ``pid`` in seconds, from ``/proc/PID/stat`` (see proc(5))."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    # proc(5) numbers the fields from 1 (pid, comm, state, ...): utime..cstime are 14-17, which are
    # 11-14 here, counted from 0 after the ")" that ends comm.
    utime, stime, cutime, cstime = (int(value) / os.sysconf("SC_CLK_TCK") for value in fields[11:15])
    return utime + stime, cutime + cstime


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


_PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the process that started it dies, even by SIGKILL,
    so that a killed benchmark or test leaves no Airflow service running."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
