"""What the read side and the planner make of odd input: wrong clocks, rows without ids, keys that could
collide, SI values that recover, projects SI archives or deletes (issues 9 and 13)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from reconciler import keys
from reconciler.read import CURSOR_KEY, LAST_FULL_KEY, ZOHO_SKEW_KEY
from reconciler.render import status_text
from reconciler.sim.harness import SimPair
from reconciler.status import collect_status
from tests.conftest import cycle
from tests.test_convergence_cases import linked, notes

FOUR_YEARS = 4 * 365 * 86400.0


def test_a_cycle_run_with_the_clock_years_ahead_does_not_blind_later_cycles(sims: SimPair, make_ctx):
    """A bad RTC before NTP: one cycle with the clock 4 years ahead. Once the clock is right again the
    future cursor and last-full time are reset, the next cycle is full, and new work is read."""
    ctx = make_ctx(sims)
    linked(sims, ctx)
    ctx.clock = lambda: time.time() + FOUR_YEARS
    assert cycle(ctx, full=True).exit_code == 0
    ahead = datetime.fromtimestamp(time.time() + FOUR_YEARS / 2, UTC)
    ctx.store.set_state(CURSOR_KEY, ahead.isoformat())  # as an older version derived it from our clock
    ctx.clock = time.time
    late = sims.zoho.add_deal(Deal_Name="Flagged later", Account_Name="Acme", Send_to_SI=True)

    report = cycle(ctx)

    assert report.mode == "full" and report.exit_code == 0, report.summary()
    assert sims.zoho.deal(late).get("SI_Project_ID")
    assert float(ctx.store.get_state(LAST_FULL_KEY) or 0) <= time.time()
    cursor = datetime.fromisoformat(ctx.store.get_state(CURSOR_KEY) or "")
    assert cursor <= datetime.now(UTC) + timedelta(minutes=1)
    assert cycle(ctx).mode == "incremental"


def test_status_shows_how_far_our_clock_is_from_zohos(sims: SimPair, make_ctx):
    ctx = make_ctx(sims)
    base = datetime.now(UTC)
    sims.zoho.clock = lambda: base - timedelta(seconds=90)  # Zoho's servers 90 s behind us
    assert cycle(ctx).exit_code == 0
    skew = float(ctx.store.get_state(ZOHO_SKEW_KEY) or 0)
    assert 85 <= skew <= 120
    shown = status_text(collect_status(ctx.store, db="x", lock_held=False))
    assert "ahead of Zoho's" in shown


def test_a_coql_row_without_an_id_is_never_published(sims: SimPair, make_ctx):
    """A row with "id": null (or none at all) is reported and skipped before any write; no SI project
    is created for a deal "None"; it waits for a retry, then is parked; the other deals proceed."""
    ctx = make_ctx(sims)
    good = sims.zoho.add_deal(Deal_Name="Good", Account_Name="Acme", Send_to_SI=True)
    row = {"id": None, "Deal_Name": "Ghost", "Send_to_SI": True, "Account_Name.Account_Name": "Acme"}
    good_row = {"id": good, **{k: v for k, v in sims.zoho.deal(good).items() if k != "id"}}
    good_row["Account_Name.Account_Name"] = "Acme"
    body = {"data": [row, good_row], "info": {"count": 2, "more_records": False}}
    sims.zoho.inject("POST", "/crm/v8/coql", status=200, body=body)

    report = cycle(ctx)

    assert report.exit_code == 1 and "without a usable id" in report.message
    assert [p.get("IntegrationProjectId") for p in sims.si.projects.values()] == []
    assert sims.si.count("POST", "/Publish/Projects") == 1  # the good deal only
    waiting = [i for i in ctx.store.open_intents().values() if i.key.startswith("read:message:zoho-row")]
    assert len(waiting) == 1
    assert cycle(ctx).exit_code == 0  # the row is gone: its item is closed
    assert not [i for i in ctx.store.open_intents().values() if i.key.startswith("read:message:zoho-row")]


def test_change_order_states_whose_parts_contain_colons_never_share_a_note(sims: SimPair, make_ctx):
    """CO "1:2" Approved and CO "1" "2:Approved" were one key once; now two states, two notes."""
    ctx = make_ctx(sims)
    (deal,), (project,) = linked(sims, ctx)
    sims.si.add_change_order(project, "1:2", "First", status="Approved")
    sims.si.add_change_order(project, "1", "Second", status="2:Approved")
    assert cycle(ctx).exit_code == 0
    assert sorted(title for title, _ in notes(sims, deal)) == [
        "Change order 1: Second",
        "Change order 1:2: First",
    ]
    assert keys.note(project, "1:2", "Approved") != keys.note(project, "1", "2:Approved")
    assert keys.note(project, "7", "Approved") == f"note:{project}:7:Approved"  # plain keys unchanged


def test_a_parked_bad_si_value_clears_once_si_sends_a_good_one(sims: SimPair, make_ctx):
    ctx = make_ctx(sims)
    (deal,), (project,) = linked(sims, ctx)
    sims.si.edit_project(project, Price="12x")
    assert cycle(ctx).outcome == "parked"
    assert [i.key for i in ctx.store.parked()] == [keys.bad_project(project)]
    sims.si.edit_project(project, Price=500.0)

    assert cycle(ctx).exit_code == 0

    assert ctx.store.parked() == []
    assert sims.zoho.deal(deal)["Amount"] == 500


def test_a_project_archived_in_si_shows_on_the_deal_and_comes_back(sims: SimPair, make_ctx):
    ctx = make_ctx(sims)
    (deal,), (project,) = linked(sims, ctx)
    sims.si.archive_project(project)
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "Archived in SI"
    sims.si.edit_project(project, Price=777.0)
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["Amount"] == 777  # an archived project keeps syncing
    sims.si.unarchive_project(project)
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "In SI"


def test_a_project_deleted_in_si_shows_on_the_deal_and_takes_no_updates(
    sims: SimPair, make_ctx, mapping_file
):
    from tests.conftest import TWO_WAY_MAPPING

    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    (deal,), (project,) = linked(sims, ctx)
    sims.si.delete_project(project)
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "Deleted in SI"
    sims.zoho.edit_deal(deal, Closing_Date="2027-12-31")
    assert cycle(ctx).exit_code == 0
    assert sims.si.count("POST", "/Publish/Projects/Update") == 0
    assert cycle(ctx).exit_code == 0  # quiet: nothing to write while it stays deleted
