#!/usr/bin/env python
"""Benchmark: ShOperator on Docker vs Airflow's DockerOperator vs a raw ``docker run --rm``.

Same image, same trivial command (``/bin/sh`` running ``echo hello``), ``--runs`` runs each (default
20), the three interleaved in every iteration (in a rotating order, so no contender always goes first
or last). Both operators run through ``op.execute(context)`` with an equivalent minimal context;
the raw run is a ``subprocess.run`` of the docker CLI. Reports medians and the ratios against the
targets (ShOperator within 1.15x of raw ``docker run``, and no slower than DockerOperator), writes
``benchmarks/results/docker.json`` and, with ``--profile``, times every docker CLI call that the
ShOperator makes (through a wrapper CLI given as ``docker.docker``; the wrapper's own cost is
subtracted: it is measured by the ``--version`` calibration runs).

Fairness (see benchmarks/README-docker.md):
- every contender starts a fresh container of the same local image, attaches to its output, waits
  for it and removes it; nothing is pulled (the image is local; no contender is told to pull);
- a fresh operator object per run (a task instance gets a fresh operator); construction is not
  timed, ``execute`` is (DockerOperator creates its Docker API client there, ShOperator its hook
  and backend);
- ShOperator is forced to ``executor="docker"``: DockerOperator makes no executor choice either, and
  the automatic choice would look up Airflow Connections/Variables, which need a metadata DB;
- ShOperator mounts the project and a per-try IO folder (2 bind mounts); DockerOperator mounts
  its temp dir (``mount_tmp_dir=True``, its default; 1 bind mount); raw ``docker run`` mounts
  nothing. Both operators log the command's output through their task logger.

Usage: .venv/bin/python benchmarks/bench_docker.py [--runs N] [--image IMAGE] [--profile]
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
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "docker.json"
SCRIPT = "echo hello"
TARGET_VS_RAW = 1.15
TARGET_VS_DOCKER_OPERATOR = 1.0


def _airflow_env() -> None:
    """A throw-away AIRFLOW_HOME: importing Airflow must not touch a real one."""
    if "AIRFLOW_HOME" not in os.environ:
        os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="cmdexec-bench-airflow-home-")
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
        "p90_s": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
        "stdev_s": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
    }


def profile_cli_calls(contenders: Contenders, runs: int, work: Path) -> dict[str, Any]:
    """Run the ShOperator with a timing wrapper as docker.docker; return the time per docker CLI call."""
    log = work / "cli-times.jsonl"
    wrapper = work / "timed-docker"
    wrapper.write_text(
        "#!/usr/bin/env python3\n"
        "import json, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        f"rc = subprocess.call([{contenders.docker_cli!r}, *sys.argv[1:]])\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:3], 's': time.perf_counter() - t0}) + '\\n')\n"
        "sys.exit(rc)\n"
    )
    wrapper.chmod(0o755)
    # The docker CLI's own start-up cost: `docker --version` does not talk to the daemon.
    startup = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([contenders.docker_cli, "--version"], capture_output=True)
        startup.append(time.perf_counter() - t0)
    totals = []
    for i in range(runs):
        log.unlink(missing_ok=True)
        totals.append(contenders.sh_operator(10_000 + i, {"image": contenders.image, "docker": str(wrapper)}))
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        if i == 0:
            per_call: dict[str, list[float]] = {" ".join(c["argv"]): [] for c in calls}
        for c in calls:
            per_call.setdefault(" ".join(c["argv"]), []).append(c["s"])
    return {
        "docker_cli_startup_median_s": statistics.median(startup),
        "per_call_median_s": {k: statistics.median(v) for k, v in per_call.items()},
        "calls_per_run": len(per_call),
        "sh_operator_with_wrapper_median_s": statistics.median(totals),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each contender (default 20)")
    parser.add_argument("--image", default=os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm"))
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs of each contender first")
    parser.add_argument("--profile", action="store_true", help="also time each docker CLI call of ShOperator")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    _airflow_env()
    import logging

    logging.getLogger("airflow").setLevel(logging.WARNING)
    # Both operators warn that execute() runs outside the task runner; that is the point here.
    warnings.filterwarnings("ignore")
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        print("docker CLI not found", file=sys.stderr)
        return 2
    if subprocess.run([docker_cli, "image", "inspect", args.image], capture_output=True).returncode != 0:
        print(f"image {args.image} is not on this Docker host (scripts/build-test-image.sh)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="cmdexec-bench-") as tmp:
        work = Path(tmp)
        project = work / "project"
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
        profile = profile_cli_calls(contenders, min(args.runs, 10), work) if args.profile else None

    stats = {name: summarise(values) for name, values in samples.items()}
    sh, dop, raw = (stats[n]["median_s"] for n in names)
    ratios = {
        "sh_operator_vs_raw_docker_run": sh / raw,
        "sh_operator_vs_docker_operator": sh / dop,
        "docker_operator_vs_raw_docker_run": dop / raw,
    }
    targets = {
        "sh_operator_within_1.15x_of_raw_docker_run": ratios["sh_operator_vs_raw_docker_run"]
        <= TARGET_VS_RAW,
        "sh_operator_no_slower_than_docker_operator": ratios["sh_operator_vs_docker_operator"]
        <= TARGET_VS_DOCKER_OPERATOR,
    }
    server = subprocess.run(
        [docker_cli, "version", "--format", "{{.Client.Version}} / {{.Server.Version}}"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    report = {
        "benchmark": "docker",
        "command": SCRIPT,
        "image": args.image,
        "runs": args.runs,
        "warmup": args.warmup,
        "interleaved": True,
        "docker_client_server": server,
        "python": platform.python_version(),
        "host": platform.platform(),
        "stats": stats,
        "samples_s": samples,
        "ratios": ratios,
        "targets": targets,
        "profile": profile,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{'contender':<22}{'median':>10}{'p90':>10}{'min':>10}{'max':>10}")
    for name in names:
        s = stats[name]
        print(
            f"{name:<22}" + "".join(f"{s[k] * 1000:>8.0f}ms" for k in ("median_s", "p90_s", "min_s", "max_s"))
        )
    print(
        f"\nShOperator / raw docker run   = {ratios['sh_operator_vs_raw_docker_run']:.3f}  "
        f"(target <= {TARGET_VS_RAW}: "
        f"{'met' if targets['sh_operator_within_1.15x_of_raw_docker_run'] else 'MISSED'})"
    )
    print(
        f"ShOperator / DockerOperator   = {ratios['sh_operator_vs_docker_operator']:.3f}  "
        f"(target <= 1.0: {'met' if targets['sh_operator_no_slower_than_docker_operator'] else 'MISSED'})"
    )
    print(f"DockerOperator / raw          = {ratios['docker_operator_vs_raw_docker_run']:.3f}")
    if profile:
        print(
            f"\nShOperator docker CLI calls per run (median each; CLI start-up alone "
            f"{profile['docker_cli_startup_median_s'] * 1000:.0f}ms):"
        )
        for call, seconds in profile["per_call_median_s"].items():
            print(f"  docker {call:<30}{seconds * 1000:>8.0f}ms")
    print(f"\nwritten {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
