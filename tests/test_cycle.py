"""Cycle-level pins through the in-process simulators: creates, SI failures, stale exports, unticking."""

from __future__ import annotations

from tests.conftest import cycle


def test_three_flagged_deals_give_three_publishes_and_an_idle_rerun(sims, make_ctx):
    """3 flagged deals -> exactly 3 publishes, 3 deals carrying their project id; rerun makes no write."""
    ids = [
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True, Amount=100 * n)
        for n in range(1, 4)
    ]
    ctx = make_ctx(sims)
    first = cycle(ctx)
    assert first.exit_code == 0, first.message
    assert sims.si.count("POST", "/Publish/Projects") == 3
    assert {sims.zoho.deal(i)["SI_Project_ID"] for i in ids} == set(sims.si.projects) | {
        m.project_id for m in sims.si.publish_messages
    }
    writes_before = sims.zoho.count("PUT", "/crm/v8/Deals") + sims.si.count("POST", "/Publish")
    again = cycle(ctx)
    assert again.exit_code == 0
    assert sims.zoho.count("PUT", "/crm/v8/Deals") + sims.si.count("POST", "/Publish") == writes_before


def test_failed_si_import_is_parked_and_retry_publishes_again(sims, make_ctx):
    """SI import failure -> deal says so, item parked; `retry` re-publishes with the same Guid, once."""
    deal = sims.zoho.add_deal(Deal_Name="Bad template", Account_Name="Acme", Send_to_SI=True)
    ctx = make_ctx(sims)
    assert cycle(ctx).exit_code == 0
    guid = sims.zoho.deal(deal)["SI_Project_ID"]
    sims.si.fail_next_import("Template 'Residentail' not found")
    sims.si.import_pending()
    failed = cycle(ctx)
    assert failed.outcome == "parked"
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "SI import failed: Template 'Residentail' not found"
    assert ctx.store.retry(f"publish:deal:{deal}") == 1
    assert cycle(ctx).exit_code == 0
    assert sims.si.count("POST", "/Publish/Projects") == 2
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "Queued for SI"
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "In SI"
    assert list(sims.si.projects) == [guid]


def test_an_si_update_that_si_fails_to_apply_is_parked_and_retry_sends_it_again(sims, make_ctx, mapping_file):
    """SI status 3 for our UpdateProject -> parked with SI's error; `retry` re-sends the same fields."""
    from tests.conftest import TWO_WAY_MAPPING

    deal = sims.zoho.add_deal(Deal_Name="Close date", Account_Name="Acme", Send_to_SI=True)
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    sims.zoho.edit_deal(deal, Closing_Date="2027-03-31")
    assert cycle(ctx).exit_code == 0
    updates = sims.si.count("POST", "/Publish/Projects/Update")
    assert updates == 1
    sims.si.fail_next_import("Project is checked out")
    sims.si.import_pending()
    parked = cycle(ctx)
    assert parked.outcome == "parked"
    [item] = [i for i in ctx.store.parked() if i.key.startswith("update:project:")]
    assert "Project is checked out" in (item.last_error or "")
    assert ctx.store.retry(item.key) == 1
    assert cycle(ctx).exit_code == 0
    assert sims.si.count("POST", "/Publish/Projects/Update") == updates + 1
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    project = sims.zoho.deal(deal)["SI_Project_ID"]
    assert str(sims.si.projects[project]["CloseDate"]).startswith("2027-03-31")


def test_an_export_published_before_si_imported_our_update_never_reverts_zoho(sims, make_ctx, mapping_file):
    """Our Name update imported by SI, then an older export arrives: stale, Zoho keeps the new name."""
    from tests.conftest import TWO_WAY_MAPPING

    deal = sims.zoho.add_deal(Deal_Name="Old name", Account_Name="Acme", Send_to_SI=True)
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    project = sims.zoho.deal(deal)["SI_Project_ID"]
    sims.zoho.edit_deal(deal, Deal_Name="New name")
    assert cycle(ctx).exit_code == 0  # sends Name to SI
    sims.si.export(project)  # SI exports before importing our update: it still says "Old name"
    sims.si.import_pending(export=False)  # then imports it, without a fresh export yet
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["Deal_Name"] == "New name"
    sims.si.export(project)  # now SI exports its current state: our name, the echo
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["Deal_Name"] == "New name"
    assert sims.si.projects[project]["Name"] == "New name"
    sims.si.edit_project(project, Name="Renamed in SI")  # and SI's own later edit is a real change
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["Deal_Name"] == "Renamed in SI"


def test_exports_of_an_unticked_deal_are_acknowledged_not_synced(sims, make_ctx):
    """Unticked deal still re-read in the look-back window: its SI export is acked and nothing written."""
    deal = sims.zoho.add_deal(Deal_Name="Unticked", Account_Name="Acme", Send_to_SI=True, Amount=500)
    ctx = make_ctx(sims)
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    project = sims.zoho.deal(deal)["SI_Project_ID"]
    sims.zoho.edit_deal(deal, Send_to_SI=False)
    assert cycle(ctx).exit_code == 0
    sims.si.edit_project(project, Price=999)
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["Amount"] == 500
    assert not [m for m in sims.si.export_messages if not m.imported]


def test_an_unknown_project_adopted_by_a_deal_leaves_the_unknown_list(sims, make_ctx):
    """SI project no deal claims is reported; once a deal names it, it is linked and no longer 'unknown'."""
    project = sims.si.add_unknown_project(Name="Made in SI", Client="Acme")
    ctx = make_ctx(sims)
    assert cycle(ctx).exit_code == 0
    assert [u["project_id"] for u in ctx.store.unknown_projects()] == [project]
    deal = sims.zoho.add_deal(
        Deal_Name="Made in SI", Account_Name="Acme", Send_to_SI=True, SI_Project_ID=project
    )
    sims.si.edit_project(project, Price=750)
    assert cycle(ctx).exit_code == 0
    assert ctx.store.unknown_projects() == []
    assert ctx.store.links()[deal].project_id == project
    assert sims.si.count("POST", "/Publish/Projects") == 0
