"""Store faults in the middle of a cycle: the step in progress rolls back, the next cycle resumes.

The disk fills up while a cycle is creating projects (SQLite's ``max_page_count`` makes the file unable
to grow, which SQLite reports exactly as a full disk). The cycle stops with one transient line (exit 1),
not ``cannot rollback - no transaction is active``; once there is room again the next cycles finish the
job with no project published twice and no deal left behind.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from reconciler.errors import EX_FAIL, StoreBusyError
from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from tests.conftest import cycle


def test_a_disk_that_fills_up_mid_cycle_rolls_back_and_the_next_cycle_resumes(
    sims: SimPair, make_ctx
) -> None:
    """Full disk while creating 120 projects: one exit-1 line; afterwards every deal has one project."""
    deals = [
        sims.zoho.add_deal(Deal_Name=f"Deal {n} " + "x" * 200, Account_Name="Acme", Send_to_SI=True)
        for n in range(120)
    ]
    ctx = make_ctx(sims, reconciler_si_concurrency=1)  # one publish in flight at a time (see below)
    db = ctx.store.db
    pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
    db.execute_sql(f"PRAGMA max_page_count = {pages + 30}")
    with pytest.raises(StoreBusyError) as caught:
        cycle(ctx)
    assert caught.value.exit_code == EX_FAIL
    (problem,) = caught.value.problems
    assert problem.startswith(f"RECONCILER_DB: {ctx.store.path}: the disk is full (database or disk is full)")
    published_before = len(sims.si.publish_messages)
    assert 0 < published_before < len(deals), "the fault should hit in the middle of the creates"

    db.execute_sql("PRAGMA max_page_count = 1073741823")  # room again
    for _ in range(2):
        report = cycle(ctx)
        assert report.exit_code == 0, report.summary()
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    projects = [m.payload["Id"] for m in sims.si.publish_messages]
    assert sorted(set(projects)) == sorted(project_guid(deal) for deal in deals)
    # At most the publish in flight when the disk filled is sent again, with the same Guid (SI updates it).
    assert len(projects) - len(set(projects)) <= 1
    assert all(sims.zoho.deal(deal)["SI_Project_ID"] == project_guid(deal) for deal in deals)
    with closing(sqlite3.connect(ctx.store.path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
