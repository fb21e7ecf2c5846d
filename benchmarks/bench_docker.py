#!/usr/bin/env python
"""Benchmarks of the Docker executor: task duration against its peers, workspace copy cost, triggerer scale.

``duration`` (the default): ShOperator on Docker vs Airflow's DockerOperator vs a raw
``docker run --rm``. Same image, same trivial command (``/bin/sh`` running ``echo hello``), ``--runs``
runs each (default 20), the three interleaved in every iteration (in a rotating order, so no
contender always goes first or last). Both operators run through ``op.execute(context)`` with an
equivalent minimal context; the raw run is a ``subprocess.run`` of the docker CLI. Reports medians
and the ratios against the targets (ShOperator within 1.10x of raw ``docker run``, and no slower
than DockerOperator) and writes ``benchmarks/results/docker.json``.

``copy``: what the per-try workspace costs: a task on a project of ``--mb`` MB in ``--files`` files
(default 200 MB, 20,000 files) against the same task on an empty project, each in a fresh process
(time, and the process's peak memory), plus the copy into the container alone.

``watch``: one process follows ``--containers`` deferred tasks (default 200) the way the triggerer
does (a ``CommandTrigger`` each, in one event loop), each container printing a line every
``--interval`` seconds: the process's CPU while it follows them, and how long a line takes from the
container to the trigger's log (p50/p90/max). Targets: < 0.5 core, p90 < 2 s.

Fairness of ``duration`` (see benchmarks/README-docker.md):
- every contender starts a fresh container of the same local image, reads its output, waits for
  it and removes it; nothing is pulled (the image is local; no contender is told to pull);
- a fresh operator object per run (a task instance gets a fresh operator); construction is not
  timed, ``execute`` is (DockerOperator creates its Docker API client there, ShOperator its hook
  and backend);
- ShOperator is forced to ``executor="docker"``: DockerOperator makes no executor choice either, and
  the automatic choice would look up Airflow Connections/Variables, which need a metadata DB;
- what each does is what it does in production: ShOperator copies the (empty) project and the
  runner script into the container and its IO folder back out; DockerOperator mounts its temp dir
  (``mount_tmp_dir=True``, its default); raw ``docker run`` does neither. Both operators log the
  command's output through their task logger.

Usage: .venv/bin/python benchmarks/bench_docker.py [duration|copy|watch] [--help for the options]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "docker.json"
SCRIPT = "echo hello"
TARGET_VS_RAW = 1.10
TARGET_VS_DOCKER_OPERATOR = 1.0


def _airflow_env() -> None:
    """A throw-away AIRFLOW_HOME (removed at exit): importing Airflow must not touch a real one."""
    if "AIRFLOW_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="cmdexec-bench-airflow-home-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")


def minimal_context(run_id: str, task_id: str) -> dict[str, Any]:
    """What both operators read from an Airflow context, and nothing more."""
    import pendulum

    ti = SimpleNamespace(
        dag_id="bench_docker",
        task_id=task_id,
        run_id=run_id,
        try_number=1,
        map_index=-1,
        xcom_pull=lambda **_: None,
        xcom_push=lambda **_: None,
    )
    now = pendulum.now("UTC")
    return {
        "ti": ti,
        "task_instance": ti,
        "run_id": run_id,
        "logical_date": now,
        "params": {},
        "dag_run": SimpleNamespace(run_after=now, run_id=run_id),
    }


def _dag(i: int) -> Any:
    """A fresh DAG per run, as each operator of a task instance belongs to its DAG."""
    from datetime import datetime

    from airflow.sdk import DAG

    return DAG(dag_id=f"bench_docker_{i}", schedule=None, start_date=datetime(2026, 1, 1))


class Contenders:
    def __init__(self, image: str, project: Path, docker_cli: str) -> None:
        self.image = image
        self.project = project
        self.docker_cli = docker_cli

    def sh_operator(self, i: int, docker_params: dict[str, Any] | None = None) -> float:
        from airflow_cmdexec_provider.operators import ShOperator

        with _dag(i):
            op = ShOperator(
                task_id="sh_operator",
                command=SCRIPT,
                project_dir=str(self.project),
                docker=docker_params or {"image": self.image},
                command_executor="docker",
            )
        context = minimal_context(f"bench__sh_{os.getpid()}_{i}", op.task_id)
        t0 = time.perf_counter()
        op.execute(context)  # type: ignore[arg-type]
        return time.perf_counter() - t0

    def docker_operator(self, i: int) -> float:
        from airflow.providers.docker.operators.docker import DockerOperator

        with _dag(i):
            op = DockerOperator(
                task_id="docker_operator",
                image=self.image,
                command=["/bin/sh", "-c", SCRIPT],
                docker_url="unix://var/run/docker.sock",
                auto_remove="success",
                container_name=f"bench-dockerop-{os.getpid()}-{i}",
            )
        context = minimal_context(f"bench__dockerop_{os.getpid()}_{i}", op.task_id)
        t0 = time.perf_counter()
        op.execute(context)  # type: ignore[arg-type]
        return time.perf_counter() - t0

    def raw_docker_run(self, i: int) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [self.docker_cli, "run", "--rm", self.image, "/bin/sh", "-c", SCRIPT],
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0 or proc.stdout.strip() != b"hello":
            raise RuntimeError(f"raw docker run failed: {proc.stdout!r}")
        return elapsed


def summarise(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_s": statistics.median(ordered),
        "mean_s": statistics.fmean(ordered),
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "p90_s": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "stdev_s": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
    }


def duration(args: argparse.Namespace) -> int:
    """ShOperator on Docker vs DockerOperator vs raw docker run, interleaved."""
    docker_cli = _docker_cli(args.image)
    with tempfile.TemporaryDirectory(prefix="cmdexec-bench-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        contenders = Contenders(args.image, project, docker_cli)
        runners = {
            "sh_operator_docker": contenders.sh_operator,
            "docker_operator": contenders.docker_operator,
            "raw_docker_run": contenders.raw_docker_run,
        }
        names = list(runners)
        for i in range(args.warmup):
            for name in names:
                runners[name](-1 - i)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(args.runs):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(runners[name](i))
            print(
                f"run {i + 1}/{args.runs}: " + ", ".join(f"{n}={samples[n][-1] * 1000:.0f}ms" for n in names),
                file=sys.stderr,
            )

    stats = {name: summarise(values) for name, values in samples.items()}
    sh, dop, raw = (stats[n]["median_s"] for n in names)
    ratios = {
        "sh_operator_vs_raw_docker_run": sh / raw,
        "sh_operator_vs_docker_operator": sh / dop,
        "docker_operator_vs_raw_docker_run": dop / raw,
    }
    targets = {
        "sh_operator_within_1.10x_of_raw_docker_run": ratios["sh_operator_vs_raw_docker_run"]
        <= TARGET_VS_RAW,
        "sh_operator_no_slower_than_docker_operator": ratios["sh_operator_vs_docker_operator"]
        <= TARGET_VS_DOCKER_OPERATOR,
    }
    _write(
        args.output,
        {
            "benchmark": "docker-duration",
            "command": SCRIPT,
            "image": args.image,
            "runs": args.runs,
            "warmup": args.warmup,
            "interleaved": True,
            "stats": stats,
            "samples_s": samples,
            "ratios": ratios,
            "targets": targets,
        },
    )
    print(f"\n{'contender':<22}{'median':>10}{'p90':>10}{'min':>10}{'max':>10}")
    for name in names:
        st = stats[name]
        print(
            f"{name:<22}"
            + "".join(f"{st[k] * 1000:>8.0f}ms" for k in ("median_s", "p90_s", "min_s", "max_s"))
        )
    print(
        f"\nShOperator / raw docker run   = {ratios['sh_operator_vs_raw_docker_run']:.3f}  "
        f"(target <= {TARGET_VS_RAW}: "
        f"{'met' if targets['sh_operator_within_1.10x_of_raw_docker_run'] else 'MISSED'})"
    )
    print(
        f"ShOperator / DockerOperator   = {ratios['sh_operator_vs_docker_operator']:.3f}  (target <= 1.0: "
        f"{'met' if targets['sh_operator_no_slower_than_docker_operator'] else 'MISSED'})"
    )
    print(f"DockerOperator / raw          = {ratios['docker_operator_vs_raw_docker_run']:.3f}")
    return 0


# -- copy: the per-try workspace ---------------------------------------------------------------------------
COPY_CHILD = """
import json, resource, sys, time, uuid
from pathlib import Path
import airflow.sdk
from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile
from airflow_cmdexec_provider.backends.docker import DockerBackend, container_name, workspace_archive
from airflow_cmdexec_provider.config import docker_config

project, io_dir, image = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
(io_dir / "runner.sh").write_text("echo done\\n")
labels = {"dag_id": "bench_docker_copy", "task_id": "copy", "run_id": uuid.uuid4().hex, "try_number": "1",
          "map_index": "-1"}
request = CommandRequest(task_label="bench.copy", project_dir=project, workdir="", io_dir=io_dir,
                         command=("/bin/sh", IoFile("runner.sh")), labels=labels)
backend = DockerBackend(docker_config({"image": image}, "bench.copy"))
t0 = time.perf_counter()
result = backend.run(request, lambda line: None)
task = time.perf_counter() - t0
name = container_name({**labels, "try_number": "2"})
backend.transport.create(name, image, ["true"], "/", {}, {"io.github.cmdexec.bench": "copy"}, print)

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

try:
    t0, c0 = time.perf_counter(), cpu()
    backend.transport.copy_in(name, workspace_archive(request))
    copy, copy_cpu = time.perf_counter() - t0, cpu() - c0
finally:
    backend.transport.remove(name)
print(json.dumps({"exit_code": result.exit_code, "task_s": task, "copy_in_s": copy, "copy_in_cpu_s": copy_cpu,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_project(root: Path, files: int, megabytes: int) -> None:
    """``files`` files of ``megabytes`` MB in all: half in 20 big files, half in many small ones, in
    folders of 500 (as a real project would have)."""
    big_files = min(20, files)
    big_size = megabytes * (1 << 20) // 2 // big_files
    small_files = files - big_files
    small_size = megabytes * (1 << 20) // 2 // max(small_files, 1)
    for i in range(files):
        folder = root / f"pkg{i // 500:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = big_size if i < big_files else small_size
        (folder / f"file{i:05d}.dat").write_bytes(os.urandom(size))


def tar_and_docker_cp(docker_cli: str, image: str, project: Path) -> float:
    """The floor of any copy into a container: GNU tar piped into ``docker cp -`` (seconds)."""
    name = f"cmdexec-bench-copy-{os.getpid()}"
    subprocess.run([docker_cli, "create", "--name", name, image, "true"], check=True, capture_output=True)
    try:
        t0 = time.perf_counter()
        subprocess.run(f"tar cf - -C {project} . | {docker_cli} cp - {name}:/tmp", shell=True, check=True)
        return time.perf_counter() - t0
    finally:
        subprocess.run([docker_cli, "rm", "--force", name], check=False, capture_output=True)


def copy(args: argparse.Namespace) -> int:
    docker_cli = _docker_cli(args.image)
    results: dict[str, list[dict[str, float]]] = {"empty": [], "big": []}
    baseline: list[float] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cmdexec-bench-copy-") as tmp:
        projects = {"empty": Path(tmp) / "empty", "big": Path(tmp) / "big"}
        projects["empty"].mkdir()
        t0 = time.perf_counter()
        make_project(projects["big"], args.files, args.mb)
        print(
            f"made a project of {args.files} files, {args.mb} MB in {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
        for i in range(args.runs):
            for kind in ("empty", "big"):
                io_dir = Path(tmp) / f"io-{kind}-{i}"
                io_dir.mkdir()
                proc = subprocess.run(
                    [sys.executable, "-c", COPY_CHILD, str(projects[kind]), str(io_dir), args.image],
                    check=False,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr[-3000:])
                results[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(f"run {i + 1} {kind}: {results[kind][-1]}", file=sys.stderr)
            baseline.append(tar_and_docker_cp(docker_cli, args.image, projects["big"]))
            print(f"run {i + 1} tar | docker cp: {baseline[-1]:.2f} s", file=sys.stderr)
    keys = ("task_s", "copy_in_s", "copy_in_cpu_s", "peak_rss_mb")
    summary = {
        kind: {key: statistics.median(r[key] for r in runs) for key in keys} for kind, runs in results.items()
    }
    floor = statistics.median(baseline)
    _write(
        args.output,
        {
            "benchmark": "docker-copy",
            "files": args.files,
            "megabytes": args.mb,
            "runs": args.runs,
            "medians": summary,
            "tar_docker_cp_s": floor,
            "samples": results,
            "tar_docker_cp_samples_s": baseline,
            "load_average_start": load,
        },
    )
    print(
        f"\nproject of {args.files} files, {args.mb} MB (medians of {args.runs} runs, each in a fresh "
        f"process; load average {load[0]:.1f} at the start)"
    )
    print(f"{'':<14}{'task':>10}{'copy in':>10}{'its CPU':>10}{'peak RSS':>12}")
    for kind, row in summary.items():
        print(
            f"{kind:<14}{row['task_s']:>9.2f}s{row['copy_in_s']:>9.2f}s{row['copy_in_cpu_s']:>9.2f}s"
            f"{row['peak_rss_mb']:>10.0f}MB"
        )
    print(f"tar | docker cp of the same project: {floor:.2f} s")
    print(
        f"the copy costs {summary['big']['task_s'] - summary['empty']['task_s']:.2f} s per task and "
        f"{summary['big']['peak_rss_mb'] - summary['empty']['peak_rss_mb']:.0f} MB of worker memory"
    )
    return 0


# -- watch: many deferred tasks in one triggerer -------------------------------------------------------------
WATCH_CHILD = """
import asyncio, json, logging, resource, statistics, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import airflow.sdk
from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile, TaskSettings
from airflow_cmdexec_provider.backends.docker import DockerBackend
from airflow_cmdexec_provider.config import docker_config
from airflow_cmdexec_provider.triggers.command import CommandTrigger

work, image, params = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
count, script = int(sys.argv[4]), sys.argv[5]
logging.getLogger("airflow").setLevel(logging.WARNING)
backend = DockerBackend(docker_config({"image": image, **params}, "bench.watch"))
project = work / "project"
project.mkdir()
run_id = work.name

def submit(i):  # as the workers of 'count' deferrable tasks would
    io_dir = work / f"io{i}"
    io_dir.mkdir()
    (io_dir / "runner.sh").write_text(script)
    labels = {"dag_id": "bench_docker_watch", "task_id": f"t{i}", "run_id": run_id, "try_number": "1",
              "map_index": "-1"}
    request = CommandRequest(task_label=f"bench.t{i}", project_dir=project, workdir="", io_dir=io_dir,
                             command=("/bin/sh", IoFile("runner.sh")), labels=labels)
    return backend.submit(request, lambda line: None)

t0 = time.time()
with ThreadPoolExecutor(8) as pool:
    handles = list(pool.map(submit, range(count)))
(work / "handles.json").write_text(json.dumps(handles))
print(f"started {count} containers in {time.time() - t0:.0f} s", file=sys.stderr)

arrivals = []
log_line = CommandTrigger._log_line

def recorded(self, line):  # what reaches the trigger's log, and when
    log_line(self, line)
    if line.startswith("tick "):
        arrivals.append((time.time(), float(line.split()[1])))

CommandTrigger._log_line = recorded
settings = TaskSettings(task_label="bench.watch", docker={"image": image, **params}).to_json()
triggers = [CommandTrigger(executor="docker", handle=h, settings=settings, deadline=None) for h in handles]

async def follow(trigger):
    async for event in trigger.run():
        return event.payload

async def main():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time()
    events = await asyncio.gather(*(follow(t) for t in triggers))
    wall = time.time() - start
    end = resource.getrusage(resource.RUSAGE_SELF)
    return events, start, wall, end.ru_utime - usage.ru_utime + end.ru_stime - usage.ru_stime

events, start, wall, cpu = asyncio.run(main())
settle = start + 10  # the streams are open by then: lines printed before are read as a backlog
latencies = sorted(arrived - printed for arrived, printed in arrivals if printed >= settle)
print(json.dumps({"finished": sum(e["status"] == "finished" for e in events), "lines": len(arrivals),
                  "wall_s": wall, "cpu_s": cpu, "cores": cpu / wall, "latencies_counted": len(latencies),
                  "latency_p50_s": statistics.median(latencies),
                  "latency_p90_s": latencies[int(0.9 * (len(latencies) - 1))],
                  "latency_max_s": latencies[-1]}))
"""


def watch(args: argparse.Namespace) -> int:
    from airflow_cmdexec_provider.backends.docker import DockerBackend
    from airflow_cmdexec_provider.config import docker_config

    _docker_cli(args.image)
    params = {"docker": "docker"} if args.cli else {}
    lines = max(1, int(args.seconds / args.interval))
    script = (
        f'i=0\nwhile [ $i -lt {lines} ]; do i=$((i + 1)); echo "tick $(date +%s.%N)"; sleep {args.interval}; '
        "done\n"
    )
    with tempfile.TemporaryDirectory(prefix="cmdexec-bench-watch-") as tmp:
        work = Path(tmp) / f"bench_{os.getpid()}"
        work.mkdir()
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    WATCH_CHILD,
                    str(work),
                    args.image,
                    json.dumps(params),
                    str(args.containers),
                    script,
                ],
                check=False,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            if proc.returncode != 0:
                raise SystemExit(f"the watching process failed ({proc.returncode})")
            report = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            handles = (
                json.loads((work / "handles.json").read_text()) if (work / "handles.json").exists() else []
            )
            backend = DockerBackend(docker_config({"image": args.image}, "bench.watch"))
            for handle in handles:  # the containers ended: the watch saw them to the end
                backend.discard({**handle, "ended": True}, lambda line: None)
    report.update(
        containers=args.containers, interval_s=args.interval, transport="cli" if args.cli else "api"
    )
    _write(args.output, {"benchmark": "docker-watch", **report})
    print(json.dumps(report, indent=2))
    met = report["cores"] < 0.5 and report["latency_p90_s"] < 2.0
    print(
        f"\n{args.containers} deferred tasks: {report['cores']:.3f} cores, line latency p90 "
        f"{report['latency_p90_s']:.2f} s (targets < 0.5 core, < 2 s: {'met' if met else 'MISSED'})"
    )
    return 0


def _docker_cli(image: str) -> str:
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        raise SystemExit("docker CLI not found")
    if (
        subprocess.run([docker_cli, "image", "inspect", image], check=False, capture_output=True).returncode
        != 0
    ):
        raise SystemExit(f"image {image} is not on this Docker host (scripts/build-test-image.sh)")
    return docker_cli


def _write(path: Path, report: dict[str, Any]) -> None:
    report.update(
        python=platform.python_version(), host=platform.platform(), load_average_end=os.getloadavg()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {path}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm"))
    commands = parser.add_subparsers(dest="command")
    timing = commands.add_parser("duration", help="ShOperator vs DockerOperator vs docker run (the default)")
    timing.add_argument("--runs", type=int, default=20, help="runs of each contender (default 20)")
    timing.add_argument("--warmup", type=int, default=2, help="untimed runs of each contender first")
    timing.add_argument("--output", type=Path, default=RESULTS)
    copying = commands.add_parser("copy", help="what copying the project into the container costs")
    copying.add_argument("--files", type=int, default=20_000)
    copying.add_argument("--mb", type=int, default=200)
    copying.add_argument("--runs", type=int, default=3)
    copying.add_argument("--output", type=Path, default=RESULTS.with_name("docker-copy.json"))
    following = commands.add_parser("watch", help="many deferred tasks followed by one triggerer process")
    following.add_argument("--containers", type=int, default=200)
    following.add_argument(
        "--seconds", type=float, default=60, help="how long each container prints (default 60)"
    )
    following.add_argument("--interval", type=float, default=2, help="seconds between a container's lines")
    following.add_argument(
        "--cli", action="store_true", help="through the docker CLI (docker logs -f per container)"
    )
    following.add_argument("--output", type=Path, default=RESULTS.with_name("docker-watch.json"))
    args = parser.parse_args()
    if args.command is None:
        args = parser.parse_args([*sys.argv[1:], "duration"])

    _airflow_env()
    import logging

    logging.getLogger("airflow").setLevel(logging.WARNING)
    # Both operators warn that execute() runs outside the task runner; that is the point here.
    warnings.filterwarnings("ignore")
    return {"duration": duration, "copy": copy, "watch": watch}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
