"""HTTP front of the ECS emulator: moto's WSGI application behind a small WSGI middleware.

There is no separate proxy: the werkzeug server started here IS the endpoint the code under
test talks to, so presigned S3 URLs (signed for this host:port) and bodies of any size go
straight to moto untouched.  Only ECS JSON-1.1 calls (``X-Amz-Target:
AmazonEC2ContainerServiceV20141113.<Operation>``) are looked at: recorded, throttled or failed
on request, and (DescribeTasks) given the ``MISSING`` failures real ECS returns.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import ThreadedWSGIServer

if TYPE_CHECKING:  # pragma: no cover
    from .emulator import EcsEmulator

log = logging.getLogger("tests.ecs_emulator")

ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
AMZ_JSON = "application/x-amz-json-1.1"

# The emulator that received the request being handled in this thread (moto's backend methods
# are patched process-wide; they ask this to know which emulator they work for).
current = threading.local()


class _QuietHandler(MotoRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like AWS

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        log.log(logging.WARNING if type == "error" else logging.DEBUG, message, *args)


class TrackingWSGIServer(ThreadedWSGIServer):
    """Threaded werkzeug server that knows its connection threads, so it can end them."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: Any, thread_prefix: str) -> None:
        super().__init__(host, port, app, handler=_QuietHandler)
        self._thread_prefix = thread_prefix
        self._conn_lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._n = 0

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        log.log(logging.WARNING if type == "error" else logging.DEBUG, message, *args)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._n += 1
            t = threading.Thread(
                target=self._serve_connection,
                args=(request, client_address),
                name=f"{self._thread_prefix}-http-{self._n}",
                daemon=True,
            )
            self._conns[t] = request
        t.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - as socketserver does: reported, and the server goes on
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conns.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float = 5.0) -> list[threading.Thread]:
        """Shut down every open client connection and join its thread; returns threads still alive."""
        with self._conn_lock:
            items = list(self._conns.items())
        for _, sock in items:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        alive = []
        for t, _ in items:
            t.join(timeout)
            if t.is_alive():
                alive.append(t)
        return alive


def _json_body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


class EcsInterceptor:
    """WSGI middleware in front of moto's DomainDispatcherApplication."""

    def __init__(self, emulator: EcsEmulator) -> None:
        self.emulator = emulator
        self.app = DomainDispatcherApplication(create_backend_app)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _respond(
        start_response: Callable[..., Any],
        status: str,
        body: bytes,
        content_type: str = AMZ_JSON,
        extra: Iterable[tuple[str, str]] = (),
    ) -> list[bytes]:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            *extra,
        ]
        start_response(status, headers)
        return [body]

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        stream = environ["wsgi.input"]
        length = environ.get("CONTENT_LENGTH") or ""
        if length.strip().isdigit():
            return stream.read(int(length))
        if environ.get("wsgi.input_terminated"):
            return stream.read()
        return b""

    def _call_buffered(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = status
            captured["headers"] = headers
            return lambda data: None

        chunks = self.app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        return captured["status"], captured["headers"], body

    # -- WSGI ----------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        current.emulator = self.emulator
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        if not target.startswith(ECS_TARGET_PREFIX):
            return self.app(environ, start_response)

        operation = target[len(ECS_TARGET_PREFIX) :]
        raw = self._read_body(environ)
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        environ.pop("wsgi.input_terminated", None)
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {"__unparsable__": raw.decode("utf-8", "replace")}

        current.client_token = request.get("clientToken") if operation == "RunTask" else None
        decision = self.emulator._on_ecs_request(operation, request)
        if decision == "throttle":
            body = _json_body({"__type": "ThrottlingException", "message": "Rate exceeded"})
            return self._respond(
                start_response, "400 Bad Request", body, extra=[("x-amzn-ErrorType", "ThrottlingException")]
            )
        if isinstance(decision, dict):  # a canned successful answer (fail_next_run_task)
            return self._respond(start_response, "200 OK", _json_body(decision))

        if operation == "DescribeTasks":
            status, headers, body = self._call_buffered(environ)
            if status.startswith("200"):
                body = self._add_missing_failures(request, body)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
            start_response(status, headers)
            return [body]
        return self.app(environ, start_response)

    @staticmethod
    def _add_missing_failures(request: dict[str, Any], body: bytes) -> bytes:
        """Real DescribeTasks answers unknown tasks with failures=[{arn, reason: MISSING}]."""
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        found = doc.get("tasks") or []
        found_ids = {t.get("taskArn", "").rsplit("/", 1)[-1] for t in found}
        failures = list(doc.get("failures") or [])
        for ref in request.get("tasks") or []:
            if ref.rsplit("/", 1)[-1] not in found_ids:
                failures.append({"arn": ref, "reason": "MISSING"})
        # moto matches ids by substring; keep only the tasks that were asked for.
        asked = {ref.rsplit("/", 1)[-1] for ref in request.get("tasks") or []}
        doc["tasks"] = [t for t in found if t.get("taskArn", "").rsplit("/", 1)[-1] in asked]
        doc["failures"] = failures
        return json.dumps(doc).encode()
