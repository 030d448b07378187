"""SIGTERM and SIGINT for ``run-once`` and the daemon: ask the cycle to stop, remember which signal came.

The handler only records the signal and sets the stop event (nothing else is safe inside a handler). The
applier checks that event between actions: the call in flight finishes, nothing new starts, and the
cycle is recorded as ``interrupted``. A second signal while stopping raises :class:`KeyboardInterrupt`
when ``second_aborts`` is set (an impatient Ctrl-C twice): that is as safe as a kill -9, because every
action's intent is committed before its call.

The CLI installs the handlers first thing, before settings, lock and store, so a SIGTERM that arrives
while the process is still starting is not a kill.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopOnSignals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignals:
    """Sets ``stop`` on SIGTERM/SIGINT; :attr:`signum` is the first signal received (or None)."""

    def __init__(self, stop: threading.Event | None = None, *, second_aborts: bool = False) -> None:
        self.stop = stop or threading.Event()
        self.second_aborts = second_aborts
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def signum(self) -> int | None:
        return self.received[0] if self.received else None

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130, 143)."""
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self.stop.is_set() and self.second_aborts:
            raise KeyboardInterrupt
        self.stop.set()

    def install(self) -> StopOnSignals:
        """Install the handlers (main thread only); :meth:`restore` puts the previous ones back."""
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self) -> StopOnSignals:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()
