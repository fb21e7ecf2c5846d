"""Errors of the provider. Every message names the task and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    from typing import Self


class CmdExecError(AirflowException):
    """Base class of all errors raised by airflow-cmdexec-provider."""


class CmdExecConfigError(CmdExecError):
    """Bad input or configuration: a wrong argument, key or value. Never retried into another backend."""


class BackendNotConfigured(CmdExecError):
    """A backend has no configuration at all. The only error that lets automatic selection fall back.

    Raised before anything is started, uploaded or created, so falling back cannot run a command twice.
    """


class BackendError(CmdExecError):
    """The backend failed to run the command (daemon unreachable, AWS error, missing image, ...)."""


class CommandNotFound(CmdExecError):
    """The program that should run the command (shell or interpreter) does not exist."""

    def __init__(self, program: str, where: str) -> None:
        super().__init__(f"{program!r} was not found {where}")
        self.program = program
        self.where = where

    def __reduce__(self) -> tuple[type[Self], tuple[str, str]]:
        return (type(self), (self.program, self.where))


class CommandFailed(CmdExecError):
    """The command ran and exited with a non-zero code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def __reduce__(self) -> tuple[type[Self], tuple[str, int]]:
        return (type(self), (str(self), self.exit_code))
