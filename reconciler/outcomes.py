"""What became of our publishes and updates waiting in SI's queue (step 6 of :mod:`reconciler.read`).

SI answers a publish or an update with a message id; the message is imported (or fails) later. Each
cycle resolves ours that are still pending: one listing of SI's pending messages, then the fate of those
that left it, from SI's list of imported and failed messages when many left at once (a large first run),
else one status read each (run several at once, ``RECONCILER_SI_CONCURRENCY``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from reconciler import keys
from reconciler.clients.si import MessageStatus
from reconciler.context import Context
from reconciler.errors import PermanentApiError, ProtocolError
from reconciler.logs import event
from reconciler.model import IntentState, LinkState, PublishOutcome, Snapshot

__all__ = ["BULK_STATUS_FROM", "STATUS_PAGE", "fetch_publish_outcomes", "publish_outcomes"]

BULK_STATUS_FROM = 200  # publishes resolved by listing SI's imported/failed messages from this many on
STATUS_PAGE = 200
_ITEM_ERRORS = (PermanentApiError, ProtocolError)  # tied to one message: recorded on it, the read goes on


def publish_outcomes(
    ctx: Context,
    links: Mapping[str, LinkState],
    snapshots: Mapping[str, Snapshot],
    intents: Mapping[str, IntentState],
) -> tuple[dict[str, PublishOutcome], dict[str, str]]:
    """The fate of our publishes and updates waiting in SI's queue (see :func:`fetch_publish_outcomes`)."""
    ours = {
        link.message_id for link in links.values() if link.publish_status == "pending" and link.message_id
    }
    ours |= {
        str(entry["message_id"])
        for snap in snapshots.values()
        for entry in snap.pending.values()
        if entry.get("message_id") and entry.get("imported_ms") is None  # imported: only its echo is awaited
    }
    parked = {
        m for m in ours if (i := intents.get(keys.lost_status(m))) is not None and i.status == keys.PARKED
    }
    return fetch_publish_outcomes(ctx, ours - parked)


def fetch_publish_outcomes(
    ctx: Context, message_ids: Iterable[str]
) -> tuple[dict[str, PublishOutcome], dict[str, str]]:
    """Resolve our pending messages: list SI's pending ones, then learn the fate of those that left it.

    When many left the list (SI imported a large first run), they are looked up in SI's list of imported
    and failed messages, reading at most half as many pages as there are such messages (that list is SI's
    whole history, in no promised order); whatever was not found there is asked about one by one. A
    message SI cannot tell about (unknown, purged, an answer that breaks the contract) is that one
    message's problem, returned in the second map; the others are resolved as usual.
    """
    ours = set(message_ids)
    if not ours:
        return {}, {}
    still_pending = {status.id for status in ctx.si.iter_message_statuses()}
    left = ours - still_pending
    outcomes: dict[str, PublishOutcome] = {}
    errors: dict[str, str] = {}
    if len(left) >= BULK_STATUS_FROM:
        budget = len(left) // 2 * STATUS_PAGE  # entries: half a page per message at most
        done = ctx.si.iter_message_statuses(
            (keys.MESSAGE_IMPORTED, keys.MESSAGE_FAILED), page_size=STATUS_PAGE
        )
        for seen, status in enumerate(done, start=1):
            if status.id in left and status.status_id in (keys.MESSAGE_IMPORTED, keys.MESSAGE_FAILED):
                outcomes[status.id] = _outcome(status)
            if len(outcomes) == len(left) or seen >= budget:
                break
    asked = ctx.lanes.run(sorted(left - set(outcomes)), ctx.si.message_status, catch=_ITEM_ERRORS)
    for answer in asked:
        message_id = answer.item
        if answer.error is not None:
            errors[message_id] = str(answer.error)
            event("si.status_unknown", "WARNING", message_id=message_id, error=str(answer.error))
        elif answer.value is not None and answer.value.status_id in (
            keys.MESSAGE_IMPORTED,
            keys.MESSAGE_FAILED,
        ):
            outcomes[message_id] = _outcome(answer.value)
    return outcomes, errors


def _outcome(status: MessageStatus) -> PublishOutcome:
    imported_ms = None
    if status.imported_on:
        try:
            moment = datetime.fromisoformat(status.imported_on.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # SI documents its times as UTC
            imported_ms = int(moment.timestamp() * 1000)
    return PublishOutcome(status.id, status.status_id, status.error_message, imported_ms)
