"""Upload a stream of unknown length while it is being written: in parts, a few at a time.

``PartedUpload`` is the writable that ``TemporalStorage.upload_stream`` hands out. What is written to
it is copied into a part buffer of exactly ``PART_SIZE`` bytes (writes are cut where a part ends);
each full part goes to a thread that uploads it while the writer fills the next one. At most
``workers`` parts are uploading and one is being filled, and their buffers are reused part after
part: memory stays at ``(workers + 1) * PART_SIZE`` whatever the stream's length, and no large
block is allocated and freed per part (see ``blocks.ReusedBlocks``).

The storage side is a ``PartSink``: S3 multipart uploads (parts in parallel) or GCS resumable uploads
(one worker, so chunks go in order). A stream that never fills one part is sent as one plain upload.
The object appears only when the ``with`` block ends without error; on any error, kill or timeout the
upload is aborted and the key deleted, so no object and no stored part stays behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Protocol

from airflow_cmdexec_provider.blocks import ReusedBlocks
from airflow_cmdexec_provider.exceptions import BackendError

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger(__name__)

# S3's smallest part (but the last), and a multiple of the 256 KiB unit of GCS resumable chunks: the
# least memory per part that both accept.
PART_SIZE = 5 << 20
MAX_PARTS = 10_000  # the S3 limit (about 50 GB of archive); GCS has none, the same cap keeps one rule


class PartSink(Protocol):
    """One object being uploaded: what ``PartedUpload`` calls, always in this order."""

    url: str  # for messages: s3://bucket/key, gs://bucket/key

    def put(self, data: bytearray) -> None:
        """The whole object in one request (the stream was shorter than one part)."""

    def start(self) -> None:
        """Begin a multi-part upload, before the first part."""

    def upload_part(self, number: int, data: bytearray) -> Any:
        """Upload part ``number`` (1, 2, ...); runs in a worker thread. Returns what ``complete`` needs.
        ``data`` is reused for a later part once this returns: keep no reference to it."""

    def complete(self, parts: list[Any]) -> None:
        """Assemble the object from the parts' results, in part order."""

    def abort(self) -> None:
        """Drop the unfinished upload (and its stored parts). Called once no part upload is running."""

    def delete(self) -> None:
        """Delete the object if it exists (an error may come after the storage made it)."""


class PartedUpload:
    """A writable (``write``) that uploads what it gets in parts while it is written; see the module doc."""

    def __init__(self, sink: PartSink, workers: int) -> None:
        self.sink = sink
        self.workers = workers
        self._blocks = ReusedBlocks(PART_SIZE, self._send)
        self._pool: ThreadPoolExecutor | None = None  # started with the first full part
        self._uploading: dict[Future[Any], bytearray] = {}  # the part each upload reads
        self._parts: list[Future[Any]] = []

    def write(self, data: bytes) -> int:
        self._blocks.write(data)
        return len(data)

    def _send(self, part: bytearray) -> None:
        if self._pool is None:
            self._call(self.sink.start)
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="cmdexec-upload")
        if len(self._parts) == MAX_PARTS:
            raise BackendError(
                f"the archive for {self.sink.url} is larger than {MAX_PARTS} parts of {PART_SIZE >> 20} MiB: "
                "ship a smaller project (list large files that the command does not need in .digdagignore)"
            )
        while len(self._uploading) >= self.workers:
            done, _ = wait(self._uploading, return_when=FIRST_COMPLETED)
            for future in done:
                self._result(future)  # a failed part stops the upload now, not at the end
                self._blocks.reuse(self._uploading.pop(future))
        future = self._pool.submit(self.sink.upload_part, len(self._parts) + 1, part)
        self._parts.append(future)
        self._uploading[future] = part

    def finish(self) -> None:
        """Send what is left and make the object."""
        rest = self._blocks.rest()
        if self._pool is None:
            self._call(self.sink.put, rest if rest is not None else bytearray())
            return
        if rest is not None:
            self._send(rest)
        results = [self._result(future) for future in self._parts]
        self._pool.shutdown()
        self._call(self.sink.complete, results)

    def abort(self) -> None:
        """Stop: wait for the part uploads that are running, then drop the upload and any object."""
        self._blocks.drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._call_quietly(self.sink.abort)
        self._call_quietly(self.sink.delete)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.finish()
        except BaseException:
            self.abort()
            raise

    def _result(self, future: Future[Any]) -> Any:
        try:
            return future.result()
        except Exception as exc:
            raise BackendError(f"upload of {self.sink.url} failed: {describe(exc)}") from exc

    def _call(self, step: Callable[..., Any], *args: Any) -> Any:
        try:
            return step(*args)
        except Exception as exc:
            raise BackendError(f"upload of {self.sink.url} failed: {describe(exc)}") from exc

    def _call_quietly(self, step: Callable[[], None]) -> None:
        """Clean-up after an error: report its own failure, never hide the error being handled."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - whatever failed, the original error must come out
            log.warning("could not clean up the unfinished upload of %s: %s", self.sink.url, describe(exc))


def describe(exc: BaseException) -> str:
    """An AWS/GCS error as ``Code: Message`` when the SDK gives one, else its text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc)
