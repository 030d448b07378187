"""The pure planner: plain data in (deals, SI exports, links, snapshots, intents), a Plan out."""

from __future__ import annotations

import gc
import tomllib
from dataclasses import replace
from typing import Any

import pytest

from reconciler.mapping import Mapping, parse_mapping
from reconciler.model import (
    Ack,
    AddNote,
    Conflict,
    CreateProject,
    Deal,
    IntentState,
    LinkState,
    Park,
    Plan,
    PublishOutcome,
    Settle,
    SiExport,
    Snapshot,
    UpdateDeal,
    UpdateProject,
)
from reconciler.plan import (
    QUEUED,
    World,
    canon_digest,
    note_reference,
    plan,
    project_guid,
    update_message_id,
    zoho_canon,
)
from tests.conftest import TWO_WAY_MAPPING

MAPPING = parse_mapping(tomllib.loads(TWO_WAY_MAPPING), source="two-way")


def mapping_with(old: str, new: str) -> Mapping:
    """TWO_WAY_MAPPING with one text substitution (e.g. another conflict policy)."""
    assert old in TWO_WAY_MAPPING
    return parse_mapping(tomllib.loads(TWO_WAY_MAPPING.replace(old, new)))


def deal(deal_id: str = "D1", **values: Any) -> Deal:
    """A flagged deal as COQL returns it (lookup name under its join column)."""
    base: dict[str, Any] = {
        "Send_to_SI": True,
        "Deal_Name": "Kitchen remodel",
        "Account_Name.Account_Name": "Acme Homes",
        "SI_Project_ID": None,
        "SI_Sync_Status": None,
        "Amount": 100,
        "Labor_Hours": 10,
        "Stage": "Qualification",
        "Closing_Date": "2026-03-01",
        "CO_Number": None,
    }
    base.update(values)
    return Deal(deal_id, base)


def linked_deal(deal_id: str = "D1", project_id: str = "P1", **values: Any) -> Deal:
    return deal(deal_id, SI_Project_ID=project_id, SI_Sync_Status="In SI", **values)


def export(
    project_id: str = "P1",
    ms: int = 1000,
    co: str | None = None,
    integration_id: str | None = "D1",
    **values: Any,
) -> SiExport:
    """One SI export message; values are folded to lower case as the client delivers them."""
    folded = {k.lower(): v for k, v in values.items()}
    folded.setdefault("id", project_id)
    if co is not None:
        folded.setdefault("conumber", co)
    return SiExport(project_id, integration_id, f"msg-{project_id}-{ms}", co, ms, folded)


def agreed(d: Deal, mapping: Mapping = MAPPING, **si_overrides: Any) -> Snapshot:
    """The snapshot of a pair that last agreed on the deal's current values."""
    canon = zoho_canon(d, mapping)
    fields = {f.zoho: canon[f.zoho] for f in mapping.fields}
    return Snapshot(d.id, canon_digest(canon), fields, {**fields, **si_overrides})


def link(deal_id: str = "D1", project_id: str = "P1", **kwargs: Any) -> LinkState:
    kwargs.setdefault("publish_status", "imported")
    return LinkState(deal_id, project_id, **kwargs)


def linked_world(
    d: Deal | None = None, *exports: SiExport, mapping: Mapping = MAPPING, **kwargs: Any
) -> World:
    """One linked, agreed pair (D1 <-> P1) plus whatever this poll brings."""
    d = d or linked_deal()
    snapshot = kwargs.pop("snapshot", None) or agreed(linked_deal(), mapping)
    return World(
        deals=[d],
        exports=list(exports),
        links={"D1": link()},
        snapshots={"D1": snapshot},
        **kwargs,
    )


def of(p: Plan, kind: type) -> list[Any]:
    return [a for a in p.actions if isinstance(a, kind)]


def only(p: Plan, kind: type) -> Any:
    found = of(p, kind)
    assert len(found) == 1, p.actions
    return found[0]


def writes_of(p: Plan) -> list[Any]:
    return of(p, UpdateDeal) + of(p, UpdateProject) + of(p, CreateProject)


# ---- create ----------------------------------------------------------------------------------------------


def test_flagged_unlinked_deal_becomes_a_create_with_our_guid() -> None:
    """A ticked deal without a project: CreateProject, Id = a Guid derived from the deal, deal id attached."""
    p = plan(World(deals=[deal("D1")]), MAPPING)
    create = only(p, CreateProject)
    assert create.key == "create:deal:D1"
    assert create.guid == project_guid("D1") == plan(World(deals=[deal("D1")]), MAPPING).actions[0].guid
    assert create.body == {
        "Name": "Kitchen remodel",
        "Client": "Acme Homes",
        "CloseDate": "2026-03-01T00:00:00",  # a zoho_to_si field with a value reaches SI with the project
        "Id": project_guid("D1"),
        "IntegrationProjectId": "D1",
    }
    assert project_guid("D1") != project_guid("D2")
    assert p.writes() == 1


def test_create_records_the_snapshot_the_write_back_will_produce() -> None:
    """zoho_hash_after is the hash of the deal once it carries its project id and 'Queued for SI'."""
    d = deal("D1")
    create = only(plan(World(deals=[d]), MAPPING), CreateProject)
    after = deal("D1", SI_Project_ID=create.guid, SI_Sync_Status=QUEUED)
    assert create.zoho_hash_after == canon_digest(zoho_canon(after, MAPPING))
    assert create.zoho_values["Amount"] == "100"


def test_create_uses_the_guid_an_earlier_attempt_recorded() -> None:
    """A resumed create re-sends the Guid stored in its intent, so SI updates instead of duplicating."""
    intent = IntentState("create:deal:D1", "create", "pending", payload={"guid": "earlier-guid"})
    create = only(plan(World(deals=[deal("D1")], intents={intent.key: intent}), MAPPING), CreateProject)
    assert create.guid == "earlier-guid"
    assert create.body["Id"] == "earlier-guid"


def test_create_adds_constants_from_the_mapping() -> None:
    """[create.constants] are sent with every new project."""
    m = mapping_with(
        '[[fields]]\nzoho = "Amount"',
        '[create.constants]\nTemplateName = "Residential"\n\n[[fields]]\nzoho = "Amount"',
    )
    create = only(plan(World(deals=[deal("D1")]), m), CreateProject)
    assert create.body["TemplateName"] == "Residential"


def test_unflagged_unlinked_deal_is_left_alone() -> None:
    """No tick, no project: nothing to do."""
    p = plan(World(deals=[deal("D1", Send_to_SI=False)]), MAPPING)
    assert p.actions == () and p.settles == ()


def test_create_without_client_is_parked_naming_deal_and_field() -> None:
    """A deal with no account name cannot become a project: Park naming the deal and the Zoho path."""
    p = plan(World(deals=[deal("D1", **{"Account_Name.Account_Name": None})]), MAPPING)
    park = only(p, Park)
    assert of(p, CreateProject) == []
    assert park.key == "create:deal:D1"
    assert park.deal_id == "D1"
    assert "deal D1" in park.message and "Account_Name.name" in park.message and "Client" in park.message
    assert p.writes() == 0


def test_parked_create_with_the_same_input_plans_nothing() -> None:
    """Once parked, an unchanged deal is not parked (or created) again every cycle."""
    d = deal("D1", **{"Account_Name.Account_Name": None})
    park = only(plan(World(deals=[d]), MAPPING), Park)
    parked = IntentState(park.key, "park", "parked", input_hash=park.input_hash)
    assert plan(World(deals=[d], intents={park.key: parked}), MAPPING).actions == ()


def test_parked_create_is_replanned_when_the_deal_changes() -> None:
    """Editing the deal changes its input hash: fixed -> CreateProject; still broken -> a new Park."""
    d = deal("D1", **{"Account_Name.Account_Name": None})
    park = only(plan(World(deals=[d]), MAPPING), Park)
    intents = {park.key: IntentState(park.key, "park", "parked", input_hash=park.input_hash)}
    fixed = plan(World(deals=[deal("D1")], intents=intents), MAPPING)
    assert only(fixed, CreateProject).deal_id == "D1"
    renamed = deal("D1", Deal_Name="Other", **{"Account_Name.Account_Name": None})
    again = only(plan(World(deals=[renamed], intents=intents), MAPPING), Park)
    assert again.input_hash != park.input_hash


def test_deal_carrying_a_project_id_is_adopted_not_created_again() -> None:
    """SI_Project_ID on the deal but no link in the store (store lost): adopt the link, no publish."""
    d = linked_deal("D1", "P7")
    p = plan(World(deals=[d], exports=[export("P7", 1000, Price=100)]), MAPPING)
    assert of(p, CreateProject) == []
    (settle,) = p.settles
    assert settle.link == LinkState("D1", "P7", publish_status="imported")
    assert p.unknown == ()
    assert settle.acks == (Ack("P7", None, 1000, "msg-P7-1000"),)


# ---- si_to_zoho ------------------------------------------------------------------------------------------


def test_unchanged_pair_plans_nothing() -> None:
    """Same deal as the snapshot, no SI message: no action and no settle."""
    p = plan(linked_world(), MAPPING)
    assert p.actions == () and p.settles == () and not p.has_changes


def test_si_change_updates_the_deal_with_zoho_typed_values() -> None:
    """A new SI price and progress: one UpdateDeal, number as a JSON number, progress mapped to stage."""
    p = plan(linked_world(None, export("P1", 2000, Price="12345.50", Progress="Approved")), MAPPING)
    update = only(p, UpdateDeal)
    assert update.key == "update:deal:D1"
    assert update.record == {"id": "D1", "Amount": 12345.5, "Stage": "Closed Won"}
    assert {c.field: (c.old, c.new) for c in update.changes} == {
        "Amount": ("100", "12345.5"),
        "Stage": ("Qualification", "Closed Won"),
    }
    assert of(p, UpdateProject) == []
    (settle,) = p.settles
    assert settle.action_keys == ("update:deal:D1",)
    assert settle.acks == (Ack("P1", None, 2000, "msg-P1-2000"),)


def test_whole_number_price_is_sent_as_an_integer() -> None:
    """SI's 250.0 reaches Zoho as 250 (a JSON number, not "250")."""
    update = only(plan(linked_world(None, export("P1", 2000, Price=250.0)), MAPPING), UpdateDeal)
    assert update.record["Amount"] == 250
    assert isinstance(update.record["Amount"], int)


def test_si_value_equal_to_the_deal_writes_nothing() -> None:
    """SI reporting what the deal already has is no change; the message is still acknowledged."""
    p = plan(linked_world(None, export("P1", 2000, Price="100.00", Progress="Qualification")), MAPPING)
    assert writes_of(p) == []
    (settle,) = p.settles
    assert settle.acks == (Ack("P1", None, 2000, "msg-P1-2000"),)


def test_our_own_write_does_not_echo_back() -> None:
    """After applying an UpdateDeal and its settle, the same values seen again plan nothing."""
    first = plan(linked_world(None, export("P1", 2000, Price=120)), MAPPING)
    (settle,) = first.settles
    snapshot = Snapshot(
        "D1", settle.zoho_hash or "", settle.zoho or {}, settle.si or {}, settle.pending or {}
    )
    after = linked_deal(Amount=120)
    assert plan(linked_world(after, snapshot=snapshot), MAPPING).actions == ()
    # The same export delivered again (its acknowledgement was lost) is not news either.
    again = plan(linked_world(after, export("P1", 2000, Price=120), snapshot=snapshot), MAPPING)
    assert writes_of(again) == []


def test_first_si_report_of_zero_or_nothing_is_a_baseline() -> None:
    """A new project's empty price (0 or null) never wipes the deal; a real first value is written."""
    d = linked_deal()
    known = agreed(d).si
    snapshot = replace(agreed(d), si={k: v for k, v in known.items() if k not in ("Amount", "Labor_Hours")})
    empty = plan(linked_world(d, export("P1", 2000, Price=0, Hours=None), snapshot=snapshot), MAPPING)
    assert writes_of(empty) == []
    (settle,) = empty.settles
    assert settle.si is not None and settle.si["Amount"] == "0"
    real = plan(linked_world(d, export("P1", 2000, Price=450), snapshot=snapshot), MAPPING)
    assert only(real, UpdateDeal).record == {"id": "D1", "Amount": 450}


def test_later_change_to_zero_is_written() -> None:
    """Once SI's value is known, a change to 0 is a real change."""
    update = only(plan(linked_world(None, export("P1", 2000, Price=0)), MAPPING), UpdateDeal)
    assert update.record == {"id": "D1", "Amount": 0}


def test_project_fields_come_from_the_newest_base_message() -> None:
    """Several base messages: the newest wins; a change order's Price is not the project's price."""
    p = plan(
        linked_world(
            None,
            export("P1", 3000, Price=300),
            export("P1", 1000, Price=100.5),
            export("P1", 4000, co="CO-1", Price=999, COStatus="Pending"),
        ),
        MAPPING,
    )
    update = only(p, UpdateDeal)
    assert update.record["Amount"] == 300
    (settle,) = p.settles
    assert set(settle.acks) == {
        Ack("P1", None, 1000, "msg-P1-1000"),
        Ack("P1", None, 3000, "msg-P1-3000"),
        Ack("P1", "CO-1", 4000, "msg-P1-4000"),
    }, "every message processed is acknowledged, each by its own id"


def test_change_order_fields_come_from_the_newest_change_order_message() -> None:
    """CO_Number follows the newest CO message; a later base message's null CONumber does not wipe it."""
    p = plan(
        linked_world(
            None,
            export("P1", 1000, co="CO-1", COStatus="Approved"),
            export("P1", 2000, co="CO-2", COStatus="Pending"),
            export("P1", 3000, Price=100, CONumber=None),
        ),
        MAPPING,
    )
    update = only(p, UpdateDeal)
    assert update.record == {"id": "D1", "CO_Number": "CO-2"}


def test_cost_is_a_project_field_not_a_change_order_field() -> None:
    """Cost (which starts with "co") is read from the base message, not from a change order."""
    m = mapping_with('zoho = "Amount"\nsi = "Price"', 'zoho = "Amount"\nsi = "Cost"')
    p = plan(
        linked_world(
            linked_deal(),
            export("P1", 1000, Cost=80),
            export("P1", 2000, co="CO-1", Cost=5, COStatus="Pending"),
            mapping=m,
            snapshot=agreed(linked_deal(), m),
        ),
        m,
    )
    assert only(p, UpdateDeal).record["Amount"] == 80


def test_bad_si_value_parks_that_project_only() -> None:
    """Price "12x": Park naming project and field; the other pair is still planned; both acked."""
    d2 = linked_deal("D2", "P2")
    world = World(
        deals=[linked_deal(), d2],
        exports=[export("P1", 1000, Price="12x"), export("P2", 1000, integration_id="D2", Price=200)],
        links={"D1": link(), "D2": link("D2", "P2")},
        snapshots={"D1": agreed(linked_deal()), "D2": agreed(d2)},
    )
    p = plan(world, MAPPING)
    park = only(p, Park)
    assert (park.key, park.deal_id, park.project_id) == ("si:project:P1", "D1", "P1")
    assert "P1" in park.message and "Price" in park.message and "12x" in park.message
    assert only(p, UpdateDeal).deal_id == "D2"
    assert {ack.project_id for ack in p.acks()} == {"P1", "P2"}


def test_bad_deal_value_parks_naming_deal_and_field() -> None:
    """A deal whose Amount is not a number is parked with the deal id and field; nothing else breaks."""
    p = plan(World(deals=[deal("D1", Amount="lots"), deal("D2")]), MAPPING)
    park = only(p, Park)
    assert park.key == "deal:D1"
    assert "deal D1" in park.message and "Amount" in park.message
    assert only(p, CreateProject).deal_id == "D2"


def test_bad_flag_value_parks_naming_deal_and_field() -> None:
    """A checkbox value that is not a boolean is reported against the deal and the flag field."""
    park = only(plan(World(deals=[deal("D1", Send_to_SI="maybe")]), MAPPING), Park)
    assert "deal D1" in park.message and "Send_to_SI" in park.message


# ---- zoho_to_si and pending SI updates --------------------------------------------------------------------


def test_zoho_close_date_change_updates_si_with_field_id_6() -> None:
    """A new Closing_Date goes to SI as ProjectFieldId 6 with the invariant date string."""
    p = plan(linked_world(linked_deal(Closing_Date="2026-04-15")), MAPPING)
    update = only(p, UpdateProject)
    assert update.key == "update:project:P1"
    assert update.fields == ((6, "2026-04-15"),)
    assert of(p, UpdateDeal) == []
    (settle,) = p.settles
    assert settle.pending == {
        "Closing_Date": {"value": "2026-04-15", "message_id": update.message_id, "stale": ["2026-03-01"]}
    }
    assert update.message_id == update_message_id("P1", 1, update.input_hash)
    assert settle.updates == 1
    assert settle.action_keys == ("update:project:P1",)


def test_si_change_of_a_zoho_to_si_field_is_reverted_in_si() -> None:
    """SI may not change a Zoho-owned field: no UpdateDeal for CloseDate, and SI gets Zoho's date back."""
    p = plan(linked_world(None, export("P1", 2000, CloseDate="2027-01-01T00:00:00")), MAPPING)
    assert of(p, UpdateDeal) == []
    assert only(p, UpdateProject).fields == ((6, "2026-03-01"),)


def _pending_world(*exports: SiExport) -> World:
    """Deal renamed in Zoho, our rename sent to SI and still waiting in SI's queue."""
    d = linked_deal(Deal_Name="New name")
    snap = agreed(d)
    snap = replace(
        snap,
        si={**snap.si, "Deal_Name": "New name"},
        pending={"Deal_Name": {"value": "New name", "message_id": "upd-1"}},
    )
    return linked_world(d, *exports, snapshot=snap)


def test_older_si_export_during_a_pending_update_does_not_revert_zoho() -> None:
    """An export still showing the old name while our update waits in SI is stale, not a change."""
    p = plan(_pending_world(export("P1", 2000, Name="Kitchen remodel")), MAPPING)
    assert writes_of(p) == [] and of(p, Conflict) == []
    (settle,) = p.settles
    assert settle.pending == {"Deal_Name": {"value": "New name", "message_id": "upd-1"}}
    assert settle.si is not None and settle.si["Deal_Name"] == "New name"


def test_echo_of_our_pending_update_clears_it() -> None:
    """SI exporting the value we sent ends the wait, and writes nothing."""
    p = plan(_pending_world(export("P1", 2000, Name="New name")), MAPPING)
    assert writes_of(p) == []
    (settle,) = p.settles
    assert settle.pending == {}


def test_resolved_publish_message_clears_its_pending_entry() -> None:
    """Once SI resolved our update message, the field no longer waits."""
    outcome = PublishOutcome("upd-1", 2)
    p = plan(replace(_pending_world(), publish_outcomes={"upd-1": outcome}), MAPPING)
    (settle,) = p.settles
    assert settle.pending == {}


# ---- both directions --------------------------------------------------------------------------------------


def _both_changed(mapping: Mapping, zoho_name: str, si_name: str) -> Plan:
    return plan(
        linked_world(
            linked_deal(Deal_Name=zoho_name),
            export("P1", 2000, Name=si_name),
            mapping=mapping,
            snapshot=agreed(linked_deal(), mapping),
        ),
        mapping,
    )


def test_both_sides_changed_to_the_same_value_is_no_conflict() -> None:
    """Zoho and SI both renamed to the same name: nothing to write, nothing to resolve."""
    p = _both_changed(MAPPING, "Same", "Same")
    assert p.actions == ()
    (settle,) = p.settles
    assert settle.zoho is not None and settle.zoho["Deal_Name"] == "Same"
    assert settle.si is not None and settle.si["Deal_Name"] == "Same"


def test_manual_conflict_writes_neither_side() -> None:
    """Different values on both sides under on_conflict = manual: a Conflict, no write anywhere."""
    p = _both_changed(MAPPING, "Zoho name", "SI name")
    conflict = only(p, Conflict)
    assert (conflict.key, conflict.field) == ("conflict:D1:Deal_Name", "Deal_Name")
    assert (conflict.zoho_value, conflict.si_value) == ("Zoho name", "SI name")
    assert writes_of(p) == []
    assert p.writes() == 0


def test_parked_conflict_stays_quiet_until_a_side_moves() -> None:
    """With the conflict parked and nothing new, the pair plans nothing; an edit resolves it."""
    first = _both_changed(MAPPING, "Zoho name", "SI name")
    conflict = only(first, Conflict)
    (settle,) = first.settles
    snapshot = Snapshot("D1", settle.zoho_hash or "", settle.zoho or {}, settle.si or {}, {})
    intents = {conflict.key: IntentState(conflict.key, "conflict", "parked", input_hash=conflict.input_hash)}
    quiet = plan(
        linked_world(linked_deal(Deal_Name="Zoho name"), snapshot=snapshot, intents=intents), MAPPING
    )
    assert quiet.actions == ()
    fixed = plan(
        linked_world(linked_deal(Deal_Name="SI name"), snapshot=snapshot, intents=intents),
        MAPPING,
    )
    assert writes_of(fixed) == []
    (resolved,) = fixed.settles
    assert resolved.resolved_keys == (conflict.key,)


def test_si_wins_overwrites_zoho() -> None:
    """on_conflict = si_wins: SI's value is written to the deal."""
    p = _both_changed(mapping_with('"manual"', '"si_wins"'), "Zoho name", "SI name")
    assert only(p, UpdateDeal).record == {"id": "D1", "Deal_Name": "SI name"}
    assert of(p, UpdateProject) == [] and of(p, Conflict) == []


def test_zoho_wins_overwrites_si() -> None:
    """on_conflict = zoho_wins: the deal's value is sent to SI (ProjectFieldId 1)."""
    p = _both_changed(mapping_with('"manual"', '"zoho_wins"'), "Zoho name", "SI name")
    assert only(p, UpdateProject).fields == ((1, "Zoho name"),)
    assert of(p, UpdateDeal) == [] and of(p, Conflict) == []


def test_one_sided_change_of_a_both_field_flows_the_other_way() -> None:
    """Only Zoho changed: to SI. Only SI changed: to Zoho."""
    to_si = plan(linked_world(linked_deal(Deal_Name="Renamed")), MAPPING)
    assert only(to_si, UpdateProject).fields == ((1, "Renamed"),)
    to_zoho = plan(linked_world(None, export("P1", 2000, Name="Renamed in SI")), MAPPING)
    assert only(to_zoho, UpdateDeal).record == {"id": "D1", "Deal_Name": "Renamed in SI"}


def test_value_map_is_read_backwards_when_sending_to_si() -> None:
    """A zoho_to_si field with a value map sends the SI spelling."""
    m = mapping_with(
        'zoho = "Stage"\nsi = "Progress"\ndirection = "si_to_zoho"',
        'zoho = "Stage"\nsi = "Progress"\ndirection = "zoho_to_si"',
    )
    p = plan(
        linked_world(linked_deal(Stage="Closed Won"), mapping=m, snapshot=agreed(linked_deal(), m)),
        m,
    )
    assert only(p, UpdateProject).fields == ((2, "Approved"),)


# ---- change-order notes -----------------------------------------------------------------------------------


def test_each_change_order_state_becomes_one_note() -> None:
    """One AddNote per (project, CONumber, COStatus), its reference line last."""
    p = plan(
        linked_world(
            None,
            export("P1", 1000, co="CO-1", COName="Extra TV", COStatus="Pending", COType="Add", Price=500),
            export("P1", 2000, co="CO-2", COName="Speakers", COStatus="Approved", COType="Add", Price=80),
        ),
        MAPPING,
    )
    notes = of(p, AddNote)
    assert [n.key for n in notes] == ["note:P1:CO-1:Pending", "note:P1:CO-2:Approved"]
    assert notes[0].title == "Change order CO-1: Extra TV"
    assert notes[0].content == (
        "Status: Pending. Type: Add. Price: 500.\n\n" + note_reference("P1", "CO-1", "Pending")
    )
    assert (notes[0].deal_id, notes[0].project_id, notes[0].co_number, notes[0].co_status) == (
        "D1",
        "P1",
        "CO-1",
        "Pending",
    )


def test_two_states_of_one_change_order_in_one_poll_give_two_notes() -> None:
    """CO-1 went Pending then Approved between two polls: both states are noted, once each."""
    p = plan(
        linked_world(
            None,
            export("P1", 1000, co="CO-1", COStatus="Pending"),
            export("P1", 1500, co="CO-1", COStatus="Pending"),
            export("P1", 2000, co="CO-1", COStatus="Approved"),
        ),
        MAPPING,
    )
    assert [n.key for n in of(p, AddNote)] == ["note:P1:CO-1:Pending", "note:P1:CO-1:Approved"]
    (settle,) = p.settles
    assert [a.message_id for a in settle.acks] == ["msg-P1-1000", "msg-P1-1500", "msg-P1-2000"]


def test_no_note_for_a_change_order_state_already_noted() -> None:
    """A note intent already done (or parked) is never planned again."""
    intents = {
        "note:P1:CO-1:Pending": IntentState("note:P1:CO-1:Pending", "note", "done"),
        "note:P1:CO-1:Rejected": IntentState("note:P1:CO-1:Rejected", "note", "parked"),
    }
    p = plan(
        linked_world(
            None,
            export("P1", 1000, co="CO-1", COStatus="Pending"),
            export("P1", 1100, co="CO-1", COStatus="Rejected"),
            export("P1", 2000, co="CO-1", COStatus="Approved"),
            intents=intents,
        ),
        MAPPING,
    )
    assert [n.key for n in of(p, AddNote)] == ["note:P1:CO-1:Approved"]


def test_note_title_and_content_are_cut_to_zoho_limits() -> None:
    """Title <= 120 and content <= 65535 characters, cut with an ellipsis; the reference line survives."""
    p = plan(
        linked_world(
            None,
            export("P1", 1000, co="CO-1", COName="N" * 500, COStatus="Approved", COType="T" * 70000),
        ),
        MAPPING,
    )
    note = only(p, AddNote)
    assert len(note.title) == 120 and note.title.endswith("…")
    assert len(note.content) <= 65535
    body, reference = note.content.rsplit("\n\n", 1)
    assert body.endswith("…")
    assert reference == note_reference("P1", "CO-1", "Approved")


# ---- links and outcomes -----------------------------------------------------------------------------------


def test_unknown_project_is_reported_not_acknowledged() -> None:
    """An SI project no deal is linked to goes to Plan.unknown and none of its messages is acked."""
    stranger = export("P9", 1000, integration_id=None, Name="Walk-in", Price=10)
    p = plan(World(exports=[stranger]), MAPPING)
    assert p.unknown == (stranger,)
    assert p.acks() == [] and p.actions == ()


def test_export_of_a_project_being_created_is_neither_unknown_nor_acked() -> None:
    """The project a create in this very plan targets is not 'unknown'."""
    early = export("P9", 1000, integration_id="D1", Name="Kitchen remodel")
    p = plan(World(deals=[deal("D1")], exports=[early]), MAPPING)
    assert p.unknown == () and p.acks() == []


def test_unticked_linked_deal_deactivates_its_link() -> None:
    """Send_to_SI cleared on a linked deal: the link is settled inactive with a reason; no write."""
    p = plan(linked_world(linked_deal(Send_to_SI=False)), MAPPING)
    assert writes_of(p) == []
    (settle,) = p.settles
    assert settle.link is not None and settle.link.active is False
    assert "Send_to_SI" in (settle.link.inactive_reason or "")


def test_full_read_missing_a_linked_deal_deactivates_its_link_once_confirmed_gone() -> None:
    """On a full read, a linked deal Zoho did not return and a direct read confirms gone stops syncing."""
    world = World(
        deals=[],
        links={"D1": link()},
        snapshots={"D1": agreed(linked_deal())},
        full=True,
        gone=frozenset({"D1"}),
    )
    p = plan(world, MAPPING)
    (settle,) = p.settles
    assert settle.link is not None and settle.link.active is False
    assert "deleted" in (settle.link.inactive_reason or "")
    assert p.full


def test_full_read_missing_a_linked_deal_without_confirmation_holds_the_pair() -> None:
    """Absence is not evidence: unconfirmed, the pair is held (no settle, no ack of SI's messages)."""
    world = World(
        deals=[],
        exports=[export("P1", 2000, Price=999)],
        links={"D1": link()},
        snapshots={"D1": agreed(linked_deal())},
        full=True,
    )
    p = plan(world, MAPPING)
    assert p.settles == () and p.actions == () and p.acks() == []
    assert p.held == ("D1",)


def test_incremental_read_missing_a_linked_deal_changes_nothing() -> None:
    """An incremental read only returns changed deals: absence means nothing."""
    world = World(deals=[], links={"D1": link()}, snapshots={"D1": agreed(linked_deal())})
    assert plan(world, MAPPING).settles == ()


def test_full_read_missing_deal_with_si_news_writes_nothing_to_zoho() -> None:
    """A deal gone from Zoho is not written to when SI exports its project; the link ends inactive."""
    world = World(
        deals=[],
        exports=[export("P1", 2000, Price=999)],
        links={"D1": link()},
        snapshots={"D1": agreed(linked_deal())},
        full=True,
        gone=frozenset({"D1"}),
    )
    p = plan(world, MAPPING)
    assert writes_of(p) == []
    final_links = [s.link for s in p.settles if s.link is not None]
    assert final_links and final_links[-1].active is False
    assert p.acks() == [Ack("P1", None, 2000, "msg-P1-2000")]


def test_exports_of_an_inactive_link_are_acknowledged_without_writes() -> None:
    """SI news about a pair that stopped syncing is acked and otherwise ignored."""
    world = World(
        exports=[export("P1", 2000, Price=999)],
        links={"D1": link(active=False, inactive_reason="unticked")},
    )
    p = plan(world, MAPPING)
    assert p.actions == ()
    assert p.acks() == [Ack("P1", None, 2000, "msg-P1-2000")]


def test_reticked_deal_reactivates_its_link() -> None:
    """Ticking Send_to_SI again brings an inactive link back."""
    world = replace(
        linked_world(linked_deal(Amount=5)), links={"D1": link(active=False, inactive_reason="x")}
    )
    (settle,) = plan(world, MAPPING).settles
    assert settle.link == link()


def test_mislinked_deal_is_parked() -> None:
    """A deal whose SI_Project_ID names another project than its link is parked, not rewired."""
    p = plan(linked_world(deal("D1", SI_Project_ID="P-other", SI_Sync_Status="In SI")), MAPPING)
    park = only(p, Park)
    assert park.key == "link:deal:D1"
    assert "P-other" in park.message and "P1" in park.message


def test_cleared_project_id_is_written_back() -> None:
    """Someone blanked SI_Project_ID on a linked deal: it is put back."""
    p = plan(linked_world(deal("D1", SI_Sync_Status="In SI")), MAPPING)
    assert only(p, UpdateDeal).record == {"id": "D1", "SI_Project_ID": "P1"}


@pytest.mark.parametrize(
    ("status_id", "error", "text", "publish_status"),
    [
        (2, None, "In SI", "imported"),
        (
            3,
            "Template 'Residentail' not found",
            "SI import failed: Template 'Residentail' not found",
            "failed",
        ),
    ],
)
def test_publish_outcome_is_shown_on_the_deal(
    status_id: int, error: str | None, text: str, publish_status: str
) -> None:
    """Imported -> SI_Sync_Status "In SI"; failed -> "SI import failed: <message>"; the link records it."""
    d = deal("D1", SI_Project_ID="P1", SI_Sync_Status=QUEUED)
    world = World(
        deals=[d],
        links={"D1": link(message_id="pub-1", publish_status="pending")},
        snapshots={"D1": agreed(d)},
        publish_outcomes={"pub-1": PublishOutcome("pub-1", status_id, error)},
    )
    p = plan(world, MAPPING)
    assert only(p, UpdateDeal).record == {"id": "D1", "SI_Sync_Status": text}
    (settle,) = p.settles
    assert settle.link is not None and settle.link.publish_status == publish_status
    assert settle.link.publish_error == error


def test_publish_outcome_is_applied_even_when_the_deal_was_not_read() -> None:
    """An incremental read without the deal still reports the import on it."""
    world = World(
        links={"D1": link(message_id="pub-1", publish_status="pending")},
        snapshots={"D1": agreed(deal("D1", SI_Project_ID="P1", SI_Sync_Status=QUEUED))},
        publish_outcomes={"pub-1": PublishOutcome("pub-1", 2)},
    )
    update = only(plan(world, MAPPING), UpdateDeal)
    assert update.record == {"id": "D1", "SI_Sync_Status": "In SI"}


# ---- the mass-change guard --------------------------------------------------------------------------------


def _many_creates(n: int) -> World:
    return World(deals=[deal(f"D{i:03}") for i in range(n)])


def test_plan_writing_more_than_max_writes_is_refused() -> None:
    """More writes than RECONCILER_MAX_WRITES: refused, naming the limit and the --force command."""
    p = plan(_many_creates(6), MAPPING, max_writes=5)
    assert p.writes() == 6
    assert p.refused is not None
    assert "RECONCILER_MAX_WRITES=5" in p.refused
    assert "reconciler plan --out plan.json" in p.refused and "reconciler apply plan.json" in p.refused
    assert "reconciler run-once --expect 6" in p.refused


def test_plan_at_max_writes_or_forced_is_not_refused() -> None:
    """Exactly the limit passes, and --force lifts the guard."""
    assert plan(_many_creates(5), MAPPING, max_writes=5).refused is None
    assert plan(_many_creates(6), MAPPING, max_writes=5, force=True).refused is None


def _ten_links(full: bool, gone: bool = False) -> World:
    links = {f"D{i}": link(f"D{i}", f"P{i}") for i in range(10)}
    return World(deals=[], links=links, full=full, gone=frozenset(links) if gone else frozenset())


def test_full_read_returning_nothing_with_many_links_is_refused() -> None:
    """Zero deals on a full read while 10 are linked looks like an outage: refused, naming --full --force."""
    p = plan(_ten_links(full=True), MAPPING)
    assert p.refused is not None and "reconciler run-once --full --force" in p.refused
    assert "returned 0 of the 10 linked deals (10 missing)" in p.refused


def test_empty_incremental_read_is_not_refused() -> None:
    """Nothing changed since the cursor is normal."""
    assert plan(_ten_links(full=False), MAPPING).refused is None


def test_forced_full_read_returning_nothing_is_not_refused() -> None:
    """--force accepts an empty full read; the deals direct reads confirmed gone stop syncing."""
    p = plan(_ten_links(full=True, gone=True), MAPPING, force=True)
    assert p.refused is None
    assert len(p.settles) == 10
    assert all(s.link is not None and not s.link.active for s in p.settles)


def test_plan_counts_writes_not_parks_or_conflicts() -> None:
    """writes() counts creates, updates and notes, never Park or Conflict."""
    p = plan(
        World(
            deals=[deal("D1"), deal("D2", **{"Account_Name.Account_Name": None})],
        ),
        MAPPING,
    )
    assert len(p.actions) == 2 and p.writes() == 1


def test_planning_is_deterministic() -> None:
    """The same world gives an equal plan."""
    world = World(
        deals=[deal("D2"), linked_deal(Amount=3), deal("D3")],
        exports=[export("P1", 1000, co="CO-1", COStatus="Pending"), export("P1", 900, Price=4)],
        links={"D1": link()},
        snapshots={"D1": agreed(linked_deal())},
    )
    assert plan(world, MAPPING) == plan(world, MAPPING)


def test_settle_carries_the_action_keys_it_waits_for() -> None:
    """A pair's settle lists every action key of that pair, so it is skipped when one is not applied."""
    p = plan(
        linked_world(
            linked_deal(Closing_Date="2026-05-05"),
            export("P1", 2000, Price=7),
            export("P1", 2100, co="CO-3", COStatus="Approved"),
        ),
        MAPPING,
    )
    (settle,) = p.settles
    assert isinstance(settle, Settle)
    assert set(settle.action_keys) >= {"update:deal:D1", "update:project:P1"}
    assert {a.key for a in p.actions} <= set(settle.action_keys)


def _settled(p: Plan) -> Snapshot:
    """The snapshot the applier stores from a plan's single pair settle."""
    (settle,) = [s for s in p.settles if s.zoho is not None]
    return Snapshot("D1", settle.zoho_hash or "", settle.zoho or {}, settle.si or {}, settle.pending or {})


def test_parked_deal_update_does_not_advance_the_snapshot() -> None:
    """Zoho rejected SI's new name (parked): later cycles neither retry it nor push Zoho's old name to SI."""
    world = linked_world(None, export("P1", 2000, Name="SI name"))
    update = only(plan(world, MAPPING), UpdateDeal)
    intents = {update.key: IntentState(update.key, "update_deal", "parked", input_hash=update.input_hash)}
    second = plan(replace(world, intents=intents), MAPPING)
    assert writes_of(second) == []
    snapshot = _settled(second)
    assert snapshot.zoho["Deal_Name"] == "Kitchen remodel"
    news = export("P1", 3000, Price=100)  # the pair is planned again, with nothing new about the name
    third = plan(linked_world(linked_deal(), news, snapshot=snapshot, intents=intents), MAPPING)
    assert of(third, UpdateProject) == [] and of(third, UpdateDeal) == []


def test_parked_project_update_does_not_advance_the_snapshot() -> None:
    """SI refused our close date (parked): no pending wait is recorded and nothing is re-sent or reverted."""
    world = linked_world(linked_deal(Closing_Date="2026-04-15"))
    update = only(plan(world, MAPPING), UpdateProject)
    intents = {update.key: IntentState(update.key, "update_project", "parked", input_hash=update.input_hash)}
    second = plan(replace(world, intents=intents), MAPPING)
    assert writes_of(second) == []
    snapshot = _settled(second)
    assert snapshot.pending == {}
    assert snapshot.si["Closing_Date"] == "2026-03-01"
    assert (
        plan(linked_world(linked_deal(Closing_Date="2026-04-15"), snapshot=snapshot), MAPPING).actions == ()
    )


def test_resolved_update_is_cleared_even_when_nothing_else_moved() -> None:
    """A cycle with no news still drops the pending entry SI resolved (no status poll forever)."""
    world = World(
        links={"D1": link()},
        snapshots={"D1": _pending_world().snapshots["D1"]},
        publish_outcomes={"upd-1": PublishOutcome("upd-1", 2)},
    )
    p = plan(world, MAPPING)
    assert writes_of(p) == []
    assert _settled(p).pending == {}


def test_stored_pending_entry_without_message_id_is_void() -> None:
    """An SI update that was parked (never got a message id) does not make SI's exports look stale."""
    world = _pending_world(export("P1", 2000, Name="Renamed in SI"))
    snap = world.snapshots["D1"]
    world = replace(
        world,
        snapshots={"D1": replace(snap, pending={"Deal_Name": {"value": "New name", "message_id": None}})},
    )
    p = plan(world, MAPPING)
    assert only(p, UpdateDeal).record == {"id": "D1", "Deal_Name": "Renamed in SI"}
    assert _settled(p).pending == {}


@pytest.mark.parametrize("collecting", [True, False])
def test_plan_leaves_the_garbage_collector_as_it_found_it(collecting: bool) -> None:
    """plan() pauses the cyclic GC while it runs (it makes no cycles) and restores it, even on an error."""
    was = gc.isenabled()
    try:
        gc.enable() if collecting else gc.disable()
        assert plan(World(deals=[deal("D1")]), MAPPING).actions
        assert gc.isenabled() is collecting
        with pytest.raises(AttributeError):
            plan(World(deals=["not a deal"]), MAPPING)  # type: ignore[list-item]
        assert gc.isenabled() is collecting
    finally:
        gc.enable() if was else gc.disable()
