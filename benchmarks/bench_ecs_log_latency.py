#!/usr/bin/env python
"""Benchmark: log latency, from a line printed in an ECS task's container to that line in the
Airflow log, for our ``EcsBackend`` and for Airflow's ``EcsRunTaskOperator``.

The task: a container that prints ``LATENCY-PROBE <n> <its own clock, date +%s.%N>`` every
``--every`` (2) seconds on average (each pause uniform in 1.5..2.5 s, the same in every run, so
that no line keeps a fixed phase against a poller of the same period) for ``--duration`` (40) s.
The ECS emulator (moto in server mode whose RunTask really runs the container in Docker, and
writes its output to CloudWatch Logs as the ``awslogs`` driver does, in batches every 0.2 s)
runs it; container and worker share the host's clock, so latency = (time the line reached the
Airflow-side logger) - (time printed in the line).

Contenders, one after the other (``--rounds`` each, default 1, in a rotating order):

- ours, ``EcsBackend(..., poll_interval=2).run(request, sink)`` (2 s is the default) and again with
  ``poll_interval=1``; ``sink`` is what the hook would hand to the task log, here it records
  ``time.time()`` per line. The run includes shipping the (tiny) project through S3, as in production.
- the peer, ``EcsRunTaskOperator`` (``airflow.providers.amazon.aws.operators.ecs``) with its DEFAULT
  ``awslogs_fetch_interval`` (30 s) and ``waiter_delay`` (6 s), on the same cluster and task
  definition, ``awslogs_group`` / ``awslogs_stream_prefix`` set to the task definition's awslogs
  options as its docs require, and ``container_name`` set (without it, the operator sleeps 10 s after
  RunTask to discover the container's name before it starts fetching: setting it is the peer's
  best case). It reaches the emulator through ``AWS_ENDPOINT_URL`` (``aws_conn_id=None``: boto3's
  default chain). Its ``AwsTaskLogFetcher`` thread logs each CloudWatch event through
  ``logger=self.log``, the operator's logger; in Airflow 3 that is a structlog logger (no stdlib
  handler can be attached to it), so the benchmark puts a recording stand-in in its place
  (the operator's cached logger, ``op._cached_logger``) that notes ``time.time()`` at each
  ``log()`` call - the same point at which our sink is called.

Also reported: the CloudWatch event's timestamp - printed time (the log driver stamps a line when
it reads it from the container; the emulator makes the batch readable within 0.2 s, the same for
both), and the theory for a fetch interval F (a line waits F/2 on average, up to F).

The emulator runs in a child process (so its HTTP and Docker-log threads do not share a GIL with
the contenders) and removes every container it started when it stops.

Usage: .venv/bin/python benchmarks/bench_ecs_log_latency.py [--duration 40] [--every 2] [--rounds 1]
       [--poll-intervals 2,1] [--skip-peer] [--image cmdexec-test:bookworm]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ecs_common as common

BUCKET = "cmdexec-bench-latency"
CLUSTER = "cmdexec-bench"
LOG_GROUP = "/cmdexec/bench"
STREAM_PREFIX = "bench"
CONTAINER = "main"
PROBE = re.compile(r"LATENCY-PROBE (\d+) (\d+\.\d+)")


def probe_script(duration: float, every: float) -> str:
    """``count`` probe lines, ``every`` s apart on average: the pause is uniform in every +- 0.5 s
    (bash's RANDOM, seeded: the same pauses in every run), so that the lines do not keep one phase
    against a poll of the same period, which would make every line wait the same time."""
    count = max(1, int(duration / every))
    base_ms = max(0, int((every - 0.5) * 1000))
    return (
        f"RANDOM=42; for i in $(seq 1 {count}); do "
        f'echo "LATENCY-PROBE $i $(date +%s.%N)"; '
        f"d=$(( {base_ms} + RANDOM % 1000 )); sleep $(( d / 1000 )).$(printf %03d $(( d % 1000 ))); "
        f"done; echo done"
    )


def setup(endpoint_url: str, image: str) -> str:
    common.boto3_client("s3", endpoint_url).create_bucket(Bucket=BUCKET)
    common.boto3_client("logs", endpoint_url).create_log_group(logGroupName=LOG_GROUP)
    ecs = common.boto3_client("ecs", endpoint_url)
    ecs.create_cluster(clusterName=CLUSTER)
    container = {
        "name": CONTAINER,
        "image": image,
        "memory": 256,
        "essential": True,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": LOG_GROUP,
                "awslogs-region": common.REGION,
                "awslogs-stream-prefix": STREAM_PREFIX,
            },
        },
    }
    return ecs.register_task_definition(
        family="cmdexec-bench-latency",
        containerDefinitions=[container],
        tags=[{"key": "digdag.docker.image", "value": image}],
    )["taskDefinition"]["taskDefinitionArn"]


def latencies(arrivals: list[tuple[float, str]]) -> dict[int, float]:
    """probe number -> arrival - printed time, for every probe line that arrived."""
    out: dict[int, float] = {}
    for arrived, line in arrivals:
        match = PROBE.search(line)
        if match and int(match.group(1)) not in out:
            out[int(match.group(1))] = arrived - float(match.group(2))
    return out


def log_streams(endpoint_url: str) -> set[str]:
    logs = common.boto3_client("logs", endpoint_url)
    names: set[str] = set()
    for page in logs.get_paginator("describe_log_streams").paginate(logGroupName=LOG_GROUP):
        names.update(s["logStreamName"] for s in page.get("logStreams", []))
    return names


def new_stream(endpoint_url: str, before: set[str]) -> str:
    """The log stream of the task that just ran (the one stream that was not there before)."""
    new = log_streams(endpoint_url) - before
    if len(new) != 1:
        raise RuntimeError(f"expected one new log stream, found {sorted(new)}")
    return new.pop()


def pipeline_latencies(endpoint_url: str, stream: str) -> dict[int, float]:
    """probe number -> CloudWatch event timestamp - printed time (the log pipeline, before any fetch)."""
    logs = common.boto3_client("logs", endpoint_url)
    out: dict[int, float] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        response = logs.get_log_events(**kwargs)
        for event in response["events"]:
            match = PROBE.search(event["message"])
            if match:
                out[int(match.group(1))] = event["timestamp"] / 1000 - float(match.group(2))
        if not response["events"] or response.get("nextForwardToken") == token:
            return out
        token = response.get("nextForwardToken")


# -- ours ------------------------------------------------------------------------------------------
def run_ours(endpoint_url: str, td_arn: str, script: str, poll: float, tmp: Path) -> dict[str, Any]:
    from airflow_cmdexec_provider.backends.base import CommandRequest
    from airflow_cmdexec_provider.backends.ecs import EcsBackend
    from airflow_cmdexec_provider.config import EcsConfig, StorageConfig

    config = EcsConfig(
        conn_id="bench_ecs",
        cluster_name=CLUSTER,
        region=common.REGION,
        access_key_id=common.DUMMY_KEY,
        secret_access_key=common.DUMMY_KEY,
        endpoint_url=endpoint_url,
        task_definition_arn=td_arn,
        poll_interval=poll,
        task_label="bench_latency.ours",
    )
    storage = StorageConfig(
        conn_id="bench_storage",
        type="s3",
        bucket=BUCKET,
        endpoint=endpoint_url,
        path_style_access=True,
        region=common.REGION,
        access_key_id=common.DUMMY_KEY,
        secret=common.DUMMY_KEY,
    )
    backend = EcsBackend(config, storage, poll_interval=poll)
    work = Path(tempfile.mkdtemp(prefix="ours-", dir=tmp))
    (work / "project").mkdir()
    (work / "project" / "README").write_text("latency probe\n")
    (work / "io").mkdir()
    request = CommandRequest(
        task_label="bench_latency.ours",
        project_dir=work / "project",
        workdir="",
        io_dir=work / "io",
        command=("bash", "-c", script),
        labels={"dag_id": "bench_latency", "task_id": "ours", "run_id": str(time.time())},
    )
    arrivals: list[tuple[float, str]] = []
    before = log_streams(endpoint_url)
    t0 = time.time()
    result = backend.run(request, lambda line: arrivals.append((time.time(), line)))
    wall = time.time() - t0
    shutil.rmtree(work)
    if result.exit_code != 0:
        raise RuntimeError(f"our ECS task failed: {result}")
    stream = new_stream(endpoint_url, before)
    return {
        "latency": latencies(arrivals),
        "pipeline": pipeline_latencies(endpoint_url, stream),
        "wall_s": wall,
        "api_calls": dict(backend.api_calls),
    }


# -- the peer --------------------------------------------------------------------------------------
class RecordingLogger:
    """Stands in for the operator's logger: records when each message arrives (and, with
    ``forward``, passes it on to the original logger)."""

    def __init__(self, original: Any, forward: bool) -> None:
        self.original = original
        self.forward = forward
        self.records: list[tuple[float, str]] = []

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        arrived = time.time()
        text = str(msg) % args if args else str(msg)
        self.records.append((arrived, text))
        if self.forward:
            self.original.log(level, msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        levels = {
            "debug": 10,
            "info": 20,
            "warning": 30,
            "warn": 30,
            "error": 40,
            "exception": 40,
            "critical": 50,
        }
        if name in levels:
            return lambda msg, *args, **kwargs: self.log(levels[name], msg, *args, **kwargs)
        return getattr(self.original, name)


def run_peer(endpoint_url: str, td_arn: str, script: str, forward: bool) -> dict[str, Any]:
    from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator

    op = EcsRunTaskOperator(
        task_id="ecs_run_task_operator",
        task_definition=td_arn,
        cluster=CLUSTER,
        overrides={"containerOverrides": [{"name": CONTAINER, "command": ["/bin/bash", "-c", script]}]},
        awslogs_group=LOG_GROUP,
        awslogs_stream_prefix=STREAM_PREFIX,
        awslogs_region=common.REGION,
        container_name=CONTAINER,
        aws_conn_id=None,
        region_name=common.REGION,
        # awslogs_fetch_interval, waiter_delay: their defaults (30 s, 6 s)
    )
    assert op.awslogs_fetch_interval == timedelta(seconds=30)
    recorder = RecordingLogger(op.log, forward)
    # op.log is the logger AwsTaskLogFetcher gets (logger=self.log); it is cached in _cached_logger
    # (Airflow 3.x DAG nodes) or _log (LoggingMixin): put the recorder there
    for attr in ("_cached_logger", "_log"):
        if op.log is not recorder:
            object.__setattr__(op, attr, recorder)
    if op.log is not recorder:
        raise RuntimeError("cannot put a recording logger in place of EcsRunTaskOperator.log")
    ti = SimpleNamespace(
        dag_id="bench_latency",
        task_id=op.task_id,
        run_id="bench",
        map_index=-1,
        try_number=1,
        xcom_push=lambda **_: None,
    )
    before = log_streams(endpoint_url)
    t0 = time.time()
    op.execute({"ti": ti, "task_instance": ti})
    wall = time.time() - t0
    stream = new_stream(endpoint_url, before)
    fetched = [(t, m) for t, m in recorder.records if PROBE.search(m) and m.startswith("[")]
    return {
        "latency": latencies(fetched),
        "pipeline": pipeline_latencies(endpoint_url, stream),
        "wall_s": wall,
        "fetch_interval_s": op.awslogs_fetch_interval.total_seconds(),
        "waiter_delay_s": op.waiter_delay,
    }


# -- report ----------------------------------------------------------------------------------------
def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": common.median(values),
        "p90": common.percentile(values, 90),
        "max": max(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=40, help="seconds the container prints for (default 40)"
    )
    parser.add_argument("--every", type=float, default=2, help="seconds between printed lines (default 2)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each contender (default 1)")
    parser.add_argument("--poll-intervals", default="2,1", help="our poll_interval values (default 2,1)")
    parser.add_argument("--skip-peer", action="store_true", help="do not run EcsRunTaskOperator")
    parser.add_argument(
        "--forward-peer-log",
        action="store_true",
        help="also print what EcsRunTaskOperator logs (through its own logger)",
    )
    parser.add_argument("--image", default=os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm"))
    args = parser.parse_args()

    common.airflow_env()
    import logging

    import airflow_cmdexec_provider.backends.ecs  # noqa: F401  (import Airflow before any clock runs)

    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in ...": noise here

    script = probe_script(args.duration, args.every)
    polls = [float(p) for p in args.poll_intervals.split(",") if p.strip()]
    contenders = [f"ours poll={p:g}s" for p in polls] + ([] if args.skip_peer else ["EcsRunTaskOperator"])
    samples: dict[str, dict[str, list[float]]] = {c: {"latency": [], "pipeline": []} for c in contenders}
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    peer_error: str | None = None
    tmp = Path(tempfile.mkdtemp(prefix="cmdexec-bench-latency-"))
    saved_env = {k: os.environ.get(k) for k in common.aws_env("")}
    try:
        with common.ServerProcess("emulator") as server:
            os.environ.update(common.aws_env(server.endpoint_url))  # how the peer finds the emulator
            td_arn = setup(server.endpoint_url, args.image)
            print(
                f"ECS emulator on {server.endpoint_url} (child process {server.pid}); probe: one line every "
                f"{args.every:g} s for {args.duration:g} s"
            )
            for r in range(args.rounds):
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                for name in order:
                    if name == "EcsRunTaskOperator" and peer_error:
                        continue
                    try:
                        if name == "EcsRunTaskOperator":
                            res = run_peer(server.endpoint_url, td_arn, script, args.forward_peer_log)
                        else:
                            res = run_ours(
                                server.endpoint_url, td_arn, script, float(name.split("=")[1][:-1]), tmp
                            )
                    except Exception as exc:
                        if name != "EcsRunTaskOperator":
                            raise
                        peer_error = f"{type(exc).__name__}: {exc}"
                        print(f"  EcsRunTaskOperator could not run against the emulator: {peer_error}")
                        traceback.print_exc()
                        continue
                    expected = max(1, int(args.duration / args.every))
                    lat = list(res["latency"].values())
                    samples[name]["latency"] += lat
                    samples[name]["pipeline"] += list(res["pipeline"].values())
                    runs[name].append(dict(res))
                    print(
                        f"  round {r + 1} {name:<20} {len(lat)}/{expected} probe lines, median latency "
                        f"{common.median(lat):5.2f} s, max {max(lat) if lat else float('nan'):5.2f} s, "
                        f"run {res['wall_s']:.1f} s",
                        flush=True,
                    )
                    if len(lat) != expected:
                        print(f"  WARNING: {name} delivered {len(lat)} of {expected} probe lines")
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {
        c: {"latency": stats(samples[c]["latency"]), "pipeline": stats(samples[c]["pipeline"])}
        for c in contenders
        if samples[c]["latency"]
    }
    rows = []
    for c, s in summary.items():
        lat, pipe = s["latency"], s["pipeline"]
        rows.append([c, lat["n"], lat["median"], lat["p90"], lat["max"], pipe["median"]])
    fetch = 30.0
    if "EcsRunTaskOperator" not in summary:
        rows.append(["EcsRunTaskOperator (theory)", "-", fetch / 2, fetch * 0.9, fetch, "-"])
    common.print_table(
        ["contender", "lines", "median s", "p90 s", "max s", "event stamp med s"],
        rows,
        title="Log latency: container line -> Airflow-side logger (s). Event stamp = the "
        "CloudWatch event's timestamp - printed time (the log driver stamps a line when it "
        "reads it;\nthe emulator makes it readable <= 0.2 s later; the same for all): "
        "the rest of the latency is waiting for the next fetch",
    )
    ratios: dict[str, Any] = {}
    peer = summary.get("EcsRunTaskOperator")
    for c in contenders:
        if c.startswith("ours") and c in summary:
            base = peer["latency"] if peer else {"median": fetch / 2, "p90": fetch * 0.9, "max": fetch}
            ratios[c] = {k: common.ratio(base[k], summary[c]["latency"][k]) for k in ("median", "p90", "max")}
            label = "EcsRunTaskOperator" if peer else "EcsRunTaskOperator THEORY (F=30 s)"
            print(
                f"{label} / {c}: median {ratios[c]['median']:.1f}x, p90 {ratios[c]['p90']:.1f}x, "
                f"max {ratios[c]['max']:.1f}x"
            )
    print(
        "Theory for a fetch interval F: a line waits F/2 on average and at most F (+ the pipeline); "
        "F=30 s -> 15 s / 30 s; ours F=poll_interval (+ one DescribeTasks and one GetLogEvents per poll)"
    )
    if peer_error:
        print(f"EcsRunTaskOperator did not run: {peer_error}")
    path = common.write_json(
        "ecs_log_latency",
        {
            "args": vars(args),
            "summary": summary,
            "ratios_peer_over_ours": ratios,
            "peer_error": peer_error,
            "runs": runs,
        },
    )
    print(f"\nWrote {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
