"""What the outside world learns after each cycle: a health ping, chat alerts, and a Prometheus file.

All three sit *after* the cycle and can never change its outcome: the pinger and the alerter swallow
every error (logging ``health.ping_failed`` / ``alert.failed``), and :func:`write_metrics` returns
``False`` instead of raising. The URLs of the health check and of the chat webhook are themselves
secrets (anyone holding them can post), so both are registered with the log redactor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import httpx

from reconciler.logs import event, redactor
from reconciler.model import CycleReport

__all__ = [
    "FAILING_OUTCOMES",
    "Alerter",
    "HealthPinger",
    "MemoryState",
    "StateStore",
    "write_metrics",
]

#: Outcomes that count towards the "cycles keep failing" alert. ``refused`` is included: the mass-change
#: guard refuses again on every cycle until someone looks, which is exactly what an alert is for.
FAILING_OUTCOMES = frozenset({"failed", "refused"})
OUTCOMES = ("ok", "pending", "parked", "refused", "failed")

_DEFAULT_TIMEOUT = 10.0


def _is_success(response: httpx.Response) -> bool:
    return 200 <= response.status_code < 300


class HealthPinger:
    """Pings a healthchecks.io-style URL after each cycle: ``url`` on success, ``url/fail`` on failure.

    A missing URL makes every ping a no-op. Errors are logged as ``health.ping_failed`` and swallowed.
    """

    def __init__(self, http: httpx.Client, url: str | None, *, timeout: float = _DEFAULT_TIMEOUT) -> None:
        self._http = http
        self._url = url or None
        self._timeout = timeout
        redactor.add(self._url)

    def ping(self, ok: bool) -> bool:
        """Ping; True when the check answered 2xx (False also when no URL is configured)."""
        if self._url is None:
            return False
        url = self._url if ok else self._url.rstrip("/") + "/fail"
        try:
            response = self._http.get(url, timeout=self._timeout)
        except Exception as exc:  # any failure here is the monitor's problem, not the cycle's
            event("health.ping_failed", "WARNING", ok=ok, error=repr(exc))
            return False
        if not _is_success(response):
            event("health.ping_failed", "WARNING", ok=ok, status=response.status_code)
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
_PARKED_PENDING = "alert.parked_pending"
_LAST_SENT = "alert.last_sent."
_MAX_LISTED = 20
_MAX_PENDING = 200
_MAX_ERROR = 200


class Alerter:
    """Slack-compatible alerts (``POST {"text": ...}``) for parked items and for cycles that keep failing.

    * :meth:`parked` announces newly parked items in one message; while the ``parked`` alert is rate
      limited the items wait in the state and go out with the next message, so none is lost.
    * :meth:`cycle_result` counts consecutive failing cycles (:data:`FAILING_OUTCOMES`) in the state,
      alerts once they reach ``failure_threshold`` (and reminds at most once per ``min_interval`` while
      they go on), and sends one recovery message after a failing alert went out.

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
        """Announce ``(key, error)`` items parked since the last call (call it every cycle, even empty)."""
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
        pending, more = self._load_pending()
        merged = dict(pending)  # key -> newest error, in the order first seen
        for key, error in items:
            if key in merged or len(merged) < _MAX_PENDING:
                merged[key] = error
            else:
                more += 1
        pending = list(merged.items())
        if not pending:
            return
        if self._allowed("parked") and self._post("parked", self._parked_text(pending, more)):
            self._save_pending([], 0)
        else:
            self._save_pending(pending, more)

    def _parked_text(self, pending: Sequence[tuple[str, str]], more: int) -> str:
        total = len(pending) + more
        noun = "item" if total == 1 else "items"
        lines = [f"{self._source}: {total} {noun} parked (see `reconciler status`; `reconciler retry KEY`)"]
        lines += [f"• {key}: {_one_line(error)}" for key, error in pending[:_MAX_LISTED]]
        hidden = total - min(len(pending), _MAX_LISTED)
        if hidden:
            lines.append(f"… and {hidden} more")
        return "\n".join(lines)

    def _cycle_result(self, report: CycleReport) -> None:
        streak = _int(self._state.get_state(_STREAK))
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
            response = self._http.post(self._url, json={"text": text}, timeout=self._timeout)
        except Exception as exc:  # the webhook is down: keep the alert for the next call
            event("alert.failed", "WARNING", kind=kind, error=repr(exc))
            return False
        if not _is_success(response):
            event("alert.failed", "WARNING", kind=kind, status=response.status_code)
            return False
        self._state.set_state(_LAST_SENT + kind, repr(self._clock()))
        event("alert.sent", kind=kind)
        return True

    def _load_pending(self) -> tuple[list[tuple[str, str]], int]:
        raw = self._state.get_state(_PARKED_PENDING)
        if not raw:
            return [], 0
        try:
            data = json.loads(raw)
            items = [(str(k), str(e)) for k, e in data["items"]]
            return items, int(data.get("more", 0))
        except (ValueError, TypeError, KeyError):
            return [], 0

    def _save_pending(self, items: Iterable[tuple[str, str]], more: int) -> None:
        listed = [[k, e] for k, e in items]
        self._state.set_state(_PARKED_PENDING, json.dumps({"items": listed, "more": more}) if listed else "")


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_ERROR else flat[: _MAX_ERROR - 1] + "…"


# -- Prometheus textfile collector ------------------------------------------------------------------


def write_metrics(
    path: Path,
    report: CycleReport,
    *,
    parked: int,
    last_success_at: float | None,
    totals: Mapping[str, float] | None = None,
    now: float | None = None,
) -> bool:
    """Rewrite ``path`` atomically in Prometheus' text format (node_exporter's textfile collector).

    ``totals`` are the cumulative cycles by outcome *from the store* (``{"ok": 1234, "failed": 3}``), so
    the counter survives restarts; every known outcome is written, 0 when absent. Per-cycle numbers come
    from ``report``. ``last_success_at`` ``None`` (never succeeded) makes the age ``+Inf``. The file is
    written to a temporary name in the same directory (not ending in ``.prom``, so the collector never
    reads half a file), made 0644 and renamed over ``path``. Returns False (and logs
    ``metrics.write_failed``) instead of raising.
    """
    now = time.time() if now is None else now
    text = render_metrics(report, parked=parked, last_success_at=last_success_at, totals=totals, now=now)
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), 0o644)  # the collector runs as another user; our UMask is 0077
            os.fsync(out.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        event("metrics.write_failed", "WARNING", path=str(path), error=repr(exc))
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return True


def render_metrics(
    report: CycleReport,
    *,
    parked: int,
    last_success_at: float | None,
    totals: Mapping[str, float] | None,
    now: float,
) -> str:
    """The text :func:`write_metrics` writes (pure)."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{_labels(labels)} {_number(value)}")

    cycles = {outcome: 0.0 for outcome in OUTCOMES}
    cycles.update({k: float(v) for k, v in (totals or {}).items()})
    family(
        "reconciler_cycles_total",
        "counter",
        "Cycles run since the store was created, by outcome.",
        (({"outcome": k}, v) for k, v in sorted(cycles.items())),
    )
    actions = []
    for key, value in sorted(report.counts.items()):
        kind, _, result = key.rpartition(".")
        actions.append(({"kind": kind, "result": result} if kind else {"kind": result, "result": ""}, value))
    family("reconciler_actions", "gauge", "Actions in the last cycle, by kind and result.", actions)
    family(
        "reconciler_api_calls",
        "gauge",
        "HTTP calls in the last cycle, by endpoint.",
        (({"endpoint": k}, v) for k, v in sorted(report.api_calls.items())),
    )
    family(
        "reconciler_api_errors",
        "gauge",
        "Failed HTTP calls in the last cycle, by endpoint.",
        (({"endpoint": k}, v) for k, v in sorted(report.api_errors.items())),
    )
    family(
        "reconciler_parked_items",
        "gauge",
        "Items parked now (see `reconciler status`).",
        [({}, parked)],
    )
    age = math.inf if last_success_at is None else max(0.0, now - last_success_at)
    family(
        "reconciler_last_success_age_seconds",
        "gauge",
        "Seconds since the last successful cycle when this file was written (+Inf: never).",
        [({}, age)],
    )
    if last_success_at is not None:
        family(
            "reconciler_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful cycle (use time() - this: it does not go stale).",
            [({}, last_success_at)],
        )
    family(
        "reconciler_last_cycle_duration_seconds",
        "gauge",
        "Wall-clock duration of the last cycle.",
        [({}, report.duration)],
    )
    family(
        "reconciler_last_cycle_timestamp_seconds",
        "gauge",
        "Unix time the last cycle ended.",
        [({}, report.ended_at)],
    )
    return "\n".join(out) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))
