"""`reconciler backup FILE`: SQLite's online backup while another connection keeps writing, and restore."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

from reconciler.store import SCHEMA_VERSION, Store
from tests.conftest import run_cli


class Writer(threading.Thread):
    """Commits pairs of state rows (a.N and b.N in one transaction) until told to stop: a consistent copy
    holds as many a-rows as b-rows."""

    def __init__(self, db: Path) -> None:
        super().__init__(daemon=True)
        self.store = Store.open(db)
        self.stop = threading.Event()
        self.commits = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                with self.store.atomic():
                    self.store.set_state(f"a.{self.commits}", "x" * 2000)
                    self.store.set_state(f"b.{self.commits}", "y" * 2000)
                self.commits += 1
        finally:
            self.store.close()


def _pairs(db: Path) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        a = con.execute("select count(*) from state where key like 'a.%'").fetchone()[0]
        b = con.execute("select count(*) from state where key like 'b.%'").fetchone()[0]
        return a, b
    finally:
        con.close()


def test_backup_while_another_connection_writes_is_consistent_and_private(tmp_path: Path) -> None:
    """The daemon keeps committing while `backup` runs: the copy is whole (quick_check ok), consistent
    (no half transaction), one self-contained file (no WAL), mode 0600, at the current schema version."""
    db = tmp_path / "reconciler.db"
    Store.open(db).close()
    writer = Writer(db)
    writer.start()
    try:
        while writer.commits < 200:  # a WAL with real content before the copy starts
            threading.Event().wait(0.01)
        copy = tmp_path / "backups" / "reconciler-backup.db"
        copy.parent.mkdir()
        result = run_cli(["backup", str(copy)], {"RECONCILER_DB": str(db)}, tmp_path)
        during = writer.commits
    finally:
        writer.stop.set()
        writer.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"to {copy} (" in result.stdout and f"schema version {SCHEMA_VERSION}" in result.stdout
    assert during > 200  # the writer kept going while the copy ran
    a, b = _pairs(copy)
    assert a == b and a >= 200
    con = sqlite3.connect(copy)
    try:
        assert con.execute("pragma quick_check").fetchone() == ("ok",)
        assert con.execute("pragma journal_mode").fetchone() == ("delete",)
    finally:
        con.close()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sorted(p.name for p in copy.parent.iterdir()) == ["reconciler-backup.db"]


def test_restore_is_copying_the_file_back(tmp_path: Path) -> None:
    """Restore as the README says: stop, copy the backup over the database, drop -wal/-shm, start."""
    db = tmp_path / "reconciler.db"
    store = Store.open(db)
    store.set_state("cursor.zoho.modified_time", "2026-01-01T00:00:00+00:00")
    store.close()
    copy = tmp_path / "backup.db"
    assert run_cli(["--db", str(db), "backup", str(copy)], {}, tmp_path).returncode == 0
    db.unlink()
    for leftover in tmp_path.glob("reconciler.db-*"):
        leftover.unlink()
    copy.replace(db)
    status = run_cli(["status", "--json"], {"RECONCILER_DB": str(db)}, tmp_path)
    assert status.returncode == 0 and '"cursor": "2026-01-01T00:00:00+00:00"' in status.stdout


def test_backup_refuses_the_live_database_itself(tmp_path: Path) -> None:
    """`backup` pointed at the database it copies: exit 1, one line, the database untouched."""
    db = tmp_path / "reconciler.db"
    Store.open(db).close()
    before = db.read_bytes()
    result = run_cli(["backup", str(db)], {"RECONCILER_DB": str(db)}, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"reconciler: backup: {db} is the live database itself; name another file"
    assert db.read_bytes() == before
