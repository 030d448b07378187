"""What ``reconciler status`` shows, as plain data: cycles, parked items, conflicts, retries, cursors.

Reads the store only (no secret, no network). The token's value is never read, only its expiry.
"""

from __future__ import annotations

from typing import Any

from reconciler import keys
from reconciler.read import CURSOR_KEY, LAST_FULL_KEY, ZOHO_SKEW_KEY
from reconciler.store import Store

__all__ = ["collect_status"]


def collect_status(
    store: Store, *, db: str, lock_held: bool, cycles: int = 10, interval: float | None = None
) -> dict[str, Any]:
    """Everything ``reconciler status`` shows, as plain data (no secrets: the token value is not read)."""
    parked, conflicts, pending = [], [], []
    # A pending item is retried by the next cycle (and parked after MAX_ATTEMPTS), not on its own clock.
    recent = store.recent_cycles(1)
    next_cycle = recent[0]["started_at"] + interval if recent and interval else None
    for intent in store.open_intents().values():
        if intent.status == keys.PARKED and intent.kind == "conflict":
            payload = intent.payload or {}
            conflicts.append(
                {
                    "key": intent.key,
                    "deal_id": intent.deal_id,
                    "field": payload.get("field"),
                    "zoho": payload.get("zoho"),
                    "si": payload.get("si"),
                }
            )
        if intent.status == keys.PARKED:
            parked.append(
                {
                    "key": intent.key,
                    "kind": intent.kind,
                    "deal_id": intent.deal_id,
                    "project_id": intent.project_id,
                    "error": intent.last_error,
                    "attempts": intent.attempts,
                    "updated_at": intent.updated_at,
                    "next_retry": f"after `reconciler retry {intent.key}`",
                }
            )
        elif intent.status in (keys.PENDING, keys.RETRY):
            pending.append(
                {
                    "key": intent.key,
                    "kind": intent.kind,
                    "error": intent.last_error or "(in flight or re-queued)",
                    "attempts": intent.attempts,
                    "next_retry_at": next_cycle,
                }
            )
    links = store.links()
    stopped = [
        {"deal_id": link.deal_id, "project_id": link.project_id, "reason": link.inactive_reason}
        for link in links.values()
        if not link.active
    ]
    last_full = store.get_state(LAST_FULL_KEY)
    skew = store.get_state(ZOHO_SKEW_KEY)
    return {
        "db": db,
        "lock_held": lock_held,
        "cursor": store.get_state(CURSOR_KEY),
        "last_full_at": float(last_full) if last_full else None,
        "zoho_clock_skew_seconds": float(skew) if skew else None,
        "token_expires_at": store.token_expiry(),
        "links": {"active": sum(1 for link in links.values() if link.active), "inactive": len(stopped)},
        "cycles": store.recent_cycles(cycles),
        "parked": parked,
        "conflicts": conflicts,
        "pending": pending,
        "stopped": stopped,
        "unknown_projects": store.unknown_projects(),
    }
