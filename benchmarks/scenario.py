"""One benchmark size: N flagged deals through the cycles, the planner alone, and two naive strategies.

The simulated clock moves between cycles as a daemon's would (SI imports five minutes after the first
cycle; a quiet spell longer than the 10-minute look-back before the idle cycle), so "idle" means what
DESIGN.md means: nothing changed on either side since the last cycle read it.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bounds import Bound
from benchmarks.naive import WebhookCost, old_webhook, per_record, per_record_cost
from benchmarks.sims import WRITE_LABELS, ZOHO_LABELS, SimClock, SimLog, make_pair
from reconciler.clients.http import RetryPolicy
from reconciler.context import Context, build_context
from reconciler.cycle import run_cycle
from reconciler.mapping import Mapping, load_mapping
from reconciler.model import UpdateDeal
from reconciler.plan import World, plan
from reconciler.read import LOOKBACK_SECONDS, ReadOptions, read_world
from reconciler.sim.harness import SimPair
from reconciler.store import Store

__all__ = ["CaseRow", "CompareRow", "PlannerRow", "SizeResult", "run_size", "total", "writes", "zoho_calls"]

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "config" / "mapping.toml"
DAEMON_INTERVAL = 300.0  # RECONCILER_INTERVAL's default
QUIET = LOOKBACK_SECONDS + 60.0  # longer than the look-back: what the last cycle read leaves the window
WEBHOOK_SAMPLE = 3  # projects the old webhook app really runs for where its total is computed


def total(calls: Counter[str] | dict[str, int]) -> int:
    return sum(calls.values())


def zoho_calls(calls: Counter[str] | dict[str, int]) -> int:
    return sum(v for k, v in calls.items() if k in ZOHO_LABELS)


def writes(calls: Counter[str] | dict[str, int]) -> int:
    return sum(v for k, v in calls.items() if k in WRITE_LABELS)


@dataclass
class CaseRow:
    size: int
    case: str
    calls: Counter[str]
    wall: float
    cpu: float
    bound: dict[str, int]
    outcome: str
    target: str = ""
    verdict: str = ""  # PASS / MISS
    detail: str = ""


@dataclass
class PlannerRow:
    size: int
    world: str
    deals: int
    exports: int
    actions: int
    updates: int
    cpu: float
    wall: float
    peak_mb: float
    target: str = ""
    verdict: str = ""
    detail: str = ""


@dataclass
class CompareRow:
    size: int
    strategy: str
    calls: Counter[str]
    how: str
    wall: float | None
    ours: Counter[str]
    target: str = ""
    verdict: str = ""
    detail: str = ""

    @property
    def zoho_ratio(self) -> float:
        return zoho_calls(self.calls) / max(1, zoho_calls(self.ours))

    @property
    def total_ratio(self) -> float:
        return total(self.calls) / max(1, total(self.ours))


@dataclass
class SizeResult:
    size: int
    where: str
    cases: list[CaseRow] = field(default_factory=list)
    planner: list[PlannerRow] = field(default_factory=list)
    compare: list[CompareRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _over(calls: Counter[str], bound: dict[str, int]) -> str:
    """Where the calls exceed the bound, endpoint by endpoint."""
    return "; ".join(
        f"{label} {calls.get(label, 0):,} > {bound.get(label, 0):,}"
        for label in sorted(set(calls) | set(bound))
        if calls.get(label, 0) > bound.get(label, 0)
    )


def judge_bound(row: CaseRow) -> None:
    limit = total(row.bound)
    row.target = f"calls <= lower bound {limit:,}"
    over = _over(row.calls, row.bound)
    row.verdict = "MISS" if over or total(row.calls) > limit else "PASS"
    if row.verdict == "MISS":
        row.detail = f"{total(row.calls) - limit:+,} calls ({over})"


def judge_idle(row: CaseRow) -> None:
    row.target = "<= 2 calls, 0 writes"
    ok = total(row.calls) <= 2 and writes(row.calls) == 0
    row.verdict = "PASS" if ok else "MISS"
    if not ok:
        row.detail = f"{total(row.calls)} calls ({_over(row.calls, row.bound)}), {writes(row.calls)} writes"


def say(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_size(n: int, *, loopback: bool, measure_webhook: bool) -> SizeResult:
    """Everything for ``n`` deals, the simulators on loopback sockets or in-process."""
    started = time.perf_counter()
    result = SizeResult(n, "loopback HTTP" if loopback else "in-process transport")
    clock = SimClock()
    pair = make_pair(clock, loopback=loopback)
    with tempfile.TemporaryDirectory(prefix="zohosi-bench-") as tmp:
        try:
            _Bench(n, pair, clock, Path(tmp), result, loopback=loopback).run(measure_webhook=measure_webhook)
        finally:
            pair.stop()
    result.seconds = time.perf_counter() - started
    return result


class _Bench:
    def __init__(
        self, n: int, pair: SimPair, clock: SimClock, tmp: Path, result: SizeResult, *, loopback: bool
    ) -> None:
        self.n = n
        self.changed = max(1, n // 10)
        self.pair = pair
        self.clock = clock
        self.result = result
        self.transport = None if loopback else pair.transport()
        self.mapping: Mapping = load_mapping(MAPPING)
        # In-process simulators answer in the calling thread, with no network wait to overlap: SI lanes
        # would only take turns on the GIL (and hand over each result through it), so those sizes run one
        # call at a time. Over loopback sockets the default applies (the latency section measures it).
        width = {} if loopback else {"reconciler_si_concurrency": 1}
        settings = pair.settings(tmp / "reconciler.db", MAPPING, reconciler_cycle_budget=36_000, **width)
        self.store = Store.open(settings.db_path, clock=clock.now)
        self.ctx: Context = build_context(
            settings,
            self.mapping,
            self.store,
            transport=self.transport,
            policy=RetryPolicy.no_waits(),
            clock=clock.now,
        )
        self.log = SimLog(pair)

    def run(self, *, measure_webhook: bool) -> None:
        try:
            projects, ours = self._cycles()
        finally:
            self.ctx.close()
            self.store.close()
        self._old_webhook(projects, ours, measured=measure_webhook)
        self._per_record(projects, ours)

    def _unacknowledged(self) -> int:
        return sum(1 for m in self.pair.si.export_messages if not m.imported)

    # ---- our cycles ---------------------------------------------------------------------------------

    def _cycles(self) -> tuple[list[str], Counter[str]]:
        n, pair, clock = self.n, self.pair, self.clock
        accounts = [pair.zoho.add_account(f"Account {i:05d}") for i in range(max(1, min(1000, n // 10)))]
        deal_ids = [
            pair.zoho.add_deal(
                Deal_Name=f"Deal {i:06d}",
                Account_Name=accounts[i % len(accounts)],
                Amount=1000 + i,
                Send_to_SI=True,
            )
            for i in range(n)
        ]
        # (a) the first full cycle creates everything; SI imports it five minutes later; the next cycle
        # confirms the imports (the realistic second cycle).
        self._cycle("a. first full cycle (creates)", Bound.first_cycle(n))
        pair.si.import_pending()
        clock.advance(DAEMON_INTERVAL)
        exported = self._unacknowledged()
        self._cycle("a2. cycle confirming SI's imports", Bound.confirm_imports(n, exported, n))
        # Our write-back moved every deal's Modified_Time: the next cycle reads them once more.
        clock.advance(QUIET)
        self._cycle("a3. next cycle, after a quiet spell (re-reads our write-back)", Bound.reread(n))
        # (b) nothing changed since.
        clock.advance(DAEMON_INTERVAL)
        self._cycle("b. idle cycle (nothing changed)", Bound.idle(), judge=judge_idle)
        # (c) 10% of the projects change in SI: Price and Hours (Hours only comes with the detail GET).
        links = self.store.links()
        projects = [links[deal_id].project_id for deal_id in deal_ids[::10][: self.changed]]
        for k, project_id in enumerate(projects):
            pair.si.edit_project(project_id, Price=round(5000 + 1.25 * k, 2), Hours=float(8 + k % 40))
        clock.advance(DAEMON_INTERVAL)
        messages = self._unacknowledged()
        # (d) the Worlds the planner is timed on, read before cycle (c) acknowledges the changes: the one
        # cycle (c) reads, and the one a full cycle would read at that moment (every flagged deal).
        worlds = {
            "incremental, as cycle (c) reads it": read_world(self.ctx, ReadOptions(full=False)),
            "full (every flagged deal)": read_world(self.ctx, ReadOptions(full=True)),
        }
        ours = self._cycle(
            "c. 10% of projects changed in SI", Bound.si_changes(0, messages, self.changed, self.changed)
        )
        for label, world in worlds.items():
            row = time_planner(n, label, world, self.mapping)
            self.result.planner.append(row)
            say(
                f"N={n:,} planner, {label} World: {row.cpu:.3f} s CPU, {row.wall:.3f} s wall, "
                f"{row.peak_mb:.1f} MB peak"
            )
        return projects, ours.calls

    def _cycle(
        self, case: str, bound: dict[str, int], judge: Callable[[CaseRow], None] = judge_bound
    ) -> CaseRow:
        self.log.mark()
        w0, c0 = time.perf_counter(), time.process_time()
        # --force, as an operator runs a first import: these plans write more than RECONCILER_MAX_WRITES.
        report = run_cycle(self.ctx, force=True).report
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        calls = self.log.since_mark()
        client = Counter(report.api_calls)
        if Counter({k: v for k, v in calls.items() if k != "zoho.token"}) != client:
            self.result.notes.append(
                f"N={self.n:,} {case}: the simulators saw {dict(calls)}, the client counted {dict(client)}"
            )
        applied = [f"{k.split('.')[0]} {v:,}" for k, v in sorted(report.counts.items()) if ".applied" in k]
        outcome = report.outcome + (f" ({', '.join(applied)})" if applied else "")
        if report.outcome != "ok":
            outcome += f": {report.message}"
        row = CaseRow(self.n, case, calls, wall, cpu, bound, outcome)
        judge(row)
        self.result.cases.append(row)
        say(f"N={self.n:,} {case}: {total(calls):,} calls, {wall:.1f} s, {row.verdict} {row.detail}")
        return row

    # ---- the naive strategies on the same change ----------------------------------------------------

    def _old_webhook(self, projects: list[str], ours: Counter[str], *, measured: bool) -> None:
        """Triggered per changed project, after cycle (c): its listing then holds every export SI sent."""
        cost = WebhookCost(listing_entries=len(self.pair.si.export_messages))
        run_for = projects if measured else projects[:WEBHOOK_SAMPLE]
        self.pair.zoho.token_limit = False  # a token per Zoho call: far beyond Zoho's 10 per 10 minutes
        try:
            self.log.mark()
            t0 = time.perf_counter()
            old_webhook(self.pair, self.transport, run_for)
            wall = time.perf_counter() - t0
            calls = self.log.since_mark()
        finally:
            self.pair.zoho.token_limit = True
        expected = Counter(cost.total(len(run_for)))
        if calls != expected:
            self.result.notes.append(
                f"N={self.n:,} old webhook app: measured {dict(calls)}, the formula says {dict(expected)}"
            )
        if measured:
            row = CompareRow(self.n, "old webhook app", calls, "measured", wall, ours)
        else:
            each = total(calls) // len(run_for)
            how = (
                f"computed: {self.changed:,} x {total(cost.per_project):,} calls a project (run for "
                f"{len(run_for)} projects: {each:,} calls, {wall / len(run_for):.2f} s each)"
            )
            row = CompareRow(self.n, "old webhook app", Counter(cost.total(self.changed)), how, None, ours)
        self.result.compare.append(row)
        say(f"N={self.n:,} old webhook app: {total(row.calls):,} calls ({row.how.split(':')[0]})")

    def _per_record(self, projects: list[str], ours: Counter[str]) -> None:
        """Needs unacknowledged exports: the same projects change again (new values), outside the
        token window the old app filled."""
        self.clock.advance(QUIET)
        for k, project_id in enumerate(projects):
            self.pair.si.edit_project(project_id, Price=round(6000 + 1.25 * k, 2), Hours=float(9 + k % 40))
        messages = self._unacknowledged()
        self.log.mark()
        t0 = time.perf_counter()
        per_record(self.pair, self.transport, self.clock)
        wall = time.perf_counter() - t0
        calls = self.log.since_mark()
        expected = Counter({k: v for k, v in per_record_cost(self.changed, messages).items() if v})
        if calls != expected:
            self.result.notes.append(
                f"N={self.n:,} per-record: measured {dict(calls)}, the formula says {dict(expected)}"
            )
        self.result.compare.append(CompareRow(self.n, "per-record", calls, "measured", wall, ours))
        say(f"N={self.n:,} per-record: {total(calls):,} calls, {wall:.1f} s")


def time_planner(n: int, label: str, world: World, mapping: Mapping) -> PlannerRow:
    """plan() alone: best of 5 (CPU and wall; this machine's neighbours move single runs by 20%); then a
    separate run under tracemalloc for its peak."""
    cpu = wall = float("inf")
    for _ in range(5):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        the_plan = plan(world, mapping, max_writes=10**9, force=True)
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    updates = sum(1 for a in the_plan.actions if isinstance(a, UpdateDeal))
    actions = len(the_plan.actions)
    del the_plan
    gc.collect()
    tracemalloc.start()
    try:
        traced = plan(world, mapping, max_writes=10**9, force=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del traced
    return PlannerRow(
        n, label, len(world.deals), len(world.exports), actions, updates, cpu, wall, peak / 2**20
    )
