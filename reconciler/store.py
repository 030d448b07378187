"""The SQLite store (Peewee, WAL): links, snapshots, intents, cursors, cycles, token cache, audit trail.

The store owns its schema version, its migrations (``playhouse.migrate``) and its transactions; callers
never write SQL. The file is created on first use with mode 0600 (it holds the Zoho access token); what
may be opened, and what SQLite's failures tell the operator, is :mod:`reconciler.dbfile`.

Tables: ``link`` (deal <-> project), ``snapshot`` (per pair, the mapped values each side had when we last
agreed, plus our SI writes still pending in SI's queue), ``intent`` (one row per deterministic action key,
written *before* the external call and settled after it), ``state`` (cursors and small key/values),
``cycle``, ``token``/``token_issue`` (shared access-token cache and the 10-per-10-minutes ledger),
``audit`` (every applied change, old -> new) and ``unknown_project``.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peewee as pw
from playhouse.migrate import SqliteMigrator

from reconciler import keys
from reconciler.clients.zoho import CachedToken
from reconciler.dbfile import BUSY_TIMEOUT_SECONDS, SafeSqliteDatabase, prepare_db_file, restore_hint
from reconciler.errors import ConfigError, StoreError
from reconciler.logs import event
from reconciler.model import AuditEntry, CycleReport, IntentState, LinkState, Snapshot

__all__ = ["SCHEMA_VERSION", "Store"]

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
    the links whose publish is pending, and the snapshots with an SI update pending (a partial index)."""
    for model in (models.Link, models.SnapshotRow):
        model._schema.create_indexes(safe=True)


MIGRATIONS: dict[int, Migration] = {2: _v2_snapshot_counters, 3: _v3_cycle_indexes}


def _models(db: pw.Database) -> Any:
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


def _any_of(conditions: list[Any]) -> Any:
    """OR the conditions as a balanced tree (SQLite's parser overflows on a long left-nested chain)."""
    while len(conditions) > 1:
        pairs = [a | b for a, b in zip(conditions[::2], conditions[1::2], strict=False)]
        conditions = pairs + conditions[len(pairs) * 2 :]
    return conditions[0]


def _version(value: str, path: Path) -> int:
    """The stored schema version; anything but a whole number means a damaged or foreign file."""
    text = str(value).strip()
    if not text.isdigit():
        raise StoreError(
            f"RECONCILER_DB: {path}: its schema_version is {text[:40]!r}, not a number: the file is damaged "
            f"or not a reconciler database; it was left as it is: {restore_hint(path)}"
        )
    return int(text)


def _warn_if_readable_by_others(path: Path, real: Path) -> None:
    """An existing database others can read (it caches the access token) is reported, never chmodded."""
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        return
    if mode & 0o077:
        event("store.mode_open", "WARNING", db=str(path), mode=f"{mode:04o}", fix=f"chmod 600 {path}")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Store:
    """One SQLite file. Open with :meth:`open`; use :meth:`atomic` for a transaction."""

    def __init__(self, db: pw.SqliteDatabase, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.path = path
        self.clock = clock
        self.m = _models(db)

    # ---- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        migrations: Mapping[int, Migration] | None = None,
        schema_version: int = SCHEMA_VERSION,
        busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    ) -> Store:
        """Open (creating it 0600 when new) and migrate to ``schema_version``; see :mod:`reconciler.dbfile`.

        Every failure is one :class:`~reconciler.errors.StoreError` line naming the file, the cause and
        the remedy; an existing file is never chmodded and a damaged one never overwritten.
        """
        path = Path(path)
        real = path if str(path) == ":memory:" else prepare_db_file(path)
        db = SafeSqliteDatabase(
            str(real),
            shown=path,
            busy_seconds=busy_timeout,
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": int(busy_timeout * 1000),
                "synchronous": "normal",
            },
            check_same_thread=False,
        )
        store = cls(db, path, clock)
        try:
            store._migrate(migrations if migrations is not None else MIGRATIONS, schema_version)
        except BaseException:
            store.close()
            raise
        if str(path) != ":memory:":
            _warn_if_readable_by_others(path, real)
        return store

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def _migrate(self, migrations: Mapping[int, Migration], target: int) -> None:
        with self.db.atomic():
            self.db.create_tables([self.m.State], safe=True)
            row = self.m.State.get_or_none(self.m.State.key == "schema_version")
            if row is None:
                self.db.create_tables(self.m.all, safe=True)
                self._set("schema_version", str(target))
                return
            current = _version(row.value, self.path)
            if current > target:
                raise ConfigError(
                    f"RECONCILER_DB: {self.path}: schema version {current} is newer than this program "
                    f"({target}); run the newer reconciler or point RECONCILER_DB at another file"
                )
            migrator = SqliteMigrator(self.db)
            for version in range(current + 1, target + 1):
                step = migrations.get(version)
                if step is not None:
                    step(migrator, self.m)
                self._set("schema_version", str(version))

    @property
    def schema_version(self) -> int:
        return _version(self.get_state("schema_version") or "0", self.path)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    # ---- key/value state (cursors, alert bookkeeping) -----------------------------------------------

    def _set(self, key: str, value: str) -> None:
        self.m.State.insert(key=key, value=value).on_conflict_replace().execute()

    def get_state(self, key: str) -> str | None:
        row = self.m.State.get_or_none(self.m.State.key == key)
        return None if row is None else str(row.value)

    def set_state(self, key: str, value: str) -> None:
        with self.db.atomic():
            self._set(key, value)

    def delete_state(self, key: str) -> None:
        with self.db.atomic():
            self.m.State.delete().where(self.m.State.key == key).execute()

    # ---- token cache (reconciler.clients.zoho.TokenCache) ------------------------------------------

    def load_token(self, key: str) -> CachedToken | None:
        row = self.m.Token.get_or_none(self.m.Token.key == key)
        if row is None:
            return None
        return CachedToken(
            access_token=row.access_token, expires_at=row.expires_at, api_domain=row.api_domain
        )

    def save_token(self, key: str, token: CachedToken) -> None:
        with self.db.atomic():
            self.m.Token.insert(
                key=key,
                access_token=token.access_token,
                expires_at=token.expires_at,
                api_domain=token.api_domain,
            ).on_conflict_replace().execute()

    def note_token_issued(self, key: str, at: float) -> None:
        with self.db.atomic():
            self.m.TokenIssue.insert(key=key, at=at).execute()
            self.m.TokenIssue.delete().where(self.m.TokenIssue.at < at - 3600).execute()

    def tokens_issued_since(self, key: str, since: float) -> int:
        query = self.m.TokenIssue.select().where(
            (self.m.TokenIssue.key == key) & (self.m.TokenIssue.at >= since)
        )
        return int(query.count())

    def token_expiry(self) -> float | None:
        row = self.m.Token.select(pw.fn.MAX(self.m.Token.expires_at).alias("e")).scalar()
        return None if row is None else float(row)

    # ---- links ------------------------------------------------------------------------------------

    def links(self) -> dict[str, LinkState]:
        return {row.deal_id: self._link(row) for row in self.m.Link.select()}

    def links_where(
        self,
        *,
        deal_ids: Iterable[str] = (),
        project_ids: Iterable[str] = (),
        pending_publish: bool = False,
        active: bool = False,
    ) -> dict[str, LinkState]:
        """The links of these deals, of these projects, with a publish still pending, and (``active``)
        every active link: what one cycle's input can touch, without loading every pair."""
        Link = self.m.Link
        found: dict[str, LinkState] = {}
        for column, values in ((Link.deal_id, deal_ids), (Link.project_id, project_ids)):
            ids = sorted(set(values))
            for start in range(0, len(ids), 500):
                for row in Link.select().where(column.in_(ids[start : start + 500])):
                    found[row.deal_id] = self._link(row)
        conditions = []
        if pending_publish:
            conditions.append(Link.publish_status == "pending")
        if active:
            conditions.append(Link.active == True)  # noqa: E712 (peewee expression, not a comparison)
        if conditions:
            for row in Link.select().where(_any_of(conditions)):
                found[row.deal_id] = self._link(row)
        return found

    def active_link_count(self) -> int:
        return int(self.m.Link.select().where(self.m.Link.active == True).count())  # noqa: E712

    @staticmethod
    def _link(row: Any) -> LinkState:
        return LinkState(
            deal_id=row.deal_id,
            project_id=row.project_id,
            message_id=row.message_id,
            publish_status=row.publish_status,
            publish_error=row.publish_error,
            active=bool(row.active),
            inactive_reason=row.inactive_reason,
            si_state=row.si_state or "",
        )

    def link_count(self) -> int:
        return int(self.m.Link.select().count())

    def upsert_link(self, link: LinkState) -> None:
        now = self.clock()
        existing = self.m.Link.get_or_none(self.m.Link.deal_id == link.deal_id)
        fields = {
            "project_id": link.project_id,
            "message_id": link.message_id,
            "publish_status": link.publish_status,
            "publish_error": link.publish_error,
            "active": link.active,
            "inactive_reason": link.inactive_reason,
            "si_state": link.si_state,
            "updated_at": now,
        }
        if existing is None:
            self.m.Link.create(deal_id=link.deal_id, created_at=now, **fields)
        else:
            self.m.Link.update(**fields).where(self.m.Link.deal_id == link.deal_id).execute()

    # ---- snapshots --------------------------------------------------------------------------------

    def snapshots(self, deal_ids: Iterable[str] | None = None) -> dict[str, Snapshot]:
        query = self.m.SnapshotRow.select()
        if deal_ids is not None:
            ids = list(deal_ids)
            result: dict[str, Snapshot] = {}
            for start in range(0, len(ids), 500):
                chunk = query.where(self.m.SnapshotRow.deal_id.in_(ids[start : start + 500]))
                result.update({row.deal_id: self._snapshot(row) for row in chunk})
            return result
        return {row.deal_id: self._snapshot(row) for row in query}

    def pending_snapshots(self) -> dict[str, Snapshot]:
        """Snapshots with an SI update of ours still waiting in SI's queue."""
        query = self.m.SnapshotRow.select().where(self.m.SnapshotRow.pending != "{}")
        return {row.deal_id: self._snapshot(row) for row in query}

    @staticmethod
    def _snapshot(row: Any) -> Snapshot:
        return Snapshot(
            deal_id=row.deal_id,
            zoho_hash=row.zoho_hash,
            zoho=json.loads(row.zoho),
            si=json.loads(row.si),
            pending=json.loads(row.pending),
            updates=int(row.updates or 0),
            held=json.loads(row.held or "{}"),
            reported=json.loads(row.reported or "{}"),
        )

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a pair's snapshot. Its ``updates`` counter never goes down (it seeds our MessageIds)."""
        row = self.m.SnapshotRow
        self.m.SnapshotRow.insert(
            deal_id=snapshot.deal_id,
            zoho_hash=snapshot.zoho_hash,
            zoho=_dumps(dict(snapshot.zoho)),
            si=_dumps(dict(snapshot.si)),
            pending=_dumps(dict(snapshot.pending)),
            updated_at=self.clock(),
            updates=snapshot.updates,
            held=_dumps(dict(snapshot.held)),
            reported=_dumps(dict(snapshot.reported)),
        ).on_conflict(
            conflict_target=[row.deal_id],
            update={
                row.zoho_hash: pw.EXCLUDED.zoho_hash,
                row.zoho: pw.EXCLUDED.zoho,
                row.si: pw.EXCLUDED.si,
                row.pending: pw.EXCLUDED.pending,
                row.updated_at: pw.EXCLUDED.updated_at,
                row.updates: pw.fn.MAX(row.updates, pw.EXCLUDED.updates),
                row.held: pw.EXCLUDED.held,
                row.reported: pw.EXCLUDED.reported,
            },
        ).execute()

    def save_held(self, deal_id: str, held: Mapping[str, Any]) -> None:
        """Keep SI's reports for a pair that is not syncing (the rest of its snapshot is left alone)."""
        row = self.m.SnapshotRow
        row.insert(deal_id=deal_id, held=_dumps(dict(held)), updated_at=self.clock()).on_conflict(
            conflict_target=[row.deal_id], update={row.held: pw.EXCLUDED.held}
        ).execute()

    # ---- intents ----------------------------------------------------------------------------------

    def _intent(self, row: Any) -> IntentState:
        return IntentState(
            key=row.key,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            input_hash=row.input_hash,
            last_error=row.last_error,
            payload=json.loads(row.payload),
            remote=json.loads(row.remote),
            deal_id=row.deal_id,
            project_id=row.project_id,
            updated_at=row.updated_at,
            next_retry_at=row.next_retry_at,
        )

    def intent(self, key: str) -> IntentState | None:
        row = self.m.Intent.get_or_none(self.m.Intent.key == key)
        return None if row is None else self._intent(row)

    def open_intents(self) -> dict[str, IntentState]:
        """Every intent not done: pending (in flight or failed before), parked and re-queued.

        ``status IN (...)`` rather than ``!= 'done'``: SQLite serves the former from the status index and
        must scan every intent (three or more a pair) for the latter."""
        query = self.m.Intent.select().where(self.m.Intent.status.in_(sorted(keys.OPEN)))
        return {row.key: self._intent(row) for row in query}

    def intents_with_prefixes(self, prefixes: Iterable[str]) -> dict[str, IntentState]:
        # Key ranges [prefix, prefix + U+10FFFF) use the primary-key index, 100 prefixes a query. (Peewee's
        # startswith is a case-insensitive LIKE, which SQLite cannot serve from the index: one full scan
        # per prefix made a cycle quadratic in the number of intents.)
        key = self.m.Intent.key
        ordered = sorted(set(prefixes))
        result: dict[str, IntentState] = {}
        for start in range(0, len(ordered), 100):
            chunk = ordered[start : start + 100]
            condition = _any_of([(key >= p) & (key < p + "\U0010ffff") for p in chunk])
            for row in self.m.Intent.select().where(condition):
                result[row.key] = self._intent(row)
        return result

    def begin_intent(
        self,
        key: str,
        kind: str,
        *,
        deal_id: str | None,
        project_id: str | None,
        payload: Mapping[str, Any],
        input_hash: str = "",
        cycle_id: int | None = None,
    ) -> IntentState:
        """Record (or re-arm) the intent to act, before the external call. Keeps remote ids and attempts."""
        now = self.clock()
        existing = self.m.Intent.get_or_none(self.m.Intent.key == key)
        if existing is None:
            self.m.Intent.create(
                key=key,
                kind=kind,
                status="pending",
                deal_id=deal_id,
                project_id=project_id,
                payload=_dumps(dict(payload)),
                input_hash=input_hash,
                cycle_id=cycle_id,
                created_at=now,
                updated_at=now,
            )
        else:
            attempts = existing.attempts if existing.status == "pending" else 0
            self.m.Intent.update(
                status="pending",
                payload=_dumps(dict(payload)),
                input_hash=input_hash,
                cycle_id=cycle_id,
                attempts=attempts,
                updated_at=now,
                deal_id=deal_id,
                project_id=project_id,
            ).where(self.m.Intent.key == key).execute()
        state = self.intent(key)
        assert state is not None
        return state

    def set_remote(self, key: str, remote: Mapping[str, Any]) -> None:
        """Remember what the far side answered (project id, message id ...) before going on."""
        row = self.m.Intent.get(self.m.Intent.key == key)
        merged = {**json.loads(row.remote), **remote}
        self.m.Intent.update(remote=_dumps(merged), updated_at=self.clock()).where(
            self.m.Intent.key == key
        ).execute()

    def finish_intent(self, key: str) -> None:
        self.m.Intent.update(
            status="done", last_error=None, next_retry_at=None, updated_at=self.clock()
        ).where(self.m.Intent.key == key).execute()

    def fail_intent(self, key: str, error: str, *, permanent: bool, max_attempts: int = 5) -> bool:
        """Count a failed attempt; park when permanent or out of attempts. Returns True when parked."""
        row = self.m.Intent.get(self.m.Intent.key == key)
        attempts = row.attempts + 1
        parked = permanent or attempts >= max_attempts
        now = self.clock()
        self.m.Intent.update(
            attempts=attempts,
            last_error=error,
            status="parked" if parked else "pending",
            next_retry_at=None,
            updated_at=now,
        ).where(self.m.Intent.key == key).execute()
        return parked

    def record_failure(
        self,
        key: str,
        kind: str,
        error: str,
        *,
        deal_id: str | None,
        project_id: str | None,
        input_hash: str,
        cycle_id: int | None,
        park: bool,
    ) -> None:
        """Count one failed attempt of an item the planner could not use this cycle (a read that failed),
        pending for the next cycle, or parked (``park``)."""
        existing = self.m.Intent.get_or_none(self.m.Intent.key == key)
        attempts = (existing.attempts if existing is not None and existing.status == "pending" else 0) + 1
        now = self.clock()
        values = {
            "kind": kind,
            "status": "parked" if park else "pending",
            "deal_id": deal_id,
            "project_id": project_id,
            "attempts": attempts,
            "input_hash": input_hash,
            "last_error": error,
            "cycle_id": cycle_id,
            "updated_at": now,
        }
        if existing is None:
            self.m.Intent.create(key=key, payload="{}", remote="{}", created_at=now, **values)
        else:
            self.m.Intent.update(**values).where(self.m.Intent.key == key).execute()

    def park(
        self,
        key: str,
        kind: str,
        error: str,
        *,
        deal_id: str | None,
        project_id: str | None,
        payload: Mapping[str, Any],
        input_hash: str,
        cycle_id: int | None,
    ) -> None:
        """Park an item the planner found bad (no call was made now). An existing intent keeps its payload
        when none is given, so a write SI later rejected can still be re-sent by ``retry``."""
        existing = self.intent(key)
        if existing is not None and not payload:
            payload = existing.payload or {}
        self.begin_intent(
            key,
            kind,
            deal_id=deal_id,
            project_id=project_id,
            payload=payload,
            input_hash=input_hash,
            cycle_id=cycle_id,
        )
        self.m.Intent.update(status="parked", last_error=error, attempts=self.m.Intent.attempts + 1).where(
            self.m.Intent.key == key
        ).execute()

    def parked(self) -> list[IntentState]:
        query = (
            self.m.Intent.select().where(self.m.Intent.status == "parked").order_by(self.m.Intent.updated_at)
        )
        return [self._intent(row) for row in query]

    def retry(self, key: str | None = None) -> int:
        """Re-queue one parked item (or all with ``key=None``): the next cycle plans it afresh."""
        query = self.m.Intent.update(status="retry", attempts=0, input_hash="", next_retry_at=None)
        condition = self.m.Intent.status == "parked"
        if key is not None:
            condition &= self.m.Intent.key == key
        with self.db.atomic():
            count = int(query.where(condition).execute())
            if count:
                self._set("retry.requested", "1")
        return count

    # ---- unknown projects -------------------------------------------------------------------------

    def note_unknown_project(self, project_id: str, integration_id: str | None, name: str | None) -> None:
        now = self.clock()
        existing = self.m.UnknownProject.get_or_none(self.m.UnknownProject.project_id == project_id)
        if existing is None:
            self.m.UnknownProject.create(
                project_id=project_id, integration_id=integration_id, name=name, first_seen=now, last_seen=now
            )
        else:
            self.m.UnknownProject.update(last_seen=now, integration_id=integration_id, name=name).where(
                self.m.UnknownProject.project_id == project_id
            ).execute()

    def forget_unknown_project(self, project_id: str) -> None:
        self.m.UnknownProject.delete().where(self.m.UnknownProject.project_id == project_id).execute()

    def unknown_projects(self) -> list[dict[str, Any]]:
        return [
            {
                "project_id": r.project_id,
                "integration_id": r.integration_id,
                "name": r.name,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
            }
            for r in self.m.UnknownProject.select().order_by(self.m.UnknownProject.first_seen)
        ]

    # ---- cycles -----------------------------------------------------------------------------------

    def start_cycle(self, mode: str, dry_run: bool) -> int:
        row = self.m.Cycle.create(started_at=self.clock(), mode=mode, dry_run=dry_run)
        return int(row.id)

    def finish_cycle(self, cycle_id: int, report: CycleReport) -> None:
        self.m.Cycle.update(
            ended_at=report.ended_at,
            outcome=report.outcome,
            mode=report.mode,
            counts=_dumps(dict(report.counts)),
            api_calls=_dumps(dict(report.api_calls)),
            message=report.message,
        ).where(self.m.Cycle.id == cycle_id).execute()

    def close_abandoned_cycles(self) -> int:
        """Record cycles left ``running`` by a process that died as ``interrupted``; returns how many.

        Only the holder of the instance lock may call this: then no other process can be running a cycle.
        """
        with self.db.atomic():
            query = self.m.Cycle.update(
                outcome="interrupted",
                message="the process ended before the cycle finished; a rerun resumes",
            ).where(self.m.Cycle.outcome == "running")
            return int(query.execute())

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        query = self.m.Cycle.select().order_by(self.m.Cycle.id.desc()).limit(limit)
        return [
            {
                "id": r.id,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "mode": r.mode,
                "dry_run": r.dry_run,
                "outcome": r.outcome,
                "counts": json.loads(r.counts),
                "api_calls": json.loads(r.api_calls),
                "message": r.message,
            }
            for r in query
        ]

    def cycle_totals(self) -> dict[str, int]:
        query = (
            self.m.Cycle.select(self.m.Cycle.outcome, pw.fn.COUNT(self.m.Cycle.id).alias("n"))
            .where(self.m.Cycle.dry_run == False)  # noqa: E712 (peewee expression, not a comparison)
            .group_by(self.m.Cycle.outcome)
        )
        return {row.outcome: int(row.n) for row in query}

    def last_success_at(self) -> float | None:
        value = (
            self.m.Cycle.select(pw.fn.MAX(self.m.Cycle.ended_at))
            .where((self.m.Cycle.outcome == "ok") & (self.m.Cycle.dry_run == False))  # noqa: E712
            .scalar()
        )
        return None if value is None else float(value)

    # ---- audit ------------------------------------------------------------------------------------

    def audit(
        self,
        cycle_id: int | None,
        action: str,
        changes: Sequence[tuple[str, Any, Any]],
        *,
        deal_id: str | None,
        project_id: str | None,
    ) -> None:
        now = self.clock()
        rows = [
            {
                "at": now,
                "cycle_id": cycle_id,
                "deal_id": deal_id,
                "project_id": project_id,
                "action": action,
                "field": field,
                "old": None if old is None else _dumps(old),
                "new": None if new is None else _dumps(new),
            }
            for field, old, new in changes
        ]
        if rows:
            self.m.Audit.insert_many(rows).execute()

    def history(self, deal_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        query = self.m.Audit.select().order_by(self.m.Audit.id.desc()).limit(limit)
        if deal_id is not None:
            query = query.where(self.m.Audit.deal_id == deal_id)
        return [
            AuditEntry(
                at=r.at,
                cycle_id=r.cycle_id,
                deal_id=r.deal_id,
                project_id=r.project_id,
                action=r.action,
                field=r.field,
                old=None if r.old is None else json.loads(r.old),
                new=None if r.new is None else json.loads(r.new),
            )
            for r in reversed(list(query))
        ]
