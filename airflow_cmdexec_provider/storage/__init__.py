"""Temporal storage that ships projects to ECS tasks and their outputs back: S3 or GCS."""

from __future__ import annotations

from airflow_cmdexec_provider.config import StorageConfig
from airflow_cmdexec_provider.storage.base import TemporalStorage


def open_storage(config: StorageConfig) -> TemporalStorage:
    """Return the storage for a config; the cloud client libraries are imported only here."""
    if config.type == "s3":
        from airflow_cmdexec_provider.storage.s3 import S3TemporalStorage

        return S3TemporalStorage(config)
    from airflow_cmdexec_provider.storage.gcs import GcsTemporalStorage

    return GcsTemporalStorage(config)
