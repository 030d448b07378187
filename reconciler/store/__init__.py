"""The SQLite store (Peewee, WAL): links, snapshots, intents, cursors, cycles, token cache, audit trail.

The store owns its schema version, its migrations (``playhouse.migrate``) and its transactions; callers
never write SQL. The file is created on first use with mode 0600 (it holds the Zoho access token); what
may be opened, and what SQLite's failures tell the operator, is :mod:`reconciler.dbfile`.

Tables: ``link`` (deal <-> project), ``snapshot`` (per pair, the mapped values each side had when we last
agreed, plus our SI writes still pending in SI's queue), ``intent`` (one row per deterministic action key,
written *before* the external call and settled after it), ``state`` (cursors and small key/values),
``cycle``, ``token``/``token_issue`` (shared access-token cache and the 10-per-10-minutes ledger),
``audit`` (every applied change, old -> new) and ``unknown_project``.

:class:`Store` is one object with four parts: :mod:`.schema` (tables, version, migrations),
:mod:`.pairs` (links and snapshots), :mod:`.intents` and :mod:`.records` (state, tokens, unknown
projects, cycles, audit). The lifecycle (open, migrate, close, transactions) is here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import peewee as pw
from playhouse.migrate import SqliteMigrator

from reconciler.dbfile import BUSY_TIMEOUT_SECONDS, SafeSqliteDatabase, prepare_db_file
from reconciler.errors import ConfigError, StoreBusyError, StoreError
from reconciler.store.intents import IntentRows
from reconciler.store.pairs import PairRows
from reconciler.store.records import Records
from reconciler.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    models,
    version,
    warn_if_readable_by_others,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "Store", "StoreBusyError", "StoreError"]


class Store(PairRows, IntentRows, Records):
    """One SQLite file. Open with :meth:`open`; use :meth:`atomic` for a transaction."""

    def __init__(self, db: pw.SqliteDatabase, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.path = path
        self.clock = clock
        self.tables = models(db)

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
            warn_if_readable_by_others(path, real)
        return store

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def _migrate(self, migrations: Mapping[int, Migration], target: int) -> None:
        with self.db.atomic():
            self.db.create_tables([self.tables.State], safe=True)
            row = self.tables.State.get_or_none(self.tables.State.key == "schema_version")
            if row is None:
                self.db.create_tables(self.tables.all, safe=True)
                self._set("schema_version", str(target))
                return
            current = version(row.value, self.path)
            if current > target:
                raise ConfigError(
                    f"RECONCILER_DB: {self.path}: schema version {current} is newer than this program "
                    f"({target}); run the newer reconciler or point RECONCILER_DB at another file"
                )
            migrator = SqliteMigrator(self.db)
            for number in range(current + 1, target + 1):
                step = migrations.get(number)
                if step is not None:
                    step(migrator, self.tables)
                self._set("schema_version", str(number))

    @property
    def schema_version(self) -> int:
        return version(self.get_state("schema_version") or "0", self.path)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.db.atomic():
            yield
