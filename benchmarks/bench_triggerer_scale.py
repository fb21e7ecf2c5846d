#!/usr/bin/env python
"""Triggerer scale: one triggerer follows N deferred Docker and N deferred ECS commands while they run.

What the issue asks of one triggerer watching 200 + 200 deferred tasks: CPU under 0.5 core on
average, log lines in the task log within 2 s at p90, no process spawned per poll, ECS status read
in batches (one DescribeTasks per cluster per round for up to 100 tasks), logs read only where a
stream has new data, API calls per task-minute side by side with ``EcsRunTaskOperator(deferrable=True)``
on the same emulator, and back-off without failing a task when ECS throttles.

How (see benchmarks/README.md, "Triggerer scale"):

1. The ECS emulator (moto in server mode whose tasks really run as containers) runs in this process,
   with a bucket, a log group, a cluster and a task definition tagged with the image, and the two
   connections as ``AIRFLOW_CONN_*`` variables (the connection's default ``poll_interval``).
2. N Docker and N ECS commands are started with the backends' own ``submit``, 8 threads per backend
   (as workers deferring their tasks would). Each command first waits at a gate (an HTTP request to
   this process that is answered only when the gate opens), then prints ``scale <task> line <i> at
   <its clock>`` every second for ``--seconds`` (60) seconds. The gate makes every command print at
   the same time, however long starting 2N containers takes on this machine.
3. ONE triggerer: a separate process (this file with ``_triggerer``: its CPU is its own, not the
   emulator's) gets the 2N triggers as JSON (classpath and kwargs, as ``serialize()`` gives them)
   and runs every ``CommandTrigger`` in one asyncio event loop, iterating each ``run()`` to its end
   as Airflow's triggerer does. The triggers' logger is replaced by a recorder (the same for ours and
   the peer) that notes when each line was logged. When every trigger runs, the gate opens.
4. Measured: the triggerer's CPU (its rusage) over the watch and while the commands print; line
   latency (time logged - time printed in the line) per backend; processes spawned by the triggerer
   (its children, sampled every 0.2 s); API calls per task-minute per operation, counted in the
   triggerer by wrapping botocore's ``BaseClient._make_api_call`` (and aiobotocore's for the peer)
   and aiohttp's ``ClientSession._request`` (Docker Engine API). A task-minute is a minute of one
   trigger's life (start to end). The run fails unless every command ends with exit 0 and every line
   arrives once and in order.
5. The peer: N ECS tasks of the same task definition started with plain RunTask, followed by N
   ``TaskDoneTrigger`` (what ``EcsRunTaskOperator(deferrable=True)`` defers to), built from an
   ``EcsRunTaskOperator`` with its defaults (``waiter_delay`` 6 s) and its CloudWatch log fetching on
   (``awslogs_group``/``awslogs_stream_prefix`` set, as a user who wants the log does), in one event
   loop in another process. It needs aiobotocore, whose botocore pin is older than the project's: it
   runs with aiobotocore and a matching botocore/boto3 installed (once) into
   ``benchmarks/results/peer-site-packages`` (pip ``--target``), first on its ``PYTHONPATH``.
6. ``--throttle N``: once our commands print, the emulator throttles the next N DescribeTasks
   requests (ThrottlingException); the run must still end with every task finished and every line
   delivered. Reported: throttled requests, failed rounds, the longest gap between two rounds.

Everything made is removed at the end (containers, ECS tasks, S3 objects, temporary files).

Usage: .venv/bin/python benchmarks/bench_triggerer_scale.py [--tasks 200] [--seconds 60] [--throttle 40]
       [--skip-peer] [--poll-interval S] [--image cmdexec-test:bookworm]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import importlib
import ipaddress
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

import _ecs_common as common

ROOT = common.ROOT
BUCKET = "cmdexec-bench-tscale"
CLUSTER = "cmdexec-bench-tscale"
LOG_GROUP = "/cmdexec/bench-tscale"
STREAM_PREFIX = "cmdexec"
CONTAINER = "main"
PEER_SITE = ROOT / "benchmarks" / "results" / "peer-site-packages"
PEER_PACKAGES = ("aiobotocore", "boto3")  # pip picks the boto3 whose botocore aiobotocore accepts
SUBMIT_THREADS = 8  # per backend, as several workers deferring tasks at once
GATE_TIMEOUT = 1800
LINE = re.compile(r"scale (\S+) line (\d+) at (\d+\.\d+)")
THROTTLED_WARNING = "could not read the ECS task's state"
TARGET_CORES = 0.5
TARGET_P90_S = 2.0


# -- the commands ----------------------------------------------------------------------------------
def script(task: str, lines: int, gate_url: str) -> str:
    """Wait at the gate, then ``lines`` numbered lines a second apart, each with the shell's clock.

    Only bash builtins in the loop (``read -t 1`` on a pipe nobody writes is the pause): 2N commands
    forking ``date`` and ``sleep`` every second would load this machine more than everything measured."""
    return (
        f"curl -sf -m {GATE_TIMEOUT} --retry 10 --retry-connrefused {gate_url} >/dev/null "
        f"|| {{ echo 'scale {task} could not pass the gate'; exit 97; }}\n"
        'pause=$(mktemp -u) && mkfifo "$pause" && exec 3<>"$pause" && rm "$pause" || exit 98\n'
        f"for ((i = 1; i <= {lines}; i++)); do "
        f'echo "scale {task} line $i at $EPOCHREALTIME"; read -t 1 -u 3; done\n'
        "exit 0\n"
    )


class Gate:
    """HTTP answers held until the gate of their path opens (one path per phase), on each address."""

    def __init__(self, hosts: list[str]) -> None:
        self.events: dict[str, threading.Event] = {}
        events = self.events

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                event = events.get(self.path.strip("/"))
                if event is None:
                    self.send_error(404)
                    return
                event.wait(GATE_TIMEOUT)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"go")

            def log_message(self, *args: Any) -> None:
                pass

        self.servers = {host: http.server.ThreadingHTTPServer((host, 0), Handler) for host in hosts}
        for server in self.servers.values():
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def new(self) -> str:
        key = uuid.uuid4().hex
        self.events[key] = threading.Event()
        return key

    def url(self, host: str, key: str) -> str:
        return f"http://{host}:{self.servers[host].server_address[1]}/{key}"

    def open(self, key: str) -> None:
        self.events[key].set()

    def close(self) -> None:
        for event in self.events.values():
            event.set()  # no command stays blocked
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


# -- the triggerer process -------------------------------------------------------------------------
class LineRecorder:
    """Stands in for a trigger's logger: notes when each message was logged (ours and the peer alike)."""

    def __init__(self, records: list[tuple[float, str]]) -> None:
        self.records = records

    def log(self, level: int, msg: str, *args: Any, **_: Any) -> None:
        self.records.append((time.time(), msg % args if args else str(msg)))

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(20, msg, *args, **kwargs)

    debug = warning = error = exception = critical = info


class ApiCounter:
    """Every AWS and Docker Engine API call the process makes: (start, service, operation, seconds, ok)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, str, float, bool]] = []
        # When CloudWatch Logs (the emulator) ingested each line read, from the events' ingestionTime:
        # splits an ECS line's latency into the log service's part and the watcher's.
        self.ingested: dict[str, float] = {}

    def note_events(self, operation: str, result: Any) -> None:
        if operation in ("FilterLogEvents", "GetLogEvents") and isinstance(result, dict):
            for event in result.get("events") or ():
                match = LINE.search(str(event.get("message", "")))
                if match and event.get("ingestionTime"):
                    self.ingested.setdefault(
                        f"{match.group(1)}:{match.group(2)}", event["ingestionTime"] / 1000
                    )

    def _record(self, start: float, service: str, operation: str, ok: bool) -> None:
        self.calls.append((start, service, operation, time.time() - start, ok))

    def install(self) -> None:
        from botocore.client import BaseClient

        counter, sync_call = self, BaseClient._make_api_call

        def counted(client: Any, operation: str, params: Any) -> Any:
            start, ok = time.time(), False
            try:
                result = sync_call(client, operation, params)
                ok = True
                counter.note_events(operation, result)
                return result
            finally:
                counter._record(start, client.meta.service_model.service_name, operation, ok)

        BaseClient._make_api_call = counted  # type: ignore[method-assign]
        with contextlib.suppress(ImportError):  # only the peer's environment has aiobotocore
            from aiobotocore.client import AioBaseClient

            async_call = AioBaseClient._make_api_call

            async def counted_async(client: Any, operation: str, params: Any) -> Any:
                start, ok = time.time(), False
                try:
                    result = await async_call(client, operation, params)
                    ok = True
                    counter.note_events(operation, result)
                    return result
                finally:
                    counter._record(start, client.meta.service_model.service_name, operation, ok)

            AioBaseClient._make_api_call = counted_async  # type: ignore[method-assign]
        import aiohttp

        request = aiohttp.ClientSession._request

        async def counted_request(session: Any, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
            text = str(url)
            if not text.startswith(
                "http://docker/"
            ):  # the Engine API on the socket; aiobotocore is counted above
                return await request(session, method, url, *args, **kwargs)
            start, ok = time.time(), False
            try:
                response = await request(session, method, url, *args, **kwargs)
                ok = True
                return response
            finally:
                counter._record(start, "docker", docker_operation(method, text, kwargs.get("params")), ok)

        aiohttp.ClientSession._request = counted_request  # type: ignore[method-assign]


def docker_operation(method: str, url: str, params: Any) -> str:
    """``GET /containers/{name}/logs?follow=1`` from a request URL: the kind of request, not the container."""
    path = re.sub(r"^http://docker(/v[\d.]+)?", "", url.split("?")[0])
    path = re.sub(r"^/containers/[^/]+/", "/containers/{name}/", path)
    follow = (params or {}).get("follow")
    return f"{method} {path}" + (f"?follow={follow}" if follow is not None else "")


def triggerer_main(spec_file: str, result_file: str) -> None:
    """The triggerer process: every trigger of ``spec_file`` in one event loop; results to ``result_file``."""
    # Standard output is only for "ready": what libraries print there (Airflow logs to it) goes to stderr.
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import airflow.sdk  # noqa: F401  (Airflow first: the provider's modules import it)

    spec = json.loads(Path(spec_file).read_text())
    counter = ApiCounter()
    counter.install()
    records: list[tuple[float, str]] = []
    triggers = []
    for item in spec["triggers"]:
        module, _, name = item["classpath"].rpartition(".")
        trigger = getattr(importlib.import_module(module), name)(**item["kwargs"])
        trigger._log = LineRecorder(records)  # LoggingMixin's cached logger
        triggers.append((item["name"], trigger))

    async def follow(name: str, trigger: Any) -> dict[str, Any]:
        outcome: dict[str, Any] = {"name": name, "started": time.time(), "event": None, "event_at": None}
        try:
            async for event in trigger.run():  # to its end, as the triggerer does
                if outcome["event"] is None:
                    outcome["event"], outcome["event_at"] = event.payload, time.time()
        except Exception as exc:  # noqa: BLE001 - any failure of a trigger is a result to report
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        outcome["ended"] = time.time()
        return outcome

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.create_task(follow(name, trigger)) for name, trigger in triggers]
        await asyncio.sleep(0)
        print("ready", file=ready_out, flush=True)
        return await asyncio.gather(*tasks)

    usage, start = resource.getrusage(resource.RUSAGE_SELF), time.time()
    outcomes = asyncio.run(main())
    end_usage, end = resource.getrusage(resource.RUSAGE_SELF), time.time()
    cpu = (end_usage.ru_utime - usage.ru_utime) + (end_usage.ru_stime - usage.ru_stime)
    Path(result_file).write_text(
        json.dumps(
            {
                "started": start,
                "ended": end,
                "cpu_s": cpu,
                "cpu_total_s": end_usage.ru_utime + end_usage.ru_stime,
                "outcomes": outcomes,
                "lines": records,
                "calls": counter.calls,
                "ingested": counter.ingested,
            },
            default=str,
        )
    )


class Triggerer:
    """The triggerer process, seen from outside: started, told it may go, sampled for children."""

    def __init__(
        self, name: str, triggers: list[dict[str, Any]], work: Path, extra_path: Path | None = None
    ) -> None:
        import psutil

        self.name = name
        spec, self.result_file = work / f"{name}-triggers.json", work / f"{name}-result.json"
        spec.write_text(json.dumps({"triggers": triggers}))
        path = [str(extra_path)] if extra_path else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT)])}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_triggerer", str(spec), str(self.result_file)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.process = psutil.Process(self.proc.pid)
        self.children: set[int] = set()
        self.max_threads = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.2):
            try:
                self.children.update(p.pid for p in self.process.children(recursive=True))
                self.max_threads = max(self.max_threads, self.process.num_threads())
            except psutil.NoSuchProcess:
                return

    def wait_ready(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not ready or ready[0].strip() != "ready":
            raise SystemExit(f"the {self.name} triggerer did not start its triggers within {timeout:.0f} s")

    def cpu_now(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def result(self) -> dict[str, Any]:
        code = self.proc.wait()
        self._stop.set()
        self._sampler.join()
        if code != 0:
            raise SystemExit(f"the {self.name} triggerer process failed (exit code {code})")
        result = json.loads(self.result_file.read_text())
        result.update(children_spawned=len(self.children), max_threads=self.max_threads)
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()


# -- setting up ------------------------------------------------------------------------------------
def set_up_ecs(emulator: Any, image: str, poll_interval: float | None) -> str:
    """Bucket, log group, cluster, a task definition tagged with the image, the two connections."""
    emulator.boto3_client("s3").create_bucket(Bucket=BUCKET)
    emulator.boto3_client("logs").create_log_group(logGroupName=LOG_GROUP)
    ecs = emulator.boto3_client("ecs")
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
    td_arn = ecs.register_task_definition(
        family="cmdexec-bench-tscale",
        containerDefinitions=[container],
        tags=[{"key": "digdag.docker.image", "value": image}],
    )
    extra: dict[str, Any] = {"cluster_name": CLUSTER, "region": common.REGION}
    if poll_interval is not None:
        extra["poll_interval"] = poll_interval
    os.environ.update(emulator.aws_env)
    os.environ["AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT"] = json.dumps({"conn_type": "cmdexec_ecs", "extra": extra})
    os.environ["AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT"] = json.dumps(
        {
            "conn_type": "cmdexec_storage",
            "extra": {
                "type": "s3",
                "bucket": BUCKET,
                "endpoint": emulator.endpoint_url,
                "path_style_access": True,
            },
        }
    )
    return td_arn["taskDefinition"]["taskDefinitionArn"]


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: where a plain container reaches this process."""
    import docker

    client = docker.from_env()
    try:
        config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    finally:
        client.close()
    # The default bridge names no gateway when dockerd chose it: then it is the subnet's first address.
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def requests(work: Path, prefix: str, count: int, lines: int, gate_url: str, dag_id: str) -> list[Any]:
    from airflow_cmdexec_provider.backends.base import CommandRequest, IoFile

    made = []
    for i in range(count):
        task = f"{prefix}{i:03d}"
        io_dir, project = work / task / "io", work / task / "project"
        io_dir.mkdir(parents=True)
        project.mkdir()
        (io_dir / "runner.sh").write_text(script(task, lines, gate_url))
        made.append(
            CommandRequest(
                task_label=f"bench.{task}",
                project_dir=project,
                workdir="",
                io_dir=io_dir,
                command=("/bin/bash", IoFile("runner.sh")),
                needs_outputs=False,
                labels={
                    "dag_id": dag_id,
                    "task_id": task,
                    "run_id": "tscale",
                    "try_number": "1",
                    "map_index": "-1",
                },
            )
        )
    return made


def ensure_peer_site(refresh: bool) -> Path:
    """aiobotocore and the botocore/boto3 it accepts, apart from the project's virtualenv (installed once)."""
    marker = PEER_SITE / ".complete"
    if marker.exists() and not refresh:
        return PEER_SITE
    print(f"installing {', '.join(PEER_PACKAGES)} for the peer into {PEER_SITE} ...", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--upgrade",
            "--target",
            str(PEER_SITE),
            *PEER_PACKAGES,
        ],
        check=True,
    )
    marker.write_text("")
    return PEER_SITE


# -- the phases ------------------------------------------------------------------------------------
def run_ours(
    args: argparse.Namespace, emulator: Any, gate: Gate, work: Path, dag_id: str, cleanups: list[Any]
) -> dict[str, Any]:
    from airflow_cmdexec_provider.backends.base import TaskSettings
    from airflow_cmdexec_provider.backends.docker import DockerBackend
    from airflow_cmdexec_provider.backends.ecs import EcsBackend, MemoryCache
    from airflow_cmdexec_provider.triggers.command import CommandTrigger

    key = gate.new()
    docker_settings = TaskSettings(task_label="bench.docker", docker={"image": args.image})
    ecs_settings = TaskSettings(task_label="bench.ecs", docker={"image": args.image})
    shared_cache = MemoryCache()  # the task definition found once (workers share it through a Variable)

    def ecs_backend() -> EcsBackend:
        backend = EcsBackend.from_settings(ecs_settings)
        backend.td_cache = shared_cache
        return backend

    docker_requests = requests(work, "d", args.tasks, args.seconds, gate.url(args.bridge, key), dag_id)
    ecs_requests = requests(work, "e", args.tasks, args.seconds, gate.url("127.0.0.1", key), dag_id)
    print(f"starting {args.tasks} Docker and {args.tasks} ECS commands ...", file=sys.stderr)
    followed: dict[str, list[Any]] = {"docker": [], "ecs": []}
    cleanups.extend(lambda kind=kind: discard_all(followed[kind]) for kind in followed)
    t0 = time.time()
    with ThreadPoolExecutor(2) as pool:
        list(
            pool.map(
                submit_all,
                (lambda: DockerBackend.from_settings(docker_settings), ecs_backend),
                (docker_settings, ecs_settings),
                (docker_requests, ecs_requests),
                followed.values(),
            )
        )
    submit_s = time.time() - t0
    print(f"started them in {submit_s:.0f} s", file=sys.stderr)
    triggers = [
        {
            "name": f.name,
            **serialized(CommandTrigger(executor=kind, handle=f.handle, settings=f.settings, deadline=None)),
        }
        for kind, items in followed.items()
        for f in items
    ]
    requests_before = len(emulator.ecs_requests)
    result = watch("ours", triggers, gate, key, work, args, emulator if args.throttle else None)
    events = {o["name"]: o["event"] for o in result["outcomes"] if o["event"] and "handle" in o["event"]}
    for f in (
        followed["docker"] + followed["ecs"]
    ):  # as the triggers left them (a container that ended is not stopped)
        f.handle = events.get(f.name, {}).get("handle", f.handle)
    ecs_http = Counter((r["operation"], r["result"]) for r in emulator.ecs_requests[requests_before:])
    result.update(submit_s=submit_s, ecs_http={f"{op} {res}": n for (op, res), n in ecs_http.items()})
    return result


def submit_all(make_backend: Any, settings: Any, todo: list[Any], started: list[Any]) -> None:
    """Start every command with the backend's ``submit``, a few threads at once (as several workers
    would); each one started is in ``started`` at once, so that a failure leaves nothing unknown."""
    from tests.scale_helpers import Followed

    def start(request: Any) -> None:
        backend = make_backend()
        handle = backend.submit(request, lambda line: None)
        started.append(Followed(request.labels["task_id"], backend, handle, settings.to_json()))

    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        list(pool.map(start, todo))


def serialized(trigger: Any) -> dict[str, Any]:
    classpath, kwargs = trigger.serialize()
    return {"classpath": classpath, "kwargs": json.loads(json.dumps(kwargs))}  # through JSON, as stored


def discard_all(followed: list[Any]) -> None:
    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        list(pool.map(lambda f: f.backend.discard(f.handle, lambda line: None), followed))


def run_peer(args: argparse.Namespace, emulator: Any, gate: Gate, work: Path, td_arn: str) -> dict[str, Any]:
    from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator

    site = ensure_peer_site(args.refresh_peer_env)
    key = gate.new()
    ecs = emulator.boto3_client("ecs")
    # What a user who wants the container's log in the task log writes; everything else its default.
    operator = EcsRunTaskOperator(
        task_id="peer",
        task_definition=td_arn,
        cluster=CLUSTER,
        overrides={},
        awslogs_group=LOG_GROUP,
        awslogs_stream_prefix=STREAM_PREFIX,
        container_name=CONTAINER,
        region_name=common.REGION,
        aws_conn_id=None,
        deferrable=True,
    )

    def start(i: int) -> str:
        task = f"p{i:03d}"
        command = ["/bin/bash", "-c", script(task, args.seconds, gate.url("127.0.0.1", key))]
        response = ecs.run_task(
            cluster=CLUSTER,
            taskDefinition=td_arn,
            startedBy=operator.owner,
            overrides={"containerOverrides": [{"name": CONTAINER, "command": command}]},
        )
        if response.get("failures") or not response.get("tasks"):
            raise SystemExit(f"RunTask of the peer's task {task} failed: {response.get('failures')}")
        return response["tasks"][0]["taskArn"]

    print(f"starting {args.tasks} ECS tasks for the peer ...", file=sys.stderr)
    with ThreadPoolExecutor(SUBMIT_THREADS) as pool:
        arns = list(pool.map(start, range(args.tasks)))
    triggers = []
    for i, arn in enumerate(arns):
        operator.arn = arn  # what the operator knows when it defers: its stream name comes from it
        # The kwargs EcsRunTaskOperator.execute gives TaskDoneTrigger when it defers.
        triggers.append(
            {
                "name": f"p{i:03d}",
                "classpath": "airflow.providers.amazon.aws.triggers.ecs.TaskDoneTrigger",
                "kwargs": {
                    "cluster": CLUSTER,
                    "task_arn": arn,
                    "waiter_delay": operator.waiter_delay,
                    "waiter_max_attempts": operator.waiter_max_attempts,
                    "aws_conn_id": operator.aws_conn_id,
                    "region_name": operator.region_name,
                    "log_region_name": operator.resolve_awslogs_region(),
                    "log_group": operator.awslogs_group,
                    "log_stream": operator._get_logs_stream_name(),
                    "verify": operator.verify,
                    "botocore_config": operator.botocore_config,
                },
            }
        )
    result = watch("peer", triggers, gate, key, work, args, None, site)
    exit_codes: Counter[Any] = Counter()
    for i in range(0, len(arns), 100):
        for task in ecs.describe_tasks(cluster=CLUSTER, tasks=arns[i : i + 100])["tasks"]:
            exit_codes[task["containers"][0].get("exitCode")] += 1
    result.update(exit_codes={str(k): v for k, v in exit_codes.items()}, waiter_delay=operator.waiter_delay)
    return result


def watch(
    name: str,
    triggers: list[dict[str, Any]],
    gate: Gate,
    key: str,
    work: Path,
    args: argparse.Namespace,
    throttle_on: Any,
    extra_path: Path | None = None,
) -> dict[str, Any]:
    """Run the triggerer process over ``triggers``; open the gate once they all run; its results."""
    triggerer = Triggerer(name, triggers, work, extra_path)
    try:
        triggerer.wait_ready(timeout=300)
        time.sleep(args.settle)  # streams opened, first rounds made
        cpu_at_gate, gate_at, emulator_cpu = triggerer.cpu_now(), time.time(), own_cpu()
        gate.open(key)
        if throttle_on is not None:
            time.sleep(5)  # the commands print: a throttled round delays lines
            throttle_on.throttle_next(args.throttle, "DescribeTasks")
        print(f"{name}: {len(triggers)} triggers running, the commands print ...", file=sys.stderr)
        result = triggerer.result()
        # This process serves the emulator's API and pumps its containers' logs into CloudWatch Logs:
        # when it needs a whole core, every API answer waits (see README, method).
        emulator_cores = (own_cpu() - emulator_cpu) / (time.time() - gate_at)
    finally:
        triggerer.kill()
    result.update(gate_at=gate_at, cpu_at_gate=cpu_at_gate, emulator_cores=emulator_cores)
    return result


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- checking and reporting ------------------------------------------------------------------------
def lines_by_task(result: dict[str, Any]) -> dict[str, list[tuple[float, int, float]]]:
    """task -> its command's lines in the order they were logged: (logged at, number, printed at)."""
    found: dict[str, list[tuple[float, int, float]]] = {}
    for logged, message in result["lines"]:
        match = LINE.search(message)
        if match:
            found.setdefault(match.group(1), []).append((logged, int(match.group(2)), float(match.group(3))))
    return found


def problems(result: dict[str, Any], lines: int, success: str) -> list[str]:
    """Every trigger that did not end with exit 0, and every task whose lines are not 1..lines once in
    order."""
    found = lines_by_task(result)
    wrong = []
    for outcome in result["outcomes"]:
        event = outcome["event"] or {}
        ok = event.get("status") == success and event.get("exit_code", 0) == 0 and "error" not in outcome
        if not ok:
            wrong.append(f"{outcome['name']}: {outcome.get('error') or event}")
        numbers = [number for _, number, _ in found.get(outcome["name"], [])]
        if numbers != list(range(1, lines + 1)):
            wrong.append(f"{outcome['name']}: lines {numbers[:8]}... ({len(numbers)} of {lines})")
    return wrong


def latency(result: dict[str, Any], prefix: str, part: str = "whole") -> dict[str, float]:
    """Seconds from printed to logged (``whole``); for lines read from CloudWatch Logs also from
    printed to ingested by the log service (``service``) and from ingested to logged (``watcher``)."""
    ingested = result.get("ingested") or {}

    def value(name: str, number: int, logged: float, printed: float) -> float | None:
        if part == "whole":
            return logged - printed
        at = ingested.get(f"{name}:{number}")
        if at is None:
            return None
        return at - printed if part == "service" else logged - at

    found = (
        value(name, number, logged, printed)
        for name, items in lines_by_task(result).items()
        if name.startswith(prefix)
        for logged, number, printed in items
    )
    values = [v for v in found if v is not None]
    if not values:
        return {"n": 0, "median": float("nan"), "p90": float("nan"), "max": float("nan")}
    return {
        "n": len(values),
        "median": common.median(values),
        "p90": common.percentile(values, 90),
        "max": max(values) if values else float("nan"),
    }


def task_minutes(result: dict[str, Any], prefix: str = "") -> float:
    return sum(o["ended"] - o["started"] for o in result["outcomes"] if o["name"].startswith(prefix)) / 60


def calls_per_task_minute(result: dict[str, Any], services: tuple[str, ...], prefix: str) -> dict[str, float]:
    minutes = task_minutes(result, prefix)
    counts = Counter(f"{service} {op}" for _, service, op, _, _ in result["calls"] if service in services)
    return {name: count / minutes for name, count in sorted(counts.items())}


def call_seconds(result: dict[str, Any], service: str, operation: str) -> dict[str, float]:
    """How long the API took to answer one call (median, max): under load the emulator is slow."""
    values = [seconds for _, s, op, seconds, _ in result["calls"] if s == service and op == operation]
    return {"n": len(values), "median": common.median(values), "max": max(values) if values else float("nan")}


def round_gaps(result: dict[str, Any]) -> dict[str, Any]:
    """How the DescribeTasks rounds went: calls, failed calls, the longest gap between two starts."""
    starts = sorted(
        (t, ok) for t, service, op, _, ok in result["calls"] if service == "ecs" and op == "DescribeTasks"
    )
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(starts)]
    warnings = sum(THROTTLED_WARNING in message for _, message in result["lines"])
    return {
        "calls": len(starts),
        "failed_calls": sum(not ok for _, ok in starts),
        "median_gap_s": common.median(gaps),
        "longest_gap_s": max(gaps) if gaps else float("nan"),
        "warnings_logged": warnings,
    }


def report(
    args: argparse.Namespace, ours: dict[str, Any], peer: dict[str, Any] | None, load: list[float]
) -> None:
    ours_minutes = {"docker": task_minutes(ours, "d"), "ecs": task_minutes(ours, "e")}
    watch_s = ours["ended"] - ours["started"]
    printing_s = ours["ended"] - ours["gate_at"]
    cpu_printing = ours["cpu_total_s"] - ours["cpu_at_gate"]
    print(
        f"\nTriggerer scale: {args.tasks} Docker + {args.tasks} ECS deferred commands, "
        f"{args.seconds} lines each "
        f"(load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; started in "
        f"{ours['submit_s']:.0f} s)"
    )
    common.print_table(
        ["figure", "value", "target", "met"],
        [
            [
                "triggerer CPU over the watch (cores)",
                ours["cpu_s"] / watch_s,
                f"< {TARGET_CORES}",
                "yes" if ours["cpu_s"] / watch_s < TARGET_CORES else "NO",
            ],
            [
                "  while the commands print (cores)",
                cpu_printing / printing_s,
                f"< {TARGET_CORES}",
                "yes" if cpu_printing / printing_s < TARGET_CORES else "NO",
            ],
            ["  CPU s / watch s", f"{ours['cpu_s']:.1f} / {watch_s:.0f}", "", ""],
            *[
                [
                    f"line latency {kind}: median / p90 / max (s)",
                    f"{lat['median']:.3f} / {lat['p90']:.3f} / {lat['max']:.2f}",
                    f"p90 < {TARGET_P90_S}",
                    "yes" if lat["p90"] < TARGET_P90_S else "NO",
                ]
                for kind, lat in (("Docker", ours["latency"]["docker"]), ("ECS", ours["latency"]["ecs"]))
            ],
            *[
                [
                    f"  ECS {what} (s)",
                    f"{lat['median']:.3f} / {lat['p90']:.3f} / {lat['max']:.2f}",
                    f"p90 < {TARGET_P90_S}" if key == "ecs_watcher" else "",
                    ("yes" if lat["p90"] < TARGET_P90_S else "NO") if key == "ecs_watcher" else "",
                ]
                for key, what in (
                    ("ecs_service", "printed -> ingested by the log service (emulator)"),
                    ("ecs_watcher", "ingested -> task log (ours)"),
                )
                for lat in (ours["latency"][key],)
            ],
            [
                "processes spawned by the triggerer",
                ours["children_spawned"],
                "0",
                "yes" if ours["children_spawned"] == 0 else "NO",
            ],
            ["threads of the triggerer (max)", ours["max_threads"], "", ""],
            ["every command exit 0, every line once and in order", "yes", "yes", "yes"],
        ],
        title="ours",
    )
    docker_rates = calls_per_task_minute(ours, ("docker",), "d")
    common.print_table(
        ["Docker Engine API request", "per task-minute", "count"],
        [[op, rate, round(rate * ours_minutes["docker"])] for op, rate in docker_rates.items()]
        + [["total", sum(docker_rates.values()), round(sum(docker_rates.values()) * ours_minutes["docker"])]],
        title=f"Docker: {ours_minutes['docker']:.1f} task-minutes",
    )
    ours_rates = calls_per_task_minute(ours, ("ecs", "logs"), "e")
    peer_rates = calls_per_task_minute(peer, ("ecs", "logs"), "p") if peer else {}
    operations = sorted(set(ours_rates) | set(peer_rates))
    rows = [
        [
            op,
            ours_rates.get(op, 0.0),
            peer_rates.get(op, 0.0) if peer else "-",
            _ratio(peer_rates.get(op, 0.0), ours_rates.get(op, 0.0)) if peer else "-",
        ]
        for op in operations
    ]
    ours_total, peer_total = sum(ours_rates.values()), sum(peer_rates.values())
    rows.append(
        [
            "total ECS + Logs",
            ours_total,
            peer_total if peer else "-",
            _ratio(peer_total, ours_total) if peer else "-",
        ]
    )
    if peer:
        peer_watch = peer["ended"] - peer["started"]
        rows.append(
            [
                "triggerer CPU s per task-minute",
                ours["cpu_s"] / (ours_minutes["docker"] + ours_minutes["ecs"]),
                peer["cpu_s"] / task_minutes(peer),
                _ratio(peer["cpu_s"] / task_minutes(peer), ours["cpu_s"] / sum(ours_minutes.values())),
            ]
        )
        rows.append(
            ["triggerer CPU (cores over the watch)", ours["cpu_s"] / watch_s, peer["cpu_s"] / peer_watch, "-"]
        )
        rows.append(
            [
                "line latency median / p90 (s)",
                f"{ours['latency']['ecs']['median']:.2f} / {ours['latency']['ecs']['p90']:.2f}",
                f"{peer['latency']['median']:.2f} / {peer['latency']['p90']:.2f}",
                "-",
            ]
        )
        ours_part, peer_part = ours["latency"]["ecs_watcher"], peer["latency_parts"]["watcher"]
        rows.append(
            [
                "  of which ingested -> task log",
                f"{ours_part['median']:.2f} / {ours_part['p90']:.2f}",
                f"{peer_part['median']:.2f} / {peer_part['p90']:.2f}",
                "-",
            ]
        )
    common.print_table(
        ["ECS API calls per task-minute", "ours", "EcsRunTaskOperator", "peer / ours"],
        rows,
        title=f"ECS: ours {ours_minutes['ecs']:.1f} task-minutes (with {args.tasks} Docker tasks in the "
        f"same loop)"
        + (
            f", peer {task_minutes(peer):.1f} task-minutes (TaskDoneTrigger, "
            f"waiter_delay {peer['waiter_delay']} s, logs on)"
            if peer
            else ""
        ),
    )
    if peer:
        print(
            f"peer: {peer['lines_complete']} of {args.tasks} tasks with every line once and in order; "
            "exit codes "
            f"{peer['exit_codes']}; {peer['children_spawned']} processes spawned"
        )
    rounds = ours["rounds"]
    print(
        f"\nECS rounds (ours): {rounds['calls']} DescribeTasks calls ({rounds['failed_calls']} failed), "
        f"{rounds['median_gap_s']:.1f} s between two (median), {rounds['longest_gap_s']:.1f} s at most; "
        f"{rounds['warnings_logged']} throttling warnings logged; "
        f"ECS requests the emulator saw: {ours['ecs_http']}"
    )
    common.print_table(
        ["API answer time (s)", "calls", "median", "max"],
        [
            [f"{who} {service} {op}", t["n"], t["median"], t["max"]]
            for who, result, service, op in (
                ("ours", ours, "ecs", "DescribeTasks"),
                ("ours", ours, "logs", "FilterLogEvents"),
                ("peer", peer, "ecs", "DescribeTasks"),
                ("peer", peer, "logs", "GetLogEvents"),
            )
            if result
            for t in [call_seconds(result, service, op)]
        ],
        title=f"the emulator's process used {ours['emulator_cores']:.2f} cores while our commands printed"
        + (f", {peer['emulator_cores']:.2f} while the peer's did" if peer else ""),
    )


def _ratio(a: float, b: float) -> Any:
    return f"{a / b:.1f}x" if b else "-"


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What goes to the JSON file: everything but the lines and the events."""
    return {k: v for k, v in result.items() if k not in ("lines", "outcomes")}


# -- main ------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200, help="deferred commands per backend (default 200)")
    parser.add_argument("--seconds", type=int, default=60, help="lines each command prints, one a second")
    parser.add_argument(
        "--throttle",
        type=int,
        default=0,
        metavar="N",
        help="throttle the next N DescribeTasks requests once our commands print",
    )
    parser.add_argument("--skip-peer", action="store_true", help="do not run the TaskDoneTrigger peer")
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="the ECS connection's poll_interval (default: the connection's default)",
    )
    parser.add_argument(
        "--settle", type=float, default=15, help="seconds between the triggers' start and the gate"
    )
    parser.add_argument("--refresh-peer-env", action="store_true", help="reinstall the peer's aiobotocore")
    parser.add_argument("--image", default=os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm"))
    args = parser.parse_args()

    common.airflow_env()
    # Library INFO logs (botocore's "Found credentials", ...) neither here nor in the triggerers: rendering
    # them would cost the peer's triggerer more than ours. The triggers' own lines are recorded apart.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    import airflow.sdk  # noqa: F401

    from tests.ecs_emulator import EcsEmulator

    load = list(os.getloadavg())
    args.bridge = bridge_gateway()
    dag_id = f"tscale{os.getpid()}{uuid.uuid4().hex[:6]}"
    cleanups: list[Any] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmdexec-bench-tscale-")))
        emulator = stack.enter_context(EcsEmulator(region=common.REGION))
        gate = Gate(["127.0.0.1", args.bridge])
        td_arn = set_up_ecs(emulator, args.image, args.poll_interval)
        try:
            ours = run_ours(args, emulator, gate, work, dag_id, cleanups)
            peer = None if args.skip_peer else run_peer(args, emulator, gate, work, td_arn)
        finally:
            gate.close()  # a command still at the gate goes on and ends
            for cleanup in cleanups:
                cleanup()
            left = leftovers(emulator, dag_id)
        evaluate(ours, peer, args)
        report(args, ours, peer, load)
        path = common.write_json(
            "triggerer_scale",
            {
                "tasks": args.tasks,
                "seconds": args.seconds,
                "throttle": args.throttle,
                "loadavg_at_start": load,
                "ours": summary(ours),
                "peer": summary(peer) if peer else None,
            },
        )
        print(f"\nwritten {path}", file=sys.stderr)
    if left:
        raise SystemExit(f"left behind: {left}")
    if ours["problems"]:
        raise SystemExit(f"{len(ours['problems'])} problems: " + "; ".join(ours["problems"][:10]))
    return 0


def evaluate(ours: dict[str, Any], peer: dict[str, Any] | None, args: argparse.Namespace) -> None:
    ours["latency"] = {
        "docker": latency(ours, "d"),
        "ecs": latency(ours, "e"),
        "ecs_service": latency(ours, "e", "service"),
        "ecs_watcher": latency(ours, "e", "watcher"),
    }
    ours["problems"] = problems(ours, args.seconds, "finished")
    ours["rounds"] = round_gaps(ours)
    ours["rates"] = {
        "docker": calls_per_task_minute(ours, ("docker",), "d"),
        "ecs": calls_per_task_minute(ours, ("ecs", "logs"), "e"),
    }
    if peer:
        peer["latency"] = latency(peer, "p")
        peer["latency_parts"] = {
            "service": latency(peer, "p", "service"),
            "watcher": latency(peer, "p", "watcher"),
        }
        peer["lines_complete"] = args.tasks - len(
            {p.split(":")[0] for p in problems(peer, args.seconds, "success")}
        )
        peer["rates"] = calls_per_task_minute(peer, ("ecs", "logs"), "p")


def leftovers(emulator: Any, dag_id: str) -> list[str]:
    """What this run left (its Docker commands' containers, the emulator's, S3 objects); the containers of
    its Docker commands are removed (the emulator removes its own when it stops)."""
    import docker

    from airflow_cmdexec_provider.backends.docker import LABEL_PREFIX

    client = docker.from_env()
    try:
        containers = client.containers.list(all=True, filters={"label": f"{LABEL_PREFIX}dag_id={dag_id}"})
        for container in containers:  # only this run's: the label names its unique dag id
            container.remove(force=True)
    finally:
        client.close()
    try:
        emulator.wait_all_stopped(timeout=120)
    except TimeoutError as exc:  # the emulator kills them when it stops; still a failed run
        return [str(exc)]
    objects = [
        o["Key"] for o in emulator.boto3_client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    ]
    return [c.name for c in containers] + emulator.containers(include_stopped=True) + objects


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_triggerer":
        triggerer_main(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
