"""The emulator's HTTP server: plain HTTP/1.1 on loopback, one thread per connection, JSON
answers with Content-Length and streamed answers (watch, log follow) with chunked encoding."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("tests.k8s_emulator")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # email.message.Message: case-insensitive get()
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


class Responder:
    """How a handler answers one request."""

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self.status: int | None = None
        self.on_status: Callable[[int], None] = lambda code: None  # told before the answer is sent

    def _set_status(self, code: int) -> None:
        self.status = code
        self.on_status(code)

    def send(self, code: int, body: bytes, content_type: str) -> None:
        self._set_status(code)
        h = self._handler
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def send_json(self, code: int, obj: Any) -> None:
        self.send(code, json.dumps(obj).encode(), "application/json")

    def stream(self, code: int, content_type: str) -> _Stream:
        self._set_status(code)
        h = self._handler
        h.send_response(code)
        h.send_header("Content-Type", content_type)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        return _Stream(h)


class _Stream:
    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self._ended = False

    def write(self, data: bytes) -> None:
        """Send one chunk now; raises OSError when the client has gone."""
        if data:
            self._handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self._handler.wfile.flush()

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            try:
                self._handler.wfile.write(b"0\r\n\r\n")
                self._handler.wfile.flush()
            except OSError:
                self._handler.close_connection = True

    def client_gone(self) -> bool:
        """True when the client closed its side (nothing more to read and EOF)."""
        sock = self._handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


App = Callable[[Request, Responder], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the API server; clients pool connections
    server: Server

    def version_string(self) -> str:
        return "cmdexec-k8s-emulator"

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=self.headers,
            body=self._read_body(),
        )
        responder = Responder(self)
        try:
            self.server.app(request, responder)
        except OSError:  # the client went away mid-answer
            self.close_connection = True
        except Exception:
            log.exception("Kubernetes emulator: %s %s failed", self.command, parts.path)
            if responder.status is None:
                body = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": "emulator internal error (see the test log)",
                    "reason": "InternalError",
                    "code": 500,
                }
                responder.send_json(500, body)
            self.close_connection = True

    def _read_body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def log_message(self, message_format: str, *args: Any) -> None:
        log.debug("k8s emulator http: %s", message_format % args)


class Server(ThreadingHTTPServer):
    """Threaded HTTP server that knows its open connections, so stop() can end them."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("k8s emulator http: connection from %s ended: %r", client_address, sys.exc_info()[1])

    def close_connections(self) -> None:
        with self._conn_lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
