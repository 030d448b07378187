"""The pure planner's newer decisions: creates that carry Zoho's values, resumes, message ids, adoption,
SI's archived and deleted projects, reports kept while a pair does not sync, and failed reads."""

from __future__ import annotations

from dataclasses import replace

from reconciler import keys
from reconciler.model import (
    AddNote,
    CreateProject,
    Defer,
    IntentState,
    Park,
    PublishOutcome,
    UpdateDeal,
    UpdateProject,
    World,
)
from reconciler.plan import QUEUED, plan, update_message_id
from reconciler.plan.needs import read_needs
from tests.test_plan import MAPPING, agreed, deal, export, link, linked_deal, linked_world, of, only


def test_a_create_records_what_the_publish_sent_as_sis_side_of_the_snapshot() -> None:
    create = only(plan(World(deals=[deal("D1")]), MAPPING), CreateProject)
    assert create.si_values == {"Deal_Name": "Kitchen remodel", "Closing_Date": "2026-03-01"}
    assert create.record == {"id": "D1", "SI_Project_ID": create.guid, "SI_Sync_Status": QUEUED}


def test_a_resumed_create_writes_back_and_keeps_the_snapshot_of_what_was_published() -> None:
    """The publish happened (the intent holds the project id); the deal was edited since: the resume only
    writes back, and its snapshot is the one recorded at publish time, so the edit is a change later."""
    first = only(plan(World(deals=[deal("D1")]), MAPPING), CreateProject)
    payload = {
        "guid": first.guid,
        "body": dict(first.body),
        "zoho_values": dict(first.zoho_values),
        "si_values": dict(first.si_values),
        "zoho_hash_after": first.zoho_hash_after,
        "record": dict(first.record),
    }
    intent = IntentState(
        first.key,
        "create",
        "pending",
        payload=payload,
        remote={"project_id": "P1", "message_id": "m"},
        deal_id="D1",
    )
    edited = deal("D1", Closing_Date="2026-09-09", SI_Project_ID=None)
    world = World(
        deals=[edited],
        links={"D1": link(message_id="m", publish_status="pending")},
        intents={first.key: intent},
    )
    resumed = only(plan(world, MAPPING), CreateProject)
    assert resumed.published and resumed.project_id == "P1"
    assert resumed.si_values["Closing_Date"] == "2026-03-01"
    assert resumed.zoho_values["Closing_Date"] == "2026-03-01"
    assert resumed.record["SI_Project_ID"] == "P1"


def test_a_resend_after_a_crash_keeps_its_message_id_and_a_new_value_gets_a_new_one() -> None:
    world = linked_world(linked_deal(Closing_Date="2026-04-15"))
    first = only(plan(world, MAPPING), UpdateProject)
    assert first.message_id == update_message_id("P1", 1, first.input_hash)
    crashed = IntentState(
        first.key, "update_project", "pending", input_hash=first.input_hash, payload={"message_id": "sent-id"}
    )
    again = only(plan(replace(world, intents={first.key: crashed}), MAPPING), UpdateProject)
    assert again.message_id == "sent-id"
    other = linked_world(linked_deal(Closing_Date="2026-05-15"), intents={first.key: crashed})
    assert only(plan(other, MAPPING), UpdateProject).message_id not in ("sent-id", first.message_id)


def test_the_same_value_later_is_a_new_message() -> None:
    """A -> B -> A: the snapshot's update counter makes the third message id differ from the first."""
    world = linked_world(linked_deal(Closing_Date="2026-04-15"))
    first = only(plan(world, MAPPING), UpdateProject)
    later = replace(world.snapshots["D1"], updates=2)
    third = only(plan(replace(world, snapshots={"D1": later}), MAPPING), UpdateProject)
    assert third.input_hash == first.input_hash and third.message_id != first.message_id


def test_adopting_a_project_si_does_not_know_is_parked() -> None:
    p = plan(World(deals=[linked_deal("D1", "P-made-up")]), MAPPING)
    park = only(p, Park)
    assert park.key == keys.mislinked("D1") and "SI does not know" in park.message
    confirmed = plan(World(deals=[linked_deal("D1", "P7")], si_projects=frozenset({"P7"})), MAPPING)
    assert of(confirmed, Park) == []


def test_adopting_a_project_another_deal_owns_is_parked_naming_both_deals() -> None:
    world = World(deals=[linked_deal("D2", "P1")], links={"D1": link()}, si_projects=frozenset({"P1"}))
    park = only(plan(world, MAPPING), Park)
    assert "D2" in park.message and "D1" in park.message


def test_an_archived_project_shows_on_the_deal_and_keeps_syncing() -> None:
    p = plan(linked_world(None, export("P1", 2000, Price=300, Archived=True)), MAPPING)
    update = only(p, UpdateDeal)
    assert update.record == {"id": "D1", "Amount": 300, "SI_Sync_Status": "Archived in SI"}
    (settle,) = p.settles
    assert settle.link is not None and settle.link.si_state == "archived"


def test_a_deleted_project_shows_on_the_deal_and_takes_no_updates() -> None:
    world = linked_world(linked_deal(Closing_Date="2026-07-07"), export("P1", 2000, Deleted=True))
    p = plan(world, MAPPING)
    assert of(p, UpdateProject) == []
    assert only(p, UpdateDeal).record == {"id": "D1", "SI_Sync_Status": "Deleted in SI"}
    shown = deal("D1", SI_Project_ID="P1", Closing_Date="2026-07-07", SI_Sync_Status="Deleted in SI")
    again = [export("P1", 3000, Deleted=False)]
    restored = plan(
        replace(world, deals=[shown], exports=again, links={"D1": link(si_state="deleted")}), MAPPING
    )
    assert only(restored, UpdateDeal).record["SI_Sync_Status"] == "In SI"
    assert only(restored, UpdateProject).fields == ((6, "2026-07-07"),)


def test_reports_acknowledged_while_a_pair_is_stopped_are_applied_when_it_syncs_again() -> None:
    stopped = World(
        exports=[export("P1", 2000, Price=640)], links={"D1": link(active=False, inactive_reason="x")}
    )
    (settle,) = plan(stopped, MAPPING).settles
    assert settle.held == {"Amount": ["640", 2000]}
    snap = replace(agreed(linked_deal()), held=settle.held)
    reticked = World(deals=[linked_deal()], links={"D1": link(active=False)}, snapshots={"D1": snap})
    p = plan(reticked, MAPPING)
    assert only(p, UpdateDeal).record == {"id": "D1", "Amount": 640}
    (settle,) = p.settles
    assert settle.link is not None and settle.link.active


def test_unreadable_messages_are_deferred_then_parked_and_never_acknowledged() -> None:
    bad = replace(export("P1", 2000, co="1", COStatus="Pending"), detailed=False, problem="details: 404")
    world = linked_world(None, bad, export("P1", 1500, Price=3))
    p = plan(world, MAPPING)
    defer = only(p, Defer)
    assert defer.key == keys.unreadable_export("P1") and "msg-P1-2000" in defer.message
    assert [a.message_id for a in p.acks()] == ["msg-P1-1500"]  # the readable base message only
    tired = IntentState(defer.key, "read", "pending", attempts=keys.MAX_ATTEMPTS - 1)
    assert only(plan(replace(world, intents={defer.key: tired}), MAPPING), Park).key == defer.key


def test_a_lost_status_of_our_update_is_deferred_while_the_others_resolve() -> None:
    snap = replace(
        agreed(linked_deal()), pending={"Deal_Name": {"value": "x", "message_id": "upd", "stale": []}}
    )
    world = linked_world(linked_deal(), snapshot=snap, status_errors={"upd": "HTTP 404"})
    assert only(plan(world, MAPPING), Defer).key == keys.lost_status("upd")
    resolved = replace(world, status_errors={}, publish_outcomes={"upd": PublishOutcome("upd", 2, None, 5)})
    assert of(plan(resolved, MAPPING), Defer) == []


def test_read_needs_follow_this_cycles_deals_not_the_store() -> None:
    reticked = linked_deal("D1", "P1")
    unticked = linked_deal("D2", "P2", Send_to_SI=False)
    needs = read_needs(
        [reticked, unticked, linked_deal("D3", "P9")],
        {"D1": link(active=False), "D2": link("D2", "P2")},
        MAPPING,
    )
    assert needs.active == {"P1", "P9"}
    assert needs.adopt == {"P9"}


def test_a_note_value_with_no_single_text_form_is_shown_empty_and_named() -> None:
    odd = export("P1", 2000, co="4", COName={"text": "Rack"}, COStatus="Pending")
    note = only(plan(linked_world(None, odd), MAPPING), AddNote)
    assert note.title == "Change order 4: "
    assert note.blanked == ("COName",)
