"""What the ``airflow-cmdexec`` commands share: exit codes, masking, errors, output."""

from __future__ import annotations

import re
import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1  # invalid configuration (nothing written) or the selected backend is unreachable
EXIT_USAGE = 2

MASK = "***"
TASK_LABEL = "airflow-cmdexec"
COMMAND_EXECUTOR_PREFIX = "agent.command_executor."
# Digdag's names of the executor types; Airflow's Variable holds ecs, docker or local.
DIGDAG_EXECUTOR_NAMES = {"local": "simple"}
CONN_ID_RE = re.compile(r"^[\w#!()\-.:/\\]{1,250}$")  # airflow.models.connection.RE_SANITIZE_CONN_ID


class CliError(Exception):
    """An error the CLI reports as one message (and exit code 1)."""


# --------------------------------------------------------------------------------------------------
# Output that never shows a secret: every secret seen (file values, connection passwords) is masked.
# --------------------------------------------------------------------------------------------------
class Output:
    """Our stdout and stderr; Airflow's own logging is sent to stderr (see ``main``)."""

    def __init__(self, stdout: Any = None) -> None:
        self._secrets: set[str] = set()
        self._stdout = stdout

    def add_secret(self, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self._secrets.add(value)
            self._secrets.add(value.strip())

    def mask(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def out(self, text: str = "") -> None:
        print(self.mask(text), file=self._stdout or sys.stdout, flush=True)

    def err(self, text: str) -> None:
        print(self.mask(text), file=sys.stderr, flush=True)
