#!/usr/bin/env python
"""Shared helpers of the ECS benchmarks (bench_ecs_*.py): servers in a child process, stats, output.

The AWS endpoint of a benchmark runs in a CHILD process (``ServerProcess``), never in the measured
process: moto keeps S3 objects in memory and serves requests on threads, so in-process it would
inflate the worker's RSS and steal its GIL. The child is this file run as a script:

    python benchmarks/_ecs_common.py serve --kind moto|emulator [--aws-list-task-definitions]

It prints one JSON line (``{"endpoint_url": ...}``) when ready and shuts down (removing every
container the emulator started) when its standard input closes, so it cannot outlive the benchmark.

``--aws-list-task-definitions`` makes moto's ListTaskDefinitions behave as AWS documents it (moto
ignores ``sort`` and ``maxResults`` and never pages): ordered by family name then revision, ``ASC``
by default or ``DESC``, at most 100 ARNs per page (``maxResults`` 1..100), and a ``nextToken``.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
PYTHON = sys.executable
REGION = "us-east-1"
DUMMY_KEY = "testing"

if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


# -- environment -----------------------------------------------------------------------------------
def airflow_env() -> None:
    """A throw-away AIRFLOW_HOME (removed at exit): importing Airflow must not touch a real one."""
    if "AIRFLOW_HOME" not in os.environ:
        home = tempfile.mkdtemp(prefix="cmdexec-bench-airflow-home-")
        os.environ["AIRFLOW_HOME"] = home
        atexit.register(shutil.rmtree, home, True)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")


def aws_env(endpoint_url: str) -> dict[str, str]:
    """What points any AWS SDK at the benchmark's endpoint (dummy credentials)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def boto3_client(service: str, endpoint_url: str) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION
    )
    return session.client(
        service,
        endpoint_url=endpoint_url,
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
    )


# -- memory ----------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) since start or the last ``reset_peak_rss``."""
    match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- statistics and output -------------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def print_table(headers: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if title:
        print(f"\n{title}")
    line = "  ".join("-" * w for w in widths)
    print(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells[0], widths, strict=True))
        )
    )
    print(line)
    for row in cells[1:]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    meta = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.write_text(json.dumps(_no_nan({"meta": meta, **data}), indent=2, default=str) + "\n")
    return path


def _no_nan(value: Any) -> Any:
    """NaN (a phase the baseline has not got) as null: strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value


# -- the endpoint in a child process ---------------------------------------------------------------
class ServerProcess:
    """moto (``kind="moto"``) or the ECS emulator (``kind="emulator"``) in a child process."""

    def __init__(
        self, kind: str = "moto", aws_list_task_definitions: bool = False, startup_timeout: float = 90
    ) -> None:
        self.kind = kind
        self.aws_list_task_definitions = aws_list_task_definitions
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.endpoint_url = ""
        self.info: dict[str, Any] = {}

    def __enter__(self) -> ServerProcess:
        cmd = [PYTHON, str(Path(__file__).resolve()), "serve", "--kind", self.kind]
        if self.aws_list_task_definitions:
            cmd.append("--aws-list-task-definitions")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        atexit.register(self.close)
        ready: dict[str, Any] = {}

        def read_first_line() -> None:
            assert self.proc is not None
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if line:
                ready.update(json.loads(line))

        reader = threading.Thread(target=read_first_line, daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        if "endpoint_url" not in ready:
            self.close()
            raise RuntimeError(f"the {self.kind} server did not start within {self.startup_timeout} s")
        self.info = ready
        self.endpoint_url = ready["endpoint_url"]
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def rss_mb(self) -> float:
        """The server's current RSS (it holds the S3 objects: not the worker's memory)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return float("nan")
        match = re.search(r"VmRSS:\s+(\d+)\s+kB", text)
        return int(match.group(1)) / 1024 if match else float("nan")

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()  # the child's signal to stop (and remove its containers)
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            atexit.unregister(self.close)

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _patch_list_task_definitions() -> None:
    """moto's ListTaskDefinitions, made to sort and page as AWS documents it (see the module doc)."""
    from moto.core.responses import ActionResult
    from moto.ecs.responses import EC2ContainerServiceResponse

    def list_task_definitions(self: Any) -> Any:
        family = self._get_param("familyPrefix")
        status = self._get_param("status") or "ACTIVE"
        descending = (self._get_param("sort") or "ASC").upper() == "DESC"
        max_results = max(1, min(100, int(self._get_param("maxResults") or 100)))
        token = self._get_param("nextToken")
        start = int(base64.b64decode(token).decode()) if token else 0
        tds = [
            td
            for revisions in self.ecs_backend.task_definitions.values()
            for td in revisions.values()
            if td.status == status and (family is None or td.family == family)
        ]
        tds.sort(key=lambda td: (td.family, int(td.revision)), reverse=descending)
        result: dict[str, Any] = {"taskDefinitionArns": [td.arn for td in tds[start : start + max_results]]}
        if start + max_results < len(tds):
            result["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
        return ActionResult(result)

    EC2ContainerServiceResponse.list_task_definitions = list_task_definitions  # type: ignore[method-assign]


def _serve(kind: str, aws_list_task_definitions: bool) -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on stderr
    if aws_list_task_definitions:
        _patch_list_task_definitions()
    stop_event = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop_event.set()), daemon=True).start()
    if kind == "emulator":
        from tests.ecs_emulator import EcsEmulator

        with EcsEmulator(region=REGION) as emulator:
            print(json.dumps({"endpoint_url": emulator.endpoint_url, "pid": os.getpid()}), flush=True)
            stop_event.wait()
        return
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(json.dumps({"endpoint_url": f"http://{host}:{port}", "pid": os.getpid()}), flush=True)
    try:
        stop_event.wait()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run moto or the ECS emulator until stdin closes")
    serve.add_argument("--kind", choices=["moto", "emulator"], default="moto")
    serve.add_argument(
        "--aws-list-task-definitions",
        action="store_true",
        help="make ListTaskDefinitions sort and page as AWS does",
    )
    args = parser.parse_args()
    if args.command == "serve":
        _serve(args.kind, args.aws_list_task_definitions)


if __name__ == "__main__":
    main()
