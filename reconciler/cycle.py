"""One reconcile cycle, shared by ``run-once``, ``plan``, ``reconcile --deep``, ``apply FILE`` and the daemon.

It reads as it runs::

    world = read_world(ctx, options)      # reconciler.read: the APIs and the store -> World
    plan = plan(world, mapping)           # reconciler.plan: pure decisions
    result = Applier(...).apply(plan)     # reconciler.apply: executes, intent by intent
    commit cursors                        # only when nothing was left over

A dry run stops after the plan. A saved plan (``reconciler apply FILE``) narrows the fresh plan to the
actions that were reviewed and are still what the live state asks for; the rest are reported as stale.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.apply import Applier, ApplyResult
from reconciler.apply import Progress as Tracker
from reconciler.clients.http import CycleBudgetSpent
from reconciler.context import Context
from reconciler.errors import (
    EX_CONFIG,
    EX_FAIL,
    EX_INTERRUPTED,
    EX_OK,
    EX_PENDING,
    ApiError,
    CredentialsError,
    StopRequested,
)
from reconciler.logs import event
from reconciler.model import CycleReport, CycleResult, Plan, World
from reconciler.plan import plan as make_plan
from reconciler.read import CURSOR_KEY, LAST_FULL_KEY, ZOHO_SKEW_KEY, ReadOptions, read_world

__all__ = ["CycleOptions", "run_cycle", "wants_full"]

MAX_CLOCK_SKEW = 600.0  # a cursor or "last full" this far in the future is a clock error, not a time


@dataclass(frozen=True)
class CycleOptions:
    """How to run one cycle. ``full``: True forces a full read, False forbids an automatic one, None lets
    the schedule decide. ``approved``: a saved plan; only its actions are applied."""

    full: bool | None = None
    force: bool = False
    dry_run: bool = False
    deep: bool = False
    expect: int | None = None
    approved: frozenset[tuple[str, str]] | None = None  # (key, input hash) of a saved plan's actions


def wants_full(ctx: Context, full: bool | None) -> bool:
    """Full when asked, when there is no usable cursor yet, when a retry was requested, or when it is due.

    A cursor or last-full time in the future (a clock that was wrong, then fixed) is reset, so the next
    cycle is full instead of never reading the edits made before that future moment.
    """
    store, now = ctx.store, ctx.clock()
    cursor = store.get_state(CURSOR_KEY)
    if cursor is not None and _parse(cursor) > now + MAX_CLOCK_SKEW:
        event(
            "clock.cursor_reset",
            "WARNING",
            cursor=cursor,
            now=datetime.fromtimestamp(now).astimezone().isoformat(),
        )
        store.delete_state(CURSOR_KEY)
        cursor = None
    last = store.get_state(LAST_FULL_KEY)
    if last is not None and float(last) > now + MAX_CLOCK_SKEW:
        event("clock.last_full_reset", "WARNING", last_full=last)
        store.delete_state(LAST_FULL_KEY)
        last = None
    if full:
        return True
    if cursor is None or store.get_state("retry.requested") == "1":
        return True
    if full is False:
        return False
    return last is None or now - float(last) >= ctx.settings.reconciler_full_every


def _parse(cursor: str) -> float:
    try:
        return datetime.fromisoformat(cursor).timestamp()
    except ValueError:
        return float("inf")  # unreadable: treated as "in the future", so it is reset


def run_cycle(
    ctx: Context,
    options: CycleOptions | None = None,
    *,
    progress: Callable[[int], Tracker] | None = None,
    **legacy: object,
) -> CycleResult:
    """One cycle (see the module docstring). ``progress`` makes a progress tracker for the records the
    plan writes (see :mod:`reconciler.progress`). ``legacy`` keywords (``full``, ``force``, ``dry_run``)
    are accepted for callers that predate :class:`CycleOptions`."""
    if options is None:
        options = CycleOptions(**legacy)  # type: ignore[arg-type]
    budget = ctx.settings.cycle_budget  # RECONCILER_CYCLE_BUDGET, else 80% of the interval
    deadline = time.monotonic() + budget
    with ctx.calls.cycle_deadline(budget) if ctx.calls is not None else contextlib.nullcontext():
        return _cycle(ctx, options, progress, deadline)


def _cycle(
    ctx: Context, options: CycleOptions, progress: Callable[[int], Tracker] | None, deadline: float
) -> CycleResult:
    """:func:`run_cycle` within its time budget (``deadline`` on the monotonic clock)."""
    started = ctx.clock()
    is_full = options.deep or wants_full(ctx, options.full)
    mode = "deep" if options.deep else "full" if is_full else "incremental"
    reporter = _Reporter(ctx, mode, started, options.dry_run)
    event("cycle.started", mode=mode, dry_run=options.dry_run, cycle=reporter.cycle_id)
    world = _read(ctx, reporter, ReadOptions(full=is_full, deep=options.deep, force=options.force))
    if isinstance(world, CycleReport):
        return CycleResult(world)
    if not options.dry_run:
        _note_skew(ctx, started)
    the_plan = make_plan(
        world,
        ctx.mapping,
        max_writes=ctx.settings.reconciler_max_writes,
        force=options.force or options.approved is not None,
        expect=options.expect,
    )
    stale: list[str] = []
    if options.approved is not None:
        the_plan, stale = narrow(the_plan, options.approved)
    counts = _plan_counts(the_plan)
    if options.dry_run:
        pending = the_plan.has_changes or the_plan.refused
        outcome, code = ("pending", EX_PENDING) if pending else ("ok", EX_OK)
        return CycleResult(reporter.report(outcome, code, counts, the_plan.refused or ""), the_plan)
    if the_plan.refused:
        event("cycle.refused", "ERROR", reason=the_plan.refused)
        return CycleResult(reporter.report("refused", EX_FAIL, counts, the_plan.refused), the_plan)
    result = _apply(ctx, reporter, the_plan, progress, deadline)
    if options.approved is None:
        _commit_cursors(ctx, world, result, is_full)
    report = _outcome(reporter, result, stale)
    return CycleResult(report, the_plan, tuple(result.parked), result.done, result.total)


def _read(ctx: Context, reporter: _Reporter, options: ReadOptions) -> World | CycleReport:
    """The world, or the report of a cycle that could not read it (credentials rejected: raised)."""
    try:
        return read_world(ctx, options)
    except CredentialsError:
        if reporter.cycle_id is not None:
            reporter.report("failed", EX_CONFIG, message="credentials rejected")
        raise
    except StopRequested:
        return reporter.report(
            "interrupted", EX_INTERRUPTED, message="interrupted while reading; a rerun resumes"
        )
    except CycleBudgetSpent as exc:
        event("cycle.overran", "WARNING", phase="read")
        return reporter.report(
            "overran", EX_FAIL, message=f"the cycle's time budget ran out while reading: {exc}"
        )
    except ApiError as exc:
        event("cycle.failed", "ERROR", error=str(exc))
        return reporter.report("failed", EX_FAIL, message=f"could not read: {exc}")


def _apply(
    ctx: Context,
    reporter: _Reporter,
    the_plan: Plan,
    progress: Callable[[int], Tracker] | None,
    deadline: float,
) -> ApplyResult:
    """Execute the plan, within the cycle's time budget, reporting progress."""
    tracker = progress(the_plan.writes()) if progress is not None else None
    applier = Applier(
        ctx.store,
        ctx.zoho,
        ctx.si,
        ctx.mapping,
        cycle_id=reporter.cycle_id,
        stop=ctx.stop,
        deadline=deadline,
        progress=tracker,
        lanes=ctx.lanes,
    )
    try:
        return applier.apply(the_plan)
    except CredentialsError:
        reporter.report("failed", EX_CONFIG, message="credentials rejected")
        raise
    finally:
        if tracker is not None:
            tracker.close()


def narrow(fresh: Plan, approved: frozenset[tuple[str, str]]) -> tuple[Plan, list[str]]:
    """The fresh plan cut down to the approved actions that are still the same (key and input).

    An approved action the live state no longer asks for, or asks for differently, is *stale*: it is not
    applied and its key is returned. Fresh actions nobody reviewed are not applied either, and neither is
    any settle that waits for one (so nothing is acknowledged that was not processed).
    """
    actions = tuple(a for a in fresh.actions if (a.key, a.input_hash) in approved)
    kept = {a.key for a in actions}
    dropped = {a.key for a in fresh.actions} - kept
    settles = tuple(
        s for s in fresh.settles if not set(s.action_keys) & dropped and set(s.action_keys) & kept
    )
    stale = sorted({key for key, _ in approved} - kept)
    return replace(fresh, actions=actions, settles=settles, unknown=(), resolved=(), refused=None), stale


class _Reporter:
    """Builds the cycle's report from the calls counted since it began, and stores it."""

    def __init__(self, ctx: Context, mode: str, started: float, dry_run: bool) -> None:
        self.ctx, self.mode, self.started, self.dry_run = ctx, mode, started, dry_run
        self.before = dict(ctx.stats.calls)
        self.before_errors = dict(ctx.stats.errors)
        self.cycle_id = None if dry_run else ctx.store.start_cycle(mode, dry_run)

    def report(
        self, outcome: str, code: int, counts: dict[str, int] | None = None, message: str = ""
    ) -> CycleReport:
        stats = self.ctx.stats
        calls = {k: v - self.before.get(k, 0) for k, v in stats.calls.items() if v - self.before.get(k, 0)}
        errors = {
            k: v - self.before_errors.get(k, 0)
            for k, v in stats.errors.items()
            if v - self.before_errors.get(k, 0)
        }
        result = CycleReport(
            mode=self.mode,
            outcome=outcome,
            exit_code=code,
            started_at=self.started,
            ended_at=self.ctx.clock(),
            dry_run=self.dry_run,
            cycle_id=self.cycle_id,
            counts=counts or {},
            api_calls=calls,
            api_errors=errors,
            message=message,
        )
        if self.cycle_id is not None:
            self.ctx.store.finish_cycle(self.cycle_id, result)
        level = "INFO" if outcome in ("ok", "pending") else "WARNING"
        event(
            "cycle.finished",
            level,
            outcome=outcome,
            mode=self.mode,
            duration=round(result.duration, 3),
            calls=sum(calls.values()),
            message=message,
        )
        return result


def _plan_counts(the_plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}
    for action in the_plan.actions:
        counts[f"{action.kind}.planned"] = counts.get(f"{action.kind}.planned", 0) + 1
    if the_plan.unknown:
        counts["unknown_project.seen"] = len(the_plan.unknown)
    if the_plan.held:
        counts["deal.held"] = len(the_plan.held)
    return counts


def _note_skew(ctx: Context, local: float) -> None:
    """Remember how far our clock is from Zoho's (``status`` shows it)."""
    server = ctx.zoho.server_time
    if server is not None:
        ctx.store.set_state(ZOHO_SKEW_KEY, f"{local - server:.1f}")


def _commit_cursors(ctx: Context, world: World, result: ApplyResult, full: bool) -> None:
    """Advance the Zoho cursor only when nothing is left over for a later cycle.

    The cursor moves to the newest ``Modified_Time`` read or to Zoho's own clock when the read began (its
    ``Date`` header), whichever is later: every deal modified before that moment has been read
    (``LOOKBACK_SECONDS`` covers commits that show up late). Our local clock is used only when Zoho sent
    no ``Date``. With the newest ``Modified_Time`` alone, a quiet system re-read its last burst of changes
    (our own write-backs too) every cycle, forever.
    """
    if not result.clean:
        return
    moments = [datetime.fromisoformat(d.modified_time) for d in world.deals if d.modified_time]
    anchor = world.zoho_time if world.zoho_time is not None else ctx.clock()
    moments.append(datetime.fromtimestamp(anchor).astimezone().replace(microsecond=0))
    newest = max(moments)
    with ctx.store.atomic():
        current = ctx.store.get_state(CURSOR_KEY)
        if current is None or newest > datetime.fromisoformat(current):
            ctx.store.set_state(CURSOR_KEY, newest.isoformat())
        if full:
            ctx.store.set_state(LAST_FULL_KEY, str(ctx.clock()))
            ctx.store.set_state("retry.requested", "0")


def _outcome(reporter: _Reporter, result: ApplyResult, stale: list[str]) -> CycleReport:
    counts = dict(result.counts)
    if stale:
        counts["stale.skipped"] = len(stale)
    if result.stopped:
        message = f"interrupted after {result.done} of {result.total}; a rerun resumes"
        return reporter.report("interrupted", EX_INTERRUPTED, counts, message)
    if result.overran:
        message = (
            f"the cycle's time budget ran out after {result.done} of {result.total}; the next cycle resumes"
        )
        return reporter.report("overran", EX_FAIL, counts, message)
    if result.parked:
        return reporter.report(
            "parked", EX_FAIL, counts, f"{len(result.parked)} item(s) parked: see `reconciler status`"
        )
    if result.failed:
        first = result.failed[0][1]
        return reporter.report(
            "failed", EX_FAIL, counts, f"{len(result.failed)} action(s) will be retried: {first}"
        )
    if result.deferred:
        first = result.deferred[0][1]
        text = f"{len(result.deferred)} item(s) could not be read and will be retried: {first}"
        return reporter.report("failed", EX_FAIL, counts, text)
    if stale:
        return reporter.report(
            "ok", EX_OK, counts, f"{len(stale)} stale action(s) skipped: {', '.join(stale[:5])}"
        )
    return reporter.report("ok", EX_OK, counts)
