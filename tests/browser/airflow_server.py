"""Run Airflow's own API server (which serves the React UI) on a loopback port, in its own home.

The server gets a dedicated ``AIRFLOW_HOME`` (SQLite, migrated), the simple auth manager with one
known user (``[core] simple_auth_manager_users`` = ``admin:admin``; its password is written to
``[core] simple_auth_manager_passwords_file`` before the server starts, so the manager does not
generate one) and a fixed Fernet key, so that another process with :meth:`env` reads the same
encrypted connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowApiServer:
    def __init__(self, home: Path, username: str = "admin", config: dict[str, str] | None = None) -> None:
        """``config``: more ``AIRFLOW__*`` settings of the server (the shell's own are dropped)."""
        from cryptography.fernet import Fernet

        self.home = home
        self.config = dict(config or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.username = username
        self.password = "ui-test-" + secrets.token_urlsafe(12)
        self.log_path = home / "api-server.log"
        self._fernet_key = Fernet.generate_key().decode()
        self._jwt_secret = secrets.token_urlsafe(32)
        self._proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        """The environment of the server and of any process that must read its metadata DB."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))
            and k != "_AIRFLOW_PROCESS_CONTEXT"
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__API__EXPOSE_CONFIG": "False",
                **self.config,
            }
        )
        return env

    def start(self, timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dags").mkdir(exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({self.username: self.password}) + "\n")
        env = self.env()
        migrate = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed by the child's exit
        self._proc = subprocess.Popen(
            [
                str(VENV_BIN / "airflow"),
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the API server exited with {self._proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/api/v2/monitor/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise RuntimeError(
            f"the API server did not answer on {self.url} within {timeout:.0f}s:\n{self.log()}"
        )

    def log(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(lines[-tail:])

    def stop(self) -> None:
        """Terminate the server and its workers (its own process group), then kill what is left."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def __enter__(self) -> AirflowApiServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
