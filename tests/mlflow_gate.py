"""An HTTP gate between a job and the MLflow server that holds one chosen request.

A job killed "between two MLflow calls" has to be stopped exactly there: freezing it after a
time slice overshoots a window of a few milliseconds on a busy machine. The job talks to the
gate instead of the server; the gate forwards every request until one matches what the test
waits for, and holds that one unanswered. The job is then blocked in the call, the server has
seen everything before it and nothing after, and the test reads the server's state and kills
the job: exactly what a SIGKILL just before that request leaves.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Headers that belong to one connection, not to the request (RFC 9110, 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
Match = Callable[[str, str, Any], bool]  # method, path, JSON body (None if not JSON) -> hold it?


class MlflowGate:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self._match: Match | None = None
        self._lock = threading.Lock()
        self.held = threading.Event()
        self.held_request: tuple[str, str, Any] | None = None
        self._closing = threading.Event()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def hold(self, match: Match) -> None:
        """Holds the requests ``match`` accepts unanswered; lets the ones held before through."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self.held.clear()
            self.held_request = None
            self._match = match

    def wait_held(self, timeout: float) -> tuple[str, str, Any]:
        if not self.held.wait(timeout):
            raise TimeoutError(f"no request matched in {timeout}s")
        return self.held_request

    def _hold_until(self, method: str, path: str, body: Any) -> threading.Event | None:
        """The event that releases this request, or None to forward it now."""
        with self._lock:
            if self._match is None or not self._match(method, path, body):
                return None
            if not self.held.is_set():
                self.held_request = (method, path, body)
                self.held.set()
            return self._release

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list, bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self._body()
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                release = gate._hold_until(self.command, self.path, parsed)
                if release is not None:
                    release.wait()  # the job waits in the call: the test reads the state, kills it
                    if gate._closing.is_set():
                        self.close_connection = True
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                status, response_headers, content = gate._forward(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in response_headers:
                    if key.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def _body(self) -> bytes:
                if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

            def log_message(self, format: str, *args: Any) -> None:  # "format": the base's name
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[MlflowGate]:
        self._thread.start()
        try:
            yield self
        finally:
            self._closing.set()
            self._release.set()
            self._server.shutdown()
            self._server.server_close()
