#!/usr/bin/env python
"""Benchmark: finding the ECS task definition tagged ``digdag.docker.image=<image>`` among 1,000.

What is measured: the ECS API calls, and the wall time, that one task spends finding its task
definition by its ``digdag.docker.image`` tag, for the first task and for the following ones, by

- ours: ``EcsBackend(...).task_definition()``. Task 1 gets a fresh backend and an empty cache; tasks
  2..N each get a NEW ``EcsBackend`` (every Airflow task is a new process) sharing one cache object.
  In production that cache is ``hooks.command_executor.VariableTaskDefinitionCache``, an Airflow
  Variable holding a JSON dict; here ``JsonVariableStandIn`` plays it: the same JSON round trip on
  every get and set, in memory, with no metadata database (its reads/writes are counted and
  reported, they are not ECS calls). Calls are counted by the backend itself (``backend.api_calls``).
- Digdag's scan, re-implemented from Digdag's ``DefaultEcsClient.getTaskDefinitionByTags``:
  ListTaskDefinitions with no filter and no sort (AWS: ASC, 100 per page), following nextToken;
  ListTagsForResource for each ARN until the tags match; then DescribeTaskDefinition. Digdag has
  no cache, so every task repeats the scan. Calls are counted with the same botocore hook.

The registry: ``--count`` (1,000) task definitions in ``--families`` (200) families of equal
revision counts, registered family by family with zero-padded names, so AWS's listing order
(family name, then revision) is the registration order. Two images are tagged:

- ``IMAGE_FIRST`` on the first definition registered (the oldest): the worst case for our
  newest-first scan and the best case for Digdag's oldest-first scan;
- ``IMAGE_LAST`` on the last one registered (the newest): the opposite.

Every 10th other definition carries a tag with another image, so tags are really compared.

Fairness: the endpoint is moto in server mode in a child process, with ListTaskDefinitions made to
sort and page as AWS documents it (moto itself ignores ``sort`` and returns everything in one page,
which would hide the cost of both scans; see ``_ecs_common``). Both contenders use boto3 clients
with the same retry configuration, created before the clock starts (creating a client makes no
API call); moto closes every connection, so each call costs a new loopback TCP connection for both.

Usage: .venv/bin/python benchmarks/bench_ecs_td_lookup.py [--count 1000] [--families 200] [--tasks 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _ecs_common as common

IMAGE_TAG = "digdag.docker.image"
IMAGE_FIRST = "bench.example.com/oldest:1.0"
IMAGE_LAST = "bench.example.com/newest:1.0"
PLACEMENTS = {"first": IMAGE_FIRST, "last": IMAGE_LAST}


class JsonVariableStandIn:
    """Stands in for ``VariableTaskDefinitionCache``: a JSON dict behind get/set, as in the Variable."""

    def __init__(self) -> None:
        self.text = "{}"
        self.reads = 0
        self.writes = 0

    def get(self, key: str) -> str | None:
        self.reads += 1
        return json.loads(self.text).get(key)

    def set(self, key: str, value: str) -> None:
        self.reads += 1  # the real cache reads the Variable before writing it back
        self.writes += 1
        data = json.loads(self.text)
        data[key] = value
        self.text = json.dumps(data)


def register_task_definitions(endpoint_url: str, count: int, families: int) -> dict[str, str]:
    """Register the registry; return image -> ARN of the tagged definition."""
    ecs = common.boto3_client("ecs", endpoint_url)
    revisions = max(1, count // families)
    tagged: dict[str, str] = {}
    n = 0
    for f in range(families):
        for _ in range(revisions):
            if n >= count:
                break
            tags = []
            if n == 0:
                tags = [{"key": IMAGE_TAG, "value": IMAGE_FIRST}]
            elif n == count - 1:
                tags = [{"key": IMAGE_TAG, "value": IMAGE_LAST}]
            elif n % 10 == 0:
                tags = [{"key": IMAGE_TAG, "value": f"bench.example.com/other-{n}:1.0"}]
            tags.append({"key": "team", "value": f"team-{f % 7}"})
            container = {
                "name": "main",
                "image": "cmdexec-test:bookworm",
                "memory": 256,
                "essential": True,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/bench/tasks",
                        "awslogs-region": common.REGION,
                        "awslogs-stream-prefix": "bench",
                    },
                },
            }
            arn = ecs.register_task_definition(
                family=f"bench-family-{f:04d}", containerDefinitions=[container], tags=tags
            )["taskDefinition"]["taskDefinitionArn"]
            for t in tags:
                if t["value"] in (IMAGE_FIRST, IMAGE_LAST):
                    tagged[t["value"]] = arn
            n += 1
    if n != count:
        raise SystemExit(
            f"registered {n} task definitions, not {count}: make --count a multiple of --families"
        )
    ecs.close()
    return tagged


# -- ours ------------------------------------------------------------------------------------------
def ours_lookup(endpoint_url: str, image: str, cache: JsonVariableStandIn, task_no: int) -> dict[str, Any]:
    from airflow_cmdexec_provider.backends.ecs import EcsBackend
    from airflow_cmdexec_provider.config import EcsConfig, StorageConfig

    config = EcsConfig(
        conn_id="bench_ecs",
        cluster_name="bench",
        region=common.REGION,
        access_key_id=common.DUMMY_KEY,
        secret_access_key=common.DUMMY_KEY,
        endpoint_url=endpoint_url,
        image=image,
        task_label=f"bench.task{task_no}",
    )
    storage = StorageConfig(conn_id="bench_storage", type="s3", bucket="bench-unused")
    backend = EcsBackend(config, storage, td_cache=cache)
    backend.ecs  # noqa: B018  create the clients before the clock starts (no API call)
    t0 = time.perf_counter()
    td = backend.task_definition()
    wall = time.perf_counter() - t0
    backend.ecs.close()
    backend.logs.close()
    return {
        "arn": td["taskDefinitionArn"],
        "calls": dict(backend.api_calls),
        "total_calls": sum(backend.api_calls.values()),
        "seconds": wall,
    }


# -- Digdag's scan ---------------------------------------------------------------------------------
def digdag_lookup(endpoint_url: str, image: str) -> dict[str, Any]:
    """DefaultEcsClient.getTaskDefinitionByTags([digdag.docker.image=image]), call for call."""
    import boto3
    from botocore.config import Config

    calls: dict[str, int] = {}

    def count(model: Any, **_: Any) -> None:
        calls[model.name] = calls.get(model.name, 0) + 1

    session = boto3.session.Session(
        aws_access_key_id=common.DUMMY_KEY, aws_secret_access_key=common.DUMMY_KEY, region_name=common.REGION
    )
    client = session.client(
        "ecs", endpoint_url=endpoint_url, config=Config(retries={"mode": "standard", "total_max_attempts": 4})
    )
    client.meta.events.register("before-call.*.*", count)
    expected = [{"key": IMAGE_TAG, "value": image}]
    t0 = time.perf_counter()
    found = None
    next_token = None
    while found is None:
        request = {"nextToken": next_token} if next_token else {}
        result = client.list_task_definitions(**request)
        for arn in result.get("taskDefinitionArns", []):
            tag_map = {
                t["key"]: t["value"] for t in client.list_tags_for_resource(resourceArn=arn).get("tags", [])
            }
            if all(tag_map.get(t["key"]) == t["value"] for t in expected):
                found = client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
                break
        next_token = result.get("nextToken")
        if found is None and next_token is None:
            raise RuntimeError(f"Digdag's scan found no task definition tagged {image}")
    wall = time.perf_counter() - t0
    client.close()
    return {
        "arn": found["taskDefinitionArn"],
        "calls": calls,
        "total_calls": sum(calls.values()),
        "seconds": wall,
    }


def run_placement(endpoint_url: str, placement: str, expected_arn: str, tasks: int) -> dict[str, Any]:
    image = PLACEMENTS[placement]
    cache = JsonVariableStandIn()
    ours: list[dict[str, Any]] = []
    digdag: list[dict[str, Any]] = []
    for task_no in range(1, tasks + 1):
        # alternate which contender goes first in each task
        order = [("ours", ours), ("digdag", digdag)] if task_no % 2 else [("digdag", digdag), ("ours", ours)]
        for name, results in order:
            r = (
                ours_lookup(endpoint_url, image, cache, task_no)
                if name == "ours"
                else digdag_lookup(endpoint_url, image)
            )
            if r["arn"] != expected_arn:
                raise RuntimeError(f"{name} found {r['arn']}, expected {expected_arn}")
            results.append(r)
    return {
        "image": image,
        "arn": expected_arn,
        "ours": ours,
        "digdag": digdag,
        "cache_reads": cache.reads,
        "cache_writes": cache.writes,
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    first, rest = results[0], results[1:]
    return {
        "first_calls": first["total_calls"],
        "first_calls_by_op": first["calls"],
        "first_ms": first["seconds"] * 1e3,
        "following_calls_median": common.median([r["total_calls"] for r in rest]),
        "following_calls_by_op": rest[0]["calls"] if rest else {},
        "following_ms_median": common.median([r["seconds"] * 1e3 for r in rest]),
        "total_calls": sum(r["total_calls"] for r in results),
        "total_seconds": sum(r["seconds"] for r in results),
    }


def _ops(calls: dict[str, int]) -> str:
    short = {
        "ListTaskDefinitions": "List",
        "ListTagsForResource": "Tags",
        "DescribeTaskDefinition": "Describe",
    }
    return " ".join(f"{short.get(k, k)}={v}" for k, v in sorted(calls.items()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000, help="task definitions registered (default 1000)")
    parser.add_argument(
        "--families", type=int, default=200, help="families they are spread over (default 200)"
    )
    parser.add_argument("--tasks", type=int, default=10, help="tasks looked up per placement (default 10)")
    parser.add_argument(
        "--placements",
        default="first,last",
        help="where the tagged definition is: first (oldest), last (newest), or both (default)",
    )
    args = parser.parse_args()
    if args.tasks < 2:
        parser.error("--tasks must be at least 2 (a first and a following task)")
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    if any(p not in PLACEMENTS for p in placements):
        parser.error("--placements takes first, last or first,last")

    common.airflow_env()
    import airflow_cmdexec_provider.backends.ecs  # noqa: F401  (import Airflow before any clock runs)

    with common.ServerProcess("moto", aws_list_task_definitions=True) as server:
        t0 = time.perf_counter()
        tagged = register_task_definitions(server.endpoint_url, args.count, args.families)
        print(
            f"Registered {args.count} task definitions ({args.families} families) in "
            f"{time.perf_counter() - t0:.1f} s on {server.endpoint_url} (moto, child process)"
        )
        results = {
            p: run_placement(server.endpoint_url, p, tagged[PLACEMENTS[p]], args.tasks) for p in placements
        }

    rows = []
    summary: dict[str, Any] = {}
    for p in placements:
        s_ours, s_dd = summarise(results[p]["ours"]), summarise(results[p]["digdag"])
        summary[p] = {
            "ours": s_ours,
            "digdag": s_dd,
            "ratios_digdag_over_ours": {
                "first_calls": common.ratio(s_dd["first_calls"], s_ours["first_calls"]),
                "following_calls": common.ratio(
                    s_dd["following_calls_median"], s_ours["following_calls_median"]
                ),
                "total_calls": common.ratio(s_dd["total_calls"], s_ours["total_calls"]),
                "following_ms": common.ratio(s_dd["following_ms_median"], s_ours["following_ms_median"]),
                "total_seconds": common.ratio(s_dd["total_seconds"], s_ours["total_seconds"]),
            },
            "cache_reads": results[p]["cache_reads"],
            "cache_writes": results[p]["cache_writes"],
        }
        label = (
            "tagged TD registered first (oldest)" if p == "first" else "tagged TD registered last (newest)"
        )
        for name, s in (("ours", s_ours), ("digdag scan", s_dd)):
            rows.append(
                [
                    f"{label}: {name}",
                    s["first_calls"],
                    _ops(s["first_calls_by_op"]),
                    s["first_ms"],
                    s["following_calls_median"],
                    _ops(s["following_calls_by_op"]),
                    s["following_ms_median"],
                    s["total_calls"],
                    s["total_seconds"],
                ]
            )

    common.print_table(
        [
            "placement / contender",
            "task1 calls",
            "task1 by op",
            "task1 ms",
            "next calls",
            "next by op",
            "next ms (med)",
            f"calls, {args.tasks} tasks",
            f"s, {args.tasks} tasks",
        ],
        rows,
        title=f"ECS API calls per task-definition lookup ({args.count} registered, {args.tasks} tasks)",
    )
    print()
    for p in placements:
        r = summary[p]["ratios_digdag_over_ours"]
        print(
            f"{p:>5}: Digdag / ours  calls: first {r['first_calls']:.2f}x, following "
            f"{r['following_calls']:.2f}x, all {args.tasks} tasks {r['total_calls']:.1f}x;  time: following "
            f"{r['following_ms']:.2f}x, all tasks {r['total_seconds']:.1f}x;  ours' cache: "
            f"{summary[p]['cache_reads']} reads, {summary[p]['cache_writes']} writes (an Airflow Variable in "
            "production)"
        )
    path = common.write_json(
        "ecs_td_lookup",
        {
            "args": vars(args),
            "summary": summary,
            "samples": results,
            "registry": {"count": args.count, "families": args.families, "tagged": tagged},
        },
    )
    print(f"\nWrote {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
