"""rb>: call a Ruby method of the project."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.backends.base import IoFile
from airflow_cmdexec_provider.exceptions import CmdExecConfigError
from airflow_cmdexec_provider.operators.base import copy_runner, namespaced, program
from airflow_cmdexec_provider.operators.runner import RunnerOperator


class RbOperator(RunnerOperator):
    """Digdag ``rb>``: call ``method`` (``Klass.meth``, ``Mod::Klass.meth`` or ``meth``) of the project.

    ``require`` loads a project file first (the working directory is on ``$LOAD_PATH``). Arguments are
    bound by parameter name from params; ``Digdag.env.params`` and ``Digdag.env.store(key: value)``
    work as in Digdag.

    :param method: what to call, e.g. ``"MyWorkflow.step1"``. (templated)
    :param require: a project file to require, e.g. ``"tasks/my_workflow"``.
    :param ruby: the interpreter, a string or a list (default ``"ruby"``).
    :param rb: Digdag's ``rb:`` namespace, e.g. ``{"require": "tasks/wf", "ruby": "ruby3.2"}`` in
        ``default_args``; ``require=`` and ``ruby=`` win over it.
    """

    template_fields: Sequence[str] = ("method", "env")
    program_key = "ruby"
    language = "Ruby"

    def __init__(
        self,
        *,
        method: str,
        require: str | None = None,
        ruby: str | Sequence[str] | None = None,
        rb: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.require = require
        self.ruby = ruby
        self.rb = rb

    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        method = self.check_method()
        allowed = ("require", "ruby")
        ruby = program(namespaced(self.ruby, self.rb, "ruby", allowed, "rb", self.task_label), "ruby", ["ruby"],
                       self.task_label)
        require = namespaced(self.require, self.rb, "require", allowed, "rb", self.task_label)
        if require is not None and not isinstance(require, str):
            raise CmdExecConfigError(f"Task {self.task_label}: require must be a string, got {require!r}")
        self.write_input(io_dir, params)
        copy_runner("rb_runner.rb", io_dir, "runner.rb")
        command: tuple[str | IoFile, ...] = (
            *ruby, IoFile("runner.rb"), method, IoFile("input.json"), IoFile("output.json"),
        )
        if require:
            command += (require,)
        return command, env
