"""A pair's publish and its project's state in SI, shown on the deal as ``SI_Sync_Status``. Pure.

The status reads ``Queued for SI`` until SI imports the project, then ``In SI``, or ``SI import failed:
<message>`` (the publish is parked; ``retry`` publishes it again); ``Archived in SI`` or ``Deleted in SI``
while SI's newest export of the project says so. An export of the project also proves the import when SI
lost the publish message's status. The snapshot remembers what the deal shows, so a deal that was not
read this cycle is only written when its status really changes.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from reconciler import keys
from reconciler.model import FieldChange, LinkState, Park, SiExport
from reconciler.plan.common import ARCHIVED_IN_SI, DELETED_IN_SI, IN_SI, STATUS_MAX, truncate
from reconciler.plan.work import Lookups, PairInputs, PairState, Work, add, failure

__all__ = ["publish_state", "shown_status"]


def publish_state(p: PairInputs, usable: Sequence[SiExport], work: Work, w: Lookups) -> LinkState:
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
    newest: SiExport | None = None
    for export in usable:  # SI's newest base-project message says whether the project is archived/deleted
        if export.co_number is None and (newest is None or export.published_ms > newest.published_ms):
            newest = export
    if newest is not None:
        state = _si_state(newest.values)
        if state != link.si_state:
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


def _outcome(link: LinkState, usable: Sequence[SiExport], work: Work, w: Lookups) -> LinkState:
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
        add(work, failure(keys.lost_status(message_id), link.deal_id, link.project_id, text, w))
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


def shown_status(p: PairInputs, snapshot: PairState, work: Work, w: Lookups) -> PairState:
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
    if status in snapshot.zoho and snapshot.zoho[status] == shown:
        return snapshot
    return snapshot._replace(zoho={**snapshot.zoho, status: shown})
