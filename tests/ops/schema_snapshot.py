"""Record the store's current schema, with a few rows in every table, as ``schemas/v<N>.sql``.

Run it once each time ``SCHEMA_VERSION`` goes up (after adding the migration step)::

    .venv/bin/python -m tests.ops.schema_snapshot

and commit the new file. ``test_migrations.py`` then migrates every recorded version to the current one,
so an upgrade from any release that ever shipped is tested. Older files are never regenerated.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from reconciler.clients.zoho import CachedToken
from reconciler.model import CycleReport, LinkState, Snapshot
from reconciler.store import SCHEMA_VERSION, Store

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def seeded_store(path: Path) -> Store:
    """A store holding one row (or two) in each table, written through the store's own API."""
    clock = iter(float(1_767_225_600 + n) for n in range(1000))
    store = Store.open(path, clock=lambda: next(clock))
    with store.atomic():
        store.set_state("cursor.zoho.modified_time", "2026-01-01T00:00:00+00:00")
        store.save_token("zoho", CachedToken("1000.token-value", 1_767_229_200.0, "https://www.zohoapis.com"))
        store.note_token_issued("zoho", 1_767_225_600.0)
        store.upsert_link(LinkState("100", "guid-100", message_id="m-1", publish_status="imported"))
        store.save_snapshot(Snapshot("100", zoho_hash="h", zoho={"Amount": 10}, si={"Amount": 10}))
        store.begin_intent("create:deal:100", "create", deal_id="100", project_id=None, payload={"guid": "g"})
        store.finish_intent("create:deal:100")
        store.park(
            "create:deal:101",
            "create",
            "deal 101: field Account_Name.name is empty (SI requires Client)",
            deal_id="101",
            project_id=None,
            payload={},
            input_hash="x",
            cycle_id=1,
        )
        cycle = store.start_cycle("full", False)
        store.finish_cycle(
            cycle,
            CycleReport("full", "parked", 1, 1_767_225_600.0, 1_767_225_601.0, counts={"create.applied": 1}),
        )
        store.audit(
            1, "create:deal:100", [("SI_Project_ID", None, "guid-100")], deal_id="100", project_id="guid-100"
        )
        store.note_unknown_project("guid-999", "999", "Walk-in")
    return store


def dump(version: int = SCHEMA_VERSION) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        store = seeded_store(Path(tmp) / "seed.db")
        try:
            sql = "\n".join(store.db.connection().iterdump()) + "\n"
        finally:
            store.close()
    target = SCHEMAS / f"v{version}.sql"
    target.write_text(sql, encoding="utf-8")
    return target


if __name__ == "__main__":
    print(f"wrote {dump()}", file=sys.stderr)
