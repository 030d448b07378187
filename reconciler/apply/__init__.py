"""Apply a :class:`~reconciler.model.Plan`: execute it, action by action. It decides nothing.

Every action has a deterministic key. Its intent is committed *before* the external call and settled
after it, so a rerun after a crash resumes instead of repeating (what to resume, and how, the planner
decided: a create that only needs its write-back, a note to look for before posting, an update's
``MessageId``). Order: the planner's parks and failed reads are recorded; creates publish; SI updates
go out; deal writes (the creates' write-backs among them) go out 100 a call; notes; then each pair whose
actions are all done (applied or parked) settles (its snapshot and link are stored) and the SI messages it
processed are acknowledged. SI's calls (one per project: SI has no bulk form) run several at once
(``RECONCILER_SI_CONCURRENCY``, see :mod:`reconciler.apply.si_writes`); a group of up to 100 actions has
its intents committed in one transaction before its calls, and each outcome as soon as it is known.

One failure never aborts the cycle: a per-record error parks that record (its batch-mates proceed); a
transient failure leaves the intent pending for the next cycle (parked after ``MAX_ATTEMPTS``). A stop
request or the end of the time budget lets the call in flight finish and starts nothing new.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from reconciler.apply.book import ApplyResult, Book, Progress
from reconciler.apply.si_writes import GROUP, SiWriter
from reconciler.apply.zoho_writes import DealWrite, ZohoWriter
from reconciler.clients.pool import Lanes
from reconciler.clients.si import SiClient
from reconciler.clients.zoho import ZohoClient
from reconciler.errors import StopRequested
from reconciler.logs import event
from reconciler.mapping import Mapping
from reconciler.model import (
    Ack,
    AddNote,
    Conflict,
    CreateProject,
    Defer,
    Park,
    Plan,
    Settle,
    Snapshot,
    UpdateDeal,
    UpdateProject,
)
from reconciler.store import Store

__all__ = ["Applier", "ApplyResult", "Progress"]


class Applier:
    """Executes a plan (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        zoho: ZohoClient,
        si: SiClient,
        mapping: Mapping,
        *,
        cycle_id: int | None,
        stop: threading.Event | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        progress: Progress | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        """Ten parameters on purpose: the four objects it acts through, then the cycle's seams as keywords
        (the cycle id outcomes are recorded under, the stop event, the time budget and its clock, the
        progress reporter, the SI lanes)."""
        self.store = store
        self.mapping = mapping
        self.book = Book(
            store,
            cycle_id=cycle_id,
            stop=stop or threading.Event(),
            deadline=deadline,
            clock=clock,
            progress=progress,
        )
        self.si = SiWriter(si, mapping, self.book, lanes or Lanes())
        self.zoho = ZohoWriter(zoho, self.book)
        self._message_ids: dict[str, str] = {}  # our planned MessageId -> the one SI acknowledged

    @property
    def result(self) -> ApplyResult:
        return self.book.result

    def apply(self, plan: Plan) -> ApplyResult:
        book = self.book
        book.result.total = plan.writes()
        for action in plan.actions:
            if isinstance(action, Park | Conflict | Defer):
                self._record(action)
        try:
            self._execute(plan)
        except StopRequested:  # a stop cut a retry wait short: what is left waits for the rerun
            book.result.stopped = True
        book.blocked |= {a.key for a in plan.actions} - book.finished
        acks = self._settle(plan.settles)
        if acks and not book.stopping():
            try:
                self.si.ack_all(acks)
            except StopRequested:
                book.result.stopped = True
        self._close(plan.resolved)
        for export in plan.unknown:
            self.store.note_unknown_project(
                export.project_id, export.integration_id, _text(export.values, "name")
            )
        return book.result

    def _execute(self, plan: Plan) -> None:
        """The plan's writes, in order: creates, SI updates, deal writes (write-backs included), notes."""
        book = self.book
        writes: list[DealWrite] = []
        for group in _groups(_of(plan, CreateProject)):
            if book.stopping():
                book.blocked.update(create.key for create in group)
                continue
            writes.extend(self.si.create_all(group))
        for group in _groups(_of(plan, UpdateProject)):
            if book.stopping():
                book.blocked.update(update.key for update in group)
                continue
            self._message_ids.update(self.si.update_all(group))
        writes.extend(DealWrite.of(u) for u in _of(plan, UpdateDeal))
        self.zoho.write_deals(writes)
        self.zoho.add_notes(_of(plan, AddNote))

    # ---- what the planner found ---------------------------------------------------------------------

    def _record(self, action: Park | Conflict | Defer) -> None:
        store, book = self.store, self.book
        if isinstance(action, Defer):
            with store.atomic():
                store.record_failure(
                    action.key,
                    "read",
                    action.message,
                    deal_id=action.deal_id,
                    project_id=action.project_id,
                    input_hash=action.input_hash,
                    cycle_id=book.cycle_id,
                    park=False,
                )
            book.deferred(action.key, action.message)
            return
        if isinstance(action, Conflict):
            message = (
                f"conflict on deal {action.deal_id} / SI project {action.project_id}: field "
                f"{action.field} is {action.zoho_value!r} in Zoho and {action.si_value!r} in SI "
                "(on_conflict = manual); make them agree on either side"
            )
            payload: dict[str, Any] = {
                "field": action.field,
                "zoho": action.zoho_value,
                "si": action.si_value,
            }
        else:
            message, payload = action.message, {}
        with store.atomic():
            store.park(
                action.key,
                action.kind,
                message,
                deal_id=action.deal_id,
                project_id=action.project_id,
                payload=payload,
                input_hash=action.input_hash,
                cycle_id=book.cycle_id,
            )
        book.parked(action.key, action.kind, message)

    # ---- settle: snapshots, links, acknowledgements -----------------------------------------------

    def _settle(self, settles: Sequence[Settle]) -> list[Ack]:
        """Store each pair whose actions are all done; returns the acknowledgements they allow."""
        store, book = self.store, self.book
        acks: list[Ack] = []
        unknown = {u["project_id"] for u in store.unknown_projects()}  # usually none
        ready = [s for s in settles if not any(key in book.blocked for key in s.action_keys)]
        for group in _groups(ready):
            with store.atomic():
                for settle in group:
                    self._store_pair(settle, unknown)
                    acks.extend(settle.acks)
        return acks

    def _store_pair(self, settle: Settle, unknown: set[str]) -> None:
        """One pair's snapshot and link (inside its group's transaction)."""
        store = self.store
        if settle.link is not None:
            store.upsert_link(settle.link)
            if settle.link.project_id in unknown:  # e.g. adopted from the deal's SI_Project_ID
                store.forget_unknown_project(settle.link.project_id)
            if not settle.link.active:
                event("pair.inactive", deal_id=settle.deal_id, reason=settle.link.inactive_reason)
        if settle.zoho is not None:
            store.save_snapshot(self._snapshot(settle))
        elif settle.held is not None:
            store.save_held(settle.deal_id, settle.held)
        for key in settle.resolved_keys:
            store.finish_intent(key)

    def _snapshot(self, settle: Settle) -> Snapshot:
        pending = {
            name: {
                **entry,
                "message_id": self._message_ids.get(str(entry.get("message_id")), entry.get("message_id")),
            }
            for name, entry in (settle.pending or {}).items()
        }
        return Snapshot(
            settle.deal_id,
            zoho_hash=settle.zoho_hash or "",
            zoho=dict(settle.zoho or {}),
            si=dict(settle.si or {}),
            pending=pending,
            updates=settle.updates or 0,
            reported=dict(settle.reported or {}),
        )

    def _close(self, keys: Sequence[str]) -> None:
        """Re-queued items the plan no longer needs (their input is fine now, or nothing is left to do)."""
        if not keys or self.book.result.stopped:
            return
        with self.store.atomic():
            for key in keys:
                self.store.finish_intent(key)


def _groups(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), GROUP):
        yield items[start : start + GROUP]


def _of(plan: Plan, kind: type[Any]) -> list[Any]:
    return [a for a in plan.actions if isinstance(a, kind)]


def _text(values: Any, key: str) -> str | None:
    value = values.get(key) if hasattr(values, "get") else None
    return None if value is None else str(value)
