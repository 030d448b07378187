"""Change-order notes: one Zoho note per change-order state ``(project, CONumber, COStatus)``. Pure.

Every state a poll sees gets exactly one note, written from the change order's real fields: a message
whose details were needed and could not be read is never noted (the pair holds it back, see
:mod:`reconciler.plan.pair`). A note already written (intent ``done``) or parked is not planned again; one
whose earlier attempt may have reached Zoho (intent still ``pending`` or re-queued) is looked for on the deal
before it is posted again.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence

from reconciler import keys
from reconciler.mapping import Mapping
from reconciler.model import AddNote, IntentState, SiExport
from reconciler.plan.common import CONTENT_MAX, TITLE_MAX, note_reference, truncate
from reconciler.templates import render

__all__ = ["plan_notes"]


def plan_notes(
    deal_id: str,
    project_id: str,
    exports: Sequence[SiExport],
    mapping: Mapping,
    intents: AbcMapping[str, IntentState],
) -> list[AddNote]:
    """One :class:`AddNote` per change-order state in ``exports`` not yet noted, in publishing order."""
    notes: list[AddNote] = []
    for export in exports:
        if export.co_number is not None:
            break
    else:
        return notes  # no change order in these messages (most pairs)
    planned: set[str] = set()
    for export in sorted(exports, key=lambda e: e.published_ms):
        if export.co_number is None or export.current:
            continue
        status = str(export.values.get("costatus") or "")
        key = keys.note(project_id, export.co_number, status)
        intent = intents.get(key)
        if key in planned or (intent is not None and intent.status in (keys.DONE, keys.PARKED)):
            continue
        planned.add(key)
        reference = note_reference(project_id, export.co_number, status)
        title_text = render(mapping.change_order_title, export.values)
        body_text = render(mapping.change_order_body, export.values)
        title = truncate(title_text.text, TITLE_MAX)
        body = truncate(body_text.text, CONTENT_MAX - len(reference) - 2)
        notes.append(
            AddNote(
                key,
                deal_id,
                project_id,
                export.co_number,
                status,
                title,
                f"{body}\n\n{reference}",
                look_first=intent is not None and intent.status in (keys.PENDING, keys.RETRY),
                blanked=tuple(dict.fromkeys((*title_text.blanked, *body_text.blanked))),
            )
        )
    return notes
