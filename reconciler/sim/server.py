"""Serve a simulator's ``handle(request) -> response`` function over real HTTP on loopback.

The server hands every request to an optional ``observer`` twice: ``("received", n, request)`` before
the simulator applies it, and ``("handled", n, request)`` after it has been applied but before the
answer is written. The crash-consistency tests use these two points to kill the client process.
When the simulator raises an ``httpx.TransportError`` (an injected ``timeout`` or ``reset`` fault) the
server closes the connection without answering, as a dropped connection looks from the client.
``n`` counts requests from 1 across the server's life (share a :class:`RequestCounter` between two
servers to count across both).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from reconciler.sim.wire import Wire

__all__ = ["Handler", "Observer", "RequestCounter", "SimServer"]

Handler = Callable[[httpx.Request], httpx.Response]
_POLL_SECONDS = 0.02
Observer = Callable[[str, int, httpx.Request], None]


class RequestCounter:
    """A thread-safe counter of external requests, shareable between servers."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    @property
    def value(self) -> int:
        with self._lock:
            return self._n


class SimServer:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 (port 0 picks a free one) in a daemon thread."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        observer: Observer | None = None,
        counter: RequestCounter | None = None,
        wire: Wire | None = None,
    ) -> None:
        self.handler = handler
        self.wire = wire or Wire()
        self.observer = observer
        self.counter = counter or RequestCounter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._request_handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimServer:
        # shutdown() waits for the loop to look at its flag: every 0.5 s by default, which was half a
        # second per server for every test on loopback.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(_POLL_SECONDS,), name="sim-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        n = self.counter.next()
        with self._lock:
            if self.observer is not None:
                self.observer("received", n, request)
            response = self.handler(request)
            response.read()
            if self.observer is not None:
                self.observer("handled", n, request)
        return response

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed
            # ACK of the headers: about 40 ms per keep-alive request on Linux loopback.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host, port = server._httpd.server_address[:2]
                request = httpx.Request(
                    self.command,
                    f"http://{host!s}:{port}{self.path}",
                    headers=[(k, v) for k, v in self.headers.items() if k.lower() != "host"],
                    content=body,
                )
                try:
                    response = server.wire.carry(server._dispatch, request)
                except httpx.TransportError:  # a simulated timeout or reset: hang up without answering
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                except Exception as exc:  # a simulator bug must surface as a 500, not a hang
                    response = httpx.Response(500, text=f"simulator error: {exc!r}")
                content = response.content
                # The simulator's own Date (its clock) when it sent one, else this server's.
                self.send_response_only(response.status_code)
                if "date" not in response.headers:
                    self.send_header("Date", self.date_time_string())
                for key, value in response.headers.items():
                    if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if content and self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: tests and the demo print what matters themselves

        return _Handler
