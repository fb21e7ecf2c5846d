"""Shipping a project by streaming: ``pack_to`` into ``storage.upload_stream`` (runner/workdir.py,
storage/parts.py, storage/s3.py, storage/gcs.py).

Real servers, nothing mocked: moto's S3 in server mode (its own process, so that what a test asks it
never waits for the shipping threads of this one) and gcp-storage-emulator on loopback. What a test
learns about the upload it learns from the server (ListMultipartUploads, ListParts, the object and its
ETag) or from boto3's own event hooks on the real client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from airflow_cmdexec_provider.config import StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.runner.workdir import pack_to
from airflow_cmdexec_provider.storage.parts import PART_SIZE
from airflow_cmdexec_provider.storage.s3 import PARALLEL_PARTS, S3TemporalStorage

MIB = 1 << 20
REGION = "us-east-1"


# -- servers and storages ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_endpoint():
    import urllib.request

    from tests.ecs.gcs_helpers import free_port

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"moto_server did not answer on {endpoint} within a minute")
        yield endpoint
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture
def s3(moto_endpoint):
    """A fresh bucket and our S3 storage on it."""
    bucket = f"cmdexec-ship-{uuid.uuid4().hex[:12]}"
    storage = S3TemporalStorage(
        StorageConfig(
            conn_id="ship",
            type="s3",
            bucket=bucket,
            endpoint=moto_endpoint,
            path_style_access=True,
            region=REGION,
            access_key_id="testing",
            secret="testing",
        )
    )
    storage.client.create_bucket(Bucket=bucket)
    return storage


@pytest.fixture(scope="module")
def gcs_server():
    import gcp_storage_emulator.server as emulator

    from tests.ecs.gcs_helpers import TokenServer, fake_service_account, free_port

    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="cmdexec-ship")
    server.start()
    tokens = TokenServer()
    yield {"endpoint": f"http://127.0.0.1:{port}", "account": json.dumps(fake_service_account(tokens.url))}
    tokens.stop()
    server.stop()


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    from airflow_cmdexec_provider.storage.gcs import GcsTemporalStorage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server["endpoint"])
    storage = GcsTemporalStorage(
        StorageConfig(
            conn_id="ship",
            type="gcs",
            bucket="cmdexec-ship",
            endpoint=gcs_server["endpoint"],
            secret=gcs_server["account"],
        )
    )
    yield storage
    storage.delete([blob.name for blob in storage.client.list_blobs("cmdexec-ship")])


def s3_calls(storage) -> list[str]:
    """The S3 operations the storage's client sends from now on, in order."""
    calls: list[str] = []
    storage.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    return calls


def open_uploads(storage) -> list[dict]:
    return storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", [])


def objects(storage) -> list[str]:
    return [o["Key"] for o in storage.client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])]


# -- projects ----------------------------------------------------------------------------------------------
def make_project(root: Path, mib_of_random: int) -> tuple[Path, Path]:
    """Incompressible files (so the archive is as big as the project), a script and its IO dir."""
    project = root / "project"
    (project / "data").mkdir(parents=True)
    for i in range(mib_of_random):
        (project / "data" / f"blob{i:03d}.bin").write_bytes(os.urandom(MIB))
    (project / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (project / "run.sh").chmod(0o755)
    io_dir = root / "io"
    io_dir.mkdir()
    (io_dir / "input.json").write_text('{"params": {}}')
    return project, io_dir


def assert_same_tree(archive: Path, project: Path, dest: Path) -> None:
    """Unpack as the ECS container does (GNU tar) and compare with the project, byte for byte."""
    dest.mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(dest)], check=True)
    files = sorted(p.relative_to(project) for p in project.rglob("*") if p.is_file())
    assert (
        sorted(p.relative_to(dest / "project") for p in (dest / "project").rglob("*") if p.is_file()) == files
    )
    for rel in files:
        assert (dest / "project" / rel).read_bytes() == (project / rel).read_bytes(), rel
    assert os.access(dest / "project" / "run.sh", os.X_OK)
    assert (dest / "io" / "input.json").read_text() == '{"params": {}}'


class PartsSeenWhilePacking(threading.Event):
    """The ``cancel`` event ``pack_to`` looks at before each file: each look also asks the server how
    many parts of the open multipart upload it holds, so a test sees what was uploaded while packing."""

    def __init__(self, storage) -> None:
        super().__init__()
        self.storage = storage
        self.parts: list[int] = []

    def is_set(self) -> bool:
        uploads = open_uploads(self.storage)
        held = 0
        for upload in uploads:
            held += len(
                self.storage.client.list_parts(
                    Bucket=self.storage.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                ).get("Parts", [])
            )
        self.parts.append(held)
        return super().is_set()


# -- S3 ----------------------------------------------------------------------------------------------------
def test_s3_parts_are_uploaded_in_parallel_while_the_project_is_packed(s3, tmp_path):
    project, io_dir = make_project(tmp_path, 30)
    probe = PartsSeenWhilePacking(s3)
    calls = s3_calls(s3)
    with s3.upload_stream("t/input.tar.gz") as upload:
        # The first PARALLEL_PARTS parts each wait until all of them are uploading: were parts sent one
        # at a time, the barrier would break (after its timeout) and the upload fail.
        together = threading.Barrier(PARALLEL_PARTS, timeout=120)
        upload_part = upload.sink.upload_part

        def upload_part_together(number: int, data: bytes):
            if number <= PARALLEL_PARTS:
                together.wait()
            return upload_part(number, data)

        upload.sink.upload_part = upload_part_together
        packed = pack_to(upload, project, io_dir, cancel=probe)
    parts = calls.count("UploadPart")
    assert parts >= 5
    # Every part but the last has exactly PART_SIZE bytes.
    assert (parts - 1) * PART_SIZE < packed.size <= parts * PART_SIZE
    # Parts reach the server while the project is still being packed. How many depends on the machine's
    # speed, but not fewer than this: the writer waits once PARALLEL_PARTS parts are uploading, so when it
    # hands over part k, parts 1..k-PARALLEL_PARTS are stored, and the probe looks before each file (the
    # last part and the one before it may be handed over after the last look).
    assert max(probe.parts) >= parts - 2 - PARALLEL_PARTS > 0, (
        f"parts on the server while packing: {probe.parts}"
    )
    assert calls.count("CreateMultipartUpload") == 1
    assert calls[-1] == "CompleteMultipartUpload"
    head = s3.client.head_object(Bucket=s3.bucket, Key="t/input.tar.gz")
    assert head["ContentLength"] == packed.size
    assert head["ETag"].strip('"').endswith(f"-{parts}")  # assembled from that many parts
    assert open_uploads(s3) == []
    archive = tmp_path / "downloaded.tar.gz"
    s3.client.download_file(s3.bucket, "t/input.tar.gz", str(archive))
    assert_same_tree(archive, project, tmp_path / "dest")


def test_s3_parts_are_exactly_part_size_and_reuse_a_fixed_set_of_buffers(s3, tmp_path):
    """Memory does not grow with the archive: the parts of a 60 MiB archive are filled into at most
    ``PARALLEL_PARTS + 1`` buffers, reused part after part (a new block per part made the worker's RSS
    creep with the project's size, benchmarks/README-ecs.md). The sink below keeps every buffer it is
    handed, so a buffer per part would show up as that many distinct objects."""
    project, io_dir = make_project(tmp_path, 60)
    handed: list[object] = []
    sizes: list[int] = []
    with s3.upload_stream("t/input.tar.gz") as upload:
        upload_part = upload.sink.upload_part

        def recording_upload_part(number: int, data):
            handed.append(data)
            sizes.append(len(data))
            return upload_part(number, data)

        upload.sink.upload_part = recording_upload_part
        packed = pack_to(upload, project, io_dir)
    assert len(sizes) == -(-packed.size // PART_SIZE) >= 12
    assert sizes[:-1] == [PART_SIZE] * (len(sizes) - 1)
    assert len({id(buffer) for buffer in handed}) <= PARALLEL_PARTS + 1
    archive = tmp_path / "downloaded.tar.gz"
    s3.client.download_file(s3.bucket, "t/input.tar.gz", str(archive))
    assert archive.stat().st_size == packed.size
    assert_same_tree(archive, project, tmp_path / "dest")


def test_s3_archive_smaller_than_a_part_is_one_put(s3, tmp_path):
    project, io_dir = make_project(tmp_path, 1)
    calls = s3_calls(s3)
    with s3.upload_stream("t/input.tar.gz") as upload:
        pack_to(upload, project, io_dir)
    assert calls == ["PutObject"]
    archive = tmp_path / "downloaded.tar.gz"
    s3.client.download_file(s3.bucket, "t/input.tar.gz", str(archive))
    assert_same_tree(archive, project, tmp_path / "dest")


def test_s3_error_midway_aborts_the_upload_and_leaves_no_object(s3, tmp_path):
    project, io_dir = make_project(tmp_path, 30)
    (project / "zz").mkdir()
    os.symlink("/etc/passwd", project / "zz" / "escape")  # packed last, after the data
    calls = s3_calls(s3)
    with (
        pytest.raises(CmdExecConfigError, match=r"'zz/escape' is a symbolic link to '/etc/passwd', outside"),
        s3.upload_stream("t/input.tar.gz") as upload,
    ):
        pack_to(upload, project, io_dir)
    assert calls.count("UploadPart") >= 2, calls  # parts were stored before the error...
    assert "AbortMultipartUpload" in calls
    assert "CompleteMultipartUpload" not in calls
    assert open_uploads(s3) == []  # ...and are gone with the aborted upload
    assert objects(s3) == []


def test_s3_storage_error_names_the_object_and_the_cause(s3, tmp_path):
    project, io_dir = make_project(tmp_path, 10)
    s3.bucket = "cmdexec-ship-no-such-bucket"
    with (
        pytest.raises(
            BackendError,
            match=r"upload of s3://cmdexec-ship-no-such-bucket/t/input\.tar\.gz failed: NoSuchBucket",
        ),
        s3.upload_stream("t/input.tar.gz") as upload,
    ):
        pack_to(upload, project, io_dir)


# -- GCS ---------------------------------------------------------------------------------------------------
def test_gcs_chunks_of_a_resumable_upload_go_in_order_while_packing(gcs, tmp_path):
    project, io_dir = make_project(tmp_path, 20)
    with gcs.upload_stream("t/input.tar.gz") as upload:
        packed = pack_to(upload, project, io_dir)
    assert packed.size > 2 * PART_SIZE
    archive = tmp_path / "downloaded.tar.gz"
    assert gcs.download_file("t/input.tar.gz", archive)
    assert archive.stat().st_size == packed.size
    assert_same_tree(archive, project, tmp_path / "dest")


def test_gcs_archive_smaller_than_a_chunk_is_one_upload(gcs, tmp_path):
    project, io_dir = make_project(tmp_path, 1)
    with gcs.upload_stream("t/input.tar.gz") as upload:
        pack_to(upload, project, io_dir)
    archive = tmp_path / "downloaded.tar.gz"
    assert gcs.download_file("t/input.tar.gz", archive)
    assert_same_tree(archive, project, tmp_path / "dest")


def test_gcs_error_midway_leaves_no_object(gcs, tmp_path):
    project, io_dir = make_project(tmp_path, 20)
    (project / "zz").mkdir()
    os.symlink("/etc/passwd", project / "zz" / "escape")
    with (
        pytest.raises(CmdExecConfigError, match="outside the project"),
        gcs.upload_stream("t/input.tar.gz") as upload,
    ):
        pack_to(upload, project, io_dir)
    assert [blob.name for blob in gcs.client.list_blobs("cmdexec-ship")] == []


# -- a real Airflow task killed while it ships -------------------------------------------------------------
def test_killing_the_task_while_it_ships_aborts_the_upload(run_dag, s3, moto_endpoint, monkeypatch, tmp_path):
    """SIGTERM to the task (as Airflow's supervisor sends it) -> on_kill: packing stops, the multipart
    upload is aborted, nothing stays in the bucket and no ECS task is started."""
    import boto3
    from airflow.sdk import DAG

    from airflow_cmdexec_provider.operators import ShOperator

    for key, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=moto_endpoint)
    cluster = f"cmdexec-ship-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=cluster)
    td_arn = ecs.register_task_definition(
        family=cluster,
        containerDefinitions=[{"name": "main", "image": "cmdexec-test:bookworm", "memory": 128}],
    )["taskDefinition"]["taskDefinitionArn"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_ECS_DEFAULT",
        json.dumps(
            {
                "conn_type": "cmdexec_ecs",
                "extra": {"cluster_name": cluster, "region": REGION, "poll_interval": 1},
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT",
        json.dumps(
            {
                "conn_type": "cmdexec_storage",
                "extra": {
                    "type": "s3",
                    "bucket": s3.bucket,
                    "endpoint": moto_endpoint,
                    "path_style_access": True,
                },
            }
        ),
    )
    project, _ = make_project(tmp_path, 96)
    dag_id = f"ship_kill_{uuid.uuid4().hex[:8]}"
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        default_args={"project_dir": str(project), "retries": 0},
    ) as dag:
        ShOperator(
            task_id="ship",
            command="echo never",
            executor="ecs",
            ecs={"task_definition_arn": td_arn},
            execution_timeout=timedelta(seconds=300),
        )  # a broken kill fails the test, never hangs it

    sent: list[str] = []
    run_over = threading.Event()

    def kill_once_a_part_is_stored() -> None:
        while not run_over.is_set():
            if open_uploads(s3) and getattr(signal.getsignal(signal.SIGTERM), "__name__", "") == "_on_term":
                os.kill(os.getpid(), signal.SIGTERM)
                sent.append("SIGTERM")
                return
            time.sleep(0.02)

    original = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=kill_once_a_part_is_stored, daemon=True)
    killer.start()
    try:
        result = run_dag(dag)
    finally:
        run_over.set()
        killer.join(30)
        signal.signal(signal.SIGTERM, original)
    assert sent == ["SIGTERM"]
    assert result.task_states == {"ship": "failed"}
    assert "packing the project stopped: the task is being killed" in result.error_text("ship")
    assert open_uploads(s3) == []
    assert objects(s3) == []
    assert ecs.list_tasks(cluster=cluster)["taskArns"] == []


def test_s3_delete_failures_are_reported_not_ignored():
    """Review L7: DeleteObjects in quiet mode succeeds and lists failures; they must not go unnoticed."""
    from botocore.stub import Stubber

    from airflow_cmdexec_provider.config import StorageConfig
    from airflow_cmdexec_provider.exceptions import BackendError
    from airflow_cmdexec_provider.storage.s3 import S3TemporalStorage

    storage = S3TemporalStorage(
        StorageConfig(
            conn_id="s",
            type="s3",
            bucket="b",
            region="us-east-1",
            access_key_id="AKIATEST",
            secret="not-a-real-secret",
        )
    )
    with Stubber(storage.client) as stub:
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "p/input.tar.gz", "Code": "AccessDenied", "Message": "Access Denied"}]},
        )
        with pytest.raises(BackendError, match=r"p/input.tar.gz \(AccessDenied: Access Denied\)"):
            storage.delete(["p/input.tar.gz", "p/output.tar.gz"])
