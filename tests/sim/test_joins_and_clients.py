"""The simulators' side of issue 11: Zoho's COQL joins to accounts, contacts and users (with the joined
modules' field catalogues and COQL's join limits); SI keeping nested project properties and keying its
clients on ``IntegrationClientId``, falling back to the name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconciler.sim.si import SiSim
from reconciler.sim.zoho import ZohoSim

KEY = {"X-DTSI-ApiKey": "sim-si-key"}
GRANT = {
    "grant_type": "refresh_token",
    "client_id": "sim-client",
    "client_secret": "sim-secret",
    "refresh_token": "sim-refresh",
}


@pytest.fixture
def zoho() -> ZohoSim:
    return ZohoSim()


@pytest.fixture
def api(zoho: ZohoSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=zoho.transport(), base_url="http://127.0.0.1") as client:
        token = client.post("/oauth/v2/token", data=GRANT).json()["access_token"]
        client.headers["Authorization"] = f"Zoho-oauthtoken {token}"
        yield client


def rows(api: httpx.Client, query: str) -> list[dict[str, Any]]:
    answer = api.post("/crm/v8/coql", json={"select_query": query})
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


# ---- Zoho ---------------------------------------------------------------------------------------------


def test_coql_joins_read_the_account_the_contact_and_the_owner(zoho: ZohoSim, api: httpx.Client) -> None:
    """Account_Name.Billing_City, Contact_Name.Email and Owner.full_name read the looked-up records; the
    lookups themselves stay {id}; a deal without a contact reads null."""
    account = zoho.add_account("Harbor LLC", Billing_City="Bristol", Account_Number="A-7")
    contact = zoho.add_contact("Lovelace", "Ada", Email="ada@harbor.example", Title="Owner")
    owner = zoho.add_user("Grace Hopper")
    with_contact = zoho.add_deal(Deal_Name="A", Account_Name=account, Contact_Name=contact, Owner=owner)
    alone = zoho.add_deal(Deal_Name="B", Account_Name="Harbor LLC")
    assert zoho.deal(with_contact)["Contact_Name"] == {"name": "Ada Lovelace", "id": contact}
    query = (
        "select Account_Name, Account_Name.Billing_City, Account_Name.Account_Number, Contact_Name.Full_Name,"
        " Contact_Name.Email from Deals where Deal_Name is not null"
    )
    got = rows(api, query)
    assert got[0] == {
        "id": with_contact,
        "Account_Name": {"id": account},
        "Account_Name.Billing_City": "Bristol",
        "Account_Name.Account_Number": "A-7",
        "Contact_Name.Full_Name": "Ada Lovelace",
        "Contact_Name.Email": "ada@harbor.example",
    }
    assert got[1]["id"] == alone and got[1]["Contact_Name.Email"] is None
    owners = rows(api, "select Owner, Owner.full_name from Deals where Deal_Name is not null")
    assert owners[0] == {"id": with_contact, "Owner": {"id": owner}, "Owner.full_name": "Grace Hopper"}
    assert owners[1]["Owner.full_name"] == "Sim Integration"  # a deal's owner is the integration's user


def test_an_account_edit_reaches_the_join_without_touching_the_deal(zoho: ZohoSim, api: httpx.Client) -> None:
    """A renamed account: the join answers the new name; the deal's Modified_Time is unchanged."""
    account = zoho.add_account("Acme Ltd")
    deal = zoho.add_deal(Deal_Name="A", Account_Name=account)
    stamp = zoho.deal(deal)["Modified_Time"]
    zoho.edit_account(account, Account_Name="ACME Limited")
    (row,) = rows(api, "select Account_Name.Account_Name, Modified_Time from Deals where Deal_Name = 'A'")
    assert row["Account_Name.Account_Name"] == "ACME Limited" and row["Modified_Time"] == stamp


def test_a_field_the_joined_module_lacks_is_invalid_query(api: httpx.Client) -> None:
    """Account_Name.Colour: 400 INVALID_QUERY naming the column, as for a deal field."""
    answer = api.post(
        "/crm/v8/coql", json={"select_query": "select Account_Name.Colour from Deals where id is not null"}
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "INVALID_QUERY"
    assert answer.json()["details"]["column_name"] == "Account_Name.Colour"


def test_coql_refuses_a_third_relation_and_a_sixteenth_joined_column(api: httpx.Client) -> None:
    """Two lookups joined are fine; a third is LIMIT_EXCEEDED; so is a 16th joined column."""
    assert api.post(
        "/crm/v8/coql",
        json={
            "select_query": "select Account_Name.Phone, Contact_Name.Email from Deals where id is not null"
        },
    ).status_code in (200, 204)
    three = "select Account_Name.Phone, Contact_Name.Email, Owner.email from Deals where id is not null"
    answer = api.post("/crm/v8/coql", json={"select_query": three})
    assert answer.status_code == 400 and answer.json()["code"] == "LIMIT_EXCEEDED"
    assert answer.json()["details"]["relations"] == ["Account_Name", "Contact_Name", "Owner"]
    names = ["Account_Name", "Account_Number", "Phone", "Website", "Industry", "Account_Type", "Employees"]
    names += [f"{kind}_{part}" for kind in ("Billing", "Shipping") for part in ("Street", "City", "State")]
    sixteen = ", ".join(f"Account_Name.{n}" for n in names[:13]) + ", Contact_Name.Email, Contact_Name.Phone"
    sixteen += ", Contact_Name.Title"
    answer = api.post(
        "/crm/v8/coql", json={"select_query": f"select {sixteen} from Deals where id is not null"}
    )
    assert answer.status_code == 400 and answer.json()["details"]["limit"] == 15


def test_the_fields_metadata_describes_accounts_and_contacts_too(api: httpx.Client) -> None:
    """GET /settings/fields?module=Accounts (and Contacts) answers their catalogues; another module is
    INVALID_MODULE."""
    accounts = api.get("/crm/v8/settings/fields", params={"module": "Accounts"}).json()["fields"]
    contacts = api.get("/crm/v8/settings/fields", params={"module": "Contacts"}).json()["fields"]
    assert {"Account_Name", "Billing_City", "Billing_Code", "Account_Number"} <= {
        f["api_name"] for f in accounts
    }
    assert {f["api_name"]: f["data_type"] for f in contacts}["Email"] == "email"
    assert api.get("/crm/v8/settings/fields", params={"module": "Vendors"}).json()["code"] == "INVALID_MODULE"


def test_deals_carry_the_si_project_number_field(api: httpx.Client) -> None:
    """The documented SI_Project_Number custom field exists on Deals (single line)."""
    deals = api.get("/crm/v8/settings/fields", params={"module": "Deals"}).json()["fields"]
    assert {f["api_name"]: f["data_type"] for f in deals}["SI_Project_Number"] == "text"


# ---- SI -----------------------------------------------------------------------------------------------


@pytest.fixture
def si() -> SiSim:
    return SiSim()


@pytest.fixture
def http(si: SiSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=si.transport(), base_url="http://127.0.0.1/SI", headers=KEY) as client:
        yield client


def publish(http: httpx.Client, **body: Any) -> str:
    project_id = str(uuid.uuid4())
    answer = http.post("/Publish/Projects", json={"Id": project_id, "Name": "P", **body})
    assert answer.status_code == 200, answer.text
    return project_id


def test_nested_properties_are_kept_under_sis_names_and_read_back(si: SiSim, http: httpx.Client) -> None:
    """billingAddress/contacts in any case are stored as BillingAddress/Contacts with SI's property names;
    unknown keys are dropped (as ASP.NET binds); the detail read returns them."""
    project_id = publish(
        http,
        client="Harbor LLC",
        billingaddress={"city": "Bristol", "POSTALCODE": "BS1", "Colour": "red"},
        contacts=[{"name": "Ada", "email": "ada@x", "isprimary": True}],
    )
    si.import_pending()
    detail = http.get(f"/Subscribe/Projects/{project_id}").json()
    assert detail["BillingAddress"] == {"City": "Bristol", "PostalCode": "BS1"}
    assert detail["Contacts"] == [{"Name": "Ada", "Email": "ada@x", "IsPrimary": True}]


def test_a_non_boolean_is_primary_is_refused(http: httpx.Client) -> None:
    """Contacts[0].IsPrimary = "yes": 400, nothing queued."""
    answer = http.post(
        "/Publish/Projects",
        json={"Client": "C", "Name": "P", "Contacts": [{"Name": "A", "IsPrimary": "yes"}]},
    )
    assert answer.status_code == 400


def test_clients_are_keyed_on_the_integration_client_id_then_on_the_name(
    si: SiSim, http: httpx.Client
) -> None:
    """Same IntegrationClientId, two spellings: one client (the project shows its name); another id: a
    second client; no id: matched by name; a name claimed by another integration id: a new client."""
    first = publish(http, Client="Acme Ltd", IntegrationClientId="4001", BillingAddress={"City": "Leeds"})
    second = publish(http, Client="ACME Limited", IntegrationClientId="4001")
    third = publish(http, Client="Zylker", IntegrationClientId="4002")
    by_name = publish(http, Client="zylker")
    same_name = publish(http, Client="Acme Ltd", IntegrationClientId="4099")
    si.import_pending()
    projects = si.projects
    assert projects[first]["ClientId"] == projects[second]["ClientId"]
    assert projects[second]["Client"] == "Acme Ltd"
    assert projects[third]["ClientId"] == projects[by_name]["ClientId"] != projects[first]["ClientId"]
    assert projects[same_name]["ClientId"] not in {projects[first]["ClientId"], projects[third]["ClientId"]}
    assert len(si.clients) == 3
    acme = si.clients[projects[first]["ClientId"]]
    assert (acme["IntegrationId"], acme["BillingAddress"]) == ("4001", {"City": "Leeds"})


def test_a_name_only_client_is_claimed_by_the_first_integration_id(si: SiSim, http: httpx.Client) -> None:
    """A client SI made from a name alone takes the IntegrationClientId of the next publish of that name."""
    old = publish(http, Client="Harbor LLC")
    new = publish(http, Client="harbor llc", IntegrationClientId="4001")
    si.import_pending()
    assert si.projects[old]["ClientId"] == si.projects[new]["ClientId"]
    assert si.clients[si.projects[new]["ClientId"]]["IntegrationId"] == "4001"


def test_si_assigns_a_project_number_on_import(si: SiSim, http: httpx.Client) -> None:
    """Number comes from SI (P-1001, P-1002, ...) and is in the list entry of the export."""
    project_id = publish(http, Client="C")
    si.import_pending()
    (entry,) = http.get("/Subscribe/Projects").json()["Projects"]
    assert entry["Number"] == si.projects[project_id]["Number"] == "P-1001"
