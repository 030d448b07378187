"""An idle cycle reads from the store only what its input can touch, never every pair (issue 12).

The work is measured inside SQLite, not by the clock: a progress handler counts the virtual-machine
steps the store's queries take, and a trace callback lists the statements. A query that scans every
link, snapshot or intent takes steps in proportion to the rows it passes over, even when it returns none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from reconciler.context import Context
from reconciler.model import LinkState, Snapshot
from reconciler.read import ReadOptions, read_world
from reconciler.sim.harness import SimPair
from reconciler.store import Store
from tests.conftest import cycle

MORE_PAIRS = 1_000
PAIR_TABLES = ('"link"', '"snapshot"', '"intent"')


@dataclass
class _Work:
    steps: int = 0
    statements: list[str] = field(default_factory=list)

    def pair_reads(self) -> list[str]:
        """The statements that read the tables holding one row (or more) per pair."""
        return [s for s in self.statements if s.startswith("SELECT") and any(t in s for t in PAIR_TABLES)]

    def step(self) -> int:
        self.steps += 1
        return 0  # go on


@contextmanager
def _sqlite_work(store: Store) -> Iterator[_Work]:
    """What SQLite does for the store while the block runs (this thread's connection)."""
    work = _Work()
    connection = store.db.connection()
    connection.set_progress_handler(work.step, 1)
    connection.set_trace_callback(work.statements.append)
    try:
        yield work
    finally:
        connection.set_progress_handler(None, 1)
        connection.set_trace_callback(None)


def _settled_pairs(store: Store, count: int) -> None:
    """``count`` more pairs as a settled create leaves them: a link, a snapshot, two intents done."""
    with store.atomic():
        for n in range(count):
            deal, project = f"9{n:08d}", f"00000000-0000-4000-8000-{n:012d}"
            store.upsert_link(LinkState(deal, project, message_id=f"m-{n}", publish_status="imported"))
            values = {"Amount": str(n), "SI_Sync_Status": "In SI"}
            store.save_snapshot(Snapshot(deal, zoho_hash=f"h{n}", zoho=values, si=values, pending={}))
            for key, kind in ((f"create:deal:{deal}", "create"), (f"update:deal:{deal}", "update_deal")):
                store.begin_intent(key, kind, deal_id=deal, project_id=project, payload={"n": n})
                store.finish_intent(key)


def _idle(ctx: Context) -> _Work:
    with _sqlite_work(ctx.store) as work:
        report = cycle(ctx)
    assert report.outcome == "ok", report.message
    assert sum(report.api_calls.values()) == 2, report.api_calls
    return work


def _settled_world(sims: SimPair, make_ctx: Callable[..., Context]) -> Context:
    for n in range(3):
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True, Amount=100 + n)
    ctx = make_ctx(sims)
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    return ctx


def test_an_idle_cycle_does_no_more_store_work_with_1000_more_pairs(sims, make_ctx):
    """The same idle cycle, before and after 1,000 more settled pairs join the store: the same queries of
    links, snapshots and intents, and about the same number of SQLite steps (an index look-up may go one
    level deeper), not thousands more."""
    ctx = _settled_world(sims, make_ctx)
    _idle(ctx)  # the first cycle after the confirming one: steady state from here
    before = _idle(ctx)
    _settled_pairs(ctx.store, MORE_PAIRS)
    after = _idle(ctx)
    assert ctx.store.link_count() == 3 + MORE_PAIRS
    assert after.pair_reads() == before.pair_reads()
    assert after.steps < before.steps + MORE_PAIRS // 4, (
        f"an idle cycle took {after.steps} SQLite steps with {MORE_PAIRS:,} more pairs, {before.steps} "
        "before: some query passes over every pair. Statements:\n" + "\n".join(after.statements)
    )


def test_an_idle_read_still_loads_open_intents_pending_publishes_and_pending_updates(sims, make_ctx):
    """What the indexes serve is still read when no input names it: a parked item, a link whose publish
    is pending in SI's queue, and a snapshot with an SI update of ours pending."""
    ctx = _settled_world(sims, make_ctx)
    _settled_pairs(ctx.store, 50)
    store = ctx.store
    store.park(
        "deal:900000007",
        "deal",
        "bad data",
        deal_id="900000007",
        project_id=None,
        payload={},
        input_hash="x",
        cycle_id=None,
    )
    store.upsert_link(LinkState("900000008", "p-8", message_id="m-8", publish_status="pending"))
    pending = {"Amount": {"value": "9", "message_id": "m-9", "stale": []}}
    store.save_snapshot(Snapshot("900000009", zoho_hash="h", zoho={}, si={}, pending=pending))

    world = read_world(ctx, ReadOptions(full=False))

    assert world.intents["deal:900000007"].status == "parked"
    assert world.links["900000008"].publish_status == "pending"
    assert world.snapshots["900000009"].pending == pending
    assert "900000009" in world.links  # the pair of a pending update comes with its link
    assert len(world.links) == 3 + 2  # the deals just read, the two pairs above: none of the 48 others


def test_a_version_2_database_gains_the_indexes_an_idle_cycle_reads_through(tmp_path):
    """Upgrading adds the two indexes (links with a pending publish, snapshots with a pending update)."""
    import sqlite3

    from tests.ops.schema_snapshot import SCHEMAS

    path = tmp_path / "v2.db"
    db = sqlite3.connect(path)
    db.executescript((SCHEMAS / "v2.sql").read_text())
    db.close()
    Store.open(path).close()
    db = sqlite3.connect(path)
    try:
        names = {name for (name,) in db.execute("select name from sqlite_master where type = 'index'")}
        plan = db.execute("explain query plan select * from snapshot where pending != '{}'").fetchall()
    finally:
        db.close()
    assert {"link_publish_status", "snapshot_pending"} <= names
    assert "snapshot_pending" in str(plan)
