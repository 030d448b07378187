"""Progress of long work (a first run of thousands of records): done/total, rate and ETA, every ~10 s.

On a terminal it redraws one bar line on stderr; anywhere else (journald, a pipe, a file) it logs a
``progress`` event at INFO, at most one per ``every`` seconds, plus one when the work ends, so a
3,000-record run writes a handful of lines, not one per record. Work that ends before the first
report writes nothing at all. The clock is injected, so tests need no sleeping.

The applier calls it like this::

    progress = Progress.for_stream(len(actions), "applying")
    for action in actions:
        ...
        progress.advance()
    progress.close()

``Progress.none()`` is the variant that reports nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from reconciler.logs import event

__all__ = ["Progress"]

EVERY = 10.0  # seconds between reports
_BAR = 30


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """Counts ``advance`` calls against ``total`` and reports (see the module docstring)."""

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        tty: bool = False,
        clock: Callable[[], float] = time.monotonic,
        every: float = EVERY,
        enabled: bool = True,
    ) -> None:
        self.total = max(0, total)
        self.label = label
        self.done = 0
        self._stream = stream
        self._tty = tty
        self._clock = clock
        self._every = every
        self._enabled = enabled and self.total > 0
        self._started = clock()
        self._last = self._started
        self._reported = False
        self._closed = False

    @classmethod
    def for_stream(
        cls,
        total: int,
        label: str,
        stream: TextIO | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        every: float = EVERY,
    ) -> Progress:
        """A bar when ``stream`` (default stderr) is a terminal, ``progress`` log events otherwise."""
        stream = sys.stderr if stream is None else stream
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        return cls(total, label, stream=stream, tty=tty, clock=clock, every=every)

    @classmethod
    def none(cls) -> Progress:
        """Reports nothing (tests, ``plan``, work known to be small)."""
        return cls(0, "", enabled=False)

    # ---- the three calls ----------------------------------------------------------------------------

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if not self._enabled:
            return
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._report(now)

    def close(self) -> None:
        """The final report (only when an earlier one was made); the terminal line is ended."""
        if self._closed:
            return
        self._closed = True
        if self._enabled and self._reported:
            self._report(self._clock(), final=True)
            if self._tty and self._stream is not None:
                self._stream.write("\n")
                self._stream.flush()

    # ---- numbers and output -------------------------------------------------------------------------

    def rate(self, now: float) -> float:
        elapsed = now - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        return (self.total - self.done) / rate if rate > 0 else None

    def line(self, now: float) -> str:
        """``applying 1,200/3,000 (40%) 19.8/s ETA 1m31s``: what both outputs say."""
        percent = 100 * self.done // self.total if self.total else 100
        eta = self.eta(now)
        left = "ETA " + _duration(eta) if eta is not None and self.done < self.total else "done"
        rate = self.rate(now)
        return f"{self.label} {self.done:,}/{self.total:,} ({percent}%) {rate:.1f}/s {left}"

    def _report(self, now: float, *, final: bool = False) -> None:
        self._reported = True
        if self._tty and self._stream is not None:
            filled = _BAR * self.done // self.total if self.total else _BAR
            bar = "#" * filled + "." * (_BAR - filled)
            self._stream.write(f"\r[{bar}] {self.line(now)}\x1b[K")
            self._stream.flush()
            return
        eta = self.eta(now)
        event(
            "progress",
            label=self.label,
            done=self.done,
            total=self.total,
            rate=round(self.rate(now), 1),
            eta_seconds=None if eta is None or final else round(eta),
        )
