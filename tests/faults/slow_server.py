"""A loopback HTTP server that misbehaves with time: it drips, stalls, or asks to be called back tomorrow.

Paths: ``/drip`` sends its headers, then one byte every ``drip_every`` seconds (a body that never ends
in practice); ``/silent`` never answers; ``/later`` is a 429 with ``Retry-After: 100000``; ``/ok`` is
``{}``. ``hits`` counts requests per path. Used by the deadline tests, in-process and through the CLI.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["SlowServer"]


class SlowServer:
    def __init__(self, drip_every: float = 0.2) -> None:
        self.drip_every = drip_every
        self.hits: Counter[str] = Counter()
        self.closing = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.answer(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0].rstrip("/")
        kind = next((k for k in ("drip", "silent", "later", "ok") if path.endswith("/" + k)), "drip")
        self.hits[kind] += 1
        try:
            if kind == "silent":
                self.closing.wait(60)
                return
            if kind == "later":
                handler.send_response(429)
                handler.send_header("Retry-After", "100000")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            if kind == "ok":
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", "2")
                handler.end_headers()
                handler.wfile.write(b"{}")
                return
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            handler.wfile.flush()
            for _ in range(100000):
                if self.closing.wait(self.drip_every):
                    return
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def start(self) -> SlowServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> SlowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def elapsed(since: float) -> float:
    return time.monotonic() - since
