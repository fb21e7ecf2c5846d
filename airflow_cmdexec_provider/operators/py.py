"""py>: call a Python function or method of the project."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.backends.base import IoFile
from airflow_cmdexec_provider.operators.base import copy_runner, namespaced, program
from airflow_cmdexec_provider.operators.runner import RunnerOperator


class PyOperator(RunnerOperator):
    """Digdag ``py>``: call ``method`` of the project with arguments bound by name from params.

    ``method`` is ``module.function``, ``module.Class.method`` or ``module.Class`` (which calls
    ``run``). The working directory is importable. Inside the code ``import digdag`` works as in
    Digdag: ``digdag.env.params``, ``digdag.env.store(...)``, ``digdag.env.export(...)``.

    :param method: what to call, e.g. ``"tasks.my_workflow.MyWorkflow.step1"``. (templated)
    :param python: the interpreter, a string or a list (default ``"python3"``; Digdag says ``python``).
    :param py: Digdag's ``py:`` namespace, e.g. ``{"python": ["python3", "-u"]}`` in ``default_args``;
        ``python=`` wins over it.
    """

    template_fields: Sequence[str] = ("method", "env")
    program_key = "python"
    language = "Python"

    def __init__(
        self,
        *,
        method: str,
        python: str | Sequence[str] | None = None,
        py: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.python = python
        self.py = py

    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        method = self.check_method()
        python_value = namespaced(self.python, self.py, "python", ("python",), "py", self.task_label)
        python = program(python_value, "python", ["python3"], self.task_label)
        self.write_input(io_dir, params)
        copy_runner("py_runner.py", io_dir, "runner.py")
        command = (*python, IoFile("runner.py"), method, IoFile("input.json"), IoFile("output.json"))
        return command, env
