"""Issue #3, change-order notes: one note per change order and status, never twice, over real HTTP."""

from __future__ import annotations

import pytest

from tests.conftest import TWO_WAY_MAPPING, cycle, run_cli
from tests.e2e.helpers import linked_three, write_counts


@pytest.fixture
def mapping(mapping_file):
    return mapping_file(TWO_WAY_MAPPING)


@pytest.fixture
def ctx(served_sims, make_ctx, mapping):
    return make_ctx(served_sims, mapping)


def ok(ctx):
    """Run one cycle that must succeed."""
    report = cycle(ctx)
    assert report.exit_code == 0, report.message
    return report


@pytest.fixture
def linked(served_sims, ctx):
    """Three deals created in SI and imported there: (deal ids, project ids)."""
    return linked_three(served_sims, lambda: ok(ctx))


def _notes(sims, deal_id):
    return [(n["Note_Title"], n["Note_Content"].split("\n\n")[0]) for n in sims.zoho.notes_for(deal_id)]


def test_each_change_order_state_gives_exactly_one_note(served_sims, ctx, linked, mapping, tmp_path):
    """CO 1 pending -> 1 note, rerun none; CO 1 approved -> 1 more; CO 2 -> 1 more: 3 notes (run-once)."""
    sims = served_sims
    deals, projects = linked
    env = sims.environment(tmp_path / "reconciler.db", mapping)

    sims.si.add_change_order(projects[0], 1, "Outdoor speakers", status="Pending", price=1450.0)
    run_cli(["run-once"], env, tmp_path, check=True)
    assert _notes(sims, deals[0]) == [
        ("Change order 1: Outdoor speakers", "Status: Pending. Type: External. Price: 1450.0.")
    ]
    writes = write_counts(sims)
    run_cli(["run-once"], env, tmp_path, check=True)
    assert write_counts(sims) == writes

    sims.si.set_change_order_status(projects[0], 1, "Approved")
    run_cli(["run-once"], env, tmp_path, check=True)
    assert len(sims.zoho.notes_for(deals[0])) == 2

    sims.si.add_change_order(projects[0], 2, "Rack upgrade", status="Pending", type="Internal", price=320.0)
    run_cli(["run-once"], env, tmp_path, check=True)
    writes = write_counts(sims)
    run_cli(["run-once"], env, tmp_path, check=True)

    assert write_counts(sims) == writes
    assert _notes(sims, deals[0]) == [
        ("Change order 1: Outdoor speakers", "Status: Pending. Type: External. Price: 1450.0."),
        ("Change order 1: Outdoor speakers", "Status: Approved. Type: External. Price: 1450.0."),
        ("Change order 2: Rack upgrade", "Status: Pending. Type: Internal. Price: 320.0."),
    ]
    assert sims.zoho.notes_for(deals[1]) == [] and sims.zoho.notes_for(deals[2]) == []
    assert sims.zoho.deal(deals[0])["CO_Number"] == "2"


def test_a_change_order_price_does_not_become_the_deal_amount(served_sims, ctx, linked):
    """A change-order export's Price is the CO's price: the deal keeps the project price."""
    sims = served_sims
    deals, projects = linked
    sims.si.edit_project(projects[0], Price=20000.0)
    ok(ctx)

    sims.si.add_change_order(projects[0], 1, "Extra zone", price=750.0)
    ok(ctx)

    assert sims.zoho.deal(deals[0])["Amount"] == 20000
    assert len(sims.zoho.notes_for(deals[0])) == 1


def test_a_re_export_of_the_same_state_adds_no_note(served_sims, ctx, linked):
    """SI exporting change order 1 again, same status, after its note -> no second note."""
    sims = served_sims
    deals, projects = linked
    sims.si.add_change_order(projects[0], 1, "Outdoor speakers")
    ok(ctx)

    sims.si.export(projects[0], 1)
    ok(ctx)

    assert len(sims.zoho.notes_for(deals[0])) == 1


def test_two_status_changes_between_polls_give_a_note_each(served_sims, ctx, linked):
    """CO 1 added and approved before the next poll: both states get their note, in order."""
    sims = served_sims
    deals, projects = linked
    sims.si.add_change_order(projects[1], 1, "Lighting scene", status="Pending", price=80.0)
    sims.si.set_change_order_status(projects[1], 1, "Approved")

    ok(ctx)

    assert [body for _, body in _notes(sims, deals[1])] == [
        "Status: Pending. Type: External. Price: 80.0.",
        "Status: Approved. Type: External. Price: 80.0.",
    ]
    ok(ctx)
    assert len(sims.zoho.notes_for(deals[1])) == 2


def test_a_lost_note_answer_is_not_posted_twice(served_sims, ctx, linked):
    """Zoho stores the note but the answer is lost (500): the next cycle finds it and posts nothing."""
    sims = served_sims
    deals, projects = linked
    sims.si.add_change_order(projects[2], 1, "Projector swap", price=210.0)
    sims.zoho.inject("POST", "/crm/v8/Notes", status=500, before=False)

    first = cycle(ctx)

    assert first.exit_code == 1  # left for the next cycle
    assert len(sims.zoho.notes_for(deals[2])) == 1
    posts = sims.zoho.count("POST", "/crm/v8/Notes")
    ok(ctx)
    assert sims.zoho.count("POST", "/crm/v8/Notes") == posts
    assert len(sims.zoho.notes_for(deals[2])) == 1
    assert all(m.imported for m in sims.si.export_messages if m.project_id == projects[2])
    writes = write_counts(sims)
    ok(ctx)
    assert write_counts(sims) == writes
