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

from collections.abc import Sequence

from reconciler import keys
from reconciler.convert import to_zoho_json
from reconciler.model import Action, LinkState, Park, Settle, SiExport, Snapshot, UpdateDeal, UpdateProject
from reconciler.plan.common import digest, update_message_id
from reconciler.plan.notes import plan_notes
from reconciler.plan.publish import publish_state, shown_status
from reconciler.plan.reports import si_reports
from reconciler.plan.values import decide_fields, heard
from reconciler.plan.work import Lookups, PairInputs, PairPlan, PairState, Work, acks_for, add, failure

__all__ = [
    "Lookups",
    "PairInputs",
    "PairPlan",
    "acks_for",
    "failure",
    "is_quiet",
    "plan_pair",
    "split_held",
    "unmoved",
]


def split_held(exports: Sequence[SiExport], w: Lookups) -> tuple[tuple[SiExport, ...], tuple[SiExport, ...]]:
    """(usable, held): a (project, change order) group is held whole when one of its messages is unusable."""
    if not exports:
        return (), ()
    need_base, need_co = w.need_base, w.need_co
    bad: set[str | None] = set()
    for export in exports:
        needed = need_co if export.co_number is not None else need_base
        if export.problem is not None or (needed and not export.detailed):
            bad.add(export.co_number)
    if not bad:
        return tuple(exports), ()
    usable = tuple(e for e in exports if e.co_number not in bad)
    held = tuple(e for e in exports if e.co_number in bad)
    return usable, held


def plan_pair(p: PairInputs, w: Lookups) -> PairPlan:
    """Plan one pair (see the module docstring for the order of decisions)."""
    if is_quiet(p, w):
        return PairPlan()
    deal_id, project_id = p.link.deal_id, p.link.project_id
    usable, held = split_held(p.exports, w)
    work = Work()
    _held(held, deal_id, project_id, work, w)
    link = publish_state(p, usable, work, w)
    reports = si_reports(usable, w.mapping, project_id, deal_id)
    notes = plan_notes(deal_id, project_id, usable, w.mapping, w.intents)
    if reports.bad is not None:
        add(work, failure_or_park(keys.bad_project(project_id), deal_id, project_id, reports.bad, usable, w))
        work.actions.extend(notes)
        work.waits.extend(n.key for n in notes)
        settle = Settle(deal_id, project_id, tuple(work.waits), acks=acks_for(usable), link=link)
        return PairPlan(tuple(work.actions), settle)
    if w.open(keys.bad_project(project_id)):
        work.resolved.append(keys.bad_project(project_id))  # a later export carries a good value
    snapshot = decide_fields(p, heard(p, reports), work, w)
    snapshot = _deal_update(p, snapshot, work, w)
    if link.si_state == "deleted":
        work.si_changes.clear()  # SI cannot take updates of a deleted project; they flow if it returns
    snapshot, updates = _project_update(p, snapshot, work, w)
    snapshot = shown_status(p, snapshot, work, w)
    work.actions.extend(notes)
    work.waits.extend(n.key for n in notes)  # the acks wait for the notes, or a failed note is lost
    after_hash = None
    if p.canon is not None:
        after = dict(p.canon)
        after.update({c.field: c.new for c in work.zoho_changes})
        after_hash = w.spec.digest(after)
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


def is_quiet(p: PairInputs, w: Lookups) -> bool:
    """Nothing moved on either side: no news from SI, the deal as the snapshot has it, nothing resolved."""
    if p.exports or p.forced or (p.canon is not None and p.zoho_hash != p.snapshot.zoho_hash):
        return False
    return unmoved(p.link, p.stored, p.snapshot, w)


def unmoved(link: LinkState, stored: LinkState | None, snapshot: Snapshot, w: Lookups) -> bool:
    """The rest of :func:`is_quiet`, once SI sent nothing and the deal is as the snapshot has it: the link
    is the stored one, nothing is held, and SI has no answer about our publish or updates. (The driver asks
    it directly for most deals of a full read, before building their inputs.)"""
    if stored is None or snapshot.held:
        return False
    if link is not stored and link != stored:
        return False
    if link.message_id is not None and (link.message_id in w.outcomes or link.message_id in w.status_errors):
        return False
    for entry in snapshot.pending.values() if snapshot.pending else ():
        message_id = str(entry.get("message_id") or "")
        if message_id in w.outcomes or message_id in w.status_errors:
            return False
    return True


def _held(held: Sequence[SiExport], deal_id: str, project_id: str, work: Work, w: Lookups) -> None:
    """Count a failed read for messages that cannot be used; clear the item once they can."""
    if not held:
        if w.intents and w.open(keys.unreadable_export(project_id)):
            work.resolved.append(keys.unreadable_export(project_id))
        return
    key = keys.unreadable_export(project_id)
    problems = sorted({e.problem or "its details were not read" for e in held})
    messages = ", ".join(sorted({str(e.message_id) for e in held}))
    message = (
        f"SI project {project_id} (deal {deal_id}): export message(s) {messages} cannot be read: "
        f"{'; '.join(problems)}; they are neither noted nor acknowledged until they can be"
    )
    add(work, failure(key, deal_id, project_id, message, w))


def _deal_update(p: PairInputs, snapshot: PairState, work: Work, w: Lookups) -> PairState:
    """One UpdateDeal for every Zoho write of the pair (unless that very write is parked)."""
    by_name = w.by_zoho
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
        return snapshot._replace(zoho=zoho)
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
    p: PairInputs, snapshot: PairState, work: Work, w: Lookups
) -> tuple[PairState, int | None]:
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
    sequence = p.snapshot.updates + 1
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
    return snapshot._replace(si=si, pending=pending), sequence
