"""What the outside world learns about cycles: health pings and alerts anywhere (metrics: :mod:`.metrics`).

Both sit *around* the cycle and can never change its outcome: the pinger and the alerter swallow
every error (logging ``health.ping_failed`` / ``alert.failed``), and :func:`write_metrics` returns
``False`` instead of raising. The URLs of the health check and of the alerts are themselves secrets
(anyone holding them can post), so both are registered with the log redactor.

Health pings follow healthchecks.io's protocol: ``/start`` when a cycle starts; the URL itself when the
cycle did its job, even when it parked bad records (they are listed in the ping's body: a deal without
an account is a sales mistake, not an outage); ``/<exit code>`` when it could not (an API down, the
guard refusing, credentials rejected: ``/1``, ``/78``), and likewise when the command itself exits 75 or
78; ``/log`` (no status change) when a stop interrupted the cycle.

Alerts go through apprise (``mailto://``, ``msteams://``, ``slack://``, ``ntfy://`` ...); a plain
``http(s)://`` URL gets the Slack-compatible ``POST {"text": ...}``. Each parked item is announced once,
however often it is re-parked, until it is no longer parked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Protocol

import httpx

from reconciler.logs import event, redactor
from reconciler.metrics import write_metrics
from reconciler.model import CycleReport

__all__ = [
    "FAILING_OUTCOMES",
    "Alerter",
    "HealthPinger",
    "MemoryState",
    "StateStore",
    "health_ping",
    "load_apprise",
    "write_metrics",
]

#: Outcomes that count towards the "cycles keep failing" alert. ``refused`` is included: the mass-change
#: guard refuses again on every cycle until someone looks, which is exactly what an alert is for.
FAILING_OUTCOMES = frozenset({"failed", "refused"})
#: Outcomes of a cycle that did its job (parked records are the data's problem, not the cycle's).
DONE_OUTCOMES = frozenset({"ok", "pending", "parked"})

_DEFAULT_TIMEOUT = 10.0
_MAX_LISTED = 20
_MAX_ERROR = 200


@contextlib.contextmanager
def load_apprise() -> Iterator[ModuleType]:
    """apprise (imported only when an alert URL needs it: it is slow), used inside this context.

    apprise loads its plugins lazily, and one imports ``imghdr``, deprecated since Python 3.11; under
    ``-W error`` that warning would be fatal, so every use of apprise sits inside this context.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        yield apprise


def _is_success(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


def _parked_lines(parked: Sequence[tuple[str, str]]) -> list[str]:
    lines = [f"• {key}: {_one_line(error)}" for key, error in parked[:_MAX_LISTED]]
    if len(parked) > _MAX_LISTED:
        lines.append(f"… and {len(parked) - _MAX_LISTED} more")
    return lines


def health_ping(report: CycleReport, parked: Sequence[tuple[str, str]] = ()) -> tuple[str, str]:
    """Pure: the path suffix (``""``, ``/log`` or ``/<exit code>``) and body of the ping for ``report``.

    ``parked`` is every item parked now, ``(key, error)``; they go in the body of a success ping.
    """
    body = [report.summary()]
    if parked:
        body.append(f"{len(parked)} item(s) parked (data to fix, not an outage; see `reconciler status`):")
        body += _parked_lines(parked)
    if report.outcome in DONE_OUTCOMES:
        suffix = ""
    elif report.outcome == "interrupted":
        suffix = "/log"
    else:
        suffix = f"/{report.exit_code or 1}"
    return suffix, "\n".join(body)


class HealthPinger:
    """Pings a healthchecks.io-style URL (see the module docstring); a missing URL makes it a no-op.

    Errors are logged as ``health.ping_failed`` and swallowed; each method returns True on a 2xx answer.
    """

    def __init__(self, http: httpx.Client, url: str | None, *, timeout: float = _DEFAULT_TIMEOUT) -> None:
        self._http = http
        self._url = url.rstrip("/") if url else None
        self._timeout = timeout
        redactor.add(self._url)

    def start(self) -> bool:
        """A cycle starts (healthchecks.io measures its duration and notices one that never ends)."""
        return self._send("/start", None)

    def finished(self, report: CycleReport, parked: Sequence[tuple[str, str]] = ()) -> bool:
        """The cycle's outcome: success (parked items in the body), ``/log`` or ``/<exit code>``."""
        suffix, body = health_ping(report, parked)
        return self._send(suffix, body)

    def exited(self, code: int, message: str) -> bool:
        """The command exits ``code`` (75 lock held, 78 configuration) without a cycle to report."""
        return self._send(f"/{code}", message)

    def _send(self, suffix: str, body: str | None) -> bool:
        if self._url is None:
            return False
        url = self._url + suffix
        try:
            if body is None:
                response = self._http.get(url, timeout=self._timeout)
            else:
                response = self._http.post(url, content=body.encode(), timeout=self._timeout)
        except Exception as exc:  # any failure here is the monitor's problem, not the cycle's
            event("health.ping_failed", "WARNING", ping=suffix or "/", error=repr(exc))
            return False
        if not _is_success(response):
            event("health.ping_failed", "WARNING", ping=suffix or "/", status=response.status_code)
            return False
        return True


class StateStore(Protocol):
    """Small persistent key/value state (the SQLite store implements it)."""

    def get_state(self, key: str) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...


class MemoryState:
    """An in-memory :class:`StateStore` for tests and for ``demo``."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get_state(self, key: str) -> str | None:
        return self.values.get(key)

    def set_state(self, key: str, value: str) -> None:
        self.values[key] = value


_STREAK = "alert.failure_streak"
_FAILING_ALERTED = "alert.failing_alerted"
_ANNOUNCED = "alert.parked_announced"
_LAST_SENT = "alert.last_sent."


class _ForwardAppriseLogs(logging.Handler):
    """apprise logs through stdlib logging; pass its records on as redacted DEBUG events."""

    def emit(self, record: logging.LogRecord) -> None:
        event("alert.apprise", "DEBUG", level=record.levelname, text=record.getMessage())


def _plain_webhook(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


class Alerter:
    """Alerts for parked items and for cycles that keep failing, to one URL (see the module docstring).

    * :meth:`parked` gets every item parked now and announces, in one message, those not announced yet.
      An item stays announced while it stays parked, so a mapping edit or a ``retry`` that parks it
      again does not repeat it; while the ``parked`` alert is rate limited the items simply wait.
    * :meth:`cycle_result` counts consecutive failing cycles (:data:`FAILING_OUTCOMES`) in the state,
      alerts once they reach ``failure_threshold`` (and reminds at most once per ``min_interval`` while
      they go on), and sends one recovery message after a failing alert went out. An ``interrupted``
      cycle (a stop) neither counts nor resets the streak.

    Each alert kind is sent at most once per ``min_interval`` seconds, across restarts (the timestamp is
    in the state). Nothing here raises; errors are logged as ``alert.failed``. The text is built only from
    what the caller passes (item keys, error messages, the report summary), never from settings.
    """

    def __init__(
        self,
        http: httpx.Client,
        url: str | None,
        state: StateStore,
        clock: Callable[[], float] = time.time,
        min_interval: float = 3600,
        failure_threshold: int = 3,
        *,
        timeout: float = _DEFAULT_TIMEOUT,
        source: str | None = None,
    ) -> None:
        """Eight parameters on purpose: the transport, the URL and the state it needs, then one seam each
        for tests (clock) and one setting each for how often and after how many failures it speaks."""
        self._http = http
        self._url = url or None
        self._state = state
        self._clock = clock
        self._min_interval = min_interval
        self._threshold = max(1, failure_threshold)
        self._timeout = timeout
        self._source = source or f"reconciler@{socket.gethostname()}"
        redactor.add(self._url)

    # -- public -------------------------------------------------------------------------------------

    def parked(self, items: Sequence[tuple[str, str]]) -> None:
        """Announce the ``(key, error)`` items parked now that were not announced (call every cycle)."""
        if self._url is None:
            return
        try:
            self._parked(items)
        except Exception as exc:  # alerting must never break the cycle
            event("alert.failed", "WARNING", kind="parked", error=repr(exc))

    def cycle_result(self, report: CycleReport) -> None:
        """Track failing streaks from ``report`` and alert or announce the recovery."""
        if self._url is None:
            return
        try:
            self._cycle_result(report)
        except Exception as exc:  # alerting must never break the cycle
            event("alert.failed", "WARNING", kind="cycle", error=repr(exc))

    # -- internals ----------------------------------------------------------------------------------

    def _parked(self, items: Sequence[tuple[str, str]]) -> None:
        announced = set(self._load_announced())
        now = dict(items)
        still = announced & now.keys()  # an item no longer parked is forgotten: parked again, told again
        new = [(key, error) for key, error in now.items() if key not in still]
        if new and self._allowed("parked") and self._post("parked", self._parked_text(new)):
            still |= {key for key, _ in new}
        if still != announced:
            self._state.set_state(_ANNOUNCED, json.dumps(sorted(still)))

    def _parked_text(self, items: Sequence[tuple[str, str]]) -> str:
        noun = "item" if len(items) == 1 else "items"
        lines = [
            f"{self._source}: {len(items)} {noun} parked (see `reconciler status`; `reconciler retry KEY`)"
        ]
        return "\n".join(lines + _parked_lines(items))

    def _cycle_result(self, report: CycleReport) -> None:
        streak = _int(self._state.get_state(_STREAK))
        if report.outcome == "interrupted":
            return
        if report.outcome in FAILING_OUTCOMES:
            streak += 1
            self._state.set_state(_STREAK, str(streak))
            if streak >= self._threshold and self._allowed("failing"):
                text = f"{self._source}: {streak} cycles in a row did not succeed. Last: {report.summary()}"
                if self._post("failing", text):
                    self._state.set_state(_FAILING_ALERTED, "1")
            return
        if streak:
            self._state.set_state(_STREAK, "0")
        if self._state.get_state(_FAILING_ALERTED) == "1":
            # Paired one-to-one with a failing alert that went out, so it is rate limited by that one.
            text = f"{self._source}: recovered after {streak} failing cycles. Now: {report.summary()}"
            if self._post("recovered", text):
                self._state.set_state(_FAILING_ALERTED, "")

    def _allowed(self, kind: str) -> bool:
        last = self._state.get_state(_LAST_SENT + kind)
        if last is None or last == "":
            return True
        try:
            return self._clock() - float(last) >= self._min_interval
        except ValueError:
            return True

    def _post(self, kind: str, text: str) -> bool:
        assert self._url is not None
        try:
            if _plain_webhook(self._url):
                response = self._http.post(self._url, json={"text": text}, timeout=self._timeout)
                if not _is_success(response):
                    event("alert.failed", "WARNING", kind=kind, status=response.status_code)
                    return False
            elif not self._apprise(text):
                event("alert.failed", "WARNING", kind=kind, error="apprise could not deliver it")
                return False
        except Exception as exc:  # the service is down: keep the alert for the next call
            event("alert.failed", "WARNING", kind=kind, error=repr(exc))
            return False
        self._state.set_state(_LAST_SENT + kind, repr(self._clock()))
        event("alert.sent", kind=kind)
        return True

    def _apprise(self, text: str) -> bool:
        assert self._url is not None
        title, _, body = text.partition("\n")
        logger = logging.getLogger("apprise")
        forward, propagate = _ForwardAppriseLogs(), logger.propagate
        logger.addHandler(forward)
        logger.propagate = False
        try:
            with load_apprise() as apprise:
                sender = apprise.Apprise()
                if not sender.add(self._url):
                    raise ValueError("apprise does not understand RECONCILER_NOTIFY_URL")
                sent = sender.notify(
                    body=body or title,
                    title=title,
                    body_format=apprise.NotifyFormat.TEXT,
                    timeout=self._timeout,
                )
            return bool(sent)
        finally:
            logger.removeHandler(forward)
            logger.propagate = propagate

    def _load_announced(self) -> list[str]:
        raw = self._state.get_state(_ANNOUNCED)
        try:
            data = json.loads(raw) if raw else []
        except ValueError:
            return []
        return [str(key) for key in data] if isinstance(data, list) else []


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_ERROR else flat[: _MAX_ERROR - 1] + "…"
