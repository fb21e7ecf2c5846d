"""The temporal storage protocol: what the ECS backend needs from S3 or GCS."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from airflow_cmdexec_provider.storage.parts import PartedUpload


class TemporalStorage(Protocol):
    """Objects under one bucket; presigned URLs let a container read and write without credentials."""

    type: str
    bucket: str

    def upload_file(self, key: str, path: Path) -> None:
        """Upload a local file (streamed, never read into memory as a whole)."""

    def upload_stream(self, key: str) -> PartedUpload:
        """A writable that uploads the object in parts while it is written (use it as a context manager:
        the object exists once the ``with`` block ends without error; on any error it is aborted)."""

    def download_file(self, key: str, path: Path) -> bool:
        """Download to a local file; return False when the object does not exist."""

    def presigned_get(self, key: str, expires_in: int) -> str: ...

    def presigned_put(self, key: str, expires_in: int) -> str: ...

    def delete(self, keys: list[str]) -> None:
        """Delete objects; missing ones are fine."""

    def env_file_arn(self, key: str) -> str | None:
        """The ARN an ECS ``environmentFiles`` entry can name, or None if this storage cannot serve one."""
