"""A third-party backend is one module plus one entry point, as Digdag's CommandExecutorFactory plugins are.

The plugin below is installed the way pip installs a package: a module and a ``.dist-info`` folder
with ``entry_points.txt`` on ``sys.path``. Its name then works as an executor type (forced per task
and through the Variable ``cmdexec_executor_type``), with its own fallback chain.
"""

from __future__ import annotations

import sys
import textwrap

import pendulum
import pytest

from airflow_cmdexec_provider.backends import registry
from airflow_cmdexec_provider.operators import ShOperator

PLUGIN = textwrap.dedent('''
    """A tiny third-party backend: runs the command locally, with a marker in its environment."""
    import subprocess

    from airflow_cmdexec_provider.backends.base import CommandBackend, CommandResult
    from airflow_cmdexec_provider.exceptions import BackendNotConfigured


    class MarkedBackend(CommandBackend):
        name = "marked"
        fallback = ("local",)

        @classmethod
        def from_settings(cls, settings):
            options = settings.executor_options.get("marked")
            if options is None:
                raise BackendNotConfigured("the task has no marked params")
            return cls(options.get("marker", "none"))

        def __init__(self, marker):
            self.marker = marker

        def run(self, request, log_line):
            env = {**request.env, "PLUGIN_MARKER": self.marker}
            proc = subprocess.run(request.argv(request.io_dir), cwd=request.working_dir, env=env,
                                  capture_output=True, text=True)
            for line in (proc.stdout + proc.stderr).splitlines():
                log_line(line)
            return CommandResult(proc.returncode)

        def kill(self):
            pass
''')


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "cmdexec_marked").mkdir(parents=True)
    (site / "cmdexec_marked" / "__init__.py").write_text(PLUGIN)
    info = site / "cmdexec_marked-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cmdexec-marked\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[airflow_cmdexec_provider.backends]\nmarked = cmdexec_marked:MarkedBackend\n"
    )
    monkeypatch.syspath_prepend(str(site))
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()
    sys.modules.pop("cmdexec_marked", None)


def _dag(dag_id: str):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))


def test_a_plugin_backend_registered_by_entry_point_runs_tasks(installed_plugin, run_dag, tmp_path):
    assert "marked" in registry.known_names()
    with _dag("plugin_backend") as dag:
        ShOperator(
            task_id="forced",
            project_dir=str(tmp_path),
            command='echo "marker=$PLUGIN_MARKER"',
            executor="marked",
            executor_options={"marked": {"marker": "forced"}},
        )
        ShOperator(
            task_id="not_configured",
            project_dir=str(tmp_path),
            command='echo "marker=${PLUGIN_MARKER:-}"',
            executor="marked",
        )
    result = run_dag(dag)
    assert result.task_states["forced"] == "success", result.error_text("forced")
    assert "marker=forced" in result.log_lines("forced")
    assert result.task_states["not_configured"] == "failed"
    assert "executor 'marked' was forced but is not configured" in result.error_text("not_configured")


def test_a_plugin_executor_type_falls_back_along_its_own_chain(
    installed_plugin, run_dag, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_VAR_CMDEXEC_EXECUTOR_TYPE", "marked")
    with _dag("plugin_chain") as dag:
        ShOperator(
            task_id="on_plugin",
            project_dir=str(tmp_path),
            command='echo "marker=$PLUGIN_MARKER"',
            executor_options={"marked": {"marker": "chain"}},
        )
        ShOperator(
            task_id="fell_back",
            project_dir=str(tmp_path),
            command="echo local-ran",
            executor_options={"other": {}},
        )
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert "marker=chain" in result.log_lines("on_plugin")
    assert "local-ran" in result.log_lines("fell_back")
    selection = [line for line in result.log_lines("fell_back") if "runs on the" in line]
    assert selection
    assert "local executor (executor type 'marked'; skipped marked:" in selection[0]
