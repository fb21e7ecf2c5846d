"""Fixtures for tests against moto in server mode plus the ECS emulator (tasks really run in Docker).

- ``ecs_emulator_session`` (session): one EcsEmulator for the whole run.
- ``ecs_emulator`` (function): the same emulator, reset before the test (tasks, counters,
  injections and all of moto's state), and checked after it: a test that leaves an ECS task
  running fails (the task is stopped first), and no emulator container may be left behind.
- ``ecs_aws_env`` (function): AWS_ENDPOINT_URL, dummy credentials and region in os.environ, so
  code under test (boto3, Airflow's AWS hooks) reaches the emulator through standard mechanisms.

The tests fail (they are never skipped) when no Docker Engine answers or the test image is missing
(scripts/ensure-docker.sh, scripts/build-test-image.sh).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from tests.ecs_emulator import EcsEmulator  # noqa: E402

TEST_IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")


def _docker_problem() -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=15)
        try:
            client.ping()
            client.images.get(TEST_IMAGE)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def ecs_emulator_session() -> Iterator[EcsEmulator]:
    problem = _docker_problem()
    if problem:
        pytest.fail(
            f"the ECS emulator needs a Docker Engine and the image {TEST_IMAGE} "
            f"(scripts/ensure-docker.sh, scripts/build-test-image.sh): {problem}"
        )
    with EcsEmulator() as emulator:
        yield emulator


@pytest.fixture
def ecs_emulator(ecs_emulator_session: EcsEmulator) -> Iterator[EcsEmulator]:
    emulator = ecs_emulator_session
    emulator.reset()
    yield emulator
    still_running = emulator.running_containers()
    emulator.stop_all_tasks(reason="test ended")
    leftovers = emulator.containers(include_stopped=True)
    emulator.reset(moto_state=False)
    assert not leftovers, f"ECS emulator containers left behind after their tasks stopped: {leftovers}"
    assert not still_running, (
        f"the test left {len(still_running)} ECS task container(s) running (stopped now): {still_running}"
    )


@pytest.fixture
def ecs_aws_env(ecs_emulator: EcsEmulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in ecs_emulator.aws_env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    return ecs_emulator.aws_env
