"""The applier's Zoho calls: batched deal writes (100 records a ``PUT``) and change-order notes.

A record Zoho rejects parks that record alone; its batch-mates proceed. A note whose earlier attempt may
have reached Zoho (the planner says ``look_first``) is looked for on the deal, by its reference line,
before it is posted again: a note ``POST`` is not idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler import keys
from reconciler.apply.book import Book
from reconciler.clients.zoho import NoteDraft, RecordResult, ZohoClient
from reconciler.errors import ApiError
from reconciler.logs import event
from reconciler.model import AddNote, UpdateDeal
from reconciler.plan import note_reference

__all__ = ["DealWrite", "ZohoWriter"]


@dataclass
class DealWrite:
    """One record of the batched ``PUT /Deals``, and what to do once Zoho accepted it."""

    key: str
    deal_id: str
    project_id: str | None
    record: dict[str, Any]
    changes: Sequence[tuple[str, Any, Any]]
    action: str
    on_success: Callable[[], None] | None = None
    input_hash: str = ""

    @classmethod
    def of(cls, update: UpdateDeal) -> DealWrite:
        changes = [(c.field, c.old, c.new) for c in update.changes]
        return cls(
            update.key,
            update.deal_id,
            update.project_id,
            dict(update.record),
            changes,
            "update_deal",
            input_hash=update.input_hash,
        )


@dataclass
class ZohoWriter:
    zoho: ZohoClient
    book: Book
    _notes_seen: dict[str, list[str]] = field(default_factory=dict)

    # ---- deal writes ------------------------------------------------------------------------------

    def write_deals(self, writes: Sequence[DealWrite]) -> None:
        store, book = self.book.store, self.book
        updates = [write for write in writes if write.action != "create"]  # a create's intent is open already
        book.begin(updates, "update_deal", lambda write: {"record": write.record})
        for start in range(0, len(writes), keys.ZOHO_WRITE_BATCH):
            batch = writes[start : start + keys.ZOHO_WRITE_BATCH]
            if book.stopping():
                for write in batch:
                    book.skipped(write.key)
                continue
            try:
                results = self.zoho.update_records([w.record for w in batch])
            except ApiError as exc:
                for write in batch:
                    book.failed(write.key, write.action, exc)
                continue
            with store.atomic():  # the batch's outcomes in one transaction
                for write, outcome in zip(batch, results, strict=True):
                    self._deal_result(write, outcome)

    def _deal_result(self, write: DealWrite, outcome: RecordResult) -> None:
        store, book = self.book.store, self.book
        if not outcome.ok:
            field_name = outcome.details.get("api_name") or outcome.details.get("id") or "?"
            message = (
                f"Zoho rejected the update of deal {write.deal_id}: field {field_name}: {outcome.code} "
                f"{outcome.message}"
            )
            book.failed(write.key, write.action, message, permanent=True)
            return
        with store.atomic():
            store.finish_intent(write.key)
            if write.on_success is not None:
                write.on_success()
            store.audit(
                book.cycle_id,
                write.key,
                list(write.changes),
                deal_id=write.deal_id,
                project_id=write.project_id,
            )
        book.applied(write.key, write.action)
        event("action.applied", "DEBUG", key=write.key, fields=len(write.record) - 1)

    # ---- notes ------------------------------------------------------------------------------------

    def add_notes(self, notes: Sequence[AddNote]) -> None:
        store, book = self.book.store, self.book
        to_post: list[AddNote] = []
        book.begin(
            notes,
            "note",
            lambda note: {
                "title": note.title,
                "content": note.content,
                "co_number": note.co_number,
                "co_status": note.co_status,
            },
        )
        blanked = [note for note in notes if note.blanked]
        if blanked:  # counted once per cycle: a value with no single text form was shown empty
            fields = sorted({name for note in blanked for name in note.blanked})
            event("note.blank_values", "WARNING", notes=len(blanked), fields=",".join(fields))
        for note in notes:
            if note.look_first:
                if book.stopping():
                    book.skipped(note.key)
                    continue
                if self._already_there(note):
                    continue
            to_post.append(note)
        for start in range(0, len(to_post), keys.ZOHO_WRITE_BATCH):
            batch = to_post[start : start + keys.ZOHO_WRITE_BATCH]
            if book.stopping():
                for note in batch:
                    book.skipped(note.key)
                continue
            drafts = [NoteDraft(n.deal_id, n.title, n.content) for n in batch]
            try:
                results = self.zoho.create_notes(drafts)
            except ApiError as exc:
                for note in batch:
                    book.failed(note.key, "note", exc)
                continue
            with store.atomic():  # the batch's outcomes in one transaction
                for note, outcome in zip(batch, results, strict=True):
                    self._note_result(note, outcome)

    def _already_there(self, note: AddNote) -> bool:
        """An earlier attempt may have reached Zoho before we could record it: look on the deal first."""
        store, book = self.book.store, self.book
        try:
            if note.deal_id not in self._notes_seen:
                self._notes_seen[note.deal_id] = [
                    str(n.get("Note_Content") or "") for n in self.zoho.deal_notes(note.deal_id)
                ]
        except ApiError as exc:
            book.failed(note.key, "note", exc)
            return True
        reference = note_reference(note.project_id, note.co_number, note.co_status)
        if not any(reference in content for content in self._notes_seen[note.deal_id]):
            return False
        with store.atomic():
            store.finish_intent(note.key)
        book.applied(note.key, "note")
        event("action.recovered", key=note.key)
        return True

    def _note_result(self, note: AddNote, outcome: RecordResult) -> None:
        store, book = self.book.store, self.book
        if not outcome.ok:
            field_name = outcome.details.get("api_name") or "?"
            message = (
                f"Zoho rejected the note for deal {note.deal_id} ({note.key}): field {field_name}: "
                f"{outcome.code} {outcome.message}"
            )
            book.failed(note.key, "note", message, permanent=True)
            return
        with store.atomic():
            store.set_remote(note.key, {"note_id": outcome.id})
            store.finish_intent(note.key)
            store.audit(
                book.cycle_id,
                note.key,
                [("note", None, note.title)],
                deal_id=note.deal_id,
                project_id=note.project_id,
            )
        book.applied(note.key, "note")
        event("action.applied", "DEBUG", key=note.key)
