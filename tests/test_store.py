"""The SQLite store: file safety, schema version and migrations, intents, tokens, audit and cycles."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
from playhouse.migrate import SqliteMigrator, migrate

from reconciler import logs
from reconciler.clients.zoho import CachedToken
from reconciler.errors import EX_CONFIG, EX_FAIL, ConfigError, StoreBusyError, StoreError
from reconciler.model import CycleReport, LinkState, Snapshot
from reconciler.store import SCHEMA_VERSION, Store


class Clock:
    """A hand-driven clock for the store's timestamps."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    s = Store.open(tmp_path / "state" / "reconciler.db", clock=clock)
    yield s
    s.close()


def _begin(store: Store, key: str = "update:deal:1", **kwargs: Any) -> None:
    store.begin_intent(
        key,
        kwargs.pop("kind", "update_deal"),
        deal_id=kwargs.pop("deal_id", "1"),
        project_id=kwargs.pop("project_id", "P1"),
        payload=kwargs.pop("payload", {"record": {"id": "1", "Amount": 5}}),
        **kwargs,
    )


def _report(outcome: str, ended: float, *, dry_run: bool = False) -> CycleReport:
    return CycleReport(
        mode="incremental",
        outcome=outcome,
        exit_code=0,
        started_at=ended - 1,
        ended_at=ended,
        dry_run=dry_run,
        counts={"update_deal.applied": 2},
        api_calls={"zoho.coql": 1},
    )


# ---- the file ---------------------------------------------------------------------------------------------


def test_new_store_file_and_its_directory_are_private(tmp_path: Path) -> None:
    """A new database (it caches the access token) is created mode 0600, its parent directory too."""
    path = tmp_path / "deep" / "state" / "reconciler.db"
    s = Store.open(path)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.parent.is_dir()
        assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    finally:
        s.close()


def test_every_directory_the_store_creates_is_0700_and_the_file_0600_even_with_umask_0(
    tmp_path: Path,
) -> None:
    """Each missing level is made 0700 (not just the last) and the file is born 0600, whatever the umask."""
    path = tmp_path / "a" / "b" / "reconciler.db"
    old = os.umask(0)
    try:
        Store.open(path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_an_existing_file_is_never_chmodded_and_a_loose_mode_is_reported(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 0644 database made by someone else keeps its mode; a warning says how to tighten it."""
    path = tmp_path / "reconciler.db"
    Store.open(path).close()
    path.chmod(0o644)
    logs.configure("text")
    Store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert f'store.mode_open db={path} mode=0644 fix="chmod 600 {path}"' in capfd.readouterr().err


def test_a_database_made_read_only_is_not_chmodded_back(tmp_path: Path) -> None:
    """An operator's 0400 stays 0400: root may still use it; anyone else gets one line naming the file."""
    path = tmp_path / "reconciler.db"
    Store.open(path).close()
    path.chmod(0o400)
    if os.geteuid() == 0:
        Store.open(path).close()  # root's access ignores the mode; the point is that it stays
    else:
        with pytest.raises(
            StoreError, match=rf"^RECONCILER_DB: {re.escape(str(path))} is read-only"
        ) as caught:
            Store.open(path)
        assert caught.value.exit_code == EX_CONFIG
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


def _device_or_fifo(path: Path) -> str:
    """A character device like /dev/null inside the temp directory (a FIFO when not root)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return "a character device"
    except PermissionError:
        os.mkfifo(path, 0o666)
        return "a named pipe"


@pytest.mark.parametrize("target", ["device", "directory", "cwd"])
def test_a_path_that_is_not_a_regular_file_is_refused_and_left_untouched(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device (like /dev/null), a directory, or "." (an empty setting): one line, and its mode unchanged."""
    monkeypatch.chdir(tmp_path)
    if target == "device":
        path = tmp_path / "null"
        kind = _device_or_fifo(path)
        expected = f"RECONCILER_DB: {path} is {kind}; name a database file"
    elif target == "directory":
        path = tmp_path / "state"
        path.mkdir(mode=0o755)
        expected = f"RECONCILER_DB: {path} is a directory; name the database file in it"
    else:
        path = Path(".")
        expected = "RECONCILER_DB: . is a directory"
    path.chmod(0o755 if target != "device" else 0o666)
    before = os.stat(path).st_mode
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert caught.value.exit_code == EX_CONFIG
    (problem,) = caught.value.problems
    assert problem.startswith(expected)
    assert os.stat(path).st_mode == before
    assert not list(tmp_path.glob("*-wal")) and not list(tmp_path.glob("*.lock"))


DAMAGE = {
    "garbage": lambda good: bytes(range(256)) * 64,
    "text": lambda good: b"deal,amount\n123,4500\n" * 200,
    "truncated": lambda good: good[: len(good) // 2],
    "header-only": lambda good: good[:100],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_database_is_refused_and_never_overwritten(damage: str, tmp_path: Path) -> None:
    """Garbage, a text file or a truncated copy: one line naming the file, how to restore; bytes untouched."""
    good = tmp_path / "good.db"
    store = Store.open(good)
    for n in range(400):
        store.audit(None, "update_deal", [("Amount", n, n + 1)], deal_id=str(n), project_id=None)
    store.close()
    path = tmp_path / "reconciler.db"
    path.write_bytes(DAMAGE[damage](good.read_bytes()))
    before = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        Store.open(path).history()
    (problem,) = caught.value.problems
    assert caught.value.exit_code == EX_CONFIG
    assert problem.startswith(f"RECONCILER_DB: {path} is damaged or not a reconciler database (")
    assert "copy the file written by `reconciler backup FILE` over" in problem
    assert path.read_bytes() == before


def test_a_schema_version_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    """schema_version 'banana' (a foreign or damaged file): one line naming it; the file is left as it was."""
    path = tmp_path / "reconciler.db"
    Store.open(path).close()
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("UPDATE state SET value = 'banana' WHERE key = 'schema_version'")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"its schema_version is 'banana', not a number") as caught:
        Store.open(path)
    assert caught.value.exit_code == EX_CONFIG
    assert path.read_bytes() == before


def test_a_directory_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    """A file where a directory should be made: exit 78 naming the directory, nothing created."""
    (tmp_path / "state").write_text("not a directory", encoding="utf-8")
    path = tmp_path / "state" / "sub" / "reconciler.db"
    with pytest.raises(StoreError) as caught:
        Store.open(path)
    assert caught.value.exit_code == EX_CONFIG
    assert caught.value.problems[0].startswith(f"RECONCILER_DB: {path}: a part of the path is a file")


def test_a_database_locked_past_the_busy_timeout_is_a_transient_one_line_error(tmp_path: Path) -> None:
    """Another process holds a write lock longer than the busy timeout: exit 1, naming the file."""
    path = tmp_path / "reconciler.db"
    store = Store.open(path, busy_timeout=0.2)
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreBusyError) as caught:
            store.set_state("k", "v")
        other.execute("ROLLBACK")
    assert caught.value.exit_code == EX_FAIL
    assert caught.value.problems[0].startswith(f"RECONCILER_DB: {path} is locked by another process for more")
    store.set_state("k", "v")  # the lock is gone: the store works again
    assert store.get_state("k") == "v"
    store.close()


def test_a_full_disk_rolls_back_and_the_store_keeps_working(tmp_path: Path) -> None:
    """SQLITE_FULL inside a transaction: one transient line (not 'cannot rollback'); nothing half-written."""
    path = tmp_path / "reconciler.db"
    store = Store.open(path)
    pages = store.db.execute_sql("PRAGMA page_count").fetchone()[0]
    store.db.execute_sql(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(StoreBusyError) as caught, store.atomic():
        store.set_state("marker", "x")
        for n in range(2000):
            store.audit(None, "update_deal", [("Amount", "x" * 100, n)], deal_id=str(n), project_id=None)
    assert caught.value.exit_code == EX_FAIL
    assert caught.value.problems[0].startswith(f"RECONCILER_DB: {path}: the disk is full (")
    assert store.get_state("marker") is None and store.history() == []
    store.db.execute_sql("PRAGMA max_page_count = 1073741823")
    store.set_state("marker", "y")
    assert store.get_state("marker") == "y"
    store.close()


def test_store_uses_wal_and_records_its_schema_version(store: Store) -> None:
    """journal_mode is WAL (readers never block the daemon) and the schema version is stored."""
    assert store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version == SCHEMA_VERSION
    with closing(sqlite3.connect(store.path)) as raw:
        assert raw.execute("SELECT value FROM state WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )


def test_reopening_keeps_data(tmp_path: Path) -> None:
    """State written by one Store object is there for the next one on the same file."""
    path = tmp_path / "r.db"
    first = Store.open(path)
    first.set_state("cursor", "2026-03-01T00:00:00+00:00")
    first.close()
    second = Store.open(path)
    try:
        assert second.get_state("cursor") == "2026-03-01T00:00:00+00:00"
    finally:
        second.close()


def test_migration_step_runs_once_on_an_older_file(tmp_path: Path) -> None:
    """A file at the current version opened by a program one version newer runs that step once."""
    path = tmp_path / "r.db"
    old = Store.open(path)
    old.upsert_link(LinkState("D1", "P1"))
    old.close()
    calls: list[int] = []
    target = SCHEMA_VERSION + 1

    def add_link_note(migrator: SqliteMigrator, models: Any) -> None:
        calls.append(target)
        migrate(migrator.add_column("link", "note", pw.TextField(null=True)))

    for _ in range(2):
        s = Store.open(path, migrations={target: add_link_note}, schema_version=target)
        try:
            assert s.schema_version == target
            columns = [row[1] for row in s.db.execute_sql("PRAGMA table_info(link)").fetchall()]
            assert "note" in columns
            assert s.links()["D1"].project_id == "P1"
        finally:
            s.close()
    assert calls == [target]


def test_new_file_starts_at_the_target_version_without_migrating(tmp_path: Path) -> None:
    """A brand-new file is created at the program's version; no step runs."""
    calls: list[int] = []
    s = Store.open(tmp_path / "r.db", migrations={2: lambda m, models: calls.append(2)}, schema_version=2)
    try:
        assert s.schema_version == 2
        assert calls == []
    finally:
        s.close()


def test_file_newer_than_the_program_is_refused(tmp_path: Path) -> None:
    """A file written by a newer version is never opened or downgraded: exit 78 naming RECONCILER_DB."""
    path = tmp_path / "r.db"
    Store.open(path, schema_version=3).close()
    with pytest.raises(
        ConfigError, match=r"^RECONCILER_DB: .*schema version 3 is newer than this program"
    ) as caught:
        Store.open(path, schema_version=1)
    assert caught.value.exit_code == EX_CONFIG


def test_two_stores_in_one_process_do_not_interfere(tmp_path: Path) -> None:
    """Models are bound per database: writes to one file never appear in the other."""
    a = Store.open(tmp_path / "a.db")
    b = Store.open(tmp_path / "b.db")
    try:
        a.upsert_link(LinkState("D1", "PA"))
        b.upsert_link(LinkState("D2", "PB"))
        a.set_state("k", "a")
        b.set_state("k", "b")
        assert list(a.links()) == ["D1"]
        assert list(b.links()) == ["D2"]
        assert (a.get_state("k"), b.get_state("k")) == ("a", "b")
    finally:
        a.close()
        b.close()


# ---- links and snapshots -------------------------------------------------------------------------------


def test_link_upsert_round_trips_every_field(store: Store) -> None:
    """A link is stored and updated in place, inactive reason included."""
    store.upsert_link(LinkState("D1", "P1", message_id="M1"))
    store.upsert_link(
        LinkState("D1", "P1", message_id="M1", publish_status="imported", active=False, inactive_reason="x")
    )
    assert store.links() == {
        "D1": LinkState("D1", "P1", "M1", "imported", None, active=False, inactive_reason="x")
    }
    assert store.link_count() == 1


def test_snapshots_round_trip_and_pending_ones_are_found(store: Store) -> None:
    """Snapshots keep their maps; pending_snapshots lists only those with an SI update in flight."""
    store.save_snapshot(Snapshot("D1", "h1", {"Amount": "10"}, {"Amount": "10"}))
    store.save_snapshot(
        Snapshot("D2", "h2", {}, {}, {"Closing_Date": {"value": "2026-03-01", "message_id": "M"}})
    )
    assert store.snapshots(["D1"]) == {"D1": Snapshot("D1", "h1", {"Amount": "10"}, {"Amount": "10"}, {})}
    assert set(store.snapshots()) == {"D1", "D2"}
    assert list(store.pending_snapshots()) == ["D2"]


# ---- intents ----------------------------------------------------------------------------------------------


def test_intent_lifecycle_begin_remote_finish(store: Store) -> None:
    """begin records a pending intent; set_remote merges answers; finish marks it done."""
    _begin(store, "create:deal:1", kind="create", payload={"guid": "G"}, input_hash="h")
    state = store.intent("create:deal:1")
    assert state is not None
    assert (state.status, state.kind, state.input_hash, state.payload) == (
        "pending",
        "create",
        "h",
        {"guid": "G"},
    )
    store.set_remote("create:deal:1", {"project_id": "P1"})
    store.set_remote("create:deal:1", {"message_id": "M1"})
    assert "create:deal:1" in store.open_intents()
    store.finish_intent("create:deal:1")
    done = store.intent("create:deal:1")
    assert done is not None
    assert done.status == "done"
    assert done.remote == {"project_id": "P1", "message_id": "M1"}
    assert store.open_intents() == {}


def test_rebegin_keeps_remote_ids(store: Store) -> None:
    """Re-arming an intent after a crash keeps what the far side already answered."""
    _begin(store, "create:deal:1", kind="create")
    store.set_remote("create:deal:1", {"project_id": "P1"})
    _begin(store, "create:deal:1", kind="create")
    state = store.intent("create:deal:1")
    assert state is not None and state.remote == {"project_id": "P1"}


def test_transient_failure_stays_pending_for_the_next_cycle(store: Store) -> None:
    """A transient failure counts an attempt and keeps the intent pending (the next cycle retries it)."""
    _begin(store)
    assert store.fail_intent("update:deal:1", "HTTP 503", permanent=False) is False
    state = store.intent("update:deal:1")
    assert state is not None
    assert (state.status, state.attempts, state.last_error) == ("pending", 1, "HTTP 503")


def test_transient_failures_park_after_max_attempts(store: Store) -> None:
    """The max_attempts-th transient failure parks the item."""
    _begin(store)
    results = [
        store.fail_intent("update:deal:1", f"try {n}", permanent=False, max_attempts=3) for n in range(3)
    ]
    assert results == [False, False, True]
    state = store.intent("update:deal:1")
    assert state is not None
    assert (state.status, state.attempts, state.last_error, state.next_retry_at) == (
        "parked",
        3,
        "try 2",
        None,
    )
    assert [p.key for p in store.parked()] == ["update:deal:1"]


def test_permanent_failure_parks_at_once(store: Store) -> None:
    """A permanent failure parks on the first attempt."""
    _begin(store)
    assert store.fail_intent("update:deal:1", "INVALID_DATA", permanent=True) is True
    state = store.intent("update:deal:1")
    assert state is not None and (state.status, state.attempts) == ("parked", 1)


def test_planner_park_records_message_and_hash(store: Store) -> None:
    """park() stores a planner-found problem with its input hash, no external call needed."""
    store.park(
        "create:deal:9",
        "park",
        "deal 9: field Account_Name.name is empty (SI requires Client)",
        deal_id="9",
        project_id=None,
        payload={},
        input_hash="abc",
        cycle_id=None,
    )
    (parked,) = store.parked()
    assert (parked.key, parked.status, parked.input_hash) == ("create:deal:9", "parked", "abc")
    assert parked.last_error is not None and "Account_Name.name" in parked.last_error


def test_retry_one_key_requeues_only_that_item(store: Store) -> None:
    """retry(key) moves that parked item to 'retry', clears its hash, and asks for a full cycle."""
    for key in ("a", "b"):
        _begin(store, key, input_hash="h")
        store.fail_intent(key, "boom", permanent=True)
    assert store.retry("a") == 1
    a, b = store.intent("a"), store.intent("b")
    assert a is not None and b is not None
    assert (a.status, a.attempts, a.input_hash) == ("retry", 0, "")
    assert b.status == "parked"
    assert store.get_state("retry.requested") == "1"
    assert store.retry("a") == 0  # no longer parked


def test_retry_all_requeues_every_parked_item(store: Store) -> None:
    """retry(None) re-queues all parked items; nothing parked means nothing flagged."""
    assert store.retry(None) == 0
    assert store.get_state("retry.requested") is None
    for key in ("a", "b"):
        _begin(store, key)
        store.fail_intent(key, "boom", permanent=True)
    _begin(store, "c")
    assert store.retry(None) == 2
    assert {k: v.status for k, v in store.open_intents().items()} == {
        "a": "retry",
        "b": "retry",
        "c": "pending",
    }
    assert store.get_state("retry.requested") == "1"


def test_intents_with_prefixes_finds_done_intents_too(store: Store) -> None:
    """Note intents are found by project prefix whatever their status."""
    _begin(store, "note:P1:CO-1:Approved", kind="note")
    store.finish_intent("note:P1:CO-1:Approved")
    _begin(store, "note:P2:CO-1:Approved", kind="note")
    assert list(store.intents_with_prefixes(["note:P1:"])) == ["note:P1:CO-1:Approved"]


# ---- token cache ------------------------------------------------------------------------------------------


def test_token_cache_round_trips_and_replaces(store: Store) -> None:
    """save_token/load_token keep the latest token per key; token_expiry is the latest expiry."""
    assert store.load_token("k") is None
    store.save_token("k", CachedToken("t1", 100.0, "https://www.zohoapis.com"))
    store.save_token("k", CachedToken("t2", 200.0, None))
    assert store.load_token("k") == CachedToken("t2", 200.0, None)
    assert store.token_expiry() == 200.0


def test_tokens_issued_since_counts_per_key_and_window(store: Store) -> None:
    """The 10-per-10-minutes ledger counts issues of one key at or after a moment."""
    for at in (1000.0, 1100.0, 1200.0):
        store.note_token_issued("k", at)
    store.note_token_issued("other", 1200.0)
    assert store.tokens_issued_since("k", 1100.0) == 2
    assert store.tokens_issued_since("k", 0.0) == 3
    assert store.tokens_issued_since("other", 0.0) == 1


def test_token_cache_is_shared_between_store_objects(tmp_path: Path) -> None:
    """Two processes (two Store objects on one file) share the cached token."""
    path = tmp_path / "r.db"
    a, b = Store.open(path), Store.open(path)
    try:
        a.save_token("k", CachedToken("shared", 123.0, None))
        assert b.load_token("k") == CachedToken("shared", 123.0, None)
    finally:
        a.close()
        b.close()


# ---- audit and cycles -------------------------------------------------------------------------------------


def test_history_returns_old_and_new_in_order(store: Store, clock: Clock) -> None:
    """Audit entries come back oldest first, filtered by deal, with JSON values intact."""
    store.audit(
        1,
        "update:deal:1",
        [("Amount", 100, 120.5), ("Stage", None, "Closed Won")],
        deal_id="1",
        project_id="P",
    )
    clock.now += 10
    store.audit(2, "update:deal:2", [("Amount", 1, 2)], deal_id="2", project_id="Q")
    clock.now += 10
    store.audit(3, "note:P:CO-1:Approved", [("note", None, "Change order CO-1")], deal_id="1", project_id="P")
    history = store.history("1")
    assert [(h.field, h.old, h.new, h.cycle_id) for h in history] == [
        ("Amount", 100, 120.5, 1),
        ("Stage", None, "Closed Won", 1),
        ("note", None, "Change order CO-1", 3),
    ]
    assert [h.deal_id for h in store.history()] == ["1", "1", "2", "1"]
    assert history[0].at < history[2].at


def test_cycles_report_recent_totals_and_last_success(store: Store) -> None:
    """recent_cycles newest first; totals and last success ignore dry runs."""
    first = store.start_cycle("full", dry_run=False)
    store.finish_cycle(first, _report("ok", 10.0))
    second = store.start_cycle("incremental", dry_run=False)
    store.finish_cycle(second, _report("failed", 20.0))
    dry = store.start_cycle("incremental", dry_run=True)
    store.finish_cycle(dry, _report("ok", 30.0, dry_run=True))
    recent = store.recent_cycles(2)
    assert [c["id"] for c in recent] == [dry, second]
    assert recent[1]["outcome"] == "failed"
    assert recent[1]["counts"] == {"update_deal.applied": 2}
    assert recent[1]["api_calls"] == {"zoho.coql": 1}
    assert store.cycle_totals() == {"ok": 1, "failed": 1}
    assert store.last_success_at() == 10.0


def test_no_successful_cycle_means_no_last_success(store: Store) -> None:
    """A fresh store has no last success and no totals."""
    assert store.last_success_at() is None
    assert store.cycle_totals() == {}
    assert store.recent_cycles() == []


def test_unknown_projects_are_remembered_and_forgotten(store: Store, clock: Clock) -> None:
    """An SI project no deal claims is listed with first/last seen until forgotten."""
    store.note_unknown_project("P9", "D9", "Walk-in")
    clock.now += 5
    store.note_unknown_project("P9", "D9", "Walk-in job")
    (row,) = store.unknown_projects()
    assert (row["name"], row["last_seen"] - row["first_seen"]) == ("Walk-in job", 5)
    store.forget_unknown_project("P9")
    assert store.unknown_projects() == []
