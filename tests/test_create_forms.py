"""The ``[create]`` forms of the mapping file: nested SI keys, value maps, the client id, COQL's limits.

Each bad form stops the program with one line naming the key (a ConfigError: exit 78 from the CLI).
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import ConfigError
from reconciler.mapping import Mapping, parse_mapping
from reconciler.queries import deal_columns, joined_modules
from tests.conftest import run_cli

HEAD = """
[create]
Name = "Deal_Name"
Client = "Account_Name.name"
"""


def load(text: str) -> Mapping:
    return parse_mapping(tomllib.loads(textwrap.dedent(text)), source="m.toml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return list(caught.value.problems)


# ---- nested SI keys ----------------------------------------------------------------------------------


def test_nested_keys_read_the_same_in_every_toml_form() -> None:
    """Dotted keys, quoted keys, [create.X] tables and [[create.Contacts]] all give the same entries,
    spelled as SI spells them."""
    dotted = load(
        HEAD
        + """
        BillingAddress.City = "Account_Name.Billing_City"
        "Contacts[0].Email" = "Contact_Name.Email"
        """
    )
    tables = load(
        HEAD
        + """
        [create.billingaddress]
        city = "Account_Name.Billing_City"
        [[create.Contacts]]
        EMAIL = "Contact_Name.Email"
        """
    )
    quoted = load(
        HEAD
        + """
        "BillingAddress.City" = "Account_Name.Billing_City"
        "Contacts[0]".Email = "Contact_Name.Email"
        """
    )
    for mapping in (dotted, tables, quoted):
        create = dict(mapping.create)
        assert create["BillingAddress.City"] == "Account_Name.Billing_City"
        assert create["Contacts[0].Email"] == "Contact_Name.Email"
        assert dict(mapping.create_kinds) == {"BillingAddress.City": "text", "Contacts[0].Email": "text"}


def test_nested_constants_take_the_type_sis_schema_gives() -> None:
    """Contacts[0].IsPrimary is a boolean in SI's Contact: true is kept, "yes" is read as true."""
    mapping = load(
        HEAD
        + """
        [create.constants]
        "Contacts[0].IsPrimary" = "yes"
        "SiteAddress.Country" = "UK"
        """
    )
    assert dict(mapping.create_constants) == {"Contacts[0].IsPrimary": True, "SiteAddress.Country": "UK"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            'BillingAddress.Town = "Account_Name.Billing_City"',
            "create.BillingAddress.Town: SI's BillingAddress (Address) has no property Town",
        ),
        (
            '"Contacts.Email" = "Contact_Name.Email"',
            "create.Contacts.Email: Contacts is a list in SI's Project",
        ),
        (
            '"Contacts[one].Email" = "Contact_Name.Email"',
            "create.Contacts[one].Email: Contacts[one]: a list index",
        ),
        (
            '"SiteAddress[0].City" = "Account_Name.Shipping_City"',
            "create.SiteAddress[0].City: SiteAddress is not a list",
        ),
        (
            'BillingAddress = "Account_Name.Billing_City"',
            "create.BillingAddress: BillingAddress is an object",
        ),
        (
            '"Contacts[1].Email" = "Contact_Name.Email"',
            "create.Contacts[1]: SI's Contacts is a list: index 1 needs Contacts[0] first",
        ),
        ('Colour = "Deal_Name"', "create.Colour: is not an SI project field"),
        ('Budget = "Amount + 1"', "create.Budget: 'Amount + 1' is not a Zoho field path"),
    ],
)
def test_a_nested_key_sis_schema_does_not_allow_is_a_mapping_error_naming_it(line: str, problem: str) -> None:
    """Unknown property, a list without (or with a bad) index, a gap, an index on an object: one line."""
    found = problems(HEAD + line)
    assert any(p.startswith(f"mapping m.toml: {problem}") for p in found), found


def test_a_key_given_twice_and_two_primary_contacts_are_refused() -> None:
    """The same SI key in two spellings, and two contacts marked primary (SI allows one)."""
    found = problems(
        HEAD
        + """
        BillingAddress.City = "Account_Name.Billing_City"
        "billingaddress.city" = "Account_Name.Shipping_City"
        "Contacts[0].Name" = "Contact_Name.name"
        "Contacts[1].Name" = "Deal_Name"
        [create.constants]
        "Contacts[0].IsPrimary" = true
        "Contacts[1].IsPrimary" = true
        """
    )
    assert any("create.billingaddress.city: BillingAddress.City is already given by" in p for p in found)
    assert any(
        "create.constants.Contacts[1].IsPrimary: Contacts[0].IsPrimary is primary already" in p for p in found
    )


# ---- the client id ------------------------------------------------------------------------------------


def test_every_publish_carries_the_account_id_unless_configured_away() -> None:
    """IntegrationClientId defaults to Account_Name.id (the lookup column itself, no join); = false drops
    it; another path replaces it."""
    default = load(HEAD)
    assert ("IntegrationClientId", "Account_Name.id") in default.create
    assert "Account_Name" in deal_columns(default) and joined_modules(deal_columns(default)) == [
        "Account_Name"
    ]
    off = load(HEAD + "IntegrationClientId = false\n")
    assert all(si != "IntegrationClientId" for si, _ in off.create)
    other = load(
        HEAD + 'IntegrationClientId = "Contact_Name.id"\nClientNumber = "Account_Name.Account_Number"\n'
    )
    assert dict(other.create)["IntegrationClientId"] == "Contact_Name.id"
    assert dict(other.create)["ClientNumber"] == "Account_Name.Account_Number"


# ---- value maps ---------------------------------------------------------------------------------------


def test_a_value_map_over_a_deal_field_is_read_with_its_default() -> None:
    """TemplateName = { zoho = "Type", values = {...}, default = ... }: Zoho value -> SI value."""
    templates = '{ "Residential" = "Res Standard", "Commercial" = "Com Standard" }'
    mapping = load(
        HEAD
        + f"""
        TemplateName = {{ zoho = "Type", values = {templates}, default = "Res Standard" }}
        "Contacts[0].IsPrimary" = {{ zoho = "Stage", values = {{ "Closed Won" = true }} }}
        """
    )
    template, primary = mapping.create_maps
    assert (template.si, template.zoho, template.has_default) == ("TemplateName", "Type", True)
    assert template.pick("Commercial") == (True, "Com Standard")
    assert template.pick("Industrial") == (True, "Res Standard")
    assert template.pick(None) == (True, "Res Standard")
    assert primary.pick("Closed Won") == (True, True)
    assert primary.pick("Qualification") == (False, None)
    assert "Type" in deal_columns(mapping) and "Stage" in deal_columns(mapping)


@pytest.mark.parametrize(
    ("value_map", "problem"),
    [
        (
            '{ zoho = "Type", values = { "A" = "B" }, colour = "red" }',
            "create.TemplateName.colour: unknown key",
        ),
        ('{ values = { "A" = "B" } }', "create.TemplateName.zoho: required"),
        ('{ zoho = "Type", values = "A=B" }', "create.TemplateName.values: must be a table"),
    ],
)
def test_a_bad_value_map_is_a_mapping_error_naming_the_key(value_map: str, problem: str) -> None:
    """An unknown key, no zoho field, values that are not a table."""
    found = problems(HEAD + f"TemplateName = {value_map}\n")
    assert any(f"mapping m.toml: {problem}" in p for p in found), found


def test_a_value_map_value_must_fit_the_si_property() -> None:
    """IsPrimary is a boolean: "perhaps" is refused, naming the entry."""
    found = problems(HEAD + '"Contacts[0].IsPrimary" = { zoho = "Stage", values = { "Won" = "perhaps" } }\n')
    assert any("create.Contacts[0].IsPrimary.values.Won: expected true or false" in p for p in found), found


# ---- COQL's limits ------------------------------------------------------------------------------------


def test_a_third_lookup_is_refused_naming_the_key_that_adds_it() -> None:
    """Account_Name and Contact_Name are two relations; Owner.name would be a third (COQL takes two)."""
    found = problems(HEAD + '"Contacts[0].Name" = "Contact_Name.name"\nSalesRep = "Owner.name"\n')
    assert any(p.startswith("mapping m.toml: create.SalesRep: Owner.name would join Owner") for p in found), (
        found
    )
    assert load(HEAD + 'SalesRep = "Owner.name"\n')  # two relations: fine


def test_more_than_fifteen_joined_columns_are_refused() -> None:
    """Sixteen fields read through lookups: over COQL's SELECT-clause JOIN limit."""
    lines = [f'CustomField{n} = "Account_Name.Field_{n}"' for n in range(1, 16)]
    found = problems(HEAD + "\n".join(lines))
    assert any("16 columns through lookups" in p and "at most 15" in p for p in found), found


def test_the_cli_stops_on_a_bad_nested_key_with_one_line_and_exit_78(tmp_path: Path) -> None:
    """`reconciler check --offline` with an unknown nested property: exit 78, one line naming the key."""
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(textwrap.dedent(HEAD) + 'BillingAddress.Town = "Account_Name.Billing_City"\n')
    env: dict[str, Any] = {"RECONCILER_MAPPING": str(mapping), "RECONCILER_DB": str(tmp_path / "r.db")}
    env |= {"ZOHO_CLIENT_ID": "id", "ZOHO_CLIENT_SECRET": "s", "ZOHO_REFRESH_TOKEN": "r", "SI_API_KEY": "k"}
    result = run_cli(["check", "--offline"], env, tmp_path)
    assert result.returncode == 78
    assert result.stderr.strip().splitlines() == [
        f"reconciler: mapping {mapping}: create.BillingAddress.Town: SI's BillingAddress (Address) has no"
        " property Town"
    ]
    assert "Traceback" not in result.stderr
