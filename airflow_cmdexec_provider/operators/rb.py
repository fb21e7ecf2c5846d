"""rb>: call a Ruby method of the project, or run a Ruby script."""

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
    bound by parameter name from params; ``Digdag.env.params``, ``Digdag.env.store(key: value)`` and
    the ``DigdagEnv::PARAMS``/``STORE_PARAMS``/... constants work as in Digdag. A public instance
    method is called on a new instance; anything else is called on the class or module itself the
    way Digdag's ``send`` does (private and inherited methods too); ``meth`` is a top-level method.

    ``script`` is Digdag's ``_type: rb`` + ``script:`` form: the text runs *instead of* the runner, as
    ``ruby -I . [-r require] -- runner.rb input.json output.json`` in the working directory, so it
    reads the params from ``input.json`` and must write ``output.json`` itself; there is no
    ``Digdag`` module. It is not templated (params arrive in ``input.json``).

    :param method: what to call, e.g. ``"MyWorkflow.step1"``. (templated)
    :param script: instead of ``method``: the text of a Ruby script, as described above.
    :param require: a project file to require, e.g. ``"tasks/my_workflow"``.
    :param ruby: the interpreter, a string or a list (default ``"ruby"``).
    :param rb: Digdag's ``rb:`` namespace, e.g. ``{"require": "tasks/wf", "ruby": "ruby3.2"}`` in
        ``default_args``; ``require=`` and ``ruby=`` win over it.
    """

    template_fields: Sequence[str] = ("method", "env")
    program_key = "ruby"
    language = "Ruby"
    method_example = "MyWorkflow.step1"
    error_heading = ""

    def __init__(
        self,
        *,
        method: str | None = None,
        script: str | None = None,
        require: str | None = None,
        ruby: str | Sequence[str] | None = None,
        rb: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.script = script
        self.require = require
        self.ruby = ruby
        self.rb = rb

    def prepare(
        self, io_dir: Path, params: dict[str, Any], env: dict[str, str]
    ) -> tuple[tuple[str | IoFile, ...], dict[str, str]]:
        kind, text = self.method_or_script()
        allowed = ("require", "ruby")
        ruby = program(
            namespaced(self.ruby, self.rb, "ruby", allowed, "rb", self.task_label),
            "ruby",
            ["ruby"],
            self.task_label,
        )
        require = namespaced(self.require, self.rb, "require", allowed, "rb", self.task_label)
        if require is not None and not isinstance(require, str):
            raise CmdExecConfigError(f"Task {self.task_label}: require must be a string, got {require!r}")
        self.write_input(io_dir, params)
        if kind == "script":
            (io_dir / "runner.rb").write_text(text, encoding="utf-8")
            # Digdag's -I is the workspace (the working directory); "." works on every backend.
            options = ("-I", ".", *(("-r", require) if require else ()), "--")
            return (*ruby, *options, IoFile("runner.rb"), IoFile("input.json"), IoFile("output.json")), env
        copy_runner("rb_runner.rb", io_dir, "runner.rb")
        command: tuple[str | IoFile, ...] = (
            *ruby,
            IoFile("runner.rb"),
            text,
            IoFile("input.json"),
            IoFile("output.json"),
        )
        if require:
            command += (require,)
        return command, env
