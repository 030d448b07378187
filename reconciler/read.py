"""The read side: turns the two APIs and the store into the :class:`~reconciler.model.World` the planner
looks at. Reads only; the one thing it may write is the Zoho token cache (inside the client).

In order:

1. the deals (COQL): those modified since the cursor minus a look-back, or every flagged or linked deal
   on a full read. A read that ends early (a 204 or a short page while Zoho announced more) fails the
   read; it is never taken as complete. A row without a usable id is reported, never used;
2. on a full read, the linked deals Zoho did not return are read directly, so that only a deal Zoho
   confirms deleted, unticked or unlinked stops syncing (past :func:`~reconciler.plan.guard.missing_limit`
   of them the read looks broken, and the guard refuses the plan instead);
3. SI's unacknowledged export messages; a message missing what identifies it is reported, not used;
4. the store's view of exactly the pairs this input touches (links, snapshots, intents), not of all;
5. detail reads for the messages of every pair that is *active in this cycle*
   (:func:`~reconciler.plan.needs.read_needs`: as the deals just read say, not as the store last saw), and
   SI's confirmation of projects a deal wants to adopt;
6. the fate of our publishes and updates still pending in SI's queue;
7. with ``deep``, SI's current state of every active pair (``reconcile --deep``).

A failure tied to one message, project or deal (a detail or status SI cannot give, an answer that breaks
the contract) is recorded on that item and the read goes on; a failure of a whole listing, or a network
failure, fails the read and the cycle changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from reconciler import keys
from reconciler.clients.si import co_number
from reconciler.context import Context
from reconciler.errors import PermanentApiError, ProtocolError
from reconciler.logs import event
from reconciler.model import Deal, IntentState, LinkState, SiExport, Snapshot, World
from reconciler.outcomes import publish_outcomes
from reconciler.plan import read_needs
from reconciler.plan.guard import missing_limit
from reconciler.queries import deal_columns, deal_where

__all__ = ["CURSOR_KEY", "LAST_FULL_KEY", "LOOKBACK_SECONDS", "ReadOptions", "read_world"]

LOOKBACK_SECONDS = 600  # re-read deals modified this long before the cursor (late commits, clock skew)
CURSOR_KEY = "cursor.zoho.modified_time"
LAST_FULL_KEY = "cycle.last_full_at"
ZOHO_SKEW_KEY = "clock.zoho_skew_seconds"
IN_BATCH = 50  # COQL's `in` takes at most 50 values (Zoho, COQL limitations)
_ITEM_ERRORS = (PermanentApiError, ProtocolError)  # tied to one record: recorded on it, the read goes on


@dataclass(frozen=True)
class ReadOptions:
    full: bool
    deep: bool = False
    force: bool = False  # the operator overrides the mass-change guard: confirm every missing deal


@dataclass
class _Read:
    """What the read has gathered so far (local to :func:`read_world`)."""

    deals: list[Deal] = field(default_factory=list)
    exports: list[SiExport] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    links: dict[str, LinkState] = field(default_factory=dict)
    si_projects: set[str] = field(default_factory=set)


def read_world(ctx: Context, options: ReadOptions) -> World:
    """Read everything one cycle plans from (``ctx`` is a :class:`~reconciler.context.Context`)."""
    store, mapping = ctx.store, ctx.mapping
    got = _Read()
    got.deals = _deals(ctx, _since(store.get_state(CURSOR_KEY)) if not options.full else None, got)
    zoho_time = ctx.zoho.server_time
    exports = _exports(ctx, got, include_imported=False)
    deal_ids = {d.id for d in got.deals}
    project_ids = {e.project_id for e in exports}
    link_values = {
        str(d.values.get(mapping.link_field)) for d in got.deals if d.values.get(mapping.link_field)
    }
    got.links = store.links_where(
        deal_ids=deal_ids, project_ids=project_ids | link_values, pending_publish=True, active=options.full
    )
    active_links = None  # the mass-change guard's yardstick: only a full read can miss linked deals
    if options.full:
        active_links = store.active_link_count()
        _confirm_missing(ctx, got, active_links, options.force)
    needs = read_needs(got.deals, got.links, mapping)
    got.exports = _with_details(ctx, exports, needs.active)
    got.si_projects = _confirm_adoptions(ctx, needs.adopt - project_ids, got)
    if options.deep:
        got.exports += _current_state(ctx, needs.active, got)
    snapshots, intents = _store_view(ctx, got)
    outcomes, status_errors = publish_outcomes(ctx, got.links, snapshots, intents)
    return World(
        deals=got.deals,
        exports=got.exports,
        links=got.links,
        snapshots=snapshots,
        intents=intents,
        publish_outcomes=outcomes,
        full=options.full or options.deep,
        gone=frozenset(got.gone),
        status_errors=status_errors,
        active_links=active_links,
        deep=options.deep,
        si_projects=frozenset(got.si_projects),
        read_problems=got.problems,
        zoho_time=zoho_time,
    )


# ---- deals ----------------------------------------------------------------------------------------------


def _since(cursor: str | None) -> str | None:
    if not cursor:
        return None
    moment = datetime.fromisoformat(cursor) - timedelta(seconds=LOOKBACK_SECONDS)
    return moment.replace(microsecond=0).isoformat()


def _deals(ctx: Context, since: str | None, got: _Read) -> list[Deal]:
    rows = ctx.zoho.iter_records(deal_columns(ctx.mapping), deal_where(ctx.mapping, since))
    return list(_usable_deals(rows, got))


def _usable_deals(rows: Iterable[Mapping[str, Any]], got: _Read) -> Iterator[Deal]:
    """Deals with a usable id (Zoho's ids are strings of digits); any other row is reported and skipped."""
    for row in rows:
        raw = row.get("id")
        deal_id = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
        if not deal_id.strip() or not deal_id.isdigit():
            columns = ", ".join(sorted(str(k) for k in row)[:8])
            key = keys.bad_message(f"zoho-row-{_short(row)}")
            got.problems[key] = f"Zoho returned a deal row without a usable id ({raw!r}; columns {columns})"
            event("zoho.bad_row", "WARNING", id=repr(raw))
            continue
        yield Deal(deal_id, row)


def _confirm_missing(ctx: Context, got: _Read, active_links: int, force: bool) -> None:
    """Read directly the linked deals a full read did not return (unless too many are missing)."""
    fetched = {d.id for d in got.deals}
    missing = sorted(
        link.deal_id for link in got.links.values() if link.active and link.deal_id not in fetched
    )
    if not missing or (len(missing) > missing_limit(active_links) and not force):
        return  # none, or the read looks broken: the guard refuses, naming the numbers
    columns = deal_columns(ctx.mapping)
    found: set[str] = set()
    for start in range(0, len(missing), IN_BATCH):
        ids = ", ".join(f"'{deal_id}'" for deal_id in missing[start : start + IN_BATCH])
        for deal in _usable_deals(ctx.zoho.iter_records(columns, f"(id in ({ids}))"), got):
            found.add(deal.id)
            got.deals.append(deal)
    got.gone = set(missing) - found
    for deal_id in sorted(got.gone):
        event("pair.deal_gone", deal_id=deal_id)


# ---- SI's export messages ---------------------------------------------------------------------------------


def _exports(ctx: Context, got: _Read, *, include_imported: bool) -> list[SiExport]:
    exports = []
    # Archived and deleted projects too: a linked project SI archived or deleted must show on its deal.
    exports_of = ctx.si.iter_exports(
        include_imported=include_imported, include_archived=True, include_deleted=True
    )
    for values in exports_of:
        export = _export(values, got)
        if export is not None:
            exports.append(export)
    return exports


def _export(values: dict[str, Any], got: _Read) -> SiExport | None:
    project_id = values.get("id")
    message_id = values.get("messageid")
    published = values.get("publishedonunixtimems")
    problem = None
    if not project_id:
        problem = "the message has no Id"
    elif not message_id:
        problem = "the message has no MessageId"
    elif published is None or not str(published).lstrip("-").isdigit():
        problem = f"PublishedOnUnixTimeMs is {published!r}, not a whole number"
    if problem is not None:  # never acknowledged: SI shows it again, and it is read again once fixed
        key = keys.bad_message(str(message_id or f"project-{project_id}-{_short(values)}"))
        got.problems[key] = f"SI export message {message_id} (project {project_id}): {problem}"
        event("si.bad_export", "WARNING", message_id=message_id, project_id=project_id, problem=problem)
        return None
    integration = values.get("integrationprojectid")
    co = co_number(values.get("conumber"))
    if "conumber" in values:  # 2, "2", "02" and 2.0 are one change order: show and store it one way
        values = {**values, "conumber": co}
    return SiExport(
        project_id=str(project_id),
        integration_id=None if integration in (None, "") else str(integration),
        message_id=str(message_id),
        co_number=co,
        published_ms=int(str(published)),
        values=values,
        detailed=False,
    )


def _with_details(ctx: Context, exports: list[SiExport], active: frozenset[str]) -> list[SiExport]:
    """The messages of active pairs with the detail fields merged in where the mapping needs them.

    Base project: only its newest message feeds field values. Change orders: every message is a state
    worth a note, so each needs the fields the list lacks (an older state is only recoverable by its
    message id). Messages of other projects need no details: they are acknowledged unprocessed or
    reported as unknown.
    """
    need_base = ctx.mapping.needs_project_detail()
    need_co = ctx.mapping.needs_change_order_detail()
    newest: dict[tuple[str, str | None], int] = {}
    for export in exports:
        group = (export.project_id, export.co_number)
        newest[group] = max(newest.get(group, 0), export.published_ms)
    out: list[SiExport] = []
    to_read: list[tuple[int, SiExport, bool]] = []  # (position in out, export, by message id)
    for export in sorted(exports, key=lambda e: e.published_ms):
        needed = need_co if export.co_number is not None else need_base
        is_newest = newest[(export.project_id, export.co_number)] == export.published_ms
        # Read: the newest base message and every change-order message of an active pair that needs
        # details. The rest (an older base message, another project's) is used as listed.
        if export.project_id in active and needed and (export.co_number is not None or is_newest):
            to_read.append((len(out), export, not is_newest))
        out.append(replace(export, detailed=True))  # replaced by its detailed form once read
    for done in ctx.lanes.run(to_read, lambda job: _detailed(ctx, job[1], by_message=job[2])):
        if done.value is not None:
            out[done.item[0]] = done.value
    return out


def _detailed(ctx: Context, export: SiExport, *, by_message: bool) -> SiExport:
    try:
        if by_message:
            detail = ctx.si.get_project_by_message(export.message_id or "")
        else:
            detail = ctx.si.get_project(export.project_id, export.co_number)
    except _ITEM_ERRORS as exc:
        event(
            "si.bad_detail",
            "WARNING",
            project_id=export.project_id,
            message_id=export.message_id,
            error=str(exc),
        )
        return replace(export, problem=f"details: {exc}")
    merged = {**detail, **{k: v for k, v in export.values.items() if v is not None}}
    return replace(export, values=merged, detailed=True)


def _confirm_adoptions(ctx: Context, projects: Iterable[str], got: _Read) -> set[str]:
    """Projects deals name that no link knows and SI sent nothing about: does SI know them?"""

    def known(project_id: str) -> bool:
        try:
            ctx.si.get_project(project_id)
        except _ITEM_ERRORS as exc:
            event("si.unknown_project", "WARNING", project_id=project_id, error=str(exc))
            return False
        return True

    return {done.item for done in ctx.lanes.run(sorted(projects), known) if done.value}


def _current_state(ctx: Context, active: frozenset[str], got: _Read) -> list[SiExport]:
    """``reconcile --deep``: SI's current state of every active pair, as ``current`` messages.

    Per project: its newest base-project message and its newest change-order message in SI's whole
    listing (``includeImported=true``), each with a detail read when the mapping needs fields the list
    lacks. A project SI never exported has no current state to read.
    """
    newest: dict[tuple[str, bool], SiExport] = {}
    for values in ctx.si.iter_exports(include_imported=True, include_archived=True, include_deleted=True):
        export = _export(values, _Read())  # problems are reported by the unacknowledged listing
        if export is None or export.project_id not in active:
            continue
        group = (export.project_id, export.co_number is not None)
        if group not in newest or export.published_ms > newest[group].published_ms:
            newest[group] = export
    need = {False: ctx.mapping.needs_project_detail(), True: ctx.mapping.needs_change_order_detail()}

    def state(group: tuple[tuple[str, bool], SiExport]) -> SiExport:
        (_, is_co), export = group
        return _detailed(ctx, export, by_message=False) if need[is_co] else export

    current = []
    for done in ctx.lanes.run(sorted(newest.items()), state):
        project_id, export = done.item[0][0], done.value
        if export is None:  # no go_on and no catch: every group's call ran and returned its export
            raise AssertionError(f"SI project {project_id}: the read of its current state returned nothing")
        if export.problem is not None:
            got.problems[keys.deep_read(project_id)] = (
                f"SI project {project_id}: its current state cannot be read: {export.problem}"
            )
            continue
        current.append(replace(export, current=True, detailed=True))
    return current


# ---- the store's view ---------------------------------------------------------------------------------


def _store_view(ctx: Context, got: _Read) -> tuple[dict[str, Snapshot], dict[str, IntentState]]:
    """Snapshots and intents of exactly the pairs this input touches (plus every open intent)."""
    store = ctx.store
    intents = store.open_intents()
    requeued = [i for i in intents.values() if i.status == keys.RETRY]
    got.links.update(
        store.links_where(
            deal_ids={i.deal_id for i in requeued if i.deal_id},
            project_ids={i.project_id for i in requeued if i.project_id},
        )
    )
    deal_ids = set(got.links) | {d.id for d in got.deals}
    snapshots = store.snapshots(deal_ids)
    pending = store.pending_snapshots()
    snapshots.update(pending)
    got.links.update(store.links_where(deal_ids=set(pending) - set(got.links)))
    projects = {e.project_id for e in got.exports}
    intents.update(store.intents_with_prefixes(keys.note_prefix(pid) for pid in projects))
    intents.update(store.intents_with_prefixes(keys.create(d.id) for d in got.deals if d.id not in got.links))
    return snapshots, intents


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]
