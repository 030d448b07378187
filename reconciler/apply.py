"""Apply a :class:`~reconciler.model.Plan` through the clients and the store, action by action.

Every action has a deterministic key. Its intent is committed *before* the external call and settled
after it, so a rerun after a crash resumes instead of repeating:

* a create whose intent already holds the SI project id skips the publish and only writes back;
  otherwise it publishes again with the same Guid, which SI treats as the same project;
* a note whose intent was left pending is looked for on the deal (by its reference line) before it is
  posted again;
* deal and project updates are idempotent (they set values), so resending them is harmless.

One failure never aborts the cycle: a per-record error parks that record (its batch-mates proceed); a
transient failure leaves the intent pending for the next cycle (parked after ``MAX_ATTEMPTS``). A pair's
snapshot is saved and its SI messages acknowledged only when all its actions are applied or parked.
A stop request (SIGTERM) lets the call in flight finish and starts nothing new.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.clients.si import SiClient
from reconciler.clients.zoho import NoteDraft, RecordResult, ZohoClient
from reconciler.errors import ApiError, PermanentApiError, StopRequested
from reconciler.logs import event
from reconciler.mapping import Mapping
from reconciler.model import (
    Ack,
    AddNote,
    Conflict,
    CreateProject,
    FieldChange,
    IntentState,
    LinkState,
    Park,
    Plan,
    Settle,
    Snapshot,
    UpdateDeal,
    UpdateProject,
)
from reconciler.plan import QUEUED, digest, note_reference
from reconciler.store import Store

__all__ = ["MAX_ATTEMPTS", "Applier", "ApplyResult"]

MAX_ATTEMPTS = 5
_MESSAGE_NAMESPACE = uuid.UUID("0b8d3c62-5a57-4f0e-8f3e-9f1d6a7c2b10")


@dataclass
class ApplyResult:
    counts: Counter[str] = field(default_factory=Counter)
    parked: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    stopped: bool = False

    @property
    def clean(self) -> bool:
        """Nothing left for a later cycle: no transient failure, no stop."""
        return not self.failed and not self.stopped


@dataclass
class _DealWrite:
    """One record of the batched ``PUT /Deals``, and what to do once Zoho accepted it."""

    key: str
    deal_id: str
    project_id: str | None
    record: dict[str, Any]
    changes: Sequence[FieldChange]
    action: str
    on_success: Callable[[], None] | None = None
    input_hash: str = ""  # the planner's, so a parked write is recognised next cycle


class Applier:
    def __init__(
        self,
        store: Store,
        zoho: ZohoClient,
        si: SiClient,
        mapping: Mapping,
        *,
        cycle_id: int | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.zoho = zoho
        self.si = si
        self.m = mapping
        self.cycle_id = cycle_id
        self.stop = stop or threading.Event()
        self.result = ApplyResult()
        self._done: set[str] = set()  # keys applied or parked this cycle
        self._blocked: set[str] = set()  # keys that failed transiently or were never started
        self._update_messages: dict[str, str] = {}  # deal id -> message id of our SI update

    # ---- bookkeeping --------------------------------------------------------------------------------

    def _applied(self, key: str, kind: str) -> None:
        self._done.add(key)
        self.result.counts[f"{kind}.applied"] += 1

    def _failed(self, key: str, kind: str, error: ApiError | str, *, permanent: bool | None = None) -> None:
        message = str(error)
        if permanent is None:
            permanent = isinstance(error, PermanentApiError)
        with self.store.atomic():
            parked = self.store.fail_intent(key, message, permanent=permanent, max_attempts=MAX_ATTEMPTS)
        if parked:
            # Parked writes did not happen: the pair keeps its old snapshot (and its SI messages stay
            # unacknowledged) until the planner sees the parked intent next cycle and settles it for real.
            self._done.add(key)
            self._blocked.add(key)
            self.result.parked.append((key, message))
            self.result.counts[f"{kind}.parked"] += 1
            event("action.parked", "WARNING", key=key, error=message)
        else:
            self._blocked.add(key)
            self.result.failed.append((key, message))
            self.result.counts[f"{kind}.failed"] += 1
            event("action.failed", "WARNING", key=key, error=message)

    def _stopping(self) -> bool:
        if self.stop.is_set():
            self.result.stopped = True
            return True
        return False

    # ---- driver -----------------------------------------------------------------------------------

    def apply(self, plan: Plan, retried: Sequence[IntentState] = ()) -> ApplyResult:
        planned = {action.key for action in plan.actions}
        creates = [a for a in plan.actions if isinstance(a, CreateProject)]
        deal_updates = [a for a in plan.actions if isinstance(a, UpdateDeal)]
        project_updates = [a for a in plan.actions if isinstance(a, UpdateProject)]
        notes = [a for a in plan.actions if isinstance(a, AddNote)]
        writes: list[_DealWrite] = []

        for intent in retried:
            if intent.key in planned:
                continue
            self._resume(intent, creates, project_updates, notes, writes)

        for action in plan.actions:
            if isinstance(action, Park | Conflict):
                self._park(action)
        try:
            for create in creates:
                if self._stopping():
                    self._blocked.add(create.key)
                    continue
                writes.extend(self._create(create))
            for update in project_updates:
                if self._stopping():
                    self._blocked.add(update.key)
                    continue
                self._update_project(update)
            writes.extend(
                _DealWrite(
                    u.key,
                    u.deal_id,
                    u.project_id,
                    dict(u.record),
                    u.changes,
                    "update_deal",
                    input_hash=u.input_hash,
                )
                for u in deal_updates
            )
            self._write_deals(writes)
            self._add_notes(notes)
        except StopRequested:
            self.result.stopped = True
        pending_keys = {a.key for a in plan.actions} - self._done
        self._blocked |= pending_keys
        self._settle(plan.settles)
        for export in plan.unknown:
            self.store.note_unknown_project(
                export.project_id, export.integration_id, _text(export.values, "name")
            )
        return self.result

    def _resume(
        self,
        intent: IntentState,
        creates: list[CreateProject],
        project_updates: list[UpdateProject],
        notes: list[AddNote],
        writes: list[_DealWrite],
    ) -> None:
        """Re-run a parked action the operator re-queued with ``reconciler retry``."""
        payload = dict(intent.payload or {})
        deal_id, project_id = intent.deal_id or "", intent.project_id or ""
        if intent.kind == "create" and "body" in payload:
            creates.append(CreateProject(intent.key, deal_id, str(payload["guid"]), payload["body"], ""))
        elif intent.kind == "update_deal" and "record" in payload:
            writes.append(
                _DealWrite(intent.key, deal_id, project_id or None, payload["record"], (), "update_deal")
            )
        elif intent.kind == "update_project" and "fields" in payload:
            fields = tuple((int(f), str(v)) for f, v in payload["fields"])
            project_updates.append(UpdateProject(intent.key, deal_id, project_id, (), fields, ""))
        elif intent.kind == "note" and "content" in payload:
            co, status = payload.get("co_number", ""), payload.get("co_status", "")
            notes.append(
                AddNote(intent.key, deal_id, project_id, co, status, payload["title"], payload["content"])
            )
        elif intent.kind != "conflict":
            with self.store.atomic():
                self.store.finish_intent(intent.key)  # a planner park: re-planned when its input changes

    # ---- parks and conflicts ----------------------------------------------------------------------

    def _park(self, action: Park | Conflict) -> None:
        if isinstance(action, Conflict):
            message = (
                f"conflict on deal {action.deal_id} / SI project {action.project_id}: field "
                f"{action.field} is {action.zoho_value!r} in Zoho and {action.si_value!r} in SI "
                "(on_conflict = manual); make them agree on either side"
            )
            payload = {"field": action.field, "zoho": action.zoho_value, "si": action.si_value}
        else:
            message, payload = action.message, {}
        with self.store.atomic():
            self.store.park(
                action.key,
                action.kind,
                message,
                deal_id=action.deal_id,
                project_id=action.project_id,
                payload=payload,
                input_hash=action.input_hash,
                cycle_id=self.cycle_id,
            )
        self._done.add(action.key)
        self.result.parked.append((action.key, message))
        self.result.counts[f"{action.kind}.parked"] += 1
        event("action.parked", "WARNING", key=action.key, error=message)

    # ---- creates ----------------------------------------------------------------------------------

    def _create(self, action: CreateProject) -> list[_DealWrite]:
        with self.store.atomic():
            intent = self.store.begin_intent(
                action.key,
                "create",
                deal_id=action.deal_id,
                project_id=None,
                payload={"guid": action.guid, "body": dict(action.body)},
                input_hash=action.input_hash,
                cycle_id=self.cycle_id,
            )
        remote = dict(intent.remote or {})
        project_id = None if action.republish else remote.get("project_id")
        if not project_id:
            try:
                published = self.si.publish_project(action.body)
            except ApiError as exc:
                self._failed(action.key, "create", exc)
                return []
            project_id = published.project_id or action.guid
            with self.store.atomic():
                self.store.set_remote(
                    action.key, {"project_id": project_id, "message_id": published.message_id}
                )
                self.store.upsert_link(
                    LinkState(
                        action.deal_id, project_id, message_id=published.message_id, publish_status="pending"
                    )
                )
                if action.republish:
                    self.store.finish_intent(f"publish:deal:{action.deal_id}")
            event("action.applied", "DEBUG", key=action.key, step="publish", project_id=project_id)
        record: dict[str, Any] = {"id": action.deal_id, self.m.link_field: project_id}
        changes = [FieldChange(self.m.link_field, None, project_id)]
        if self.m.status_field:
            record[self.m.status_field] = QUEUED
            changes.append(FieldChange(self.m.status_field, None, QUEUED))

        def created() -> None:
            self.store.save_snapshot(
                Snapshot(action.deal_id, zoho_hash=action.zoho_hash_after, zoho=dict(action.zoho_values))
            )

        return [_DealWrite(action.key, action.deal_id, project_id, record, changes, "create", created)]

    # ---- SI updates -------------------------------------------------------------------------------

    def _update_project(self, action: UpdateProject) -> None:
        # A planned update gets a deterministic MessageId (a resend after a crash is the same message); a
        # re-queued one (no input hash) is a new attempt and gets a fresh one.
        seed = f"{action.key}:{action.input_hash}"
        message_id = str(uuid.uuid5(_MESSAGE_NAMESPACE, seed) if action.input_hash else uuid.uuid4())
        with self.store.atomic():
            self.store.begin_intent(
                action.key,
                "update_project",
                deal_id=action.deal_id,
                project_id=action.project_id,
                payload={"fields": [list(f) for f in action.fields]},
                input_hash=action.input_hash,
                cycle_id=self.cycle_id,
            )
        try:
            message_id = self.si.update_project(action.project_id, action.fields, message_id=message_id)
        except ApiError as exc:
            self._failed(action.key, "update_project", exc)
            return
        with self.store.atomic():
            self.store.set_remote(action.key, {"message_id": message_id})
            self.store.finish_intent(action.key)
            self.store.audit(
                self.cycle_id,
                action.key,
                [(c.field, c.old, c.new) for c in action.changes],
                deal_id=action.deal_id,
                project_id=action.project_id,
            )
        self._update_messages[action.deal_id] = message_id
        self._applied(action.key, "update_project")
        event("action.applied", "DEBUG", key=action.key, fields=len(action.fields))

    # ---- Zoho deal writes -------------------------------------------------------------------------

    def _write_deals(self, writes: Sequence[_DealWrite]) -> None:
        ready: list[_DealWrite] = []
        with self.store.atomic():
            for write in writes:
                if write.action != "create":  # a create's intent is already open
                    self.store.begin_intent(
                        write.key,
                        "update_deal",
                        deal_id=write.deal_id,
                        project_id=write.project_id,
                        payload={"record": write.record},
                        input_hash=write.input_hash or _input_hash(write),
                        cycle_id=self.cycle_id,
                    )
                ready.append(write)
        for start in range(0, len(ready), 100):
            batch = ready[start : start + 100]
            if self._stopping():
                self._blocked.update(w.key for w in batch)
                continue
            try:
                results = self.zoho.update_records([w.record for w in batch])
            except ApiError as exc:
                for write in batch:
                    self._failed(write.key, write.action, exc)
                continue
            for write, outcome in zip(batch, results, strict=True):
                self._deal_result(write, outcome)

    def _deal_result(self, write: _DealWrite, outcome: RecordResult) -> None:
        if not outcome.ok:
            field_name = outcome.details.get("api_name") or outcome.details.get("id") or "?"
            message = (
                f"Zoho rejected the update of deal {write.deal_id}: field {field_name}: {outcome.code} "
                f"{outcome.message}"
            )
            self._failed(write.key, write.action, message, permanent=True)
            return
        with self.store.atomic():
            self.store.finish_intent(write.key)
            if write.on_success is not None:
                write.on_success()
            self.store.audit(
                self.cycle_id,
                write.key,
                [(c.field, c.old, c.new) for c in write.changes],
                deal_id=write.deal_id,
                project_id=write.project_id,
            )
        self._applied(write.key, write.action)
        event("action.applied", "DEBUG", key=write.key, fields=len(write.record) - 1)

    # ---- notes ------------------------------------------------------------------------------------

    def _add_notes(self, notes: Sequence[AddNote]) -> None:
        to_post: list[AddNote] = []
        existing_notes: dict[str, list[str]] = {}
        for note in notes:
            before = self.store.intent(note.key)
            with self.store.atomic():
                self.store.begin_intent(
                    note.key,
                    "note",
                    deal_id=note.deal_id,
                    project_id=note.project_id,
                    payload={
                        "title": note.title,
                        "content": note.content,
                        "co_number": note.co_number,
                        "co_status": note.co_status,
                    },
                    input_hash=note.input_hash,
                    cycle_id=self.cycle_id,
                )
            if before is not None and before.status in ("pending", "retry"):
                # An earlier attempt may have reached Zoho before we could record it: look first.
                if self._stopping():
                    self._blocked.add(note.key)
                    continue
                try:
                    if note.deal_id not in existing_notes:
                        existing_notes[note.deal_id] = [
                            str(n.get("Note_Content") or "") for n in self.zoho.deal_notes(note.deal_id)
                        ]
                except ApiError as exc:
                    self._failed(note.key, "note", exc)
                    continue
                reference = note_reference(note.project_id, note.co_number, note.co_status)
                if any(reference in content for content in existing_notes[note.deal_id]):
                    with self.store.atomic():
                        self.store.finish_intent(note.key)
                    self._applied(note.key, "note")
                    event("action.recovered", "DEBUG", key=note.key)
                    continue
            to_post.append(note)
        for start in range(0, len(to_post), 100):
            batch = to_post[start : start + 100]
            if self._stopping():
                self._blocked.update(n.key for n in batch)
                continue
            drafts = [NoteDraft(n.deal_id, n.title, n.content) for n in batch]
            try:
                results = self.zoho.create_notes(drafts)
            except ApiError as exc:
                for note in batch:
                    self._failed(note.key, "note", exc)
                continue
            for note, outcome in zip(batch, results, strict=True):
                if not outcome.ok:
                    field_name = outcome.details.get("api_name") or "?"
                    message = (
                        f"Zoho rejected the note for deal {note.deal_id} ({note.key}): field {field_name}: "
                        f"{outcome.code} {outcome.message}"
                    )
                    self._failed(note.key, "note", message, permanent=True)
                    continue
                with self.store.atomic():
                    self.store.set_remote(note.key, {"note_id": outcome.id})
                    self.store.finish_intent(note.key)
                    self.store.audit(
                        self.cycle_id,
                        note.key,
                        [("note", None, note.title)],
                        deal_id=note.deal_id,
                        project_id=note.project_id,
                    )
                self._applied(note.key, "note")
                event("action.applied", "DEBUG", key=note.key)

    # ---- settle: snapshots, links, acknowledgements -----------------------------------------------

    def _settle(self, settles: Sequence[Settle]) -> None:
        acks: list[Ack] = []
        unknown = {u["project_id"] for u in self.store.unknown_projects()}  # usually none
        for settle in settles:
            if any(key in self._blocked for key in settle.action_keys) or self.result.stopped:
                continue
            with self.store.atomic():
                if settle.link is not None:
                    self.store.upsert_link(settle.link)
                    if settle.link.project_id in unknown:  # e.g. adopted from the deal's SI_Project_ID
                        self.store.forget_unknown_project(settle.link.project_id)
                    if not settle.link.active:
                        event("pair.inactive", deal_id=settle.deal_id, reason=settle.link.inactive_reason)
                if settle.zoho is not None:
                    pending = {
                        name: (
                            {**entry, "message_id": self._update_messages.get(settle.deal_id)}
                            if entry.get("message_id") is None
                            else entry
                        )
                        for name, entry in (settle.pending or {}).items()
                    }
                    self.store.save_snapshot(
                        Snapshot(
                            settle.deal_id,
                            zoho_hash=settle.zoho_hash or "",
                            zoho=dict(settle.zoho),
                            si=dict(settle.si or {}),
                            pending=pending,
                        )
                    )
                for key in settle.resolved_keys:
                    self.store.finish_intent(key)
            acks.extend(settle.acks)
        for ack in acks:
            try:
                self.si.mark_imported(ack.project_id, ack.co_number, ack.published_ms)
            except ApiError as exc:
                self.result.failed.append((f"ack:{ack.project_id}:{ack.co_number}", str(exc)))
                self.result.counts["ack.failed"] += 1
                continue
            self.result.counts["ack.applied"] += 1


def _input_hash(write: _DealWrite) -> str:
    # For a re-queued write (no planner hash): what the planner would compute, the record without its id.
    return digest({k: v for k, v in write.record.items() if k != "id"})


def _text(values: Any, key: str) -> str | None:
    value = values.get(key) if hasattr(values, "get") else None
    return None if value is None else str(value)
