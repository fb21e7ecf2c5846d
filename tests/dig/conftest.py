"""Shared setup of the ``.dig`` loader tests.

- The timetable plugin: Airflow must find ``DigdagTimetable`` through a plugin to serialize a
  scheduled DAG. An installed provider registers it with its ``airflow.plugins`` entry point; when
  the installed metadata predates that entry point (a working copy run with ``PYTHONPATH``), a
  one-line plugin module in the session's ``$AIRFLOW_HOME/plugins`` does it, for this process and
  for the ``airflow dags test`` subprocesses alike. It is written at collection, before any test
  loads plugins.
- ``project(name)``: a private copy (in ``tmp_path``) of ``tests/dig/projects/<name>``, since
  workflows write files into their project and tests touch files to test the cache.
- ``run_workflow(project_dir, name, **dag_test_kwargs)``: load one workflow and run it in-process
  with the ``run_dag`` fixture of ``tests/conftest.py``.
- ``dags_test(project_dir, name, logical_date=None)``: ``airflow dags test`` of one workflow in a
  subprocess, through a one-line DAG file that calls ``load_project`` (the documented use).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_CLI = str(Path(sys.executable).parent / "airflow")


def _register_plugin() -> None:
    if any(ep.name == "cmdexec_digdag" for ep in entry_points(group="airflow.plugins")):
        return
    plugins = Path(os.environ["AIRFLOW_HOME"]) / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "cmdexec_digdag_plugin.py").write_text(
        "from airflow_cmdexec_provider.dig.plugin import CmdExecDigdagPlugin  # noqa: F401\n"
    )


_register_plugin()


@pytest.fixture
def project(tmp_path: Path) -> Callable[[str], Path]:
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(PROJECTS / name, target, symlinks=True)
        return target

    return copy


@pytest.fixture
def run_workflow(run_dag: Callable[..., Any]) -> Callable[..., Any]:
    def run(project_dir: Path, name: str, **kwargs: Any) -> Any:
        from airflow_cmdexec_provider.dig import load_project

        dag = load_project(project_dir, include=[name], dag_id_prefix=kwargs.pop("dag_id_prefix", ""))
        return run_dag(next(iter(dag.values())), **kwargs)

    return run


def write_dag_file(folder: Path, project_dir: Path, include: list[str], prefix: str = "") -> Path:
    """A DAG file as a user writes it, in ``folder`` (the dags folder of the subprocess)."""
    folder.mkdir(parents=True, exist_ok=True)
    dag_file = folder / "digdag_dags.py"
    dag_file.write_text(
        "# Airflow DAGs from Digdag workflows (the DAG processor reads files that say 'airflow' and 'dag')\n"
        "from airflow_cmdexec_provider.dig import load_project\n\n"
        f"globals().update(load_project({str(project_dir)!r}, include={include!r},"
        f" dag_id_prefix={prefix!r}))\n"
    )
    return dag_file


@pytest.fixture
def dags_test(airflow_db: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(
        project_dir: Path,
        name: str,
        logical_date: str | None = None,
        prefix: str = "",
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        dags_folder = tmp_path / f"dags-{prefix}{name}"
        write_dag_file(dags_folder, project_dir, [name], prefix)
        command = [AIRFLOW_CLI, "dags", "test", prefix + name] + ([logical_date] if logical_date else [])
        # INFO: the tasks' output is what the tests read (an in-process airflow-cmdexec call lowers it)
        full_env = {
            **os.environ,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "PYTHONPATH": str(ROOT),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **(env or {}),
        }
        full_env.pop("_AIRFLOW_PROCESS_CONTEXT", None)
        return subprocess.run(
            command, capture_output=True, text=True, env=full_env, timeout=600, cwd=str(tmp_path), check=False
        )

    return run
