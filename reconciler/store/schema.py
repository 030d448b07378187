"""The store's schema: its tables (one Peewee model each), its version and the migrations that reach it.

``SCHEMA_VERSION`` goes up with every change to the tables or their indexes; each step in
:data:`MIGRATIONS` brings a database of the version before it up to date (``tests/ops/test_migrations.py``
migrates a recorded database of every earlier version). :class:`StoreBase` is what every part of the
:class:`~reconciler.store.Store` shares: the database, the models bound to it, the clock.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import peewee as pw
from playhouse.migrate import SqliteMigrator

from reconciler.dbfile import restore_hint
from reconciler.errors import StoreError
from reconciler.logs import event

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "StoreBase", "any_of", "dumps", "models", "version"]

SCHEMA_VERSION = 3
# version -> migration step taking (migrator, models); applied in order to bring an old file up to date.
Migration = Callable[[SqliteMigrator, Any], None]


def _v2_snapshot_counters(migrator: SqliteMigrator, models: Any) -> None:
    """v2: each snapshot counts the SI updates its pair has begun (it seeds their MessageIds) and keeps
    what SI reported while the pair was not syncing; each link knows if SI archived or deleted it."""
    from playhouse.migrate import migrate

    migrate(
        migrator.add_column("snapshot", "updates", pw.IntegerField(default=0)),
        migrator.add_column("snapshot", "held", pw.TextField(default="{}")),
        migrator.add_column("snapshot", "reported", pw.TextField(default="{}")),
        migrator.add_column("link", "si_state", pw.CharField(default="")),
    )


def _v3_cycle_indexes(migrator: SqliteMigrator, models: Any) -> None:
    """v3: indexes for what every cycle asks, so that an idle cycle reads no pair it has no reason to:
    the links whose publish is pending, and the snapshots with an SI update pending (a partial index).
    Spelled out, not taken from today's models: a later version's indexes belong to its own step."""
    db = migrator.database
    db.execute_sql('CREATE INDEX IF NOT EXISTS "link_publish_status" ON "link" ("publish_status")')
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "snapshot_pending" ON "snapshot" ("deal_id") WHERE ("pending" != \'{}\')'
    )


MIGRATIONS: dict[int, Migration] = {2: _v2_snapshot_counters, 3: _v3_cycle_indexes}


def models(db: pw.Database) -> Any:
    """Model classes bound to one database (so two stores can live in one process).

    Long on purpose: it is the schema, one class per table, kept together so it reads as one.
    """

    class Base(pw.Model):
        class Meta:
            database = db

    class State(Base):
        key = pw.CharField(primary_key=True)
        value = pw.TextField()

    class Link(Base):
        deal_id = pw.CharField(primary_key=True)
        project_id = pw.CharField(index=True)
        message_id = pw.CharField(null=True)
        publish_status = pw.CharField(default="pending", index=True)
        publish_error = pw.TextField(null=True)
        active = pw.BooleanField(default=True)
        inactive_reason = pw.TextField(null=True)
        si_state = pw.CharField(default="")
        created_at = pw.FloatField()
        updated_at = pw.FloatField()

    class SnapshotRow(Base):
        deal_id = pw.CharField(primary_key=True)
        zoho_hash = pw.CharField(default="")
        zoho = pw.TextField(default="{}")
        si = pw.TextField(default="{}")
        pending = pw.TextField(default="{}")
        updated_at = pw.FloatField()
        updates = pw.IntegerField(default=0)
        held = pw.TextField(default="{}")
        reported = pw.TextField(default="{}")

        class Meta:
            table_name = "snapshot"

    # Only the few snapshots with an SI update of ours pending: each cycle reads those, never the rest.
    SnapshotRow.add_index(
        SnapshotRow.index(SnapshotRow.deal_id, name="snapshot_pending").where(SnapshotRow.pending != "{}")
    )

    class Intent(Base):
        key = pw.CharField(primary_key=True)
        kind = pw.CharField(index=True)
        status = pw.CharField(index=True)
        deal_id = pw.CharField(null=True, index=True)
        project_id = pw.CharField(null=True, index=True)
        attempts = pw.IntegerField(default=0)
        input_hash = pw.CharField(default="")
        last_error = pw.TextField(null=True)
        payload = pw.TextField(default="{}")
        remote = pw.TextField(default="{}")
        cycle_id = pw.IntegerField(null=True)
        next_retry_at = pw.FloatField(null=True)
        created_at = pw.FloatField()
        updated_at = pw.FloatField()

    class Cycle(Base):
        id = pw.AutoField()
        started_at = pw.FloatField()
        ended_at = pw.FloatField(null=True)
        mode = pw.CharField()
        dry_run = pw.BooleanField(default=False)
        outcome = pw.CharField(default="running")
        counts = pw.TextField(default="{}")
        api_calls = pw.TextField(default="{}")
        message = pw.TextField(default="")

    class Token(Base):
        key = pw.CharField(primary_key=True)
        access_token = pw.TextField()
        expires_at = pw.FloatField()
        api_domain = pw.CharField(null=True)

    class TokenIssue(Base):
        id = pw.AutoField()
        key = pw.CharField(index=True)
        at = pw.FloatField()

    class Audit(Base):
        id = pw.AutoField()
        at = pw.FloatField()
        cycle_id = pw.IntegerField(null=True)
        deal_id = pw.CharField(null=True, index=True)
        project_id = pw.CharField(null=True)
        action = pw.CharField()
        field = pw.CharField()
        old = pw.TextField(null=True)
        new = pw.TextField(null=True)

    class UnknownProject(Base):
        project_id = pw.CharField(primary_key=True)
        integration_id = pw.CharField(null=True)
        name = pw.TextField(null=True)
        first_seen = pw.FloatField()
        last_seen = pw.FloatField()

    class Namespace:
        pass

    ns = Namespace()
    for model in (State, Link, SnapshotRow, Intent, Cycle, Token, TokenIssue, Audit, UnknownProject):
        setattr(ns, model.__name__, model)
    ns.all = [State, Link, SnapshotRow, Intent, Cycle, Token, TokenIssue, Audit, UnknownProject]  # type: ignore[attr-defined]
    return ns


def any_of(conditions: list[Any]) -> Any:
    """OR the conditions as a balanced tree (SQLite's parser overflows on a long left-nested chain)."""
    while len(conditions) > 1:
        pairs = [a | b for a, b in zip(conditions[::2], conditions[1::2], strict=False)]
        conditions = pairs + conditions[len(pairs) * 2 :]
    return conditions[0]


def version(value: str, path: Path) -> int:
    """The stored schema version; anything but a whole number means a damaged or foreign file."""
    text = str(value).strip()
    if not text.isdigit():
        raise StoreError(
            f"RECONCILER_DB: {path}: its schema_version is {text[:40]!r}, not a number: the file is damaged "
            f"or not a reconciler database; it was left as it is: {restore_hint(path)}"
        )
    return int(text)


def warn_if_readable_by_others(path: Path, real: Path) -> None:
    """An existing database others can read (it caches the access token) is reported, never chmodded."""
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        return
    if mode & 0o077:
        event("store.mode_open", "WARNING", db=str(path), mode=f"{mode:04o}", fix=f"chmod 600 {path}")


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class StoreBase:
    """The database, its models (``tables``) and the clock: what each part of the store works with."""

    db: pw.SqliteDatabase
    path: Path
    clock: Callable[[], float]
    tables: Any  # the namespace :func:`models` returns

    def _sql(self, sql: str, params: Sequence[Any]) -> Any:
        """One raw statement (a cursor): the hot paths skip peewee's query building (see statements.py)."""
        return self.db.execute_sql(sql, params)  # type: ignore[no-untyped-call]

    def _set(self, key: str, value: str) -> None:
        """Write one key/value (inside the caller's transaction)."""
        self.tables.State.insert(key=key, value=value).on_conflict_replace().execute()
