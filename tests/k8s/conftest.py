"""Fixtures for tests against the Kubernetes API emulator (tests/k8s_emulator/): the official
``kubernetes`` client talks to it through a kube config, and its pods really run in Docker.

- ``k8s_emulator_session`` (session): one KubeEmulator for the whole run.
- ``k8s_kubeconfig`` (session): the path of a kube config for it (context "cmdexec-k8s-emulator",
  namespace "default", plain HTTP, bearer token), for ``kubernetes.config.load_kube_config`` /
  ``new_client_from_config`` and for Airflow's KubernetesHook (connection extra
  ``kube_config_path``).
- ``k8s_emulator`` (function): the same emulator, reset before the test and checked after it: a
  test that leaves API objects behind (pods, secrets, config maps, claims, volumes, namespaces)
  fails, after they are removed; so does a Docker container or volume the emulator still has.
- ``k8s_core_api`` (function): a CoreV1Api built from that kube config.

The tests fail (they are never skipped) when no Docker Engine answers or the test image is missing
(scripts/ensure-docker.sh, scripts/build-test-image.sh).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from tests.k8s_emulator import KubeEmulator  # noqa: E402 - once the repository root is on sys.path

TEST_IMAGE = os.environ.get("CMDEXEC_TEST_IMAGE", "cmdexec-test:bookworm")
# Objects a test may leave: what the emulator starts with.  Events are the cluster's own records.
_BUILTIN_NAMESPACES = {"default", "kube-node-lease", "kube-public", "kube-system"}
_CHECKED_RESOURCES = ("pods", "secrets", "configmaps", "persistentvolumeclaims", "persistentvolumes")
# Deleted pods end after their grace period (30 s by default, then SIGKILL).
_DELETION_WAIT_SECONDS = 60


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8s: runs against the project's Kubernetes API emulator (needs Docker)"
    )


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
def k8s_emulator_session() -> Iterator[KubeEmulator]:
    problem = _docker_problem()
    if problem:
        pytest.fail(
            f"the Kubernetes emulator needs a Docker Engine and the image {TEST_IMAGE} "
            f"(scripts/ensure-docker.sh, scripts/build-test-image.sh): {problem}"
        )
    with KubeEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def k8s_kubeconfig(k8s_emulator_session: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return k8s_emulator_session.write_kubeconfig(tmp_path_factory.mktemp("k8s") / "kubeconfig")


def _left_behind(emulator: KubeEmulator) -> list[str]:
    """What the test created and did not delete (pods it deleted may still be ending)."""
    with contextlib.suppress(TimeoutError):  # reported below: they are still there
        emulator.wait_deletions(timeout=_DELETION_WAIT_SECONDS)
    left = []
    for resource in _CHECKED_RESOURCES:
        for obj in emulator.objects(resource):
            meta = obj["metadata"]
            left.append(f"{resource} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " "))
    left += [
        f"namespaces {n['metadata']['name']}"
        for n in emulator.objects("namespaces")
        if n["metadata"]["name"] not in _BUILTIN_NAMESPACES
    ]
    return left


@pytest.fixture
def k8s_emulator(k8s_emulator_session: KubeEmulator) -> Iterator[KubeEmulator]:
    emulator = k8s_emulator_session
    emulator.reset()
    yield emulator
    left = _left_behind(emulator)
    emulator.reset()
    docker_leftovers = emulator.containers() + emulator.volumes()
    assert not left, f"the test left Kubernetes objects behind (removed now): {left}"
    assert not docker_leftovers, (
        f"the emulator kept Docker containers/volumes after a reset: {docker_leftovers}"
    )


@pytest.fixture
def k8s_core_api(k8s_emulator: KubeEmulator, k8s_kubeconfig: Path) -> Iterator[Any]:
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(k8s_kubeconfig))
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()
