"""The applier's SI calls: publishing projects, sending field updates, acknowledging export messages.

Each call's intent is committed before the call and settled after it (see :mod:`reconciler.apply`):

* a create publishes with our Guid (a publish repeated after any crash targets the same project), then
  records the project and message ids and the link at once; a create whose publish an earlier cycle made
  arrives with its ids and only writes back;
* an update is sent with the ``MessageId`` the planner chose (a resend after a crash keeps it);
* an acknowledgement marks exactly the one message the cycle processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler import keys
from reconciler.apply.book import Book
from reconciler.apply.zoho_writes import DealWrite
from reconciler.clients.si import SiClient
from reconciler.errors import ApiError
from reconciler.logs import event
from reconciler.mapping import Mapping
from reconciler.model import Ack, CreateProject, LinkState, Snapshot, UpdateProject

__all__ = ["SiWriter"]


@dataclass
class SiWriter:
    si: SiClient
    mapping: Mapping
    book: Book

    def create(self, action: CreateProject) -> DealWrite | None:
        """Publish (unless done before), record the ids; returns the write-back for the deal batch."""
        store, book = self.book.store, self.book
        with store.atomic():
            store.begin_intent(
                action.key,
                "create",
                deal_id=action.deal_id,
                project_id=action.project_id,
                payload={
                    "guid": action.guid,
                    "body": dict(action.body),
                    "zoho_values": dict(action.zoho_values),
                    "si_values": dict(action.si_values),
                    "zoho_hash_after": action.zoho_hash_after,
                    "record": dict(action.record),
                },
                input_hash=action.input_hash,
                cycle_id=book.cycle_id,
            )
        project_id = action.project_id
        if project_id is None:
            try:
                published = self.si.publish_project(action.body)
            except ApiError as exc:
                book.failed(action.key, "create", exc)
                return None
            project_id = published.project_id or action.guid
            with store.atomic():
                store.set_remote(action.key, {"project_id": project_id, "message_id": published.message_id})
                store.upsert_link(
                    LinkState(
                        action.deal_id, project_id, message_id=published.message_id, publish_status="pending"
                    )
                )
                if action.republish:
                    store.finish_intent(keys.publish(action.deal_id))
            event("action.applied", "DEBUG", key=action.key, step="publish", project_id=project_id)
        record: dict[str, Any] = {**action.record, "id": action.deal_id, self.mapping.link_field: project_id}
        changes = [(name, None, value) for name, value in record.items() if name != "id"]
        snapshot = Snapshot(
            action.deal_id,
            zoho_hash=action.zoho_hash_after,
            zoho=dict(action.zoho_values),
            si=dict(action.si_values),
        )

        def created() -> None:
            store.save_snapshot(snapshot)

        return DealWrite(action.key, action.deal_id, project_id, record, changes, "create", created)

    def update(self, action: UpdateProject) -> str | None:
        """Send one update; returns the MessageId SI acknowledged (None when the call failed)."""
        store, book = self.book.store, self.book
        with store.atomic():
            store.begin_intent(
                action.key,
                "update_project",
                deal_id=action.deal_id,
                project_id=action.project_id,
                payload={"fields": [list(f) for f in action.fields], "message_id": action.message_id},
                input_hash=action.input_hash,
                cycle_id=book.cycle_id,
            )
        try:
            message_id = self.si.update_project(
                action.project_id, action.fields, message_id=action.message_id
            )
        except ApiError as exc:
            book.failed(action.key, "update_project", exc)
            return None
        with store.atomic():
            store.set_remote(action.key, {"message_id": message_id})
            store.finish_intent(action.key)
            store.audit(
                book.cycle_id,
                action.key,
                [(c.field, c.old, c.new) for c in action.changes],
                deal_id=action.deal_id,
                project_id=action.project_id,
            )
        book.applied(action.key, "update_project")
        event("action.applied", "DEBUG", key=action.key, fields=len(action.fields))
        return message_id

    def ack(self, ack: Ack) -> None:
        """``MarkAsImportedByMessageId`` for one processed message (its publish time as the guard)."""
        try:
            if ack.message_id:
                self.si.mark_imported_by_message(ack.message_id, ack.published_ms)
            else:
                self.si.mark_imported(ack.project_id, ack.co_number, ack.published_ms)
        except ApiError as exc:
            self.book.result.failed.append((f"ack:{ack.message_id or ack.project_id}", str(exc)))
            self.book.result.counts["ack.failed"] += 1
            return
        self.book.result.counts["ack.applied"] += 1
