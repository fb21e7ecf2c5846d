"""The example DAG ``cmdexec_example`` end to end, as ``scripts/run-example.sh`` runs it, and as parsed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE_DAGS = Path(__file__).resolve().parent.parent / "example_dags"
AIRFLOW_CLI = str(Path(sys.executable).parent / "airflow")

EXPECTED_STORE = {
    "numbers": [1, 2, 3],
    "total": 6,
    "message": "hello, 3 numbers",
    "doubled": 12,
    "shout": "HELLO, 3 NUMBERS",
}


def test_example_dag_parses_without_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator

    dagbag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert dagbag.import_errors == {}
    assert "cmdexec_example" in dagbag.dag_ids
    dag = dagbag.get_dag("cmdexec_example")
    types = {task.task_id: type(task) for task in dag.tasks}
    assert types["prepare"] is ShOperator
    assert types["report"] is ShOperator
    assert types["compute"] is PyOperator
    assert types["enrich"] is RbOperator
    assert [
        t.task_id for t in dag.get_task("prepare").get_flat_relatives(upstream=False)
    ]  # a chain, not islands
    # the Digdag-style files the tasks use are in the project (the DAG file's folder)
    for name in ("tasks/my_workflow.py", "tasks/my_workflow.rb", "tasks/report.sh"):
        assert (EXAMPLE_DAGS / name).is_file(), name
    assert os.access(EXAMPLE_DAGS / "tasks/report.sh", os.X_OK), "sh> runs tasks/report.sh by path"


def test_airflow_dags_test_cli_runs_the_example(airflow_db):
    """What scripts/run-example.sh does (without its setup step): `airflow dags test cmdexec_example`."""
    env = os.environ.copy()  # the session's AIRFLOW_HOME, SQLite DB and dags folder (example_dags)
    proc = subprocess.run(
        [AIRFLOW_CLI, "dags", "test", "cmdexec_example"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=str(EXAMPLE_DAGS.parent),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "state=success" in output, output[-5000:]
    expected_lines = [
        "hello from sh> on ",
        "py> step1: greeting=hello count=3 session_date=",
        "rb> step2: total=6 message=hello, 3 numbers from ",
        "== Digdag store ==",
        "numbers=[1,2,3] total=6 doubled=12",
        "message=hello, 3 numbers",
        "shout=HELLO, 3 NUMBERS",
        (
            "stored values seen by a plain Airflow task: "
            "doubled=12, message=hello, 3 numbers, numbers=[1, 2, 3], shout=HELLO, 3 NUMBERS, total=6"
        ),
    ]
    for line in expected_lines:
        assert line in output, f"{line!r} missing from the output:\n{output[-5000:]}"
    for task_id in ("prepare", "compute", "enrich", "report"):
        assert f"Task cmdexec_example.{task_id} runs on the local executor" in output
    assert "Task failed" not in output


def test_example_dag_in_process_stores_along_the_chain(run_dag):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(EXAMPLE_DAGS)).get_dag("cmdexec_example")
    result = run_dag(dag)
    assert result.state == "success", result.errors
    assert set(result.task_states.values()) == {"success"}
    assert result.xcom("prepare") is None  # nothing stored so far: no XCom, as for a silent BashOperator
    assert result.xcom("compute") == {k: EXPECTED_STORE[k] for k in ("numbers", "total", "message")}
    assert result.xcom("enrich") == EXPECTED_STORE
    assert result.xcom("report") == EXPECTED_STORE
    assert result.xcom("summary") == (
        "doubled=12, message=hello, 3 numbers, numbers=[1, 2, 3], shout=HELLO, 3 NUMBERS, total=6"
    )
    assert "numbers=[1,2,3] total=6 doubled=12" in result.log_lines("report")


def test_the_package_imports_in_a_fresh_interpreter():
    """No import cycle (e.g. Airflow's provider discovery importing the package while it is half-imported).

    ``exceptions`` is imported first on purpose: every module depends on it and it is the first to
    import airflow, which may run provider discovery (get_provider_info) right then.
    """
    modules = [
        "airflow_cmdexec_provider.exceptions",
        "airflow_cmdexec_provider.params",
        "airflow_cmdexec_provider.backends.local",
        "airflow_cmdexec_provider.hooks.command_executor",
        "airflow_cmdexec_provider.operators",
    ]
    code = "; ".join(f"import {m}" for m in modules) + "; print('imported')"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("imported"), proc.stderr[-3000:]
