#!/usr/bin/env python
"""Benchmark: ShOperator on the local executor vs Airflow's BashOperator; py>/rb> runner start-up.

1. Operator overhead: ``op.execute(context)`` of BashOperator and of ShOperator for the same trivial
   command (``true`` by default, ``--command``), side by side: every iteration runs every contender
   once, in a rotating order, on a fresh operator object (construction is not timed). Contenders:

   - ``bash_operator``: ``BashOperator(bash_command=CMD)`` (runs ``bash -c CMD``);
   - ``sh_local_bash``: ``ShOperator(command=CMD, shell="bash", executor="local")``: the same shell
     as BashOperator and no executor choice (BashOperator makes none): the headline, target 1.10x;
   - ``sh_local``: ``ShOperator(command=CMD, executor="local")``: its default shell, ``/bin/sh``;
   - ``sh_auto``: ``ShOperator(command=CMD)``: what a DAG gets with nothing configured; the
     automatic choice reads the Variable ``cmdexec_executor_type`` and the ECS connection before it
     falls back to local (here from the benchmark's SQLite metadata DB).

2. Where ShOperator's time goes: the same steps as ``execute``, timed one by one (params, executor
   choice, IO dir, the process itself), interleaved the same way.

3. Runner start-up: the whole ``python3 runner.py module.noop input.json output.json`` process
   (files written by ``PyOperator.prepare``, exactly as a task does) against ``python3 -c pass``,
   alternating; the same for ``ruby runner.rb`` against ``ruby -e ''``. Target: py> adds < 50 ms.

4. (``--in-task``) The executor choice inside a real task (``dag.test()``): there the Variable and
   the connection are asked from the API server through the task supervisor. Also the two lookups
   alone, and the choice once the Variable ``cmdexec_executor_type`` says ``local``.

Medians of ``--runs`` runs (default 30, at least 20). Prints a table and writes
``benchmarks/results/local.json``. No Docker, no network. See benchmarks/README.md.

Usage: .venv/bin/python benchmarks/bench_local.py [--runs N] [--command CMD] [--in-task]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "local.json"
TARGET_SH_RATIO = 1.10
TARGET_PY_ADDED_MS = 50.0
MIN_RUNS = 20


# -- set-up ---------------------------------------------------------------------------------------------


def airflow_home() -> str:
    """A throw-away Airflow home with a migrated SQLite DB (the automatic choice reads Variables)."""
    home = tempfile.mkdtemp(prefix="cmdexec-bench-local-home-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    dags = Path(home) / "dags"
    dags.mkdir()
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)
    return home


@contextmanager
def quiet_stdout():
    """Send fd 1 (where Airflow's task logger prints) to /dev/null; both operators log the same way."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def real_interpreter(name: str, probe: list[str]) -> str:
    """Resolve ``python3``/``ruby`` to the real binary (not a pyenv/rbenv shim script)."""
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed")
    out = subprocess.run([found, *probe], capture_output=True, text=True, check=True).stdout.strip()
    return out or found


def stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.9))], 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
        "runs": len(ms),
    }


def interleaved(contenders: dict[str, Callable[[int], float]], runs: int, warmup: int = 3) -> dict[str, list[float]]:
    """Run every contender once per iteration, rotating the order; return the timed samples."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(warmup + runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = contenders[name](i)
            if i >= warmup:
                samples[name].append(elapsed)
    return samples


# -- 1 and 2: operator overhead ---------------------------------------------------------------------------


def context_for(op: Any, dag: Any) -> dict[str, Any]:
    """A minimal realistic task context: what either operator reads from it, and nothing more."""
    import pendulum

    from airflow.sdk.definitions.param import ParamsDict

    logical_date = pendulum.datetime(2026, 1, 1, tz="UTC")
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=op.task_id, run_id="bench_run", try_number=1, map_index=-1,
                         xcom_pull=lambda **_: None, xcom_push=lambda **_: None)
    dag_run = SimpleNamespace(dag_id=dag.dag_id, run_id="bench_run", logical_date=logical_date,
                              run_after=logical_date, team_name=None)
    return {"dag": dag, "task": op, "ti": ti, "task_instance": ti, "dag_run": dag_run, "run_id": "bench_run",
            "logical_date": logical_date, "ds": "2026-01-01", "params": ParamsDict({})}


def operator_contenders(command: str, project: Path) -> dict[str, Callable[[int], float]]:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
    from airflow.sdk.bases.operator import ExecutorSafeguard

    from airflow_cmdexec_provider.operators import ShOperator

    factories: dict[str, Callable[[], Any]] = {
        "bash_operator": lambda: BashOperator(task_id="bash_operator", bash_command=command),
        "sh_local_bash": lambda: ShOperator(task_id="sh_local_bash", command=command, shell="bash",
                                            executor="local", project_dir=str(project)),
        "sh_local": lambda: ShOperator(task_id="sh_local", command=command, executor="local",
                                       project_dir=str(project)),
        "sh_auto": lambda: ShOperator(task_id="sh_auto", command=command, project_dir=str(project)),
    }

    def contender(name: str) -> Callable[[int], float]:
        def run(i: int) -> float:
            with DAG(f"bench_local_{name}_{i}", schedule=None, start_date=SimpleDate.START) as dag:
                op = factories[name]()
            context = context_for(op, dag)
            token = ExecutorSafeguard.tracker.set(op)  # as the task runner does before execute()
            try:
                started = time.perf_counter()
                op.execute(context)
                return time.perf_counter() - started
            finally:
                ExecutorSafeguard.tracker.reset(token)

        return run

    return {name: contender(name) for name in factories}


class SimpleDate:
    from datetime import datetime, timezone

    START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def breakdown_contenders(command: str, project: Path) -> dict[str, Callable[[int], float]]:
    """The steps of ShOperator.execute, one by one (what each costs per task)."""
    from airflow.providers.standard.hooks.subprocess import SubprocessHook
    from airflow.sdk import DAG

    from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile
    from airflow_cmdexec_provider.backends.local import LocalBackend
    from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook
    from airflow_cmdexec_provider.operators import ShOperator
    from airflow_cmdexec_provider.params import digdag_params, env_from_params

    with DAG("bench_local_breakdown", schedule=None, start_date=SimpleDate.START) as dag:
        op = ShOperator(task_id="sh", command=command, shell="bash", executor="local", project_dir=str(project))
    context = context_for(op, dag)
    io_parent = Path(tempfile.mkdtemp(prefix="cmdexec-bench-io-"))
    (io_parent / "runner.sh").write_text(command + "\n")
    params = digdag_params(context, {}, "d.t")
    env = env_from_params(params)

    def timed(fn: Callable[[], Any]) -> Callable[[int], float]:
        def run(i: int) -> float:
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

        return run

    def params_and_checks() -> None:
        upstream = op._upstream_store(context)
        env_from_params(digdag_params(context, upstream, "d.t"))
        op._workdir(op._project_dir())

    def io_dir() -> None:
        with tempfile.TemporaryDirectory(prefix="cmdexec-") as tmp:
            path = Path(tmp) / "io"
            path.mkdir()
            path.chmod(0o777)
            (path / "runner.sh").write_text(command + "\n")

    def process_local_backend() -> None:
        request = CommandRequest(task_label="d.t", project_dir=project, workdir="", io_dir=io_parent,
                                 command=("bash", IoFile("runner.sh")), env=env)
        LocalBackend().run(request, lambda line: None)

    def process_bash_operator_hook() -> None:
        SubprocessHook().run_command(command=["bash", "-c", command], env={**os.environ, **env})

    return {
        "params_and_checks": timed(params_and_checks),
        "choose_forced_local": timed(lambda: CommandExecutorHook(executor="local", task_label="d.t").get_backend()),
        "choose_auto": timed(lambda: CommandExecutorHook(executor=None, task_label="d.t").get_backend()),
        "io_dir_create_remove": timed(io_dir),
        "process_local_backend": timed(process_local_backend),
        "process_subprocess_hook": timed(process_bash_operator_hook),
    }


# -- 3: runner start-up -------------------------------------------------------------------------------------


def runner_contenders(project: Path, python: str, ruby: str | None) -> dict[str, Callable[[int], float]]:
    from airflow_cmdexec_provider.operators import PyOperator, RbOperator

    (project / "bench_noop.py").write_text("def noop():\n    pass\n")
    (project / "bench_noop.rb").write_text("def noop\nend\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}

    def argv_of(op: Any, io_dir: Path) -> list[str]:
        command, _ = op.prepare(io_dir, {"session_date": "2026-01-01"}, {})
        return [str(io_dir / c.name) if hasattr(c, "name") else c for c in command]

    def process(argv: list[str]) -> Callable[[int], float]:
        def run(i: int) -> float:
            started = time.perf_counter()
            subprocess.run(argv, cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            return time.perf_counter() - started

        return run

    py_io = Path(tempfile.mkdtemp(prefix="cmdexec-bench-py-"))
    contenders = {
        "python_bare": process([python, "-c", "pass"]),
        "py_runner": process(argv_of(PyOperator(task_id="py", method="bench_noop.noop", python=python), py_io)),
    }
    if ruby:
        rb_io = Path(tempfile.mkdtemp(prefix="cmdexec-bench-rb-"))
        contenders["ruby_bare"] = process([ruby, "-e", ""])
        contenders["rb_runner"] = process(
            argv_of(RbOperator(task_id="rb", method="noop", require="bench_noop", ruby=ruby), rb_io)
        )
    return contenders


# -- 4: the executor choice inside a real task -----------------------------------------------------------------


def choice_in_task(runs: int) -> dict[str, Any]:
    from datetime import datetime, timezone

    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG, task
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with DAG("bench_local_choice_in_task", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:

        @task
        def measure(n: int) -> dict:
            from airflow.sdk import BaseHook, Variable

            from airflow_cmdexec_provider import config
            from airflow_cmdexec_provider.hooks.command_executor import CommandExecutorHook

            def choose(executor):
                return lambda: CommandExecutorHook(executor=executor, task_label="d.t").get_backend()

            def connection():
                try:
                    BaseHook.get_connection("cmdexec_ecs_default")
                except Exception:  # noqa: BLE001 - it does not exist: that is the point
                    pass

            steps = {
                "choose_auto": choose(None),
                "choose_forced_local": choose("local"),
                "variable_lookup": config.executor_type,
                "missing_connection_lookup": connection,
            }
            samples: dict[str, list[float]] = {name: [] for name in steps}
            samples["choose_auto_type_local"] = []
            for _ in range(n):
                for name, step in steps.items():
                    started = time.perf_counter()
                    step()
                    samples[name].append(time.perf_counter() - started)
            Variable.set(config.EXECUTOR_TYPE_VARIABLE, "local")
            try:
                for _ in range(n):
                    started = time.perf_counter()
                    choose(None)()
                    samples["choose_auto_type_local"].append(time.perf_counter() - started)
            finally:
                Variable.delete(config.EXECUTOR_TYPE_VARIABLE)
            return samples

        measure(runs + 3)

    with create_session() as session:
        bundle = session.get(DagBundleModel, "bench") or DagBundleModel(name="bench")
        bundle.active = True
        session.add(bundle)
        session.flush()
        update_dag_parsing_results_in_db("bench", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
                                         session=session)
    with quiet_stdout():
        dag_run = dag.test()
    with create_session() as session:
        row = session.execute(
            select(XComModel.value).where(XComModel.dag_id == dag.dag_id, XComModel.run_id == dag_run.run_id,
                                          XComModel.key == "return_value")
        ).first()
    samples = XComModel.deserialize_value(row)
    return {name: stats(values[3:]) for name, values in samples.items()}


# -- report -------------------------------------------------------------------------------------------------------


def table(title: str, rows: list[tuple[str, dict[str, float], str]]) -> str:
    lines = [title, f"  {'contender':<26}{'median ms':>11}{'p90 ms':>9}{'min ms':>9}{'max ms':>9}   note"]
    for name, s, note in rows:
        lines.append(
            f"  {name:<26}{s['median_ms']:>11.2f}{s['p90_ms']:>9.2f}{s['min_ms']:>9.2f}{s['max_ms']:>9.2f}   {note}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help=f"timed runs per contender (default 30, min {MIN_RUNS})")
    parser.add_argument("--command", default="true", help="the trivial command (default: true)")
    parser.add_argument("--in-task", action="store_true",
                        help="also time the executor choice inside a real task (dag.test(); ~20 s more)")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = parser.parse_args()
    if args.runs < MIN_RUNS:
        parser.error(f"--runs must be at least {MIN_RUNS}")

    home = airflow_home()
    project = Path(tempfile.mkdtemp(prefix="cmdexec-bench-project-"))
    python = real_interpreter("python3", ["-c", "import sys; print(sys.executable)"])
    ruby = shutil.which("ruby") and real_interpreter("ruby", ["-e", "print RbConfig.ruby"])

    print(f"bench_local: {args.runs} runs per contender, command {args.command!r}, python {python}, ruby {ruby}",
          file=sys.stderr)
    with quiet_stdout():
        operators = {k: stats(v) for k, v in interleaved(operator_contenders(args.command, project), args.runs).items()}
        breakdown = {k: stats(v) for k, v in interleaved(breakdown_contenders(args.command, project), args.runs).items()}
    runners = {k: stats(v) for k, v in interleaved(runner_contenders(project, python, ruby), args.runs).items()}
    in_task = choice_in_task(args.runs) if args.in_task else None

    base = operators["bash_operator"]["median_ms"]
    ratios = {name: round(s["median_ms"] / base, 3) for name, s in operators.items()}
    py_added = round(runners["py_runner"]["median_ms"] - runners["python_bare"]["median_ms"], 3)
    rb_added = round(runners["rb_runner"]["median_ms"] - runners["ruby_bare"]["median_ms"], 3) if ruby else None
    headline = ratios["sh_local_bash"]

    notes = {
        "bash_operator": "baseline (bash -c)",
        "sh_local_bash": f"ratio {ratios['sh_local_bash']:.2f}x  target <= {TARGET_SH_RATIO:.2f}x: "
        + ("MET" if headline <= TARGET_SH_RATIO else "MISSED"),
        "sh_local": f"ratio {ratios['sh_local']:.2f}x  (default shell /bin/sh)",
        "sh_auto": f"ratio {ratios['sh_auto']:.2f}x  (automatic choice, nothing configured)",
    }
    print(table("1. operator execute(): ShOperator on the local executor vs BashOperator",
                [(n, s, notes[n]) for n, s in operators.items()]))
    print(table("2. where ShOperator's time goes (one step at a time)",
                [(n, s, "") for n, s in breakdown.items()]))
    runner_notes = {
        "python_bare": "python3 -c pass",
        "py_runner": f"+{py_added:.1f} ms  target < {TARGET_PY_ADDED_MS:.0f} ms: "
        + ("MET" if py_added < TARGET_PY_ADDED_MS else "MISSED"),
        "ruby_bare": "ruby -e ''",
        "rb_runner": f"+{rb_added:.1f} ms" if rb_added is not None else "",
    }
    print(table("3. runner start-up (whole process)", [(n, s, runner_notes[n]) for n, s in runners.items()]))
    if in_task:
        print(table("4. executor choice inside a real task (dag.test)", [(n, s, "") for n, s in in_task.items()]))

    result = {
        "benchmark": "local",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": args.runs,
        "command": args.command,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg()},
        "interpreters": {"python": python, "ruby": ruby},
        "operators": operators,
        "ratios_vs_bash_operator": ratios,
        "breakdown": breakdown,
        "runners": runners,
        "py_runner_added_ms": py_added,
        "rb_runner_added_ms": rb_added,
        "executor_choice_in_task": in_task,
        "targets": {
            "sh_operator_ratio": {"target": TARGET_SH_RATIO, "measured": headline, "contender": "sh_local_bash",
                                  "met": headline <= TARGET_SH_RATIO},
            "py_runner_added_ms": {"target": TARGET_PY_ADDED_MS, "measured": py_added,
                                   "met": py_added < TARGET_PY_ADDED_MS},
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.json}")
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(project, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
