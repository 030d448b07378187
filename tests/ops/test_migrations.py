"""Upgrades: a database from every schema version that ever shipped opens in this version, data intact.

``schemas/v<N>.sql`` is a dump of version N's schema with a few rows in every table, made by
``python -m tests.ops.schema_snapshot`` when N was current. Adding a version is: bump ``SCHEMA_VERSION``,
add its step to ``MIGRATIONS`` (``reconciler/store/schema.py``), run that command, commit the new file.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from reconciler.store import SCHEMA_VERSION, Store
from tests.ops.schema_snapshot import SCHEMAS, seeded_store

VERSIONS = sorted(
    int(m.group(1)) for p in SCHEMAS.glob("v*.sql") if (m := re.fullmatch(r"v(\d+)\.sql", p.name))
)


def _indexes(db: Path) -> dict[str, str]:
    """Index name -> its SQL (the ones a migration creates; SQLite's automatic ones have none)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select name, sql from sqlite_master where type='index' and sql is not null")
        return {name: " ".join(sql.split()) for name, sql in rows}
    finally:
        con.close()


def _schema(db: Path) -> dict[str, set[str]]:
    """Table -> column names (what the code can rely on), without SQLite's own tables."""
    con = sqlite3.connect(db)
    try:
        tables = [t for (t,) in con.execute("select name from sqlite_master where type='table'")]
        return {
            t: {row[1] for row in con.execute(f'pragma table_info("{t}")')}
            for t in tables
            if not t.startswith("sqlite_")
        }
    finally:
        con.close()


def _counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return {t: con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in _schema(db)}
    finally:
        con.close()


def _restore(version: int, path: Path) -> Path:
    con = sqlite3.connect(path)
    try:
        con.executescript((SCHEMAS / f"v{version}.sql").read_text())
    finally:
        con.close()
    return path


def test_the_current_schema_version_is_recorded_and_unchanged(tmp_path: Path) -> None:
    """schemas/v<SCHEMA_VERSION>.sql exists and matches what this code creates: a model change without a
    version bump (and its migration) fails here."""
    assert SCHEMA_VERSION in VERSIONS, (
        f"no snapshot of schema version {SCHEMA_VERSION}: run `.venv/bin/python -m tests.ops.schema_snapshot`"
    )
    seeded_store(tmp_path / "fresh.db").close()
    recorded = _restore(SCHEMA_VERSION, tmp_path / "recorded.db")
    assert _schema(tmp_path / "fresh.db") == _schema(recorded), (
        "the tables differ from the recorded schema: bump SCHEMA_VERSION and add a migration"
    )


@pytest.mark.parametrize("version", VERSIONS, ids=[f"from-v{v}" for v in VERSIONS])
def test_every_recorded_version_migrates_to_the_current_one_with_its_data(
    tmp_path: Path, version: int
) -> None:
    """Open a version-N database: it becomes the current version, every table and column this code has
    exists, no row is lost, and the store reads its links, intents, cycles and history."""
    old = _restore(version, tmp_path / f"v{version}.db")
    before = _counts(old)

    store = Store.open(old)
    try:
        assert store.schema_version == SCHEMA_VERSION
        assert store.links()["100"].project_id == "guid-100"
        assert [i.key for i in store.parked()] == ["create:deal:101"]
        assert store.recent_cycles(5)[0]["outcome"] == "parked"
        assert [e.field for e in store.history("100")] == ["SI_Project_ID"]
        assert store.get_state("cursor.zoho.modified_time") == "2026-01-01T00:00:00+00:00"
    finally:
        store.close()

    seeded_store(tmp_path / "fresh.db").close()
    assert _schema(old) == _schema(tmp_path / "fresh.db")
    assert _indexes(old) == _indexes(tmp_path / "fresh.db")  # the cycle's indexes, v3's partial one too
    after = _counts(old)
    assert all(after[table] >= rows for table, rows in before.items()), (before, after)
