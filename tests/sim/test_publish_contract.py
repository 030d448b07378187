"""Contract: the publish body the shipped default mapping builds, nested keys included, is what D-Tools'
published OpenAPI describes, and what the SI simulator keeps.

SI's ``Project`` schema allows properties it does not name, so a body with a misspelled nested key would
still validate; the test therefore also walks every key, at every depth, through the schema.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

from reconciler.sim.harness import SimPair
from reconciler.vendor import si_schemas
from tests.conftest import cycle


def flagged_deal(sims: SimPair) -> str:
    account = sims.zoho.add_account(
        "Harbor LLC",
        Billing_Street="1 Quay St",
        Billing_City="Bristol",
        Billing_State="Avon",
        Billing_Code="BS1 4DJ",
        Billing_Country="United Kingdom",
    )
    contact = sims.zoho.add_contact(
        "Lovelace",
        "Ada",
        Email="ada@harbor.example",
        Phone="+44 117 000",
        Mobile="+44 7700 900",
        Title="Owner",
    )
    return sims.zoho.add_deal(
        Deal_Name="Harbor house AV", Account_Name=account, Contact_Name=contact, Send_to_SI=True
    )


def published(sims: SimPair) -> dict[str, Any]:
    (request,) = [r for r in sims.si.requests if r.method == "POST" and r.path == "/Publish/Projects"]
    body: dict[str, Any] = request.body
    return body


def unknown_keys(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Every key of ``value`` (recursively) that the schema does not name, compared case-insensitively."""
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref")
    if ref:
        schema = si_schemas()[str(ref).rsplit("/", 1)[1]]
    if isinstance(value, list):
        return [k for i, item in enumerate(value) for k in unknown_keys(item, schema, f"{where}[{i}]")]
    if not isinstance(value, dict):
        return []
    properties = {name.lower(): spec for name, spec in schema.get("properties", {}).items()}
    found = []
    for key, item in value.items():
        spec = properties.get(key.lower())
        found += [f"{where}.{key}"] if spec is None else unknown_keys(item, spec, f"{where}.{key}")
    return found


def test_the_default_mapping_publishes_the_account_address_and_the_primary_contact(sims, make_ctx) -> None:
    """BillingAddress from the account's billing fields, Contacts[0] from the deal's contact (primary),
    IntegrationClientId = the account id; SI keeps them and its detail read returns them."""
    deal = flagged_deal(sims)
    assert cycle(make_ctx(sims)).exit_code == 0
    body = published(sims)
    account_id = sims.zoho.deal(deal)["Account_Name"]["id"]
    assert body["IntegrationClientId"] == account_id and body["Client"] == "Harbor LLC"
    assert body["BillingAddress"] == {
        "Street1": "1 Quay St",
        "City": "Bristol",
        "State": "Avon",
        "PostalCode": "BS1 4DJ",
        "Country": "United Kingdom",
    }
    assert body["Contacts"] == [
        {
            "Name": "Ada Lovelace",
            "Email": "ada@harbor.example",
            "Phone": "+44 117 000",
            "Mobile": "+44 7700 900",
            "Title": "Owner",
            "IsPrimary": True,
        }
    ]
    sims.si.import_pending()
    project = sims.si.projects[body["Id"]]
    assert project["BillingAddress"] == body["BillingAddress"] and project["Contacts"] == body["Contacts"]
    assert sims.si.clients[project["ClientId"]]["IntegrationId"] == account_id


def test_the_publish_body_validates_against_the_published_openapi_nested_keys_included(
    sims, make_ctx, vendor_specs: ModuleType
) -> None:
    """D-Tools' OpenAPI (../shared/specs) and its vendored copy in the package both accept the body, and
    every key at every depth is a property the schema names."""
    flagged_deal(sims)
    assert cycle(make_ctx(sims)).exit_code == 0
    body = published(sims)
    assert vendor_specs.validate_request_body("si", "POST", "/Publish/Projects", body) == []
    assert unknown_keys(body, si_schemas()["Project"], "Project") == []

    folded = _lower_keys(body)  # the spec spells camelCase; SI binds any case
    resources = [
        (
            f"{_URN}{name}",
            referencing.Resource.from_contents(
                _lower_schema(schema), default_specification=referencing.jsonschema.DRAFT202012
            ),
        )
        for name, schema in si_schemas().items()
    ]
    registry = referencing.Registry().with_resources(resources)
    validator = jsonschema.Draft202012Validator({"$ref": f"{_URN}Project"}, registry=registry)
    assert [error.message for error in validator.iter_errors(folded)] == []


def test_a_misspelled_nested_key_would_be_caught() -> None:
    """The key walk is not vacuous: BillingAddress.Town and Contacts[0].Nick are reported."""
    body = {"Name": "P", "BillingAddress": {"Town": "Leeds"}, "Contacts": [{"Name": "A", "Nick": "a"}]}
    assert unknown_keys(body, si_schemas()["Project"], "Project") == [
        "Project.BillingAddress.Town",
        "Project.Contacts[0].Nick",
    ]


_URN = "urn:si:"


def _lower_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


def _lower_schema(schema: Any) -> Any:
    """The schema with property names lower-cased and refs pointing at ``urn:si:<Name>``."""
    if isinstance(schema, list):
        return [_lower_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name.lower(): _lower_schema(spec) for name, spec in value.items()}
        elif key == "$ref":
            out[key] = _URN + str(value).rsplit("/", 1)[1]
        else:
            out[key] = _lower_schema(value)
    return out
