"""The applier's SI calls: publishing projects, sending field updates, acknowledging export messages.

Each call's intent is committed before the call and settled after it (see :mod:`reconciler.apply`):

* a create publishes with our Guid (a publish repeated after any crash targets the same project), then
  records the project and message ids and the link at once; a create whose publish an earlier cycle made
  arrives with its ids and only writes back;
* an update is sent with the ``MessageId`` the planner chose (a resend after a crash keeps it);
* an acknowledgement marks exactly the one message the cycle processed.

The calls of a group of actions (up to :data:`GROUP`) run through :class:`~reconciler.clients.pool.Lanes`,
several at once (``RECONCILER_SI_CONCURRENCY``): the group's intents are committed in one transaction
before its first call, and each outcome as soon as it is known (in the group's order). A kill in between
leaves intents open, which the next cycle resumes as after any crash (the same Guid, the same
``MessageId``): at most the calls that were in flight are made again.
One pair has at most one create or update a cycle; its acknowledgements run in one lane, in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import keys
from reconciler.apply.book import Book
from reconciler.apply.zoho_writes import DealWrite
from reconciler.clients.http import CycleBudgetSpent
from reconciler.clients.pool import Done, Lanes
from reconciler.clients.si import PublishResult, SiClient
from reconciler.errors import ApiError, StopRequested
from reconciler.logs import event
from reconciler.mapping import Mapping
from reconciler.model import Ack, CreateProject, LinkState, Snapshot, UpdateProject

__all__ = ["GROUP", "SiWriter"]

GROUP = 100  # actions whose intents are committed in one transaction, before their calls


@dataclass
class SiWriter:
    si: SiClient
    mapping: Mapping
    book: Book
    lanes: Lanes  # the Applier's (one lane unless the settings say otherwise)

    def _go_on(self) -> bool:
        return not self.book.stopping()

    def _ran(self, outcome: Done[Any, Any]) -> bool:
        """False for a call never started, or cut short by a stop: its intent stays open for the rerun."""
        if outcome.started and not isinstance(outcome.error, StopRequested):
            return True
        if outcome.started:
            self.book.result.stopped = True
        self.book.skipped(outcome.item.key)
        return False

    # ---- creates ------------------------------------------------------------------------------------

    def create_all(self, creates: Sequence[CreateProject]) -> list[DealWrite]:
        """Publish each create (unless done before), record the ids; returns the deals' write-backs."""
        store, book = self.book.store, self.book
        book.begin(
            creates,
            "create",
            lambda action: {
                "guid": action.guid,
                "body": dict(action.body),
                "zoho_values": dict(action.zoho_values),
                "si_values": dict(action.si_values),
                "zoho_hash_after": action.zoho_hash_after,
                "record": dict(action.record),
            },
        )
        to_publish = [a for a in creates if a.project_id is None]
        done = self.lanes.each(
            to_publish, lambda a: self.si.publish_project(a.body), catch=_CAUGHT, go_on=self._go_on
        )
        published: dict[str, str] = {}
        for outcome in done:  # each recorded as soon as known: a crash repeats at most the calls in flight
            with store.atomic():
                project_id = self._published(outcome)
            if project_id is not None:
                published[outcome.item.key] = project_id
        writes = []
        for action in creates:
            project_id = action.project_id or published.get(action.key)
            if project_id is not None:
                writes.append(self._write_back(action, project_id))
        return writes

    def _published(self, outcome: Done[CreateProject, PublishResult]) -> str | None:
        """One publish's outcome, recorded (inside the caller's transaction); its project id, if any."""
        store, book, action = self.book.store, self.book, outcome.item
        if not self._ran(outcome):
            return None
        if outcome.error is not None or outcome.value is None:
            book.failed(action.key, "create", _api_error(outcome.error))
            return None
        published = outcome.value
        project_id = published.project_id or action.guid
        store.set_remote(action.key, {"project_id": project_id, "message_id": published.message_id})
        store.upsert_link(
            LinkState(action.deal_id, project_id, message_id=published.message_id, publish_status="pending")
        )
        if action.republish:
            store.finish_intent(keys.publish(action.deal_id))
        book.progressed(action.key)
        event("action.applied", "DEBUG", key=action.key, step="publish", project_id=project_id)
        return project_id

    def _write_back(self, action: CreateProject, project_id: str) -> DealWrite:
        store = self.book.store
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

    # ---- updates ------------------------------------------------------------------------------------

    def update_all(self, updates: Sequence[UpdateProject]) -> dict[str, str]:
        """Send each update; returns planned ``MessageId`` -> the one SI acknowledged, for those sent."""
        store, book = self.book.store, self.book
        book.begin(
            updates,
            "update_project",
            lambda action: {"fields": [list(f) for f in action.fields], "message_id": action.message_id},
        )
        done = self.lanes.each(
            updates,
            lambda a: self.si.update_project(a.project_id, a.fields, message_id=a.message_id),
            catch=_CAUGHT,
            go_on=self._go_on,
        )
        sent: dict[str, str] = {}
        for outcome in done:  # each recorded as soon as known: a crash repeats at most the calls in flight
            action = outcome.item
            if not self._ran(outcome):
                continue
            if outcome.error is not None or outcome.value is None:
                book.failed(action.key, "update_project", _api_error(outcome.error))
                continue
            with store.atomic():
                self._updated(action, outcome.value)
            sent[action.message_id] = outcome.value
        return sent

    def _updated(self, action: UpdateProject, message_id: str) -> None:
        store, book = self.book.store, self.book
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

    # ---- acknowledgements ---------------------------------------------------------------------------

    def ack_all(self, acks: Sequence[Ack]) -> None:
        """``MarkAsImportedByMessageId`` for each processed message (its publish time as the guard).

        A project's acknowledgements go out in one lane, in the plan's order; projects run side by side.
        """
        by_project: dict[str, list[Ack]] = defaultdict(list)
        for ack in acks:
            by_project[ack.project_id].append(ack)
        failing = {  # acks that failed in earlier cycles (pending or parked)
            key
            for key, intent in (self.book.store.intents_with_prefixes([keys.ACKS]) if acks else {}).items()
            if intent.status in keys.OPEN
        }
        done = self.lanes.run(list(by_project.values()), self._ack_project, go_on=self._go_on)
        for outcome in done:
            for ack, error in outcome.value or []:
                key = keys.ack(ack.message_id, ack.project_id, ack.co_number)
                if isinstance(error, StopRequested):
                    self.book.result.stopped = True
                elif isinstance(error, CycleBudgetSpent):
                    self.book.stopping()  # records the overrun; the message is acknowledged next cycle
                elif error is None:
                    self.book.result.counts["ack.applied"] += 1
                    if key in failing:  # it failed before: no longer an item waiting for anyone
                        self.book.store.finish_intent(key)
                else:
                    self.book.ack_failed(key, ack.project_id, error)

    def _ack_project(self, acks: list[Ack]) -> list[tuple[Ack, ApiError | StopRequested | None]]:
        out: list[tuple[Ack, ApiError | StopRequested | None]] = []
        for ack in acks:
            if self.book.stopping():  # a stop or a spent budget: the rest are acknowledged by the rerun
                break
            try:
                if ack.message_id:
                    self.si.mark_imported_by_message(ack.message_id, ack.published_ms)
                else:
                    self.si.mark_imported(ack.project_id, ack.co_number, ack.published_ms)
            except (StopRequested, CycleBudgetSpent) as exc:  # the rest of this project's wait for the rerun
                out.append((ack, exc))
                break
            except ApiError as exc:
                out.append((ack, exc))
                continue
            out.append((ack, None))
        return out


_CAUGHT = (ApiError, StopRequested)


def _api_error(error: BaseException | None) -> ApiError | str:
    if error is None:
        return "SI answered without the result the call returns"  # a call that returned nothing
    return error if isinstance(error, ApiError) else str(error)
