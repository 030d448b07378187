"""Prometheus metrics after each cycle, for node_exporter's textfile collector (a file, rewritten atomically).

Cumulative cycle counts come from the store, so counters survive restarts; the rest describes the last
cycle. Writing never raises: a failure is logged as ``metrics.write_failed``.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler.logs import event
from reconciler.model import CycleReport

__all__ = ["OUTCOMES", "render_metrics", "write_metrics"]

#: Every cycle outcome, each written (0 when absent) so a rate() over it never starts from nothing.
OUTCOMES = ("ok", "pending", "parked", "refused", "failed", "interrupted")


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
