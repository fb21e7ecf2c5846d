"""GCS temporal storage (Digdag temporal_storage.type = gcs) with google-cloud-storage (extra [gcs]).

Signed URLs are V4 and need service-account credentials with a private key: the connection's
password (credentials JSON content) or ``gcs_credentials_json_path``. ``endpoint`` (a URL) points
API calls and signed URLs at a GCS-compatible server, e.g. an emulator.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.config import StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError, CmdExecConfigError
from airflow_cmdexec_provider.storage.parts import PART_SIZE, PartedUpload


class GcsTemporalStorage:
    type = "gcs"

    def __init__(self, config: StorageConfig) -> None:
        try:
            from google.cloud import storage
        except ImportError as exc:
            raise CmdExecConfigError(
                "GCS temporal storage needs google-cloud-storage: pip install 'airflow-cmdexec-provider[gcs]'"
            ) from exc
        self.config = config
        self.bucket = config.bucket
        credentials, project = _credentials(config)
        options = {"api_endpoint": config.endpoint} if config.endpoint else None
        self.client = storage.Client(project=project, credentials=credentials, client_options=options)
        self._bucket = self.client.bucket(config.bucket)

    def upload_file(self, key: str, path: Path) -> None:
        try:
            self._bucket.blob(key).upload_from_filename(str(path))
        except Exception as exc:
            raise BackendError(f"upload of gs://{self.bucket}/{key} failed: {exc}") from exc

    def upload_stream(self, key: str) -> PartedUpload:
        # One worker: the chunks of a resumable upload must arrive in order.
        return PartedUpload(_ResumableUpload(self._bucket.blob(key), f"gs://{self.bucket}/{key}"), 1)

    def download_file(self, key: str, path: Path) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self._bucket.blob(key).download_to_filename(str(path))
        except NotFound:
            path.unlink(missing_ok=True)
            return False
        return True

    def _signed(self, key: str, method: str, expires_in: int) -> str:
        kwargs: dict[str, Any] = {
            "version": "v4",
            "method": method,
            "expiration": timedelta(seconds=expires_in),
        }
        if self.config.endpoint:
            kwargs["api_access_endpoint"] = self.config.endpoint
        url: str = self._bucket.blob(key).generate_signed_url(**kwargs)
        return url

    def presigned_get(self, key: str, expires_in: int) -> str:
        return self._signed(key, "GET", expires_in)

    def presigned_put(self, key: str, expires_in: int) -> str:
        return self._signed(key, "PUT", expires_in)

    def delete(self, keys: list[str]) -> None:
        from google.api_core.exceptions import NotFound

        for key in keys:
            with contextlib.suppress(NotFound):
                self._bucket.blob(key).delete()

    def env_file_arn(self, key: str) -> str | None:
        return None  # ECS environmentFiles can only name S3 objects


class _ResumableUpload:
    """The ``PartSink`` of a GCS object: one simple upload when it fits in a part, else a resumable
    upload session (``BlobWriter`` speaks the protocol: it sends whole chunks of ``PART_SIZE`` and
    keeps the rest of a part for the next one or for the final request)."""

    def __init__(self, blob: Any, url: str) -> None:
        self.blob = blob
        self.url = url
        self.writer: Any = None

    def put(self, data: bytearray) -> None:
        self.blob.upload_from_string(bytes(data), content_type="application/gzip")  # bytes or str only

    def start(self) -> None:
        self.writer = self.blob.open("wb", chunk_size=PART_SIZE, content_type="application/gzip")

    def upload_part(self, number: int, data: bytearray) -> None:
        self.writer.write(data)

    def complete(self, parts: list[None]) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.terminate()  # cancels the session: the uploaded chunks are dropped

    def delete(self) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.blob.delete()


def _credentials(config: StorageConfig) -> tuple[Any, str | None]:
    from google.oauth2 import service_account

    info: dict[str, Any] | None = None
    if config.gcs_credentials_json_path:  # Digdag: the path wins over the content
        info = json.loads(Path(config.gcs_credentials_json_path).read_text())
    elif config.secret:
        try:
            info = json.loads(config.secret)
        except ValueError as exc:
            raise CmdExecConfigError(
                f"temporal storage connection {config.conn_id!r}: the password must hold the service account "
                "JSON (Digdag gcs.credentials.json.content); it is not valid JSON"
            ) from exc
    if info is None:
        import google.auth

        credentials, project = google.auth.default()
        return credentials, project
    # google-auth leaves this classmethod unannotated.
    credentials = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
    return credentials, info.get("project_id")
