"""Shipping a task's files through temporal storage, for backends whose container runs elsewhere.

The ECS and Kubernetes backends do the same around their container (``container_script.py``):
before it starts, the project and the IO dir go into a tar.gz in the temporal storage and the
container gets a presigned GET URL for it and a presigned PUT URL for its outputs; after it ended,
the output archive is downloaded and unpacked into the IO dir. This module is that part, once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import uuid
from pathlib import Path

from airflow_cmdexec_provider.aws import credentials_expiry
from airflow_cmdexec_provider.backends.base import CommandRequest, CommandResult, LineSink
from airflow_cmdexec_provider.backends.container_script import INPUT_URL_VAR, OUTPUT_URL_VAR
from airflow_cmdexec_provider.config import MAX_PRESIGN_SECONDS, StorageConfig
from airflow_cmdexec_provider.exceptions import BackendError
from airflow_cmdexec_provider.runner.workdir import pack_to, unpack_outputs
from airflow_cmdexec_provider.storage.base import TemporalStorage
from airflow_cmdexec_provider.tempfiles import private_tempdir

log = logging.getLogger(__name__)

DOWNLOAD_URL_SECONDS = 3600  # the container downloads right after it starts: an hour covers a slow start


def object_prefix(storage_config: StorageConfig, request: CommandRequest) -> str:
    """Where one try's objects go: ``PREFIX/<dag>/<task>/<hash of run and map index>/try<N>-<random>``."""
    labels = request.labels
    run_key = hashlib.sha1(f"{labels.get('run_id')}|{labels.get('map_index')}".encode()).hexdigest()[:12]
    parts = [
        storage_config.prefix,
        labels.get("dag_id", "dag"),
        labels.get("task_id", "task"),
        run_key,
        f"try{labels.get('try_number', '1')}-{uuid.uuid4().hex[:8]}",
    ]
    return "/".join(p.strip("/") for p in parts if p)


def url_lifetime(storage: TemporalStorage, configured: int | None, default: int | None, task: str) -> int:
    """A presigned URL's lifetime, honest about temporary signing credentials (review M8)."""
    ttl = min(configured or default or MAX_PRESIGN_SECONDS, MAX_PRESIGN_SECONDS)
    expiry = credentials_expiry(storage.session) if hasattr(storage, "session") else None
    if expiry is not None and expiry < ttl:
        log.warning(
            "%s: the temporal storage signs with temporary AWS credentials that expire in %.0f s; the "
            "presigned URLs stop working then, not after %d s. Long tasks need long-term keys on the "
            "storage connection (Login/Password) or a longer credential lifetime",
            task,
            expiry,
            ttl,
        )
    return ttl


def presigned_urls(
    *,
    input_storage: TemporalStorage,
    input_config: StorageConfig,
    input_key: str,
    output_storage: TemporalStorage,
    output_config: StorageConfig,
    output_key: str,
    output_lifetime: int | None,
    task: str,
) -> dict[str, str]:
    """The container's two URLs, as the environment variables ``container_script`` reads.

    They travel as environment variables and reach curl on its stdin: never on a command line.
    The output URL must stay valid for the task's whole life (Digdag's 600 s default lost the
    outputs of long tasks, spec §6.11).
    """
    return {
        INPUT_URL_VAR: input_storage.presigned_get(
            input_key,
            url_lifetime(input_storage, input_config.direct_download_expiration, DOWNLOAD_URL_SECONDS, task),
        ),
        OUTPUT_URL_VAR: output_storage.presigned_put(
            output_key,
            url_lifetime(output_storage, output_config.direct_upload_expiration, output_lifetime, task),
        ),
    }


def upload_project(
    request: CommandRequest,
    storage: TemporalStorage,
    key: str,
    where: str,
    log_line: LineSink,
    cancel: threading.Event | None = None,
) -> None:
    """Pack the project and the IO dir into a tar.gz streamed into the storage under ``key`` while it
    is packed (stopped, and the partial upload aborted, when ``cancel`` is set)."""
    _warn_if_dag_folder(request.project_dir, where, log_line)
    with storage.upload_stream(key) as upload:
        packed = pack_to(upload, request.project_dir, request.io_dir, cancel=cancel)
    log_line(
        f"Shipped the project to {storage.type}://{storage.bucket}/{key} "
        f"({packed.entries} entries, {packed.size / 1e6:.1f} MB)"
    )


def download_outputs(
    storage: TemporalStorage, key: str, io_dir: Path, result: CommandResult, what: str
) -> None:
    """Download the output archive into the IO dir. Missing outputs fail a successful command."""
    with private_tempdir("output") as tmp:
        archive = tmp / "output.tar.gz"
        if storage.download_file(key, archive):
            unpack_outputs(archive, io_dir)
        elif result.exit_code == 0:
            raise BackendError(f"{what} exited 0 but uploaded no output archive ({key}); see the log above")


def _warn_if_dag_folder(project_dir: Path, where: str, log_line: LineSink) -> None:
    """Shipping the whole DAG folder ships every team's DAGs: say so, with its size (review H6)."""
    from airflow.configuration import conf as airflow_conf

    dags_folder = airflow_conf.get("core", "dags_folder", fallback=None)
    if not dags_folder or Path(dags_folder).resolve() != project_dir:
        return
    files = size = 0
    for root, _, names in os.walk(project_dir):
        for name in names:
            files += 1
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(root, name)).st_size
    log_line(
        f"WARNING: the project of this task is the whole DAG folder {project_dir} ({files} files, "
        f"{size / 1e6:.1f} MB): all of it is shipped to {where}. Set project_dir to the task's own folder"
    )
