"""SI's Project schema as the mapping reads it: nested paths, their canonical spelling, what is refused.

The vendored copy inside the package must be D-Tools' own: compared with the full OpenAPI file when
``../shared/specs`` (or ``RECONCILER_SPECS_DIR``) has it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconciler.si_schema import is_container, resolve
from reconciler.vendor import si_schemas
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("key", "canonical", "kind"),
    [
        ("BillingAddress.City", "BillingAddress.City", "text"),
        ("billingaddress.postalcode", "BillingAddress.PostalCode", "text"),
        ("SiteAddress.Street2", "SiteAddress.Street2", "text"),
        ("Contacts[0].Email", "Contacts[0].Email", "text"),
        ("contacts[1].isprimary", "Contacts[1].IsPrimary", "boolean"),
        ("Resources[0].IsOwner", "Resources[0].IsOwner", "boolean"),
    ],
)
def test_a_nested_key_resolves_to_sis_spelling_and_kind(key: str, canonical: str, kind: str) -> None:
    """Any case in, SI's PascalCase out; the leaf's kind comes from the schema (IsPrimary is boolean)."""
    resolved = resolve(key)
    assert (resolved.key, resolved.kind, resolved.nested) == (canonical, kind, True)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("BillingAddress.Town", "SI's BillingAddress (Address) has no property Town"),
        ("Contacts[0].Nickname", "SI's Contacts[0] (Contact) has no property Nickname"),
        ("Contacts.Name", "Contacts is a list in SI's Project: give an index, Contacts[0]"),
        ("Contacts[-1].Name", "Contacts[-1]: a list index is 0, 1, 2, ..."),
        ("Contacts[0]x.Name", "'Contacts[0]x' is not a property name"),
        ("Contacts[x].Name", "Contacts[x]: a list index is 0, 1, 2, ..."),
        ("Contacts[01].Name", "Contacts[01]: a list index is 0, 1, 2, ..."),
        ("SiteAddress[0].City", "SiteAddress is not a list in SI's Project: it takes no [0]"),
        ("BillingAddress", "BillingAddress is an object in SI's Project: map its properties"),
        ("Contacts", "Contacts is a list in SI's Project: map its elements (Contacts[0].Name ...)"),
        ("Contacts[0]", "Contacts[0] is an object in SI's Project"),
        ("TemplateName.Code", "TemplateName holds a single value in SI's Project: it has no properties"),
        ("Colour.Shade", "SI's Project has no property Colour"),
    ],
)
def test_a_key_the_schema_does_not_allow_says_why(key: str, message: str) -> None:
    """Unknown properties, a list without its index, an index on an object, a key ending at an object."""
    with pytest.raises(ValueError) as caught:
        resolve(key)
    assert message in str(caught.value)


def test_objects_and_list_elements_are_containers_and_values_are_not() -> None:
    """A TOML table under BillingAddress or Contacts[0] holds nested keys; under TemplateName, a value map."""
    assert is_container("BillingAddress") and is_container("contacts[0]")
    assert not is_container("Contacts") and not is_container("TemplateName") and not is_container("Nope")


def test_the_vendored_schemas_are_d_tools_own() -> None:
    """Every schema in the package equals the one in D-Tools' published OpenAPI (skipped without it)."""
    candidates = [Path(os.environ["RECONCILER_SPECS_DIR"])] if os.environ.get("RECONCILER_SPECS_DIR") else []
    candidates.append(ROOT.parent / "shared" / "specs")
    spec = next(
        (p / "dtools-si-openapi.json" for p in candidates if (p / "dtools-si-openapi.json").is_file()), None
    )
    if spec is None:
        pytest.skip("vendor specs not found: set RECONCILER_SPECS_DIR or provide ../shared/specs")
    published = json.loads(spec.read_text(encoding="utf-8"))["components"]["schemas"]
    ours = si_schemas()
    assert "Project" in ours and {"Address", "Contact"} <= set(ours)
    assert {name: published[name] for name in ours} == ours
