"""Run a DAG in a separate worker process that a test can SIGKILL, then run its retry.

The worker is ``dag.test(logical_date=L)`` in a subprocess: it runs the task in that process (so
killing it kills the worker for real). Running it again with the same logical date re-uses the same
DAG run, clears the task (as Airflow does before a retry) and runs the next try; the task state
store of the task instance survives that, exactly as across real retries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

PROJECT_FILES = {
    "tasks/__init__.py": "",
    "tasks/slow.py": textwrap.dedent(
        """
        import sys, time, digdag

        def run(session_date):
            for i in range(1, 4):
                print("slow-line %d" % i, flush=True)
            time.sleep(float(__import__("os").environ.get("SLOW_PAUSE", "12")))
            for i in range(4, 6):
                print("slow-line %d" % i, flush=True)
            digdag.env.store(finished=True, lines=5)
        """
    ),
    "tasks/slow.sh": (
        "#!/bin/sh\nfor i in 1 2 3; do echo slow-line $i; done\nsleep ${SLOW_PAUSE:-12}\n"
        "for i in 4 5; do echo slow-line $i; done\n"
    ),
}


def make_project(root: Path) -> Path:
    for rel, text in PROJECT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "tasks" / "slow.sh").chmod(0o755)
    return root


# The first try: a new DAG run, run by dag.test in this (worker) process.
FIRST_TRY = """
import runpy
from datetime import datetime
dag = runpy.run_path(DAG_FILE)["dag"]
when = datetime.fromisoformat(LOGICAL_DATE)
dr = dag.test(logical_date=when, run_after=when)
print("DAG RUN STATE:", dr.state, flush=True)
"""

# The retry: what the scheduler does once it found the dead worker's task instance (a new try of the
# same task instance in the same DAG run), then the task run as dag.test runs it. dag.test itself
# cannot be used: it deletes and re-creates the DAG run, and with it the task state store.
RETRY = """
import runpy
from datetime import datetime
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.sdk.definitions.dag import _run_task
from airflow.utils.session import create_session
from airflow.utils.state import TaskInstanceState
dag = runpy.run_path(DAG_FILE)["dag"]
when = datetime.fromisoformat(LOGICAL_DATE)
with create_session() as session:
    dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.logical_date == when))
    ti = dr.get_task_instance("job", session=session)
    print("EARLIER TRY:", ti.try_number, ti.state, flush=True)
    ti.prepare_db_for_next_try(session)
    ti.try_number += 1
    ti.state = TaskInstanceState.SCHEDULED
    session.commit()
    ti = dr.get_task_instance("job", session=session)
    _run_task(ti=ti, task=dag.task_dict["job"], run_triggerer=True)
    session.expire_all()
    ti = dr.get_task_instance("job", session=session)
    print("RETRY STATE:", ti.try_number, ti.state, flush=True)
"""


class Worker:
    """One ``dag.test`` run of ``worker_dag.py`` in its own process group."""

    def __init__(self, env: dict[str, str], logical_date: str, log_path: Path, retry: bool = False) -> None:
        self.log_path = log_path
        code = RETRY if retry else FIRST_TRY
        code = code.replace("DAG_FILE", repr(str(HERE / "dags" / "worker_dag.py"))).replace(
            "LOGICAL_DATE", repr(logical_date)
        )
        self.log_file = open(log_path, "wb")  # noqa: SIM115 - the worker writes to it until it exits
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) before {text!r}:\n{self.output()[-4000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"{text!r} did not appear within {timeout}s:\n{self.output()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the worker process (only it: what it started elsewhere lives on, as after a crash)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log_file.close()

    def finish(self, timeout: float) -> str:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.log_file.close()
        return self.output()


def task_log_lines(output: str) -> list[str]:
    """The task's own output lines (``line N``) as the worker printed them."""
    import re

    return re.findall(r"slow-line (\d)", output)
