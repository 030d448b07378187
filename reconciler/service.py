"""One reconcile cycle, shared by ``run-once``, ``plan`` and the daemon: fetch -> plan -> apply (or print).

:func:`build_context` wires every I/O object from the settings in one place (tests pass their own
transport); :func:`run_cycle` is the cycle itself; :func:`fetch_world` is its read half.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from reconciler.apply import Applier, ApplyResult
from reconciler.clients.http import CallStats, HttpClient, RetryPolicy
from reconciler.clients.si import MESSAGE_FAILED, MESSAGE_IMPORTED, MessageStatus, SiClient, co_number
from reconciler.clients.zoho import ZohoAuth, ZohoClient
from reconciler.errors import (
    EX_CONFIG,
    EX_FAIL,
    EX_OK,
    EX_PENDING,
    ApiError,
    CredentialsError,
    PermanentApiError,
    ProtocolError,
    StopRequested,
)
from reconciler.logs import event
from reconciler.mapping import SI_LIST_FIELDS, Mapping, zoho_column
from reconciler.model import CycleReport, Deal, PublishOutcome, SiExport
from reconciler.plan import World, plan
from reconciler.settings import Settings
from reconciler.store import Store

__all__ = ["LOOKBACK_SECONDS", "Context", "build_context", "fetch_world", "run_cycle"]

LOOKBACK_SECONDS = 600  # re-read deals modified this long before the cursor (Zoho's clock, late commits)
CURSOR_KEY = "cursor.zoho.modified_time"
BULK_STATUS_FROM = 200  # publishes resolved by listing SI's imported/failed messages from this many on
STATUS_PAGE = 200
LAST_FULL_KEY = "cycle.last_full_at"


@dataclass
class Context:
    """Every object a cycle needs, built once (by the CLI, the daemon or a test) and passed in."""

    settings: Settings
    mapping: Mapping
    store: Store
    zoho: ZohoClient
    si: SiClient
    stats: CallStats = field(default_factory=CallStats)
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time
    http: httpx.Client | None = None

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


def build_context(
    settings: Settings,
    mapping: Mapping,
    store: Store,
    *,
    transport: httpx.BaseTransport | None = None,
    policy: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Context:
    stats = CallStats()
    stop = stop or threading.Event()
    raw = httpx.Client(transport=transport, timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
    http = HttpClient(raw, policy=policy or settings.retry_policy(), stats=stats, stop=stop)
    secret = settings.zoho_client_secret.get_secret_value() if settings.zoho_client_secret else ""
    refresh = settings.zoho_refresh_token.get_secret_value() if settings.zoho_refresh_token else None
    auth = ZohoAuth(
        accounts_url=settings.accounts_url,
        client_id=settings.zoho_client_id or "",
        client_secret=secret,
        refresh_token=refresh,
        soid=settings.zoho_soid,
        cache=store,
        clock=clock,
    )
    zoho = ZohoClient(
        http,
        api_url=settings.zoho_api_url,
        default_api_url=settings.zoho_default_api_url,
        auth=auth,
        module=mapping.module,
    )
    api_key = settings.si_api_key.get_secret_value() if settings.si_api_key else ""
    si = SiClient(http, settings.si_base_url, api_key)
    return Context(settings, mapping, store, zoho, si, stats=stats, stop=stop, clock=clock, http=raw)


# ---- fetch --------------------------------------------------------------------------------------------


def _deal_where(mapping: Mapping, since: str | None) -> str:
    wanted = f"({mapping.flag_field} = true or {mapping.link_field} is not null)"
    if since is None:
        return wanted
    return f"(Modified_Time >= '{since}' and {wanted})"


def _since(cursor: str | None) -> str | None:
    if not cursor:
        return None
    moment = datetime.fromisoformat(cursor) - timedelta(seconds=LOOKBACK_SECONDS)
    return moment.replace(microsecond=0).isoformat()


def fetch_deals(ctx: Context, *, full: bool) -> list[Deal]:
    cursor = None if full else ctx.store.get_state(CURSOR_KEY)
    columns = ["Modified_Time", *(zoho_column(path) for path in ctx.mapping.zoho_paths())]
    rows = ctx.zoho.iter_records(list(dict.fromkeys(columns)), _deal_where(ctx.mapping, _since(cursor)))
    return [Deal(str(row["id"]), row) for row in rows]


def _export(values: dict[str, Any]) -> SiExport | None:
    project_id = values.get("id")
    published = values.get("publishedonunixtimems")
    problem = None
    if not project_id:
        problem = "the message has no Id"
    elif published is None or not str(published).lstrip("-").isdigit():
        problem = f"PublishedOnUnixTimeMs is {published!r}, not a whole number"
    if problem is not None:  # skipped, never acknowledged: SI shows it again once it is fixed
        event(
            "si.bad_export",
            "WARNING",
            message_id=values.get("messageid"),
            project_id=project_id,
            problem=problem,
        )
        return None
    integration = values.get("integrationprojectid")
    co = co_number(values.get("conumber"))
    if "conumber" in values:  # 2, "2", "02" and 2.0 are one change order: show and store it one way
        values = {**values, "conumber": co}
    return SiExport(
        project_id=str(project_id),
        integration_id=None if integration in (None, "") else str(integration),
        message_id=None if values.get("messageid") is None else str(values["messageid"]),
        co_number=co,
        published_ms=int(str(published)),
        values=values,
    )


def fetch_exports(ctx: Context, linked: set[str]) -> list[SiExport]:
    """Unacknowledged export messages, with detail fields merged in where the mapping needs them."""
    exports = [e for e in (_export(v) for v in ctx.si.iter_exports()) if e is not None]
    need_base = ctx.mapping.needs_project_detail()
    need_co = bool(ctx.mapping.template_keys() - SI_LIST_FIELDS) or need_base
    groups: dict[tuple[str, str | None], list[SiExport]] = {}
    for export in sorted(exports, key=lambda e: e.published_ms):
        groups.setdefault((export.project_id, export.co_number), []).append(export)
    detailed: list[SiExport] = []
    for (project_id, co), group in groups.items():
        if project_id not in linked:
            detailed.extend(group)
            continue
        try:
            detailed.extend(_with_details(ctx, group, need_co if co is not None else need_base))
        except (ProtocolError, PermanentApiError) as exc:
            # One project's unreadable details must not hold up the others. Its messages are left
            # unacknowledged, so the next cycle reads them again.
            event("si.bad_detail", "WARNING", project_id=project_id, co_number=co, error=str(exc))
    return detailed


def _with_details(ctx: Context, group: list[SiExport], needed: bool) -> list[SiExport]:
    """One (project, change order)'s messages, oldest first, with the detail fields merged in."""
    out: list[SiExport] = []
    for index, export in enumerate(group):
        # Base project: only its newest message feeds field values. Change orders: every message is a
        # state worth a note, so each one needs the fields the list payload lacks.
        newest = index == len(group) - 1
        if not (needed and (newest or export.co_number is not None)):
            out.append(export)
            continue
        if newest:
            detail = ctx.si.get_project(export.project_id, export.co_number)
        else:  # an older state of the same change order, only recoverable by its message
            detail = ctx.si.get_project_by_message(export.message_id or "")
        merged = {**detail, **{k: v for k, v in export.values.items() if v is not None}}
        out.append(
            SiExport(
                export.project_id,
                export.integration_id,
                export.message_id,
                export.co_number,
                export.published_ms,
                merged,
            )
        )
    return out


def _publish_outcome(status: MessageStatus) -> PublishOutcome:
    imported_ms = None
    if status.imported_on:
        try:
            moment = datetime.fromisoformat(status.imported_on.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # SI documents its times as UTC
            imported_ms = int(moment.timestamp() * 1000)
    return PublishOutcome(status.id, status.status_id, status.error_message, imported_ms)


def fetch_publish_outcomes(ctx: Context, message_ids: Iterable[str]) -> dict[str, PublishOutcome]:
    """Resolve our pending publishes: list SI's pending ones, then learn the fate of those that left it.

    When many left the list (SI imported a large first run), they are looked up in SI's list of imported
    and failed messages, reading at most half as many pages as there are such messages (that list is SI's
    whole history, in no promised order); whatever was not found there is asked about one by one.
    """
    ours = set(message_ids)
    if not ours:
        return {}
    still_pending = {status.id for status in ctx.si.iter_message_statuses()}
    left = ours - still_pending
    outcomes: dict[str, PublishOutcome] = {}
    if len(left) >= BULK_STATUS_FROM:
        budget = len(left) // 2 * STATUS_PAGE  # entries: half a page per message at most
        done = ctx.si.iter_message_statuses((MESSAGE_IMPORTED, MESSAGE_FAILED), page_size=STATUS_PAGE)
        for seen, status in enumerate(done, start=1):
            if status.id in left and status.status_id in (MESSAGE_IMPORTED, MESSAGE_FAILED):
                outcomes[status.id] = _publish_outcome(status)
            if len(outcomes) == len(left) or seen >= budget:
                break
    for message_id in sorted(left - set(outcomes)):
        status = ctx.si.message_status(message_id)
        if status.status_id in (MESSAGE_IMPORTED, MESSAGE_FAILED):
            outcomes[message_id] = _publish_outcome(status)
    return outcomes


def fetch_world(ctx: Context, *, full: bool) -> World:
    store = ctx.store
    links = store.links()
    deals = fetch_deals(ctx, full=full)
    linked_projects = {link.project_id for link in links.values() if link.active}
    exports = fetch_exports(ctx, linked_projects)
    by_project = {link.project_id: link.deal_id for link in links.values()}
    deal_ids = {d.id for d in deals} | {
        by_project[e.project_id] for e in exports if e.project_id in by_project
    }
    pending_snapshots = store.pending_snapshots()
    snapshots = store.snapshots(deal_ids)
    snapshots.update(pending_snapshots)
    pending_messages = {
        link.message_id for link in links.values() if link.publish_status == "pending" and link.message_id
    }
    pending_messages |= {
        str(entry["message_id"])
        for snap in pending_snapshots.values()
        for entry in snap.pending.values()
        if entry.get("message_id") and entry.get("imported_ms") is None  # imported: only its echo is awaited
    }
    deal_ids |= {link.deal_id for link in links.values() if link.publish_status == "pending"}
    snapshots.update(store.snapshots(deal_ids - set(snapshots)))
    outcomes = fetch_publish_outcomes(ctx, pending_messages)
    intents = store.open_intents()
    intents.update(store.intents_with_prefixes(f"note:{pid}:" for pid in {e.project_id for e in exports}))
    intents.update(store.intents_with_prefixes(f"create:deal:{d.id}" for d in deals if d.id not in links))
    return World(
        deals=deals,
        exports=exports,
        links=links,
        snapshots=snapshots,
        intents=intents,
        publish_outcomes=outcomes,
        full=full,
    )


# ---- the cycle ----------------------------------------------------------------------------------------


def wants_full(ctx: Context, full: bool | None) -> bool:
    """Full when asked, when there is no cursor yet, when a retry was requested, or when it is due."""
    if full is not None and full:
        return True
    store = ctx.store
    if store.get_state(CURSOR_KEY) is None or store.get_state("retry.requested") == "1":
        return True
    if full is False:
        return False
    last = store.get_state(LAST_FULL_KEY)
    return last is None or ctx.clock() - float(last) >= ctx.settings.reconciler_full_every


def run_cycle(
    ctx: Context, *, full: bool | None = None, force: bool = False, dry_run: bool = False
) -> tuple[CycleReport, Any]:
    """One cycle. Returns its report and its plan (None when it could not plan)."""
    started = ctx.clock()
    is_full = wants_full(ctx, full)
    mode = "full" if is_full else "incremental"
    before = dict(ctx.stats.calls)
    before_errors = dict(ctx.stats.errors)
    cycle_id = None if dry_run else ctx.store.start_cycle(mode, dry_run)
    event("cycle.started", mode=mode, dry_run=dry_run, cycle=cycle_id)

    def report(
        outcome: str, code: int, counts: dict[str, int] | None = None, message: str = ""
    ) -> CycleReport:
        calls = {k: v - before.get(k, 0) for k, v in ctx.stats.calls.items() if v - before.get(k, 0)}
        errors = {
            k: v - before_errors.get(k, 0) for k, v in ctx.stats.errors.items() if v - before_errors.get(k, 0)
        }
        result = CycleReport(
            mode=mode,
            outcome=outcome,
            exit_code=code,
            started_at=started,
            ended_at=ctx.clock(),
            dry_run=dry_run,
            cycle_id=cycle_id,
            counts=counts or {},
            api_calls=calls,
            api_errors=errors,
            message=message,
        )
        if cycle_id is not None:
            ctx.store.finish_cycle(cycle_id, result)
        event(
            "cycle.finished",
            outcome=outcome,
            mode=mode,
            duration=round(result.duration, 3),
            calls=sum(calls.values()),
            message=message,
        )
        return result

    try:
        world = fetch_world(ctx, full=is_full)
    except CredentialsError:
        if cycle_id is not None:
            report("failed", EX_CONFIG, message="credentials rejected")
        raise
    except (ApiError, StopRequested) as exc:
        event("cycle.failed", "ERROR", error=str(exc))
        return report("failed", EX_FAIL, message=f"could not read: {exc}"), None

    the_plan = plan(world, ctx.mapping, max_writes=ctx.settings.reconciler_max_writes, force=force)
    counts = _plan_counts(the_plan)
    if dry_run:
        outcome, code = ("pending", EX_PENDING) if the_plan.has_changes or the_plan.refused else ("ok", EX_OK)
        return report(outcome, code, counts, the_plan.refused or ""), the_plan
    if the_plan.refused:
        event("cycle.refused", "ERROR", reason=the_plan.refused)
        return report("refused", EX_FAIL, counts, the_plan.refused), the_plan

    retried = [i for i in world.intents.values() if i.status == "retry"]
    applier = Applier(ctx.store, ctx.zoho, ctx.si, ctx.mapping, cycle_id=cycle_id, stop=ctx.stop)
    try:
        result = applier.apply(the_plan, retried)
    except CredentialsError:
        report("failed", EX_CONFIG, message="credentials rejected")
        raise
    _commit_cursors(ctx, world, result, is_full, started)
    return _outcome(report, result), the_plan


def _plan_counts(the_plan: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for action in the_plan.actions:
        counts[f"{action.kind}.planned"] = counts.get(f"{action.kind}.planned", 0) + 1
    if the_plan.unknown:
        counts["unknown_project.seen"] = len(the_plan.unknown)
    return counts


def _commit_cursors(ctx: Context, world: World, result: ApplyResult, full: bool, started: float) -> None:
    """Advance the Zoho cursor only when nothing is left over for a later cycle.

    The cursor moves to the newest ``Modified_Time`` read or to the moment this cycle started reading,
    whichever is later: every deal modified before that moment has been read (``LOOKBACK_SECONDS`` covers
    commits that show up late and a clock off Zoho's by less than that). With the newest ``Modified_Time``
    alone, a quiet system re-read its last burst of changes (our own write-backs too) every cycle, forever.
    """
    if not result.clean:
        return
    moments = [datetime.fromisoformat(d.modified_time) for d in world.deals if d.modified_time]
    moments.append(datetime.fromtimestamp(started).astimezone().replace(microsecond=0))
    newest = max(moments)
    with ctx.store.atomic():
        current = ctx.store.get_state(CURSOR_KEY)
        if current is None or newest > datetime.fromisoformat(current):
            ctx.store.set_state(CURSOR_KEY, newest.isoformat())
        if full:
            ctx.store.set_state(LAST_FULL_KEY, str(ctx.clock()))
            ctx.store.set_state("retry.requested", "0")


def _outcome(report: Callable[..., CycleReport], result: ApplyResult) -> CycleReport:
    counts = dict(result.counts)
    if result.parked:
        return report(
            "parked", EX_FAIL, counts, f"{len(result.parked)} item(s) parked: see `reconciler status`"
        )
    if result.failed:
        first = result.failed[0][1]
        return report("failed", EX_FAIL, counts, f"{len(result.failed)} action(s) will be retried: {first}")
    if result.stopped:
        return report("failed", EX_FAIL, counts, "stopped before the cycle finished")
    return report("ok", EX_OK, counts)


# ---- status ---------------------------------------------------------------------------------------------


def collect_status(
    store: Store, *, db: str, lock_held: bool, cycles: int = 10, interval: float | None = None
) -> dict[str, Any]:
    """Everything ``reconciler status`` shows, as plain data (no secrets: the token value is not read)."""
    parked, conflicts, pending = [], [], []
    # A pending item is retried by the next cycle (and parked after MAX_ATTEMPTS), not on its own clock.
    recent = store.recent_cycles(1)
    next_cycle = recent[0]["started_at"] + interval if recent and interval else None
    for intent in store.open_intents().values():
        if intent.status == "parked" and intent.kind == "conflict":
            payload = intent.payload or {}
            conflicts.append(
                {
                    "key": intent.key,
                    "deal_id": intent.deal_id,
                    "field": payload.get("field"),
                    "zoho": payload.get("zoho"),
                    "si": payload.get("si"),
                }
            )
        if intent.status == "parked":
            parked.append(
                {
                    "key": intent.key,
                    "kind": intent.kind,
                    "deal_id": intent.deal_id,
                    "project_id": intent.project_id,
                    "error": intent.last_error,
                    "attempts": intent.attempts,
                    "updated_at": intent.updated_at,
                    "next_retry": f"after `reconciler retry {intent.key}`",
                }
            )
        elif intent.status in ("pending", "retry"):
            pending.append(
                {
                    "key": intent.key,
                    "kind": intent.kind,
                    "error": intent.last_error or "(in flight or re-queued)",
                    "attempts": intent.attempts,
                    "next_retry_at": next_cycle,
                }
            )
    links = store.links()
    stopped = [
        {"deal_id": link.deal_id, "project_id": link.project_id, "reason": link.inactive_reason}
        for link in links.values()
        if not link.active
    ]
    last_full = store.get_state(LAST_FULL_KEY)
    return {
        "db": db,
        "lock_held": lock_held,
        "cursor": store.get_state(CURSOR_KEY),
        "last_full_at": float(last_full) if last_full else None,
        "token_expires_at": store.token_expiry(),
        "links": {"active": sum(1 for link in links.values() if link.active), "inactive": len(stopped)},
        "cycles": store.recent_cycles(cycles),
        "parked": parked,
        "conflicts": conflicts,
        "pending": pending,
        "stopped": stopped,
        "unknown_projects": store.unknown_projects(),
    }
