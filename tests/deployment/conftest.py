"""The ``deployment`` fixture: one real Airflow deployment for all the tests in tests/deployment/.

It starts once (package scope, ~1-3 minutes here) and is stopped after the last test of this
folder, whatever happened: see ``harness.Deployment``. After each test, what it left behind is
removed (and printed), so that every scenario counts only its own leftovers. It needs root
(namespaces, PostgreSQL run as the ``postgres`` user), a Docker Engine with the test image, and
the Debian packages postgresql and redis-server, which ``scripts/ensure-services.sh`` installs
when they are missing.

When a deployment test fails, the report gets a section with the last lines of every component's
log (scheduler, api-server, triggerer, workers, ...).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.deployment.harness import IMAGE, ROOT, ContainerWatch, Deployment, DeploymentError

DAG_IDS = (
    "deploy_siblings",
    "deploy_handover",
    "deploy_worker_kill",
    "deploy_mark_failed",
    "deploy_env_injection",
    "deploy_fifty",
    "deploy_dig_late",
    "deploy_dig_on_time",
    "deploy_dig_secrets",
    "deploy_dig_upstream",
    "deploy_dig_downstream",
    "deploy_dig_again",
    "deploy_dig_overtime",
    "deploy_dig_loop",
)


def _require_prerequisites() -> None:
    if os.geteuid() != 0:
        pytest.fail("the deployment tests need root: each host is a mount + UTS namespace (unshare)")
    image = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if image.returncode != 0:
        pytest.fail(
            f"Docker Engine or test image {IMAGE} not available ({image.stderr.strip()}); "
            "run scripts/ensure-docker.sh and scripts/build-test-image.sh"
        )
    services = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-services.sh")],
        check=False,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if services.returncode != 0:
        pytest.fail(
            f"scripts/ensure-services.sh could not install postgresql/redis-server:\n{services.stderr}"
        )


@pytest.fixture(scope="package")
def running_deployment() -> Iterator[Deployment]:
    _require_prerequisites()
    deployment = Deployment(DAG_IDS)
    try:
        try:
            deployment.start()
        except DeploymentError as exc:
            pytest.fail(f"the deployment did not start: {exc}", pytrace=False)
        print(f"\n[deployment] started (seconds): {deployment.startup_seconds}")
        yield deployment
    finally:
        removed = deployment.stop()
        if removed:
            print(f"\n[deployment] removed containers left behind by the scenarios: {removed}")


@pytest.fixture
def deployment(running_deployment: Deployment) -> Iterator[Deployment]:
    """The running deployment; what a test leaves behind (containers, IO folders, S3 objects) is
    removed after it, so that each scenario counts only its own leftovers."""
    yield running_deployment
    removed = running_deployment.remove_leftovers()
    if not running_deployment.nothing_left(removed):
        print(f"\n[deployment] removed after the test: {removed}")


@pytest.fixture
def watch_containers(deployment: Deployment) -> Iterator[Callable[[str], ContainerWatch]]:
    """``watch_containers(dag_id)``: record the containers created for ``dag_id`` until the test ends."""
    watches: list[ContainerWatch] = []

    def watch(dag_id: str) -> ContainerWatch:
        watches.append(deployment.watch_containers(dag_id))
        return watches[-1]

    yield watch
    for started in watches:
        started.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    deployment = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and call.when == "call" and isinstance(deployment, Deployment):
        report.sections.append(("deployment components (log tails)", deployment.diagnostics()))
