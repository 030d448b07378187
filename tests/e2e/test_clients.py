"""Issue #11 over real HTTP: one SI client per Zoho account, templates chosen per deal, SI's project
number back on the deal, and the deals query still one COQL call per 2,000 deals with its joins.

Each cycle is a ``reconciler run-once`` subprocess against both simulators on loopback sockets, except
the call count, which needs 2,001 deals and runs a dry cycle in-process.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from reconciler.cycle import run_cycle
from reconciler.model import CreateProject
from reconciler.sim.harness import SimPair
from tests.conftest import DEFAULT_MAPPING, run_cli

# The client name typed on the deal (a custom text field), so that two deals of one account can spell it
# differently; the client id stays the default, the account's id.
TYPED_CLIENT = """
[create]
Name = "Deal_Name"
Client = "Client_Name"
"""

TEMPLATES = """
[create]
Name = "Deal_Name"
Client = "Account_Name.name"
TemplateName = { zoho = "Type", values = { "Residential" = "Res Standard", "Commercial" = "Com Standard" } }
"""


def with_mapping(sims: SimPair, tmp_path: Path, text: str) -> dict[str, str]:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(textwrap.dedent(text), encoding="utf-8")
    return sims.environment(tmp_path / "reconciler.db", mapping)


def add_client_name_field(sims: SimPair) -> None:
    entry = dict(next(f for f in sims.zoho.fields_meta if f["api_name"] == "Deal_Name"))
    sims.zoho.fields_meta.append(
        entry | {"api_name": "Client_Name", "field_label": "Client Name", "custom_field": True}
    )


def client_of(sims: SimPair, deal_id: str) -> str:
    project_id = sims.zoho.deal(deal_id)["SI_Project_ID"]
    client_id: str = sims.si.projects[project_id]["ClientId"]
    return client_id


def test_two_deals_of_one_account_spelled_differently_are_one_si_client(served_sims, tmp_path):
    """ "Acme Ltd" and "ACME Limited" on two deals of one account: one SI client (same IntegrationClientId,
    the account id); a third account: a second client."""
    sims = served_sims
    add_client_name_field(sims)
    env = with_mapping(sims, tmp_path, TYPED_CLIENT)
    acme = sims.zoho.add_account("Acme Ltd")
    zylker = sims.zoho.add_account("Zylker Corp")
    first = sims.zoho.add_deal(Deal_Name="Office", Account_Name=acme, Client_Name="Acme Ltd", Send_to_SI=True)
    second = sims.zoho.add_deal(
        Deal_Name="Lobby", Account_Name=acme, Client_Name="ACME Limited", Send_to_SI=True
    )
    third = sims.zoho.add_deal(Deal_Name="Store", Account_Name=zylker, Client_Name="Zylker", Send_to_SI=True)

    run_cli(["run-once"], env, tmp_path, check=True)
    sims.si.import_pending()
    run_cli(["run-once"], env, tmp_path, check=True)

    sent = {m.payload["IntegrationProjectId"]: m.payload for m in sims.si.publish_messages}
    assert [sent[d]["Client"] for d in (first, second)] == ["Acme Ltd", "ACME Limited"]
    assert sent[first]["IntegrationClientId"] == sent[second]["IntegrationClientId"] == acme
    assert sent[third]["IntegrationClientId"] == zylker
    assert client_of(sims, first) == client_of(sims, second) != client_of(sims, third)
    assert len(sims.si.clients) == 2
    assert {c["IntegrationId"] for c in sims.si.clients.values()} == {acme, zylker}


def test_a_renamed_account_keeps_its_si_client(served_sims, tmp_path):
    """The default mapping: an account renamed between two of its deals' creates is still one SI client."""
    sims = served_sims
    env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING)
    acme = sims.zoho.add_account("Acme Ltd")
    first = sims.zoho.add_deal(Deal_Name="Office", Account_Name=acme, Send_to_SI=True)
    run_cli(["run-once"], env, tmp_path, check=True)
    sims.zoho.edit_account(acme, Account_Name="ACME Limited")
    second = sims.zoho.add_deal(Deal_Name="Lobby", Account_Name=acme, Send_to_SI=True)
    run_cli(["run-once"], env, tmp_path, check=True)
    sims.si.import_pending()

    assert [m.payload["Client"] for m in sims.si.publish_messages] == ["Acme Ltd", "ACME Limited"]
    assert client_of(sims, first) == client_of(sims, second)
    assert len(sims.si.clients) == 1


def test_a_type_without_a_template_parks_that_deal_naming_the_value_and_the_others_proceed(
    served_sims, tmp_path
):
    """Type "Industrial" has no template and there is no default: that create is parked with a message
    naming the value; run-once exits 1; the Residential and Commercial deals go to SI with theirs; once the
    deal's Type is fixed it is created."""
    sims = served_sims
    env = with_mapping(sims, tmp_path, TEMPLATES)
    home = sims.zoho.add_deal(Deal_Name="Home", Account_Name="Acme", Type="Residential", Send_to_SI=True)
    plant = sims.zoho.add_deal(Deal_Name="Plant", Account_Name="Acme", Type="Industrial", Send_to_SI=True)
    shop = sims.zoho.add_deal(Deal_Name="Shop", Account_Name="Acme", Type="Commercial", Send_to_SI=True)

    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 1, result.stderr
    sent = {m.payload["IntegrationProjectId"]: m.payload["TemplateName"] for m in sims.si.publish_messages}
    assert sent == {home: "Res Standard", shop: "Com Standard"}
    assert not sims.zoho.deal(plant).get("SI_Project_ID")
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    assert f"create:deal:{plant}" in status
    assert f"deal {plant}: field Type: no TemplateName for 'Industrial'" in status
    assert run_cli(["run-once"], env, tmp_path).returncode == 0  # parked once, not again every cycle

    sims.zoho.edit_deal(plant, Type="Commercial")
    run_cli(["run-once"], env, tmp_path, check=True)
    assert sims.si.publish_messages[-1].payload["TemplateName"] == "Com Standard"
    assert sims.zoho.deal(plant)["SI_Project_ID"]


def test_si_assigns_the_project_number_and_the_default_mapping_writes_it_on_the_deal(served_sims, tmp_path):
    """After SI imports the project, the deal's SI_Project_Number holds SI's Number."""
    sims = served_sims
    env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING)
    deal = sims.zoho.add_deal(Deal_Name="Office", Account_Name="Acme", Send_to_SI=True)
    run_cli(["run-once"], env, tmp_path, check=True)
    assert not sims.zoho.deal(deal).get("SI_Project_Number")
    sims.si.import_pending()
    run_cli(["run-once"], env, tmp_path, check=True)
    project = sims.si.projects[sims.zoho.deal(deal)["SI_Project_ID"]]
    assert sims.zoho.deal(deal)["SI_Project_Number"] == project["Number"] == "P-1001"


def test_the_deals_query_stays_one_coql_call_per_2000_deals_with_its_joins(sims, make_ctx):
    """2,001 flagged deals with accounts and contacts, the default mapping (two lookups joined): a full
    read is two COQL calls, and every create carries its account's address and its contact."""
    accounts = [sims.zoho.add_account(f"Account {n}", Billing_City=f"City {n}") for n in range(20)]
    contacts = [sims.zoho.add_contact(f"Person {n}", Email=f"p{n}@example.com") for n in range(20)]
    for n in range(2001):
        sims.zoho.add_deal(
            Deal_Name=f"Deal {n}",
            Account_Name=accounts[n % 20],
            Contact_Name=contacts[n % 20],
            Send_to_SI=True,
        )
    result = run_cycle(make_ctx(sims), dry_run=True, full=True, force=True)
    assert result.report.api_calls["zoho.coql"] == 2
    assert sims.zoho.count("POST", "/crm/v8/coql") == 2
    assert result.plan is not None
    bodies = [a.body for a in result.plan.actions if isinstance(a, CreateProject)]
    assert len(bodies) == 2001
    assert all(b["BillingAddress"]["City"].startswith("City ") for b in bodies)
    assert all(b["Contacts"][0]["Email"].endswith("@example.com") for b in bodies)
