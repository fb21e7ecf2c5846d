"""Helpers of the ``airflow-cmdexec`` CLI tests (no tests here).

Each test runs the real console script in a subprocess against its own Airflow home: a copy of a
metadata DB migrated once per module, so the session DB the other tests use is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "airflow-cmdexec")
ROOT = Path(__file__).resolve().parent.parent

# The example of Digdag's docs (command_executor.md), verbatim.
DOCS_EXAMPLE = """\
agent.command_executor.ecs.name = digdag-test

agent.command_executor.ecs.digdag-test.access_key_id = <ACCESS KEY>
agent.command_executor.ecs.digdag-test.secret_access_key = <SECRET KEY>
agent.command_executor.ecs.digdag-test.launch_type = FARGATE
agent.command_executor.ecs.digdag-test.region = us-east-1
agent.command_executor.ecs.digdag-test.subnets = subnet-NNNNN
agent.command_executor.ecs.digdag-test.max_retries = 3

agent.command_executor.ecs.temporal_storage.type = s3
agent.command_executor.ecs.temporal_storage.s3.bucket = <Bucket>
agent.command_executor.ecs.temporal_storage.s3.endpoint = s3.amazonaws.com
agent.command_executor.ecs.temporal_storage.s3.credentials.access-key-id = <ACCESS KEY>
agent.command_executor.ecs.temporal_storage.s3.credentials.secret-access-key = <SECRET KEY>
"""
FERNET_KEY = "wQ2cGq7hQx0m5mS9yWmH3h7m8zQF0nJ2c1Yb5W3sV7E="


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"airflow-cmdexec {' '.join(self.args)} -> {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )


class CmdexecHome:
    """An Airflow home with a migrated SQLite DB, and ``run`` for the CLI in it."""

    def __init__(self, path: Path, template: Path | None = None) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        (path / "dags").mkdir(exist_ok=True)
        if template is not None:
            shutil.copy(template / "airflow.db", path / "airflow.db")
        self.extra_env: dict[str, str] = {}

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AWS_"))
            and k not in ("_AIRFLOW_PROCESS_CONTEXT", "AIRFLOW_HOME")
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.path}/airflow.db",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.path / "dags"),
            }
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def migrate(self) -> None:
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            check=False,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout}\n{proc.stderr}")

    def run(self, *args: str, **env: str) -> Result:
        proc = subprocess.run(
            [CLI, *args],
            check=False,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=self.path,
        )
        return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)

    def write(self, name: str, text: str) -> str:
        path = self.path / name
        path.write_text(text)
        return str(path)


def read_connection(home: CmdexecHome, conn_id: str) -> dict | None:
    """A connection as stored in the home's metadata DB, or None: its row read with sqlite3, and the
    password and the extra decrypted with the home's Fernet key, as Airflow decrypts them.

    Not through Airflow's models: a process that imports Airflow takes 4-6 s here, and the CLI tests
    read a connection after almost every command (28 reads)."""
    from cryptography.fernet import Fernet

    with closing(sqlite3.connect(home.path / "airflow.db")) as db:
        row = db.execute(
            "SELECT conn_type, login, password, extra, description, is_encrypted, is_extra_encrypted "
            "FROM connection WHERE conn_id = ?",
            (conn_id,),
        ).fetchone()
    if row is None:
        return None
    conn_type, login, password, extra, description, encrypted, extra_encrypted = row
    fernet = Fernet(FERNET_KEY.encode())
    if password and encrypted:
        password = fernet.decrypt(password.encode()).decode()
    if extra and extra_encrypted:
        extra = fernet.decrypt(extra.encode()).decode()
    return {
        "conn_type": conn_type,
        "login": login,
        "password": password,
        "extra": json.loads(extra) if extra else None,
        "description": description,
    }


def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated metadata DB to copy (one ``airflow db migrate`` per test module)."""
    home = CmdexecHome(tmp_path_factory.mktemp("cmdexec-cli-template"))
    home.migrate()
    return home.path


def properties(text: str) -> dict[str, str]:
    """``key = value`` lines as a dict (comments and blank lines skipped), via the CLI's own parser."""
    from airflow_cmdexec_provider.cli import parse_properties

    return {prop.key: prop.value for prop in parse_properties(text)}


def masked(props: dict[str, str]) -> dict[str, str]:
    """The properties as show-config prints them: secret values as ***."""
    secret_words = ("secret_access_key", "secret-access-key", "credentials.json.content", "oauth_token")
    return {k: ("***" if any(w in k for w in secret_words) else v) for k, v in props.items()}
