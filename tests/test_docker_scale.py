"""One triggerer's event loop follows 200 deferred Docker commands: each ends, each log line arrives once and
in order, no process is spawned to watch them, and nothing is left (correctness at scale; timings and CPU
belong to ``benchmarks/bench_triggerer_scale.py``)."""

from __future__ import annotations

import os
import uuid

import psutil
import pytest

from airflow_cmdexec_provider.backends.base import TaskSettings
from tests import scale_helpers
from tests.docker_helpers import DAG_PREFIX, IMAGE, managed_containers, require_docker

TASKS = int(os.environ.get("CMDEXEC_SCALE_DOCKER_TASKS", "200"))
LINES = 5


@pytest.mark.docker
def test_one_event_loop_follows_many_deferred_docker_commands(tmp_path):
    from airflow_cmdexec_provider.backends.docker import DockerBackend

    require_docker()
    settings = TaskSettings(task_label="scale.t", docker={"image": IMAGE})
    dag_id = f"{DAG_PREFIX}_scale_{uuid.uuid4().hex[:8]}"
    requests = [scale_helpers.request(tmp_path, f"d{i:03d}", LINES, 1, dag_id=dag_id) for i in range(TASKS)]
    followed = scale_helpers.submit_all(lambda: DockerBackend.from_settings(settings), settings, requests)
    try:
        children_before = {p.pid for p in psutil.Process().children(recursive=True)}
        spawned: set[int] = set()

        def watch_children() -> None:  # a process per container or per poll would show up here
            spawned.update(p.pid for p in psutil.Process().children(recursive=True))

        import threading

        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                watch_children()

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        scale_helpers.follow_all(followed, "docker")
        stop.set()
        sampler.join()
        assert spawned - children_before == set()  # the Engine API is followed in the event loop itself

        for f in followed:
            assert f.event is not None, f.name
            assert f.event["status"] == "finished", (f.name, f.event)
            assert f.event["exit_code"] == 0, (f.name, f.event, f.lines[-5:])
            assert scale_helpers.command_lines(f) == list(range(1, LINES + 1)), (f.name, f.lines)
    finally:
        for f in followed:
            f.backend.discard(f.handle, lambda line: None)
    assert managed_containers(dag_id) == []
