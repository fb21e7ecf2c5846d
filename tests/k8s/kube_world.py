"""What the Kubernetes executor tests share (no tests here): S3 on moto, the Airflow connections that
make Kubernetes the executor, a small Digdag-style project, and checks that nothing was left behind.

The cluster is the project's Kubernetes API emulator (``tests/k8s_emulator``, fixtures in
``conftest.py``): its pods really run in Docker on the host network, so they reach moto on 127.0.0.1
through the presigned URLs, as real pods reach S3. The code under test reaches the emulator only
through the kube config named by the ``kubernetes`` connection, and S3 only through the storage
connection's endpoint.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.k8s.conftest import TEST_IMAGE

BUCKET_PREFIX = "cmdexec-k8s"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
PROJECT_FILES = {
    "tasks/__init__.py": "",
    "tasks/wf.py": (
        "import os, digdag\n"
        "def step1(greeting):\n"
        "    print('py> in pod:', os.path.exists('/.dockerenv'), greeting)\n"
        "    digdag.env.store(numbers=[1, 2, 3], note=greeting.upper())\n"
        "def fail():\n"
        "    raise ValueError('bad value from the pod')\n"
        "def eat_memory():\n"
        "    print('allocating', flush=True)\n"
        "    chunks = [bytearray(16 * 1024 * 1024) for _ in range(64)]\n"
        "    print('allocated', len(chunks))\n"
    ),
    "tasks/wf.rb": (
        "class Wf\n"
        "  def self.step2(numbers, note)\n"
        '    puts "rb> sum=#{numbers.sum} note=#{note}"\n'
        "    Digdag.env.store(total: numbers.sum)\n"
        "  end\n"
        "end\n"
    ),
    ".secret": "dot files are not shipped",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """S3 of moto in server mode on loopback, for the worker and for the pods."""
    from moto.server import ThreadedMotoServer

    # moto's HTTP server logs every request line, presigned URLs included, into the task logs the
    # tests read: only S3's own logs would have them in production.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class KubeWorld:
    """One test's setup: the emulator, a bucket, the connections' JSON, a project folder."""

    emulator: Any
    kubeconfig: Path
    endpoint: str
    bucket: str
    project: Path

    @property
    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def remaining_objects(self) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])]

    def connections(self, **cluster_extra: Any) -> dict[str, str]:
        """AIRFLOW_CONN_* / AIRFLOW_VAR_* that make Kubernetes the executor type and configure it."""
        extra = {"kube_config_path": str(self.kubeconfig), "cmdexec_poll_interval": 1, **cluster_extra}
        return {
            "AIRFLOW_VAR_CMDEXEC_EXECUTOR_TYPE": "kubernetes",
            "AIRFLOW_CONN_CMDEXEC_KUBERNETES_DEFAULT": json.dumps(
                {"conn_type": "kubernetes", "extra": extra}
            ),
            "AIRFLOW_CONN_CMDEXEC_STORAGE_DEFAULT": json.dumps(
                {
                    "conn_type": "cmdexec_storage",
                    "extra": {
                        "type": "s3",
                        "bucket": self.bucket,
                        "endpoint": self.endpoint,
                        "path_style_access": True,
                    },
                }
            ),
            **AWS_ENV,
        }

    def pods_created(self) -> list[dict[str, Any]]:
        """The bodies of every pod creation the emulator accepted, in order."""
        return [
            r.body
            for r in self.emulator.requests
            if r.method == "POST" and r.path.endswith("/pods") and r.status == 201
        ]


@pytest.fixture(name="kube_world")  # imported by the test modules as kube_world_fixture
def kube_world_fixture(
    airflow_db, k8s_emulator, k8s_kubeconfig, moto_endpoint, monkeypatch, tmp_path
) -> Iterator[KubeWorld]:
    bucket = f"{BUCKET_PREFIX}-{uuid.uuid4().hex[:8]}"
    project = make_project(tmp_path / "project")
    world = KubeWorld(k8s_emulator, k8s_kubeconfig, moto_endpoint, bucket, project)
    world.s3.create_bucket(Bucket=bucket)
    for key, value in world.connections().items():
        monkeypatch.setenv(key, value)
    yield world
    left = world.remaining_objects()
    for key in left:
        world.s3.delete_object(Bucket=bucket, Key=key)
    world.s3.delete_bucket(Bucket=bucket)
    assert not left, f"temporal objects left behind: {left}"


def make_project(root: Path) -> Path:
    for rel, text in PROJECT_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_dag(dag_id: str, project: Path, **default_args: Any) -> Any:
    from airflow.sdk import DAG

    return DAG(
        f"{dag_id}_{uuid.uuid4().hex[:6]}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        params={"greeting": "hello k8s"},
        default_args={"project_dir": str(project), "docker": {"image": TEST_IMAGE}, **default_args},
    )
