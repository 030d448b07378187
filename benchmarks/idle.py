"""The idle cycle at scale: CPU of one cycle with nothing to do, over N settled pairs (seeded, not created).

An idle cycle makes two calls (the deals modified since the cursor, SI's unacknowledged exports), both
empty; what it costs beyond them is what it loads from the store. The pairs are seeded
(:mod:`benchmarks.seed`), the simulators run in-process and their own CPU is measured apart (a timed
transport), so the table shows ours and theirs. Each figure is the best of three idle cycles, after one
that warms the simulators' caches (as cycle a3 does in the main run) and a ``gc.collect()`` before each
(a collection left over from seeding would otherwise land in whichever cycle comes first).

The old loading path is measured in the same run on the same data: :class:`OldLoadingStore` asks what
the store asked before schema version 3 (every open intent by ``status != 'done'``, the active links
counted on every cycle), with the v3 indexes dropped, as a database of version 2 had them.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.scenario import MAPPING, say
from benchmarks.seed import seed_settled
from benchmarks.sims import SimClock, SimLog, make_pair
from reconciler.clients.http import RetryPolicy
from reconciler.context import Context, build_context
from reconciler.cycle import run_cycle
from reconciler.mapping import load_mapping
from reconciler.model import IntentState, LinkState
from reconciler.store import Store

__all__ = ["RECORDED_CPU", "IdleRow", "OldLoadingStore", "run_idle"]

RECORDED_CPU = 1.96  # s: "100,000 | b. idle cycle" in the README's table, before schema version 3
TARGET_RATIO = 5.0
V3_INDEXES = ("link_publish_status", "snapshot_pending")


@dataclass
class IdleRow:
    size: int
    path: str
    calls: dict[str, int]
    cpu: float  # best of 3, simulators included
    sim_cpu: float  # the simulators' share of that cycle
    wall: float

    @property
    def ours(self) -> float:
        return self.cpu - self.sim_cpu


class OldLoadingStore(Store):
    """What the store read per cycle before schema version 3 (for the comparison only)."""

    def open_intents(self) -> dict[str, IntentState]:
        query = self.tables.Intent.select().where(self.tables.Intent.status != "done")
        return {row.key: self._intent(row) for row in query}

    def links_where(
        self,
        *,
        deal_ids: Iterable[str] = (),
        project_ids: Iterable[str] = (),
        pending_publish: bool = False,
        active: bool = False,
    ) -> dict[str, LinkState]:
        if pending_publish:  # read_world's first call: it counted the active links then, full or not
            self.active_link_count()
        return super().links_where(
            deal_ids=deal_ids, project_ids=project_ids, pending_publish=pending_publish, active=active
        )


class _TimedTransport(httpx.BaseTransport):
    """The in-process simulators, with the CPU they spend answering added up."""

    def __init__(self, handle: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handle = handle
        self.cpu = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.process_time()
        try:
            response = self.handle(request)
            response.read()
            return response
        finally:
            self.cpu += time.process_time() - started


def run_idle(n: int) -> list[IdleRow]:
    """Seed ``n`` settled pairs; measure idle cycles with today's loading path, then with the old one."""
    clock = SimClock()
    pair = make_pair(clock, loopback=False)
    transport = _TimedTransport(pair.handle)
    mapping = load_mapping(MAPPING)
    rows = []
    with tempfile.TemporaryDirectory(prefix="zohosi-idle-") as tmp:
        settings = pair.settings(Path(tmp) / "reconciler.db", MAPPING)
        started = time.perf_counter()
        store = Store.open(settings.db_path, clock=clock.now)
        ctx = build_context(
            settings, mapping, store, transport=transport, policy=RetryPolicy.no_waits(), clock=clock.now
        )
        try:
            seed_settled(ctx, pair, clock, settings.db_path, n)
        finally:
            ctx.close()
            store.close()
        say(f"N={n:,} idle: {n:,} settled pairs seeded in {time.perf_counter() - started:.0f} s")
        for path, kind in (("today's loading path", Store), ("old loading path", OldLoadingStore)):
            if kind is OldLoadingStore:
                _drop_v3_indexes(settings.db_path)
            store = kind.open(settings.db_path, clock=clock.now)
            ctx = build_context(
                settings, mapping, store, transport=transport, policy=RetryPolicy.no_waits(), clock=clock.now
            )
            try:
                row = _measure(ctx, pair, clock, transport, n, path)
            finally:
                ctx.close()
                store.close()
            rows.append(row)
            say(f"N={n:,} idle, {path}: {row.cpu:.3f} s CPU ({row.ours:.3f} s ours), {row.calls}")
    return rows


def _measure(
    ctx: Context, pair: Any, clock: SimClock, transport: _TimedTransport, n: int, path: str
) -> IdleRow:
    log = SimLog(pair)
    best: IdleRow | None = None
    for attempt in range(4):
        clock.advance(60.0)  # a minute apart: eight cycles stay within the access token's hour
        gc.collect()
        log.mark()
        transport.cpu = 0.0
        w0, c0 = time.perf_counter(), time.process_time()
        report = run_cycle(ctx).report
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        calls = dict(log.since_mark())
        if not attempt:  # the warm-up: it may also fetch a token (the clock moved past the cached one)
            calls.pop("zoho.token", None)
        if report.outcome != "ok" or calls != {"zoho.coql": 1, "si.subscribe.list": 1}:
            raise RuntimeError(f"not an idle cycle: {report.outcome} {report.message} {calls}")
        row = IdleRow(n, path, calls, cpu, transport.cpu, wall)
        if attempt and (best is None or row.cpu < best.cpu):  # the first one warms the caches
            best = row
    assert best is not None
    return best


def _drop_v3_indexes(db_path: Path) -> None:
    import sqlite3

    with sqlite3.connect(db_path) as db:
        for name in V3_INDEXES:
            db.execute(f'DROP INDEX IF EXISTS "{name}"')
    db.close()
