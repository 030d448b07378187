"""SI's side of a pair's fields this cycle: our updates still waiting in SI's queue, what SI reported,
and the decision for every field (the table is in :mod:`reconciler.plan.fields`). Pure."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from typing import Any

from reconciler import keys
from reconciler.model import Conflict, FieldChange, Park, Snapshot
from reconciler.plan.common import digest, new_tuple
from reconciler.plan.fields import _UNSET, FieldDecision, FieldView, decide, read_si
from reconciler.plan.reports import Report, Reports
from reconciler.plan.work import Lookups, PairInputs, PairState, Work, add, failure

__all__ = ["decide_fields", "heard", "pending_updates"]


def pending_updates(p: PairInputs, work: Work, w: Lookups) -> tuple[dict[str, Any], dict[str, Any]]:
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
                add(work, failure(keys.lost_status(message_id), p.link.deal_id, p.link.project_id, text, w))
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


def _failed_update(p: PairInputs, message_id: str, names: list[str], work: Work, w: Lookups) -> None:
    key = keys.project_update(p.link.project_id)
    entries = p.snapshot.pending
    by_name = w.by_zoho
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


def heard(p: PairInputs, reports: Reports) -> AbcMapping[str, Report]:
    """This poll's reports, plus those kept while the pair did not sync (the newest wins)."""
    if not p.snapshot.held:
        return reports.fields
    heard = dict(reports.fields)
    for name, (value, when) in p.snapshot.held.items():
        if name not in heard or heard[name].ms < int(when):
            heard[name] = Report(value, int(when))
    return heard


def _report(
    name: str,
    heard: Report | None,
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


def decide_fields(p: PairInputs, heard: AbcMapping[str, Report], work: Work, w: Lookups) -> PairState:
    """Decide every mapped field; returns the state the pair will have (before SI's new pending)."""
    snap, m = p.snapshot, w.mapping
    read = p.canon is not None
    zoho_now = {f.zoho: p.canon[f.zoho] for f in m.fields} if p.canon is not None else snap.zoho
    new_zoho = {**snap.zoho, **zoho_now}
    pending, new_si = pending_updates(p, work, w)
    base_si = dict(new_si)
    new_pending: dict[str, Any] = {}
    reported = dict(snap.reported)
    open_conflicts = w.open_conflicts
    for fmap in m.fields:
        name = fmap.zoho
        news = heard.get(name)
        if news is None:  # no report this cycle (most fields of most pairs)
            report, ms, entry = _UNSET, 0, pending.get(name)
        else:
            report, ms, entry = _report(name, news, snap, pending.get(name), base_si)
            if report is not _UNSET and (name not in reported or ms > int(reported[name])):
                reported[name] = ms  # the newest report applied: an older one delivered again is not news
        si = read_si(name, base_si, entry, report, ms)
        zoho = zoho_now.get(name)
        new = name not in snap.zoho
        changed = read and (new or zoho != snap.zoho[name])
        view = new_tuple(FieldView, (fmap.direction, fmap.on_conflict, zoho, changed, new, si))
        decision = decide(view)
        if si.known:
            new_si[name] = si.value
        if si.pending is not None:
            new_pending[name] = si.pending
        if (decision.conflict or open_conflicts) and _conflict(p, name, view, decision, work, w):
            continue  # a manual decision is asked for, or still awaited: both sides are left alone
        if decision.to_zoho:
            (value,) = decision.to_zoho
            work.zoho_changes.append(FieldChange(name, zoho, value))
            new_zoho[name] = value
        if decision.to_si:
            (value,) = decision.to_si
            work.si_changes.append((fmap, FieldChange(name, si.value if si.known else None, value), si))
    return PairState(new_zoho, new_si, new_pending, reported)


def _conflict(
    p: PairInputs, name: str, view: FieldView, decision: FieldDecision, work: Work, w: Lookups
) -> bool:
    """A field both sides changed differently under ``manual`` (a Conflict, unless parked with these very
    values), or whose earlier conflict waits for a decision: True when the field is left alone. A conflict
    resolves once a write settles it or both sides agree."""
    key = keys.conflict(p.link.deal_id, name)
    zoho, si = view.zoho, view.si
    if decision.conflict:
        input_hash = digest([zoho, si.value])
        if not w.is_parked(key, input_hash):
            work.actions.append(
                Conflict(key, p.link.deal_id, p.link.project_id, name, zoho, si.value, input_hash)
            )
        work.waits.append(key)
        return True
    if key in w.open_conflicts:
        if decision.writes or zoho == si.value:
            work.resolved.append(key)
        elif not (view.zoho_changed or si.changed):
            return True  # still unresolved: leave both sides alone
    return False
