"""Helpers of the connection Test button tests (no tests here): moto and the GCS emulator.

``MotoServer`` is moto in server mode on a loopback port (real S3, ECS, CloudWatch Logs, EC2 and
IAM APIs), with ``enforce_credentials()`` to switch on moto's IAM authentication, so that unknown
keys get the errors AWS answers. ``GcsEmulator`` is gcp-storage-emulator with a throw-away service
account whose tokens come from a local token endpoint. ``connection_test`` runs a connection's
Test exactly as Airflow's API server does for ``POST /api/v2/connections/test``.
"""

from __future__ import annotations

import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.ecs.gcs_helpers import TokenServer, fake_service_account

REGION = "us-east-1"


class MotoServer:
    """moto in server mode on a free loopback port, with admin helpers for the test's AWS world."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Forget every resource (moto's state is per process: other tests' servers share it)."""
        self._post("/moto-api/reset", b"")

    def client(self, service: str, **credentials: str) -> Any:
        import boto3

        credentials = credentials or {"aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, **credentials)

    def iam_user(self) -> tuple[str, str]:
        """A new IAM user allowed everything; returns its access key id and secret."""
        iam = self.client("iam")
        name = f"cmdexec-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextmanager
    def enforce_credentials(self) -> Iterator[None]:
        """moto's IAM authentication on: only keys of IAM users (``iam_user``) are accepted."""
        self._post("/moto-api/reset-auth", b"0")
        try:
            yield
        finally:
            self._post("/moto-api/reset-auth", b"inf")

    def _post(self, path: str, data: bytes) -> None:
        request = urllib.request.Request(
            self.url + path, data=data, method="POST", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()


class GcsEmulator:
    """gcp-storage-emulator on a free loopback port, and a service account it accepts."""

    def __init__(self, bucket: str) -> None:
        import gcp_storage_emulator.server as gcs

        self._server = gcs.create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
        self._server.start()
        self._tokens = TokenServer()
        # The emulator has no accessor for the port it bound (port 0 avoids a bind race).
        self.url = f"http://127.0.0.1:{self._server._api._httpd.server_port}"
        self.service_account = json.dumps(fake_service_account(self._tokens.url))

    def blobs(self, bucket: str) -> list[str]:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.url}
        )
        return [blob.name for blob in client.list_blobs(bucket)]

    def stop(self) -> None:
        self._tokens.stop()
        self._server.stop()


def connection_test(conn_type: str, **fields: Any) -> tuple[bool, str]:
    """Test a connection as ``POST /api/v2/connections/test`` does: a Connection under a random id,
    exported as ``AIRFLOW_CONN_<ID>`` (its URI) while ``Connection.test_connection()`` finds the hook
    of the conn type through the ProvidersManager and calls its ``test_connection``."""
    from airflow.models import Connection

    extra = fields.pop("extra", None)
    conn = Connection(
        conn_id=f"t{uuid.uuid4().hex[:12]}",
        conn_type=conn_type,
        extra=json.dumps(extra) if extra is not None else None,
        **fields,
    )
    variable = f"AIRFLOW_CONN_{conn.conn_id.upper()}"
    os.environ[variable] = conn.get_uri()
    try:
        return conn.test_connection()
    finally:
        del os.environ[variable]
