"""systemd's notify protocol (sd_notify(3)), written by hand: one datagram per message to $NOTIFY_SOCKET.

``READY=1`` once the daemon is up (``Type=notify``), ``STATUS=...`` for ``systemctl status``,
``WATCHDOG=1`` as the keep-alive when the unit sets ``WatchdogSec=``, ``STOPPING=1`` on shutdown.
Without ``$NOTIFY_SOCKET`` (a terminal, tests, the timer's oneshot) every call is a silent no-op, and no
call ever raises: a notification that cannot be sent is logged as ``notify.failed`` and forgotten.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

from reconciler.logs import event

__all__ = ["Notifier"]


class Notifier:
    """Sends sd_notify messages to ``socket_path`` (a file path, or ``@name`` for the abstract namespace).

    ``watchdog_usec`` is systemd's ``$WATCHDOG_USEC`` (``None`` when the unit has no watchdog);
    :attr:`watchdog_interval` derives the ping period from it.
    """

    def __init__(self, socket_path: str | None, *, watchdog_usec: int | None = None) -> None:
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._failing = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build from ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (``$WATCHDOG_PID`` must be us, if set)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        if not pid or pid == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", ""))
            except ValueError:
                usec = None
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: a third of systemd's timeout, or ``None`` without one."""
        return self.watchdog_usec / 3_000_000 if self.watchdog_usec else None

    def ready(self) -> None:
        self.send("READY=1")

    def status(self, text: str) -> None:
        # The protocol is newline-separated assignments: a newline in the text would end it early.
        self.send("STATUS=" + " ".join(text.split()))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def send(self, raw: str) -> None:
        """Send ``raw`` (one or more ``KEY=value`` lines) as one datagram; never raises."""
        if self.socket_path is None:
            return
        address = "\0" + self.socket_path[1:] if self.socket_path.startswith("@") else self.socket_path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(raw.encode())
        except Exception as exc:  # a lost notification must never hurt the daemon
            with self._lock:
                first, self._failing = not self._failing, True
            # Warn once per run of failures (the watchdog pings often); repeats go to DEBUG.
            event(
                "notify.failed", "WARNING" if first else "DEBUG", what=raw.split("=", 1)[0], error=repr(exc)
            )
        else:
            with self._lock:
                self._failing = False
