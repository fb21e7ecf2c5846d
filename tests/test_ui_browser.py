"""Our two connection types in Airflow's real UI, driven by headless Chromium.

Starts ``airflow api-server`` (which serves the React UI) on a loopback port with its own home and
``[core] test_connection = Enabled``, and logs in through the simple auth manager's login page.

- The forms: adds an ECS cluster connection and a temporal storage connection through "Add
  Connection" using our custom fields, saves them, and checks that the executor configuration
  loaded from that metadata DB (``config.ecs_setup``) equals what was typed.
- The Test buttons: on the Connections page, clicks **Test Connection** on connections that point
  at moto (ECS, S3) and at the GCS emulator, and checks the success and the failure messages of our
  hooks' ``test_connection`` as the page shows them.
- A Kubernetes setup: the cncf provider's ``kubernetes`` connection (kube config path of the
  project's Kubernetes API emulator, our ``cmdexec_*`` keys in its Extra Fields JSON), a temporal
  storage connection and the Variable ``cmdexec_executor_type``, all added in the UI; then
  ``airflow-cmdexec check`` on that metadata DB says a task runs on Kubernetes and reaches the
  cluster and the storage.

Screenshots go to ``test-output/ui/``. Needs Debian's Chromium (``scripts/ensure-browser.sh``);
Playwright drives it, nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser.airflow_server import AirflowApiServer
from browser.ui import (
    CHROMIUM,
    ConnectionForm,
    add_variable,
    chromium_page,
    click_test_connection,
    login,
)
from connection_test_support import REGION, GcsEmulator, MotoServer

from airflow_cmdexec_provider.digdag_keys import ECS_FIELDS, STORAGE_FIELDS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output" / "ui"
TASK_LABEL = "ui-test"
IMAGE = "python:3.12"
UI_CLUSTER = "cmdexec-ui-cluster"
UI_GCS_BUCKET = "cmdexec-ui-gcs"
UI_SECRET = "ui-test-button-Secret-k3P"
K8S_IMAGE = "cmdexec-test:bookworm"
K8S_BUCKET = "cmdexec-ui-k8s"
K8S_STORAGE_CONN_ID = "cmdexec_storage_k8s"

# What the test types into the forms (fake credentials).
ECS_TYPED = {
    "login": "AKIAUITESTCLUSTER01",
    "password": "ui-cluster-secret-Zq81xPw",
    "cluster_name": "digdag-ui",
    "region": "eu-central-1",
    "launch_type": "EC2",
    "subnets": ["subnet-0a1", "subnet-0b2"],
    "assign_public_ip": False,
    "max_retries": 5,
    "container_cpu": 256,
    "container_memory": 512,
    "task_cpu": "1 vcpu",
    "task_memory": "2 GB",
    "started_by": "airflow-ui-test",
    "placement_strategy_type": "binpack",
    "placement_strategy_field": "memory",
    "use_environment_file": True,
    "security_groups": ["sg-0c3"],
    "retry_task_output_uploads": 4,
}
STORAGE_TYPED = {
    "login": "AKIAUITESTSTORAGE01",
    "password": "ui-storage-secret-9vKq2",
    "type": "s3",
    "bucket": "cmdexec-ui-bucket",
    "prefix": "ui-prefix",
    "endpoint": "http://127.0.0.1:9000",
    "path_style_access": True,
    "region": "eu-west-1",
    "direct_download_expiration": 3600,
    "direct_upload_expiration": 7200,
}

LOAD_SCRIPT = f"""
import dataclasses, json
from airflow_cmdexec_provider import config
ecs, storage = config.ecs_setup({{}}, {{"image": {IMAGE!r}}}, {TASK_LABEL!r})
print("CONFIG=" + json.dumps({{"ecs": dataclasses.asdict(ecs), "storage": dataclasses.asdict(storage)}}))
"""


def _expected() -> dict:
    from airflow_cmdexec_provider.config import EcsConfig, StorageConfig

    ecs = EcsConfig(
        conn_id="cmdexec_ecs_default",
        cluster_name=ECS_TYPED["cluster_name"],
        region=ECS_TYPED["region"],
        access_key_id=ECS_TYPED["login"],
        secret_access_key=ECS_TYPED["password"],
        launch_type=ECS_TYPED["launch_type"],
        subnets=tuple(ECS_TYPED["subnets"]),
        security_groups=tuple(ECS_TYPED["security_groups"]),
        assign_public_ip=ECS_TYPED["assign_public_ip"],
        max_retries=ECS_TYPED["max_retries"],
        container_cpu=ECS_TYPED["container_cpu"],
        container_memory=ECS_TYPED["container_memory"],
        task_cpu=ECS_TYPED["task_cpu"],
        task_memory=ECS_TYPED["task_memory"],
        started_by=ECS_TYPED["started_by"],
        placement_strategy_type=ECS_TYPED["placement_strategy_type"],
        placement_strategy_field=ECS_TYPED["placement_strategy_field"],
        use_environment_file=ECS_TYPED["use_environment_file"],
        retry_task_output_uploads=ECS_TYPED["retry_task_output_uploads"],
        image=IMAGE,
        task_label=TASK_LABEL,
    )
    storage = StorageConfig(
        conn_id="cmdexec_storage_default",
        type=STORAGE_TYPED["type"],
        bucket=STORAGE_TYPED["bucket"],
        prefix=STORAGE_TYPED["prefix"],
        endpoint=STORAGE_TYPED["endpoint"],
        path_style_access=STORAGE_TYPED["path_style_access"],
        region=STORAGE_TYPED["region"],
        access_key_id=STORAGE_TYPED["login"],
        secret=STORAGE_TYPED["password"],
        direct_download_expiration=STORAGE_TYPED["direct_download_expiration"],
        direct_upload_expiration=STORAGE_TYPED["direct_upload_expiration"],
        task_label=TASK_LABEL,
    )
    # The same JSON round trip as the loaded side (tuples become lists).
    return json.loads(json.dumps({"ecs": dataclasses.asdict(ecs), "storage": dataclasses.asdict(storage)}))


def _fill(
    form: ConnectionForm, fields: tuple, typed: dict, login_label: str, password_label: str, screenshot: Path
) -> list[Path]:
    """Type ``typed`` into the form: Login/Password, then each extra with the widget of its kind
    (from the FieldSpec table: text, number, switch, one-per-line list, dropdown). Screenshots of
    both sections of the form (the dialog shows one section at a time)."""
    form.text(login_label, typed["login"])
    form.text(password_label, typed["password"])
    shots = [form.screenshot(screenshot.with_name(screenshot.stem + "-standard-fields.png"))]
    form.expand_extra_fields()
    specs = {spec.extra_name: spec for spec in fields if spec.extra_name}
    for name, value in typed.items():
        if name in ("login", "password"):
            continue
        spec = specs[name]
        assert form.extra_label(name) == spec.label
        if spec.kind == "str":
            form.extra_text(name, value)
        elif spec.kind == "int":
            form.extra_number(name, value)
        elif spec.kind == "bool":
            form.extra_switch(name, value)
        elif spec.kind == "list":
            form.extra_lines(name, value)
        elif spec.kind == "choice":
            form.extra_choice(name, value)
        else:
            raise AssertionError(spec.kind)
    shots.append(form.screenshot(screenshot))
    return shots


def _standard_labels(form: ConnectionForm) -> set[str]:
    return {text.strip().rstrip("*").strip() for text in form.dialog.locator("label").all_inner_texts()}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[AirflowApiServer, MotoServer, GcsEmulator]]:
    """The API server (Test buttons enabled), moto and the GCS emulator, for the whole module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-browser.sh (installs Debian's chromium)")
    moto = MotoServer()
    gcs = GcsEmulator(UI_GCS_BUCKET)
    server = AirflowApiServer(
        tmp_path_factory.mktemp("ui") / "airflow-home", config={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}
    )
    try:
        with server:
            yield server, moto, gcs
    finally:
        gcs.stop()
        moto.stop()


@contextmanager
def server_log_on_failure(server: AirflowApiServer) -> Iterator[None]:
    try:
        yield
    except BaseException:
        print(f"---- API server log ({server.log_path}) ----\n{server.log()}")
        raise


def print_screenshots(capsys: pytest.CaptureFixture[str], screenshots: list[Path]) -> None:
    with capsys.disabled():  # shown even when pytest captures output
        for path in screenshots:
            print(f"\nscreenshot: {path}", end="")
        print()


def test_add_ecs_and_storage_connections_in_the_ui(
    world: tuple[AirflowApiServer, MotoServer, GcsEmulator], capsys: pytest.CaptureFixture[str]
) -> None:
    server = world[0]
    screenshots: list[Path] = []
    try:
        with server_log_on_failure(server), chromium_page() as page:
            login(page, server.url, server.username, server.password)
            # What the form is built from: the API server's hook metadata (signed-in session).
            response = page.request.get(server.url + "/ui/connections/hook_meta")
            assert response.ok, response.text()
            metas = {meta["connection_type"]: meta for meta in response.json()}
            assert metas["cmdexec_ecs"]["hook_name"] == "Command Executor: ECS cluster"
            assert metas["cmdexec_ecs"]["extra_fields"]["launch_type"]["schema"]["enum"] == [
                "FARGATE",
                "EC2",
                "EXTERNAL",
            ]
            assert metas["cmdexec_storage"]["standard_fields"]["host"]["hidden"] is True
            assert set(metas["cmdexec_storage"]["extra_fields"]) == {
                spec.extra_name for spec in STORAGE_FIELDS if spec.extra_name
            }

            form = ConnectionForm(page, server.url)

            form.open("cmdexec_ecs_default", "Command Executor: ECS cluster")
            labels = _standard_labels(form)
            assert {"AWS access key id", "AWS secret access key"} <= labels, labels
            assert not {"Host", "Port", "Schema"} & labels, labels  # hidden standard fields
            screenshots += _fill(
                form,
                ECS_FIELDS,
                ECS_TYPED,
                "AWS access key id",
                "AWS secret access key",
                OUTPUT / "ecs-cluster-connection.png",
            )
            form.save()

            form.open("cmdexec_storage_default", "Command Executor: temporal storage (S3/GCS)")
            assert {"S3 access key id", "S3 secret key / GCS credentials JSON"} <= _standard_labels(form)
            screenshots += _fill(
                form,
                STORAGE_FIELDS,
                STORAGE_TYPED,
                "S3 access key id",
                "S3 secret key / GCS credentials JSON",
                OUTPUT / "temporal-storage-connection.png",
            )
            form.save()

        # The configuration a task would load, read from the server's metadata DB by another
        # process (no Task SDK supervisor there: config._get_connection's airflow.models path).
        proc = subprocess.run(
            [sys.executable, "-c", LOAD_SCRIPT],
            env=server.env(),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            check=False,
        )
    finally:
        print_screenshots(capsys, screenshots)

    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    line = next(line for line in proc.stdout.splitlines() if line.startswith("CONFIG="))
    loaded = json.loads(line[len("CONFIG=") :])
    assert loaded == _expected()


def test_test_buttons_show_the_result_of_our_checks(
    world: tuple[AirflowApiServer, MotoServer, GcsEmulator], capsys: pytest.CaptureFixture[str]
) -> None:
    """Test Connection on the Connections page: success and failure, for both connection types.

    The connections are stored with port 0. Airflow 3.3.1 and 3.3.2 answer every Test of a
    connection without a port with "400 Bad Request" before any hook runs: the UI sends port 0 for
    a NULL port and the API server takes that for another destination (apache/airflow#73298,
    fixed upstream after 3.3.2). Port 0 matches what the UI sends; our forms hide the port, and
    nothing reads it.
    """
    server, moto, gcs = world
    moto.client("ecs").create_cluster(clusterName=UI_CLUSTER)
    ecs_fields = {"cluster_name": UI_CLUSTER, "region": REGION, "endpoint_url": moto.url}
    cases = [
        (
            "ui_ecs_reachable",
            {"conn_type": "cmdexec_ecs", "login": "AKIAUITEST", "password": UI_SECRET, "extra": ecs_fields},
            True,
            (
                f"ECS cluster '{UI_CLUSTER}' is ACTIVE in {REGION} (0 running tasks); "
                "ECS and CloudWatch Logs accept the credentials from Login/Password."
            ),
            "ecs-test-ok.png",
        ),
        (
            "ui_ecs_missing_cluster",
            {
                "conn_type": "cmdexec_ecs",
                "login": "AKIAUITEST",
                "password": UI_SECRET,
                "extra": {**ecs_fields, "cluster_name": "no-such-cluster"},
            },
            False,
            f"ECS cluster 'no-such-cluster' not found in {REGION}: fix extra 'cluster_name' or 'region'",
            "ecs-test-failed.png",
        ),
        (
            "ui_storage_gcs",
            {
                "conn_type": "cmdexec_storage",
                "password": gcs.service_account,
                "extra": {"type": "gcs", "bucket": UI_GCS_BUCKET, "endpoint": gcs.url},
            },
            True,
            (
                f"gs://{UI_GCS_BUCKET} is reachable: a test object under cmdexec/ was written, read back "
                "through presigned GET and PUT URLs and deleted."
            ),
            "storage-test-ok.png",
        ),
        (
            "ui_storage_s3_missing_bucket",
            {
                "conn_type": "cmdexec_storage",
                "login": "AKIAUITEST",
                "password": UI_SECRET,
                "extra": {
                    "type": "s3",
                    "bucket": "no-such-ui-bucket",
                    "region": REGION,
                    "endpoint": moto.url,
                },
            },
            False,
            "s3://no-such-ui-bucket does not exist: fix extra 'bucket'",
            "storage-test-failed.png",
        ),
    ]
    screenshots: list[Path] = []
    try:
        with server_log_on_failure(server), chromium_page(1400, 1000) as page:
            login(page, server.url, server.username, server.password)
            for conn_id, fields, _, _, _ in cases:
                body = {**fields, "connection_id": conn_id, "port": 0, "extra": json.dumps(fields["extra"])}
                created = page.request.post(server.url + "/api/v2/connections", data=body)
                assert created.status == 201, created.text()
            for conn_id, _, ok, message, screenshot in cases:
                title, text = click_test_connection(page, server.url, conn_id, OUTPUT / screenshot)
                screenshots.append(OUTPUT / screenshot)
                assert (title, text) == (
                    "Test Connection Successful" if ok else "Test Connection Failed",
                    message,
                ), conn_id
                assert UI_SECRET not in text
    finally:
        print_screenshots(capsys, screenshots)
    assert gcs.blobs(UI_GCS_BUCKET) == []  # the test objects were deleted


def test_kubernetes_setup_in_the_ui(
    world: tuple[AirflowApiServer, MotoServer, GcsEmulator],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A Kubernetes-backed setup added through the UI's forms, checked with ``airflow-cmdexec check``.

    The cluster is the project's API emulator (no pod is created: the check reaches the API server
    through the connection's kube config); the storage is moto's S3.
    """
    from tests.k8s_emulator import KubeEmulator

    server, moto, _ = world
    moto.client("s3").create_bucket(Bucket=K8S_BUCKET)
    storage = {
        "login": "AKIAUIK8S",
        "password": UI_SECRET,
        "type": "s3",
        "bucket": K8S_BUCKET,
        "endpoint": moto.url,
        "path_style_access": True,
    }
    screenshots: list[Path] = []
    with KubeEmulator() as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
        extra = {
            "kube_config_path": str(kubeconfig),
            "cmdexec_poll_interval": 1,
            "cmdexec_storage_in_conn_id": K8S_STORAGE_CONN_ID,
            "cmdexec_storage_out_conn_id": K8S_STORAGE_CONN_ID,
        }
        try:
            with server_log_on_failure(server), chromium_page() as page:
                login(page, server.url, server.username, server.password)
                form = ConnectionForm(page, server.url)
                form.open(K8S_STORAGE_CONN_ID, "Command Executor: temporal storage (S3/GCS)")
                screenshots += _fill(
                    form,
                    STORAGE_FIELDS,
                    storage,
                    "S3 access key id",
                    "S3 secret key / GCS credentials JSON",
                    OUTPUT / "kubernetes-storage-connection.png",
                )
                form.save()

                form.open("cmdexec_kubernetes_default", "Kubernetes Cluster Connection")
                form.extra_json(extra)
                screenshots.append(form.screenshot(OUTPUT / "kubernetes-connection.png"))
                form.expand_extra_fields()  # the cncf provider's own fields show what the JSON holds
                assert form.extra_value("kube_config_path") == str(kubeconfig)
                screenshots.append(form.screenshot(OUTPUT / "kubernetes-connection-fields.png"))
                form.save()
                stored = page.request.get(server.url + "/api/v2/connections/cmdexec_kubernetes_default")
                assert stored.ok, stored.text()
                saved = stored.json()
                assert (saved["conn_type"], json.loads(saved["extra"])) == ("kubernetes", extra)

                add_variable(
                    page,
                    server.url,
                    "cmdexec_executor_type",
                    "kubernetes",
                    "Digdag agent.command_executor.type",
                )
        finally:
            print_screenshots(capsys, screenshots)

        # The configuration as a task reads it from the server's metadata DB, in another process.
        check = subprocess.run(
            [str(Path(sys.executable).parent / "airflow-cmdexec"), "check", "--image", K8S_IMAGE],
            env=server.env(),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            check=False,
        )
    output = check.stdout + check.stderr
    assert check.returncode == 0, output
    assert "chain: kubernetes -> docker -> local" in check.stdout, output
    assert "Selected: kubernetes" in check.stdout, output
    assert (
        f"the API server at {emulator.url} accepts the credentials of the kube config of extra "
        f"'kube_config_path' ({kubeconfig})" in check.stdout
    ), output
    assert f"connection '{K8S_STORAGE_CONN_ID}': s3://{K8S_BUCKET} is reachable" in check.stdout, output
    assert (
        "Verdict: OK: a task with these params runs on kubernetes in namespace 'default', and kubernetes "
        "and storage are reachable" in check.stdout
    ), output
    assert UI_SECRET not in output
    assert emulator.token not in output
