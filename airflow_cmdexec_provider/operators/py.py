"""py>: call a Python function or method of the project, or run a Python script."""

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
    Digdag: ``digdag.env.params``, ``digdag.env.store(...)``, ``digdag.env.export(...)``. Any
    ``SystemExit`` (even ``sys.exit(0)``) fails the task, as in Digdag; a non-zero code is kept.

    ``script`` is Digdag's ``_type: py`` + ``script:`` form: the text runs *instead of* the runner,
    as ``python runner.py input.json output.json``, so it reads the params from ``input.json``
    (``{"params": {...}}``) and must write ``output.json`` (``{"store_params": {...}}``) itself;
    there is no ``digdag`` module. It is not templated (Jinja would take ``{{`` in f-strings; params
    arrive in ``input.json``).

    :param method: what to call, e.g. ``"tasks.my_workflow.MyWorkflow.step1"``. (templated)
    :param script: instead of ``method``: the text of a Python script, as described above.
    :param python: the interpreter, a string or a list (default ``"python3"``; Digdag says ``python``).
    :param py: Digdag's ``py:`` namespace, e.g. ``{"python": ["python3", "-u"]}`` in ``default_args``;
        ``python=`` wins over it.
    """

    template_fields: Sequence[str] = ("method", "env")
    program_key = "python"
    language = "Python"
    method_example = "tasks.my_workflow.step1"
    error_heading = "\nError messages from python"

    def __init__(
        self,
        *,
        method: str | None = None,
        script: str | None = None,
        python: str | Sequence[str] | None = None,
        py: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.script = script
        self.python = python
        self.py = py

    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        kind, text = self.method_or_script()
        python_value = namespaced(self.python, self.py, "python", ("python",), "py", self.task_label)
        python = program(python_value, "python", ["python3"], self.task_label)
        self.write_input(io_dir, params)
        if kind == "script":
            (io_dir / "runner.py").write_text(text, encoding="utf-8")
            return (*python, IoFile("runner.py"), IoFile("input.json"), IoFile("output.json")), env
        copy_runner("py_runner.py", io_dir, "runner.py")
        return (*python, IoFile("runner.py"), text, IoFile("input.json"), IoFile("output.json")), env
