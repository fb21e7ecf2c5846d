"""Shared test setup: a throw-away Airflow home, its SQLite metadata DB, and ``run_dag``.

At import time, before anything imports airflow, this points Airflow at a fresh per-session home
(``AIRFLOW_HOME`` in a temp dir, SQLite DB, ``dags_folder`` = ``example_dags/``, no example DAGs).
Subprocesses (``airflow dags test ...``) inherit the same environment.

Fixtures (use them by name; nothing here is autouse):

``airflow_db`` (session)
    Migrates the metadata DB once per session (``airflow db migrate`` in a subprocess).

``run_dag`` (session)
    ``run_dag(dag, **test_kwargs) -> DagRunResult``: registers ``dag`` in the metadata DB (a DAG built
    inside a test file is not in any dags folder), runs it with ``dag.test(**test_kwargs)`` (e.g.
    ``logical_date=None`` for a manual run without a logical date, ``run_conf={...}``) and returns:

    - ``result.state``: the DAG run state, ``"success"`` or ``"failed"``; ``result.run_id``,
      ``result.logical_date`` (``None`` for a run without one) and ``result.run_after``;
    - ``result.task_states``: ``{task_id: "success" | "failed" | "upstream_failed" | ...}``
      (mapped task instances are keyed ``"task_id[i]"``);
    - ``result.xcom(task_id, key="return_value", default=None)``: an XCom of the run;
    - ``result.log(task_id)``: the task's log as text, one message per line, as Airflow's task logger
      received it (the command's output lines, the executor selection, warnings, and for a failed
      task "Task failed with exception" followed by the traceback); ``result.log_lines(task_id)``
      gives the list and ``result.records`` every captured record with its level and logger;
    - ``result.error(task_id)``: the exception that failed the task (``None`` if it did not fail),
      ``result.error_text(task_id)``: its message (``""`` if none).

    How the logs are captured: Airflow 3 logs through structlog; for the duration of the run a
    recording processor is inserted just before the final renderer (so messages are formatted but
    still printed as usual), and ``dag.test``'s per-task runner is wrapped to know which task is
    running and to keep the exception it ended with.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_DAGS = ROOT / "example_dags"
VENV_BIN = Path(sys.executable).parent
AIRFLOW_CLI = str(VENV_BIN / "airflow")

if "airflow" in sys.modules:  # pragma: no cover - a plugin imported airflow before us
    raise RuntimeError("tests/conftest.py must configure Airflow before airflow is imported")

AIRFLOW_HOME = tempfile.mkdtemp(prefix="cmdexec-tests-airflow-home-")
os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(EXAMPLE_DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The real configuration, not Airflow's unit_tests.cfg: that one loads the examples, uses a random
# fernet key per process (so the CLI subprocesses could not read what the tests wrote) and a dags
# folder inside Airflow's own test tree.
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"

import pytest  # noqa: E402

TEST_BUNDLE = "cmdexec-tests"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


_db_lock = threading.Lock()
_db_ready = threading.Event()


def migrate_airflow_db() -> None:
    """Create the session's SQLite metadata DB (once; later calls return at once)."""
    with _db_lock:
        if _db_ready.is_set():
            return
        proc = subprocess.run(
            [AIRFLOW_CLI, "db", "migrate"],
            check=False,
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout}\n{proc.stderr}")
        _db_ready.set()


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """The migrated metadata DB of the session; returns the AIRFLOW_HOME."""
    migrate_airflow_db()
    return AIRFLOW_HOME


# -- run_dag ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRecord:
    task_id: str | None  # None: logged outside any task (scheduling bookkeeping)
    level: str
    logger: str
    message: str
    time: float  # time.monotonic() when it was logged


@dataclass
class DagRunResult:
    """What one ``dag.test()`` run did; see the module docstring."""

    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str | None]
    xcoms: dict[tuple[str, str], Any]
    errors: dict[str, BaseException]
    records: list[LogRecord] = field(default_factory=list)
    logical_date: Any = None
    run_after: Any = None

    def xcom(self, task_id: str, key: str = "return_value", default: Any = None) -> Any:
        return self.xcoms.get((task_id, key), default)

    def has_xcom(self, task_id: str, key: str = "return_value") -> bool:
        return (task_id, key) in self.xcoms

    def log_lines(self, task_id: str) -> list[str]:
        return [r.message for r in self.records if r.task_id == task_id]

    def log(self, task_id: str) -> str:
        return "\n".join(self.log_lines(task_id))

    def error(self, task_id: str) -> BaseException | None:
        return self.errors.get(task_id)

    def error_text(self, task_id: str) -> str:
        error = self.errors.get(task_id)
        return "" if error is None else str(error)


class _Recorder:
    """A structlog processor that keeps every event, tagged with the task that is running."""

    def __init__(self) -> None:
        self.current_task: str | None = None
        self.records: list[LogRecord] = []
        self._lock = threading.Lock()

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        message = str(event_dict.get("event", ""))
        args = event_dict.get("positional_args")
        if args:  # not formatted yet by an earlier processor
            with contextlib.suppress(TypeError, ValueError):
                message = message % tuple(args)
        exc_info = event_dict.get("exc_info")
        if exc_info:
            if exc_info is True:
                exc_info = sys.exc_info()
            elif isinstance(exc_info, BaseException):
                exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
            if isinstance(exc_info, tuple) and exc_info[0] is not None:
                message += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip("\n")
        record = LogRecord(
            task_id=self.current_task,
            level=str(event_dict.get("level", method_name)),
            logger=str(event_dict.get("logger") or event_dict.get("logger_name") or ""),
            message=message,
            time=time.monotonic(),
        )
        with self._lock:
            self.records.append(record)
        return event_dict


def _register_dag(dag: Any) -> None:
    """Write ``dag`` to the metadata DB, as the DAG processor would, so that ``dag.test()`` can run it."""
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    with create_session() as session:
        bundle = session.get(DagBundleModel, TEST_BUNDLE) or DagBundleModel(name=TEST_BUNDLE)
        bundle.active = True
        session.add(bundle)
        session.flush()
        update_dag_parsing_results_in_db(
            TEST_BUNDLE, None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )


def _read_xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    xcoms: dict[tuple[str, str], Any] = {}
    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id
            )
        ).all()
        for row in rows:
            task_key = row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"
            xcoms[(task_key, row.key)] = XComModel.deserialize_value(row)
    return xcoms


def _run_dag(dag: Any, **test_kwargs: Any) -> DagRunResult:
    import airflow.sdk.definitions.dag as sdk_dag
    import structlog

    migrate_airflow_db()
    _register_dag(dag)

    recorder = _Recorder()
    errors: dict[str, BaseException] = {}
    original_run_task = sdk_dag._run_task

    def run_task(*, ti: Any, task: Any, **kwargs: Any) -> Any:
        recorder.current_task = ti.task_id
        try:
            result = original_run_task(ti=ti, task=task, **kwargs)
        except BaseException as exc:
            errors[ti.task_id] = exc
            raise
        finally:
            recorder.current_task = None
        if result is not None and getattr(result, "error", None) is not None:
            errors[ti.task_id] = result.error
        return result

    processors = structlog.get_config()["processors"]
    processors.insert(max(len(processors) - 1, 0), recorder)
    sdk_dag._run_task = run_task
    try:
        dag_run = dag.test(**test_kwargs)
    finally:
        sdk_dag._run_task = original_run_task
        processors = structlog.get_config()["processors"]
        if recorder in processors:
            processors.remove(recorder)

    task_states: dict[str, str | None] = {}
    for ti in dag_run.get_task_instances():
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        task_states[key] = (
            None if ti.state is None else str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        )
    state = dag_run.state
    return DagRunResult(
        dag_id=dag.dag_id,
        run_id=dag_run.run_id,
        state=str(state.value if hasattr(state, "value") else state),
        task_states=task_states,
        xcoms=_read_xcoms(dag.dag_id, dag_run.run_id),
        errors=errors,
        records=list(recorder.records),
        logical_date=dag_run.logical_date,
        run_after=dag_run.run_after,
    )


@pytest.fixture(scope="session")
def run_dag(airflow_db: str) -> Callable[..., DagRunResult]:
    """``run_dag(dag, **dag_test_kwargs) -> DagRunResult``; see the module docstring."""
    return _run_dag


# -- no silent skips in CI ---------------------------------------------------------------------------
def _require_all() -> bool:
    return os.environ.get("CMDEXEC_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CMDEXEC_REQUIRE_ALL=1 (set by scripts/test.sh, which installs Docker, the test image,
    Chromium and the services first), a test that skips or xfails fails instead: it proves nothing."""
    outcome = yield
    report = outcome.get_result()
    if _require_all() and (report.skipped or hasattr(report, "wasxfail")):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped or xfailed, but scripts/test.sh requires every test to run: {report.longrepr}"
        )
        if hasattr(report, "wasxfail"):
            del report.wasxfail  # else pytest would not count the failure (and exit 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at collection (``pytest.skip(allow_module_level=True)``)."""
    outcome = yield
    report = outcome.get_result()
    if _require_all() and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped at collection, but scripts/test.sh requires every test to run: {report.longrepr}"
        )


# Tests that share a heavy session fixture (an emulator, a deployment, a browser server, a migrated
# Airflow home) run in one pytest-xdist process, so the fixture starts once (``--dist loadgroup``).
XDIST_GROUPS = {
    "tests/deployment/": "deployment",
    "tests/ecs/": "ecs",
    "tests/durable/": "durable",
    "tests/k8s/": "k8s",
    "tests/test_ui_browser.py": "browser",
    "tests/test_cli_import.py": "cli-import",
    "tests/test_cli_check.py": "cli-check",
}


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` with the groups above: each group runs on one worker, every other test
    is scheduled alone. xdist's own loadgroup marks a group by appending ``@group`` to the node id,
    which pytest 9.2's structured node ids ignore: every group (and its package-scoped fixtures,
    e.g. whole deployments) then ran on every worker at once."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PathGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for prefix, group in XDIST_GROUPS.items():
                if nodeid.startswith(prefix):
                    return f"group:{group}"
            return nodeid

    return PathGroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Under scripts/test.sh (CI) no test may be deselected: -m/-k/--deselect would drop tests
    silently."""
    if _require_all() and (
        config.getoption("markexpr") or config.getoption("keyword") or config.getoption("deselect")
    ):
        raise pytest.UsageError(
            "scripts/test.sh runs every test: do not pass -m, -k or --deselect "
            "(run pytest directly for a subset)"
        )
