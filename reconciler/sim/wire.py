"""The network between the reconciler and a simulator: a delay per request, and what was in flight when.

A :class:`Wire` wraps a simulator's ``handle``: each request waits ``latency`` seconds (outside the
simulator's lock, so concurrent requests wait concurrently, as on a real network) and is recorded with
the moments it arrived and was answered. Tests read ``peak`` (most requests in flight at once) and
``exchanges`` (to check, say, that no request reached the server while a ``Retry-After`` was running);
the benchmark uses ``latency`` to show what bounded concurrency buys over one call at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

__all__ = ["Exchange", "Wire"]


@dataclass(frozen=True)
class Exchange:
    """One request as the server saw it: when it arrived and when it was answered (``time.monotonic``)."""

    method: str
    path: str
    arrived: float
    answered: float
    status: int  # 0: the connection was dropped (an injected timeout or reset)


class Wire:
    """A delay per request and a record of the requests in flight (thread-safe)."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.in_flight = 0
        self.peak = 0
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def carry(
        self, handler: Callable[[httpx.Request], httpx.Response], request: httpx.Request
    ) -> httpx.Response:
        """Deliver ``request`` to ``handler`` across the wire: the delay, then the simulator's answer."""
        arrived = time.monotonic()
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        status = 0
        try:
            if self.latency > 0:
                time.sleep(self.latency)
            response = handler(request)
            status = response.status_code
            return response
        finally:
            with self._lock:
                self.in_flight -= 1
                self.exchanges.append(
                    Exchange(request.method, request.url.path, arrived, time.monotonic(), status)
                )

    def reset(self) -> None:
        """Forget the record (the latency stays)."""
        with self._lock:
            self.peak = self.in_flight
            self.exchanges.clear()
