"""One linked deal/project pair: a frozen :class:`PairInputs` in, a :class:`PairPlan` out. Pure.

For a pair the planner decides, in this order:

1. which of SI's messages it can use: a (project, change order) group with a message that could not be
   read (its details failed, or details it needed were not read) is *held*: neither used, noted nor
   acknowledged, and the failure is counted on ``read:project:<project>`` (parked after a few cycles);
2. the publish's fate (imported, failed, or its status lost) and the deal's sync status;
3. SI's reports, field by field (:mod:`reconciler.plan.reports`), and for each mapped field what to write
   (:mod:`reconciler.plan.fields`);
4. one batched deal update, one SI update (with its ``MessageId``), one note per new change-order state;
5. the settle: the snapshot, link and acknowledgements the applier stores once all of it is done.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import keys
from reconciler.mapping import FieldMap, Mapping, to_zoho_json
from reconciler.model import (
    Ack,
    Action,
    Conflict,
    Defer,
    FieldChange,
    IntentState,
    LinkState,
    Park,
    PublishOutcome,
    Settle,
    SiExport,
    Snapshot,
    UpdateDeal,
    UpdateProject,
)
from reconciler.plan.common import (
    ARCHIVED_IN_SI,
    DELETED_IN_SI,
    IN_SI,
    STATUS_MAX,
    canon_digest,
    digest,
    truncate,
    update_message_id,
)
from reconciler.plan.fields import _UNSET, FieldView, SiRead, decide, read_si
from reconciler.plan.notes import plan_notes
from reconciler.plan.reports import Reports, si_reports

__all__ = ["Lookups", "PairInputs", "PairPlan", "acks_for", "failure", "plan_pair", "split_held"]


@dataclass(frozen=True)
class Lookups:
    """What the whole world offers every pair: the mapping and the store's and SI's answers by key."""

    mapping: Mapping
    intents: AbcMapping[str, IntentState]
    outcomes: AbcMapping[str, PublishOutcome]
    status_errors: AbcMapping[str, str]

    def is_parked(self, key: str, input_hash: str) -> bool:
        intent = self.intents.get(key)
        return intent is not None and intent.status == keys.PARKED and intent.input_hash == input_hash

    def open(self, key: str) -> bool:
        intent = self.intents.get(key)
        return intent is not None and intent.status in keys.OPEN


@dataclass(frozen=True)
class PairInputs:
    """One pair as this cycle sees it. ``canon`` is None when the deal was not read this cycle."""

    link: LinkState
    stored: LinkState | None  # the link as the store has it (None: adopted in this cycle)
    canon: AbcMapping[str, Any] | None
    zoho_hash: str | None
    snapshot: Snapshot
    exports: tuple[SiExport, ...] = ()  # this pair's messages, oldest first
    forced: bool = False  # re-queued by `retry`, or read by `reconcile --deep`: plan it even if quiet


@dataclass(frozen=True)
class PairPlan:
    actions: tuple[Action, ...] = ()
    settle: Settle | None = None


@dataclass
class _Work:
    """What one pair's planning accumulates (local to :func:`plan_pair`)."""

    actions: list[Action] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)  # keys the settle waits for
    resolved: list[str] = field(default_factory=list)
    deal_record: dict[str, Any] = field(default_factory=dict)
    zoho_changes: list[FieldChange] = field(default_factory=list)
    si_changes: list[tuple[FieldMap, FieldChange, SiRead]] = field(default_factory=list)
    parks: dict[str, str] = field(default_factory=dict)  # key -> input hash parked by this plan


def failure(key: str, deal_id: str | None, project_id: str | None, message: str, w: Lookups) -> Action | None:
    """A failed item: Defer (count an attempt), Park once attempts are used up, None when parked already."""
    input_hash = digest(message)
    intent = w.intents.get(key)
    if intent is not None and intent.status == keys.PARKED and intent.input_hash == input_hash:
        return None
    attempts = intent.attempts if intent is not None and intent.status == keys.PENDING else 0
    if attempts + 1 >= keys.MAX_ATTEMPTS:
        return Park(key, deal_id, project_id, message, input_hash)
    return Defer(key, deal_id, project_id, message, input_hash)


def acks_for(exports: Sequence[SiExport]) -> tuple[Ack, ...]:
    """One acknowledgement per export message (SI's present state, read by --deep, is never acked)."""
    return tuple(
        Ack(e.project_id, e.co_number, e.published_ms, e.message_id) for e in exports if not e.current
    )


def split_held(
    exports: Sequence[SiExport], mapping: Mapping
) -> tuple[tuple[SiExport, ...], tuple[SiExport, ...]]:
    """(usable, held): a (project, change order) group is held whole when one of its messages is unusable."""
    need_base = mapping.needs_project_detail()
    need_co = mapping.needs_change_order_detail()
    bad: set[str | None] = set()
    for export in exports:
        needed = need_co if export.co_number is not None else need_base
        if export.problem is not None or (needed and not export.detailed):
            bad.add(export.co_number)
    usable = tuple(e for e in exports if e.co_number not in bad)
    held = tuple(e for e in exports if e.co_number in bad)
    return usable, held


def plan_pair(p: PairInputs, w: Lookups) -> PairPlan:
    """Plan one pair (see the module docstring for the order of decisions)."""
    deal_id, project_id = p.link.deal_id, p.link.project_id
    usable, held = split_held(p.exports, w.mapping)
    if _quiet(p, w) and not p.exports:
        return PairPlan()
    work = _Work()
    _held(held, deal_id, project_id, work, w)
    link = _publish(p, usable, work, w)
    reports = si_reports(usable, w.mapping, project_id, deal_id)
    notes = plan_notes(deal_id, project_id, usable, w.mapping, w.intents)
    if reports.bad is not None:
        _add(work, failure_or_park(keys.bad_project(project_id), deal_id, project_id, reports.bad, usable, w))
        work.actions.extend(notes)
        work.waits.extend(n.key for n in notes)
        settle = Settle(deal_id, project_id, tuple(work.waits), acks=acks_for(usable), link=link)
        return PairPlan(tuple(work.actions), settle)
    if w.open(keys.bad_project(project_id)):
        work.resolved.append(keys.bad_project(project_id))  # a later export carries a good value
    snapshot = _fields(p, _heard(p, reports), work, w)
    snapshot = _deal_update(p, snapshot, work, w)
    if link.si_state == "deleted":
        work.si_changes.clear()  # SI cannot take updates of a deleted project; they flow if it returns
    snapshot, updates = _project_update(p, snapshot, work, w)
    snapshot = _shown_status(p, snapshot, work, w)
    work.actions.extend(notes)
    work.waits.extend(n.key for n in notes)  # the acks wait for the notes, or a failed note is lost
    after_hash = None
    if p.canon is not None:
        after = dict(p.canon)
        after.update({c.field: c.new for c in work.zoho_changes})
        after_hash = canon_digest(after)
    settle = Settle(
        deal_id,
        project_id,
        tuple(work.waits),
        zoho=snapshot.zoho,
        si=snapshot.si,
        pending=snapshot.pending,
        zoho_hash=after_hash,
        acks=acks_for(usable),
        link=link,
        resolved_keys=tuple(work.resolved),
        updates=updates,
        reported=snapshot.reported,
    )
    return PairPlan(tuple(work.actions), settle)


def failure_or_park(
    key: str, deal_id: str, project_id: str, message: str, exports: Sequence[SiExport], w: Lookups
) -> Action | None:
    """Bad data from SI: parked at once (a retry cannot fix it; a new export can), unless parked already."""
    input_hash = digest([dict(e.values) for e in exports])
    if w.is_parked(key, input_hash):
        return None
    return Park(key, deal_id, project_id, message, input_hash)


def _add(work: _Work, action: Action | None) -> None:
    if action is not None:
        work.actions.append(action)


def _quiet(p: PairInputs, w: Lookups) -> bool:
    """Nothing moved on either side: no news from SI, the deal as the snapshot has it, nothing resolved."""
    if p.forced or p.stored is None or p.link != p.stored or p.snapshot.held:
        return False
    if p.canon is not None and p.zoho_hash != p.snapshot.zoho_hash:
        return False
    if p.link.message_id is not None and (
        p.link.message_id in w.outcomes or p.link.message_id in w.status_errors
    ):
        return False
    for entry in p.snapshot.pending.values():
        message_id = str(entry.get("message_id") or "")
        if message_id in w.outcomes or message_id in w.status_errors:
            return False
    return True


def _held(held: Sequence[SiExport], deal_id: str, project_id: str, work: _Work, w: Lookups) -> None:
    """Count a failed read for messages that cannot be used; clear the item once they can."""
    key = keys.unreadable_export(project_id)
    if not held:
        if w.open(key):
            work.resolved.append(key)
        return
    problems = sorted({e.problem or "its details were not read" for e in held})
    messages = ", ".join(sorted({str(e.message_id) for e in held}))
    message = (
        f"SI project {project_id} (deal {deal_id}): export message(s) {messages} cannot be read: "
        f"{'; '.join(problems)}; they are neither noted nor acknowledged until they can be"
    )
    _add(work, failure(key, deal_id, project_id, message, w))


def _publish(p: PairInputs, usable: Sequence[SiExport], work: _Work, w: Lookups) -> LinkState:
    """The publish's fate and the project's state in SI, shown on the deal; returns the link after it.

    ``SI_Sync_Status`` reads ``Queued for SI`` until SI imports the project, then ``In SI``, or ``SI
    import failed: <message>``; ``Archived in SI`` or ``Deleted in SI`` while SI's newest export says so.
    """
    link, m = p.link, w.mapping
    if p.canon is not None and not p.canon[m.link_field]:
        # The deal must carry its project id (a crash between publish and write-back, or a human cleared it).
        work.zoho_changes.append(FieldChange(m.link_field, None, link.project_id))
        work.deal_record[m.link_field] = link.project_id
    before = link
    link = _outcome(link, usable, work, w)
    base = [e for e in usable if e.co_number is None]
    if base:
        newest = max(base, key=lambda e: e.published_ms).values
        state = (
            "deleted"
            if newest.get("deleted") is True
            else "archived"
            if newest.get("archived") is True
            else ""
        )
        link = replace(link, si_state=state)
    text = _status_text(link)
    if m.status_field and text is not None:
        known = p.canon is not None or m.status_field in p.snapshot.zoho
        old = p.canon.get(m.status_field) if p.canon is not None else p.snapshot.zoho.get(m.status_field)
        if old != text and (known or link != before):
            work.zoho_changes.append(FieldChange(m.status_field, old, text))
            work.deal_record[m.status_field] = text
    return link


def _si_state(values: AbcMapping[str, Any]) -> str:
    """What SI's newest base-project export says of the project: deleted, archived, or neither."""
    if values.get("deleted") is True:
        return "deleted"
    return "archived" if values.get("archived") is True else ""


def _status_text(link: LinkState) -> str | None:
    if link.si_state == "deleted":
        return DELETED_IN_SI
    if link.si_state == "archived":
        return ARCHIVED_IN_SI
    if link.publish_status == "imported":
        return IN_SI
    if link.publish_status == "failed":
        return truncate(f"SI import failed: {link.publish_error or 'no reason given'}", STATUS_MAX)
    return None  # still queued: the create wrote "Queued for SI"


def _outcome(link: LinkState, usable: Sequence[SiExport], work: _Work, w: Lookups) -> LinkState:
    """A pending publish SI imported (or failed to import, or whose status SI lost)."""
    if link.publish_status != "pending":
        return link
    message_id = link.message_id or ""
    outcome = w.outcomes.get(message_id)
    if outcome is None and message_id in w.status_errors:
        text = (
            f"deal {link.deal_id}: SI cannot tell the status of the publish of project {link.project_id} "
            f"(message {message_id}): {w.status_errors[message_id]}"
        )
        _add(work, failure(keys.lost_status(message_id), link.deal_id, link.project_id, text, w))
    if outcome is None and not any(not e.current for e in usable):
        return link
    if outcome is None or outcome.status_id == keys.MESSAGE_IMPORTED:
        # Imported (an export of the project proves it too, when SI lost the message's status).
        if w.open(keys.lost_status(message_id)):
            work.resolved.append(keys.lost_status(message_id))
        return replace(link, publish_status="imported", publish_error=None)
    error = outcome.error or "no reason given"
    key = keys.publish(link.deal_id)
    if not w.is_parked(key, outcome.message_id):
        work.actions.append(
            Park(
                key,
                link.deal_id,
                link.project_id,
                f"deal {link.deal_id}: SI failed to import project {link.project_id}: {error}; fix the "
                f"cause, then `reconciler retry {key}` publishes it again",
                outcome.message_id,
            )
        )
    return replace(link, publish_status="failed", publish_error=error)


def _pending(p: PairInputs, work: _Work, w: Lookups) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our SI updates still waiting, after SI's answers about them; and SI's side of the snapshot.

    An update SI failed to apply is parked (``retry`` sends it again) and SI is taken to hold what it held
    before; an entry without a message id never reached SI (it was parked) and waits for nothing.
    """
    pending: dict[str, Any] = {}
    si = dict(p.snapshot.si)
    failed: dict[str, list[str]] = {}
    for name, entry in p.snapshot.pending.items():
        message_id = str(entry.get("message_id") or "")
        outcome = w.outcomes.get(message_id)
        if not message_id:
            continue
        if outcome is None:
            pending[name] = entry
            if message_id in w.status_errors:
                text = (
                    f"SI project {p.link.project_id} (deal {p.link.deal_id}): SI cannot tell the status of "
                    f"our update {message_id}: {w.status_errors[message_id]}"
                )
                _add(work, failure(keys.lost_status(message_id), p.link.deal_id, p.link.project_id, text, w))
        elif outcome.status_id == keys.MESSAGE_IMPORTED:
            if outcome.imported_ms is not None:
                # Imported: exports published before the import may still show the old value; keep the
                # entry until SI echoes our value or exports something newer than the import.
                pending[name] = {**entry, "imported_ms": outcome.imported_ms}
        else:
            failed.setdefault(message_id, []).append(name)
            stale = entry.get("stale") or []
            if stale:
                si[name] = stale[-1]
            else:
                si.pop(name, None)
    for message_id, names in sorted(failed.items()):
        _failed_update(p, message_id, names, work, w)
    return pending, si


def _failed_update(p: PairInputs, message_id: str, names: list[str], work: _Work, w: Lookups) -> None:
    key = keys.project_update(p.link.project_id)
    entries = p.snapshot.pending
    by_name = {f.zoho: f for f in w.mapping.fields}
    fields = tuple(
        (by_name[n].si_field_id or 0, by_name[n].si_value(entries[n]["value"])) for n in names if n in by_name
    )
    input_hash = digest(fields)
    error = w.outcomes[message_id].error or "no reason given"
    work.parks[key] = input_hash  # not sent again by itself: `retry` does that
    if not w.is_parked(key, input_hash):
        work.actions.append(
            Park(
                key,
                p.link.deal_id,
                p.link.project_id,
                f"SI project {p.link.project_id} (deal {p.link.deal_id}): SI failed to apply our update of "
                f"{', '.join(sorted(names))}: {error}; `reconciler retry {key}` sends it again",
                input_hash,
            )
        )


@dataclass(frozen=True)
class _Heard:
    """What SI said of one field: its newest value this poll, when, whether it is SI's present state
    (``reconcile --deep``), and every value of the poll oldest first."""

    value: Any
    ms: int
    current: bool = False
    history: tuple[tuple[Any, int], ...] = ()


def _heard(p: PairInputs, reports: Reports) -> dict[str, _Heard]:
    """This poll's reports, plus those kept while the pair did not sync (the newest wins)."""
    heard = {
        name: _Heard(value, reports.published_ms[name], name in reports.current, tuple(reports.history[name]))
        for name, value in reports.values.items()
    }
    for name, (value, when) in p.snapshot.held.items():
        if name not in heard or heard[name].ms < int(when):
            heard[name] = _Heard(value, int(when))
    return heard


def _report(
    name: str,
    heard: _Heard | None,
    snap: Snapshot,
    entry: AbcMapping[str, Any] | None,
    base_si: dict[str, Any],
) -> tuple[Any, int, AbcMapping[str, Any] | None]:
    """The report to read for ``name`` (``_UNSET``: none new), its time, and our update still waiting.

    A report no newer than the one the snapshot already applied is an old message delivered again (its
    acknowledgement failed): not news. An echo of our waiting update earlier in this poll ends the wait
    there, so a newer report after it is SI's own value, not a stale one.
    """
    if heard is None:
        return _UNSET, 0, entry
    watermark = int(snap.reported.get(name, -1))
    if not heard.current and heard.ms <= watermark:
        return _UNSET, 0, entry
    if entry is not None and any(v == entry.get("value") and ms > watermark for v, ms in heard.history[:-1]):
        base_si[name] = entry.get("value")
        entry = None
    return heard.value, heard.ms, entry


def _fields(p: PairInputs, heard: AbcMapping[str, _Heard], work: _Work, w: Lookups) -> Snapshot:
    """Decide every mapped field; returns the snapshot the pair will have (before SI's new pending)."""
    snap, m = p.snapshot, w.mapping
    zoho_now = {f.zoho: p.canon[f.zoho] for f in m.fields} if p.canon is not None else dict(snap.zoho)
    new_zoho = {**snap.zoho, **zoho_now}
    pending, new_si = _pending(p, work, w)
    base_si = dict(new_si)
    new_pending: dict[str, Any] = {}
    reported = dict(snap.reported)
    for fmap in m.fields:
        name = fmap.zoho
        report, ms, entry = _report(name, heard.get(name), snap, pending.get(name), base_si)
        if report is not _UNSET:
            reported[name] = max(ms, int(reported.get(name, 0)))
        si = read_si(name, base_si, entry, report, ms)
        zoho = zoho_now.get(name)
        changed = p.canon is not None and (name not in snap.zoho or zoho != snap.zoho[name])
        view = FieldView(fmap.direction, fmap.on_conflict, zoho, changed, name not in snap.zoho, si)
        decision = decide(view)
        if si.known:
            new_si[name] = si.value
        if si.pending is not None:
            new_pending[name] = si.pending
        conflict_key = keys.conflict(p.link.deal_id, name)
        if decision.conflict:
            input_hash = digest([zoho, si.value])
            if not w.is_parked(conflict_key, input_hash):
                work.actions.append(
                    Conflict(
                        conflict_key, p.link.deal_id, p.link.project_id, name, zoho, si.value, input_hash
                    )
                )
            work.waits.append(conflict_key)
            continue
        if w.open(conflict_key):
            if decision.writes or zoho == si.value:
                work.resolved.append(conflict_key)
            elif not (changed or si.changed):
                continue  # still unresolved: leave both sides alone
        if decision.to_zoho:
            (value,) = decision.to_zoho
            work.zoho_changes.append(FieldChange(name, zoho, value))
            new_zoho[name] = value
        if decision.to_si:
            (value,) = decision.to_si
            work.si_changes.append((fmap, FieldChange(name, si.value if si.known else None, value), si))
    return Snapshot(snap.deal_id, snap.zoho_hash, new_zoho, new_si, new_pending, snap.updates, {}, reported)


def _shown_status(p: PairInputs, snapshot: Snapshot, work: _Work, w: Lookups) -> Snapshot:
    """The snapshot remembers the sync status the deal shows, to compare with when the deal is not read."""
    status = w.mapping.status_field
    if not status:
        return snapshot
    if status in work.deal_record:
        shown = work.deal_record[status]
    elif p.canon is not None:
        shown = p.canon.get(status)
    elif status in p.snapshot.zoho:
        shown = p.snapshot.zoho[status]
    else:
        return snapshot
    return replace(snapshot, zoho={**snapshot.zoho, status: shown})


def _deal_update(p: PairInputs, snapshot: Snapshot, work: _Work, w: Lookups) -> Snapshot:
    """One UpdateDeal for every Zoho write of the pair (unless that very write is parked)."""
    by_name = {f.zoho: f for f in w.mapping.fields}
    record = dict(work.deal_record)
    for change in work.zoho_changes:
        fmap = by_name.get(change.field)
        if fmap is not None:
            record[change.field] = to_zoho_json(change.new, fmap.zoho_type)
    if not record:
        return snapshot
    key = keys.deal_update(p.link.deal_id)
    input_hash = digest(record)
    work.waits.append(key)
    if w.is_parked(key, input_hash):
        # Parked with this very input, so not applied: the snapshot keeps what Zoho really holds (else a
        # later read of the deal would look like a Zoho edit and be pushed to SI).
        zoho = dict(snapshot.zoho)
        for change in work.zoho_changes:
            if change.field in zoho:
                zoho[change.field] = change.old
        work.zoho_changes.clear()
        work.deal_record.clear()
        return replace(snapshot, zoho=zoho)
    work.actions.append(
        UpdateDeal(
            key,
            p.link.deal_id,
            p.link.project_id,
            tuple(work.zoho_changes),
            {"id": p.link.deal_id, **record},
            input_hash,
        )
    )
    return snapshot


def _project_update(
    p: PairInputs, snapshot: Snapshot, work: _Work, w: Lookups
) -> tuple[Snapshot, int | None]:
    """One UpdateProject for every SI write of the pair, with its MessageId; the snapshot it leaves."""
    if not work.si_changes:
        return snapshot, None
    key = keys.project_update(p.link.project_id)
    fields = tuple((fmap.si_field_id or 0, fmap.si_value(change.new)) for fmap, change, _ in work.si_changes)
    input_hash = digest(fields)
    work.waits.append(key)
    if w.is_parked(key, input_hash) or work.parks.get(key) == input_hash:
        return snapshot, None  # parked with this very input: SI keeps its value, nothing is awaited
    intent = w.intents.get(key)
    sequence = snapshot.updates + 1
    message_id = update_message_id(p.link.project_id, sequence, input_hash)
    if intent is not None and intent.status == keys.PENDING and intent.input_hash == input_hash:
        message_id = str((intent.payload or {}).get("message_id") or message_id)  # a resend keeps its id
    si = dict(snapshot.si)
    pending = dict(snapshot.pending)
    for _, change, read in work.si_changes:
        earlier = read.pending
        stale = [*(earlier.get("stale") or []), earlier["value"]] if earlier is not None else []
        stale.append(read.now)
        pending[change.field] = {
            "value": change.new,
            "message_id": message_id,
            "stale": list(dict.fromkeys(stale)),
        }
        si[change.field] = change.new
    changes = tuple(change for _, change, _ in work.si_changes)
    work.actions.append(
        UpdateProject(
            key, p.link.deal_id, p.link.project_id, changes, fields, input_hash, message_id=message_id
        )
    )
    return replace(snapshot, si=si, pending=pending), sequence
