"""The publish body the pure planner builds from the shipped default mapping and the [create] forms:
the client id, nested addresses and contacts, per-deal values picked by a value map, and parks."""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

from reconciler.mapping import Mapping, load_mapping, parse_mapping
from reconciler.model import CreateProject, Deal, IntentState, LinkState, Park, Snapshot
from reconciler.plan import World, canon_digest, plan, zoho_canon
from tests.conftest import DEFAULT_MAPPING

DEFAULT = load_mapping(DEFAULT_MAPPING)


def deal(deal_id: str = "D1", **values: Any) -> Deal:
    """A flagged deal as the default mapping's COQL returns it (lookups joined, the account as {id})."""
    base: dict[str, Any] = {
        "Send_to_SI": True,
        "Deal_Name": "Harbor house AV",
        "Account_Name": {"id": "4001"},
        "Account_Name.Account_Name": "Harbor LLC",
        "Account_Name.Billing_Street": "1 Quay St",
        "Account_Name.Billing_City": "Bristol",
        "Account_Name.Billing_State": None,
        "Account_Name.Billing_Code": "BS1 4DJ",
        "Account_Name.Billing_Country": "United Kingdom",
        "Contact_Name.Full_Name": "Ada Lovelace",
        "Contact_Name.Email": "ada@harbor.example",
        "Contact_Name.Phone": "+44 117 000",
        "Contact_Name.Mobile": None,
        "Contact_Name.Title": "Owner",
    }
    base.update(values)
    return Deal(deal_id, base)


def with_create(extra: str) -> Mapping:
    return parse_mapping(
        tomllib.loads(
            textwrap.dedent(
                """
                [create]
                Name = "Deal_Name"
                Client = "Account_Name.name"
                """
            )
            + textwrap.dedent(extra)
        )
    )


def creates(world: World, mapping: Mapping) -> dict[str, CreateProject | Park]:
    return {a.deal_id or "": a for a in plan(world, mapping).actions if isinstance(a, CreateProject | Park)}


def test_the_default_mapping_publishes_the_account_as_client_with_its_address_and_the_primary_contact() -> (
    None
):
    """Client (the account's name), IntegrationClientId (its id), BillingAddress from the account's billing
    fields, Contacts[0] from the deal's contact, marked primary; empty values are left out."""
    (create,) = plan(World(deals=[deal()]), DEFAULT).actions
    assert isinstance(create, CreateProject)
    body = dict(create.body)
    assert {k: body[k] for k in ("Name", "Client", "IntegrationClientId", "IntegrationProjectId")} == {
        "Name": "Harbor house AV",
        "Client": "Harbor LLC",
        "IntegrationClientId": "4001",
        "IntegrationProjectId": "D1",
    }
    assert body["BillingAddress"] == {
        "Street1": "1 Quay St",
        "City": "Bristol",
        "PostalCode": "BS1 4DJ",
        "Country": "United Kingdom",
    }
    assert body["Contacts"] == [
        {
            "Name": "Ada Lovelace",
            "Email": "ada@harbor.example",
            "Phone": "+44 117 000",
            "Title": "Owner",
            "IsPrimary": True,
        }
    ]


def test_a_deal_without_a_contact_sends_no_contact_even_with_a_primary_constant() -> None:
    """No Contact_Name: no Contacts list (IsPrimary alone is not a contact); no account address: no
    BillingAddress."""
    bare = deal(
        **{key: None for key in deal().values if key.startswith(("Contact_Name.", "Account_Name.Billing"))}
    )
    (create,) = plan(World(deals=[bare]), DEFAULT).actions
    assert isinstance(create, CreateProject)
    assert "Contacts" not in create.body and "BillingAddress" not in create.body


def test_a_constant_fills_only_what_the_deal_left_empty() -> None:
    """ "BillingAddress.Country" as a constant: used when the account has none, never over its own."""
    mapping = with_create(
        """
        BillingAddress.City = "Account_Name.Billing_City"
        BillingAddress.Country = "Account_Name.Billing_Country"
        [create.constants]
        "BillingAddress.Country" = "United States"
        """
    )
    found = creates(World(deals=[deal("D1"), deal("D2", **{"Account_Name.Billing_Country": None})]), mapping)
    assert found["D1"].body["BillingAddress"] == {"City": "Bristol", "Country": "United Kingdom"}  # type: ignore[union-attr]
    assert found["D2"].body["BillingAddress"] == {"City": "Bristol", "Country": "United States"}  # type: ignore[union-attr]


def test_the_template_is_picked_per_deal_and_an_unmapped_type_parks_only_that_deal() -> None:
    """TemplateName by the deal's Type: mapped values pick theirs; a value with no entry and no default
    parks that deal's create, naming the value; the other deals are created."""
    templates = '{ "Residential" = "Res Standard", "Commercial" = "Com Standard" }'
    mapping = with_create(f'TemplateName = {{ zoho = "Type", values = {templates} }}\n')
    world = World(
        deals=[deal("D1", Type="Residential"), deal("D2", Type="Industrial"), deal("D3", Type="Commercial")]
    )
    found = creates(world, mapping)
    assert found["D1"].body["TemplateName"] == "Res Standard"  # type: ignore[union-attr]
    assert found["D3"].body["TemplateName"] == "Com Standard"  # type: ignore[union-attr]
    parked = found["D2"]
    assert isinstance(parked, Park)
    assert parked.key == "create:deal:D2"
    assert parked.message == (
        "deal D2: field Type: no TemplateName for 'Industrial' (add it under create.TemplateName.values in"
        " the mapping, or give a default)"
    )


def test_a_parked_template_is_planned_again_once_the_deal_or_the_value_map_changes() -> None:
    """Parked with this input: nothing planned; the Type edited to a mapped value, or the value added to
    the mapping's values: created."""
    mapping = with_create('TemplateName = { zoho = "Type", values = { "Residential" = "Res" } }\n')
    stuck = deal("D2", Type="Industrial")
    (park,) = plan(World(deals=[stuck]), mapping).actions
    assert isinstance(park, Park)
    intent = IntentState(park.key, "create", "parked", input_hash=park.input_hash, deal_id="D2")
    intents = {intent.key: intent}
    assert plan(World(deals=[stuck], intents=intents), mapping).actions == ()
    (edited,) = plan(World(deals=[deal("D2", Type="Residential")], intents=intents), mapping).actions
    assert isinstance(edited, CreateProject) and edited.body["TemplateName"] == "Res"
    wider = with_create(
        'TemplateName = { zoho = "Type", values = { "Residential" = "Res", "Industrial" = "Ind" } }\n'
    )
    (mapped,) = plan(World(deals=[stuck], intents=intents), wider).actions
    assert isinstance(mapped, CreateProject) and mapped.body["TemplateName"] == "Ind"


def test_a_default_covers_unmapped_and_empty_values() -> None:
    """With default = ..., an unlisted or empty Type takes the default."""
    mapping = with_create(
        'TemplateName = { zoho = "Type", values = { "Commercial" = "Com" }, default = "Res" }\n'
    )
    found = creates(World(deals=[deal("D1", Type="Industrial"), deal("D2", Type=None)]), mapping)
    assert found["D1"].body["TemplateName"] == "Res" and found["D2"].body["TemplateName"] == "Res"  # type: ignore[union-attr]


def test_the_sales_rep_is_the_deal_owners_name() -> None:
    """SalesRep = "Owner.name" reads the owner's full name through its join column."""
    mapping = with_create('SalesRep = "Owner.name"\n')
    (create,) = plan(World(deals=[deal(**{"Owner.full_name": "Grace Hopper"})]), mapping).actions
    assert isinstance(create, CreateProject) and create.body["SalesRep"] == "Grace Hopper"


def test_a_lookup_where_one_value_belongs_parks_the_create_naming_the_field() -> None:
    """A value map's field that COQL answers as an object: the create is parked, nothing published."""
    mapping = with_create('TemplateName = { zoho = "Type", values = { "A" = "B" }, default = "B" }\n')
    (parked,) = plan(World(deals=[deal(Type={"id": "9", "name": "x"})]), mapping).actions
    assert isinstance(parked, Park)
    assert parked.message == "deal D1: field Type: expected a single value, got an object with keys id, name"


def test_what_only_a_create_reads_does_not_disturb_a_linked_pair() -> None:
    """The account's address and the contact are read for creates only: an edit of them leaves a linked,
    agreed pair quiet (no action, no settle), and the pair's snapshot never hashes them."""
    linked = deal(SI_Project_ID="P1", SI_Sync_Status="In SI")
    canon = zoho_canon(linked, DEFAULT)
    assert not any(path.startswith(("Account_Name.", "Contact_Name.")) for path in canon)
    fields = {f.zoho: canon[f.zoho] for f in DEFAULT.fields}
    world = World(
        deals=[deal(SI_Project_ID="P1", SI_Sync_Status="In SI", **{"Account_Name.Billing_City": "Leeds"})],
        links={"D1": LinkState("D1", "P1", publish_status="imported")},
        snapshots={"D1": Snapshot("D1", canon_digest(canon), fields, dict(fields))},
    )
    quiet = plan(world, DEFAULT)
    assert (quiet.actions, quiet.settles) == ((), ())
