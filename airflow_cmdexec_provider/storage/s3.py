"""S3 temporal storage (Digdag temporal_storage.type = s3) with boto3.

``endpoint`` may be a bare host as in Digdag (``s3.amazonaws.com``) or a URL with scheme and port
(a local S3-compatible server); ``path_style_access`` switches to path-style addressing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_cmdexec_provider.config import StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError
from airflow_cmdexec_provider.storage.parts import PartedUpload, describe

PARALLEL_PARTS = 2  # uploads outpace gzip, so two keep up; each part in flight costs PART_SIZE of memory


class S3TemporalStorage:
    type = "s3"

    def __init__(self, config: StorageConfig, session: Any = None) -> None:
        from botocore.config import Config

        self.config = config
        self.bucket = config.bucket
        self.session = session or _session(config)  # its credentials bound the presigned URLs' life
        self.client = self.session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            region_name=config.region,
            config=Config(
                s3={"addressing_style": "path" if config.path_style_access else "auto"},
                signature_version="s3v4",
                retries={"mode": "standard", "total_max_attempts": 5},
            ),
        )

    def upload_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, key, Config=_transfer_config())
        except Exception as exc:
            raise BackendError(f"upload of s3://{self.bucket}/{key} failed: {describe(exc)}") from exc

    def upload_stream(self, key: str) -> PartedUpload:
        return PartedUpload(_MultipartUpload(self.client, self.bucket, key), PARALLEL_PARTS)

    def download_file(self, key: str, path: Path) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, key, str(path), Config=_transfer_config())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise BackendError(f"download of s3://{self.bucket}/{key} failed: {describe(exc)}") from exc
        return True

    def presigned_get(self, key: str, expires_in: int) -> str:
        return self._presigned("get_object", key, expires_in)

    def presigned_put(self, key: str, expires_in: int) -> str:
        return self._presigned("put_object", key, expires_in)

    def _presigned(self, operation: str, key: str, expires_in: int) -> str:
        url: str = self.client.generate_presigned_url(
            operation, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def delete(self, keys: list[str]) -> None:
        if not keys:
            return
        response = self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        # Quiet mode lists only the failures, and the call itself succeeds: an AccessDenied on
        # DeleteObject would otherwise leave archives with params in the bucket unnoticed (review L7).
        errors = response.get("Errors") or []
        if errors:
            failed = ", ".join(f"{e.get('Key')} ({e.get('Code')}: {e.get('Message')})" for e in errors)
            raise BackendError(f"could not delete s3://{self.bucket}/ objects: {failed}")

    def env_file_arn(self, key: str) -> str | None:
        return f"arn:aws:s3:::{self.bucket}/{key}"


class _MultipartUpload:
    """The ``PartSink`` of an S3 object: PutObject when it fits in one part, else a multipart upload.

    Parts carry a CRC32 checksum as boto3's own transfers do (unless the client is configured to send
    checksums only when required), so S3 verifies every part and the assembled object."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.url = f"s3://{bucket}/{key}"
        self.upload_id: str | None = None
        self.checksum = (
            {"ChecksumAlgorithm": "CRC32"}
            if client.meta.config.request_checksum_calculation == "when_supported"
            else {}
        )

    def put(self, data: bytearray) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data)

    def start(self) -> None:
        response = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self.checksum)
        self.upload_id = response["UploadId"]

    def upload_part(self, number: int, data: bytearray) -> dict[str, Any]:
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            **self.checksum,
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if self.checksum:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

    def complete(self, parts: list[dict[str, Any]]) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )

    def abort(self) -> None:
        self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

    def delete(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


def _transfer_config() -> Any:
    """Two parallel parts: boto3's default of ten costs 30-60 MB of worker memory per transfer."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(max_concurrency=2)


def _session(config: StorageConfig) -> Any:
    """Credentials: static keys, a credentials file, an Airflow aws connection, or the default chain."""
    from airflow_cmdexec_provider.aws import boto_session

    if not (config.access_key_id and config.secret) and config.credentials_file:
        keys = _read_credentials_file(config.credentials_file)
        return boto_session(
            access_key_id=keys["aws_access_key_id"],
            secret_access_key=keys["aws_secret_access_key"],
            aws_conn_id=None,
            region=config.region,
            client_type="s3",
        )
    return boto_session(
        access_key_id=config.access_key_id,
        secret_access_key=config.secret,
        aws_conn_id=config.aws_conn_id,
        region=config.region,
        client_type="s3",
    )


def _read_credentials_file(path: str) -> dict[str, str]:
    """Digdag's ``credentials.file``: a Java properties file with accessKey / secretKey."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    access = values.get("accessKey") or values.get("aws_access_key_id")
    secret = values.get("secretKey") or values.get("aws_secret_access_key")
    if not access or not secret:
        raise BackendError(f"S3 credentials file {path} has no accessKey/secretKey entries")
    return {"aws_access_key_id": access, "aws_secret_access_key": secret}
