"""The interleavings that once lost data silently (issue 8), and the plan that once lied (issue 14).

Each test drives whole cycles against the simulators and checks what a user would: the deal's fields,
SI's project, the notes, the exit code and what ``status`` shows. Each failed on the code before the fix.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from reconciler import keys
from reconciler.context import Context
from reconciler.cycle import CycleOptions, run_cycle
from reconciler.model import UpdateProject
from reconciler.sim.harness import SimPair
from reconciler.status import collect_status
from tests.conftest import DEFAULT_MAPPING, TWO_WAY_MAPPING, cycle


def linked(sims: SimPair, ctx: Context, n: int = 1, **fields: Any) -> tuple[list[str], list[str]]:
    """``n`` flagged deals, created in SI, imported and in sync; returns (deals, projects)."""
    deals = [
        sims.zoho.add_deal(
            Deal_Name=f"Deal {i}", Account_Name=f"Client {i}", Send_to_SI=True, Amount=100, **fields
        )
        for i in range(n)
    ]
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    return deals, [str(sims.zoho.deal(d)["SI_Project_ID"]) for d in deals]


def notes(sims: SimPair, deal: str) -> list[tuple[str, str]]:
    return [(n["Note_Title"], n["Note_Content"].split("\n\n")[0]) for n in sims.zoho.notes_for(deal)]


# ---- 1. a re-tick and an SI change in one cycle ------------------------------------------------------------


def test_reticked_deal_gets_si_changes_and_real_notes_in_the_same_cycle(sims, make_ctx):
    """Unticked, then ticked again in the cycle that also brings SI's new price and a change order's new
    state: the price reaches Zoho and the note carries the change order's real name and status."""
    ctx = make_ctx(sims)
    (deal,), (project,) = linked(sims, ctx)
    sims.si.add_change_order(project, 1, "Extra speakers", status="Pending")
    assert cycle(ctx).exit_code == 0
    sims.zoho.edit_deal(deal, Send_to_SI=False)
    assert cycle(ctx).exit_code == 0
    assert collect_status(ctx.store, db="", lock_held=False)["stopped"][0]["deal_id"] == deal

    sims.zoho.edit_deal(deal, Send_to_SI=True)
    sims.si.edit_project(project, Price=2500.0, Hours=12)
    sims.si.set_change_order_status(project, 1, "Rejected")
    report = cycle(ctx)

    assert report.exit_code == 0, report.summary()
    assert sims.zoho.deal(deal)["Amount"] == 2500
    assert sims.zoho.deal(deal)["Labor_Hours"] == 12
    assert notes(sims, deal) == [
        ("Change order 1: Extra speakers", "Status: Pending. Type: External. Price: 0.0."),
        ("Change order 1: Extra speakers", "Status: Rejected. Type: External. Price: 0.0."),
    ]
    assert collect_status(ctx.store, db="", lock_held=False)["stopped"] == []


# ---- 2. values present at create ---------------------------------------------------------------------------


def test_a_zoho_owned_value_present_at_create_reaches_si(sims, make_ctx, mapping_file):
    """Closing_Date -> CloseDate (zoho_to_si, not under [create]) is in SI once the project exists."""
    deal = sims.zoho.add_deal(
        Deal_Name="Dated", Account_Name="Acme", Send_to_SI=True, Closing_Date="2027-05-31"
    )
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    project = sims.zoho.deal(deal)["SI_Project_ID"]
    assert str(sims.si.projects[project]["CloseDate"]).startswith("2027-05-31")
    assert cycle(ctx).exit_code == 0
    assert sims.si.count("POST", "/Publish/Projects/Update") == 0  # sent with the publish, not after


# ---- 3. newly mapped fields and `reconcile --deep` ---------------------------------------------------------

CUSTOM = """
[[fields]]
zoho = "SI_Custom_1"
si = "CustomField1"
direction = "si_to_zoho"
"""

STAGE_BOTH = """
[[fields]]
zoho = "Stage"
si = "Progress"
direction = "both"
on_conflict = "zoho_wins"
"""


def _with(extra: str, mapping_file: Callable[[str], Path]) -> Path:
    return mapping_file(DEFAULT_MAPPING.read_text(encoding="utf-8") + textwrap.dedent(extra))


def test_a_newly_mapped_si_field_is_backfilled_by_a_deep_reconcile(sims, make_ctx, mapping_file, tmp_path):
    """SI's CustomField1 was exported (and acknowledged) before the field was mapped: `reconcile --deep`
    backfills it; a plain full cycle cannot (SI sends nothing new)."""
    ctx = make_ctx(sims)
    deals, projects = linked(sims, ctx, 2)
    sims.si.edit_project(projects[0], CustomField1="Rack A")
    sims.si.edit_project(projects[1], CustomField1="Rack B")
    assert cycle(ctx).exit_code == 0
    ctx = make_ctx(sims, _with(CUSTOM, mapping_file))
    assert cycle(ctx, full=True).exit_code == 0
    assert [sims.zoho.deal(d).get("SI_Custom_1") for d in deals] == [None, None]

    preview = run_cycle(ctx, CycleOptions(deep=True, dry_run=True))
    assert preview.report.exit_code == 2 and preview.plan is not None and preview.plan.writes() == 2
    result = run_cycle(ctx, CycleOptions(deep=True))
    assert result.report.exit_code == 0, result.report.summary()
    assert [sims.zoho.deal(d).get("SI_Custom_1") for d in deals] == ["Rack A", "Rack B"]
    assert run_cycle(ctx, CycleOptions(deep=True, dry_run=True)).report.exit_code == 0


def test_a_new_both_field_already_equal_writes_nothing(sims, make_ctx, mapping_file):
    """Adding Stage <-> Progress, already equal on every pair: neither a full cycle nor a deep reconcile
    sends an SI update (SI's value is unknown to the first, equal for the second)."""
    ctx = make_ctx(sims)
    _, projects = linked(sims, ctx, 3, Stage="Design")
    for project in projects:
        sims.si.edit_project(project, Progress="Design")
    assert cycle(ctx).exit_code == 0
    ctx = make_ctx(sims, _with(STAGE_BOTH, mapping_file))
    puts = sims.zoho.count("PUT", "/crm/v8/Deals")
    for options in (CycleOptions(full=True), CycleOptions(deep=True)):
        report = run_cycle(ctx, options).report
        assert report.exit_code == 0, report.summary()
    assert sims.si.count("POST", "/Publish/Projects/Update") == 0
    assert sims.zoho.count("PUT", "/crm/v8/Deals") == puts


# ---- 4. one lost message status ----------------------------------------------------------------------------


def test_a_lost_publish_status_holds_only_its_own_deal(sims, make_ctx):
    """SI answers 404 for one message's status: the other deal is confirmed; the lost one is retried, then
    parked (shown in status), and never blocks anyone."""
    ctx = make_ctx(sims)
    deals = [sims.zoho.add_deal(Deal_Name=f"D{i}", Account_Name="Acme", Send_to_SI=True) for i in range(2)]
    assert cycle(ctx).exit_code == 0
    lost = ctx.store.links()[deals[0]].message_id
    sims.si.import_pending(export=False)
    sims.si.publish_messages = [m for m in sims.si.publish_messages if m.id != lost]  # purged: SI answers 404
    outcomes = [cycle(ctx).outcome for _ in range(keys.MAX_ATTEMPTS)]
    assert outcomes == ["failed"] * (keys.MAX_ATTEMPTS - 1) + ["parked"]
    assert sims.zoho.deal(deals[1])["SI_Sync_Status"] == "In SI"
    assert sims.zoho.deal(deals[0])["SI_Sync_Status"] == "Queued for SI"
    (parked,) = ctx.store.parked()
    assert parked.key == keys.lost_status(str(lost)) and deals[0] in (parked.last_error or "")
    assert cycle(ctx).exit_code == 0  # parked: quiet, and not asked about again


# ---- 5. an unreadable change-order detail ------------------------------------------------------------------


def test_an_unreadable_change_order_is_never_noted_empty_nor_skipped(sims, make_ctx):
    """GetProjectByMessageId fails for an older state: no note with empty fields, no acknowledgement,
    exit 1 and a visible item; once SI answers, both states get their real notes."""
    ctx = make_ctx(sims)
    (deal,), (project,) = linked(sims, ctx)
    sims.si.add_change_order(project, 2, "Rack upgrade", status="Pending")
    sims.si.set_change_order_status(project, 2, "Approved")
    sims.si.inject("GET", "/Subscribe/Projects/GetProjectByMessageId", kind="malformed", times=-1)
    sims.si.edit_project(project, Price=950.0)  # a base-project message in the same poll
    report = cycle(ctx)
    assert report.exit_code == 1 and "cannot be read" in report.message
    assert notes(sims, deal) == []
    assert sims.zoho.deal(deal)["Amount"] == 950  # the readable message is processed ...
    unread = [m for m in sims.si.export_messages if m.project_id == project and not m.imported]
    assert {m.co_number for m in unread} == {"2"}  # ... and acknowledged alone: never a change order
    assert sims.si.count("PUT", "/Subscribe/Projects/MarkAsImportedByMessageId") >= 1
    by_project = [r for r in sims.si.requests if r.path.lower() == "/subscribe/projects/markasimported"]
    assert by_project == []  # never the per-project form, whose reach on change orders is undocumented
    assert any(i.key == keys.unreadable_export(project) for i in ctx.store.open_intents().values())
    sims.si._faults.clear()
    assert cycle(ctx).exit_code == 0
    assert [title for title, _ in notes(sims, deal)] == ["Change order 2: Rack upgrade"] * 2
    assert [body for _, body in notes(sims, deal)] == [
        "Status: Pending. Type: External. Price: 0.0.",
        "Status: Approved. Type: External. Price: 0.0.",
    ]


# ---- 6. A -> B -> A ----------------------------------------------------------------------------------------


def test_going_back_to_an_earlier_value_is_a_new_message(sims, make_ctx, mapping_file):
    """Closing_Date A, then B, then A again: three updates with three MessageIds; SI ends at A."""
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    (deal,), (project,) = linked(sims, ctx)
    for date in ("2027-01-31", "2027-02-28", "2027-01-31"):
        sims.zoho.edit_deal(deal, Closing_Date=date)
        assert cycle(ctx).exit_code == 0
        sims.si.import_pending(export=False)
        assert cycle(ctx).exit_code == 0
    updates = [m for m in sims.si.publish_messages if m.type_id == 12]
    assert len({m.id for m in updates}) == 3
    assert str(sims.si.projects[project]["CloseDate"]).startswith("2027-01-31")


# ---- 7. a resumed create and the edits made meanwhile ------------------------------------------------------


def test_edits_made_while_a_create_waited_for_its_write_back_reach_si(sims, make_ctx, mapping_file):
    """The write-back fails (Zoho 503) after the publish; sales then edits the date and the name. SI gets
    both, and the deal's new name is never reverted to SI's old one."""
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING.replace('"manual"', '"zoho_wins"')))
    deal = sims.zoho.add_deal(Deal_Name="Old name", Account_Name="Acme", Send_to_SI=True)
    sims.zoho.inject("PUT", "/crm/v8/Deals", status=503, times=5)
    assert cycle(ctx).exit_code == 1
    sims.zoho.edit_deal(deal, Closing_Date="2027-09-30", Deal_Name="New name")
    for _ in range(4):
        cycle(ctx)
        sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    project = str(sims.zoho.deal(deal)["SI_Project_ID"])
    assert sims.zoho.deal(deal)["Deal_Name"] == "New name"
    assert sims.si.projects[project]["Name"] == "New name"
    assert str(sims.si.projects[project]["CloseDate"]).startswith("2027-09-30")


# ---- 8. a partial full read --------------------------------------------------------------------------------


def test_a_full_read_returning_one_of_twenty_linked_deals_is_refused(sims, make_ctx):
    """SI changes all 20 prices; a full read returns 1 deal: refused with the numbers, nothing
    acknowledged; once Zoho answers fully, all 20 deals carry the new price."""
    ctx = make_ctx(sims)
    deals, projects = linked(sims, ctx, 20)
    for project in projects:
        sims.si.edit_project(project, Price=4321.0)
    one = {"data": [{"id": deals[0], **{k: v for k, v in sims.zoho.deal(deals[0]).items() if k != "id"}}]}
    one["info"] = {"count": 1, "more_records": False}
    acks = len(sims.si.acks)
    sims.zoho.inject("POST", "/crm/v8/coql", status=200, body=one)
    refused = cycle(ctx, full=True)
    assert refused.outcome == "refused"
    assert "returned 1 of the 20 linked deals (19 missing)" in refused.message
    assert len(sims.si.acks) == acks  # nothing acknowledged unprocessed
    assert collect_status(ctx.store, db="", lock_held=False)["stopped"] == []
    assert cycle(ctx, full=True).exit_code == 0
    assert [sims.zoho.deal(d)["Amount"] for d in deals] == [4321] * 20


def test_a_cut_short_coql_read_fails_the_cycle_instead_of_losing_deals(sims, make_ctx):
    """Zoho announces more records, then the next page answers an empty 204: the read fails (nothing
    applied, nothing deactivated), and the next cycle brings every change."""
    ctx = make_ctx(sims)
    ctx.zoho.page_size = 5
    deals, projects = linked(sims, ctx, 12)
    for project in projects:
        sims.si.edit_project(project, Price=777.0)
    sims.zoho.inject("POST", "/crm/v8/coql", kind="empty204", skip=1)  # the second page answers 204
    report = cycle(ctx, full=True)
    assert report.exit_code == 1 and "cut short" in report.message
    assert collect_status(ctx.store, db="", lock_held=False)["stopped"] == []
    assert cycle(ctx, full=True).exit_code == 0
    assert [sims.zoho.deal(d)["Amount"] for d in deals] == [777] * 12


# ---- 9. `both`: an SI edit while our update waits ----------------------------------------------------------


def _both(policy: str) -> str:
    return TWO_WAY_MAPPING.replace('on_conflict = "manual"', f'on_conflict = "{policy}"')


def test_an_si_edit_while_our_update_waits_is_a_manual_conflict(sims, make_ctx, mapping_file):
    ctx = make_ctx(sims, mapping_file(_both("manual")))
    (deal,), (project,) = linked(sims, ctx)
    sims.zoho.edit_deal(deal, Deal_Name="Zoho name")
    assert cycle(ctx).exit_code == 0  # our rename is queued in SI
    sims.si.edit_project(project, Name="SI name")  # an SI user renames before SI imports ours
    report = cycle(ctx)
    assert report.outcome == "parked", report.summary()
    (conflict,) = collect_status(ctx.store, db="", lock_held=False)["conflicts"]
    assert (conflict["zoho"], conflict["si"]) == ("Zoho name", "SI name")
    assert sims.zoho.deal(deal)["Deal_Name"] == "Zoho name"


def test_an_si_edit_while_our_update_waits_wins_under_si_wins(sims, make_ctx, mapping_file):
    ctx = make_ctx(sims, mapping_file(_both("si_wins")))
    (deal,), (project,) = linked(sims, ctx)
    sims.zoho.edit_deal(deal, Deal_Name="Zoho name")
    assert cycle(ctx).exit_code == 0
    sims.si.edit_project(project, Name="SI name")
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    for _ in range(2):
        assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["Deal_Name"] == "SI name"
    assert sims.si.projects[project]["Name"] == "SI name"  # our queued rename did not win in the end


def test_an_si_edit_while_our_update_waits_loses_under_zoho_wins(sims, make_ctx, mapping_file):
    ctx = make_ctx(sims, mapping_file(_both("zoho_wins")))
    (deal,), (project,) = linked(sims, ctx)
    sims.zoho.edit_deal(deal, Deal_Name="Zoho name")
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending(export=False)  # SI imported ours before the user's edit ...
    sims.si.edit_project(project, Name="SI name")  # ... which we then see before the import's status
    for _ in range(3):
        assert cycle(ctx).exit_code == 0
        sims.si.import_pending()
    assert sims.zoho.deal(deal)["Deal_Name"] == "Zoho name"
    assert sims.si.projects[project]["Name"] == "Zoho name"


# ---- issue 14: the plan is complete ------------------------------------------------------------------------


def test_after_retry_plan_lists_the_requeued_write_and_exits_2(sims, make_ctx, mapping_file):
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    (deal,), (project,) = linked(sims, ctx)
    sims.zoho.edit_deal(deal, Closing_Date="2027-03-31")
    assert cycle(ctx).exit_code == 0
    sims.si.fail_next_import("Project is checked out")
    sims.si.import_pending()
    assert cycle(ctx).outcome == "parked"
    assert run_cycle(ctx, CycleOptions(dry_run=True)).report.exit_code == 0
    assert ctx.store.retry(keys.project_update(project)) == 1

    preview = run_cycle(ctx, CycleOptions(dry_run=True))

    assert preview.report.exit_code == 2
    assert preview.plan is not None
    (update,) = [a for a in preview.plan.actions if isinstance(a, UpdateProject)]
    assert update.fields == ((6, "2027-03-31"),)


def test_retry_all_beyond_max_writes_is_refused_like_any_plan(sims, make_ctx):
    """Four notes Zoho refused, re-queued with `retry --all` under RECONCILER_MAX_WRITES=1: refused."""
    ctx = make_ctx(sims, reconciler_max_writes=1)
    (deal,), (project,) = linked(sims, ctx)
    for number in range(1, 5):
        sims.si.add_change_order(project, number, f"Change {number}")
    refused = {"code": "INVALID_DATA", "details": {}, "message": "invalid data", "status": "error"}
    sims.zoho.inject("POST", "/crm/v8/Notes", status=400, body=refused)
    assert cycle(ctx, force=True).outcome == "parked"
    assert cycle(ctx).exit_code == 0  # parked notes: the change orders' messages are acknowledged
    assert len(ctx.store.parked()) == 4
    assert ctx.store.retry() == 4

    report = cycle(ctx)

    assert report.outcome == "refused" and "RECONCILER_MAX_WRITES=1" in report.message
    assert sims.zoho.notes_for(deal) == []
    assert cycle(ctx, expect=4).exit_code == 0
    assert len(sims.zoho.notes_for(deal)) == 4


def test_a_stop_that_cuts_a_retry_wait_short_ends_the_cycle_as_interrupted(sims, make_ctx):
    """SIGTERM while a publish waits to be retried: no traceback, the cycle is `interrupted`, and the
    rerun creates the project once."""
    ctx = make_ctx(sims)
    deal = sims.zoho.add_deal(Deal_Name="Stopped", Account_Name="Acme", Send_to_SI=True)
    original = sims.si.handle

    def stop_during(request: Any) -> Any:
        if request.url.path.endswith("/Publish/Projects"):
            ctx.stop.set()  # the stop arrives while the publish is retried after a 503
            sims.si.handle = original
            return httpx.Response(503, json={"Message": "busy"})
        return original(request)

    sims.si.handle = stop_during
    report = cycle(ctx)
    assert report.outcome == "interrupted", report.summary()
    ctx.stop.clear()
    assert cycle(ctx).exit_code == 0
    assert [p.get("IntegrationProjectId") for p in sims.si.projects.values()] == []  # queued, not imported
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    assert [p.get("IntegrationProjectId") for p in sims.si.projects.values()] == [deal]


def test_a_spent_cycle_budget_stops_the_calls_and_reports_overran(sims, make_ctx):
    ctx = make_ctx(sims, reconciler_cycle_budget=0.000001)
    sims.zoho.add_deal(Deal_Name="Late", Account_Name="Acme", Send_to_SI=True)
    report = cycle(ctx)
    assert report.outcome == "overran" and "budget" in report.message
    assert sims.si.count("POST", "/Publish/Projects") == 0
