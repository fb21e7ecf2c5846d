#!/usr/bin/env python
"""Benchmark: the task duration users see (TaskInstance.duration), ours against the peers, in ONE run.

Writes a DAG whose tasks are the contenders interleaved round by round (A1 B1 C1 ... A2 B2 C2 ...;
``--rounds`` measured rounds after ``--warmup`` untimed ones), into the dags folder
of a throw-away Airflow home (SQLite, ``airflow db migrate``; no Airflow variable of the caller's
environment reaches it, so there is no ECS connection and no ``cmdexec_executor_type`` Variable:
a cmdexec task without ``docker`` params runs locally). Runs it once with ``airflow dags test``,
reads ``duration``, ``start_date`` and ``end_date`` of every task instance from the metadata DB,
and prints per contender n, median, p90 and min, the ratio against its peer, and PASS/MISS
against the targets. Every task must succeed and every cmdexec task must have run on the
executor it is meant to (checked in the task log), else the benchmark fails.

Groups (``--groups``, default ``local,python,docker``):

- ``local``: BashOperator ``true`` | ShOperator ``true`` (nothing configured: the automatic choice)
- ``python``: BashOperator ``PY -c pass`` | PyOperator calling ``bench_noop.noop`` (a no-op function
  in a project module next to the DAG file) with ``python=PY``; PY is the real interpreter that
  ``python3`` resolves to (``--python`` to change), so a pyenv shim script on PATH does not blur both
- ``docker``: BashOperator ``docker run --rm IMAGE true`` ("raw docker run") | DockerOperator,
  same image and command, ``auto_remove="success"`` | ShOperator ``true`` with
  ``docker={"image": IMAGE}`` (the default path) | the same with ``"docker": "docker"`` (the docker
  CLI path)
- ``ruby`` (not in the default): BashOperator ``RUBY -e ''`` | RbOperator calling ``noop``

Layouts (``--layout``): ``per-contender`` (the default) gives each contender a chain of its own
(A1 -> A2 -> ..., as in a user's DAG of that operator); ``dags test`` runs round k of every chain
before round k+1, so the contenders still alternate in time. ``one-chain`` puts all tasks in ONE
chain, A1 -> B1 -> C1 -> ... -> A2 -> ...: every cmdexec task then has a ``py>`` task upstream, whose
stored values it must read (one XCom read: what a mixed chain costs).

``--profile`` also installs a call timer in the task process (``_phase_timer``, not product
code) and prints, per contender, the median time before ``execute`` (from the task instance's
start), in it and after it (to its end), and for each function of ours and of the peers that
``execute`` calls, the median time per task, nested as called.

Writes ``benchmarks/results/task_duration.json`` (every sample, the profile, the machine, load).
Containers get the label ``io.github.cmdexec.bench=<run tag>`` (ShOperator's own labels name the
benchmark's unique dag id); every container of this run still present at the end is removed.

Usage: .venv/bin/python benchmarks/bench_task_duration.py [--rounds 20] [--groups local,python,docker]
       [--profile] [--image cmdexec-test:bookworm]
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
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _airflow_stack import ROOT, AirflowHome

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = ROOT / "benchmarks" / "results" / "task_duration.json"
BENCH_LABEL = "io.github.cmdexec.bench"


@dataclass(frozen=True)
class Contender:
    name: str
    group: str
    operator: str  # the constructor call in the DAG file; TID is the task id
    executor: str | None = None  # where a cmdexec task must run (checked in its log)


CONTENDERS = [
    Contender("bash_true", "local", 'BashOperator(task_id=TID, bash_command="true")'),
    Contender("sh_true", "local", 'ShOperator(task_id=TID, command="true")', "local"),
    Contender("bash_python", "python", 'BashOperator(task_id=TID, bash_command=f"{PYTHON} -c pass")'),
    Contender(
        "py_noop", "python", 'PyOperator(task_id=TID, method="bench_noop.noop", python=PYTHON)', "local"
    ),
    Contender(
        "raw_docker_run",
        "docker",
        'BashOperator(task_id=TID, bash_command=f"docker run --rm --label {LABEL} {IMAGE} true")',
    ),
    Contender(
        "docker_operator",
        "docker",
        'DockerOperator(task_id=TID, image=IMAGE, command="true", auto_remove="success", labels=LABELS)',
    ),
    Contender(
        "sh_docker", "docker", 'ShOperator(task_id=TID, command="true", docker={"image": IMAGE})', "docker"
    ),
    Contender(
        "sh_docker_cli",
        "docker",
        'ShOperator(task_id=TID, command="true", docker={"image": IMAGE, "docker": "docker"})',
        "docker",
    ),
    Contender("bash_ruby", "ruby", "BashOperator(task_id=TID, bash_command=f\"{RUBY} -e ''\")"),
    Contender(
        "rb_noop", "ruby", 'RbOperator(task_id=TID, method="noop", require="bench_noop", ruby=RUBY)', "local"
    ),
]
GROUPS = sorted({c.group for c in CONTENDERS})
# (ours, peer, kind, limit): kind "ratio" is median ours / median peer, "added_ms" the difference.
TARGETS = [
    ("sh_true", "bash_true", "ratio", 1.05),
    ("py_noop", "bash_python", "added_ms", 10.0),
    ("sh_docker", "docker_operator", "ratio", 1.00),
    ("sh_docker", "raw_docker_run", "ratio", 1.10),
]
# Compared, without a target: the peer each contender's "vs peer" column uses, and extra pairs.
PEERS = {
    "sh_true": "bash_true",
    "py_noop": "bash_python",
    "docker_operator": "raw_docker_run",
    "sh_docker": "docker_operator",
    "sh_docker_cli": "docker_operator",
    "rb_noop": "bash_ruby",
}
EXTRA_COMPARISONS = [("sh_docker_cli", "raw_docker_run", "ratio"), ("rb_noop", "bash_ruby", "added_ms")]


def real_interpreter(name: str, probe: str, env: dict[str, str]) -> str:
    """What ``python3``/``ruby`` on PATH really runs (not a pyenv/rbenv shim script)."""
    found = shutil.which(name, path=env.get("PATH"))
    if found is None:
        raise SystemExit(f"{name} is not on PATH")
    return (
        subprocess.run(
            [found, *probe.split(" ", 1)], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
        or found
    )


def write_dag(
    folder: Path,
    dag_id: str,
    contenders: list[Contender],
    rounds: int,
    settings: dict[str, str],
    profile_log: Path | None,
    layout: str = "per-contender",
) -> list[str]:
    """The DAG file and the project module of py>/rb>; returns the task ids in chain order."""
    (folder / "bench_noop.py").write_text("def noop():\n    pass\n")
    (folder / "bench_noop.rb").write_text("def noop\nend\n")
    chain_order = [(f"{c.name}_{r:02d}", c) for r in range(rounds) for c in contenders]
    operators = "\n".join(f"    TID = {tid!r}\n    tasks.append({c.operator})" for tid, c in chain_order)
    profile = (
        ""
        if profile_log is None
        else f"import sys\nsys.path.insert(0, {str(BENCHMARKS)!r})\nimport _phase_timer\n"
        f"_phase_timer.install({str(profile_log)!r})\n"
    )
    (folder / "bench_task_duration.py").write_text(f'''"""Generated by benchmarks/bench_task_duration.py."""
from datetime import datetime

from airflow.providers.docker.operators.docker import DockerOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, chain

from airflow_cmdexec_provider.operators import PyOperator, RbOperator, ShOperator
{profile}
IMAGE = {settings["image"]!r}
PYTHON = {settings["python"]!r}
RUBY = {settings["ruby"]!r}
LABEL = {f"{BENCH_LABEL}={settings['tag']}"!r}
LABELS = {{{BENCH_LABEL!r}: {settings["tag"]!r}}}

# Chains (see --layout), with Airflow's default trigger rule, as users' DAGs have it (it decides
# whether a py> task with nothing stored publishes an empty store log). A failed task leaves the rest
# of its chain upstream_failed; the benchmark then reports every task that did not succeed and fails.
with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)):
    tasks = []
{operators}
    if {layout!r} == "one-chain":
        chain(*tasks)
    else:  # tasks are round by round: every {len(contenders)}th one is the same contender
        for first in range({len(contenders)}):
            chain(*tasks[first::{len(contenders)}])
''')
    return [tid for tid, _ in chain_order]


def utc_seconds(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[min(len(ms) - 1, round(0.9 * (len(ms) - 1)))], 1),
        "min_ms": round(ms[0], 1),
    }


def compare(medians: dict[str, float], ours: str, peer: str, kind: str) -> float:
    return medians[ours] / medians[peer] if kind == "ratio" else medians[ours] - medians[peer]


def shown(value: float, kind: str) -> str:
    return f"{value:.2f}x" if kind == "ratio" else f"{value:+.1f} ms"


def remove_containers(tag: str, dag_id: str) -> None:
    """Remove this run's containers that are still there (only ours: by our labels)."""
    ids: set[str] = set()
    for label in (f"{BENCH_LABEL}={tag}", f"io.github.cmdexec.dag_id={dag_id}"):
        ps = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, check=False
        )
        ids.update(ps.stdout.split())
    if ids:
        subprocess.run(["docker", "rm", "--force", *sorted(ids)], capture_output=True, check=False)


def profile_table(records_path: Path, rows: list[tuple], names: list[str]) -> tuple[str, dict]:
    """Per contender: median before/in/after ``execute``, and median time per task of each function."""
    records = (
        [json.loads(line) for line in records_path.read_text().splitlines()] if records_path.exists() else []
    )
    by_task: dict[str, list[dict]] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
    spans = {tid: (utc_seconds(start), utc_seconds(end)) for tid, _, _, start, end in rows}
    lines, result = ["", "where the time goes (--profile; medians per task, ms; nested as called)"], {}
    for name in names:
        tasks = [tid for tid in spans if tid.rsplit("_", 1)[0] == name and tid in by_task]
        phases: dict[str, list[float]] = {"before execute": [], "execute": [], "after execute": []}
        totals: list[dict[tuple[int, str], float]] = []  # per task: (depth, function) -> seconds
        counts: list[dict[tuple[int, str], int]] = []
        order: dict[tuple[int, str], None] = {}  # every function, in the order first called
        for tid in tasks:
            start, end = spans[tid]
            top = [r for r in by_task[tid] if r["depth"] == 0][-1]
            phases["before execute"].append(top["start"] - start)
            phases["execute"].append(top["s"])
            phases["after execute"].append(end - (top["start"] + top["s"]))
            totals.append({})
            counts.append({})
            for r in sorted(by_task[tid], key=lambda r: r["start"]):
                if r["depth"] > 0:
                    key = (r["depth"], r["fn"])
                    order.setdefault(key)
                    totals[-1][key] = totals[-1].get(key, 0.0) + r["s"]
                    counts[-1][key] = counts[-1].get(key, 0) + 1
        if not tasks:
            continue
        med = {k: statistics.median(v) * 1000 for k, v in phases.items()}
        lines.append(
            f"  {name}: before execute {med['before execute']:.1f}, execute {med['execute']:.1f}, "
            f"after execute {med['after execute']:.1f}"
        )
        result[name] = {"phases_ms": {k: round(v, 2) for k, v in med.items()}, "functions": []}
        for depth, fn in order:
            ms = statistics.median(t.get((depth, fn), 0.0) for t in totals) * 1000
            n = statistics.median(c.get((depth, fn), 0) for c in counts)
            result[name]["functions"].append(
                {"fn": fn, "depth": depth, "median_ms": round(ms, 3), "calls": n}
            )
            if ms >= 0.05:
                short = fn.replace("airflow_cmdexec_provider.", "").replace("airflow.providers.", "")
                lines.append(
                    f"    {'  ' * (depth - 1)}{short:<{70 - 2 * depth}} {ms:8.2f}"
                    + (f"  ({n:g} calls)" if n != 1 else "")
                )
    return "\n".join(lines), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured rounds (default 20, at least 20)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument(
        "--groups", default="local,python,docker", help=f"comma-separated, of {','.join(GROUPS)}"
    )
    parser.add_argument("--image", default=os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm"))
    parser.add_argument("--python", help="interpreter of both python contenders (default: what python3 runs)")
    parser.add_argument("--profile", action="store_true", help="also time the phases inside each task")
    parser.add_argument(
        "--layout",
        choices=("per-contender", "one-chain"),
        default="per-contender",
        help="a chain per contender (default), or all tasks in one chain",
    )
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    groups = args.groups.split(",")
    if args.rounds < 20:
        parser.error("--rounds must be at least 20")
    if set(groups) - set(GROUPS):
        parser.error(f"unknown group(s) {sorted(set(groups) - set(GROUPS))}; use {','.join(GROUPS)}")
    contenders = [c for c in CONTENDERS if c.group in groups]

    tag = f"{os.getpid()}-{time.time_ns()}"
    dag_id = f"bench_task_duration_{os.getpid()}"
    home = AirflowHome("cmdexec-bench-duration-")
    try:
        settings = {
            "image": args.image,
            "tag": tag,
            "python": args.python
            or real_interpreter("python3", "-c import sys; print(sys.executable)", home.env),
            "ruby": real_interpreter("ruby", "-e print RbConfig.ruby", home.env)
            if "ruby" in groups
            else "ruby",
        }
        if "docker" in groups and shutil.which("docker") is None:
            raise SystemExit(
                "the docker group needs the docker CLI and a Docker engine: run scripts/ensure-docker.sh"
            )
        if (
            "docker" in groups
            and subprocess.run(
                ["docker", "image", "inspect", args.image], capture_output=True, check=False
            ).returncode
            != 0
        ):
            raise SystemExit(
                f"image {args.image} is not on this Docker host: run scripts/build-test-image.sh"
            )
        profile_log = home.path / "profile.jsonl" if args.profile else None
        task_ids = write_dag(
            home.dags, dag_id, contenders, args.warmup + args.rounds, settings, profile_log, args.layout
        )
        home.migrate()
        print(
            f"bench_task_duration: {len(task_ids)} tasks ({args.warmup} warm-up + {args.rounds} rounds of "
            f"{', '.join(c.name for c in contenders)}; layout {args.layout}), python {settings['python']}",
            file=sys.stderr,
        )
        started = time.monotonic()
        output = home.airflow("dags", "test", dag_id, timeout=3600, log=home.path / "dags-test.log")
        wall = time.monotonic() - started
        rows = home.query(
            "SELECT task_id, state, duration, start_date, end_date FROM task_instance "
            "WHERE dag_id = ? ORDER BY start_date",
            dag_id,
        )
        failed = {tid: state for tid, state, *_ in rows if state != "success"}
        if failed or len(rows) != len(task_ids):
            raise SystemExit(
                f"{len(failed)} of {len(task_ids)} tasks did not succeed: {failed}\n{output[-5000:]}"
            )
        wrong = [
            f"{dag_id}.{tid} on {c.executor}"
            for c in contenders
            if c.executor
            for tid in task_ids
            if tid.rsplit("_", 1)[0] == c.name
            and f"Task {dag_id}.{tid} runs on the {c.executor} executor" not in output
        ]
        if wrong:
            raise SystemExit(f"tasks not run on the executor they are meant to: {wrong}")
        measured = [row for row in rows if int(row[0].rsplit("_", 1)[1]) >= args.warmup]
        samples = {
            c.name: [d for tid, _, d, _, _ in measured if tid.rsplit("_", 1)[0] == c.name] for c in contenders
        }
        profile_text, profile = (
            profile_table(profile_log, measured, [c.name for c in contenders]) if profile_log else ("", None)
        )
    finally:
        if "docker" in groups and shutil.which("docker"):
            remove_containers(tag, dag_id)
        home.remove()

    summary = {name: stats(values) for name, values in samples.items()}
    medians = {name: s["median_ms"] for name, s in summary.items()}
    print(
        f"\nTaskInstance.duration, one `airflow dags test` run, {args.rounds} interleaved rounds "
        f"(load average {os.getloadavg()[0]:.1f}); ms"
    )
    print(f"  {'contender':<17}{'group':<8}{'n':>4}{'median':>9}{'p90':>9}{'min':>9}   vs peer")
    for c in contenders:
        s = summary[c.name]
        peer = PEERS.get(c.name)
        versus = (
            f"{shown(compare(medians, c.name, peer, 'ratio'), 'ratio')} {peer}" if peer in medians else ""
        )
        print(
            f"  {c.name:<17}{c.group:<8}{s['n']:>4}"
            f"{s['median_ms']:>9.1f}{s['p90_ms']:>9.1f}{s['min_ms']:>9.1f}   {versus}"
        )
    targets = []
    print("targets (medians)")
    for ours, peer, kind, limit in TARGETS:
        if ours in medians and peer in medians:
            value = compare(medians, ours, peer, kind)
            met = value <= limit
            targets.append(
                {
                    "ours": ours,
                    "peer": peer,
                    "kind": kind,
                    "value": round(value, 3),
                    "limit": limit,
                    "met": met,
                }
            )
            print(
                f"  {f'{ours} vs {peer}':<34}{shown(value, kind):>10}   target <= {shown(limit, kind):<9} "
                f"{'PASS' if met else 'MISS'}"
            )
    comparisons = []
    for ours, peer, kind in EXTRA_COMPARISONS:
        if ours in medians and peer in medians:
            value = compare(medians, ours, peer, kind)
            comparisons.append({"ours": ours, "peer": peer, "kind": kind, "value": round(value, 3)})
            print(f"  {f'{ours} vs {peer}':<34}{shown(value, kind):>10}   (no target)")
    print(profile_text)

    result = {
        "benchmark": "task_duration",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "layout": args.layout,
        "groups": groups,
        "settings": {k: v for k, v in settings.items() if k != "tag"},
        "dags_test_wall_s": round(wall, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "summary": summary,
        "targets": targets,
        "comparisons": comparisons,
        "tasks": [
            {"task_id": tid, "duration_s": d, "start": start, "end": end} for tid, _, d, start, end in rows
        ],
        "profile": profile,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
