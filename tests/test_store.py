"""The SQLite store: file safety, schema version and migrations, intents, tokens, audit and cycles."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import peewee as pw
import pytest
from playhouse.migrate import SqliteMigrator, migrate

from reconciler.clients.zoho import CachedToken
from reconciler.errors import EX_CONFIG, ConfigError
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


def test_existing_file_is_tightened_to_0600(tmp_path: Path) -> None:
    """Opening a world-readable file made by someone else makes it private."""
    path = tmp_path / "reconciler.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


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
