"""A separate Airflow home (its own SQLite DB) for the worker-crash tests, whose workers are subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.durable.harness import HERE, make_project, task_log_lines


@pytest.fixture(scope="session", name="durable_home")  # imported elsewhere as durable_home_fixture
def durable_home_fixture() -> Path:
    home = Path(tempfile.mkdtemp(prefix="cmdexec-durable-home-"))
    env = {**os.environ, **_airflow_env(home)}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home


def _airflow_env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }


@pytest.fixture(name="worker_env")  # imported elsewhere as worker_env_fixture
def worker_env_fixture(durable_home, tmp_path):
    """Build the environment of a worker process: Airflow home, project, DAG id and extra settings."""

    def build(dag_id: str, **extra: str) -> dict[str, str]:
        project = make_project(tmp_path / "project")
        env = {
            **os.environ,
            **_airflow_env(durable_home),
            "CMDEXEC_DURABLE_PROJECT": str(project),
            "CMDEXEC_DURABLE_DAG_ID": dag_id,
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    return build


def read_xcom(home: Path, dag_id: str, task_id: str = "job"):
    """The XCom return_value of the latest run of dag_id.task_id, read straight from the SQLite DB."""
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute(
            "SELECT value FROM xcom WHERE dag_id=? AND task_id=? AND key='return_value' ORDER BY timestamp "
            "DESC",
            (dag_id, task_id),
        ).fetchone()
    if row is None:
        return None
    value = row[0]
    return json.loads(value) if isinstance(value, (str, bytes)) else value


# The ECS emulator fixtures, for the ECS worker-crash tests in this folder.
from tests.ecs.conftest import ecs_aws_env, ecs_emulator, ecs_emulator_session  # noqa: E402, F401


def saved_handle(home: Path, dag_id: str) -> dict | None:
    """The handle a worker saved in the task state store (read straight from the SQLite DB)."""
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute(
            "SELECT value FROM task_state_store WHERE dag_id=? AND key='cmdexec_remote_command'", (dag_id,)
        ).fetchone()
    return None if row is None else json.loads(row[0])


def kill_once_the_position_is_saved(home: Path, dag_id: str, worker: Any) -> None:
    """Kill ``worker`` once the log position it saved covers every line it showed (saved about once
    a second; a loaded machine may save it late), so that its retry must show exactly the rest."""
    deadline = time.monotonic() + 180
    while True:
        handle = saved_handle(home, dag_id) or {}
        shown = len(task_log_lines(worker.output()))
        if handle.get("log_lines", 0) >= 3 and handle.get("log_lines") == shown:
            break
        assert time.monotonic() < deadline, f"saved {handle.get('log_lines')} lines, shown {shown}"
        time.sleep(0.2)
    worker.kill()
