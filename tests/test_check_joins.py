"""`reconciler check` and the fields a mapping reads through lookups: every joined field must exist on the
looked-up module (its own fields metadata) with a type that fits; the example mapping passes; a missing
Contacts scope is named as such. In-process against the simulators; the example also through the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from reconciler.check import CheckReport, run_check
from reconciler.check_fields import join_problems, joined_reads, lookup_scopes
from reconciler.clients.http import RetryPolicy
from reconciler.mapping import load_mapping, parse_mapping
from reconciler.sim.harness import SimPair
from reconciler.sim.zoho import ZohoSim, default_fields_meta
from reconciler.sim.zoho.state import NEEDED_SCOPES
from tests.conftest import DEFAULT_MAPPING, ROOT, run_cli

EXAMPLE = ROOT / "config" / "mapping.example.toml"


def check(pair: SimPair, tmp_path: Path, mapping: Path = DEFAULT_MAPPING) -> CheckReport:
    settings = pair.settings(tmp_path / "reconciler.db", mapping)
    return run_check(
        settings, load_mapping(mapping), transport=pair.transport(), policy=RetryPolicy.no_waits(attempts=2)
    )


def with_deal(pair: SimPair) -> SimPair:
    account = pair.zoho.add_account("Acme", Billing_City="Leeds", Account_Number="A-1")
    contact = pair.zoho.add_contact("Lovelace", "Ada", Email="ada@acme.example")
    pair.zoho.add_deal(
        Deal_Name="D", Account_Name=account, Contact_Name=contact, Type="Residential", Send_to_SI=True
    )
    return pair


def probe(report: CheckReport, name: str) -> tuple[str, str]:
    found = next(p for p in report.probes if p.name == name)
    return found.status, found.detail


def test_check_validates_the_example_mapping(tmp_path: Path) -> None:
    """The example (every new form: nested keys, a value map, ClientNumber, constants) passes every probe;
    the joined modules' fields are read once each."""
    pair = with_deal(SimPair())
    report = check(pair, tmp_path, EXAMPLE)
    assert report.exit_code == 0, report.problems
    status, detail = probe(report, "zoho.fields")
    assert status == "ok" and "read through lookups" in detail and "Accounts, Contacts" in detail
    modules = [p for m, p, _ in pair.zoho.requests if p == "/crm/v8/settings/fields"]
    assert len(modules) == 3
    assert probe(report, "zoho.coql") == (
        "ok",
        "the deals query (full read, LIMIT 1) answered: 1 row with every column",
    )


def test_check_cli_accepts_the_example_mapping_offline_and_online(served_sims, tmp_path: Path) -> None:
    """`reconciler check --offline` and `reconciler check` with the shipped example: exit 0."""
    with_deal(served_sims)
    env = served_sims.environment(tmp_path / "reconciler.db", EXAMPLE)
    offline = run_cli(["check", "--offline"], env, tmp_path)
    assert offline.returncode == 0, offline.stderr
    assert (
        "11 nested [create] keys valid in SI's Project schema (BillingAddress, Contacts[0])."
        in offline.stdout
    )
    online = run_cli(["check"], env, tmp_path)
    assert online.returncode == 0, online.stdout + online.stderr


def test_a_joined_field_the_account_lacks_stops_check_with_78(tmp_path: Path) -> None:
    """Billing_Code removed from Accounts: zoho.fields FAILs naming the key and the module; exit 78."""
    pair = with_deal(SimPair())
    pair.zoho.module_fields["Accounts"] = [
        f for f in pair.zoho.module_fields["Accounts"] if f["api_name"] != "Billing_Code"
    ]
    report = check(pair, tmp_path)
    assert report.exit_code == 78
    assert report.problems == [
        "mapping create.BillingAddress.PostalCode: Zoho Accounts has no field Billing_Code; fix the path"
    ]


def test_a_joined_field_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    """A boolean SI property (IsPrimary) read from a Contacts text field, and a text property from a
    multi-select: both named with the Zoho type."""
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        textwrap.dedent(
            """
            [create]
            Name = "Deal_Name"
            Client = "Account_Name.name"
            "Contacts[0].Name" = "Contact_Name.name"
            "Contacts[0].IsPrimary" = "Contact_Name.Title"
            BillingAddress.Country = "Account_Name.Industry"
            """
        )
    )
    pair = with_deal(SimPair())
    industry = next(f for f in pair.zoho.module_fields["Accounts"] if f["api_name"] == "Industry")
    industry["data_type"] = "multiselectpicklist"
    report = check(pair, tmp_path, mapping)
    assert report.exit_code == 78
    assert sorted(report.problems) == [
        "mapping create.BillingAddress.Country: Zoho field Industry on Accounts is multiselectpicklist, which"
        " cannot fill a text value",
        "mapping create.Contacts[0].IsPrimary: Zoho field Title on Contacts is text, which cannot fill a"
        " boolean value",
    ]


def test_a_grant_without_the_contacts_scope_names_that_scope_alone(tmp_path: Path) -> None:
    """The default mapping joins accounts and contacts; a grant lacking contacts.READ is told exactly that."""
    pair = with_deal(SimPair(zoho=ZohoSim(scopes=NEEDED_SCOPES - {"ZohoCRM.modules.contacts.READ"})))
    report = check(pair, tmp_path)
    assert report.exit_code == 1
    assert probe(report, "zoho.coql") == (
        "FAIL",
        "OAUTH_SCOPE_MISMATCH: add ZohoCRM.modules.contacts.READ to the grant (the deals query joins"
        " Contact_Name)",
    )


def test_the_pure_join_checks() -> None:
    """joined_reads lists what goes through a lookup (X.id does not); Owner.name reads users (no catalogue);
    an owner join's scope is ZohoCRM.users.READ."""
    mapping = parse_mapping(
        {"create": {"Name": "Deal_Name", "Client": "Account_Name.name", "SalesRep": "Owner.name"}}
    )
    assert joined_reads(mapping) == [
        ("create.Client", "Account_Name.Account_Name", "text"),
        ("create.SalesRep", "Owner.full_name", "text"),
    ]
    asked: list[str] = []

    def catalogue_of(module: str) -> list[dict[str, Any]]:
        asked.append(module)
        return default_fields_meta(module)

    assert join_problems(mapping, default_fields_meta(), catalogue_of) == []
    assert asked == ["Accounts"]
    assert lookup_scopes(["Owner", "Contact_Name"], default_fields_meta()) == [
        "ZohoCRM.users.READ",
        "ZohoCRM.modules.contacts.READ",
    ]
