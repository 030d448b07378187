"""Wall time under network latency: SI's per-project calls one at a time vs. ``RECONCILER_SI_CONCURRENCY``.

At N deals with a delay on every request to either simulator (``Wire.latency``, on loopback sockets), the
same scenario runs once per width: (a) the first full cycle (creates), (a2) the cycle confirming SI's
imports (detail reads and acknowledgements), (c) a cycle after 10% of the projects changed in SI. For
each case the wall time of every width, the ratio against width 1, and whether the calls made (endpoint
by endpoint, counted on the simulators' side) are identical across widths.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.sims import SimClock, SimLog, make_pair
from reconciler.clients.http import RetryPolicy
from reconciler.context import build_context
from reconciler.cycle import CycleOptions, run_cycle
from reconciler.mapping import load_mapping
from reconciler.store import Store

__all__ = ["LatencyResult", "render_latency", "run_latency"]

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "config" / "mapping.toml"
RATIO = 3.0  # the default width must be at least this many times faster on (a) and (c)
CASES = ("a. first full cycle (creates)", "a2. cycle confirming SI's imports", "c. 10% of projects changed")
JUDGED = (CASES[0], CASES[2])


@dataclass
class LatencyResult:
    size: int
    latency: float
    widths: tuple[int, ...]
    wall: dict[tuple[str, int], float] = field(default_factory=dict)
    calls: dict[tuple[str, int], Counter[str]] = field(default_factory=dict)
    peak: dict[tuple[str, int], int] = field(default_factory=dict)
    outcome: dict[tuple[str, int], str] = field(default_factory=dict)

    def ratio(self, case: str, width: int) -> float:
        return self.wall[(case, self.widths[0])] / max(1e-9, self.wall[(case, width)])

    def same_calls(self, case: str) -> bool:
        return all(self.calls[(case, w)] == self.calls[(case, self.widths[0])] for w in self.widths)

    def verdict(self, case: str, width: int) -> str:
        ok = self.ratio(case, width) >= RATIO and self.same_calls(case)
        return "PASS" if ok else "MISS"


def run_latency(size: int = 1000, latency: float = 0.1, widths: tuple[int, ...] = (1, 4)) -> LatencyResult:
    result = LatencyResult(size, latency, widths)
    for width in widths:
        _one_width(result, width)
    return result


def _one_width(result: LatencyResult, width: int) -> None:
    clock = SimClock()
    pair = make_pair(clock, loopback=True)
    log = SimLog(pair)
    with tempfile.TemporaryDirectory(prefix="zohosi-latency-") as tmp:
        settings = pair.settings(
            Path(tmp) / "reconciler.db",
            MAPPING,
            reconciler_si_concurrency=width,
            reconciler_cycle_budget=3600,  # measured here: never cut short
        )
        store = Store.open(settings.db_path, clock=clock.now)
        ctx = build_context(
            settings, load_mapping(MAPPING), store, policy=RetryPolicy.no_waits(), clock=clock.now
        )
        try:
            deals = [
                pair.zoho.add_deal(Deal_Name=f"Deal {i:05d}", Account_Name="Acme", Amount=i, Send_to_SI=True)
                for i in range(result.size)
            ]
            pair.si_wire.latency = pair.zoho_wire.latency = result.latency

            def cycle(case: str | None) -> None:
                log.mark()
                pair.si_wire.reset()
                started = time.perf_counter()
                report = run_cycle(ctx, CycleOptions(force=True)).report
                if case is not None:
                    key = (case, width)
                    result.wall[key] = time.perf_counter() - started
                    result.calls[key] = log.since_mark()
                    result.peak[key] = pair.si_wire.peak
                    result.outcome[key] = report.outcome
                    print(
                        f"  latency N={result.size:,} width {width}: {case}: {result.wall[key]:.1f} s, "
                        f"{sum(result.calls[key].values()):,} calls, {report.outcome}",
                        flush=True,
                    )

            cycle(CASES[0])
            pair.si.import_pending()
            clock.advance(300)
            cycle(CASES[1])
            clock.advance(660)
            cycle(None)  # re-reads our own write-back (as in the main benchmark's a3)
            links = store.links()
            for k, deal_id in enumerate(deals[::10]):
                pair.si.edit_project(links[deal_id].project_id, Price=5000.0 + k, Hours=float(8 + k % 40))
            clock.advance(300)
            cycle(CASES[2])
        finally:
            ctx.close()
            store.close()
            pair.stop()


def render_latency(result: LatencyResult) -> str:
    """The latency section, Markdown."""
    first = result.widths[0]
    lines = [
        f"### Under latency: {result.size:,} deals, {result.latency * 1000:.0f} ms a request",
        "",
        f"Loopback simulators with a {result.latency * 1000:.0f} ms delay on every request "
        "(Zoho's and SI's), "
        f"the same scenario once per `RECONCILER_SI_CONCURRENCY` ({', '.join(map(str, result.widths))}). "
        f"Target: the default width at least {RATIO:g}x faster than width {first} on (a) and (c), with "
        "identical calls.",
        "",
        "| case | width | calls | wall s | SI requests in flight (peak) | vs width 1 | same calls "
        "| target | result |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for case in CASES:
        for width in result.widths:
            key = (case, width)
            judged = case in JUDGED and width != first
            lines.append(
                f"| {case} | {width} | {sum(result.calls[key].values()):,} | {result.wall[key]:.1f} | "
                f"{result.peak[key]} | {result.ratio(case, width):.2f}x | "
                f"{'yes' if result.same_calls(case) else 'NO'} | "
                f"{f'>= {RATIO:g}x' if judged else ''} | "
                f"{('**' + result.verdict(case, width) + '**') if judged else ''} |"
            )
    return "\n".join(lines) + "\n"
