"""Pure: the mapping held against Zoho's field catalogue (``GET /settings/fields``), for ``reconciler check``.

Every field the mapping names must exist on the module with a type that can hold what flows through it.
A field the reconciler *writes* (the link and status fields, and every ``si_to_zoho``/``both`` field) must
also be writable: not ``read_only`` (for this user), not ``field_read_only`` (for anyone), not closed to
``api_update``, and not a formula (Zoho computes those). Field metadata keys follow Zoho's getFields
documentation (v8 ``fields`` operation: ``data_type``, ``read_only``, ``field_read_only``,
``operation_type.api_update``, ``lookup.module.api_name``).
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from typing import Any

from reconciler.mapping import Mapping

__all__ = ["COMPATIBLE", "field_problems", "lookup_scopes"]

# Our value kind -> Zoho data_type values that can hold it.
COMPATIBLE: dict[str, frozenset[str]] = {
    "number": frozenset({"currency", "double", "decimal", "integer", "bigint", "percent", "formula"}),
    "integer": frozenset({"integer", "bigint", "double", "decimal", "currency"}),
    "text": frozenset({"text", "textarea", "picklist", "email", "phone", "website", "autonumber"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"datetime"}),
    "boolean": frozenset({"boolean"}),
    "lookup": frozenset({"lookup", "ownerlookup", "userlookup"}),
}

# The lookups a default Deals layout has, for when the catalogue could not be read.
_LOOKUP_MODULES = {"Account_Name": "Accounts", "Contact_Name": "Contacts"}


def _wanted(mapping: Mapping) -> list[tuple[str, str, str, bool]]:
    """(mapping key, Zoho field, value kind, written by us) for every field the mapping names."""
    wanted = [
        ("zoho.flag_field", mapping.flag_field, "boolean", False),
        ("zoho.link_field", mapping.link_field, "text", True),
    ]
    if mapping.status_field:
        wanted.append(("zoho.status_field", mapping.status_field, "text", True))
    for si_name, path in mapping.create:
        kind = "lookup" if "." in path else "text"
        wanted.append((f"create.{si_name}", path.split(".", 1)[0], kind, False))
    for index, f in enumerate(mapping.fields):
        wanted.append((f"fields[{index}].zoho", f.zoho, f.zoho_type, f.to_zoho_side))
    return wanted


def _unwritable(entry: AbcMapping[str, Any]) -> str | None:
    """Why Zoho will not take a write to this field, or None."""
    operations = entry.get("operation_type")
    if entry.get("data_type") == "formula":
        return "a formula field (Zoho computes it)"
    if entry.get("field_read_only") is True:
        return "read-only for everyone (field_read_only)"
    if entry.get("read_only") is True:
        return "read-only for the user of this grant (read_only)"
    if isinstance(operations, AbcMapping) and operations.get("api_update") is False:
        return "closed to updates through the API (operation_type.api_update is false)"
    return None


def field_problems(mapping: Mapping, catalogue: Sequence[AbcMapping[str, Any]]) -> list[str]:
    """One line per mapped field that Zoho lacks, cannot hold the value, or will not let us write."""
    fields = {str(f.get("api_name")): f for f in catalogue}
    problems: list[str] = []
    for key, name, kind, written in _wanted(mapping):
        entry = fields.get(name)
        if entry is None:
            missing = f"Zoho {mapping.module} has no field {name}"
            problems.append(f"mapping {key}: {missing}; create it (see README) or fix the key")
            continue
        data_type = str(entry.get("data_type") or "")
        checked = written or kind != "text"  # anything can be read as text; a write must fit the field
        if checked and kind in COMPATIBLE and data_type not in COMPATIBLE[kind]:
            problems.append(
                f"mapping {key}: Zoho field {name} is {data_type}, which cannot hold a {kind} value"
            )
            continue
        reason = _unwritable(entry) if written else None
        if reason is not None:
            problems.append(
                f"mapping {key}: Zoho field {name} is {reason}, and the reconciler writes it; map another"
                " field or change the field in Zoho"
            )
    return problems


def lookup_scopes(lookups: Sequence[str], catalogue: Sequence[AbcMapping[str, Any]] | None) -> list[str]:
    """The read scope of each lookup's module (``Account_Name`` -> ``ZohoCRM.modules.accounts.READ``)."""
    modules: dict[str, str] = dict(_LOOKUP_MODULES)
    for entry in catalogue or ():
        lookup = entry.get("lookup")
        module = lookup.get("module") if isinstance(lookup, AbcMapping) else None
        api_name = module.get("api_name") if isinstance(module, AbcMapping) else None
        if isinstance(api_name, str) and api_name:
            modules[str(entry.get("api_name"))] = api_name
    return [f"ZohoCRM.modules.{modules.get(name, name).lower()}.READ" for name in lookups]
