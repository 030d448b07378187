"""Pure: the mapping held against Zoho's field catalogue (``GET /settings/fields``), for ``reconciler check``.

Every field the mapping names must exist on the module with a type that can hold what flows through it;
every field it reads through a lookup (``Account_Name.Billing_City``, ``Contact_Name.Email``) must exist
on the looked-up module (its own catalogue) and hold a single value of the kind the SI property takes.
A field the reconciler *writes* (the link and status fields, and every ``si_to_zoho``/``both`` field) must
also be writable: not ``read_only`` (for this user), not ``field_read_only`` (for anyone), not closed to
``api_update``, and not a formula (Zoho computes those). Field metadata keys follow Zoho's getFields
documentation (v8 ``fields`` operation: ``data_type``, ``read_only``, ``field_read_only``,
``operation_type.api_update``, ``lookup.module.api_name``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Mapping as AbcMapping
from typing import Any

from reconciler.convert import si_type
from reconciler.mapping import Mapping, zoho_column

__all__ = ["COMPATIBLE", "USER_FIELDS", "field_problems", "join_problems", "joined_reads", "lookup_scopes"]

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

# What a field read through a lookup may be, by the kind of SI property it fills: any single value reads
# as text; a boolean, a number or a date must be one.
_SCALARS = COMPATIBLE["text"] | COMPATIBLE["number"] | COMPATIBLE["integer"] | {"date", "datetime", "boolean"}
_READ_THROUGH = {
    "text": _SCALARS,
    "number": COMPATIBLE["number"],
    "integer": COMPATIBLE["integer"],
    "date": frozenset({"date", "datetime"}),
    "datetime": frozenset({"date", "datetime"}),
    "boolean": COMPATIBLE["boolean"],
}
# What a join to a user (an owner lookup such as Owner) reads: the Users API's keys. Zoho's fields
# metadata API does not describe users, so these are taken as given.
USER_FIELDS = frozenset({"full_name", "first_name", "last_name", "email"})
_USER_LOOKUPS = frozenset({"ownerlookup", "userlookup"})

# The lookups a default Deals layout has, for when the catalogue could not be read.
_LOOKUP_MODULES = {"Account_Name": "Accounts", "Contact_Name": "Contacts", "Owner": "Users"}


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
    for vmap in mapping.create_maps:
        kind = "lookup" if "." in vmap.zoho else "text"
        wanted.append((f"create.{vmap.si}.zoho", vmap.zoho.split(".", 1)[0], kind, False))
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
        if kind == "lookup" and data_type in _USER_LOOKUPS:
            continue  # an owner lookup (Owner): read like a lookup, through Zoho's users
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
    """The read scope of each lookup's module (``Account_Name`` -> ``ZohoCRM.modules.accounts.READ``;
    an owner lookup reads users: ``ZohoCRM.users.READ``)."""
    modules: dict[str, str] = dict(_LOOKUP_MODULES)
    for entry in catalogue or ():
        module = _target(entry)
        if module is not None:
            modules[str(entry.get("api_name"))] = module
    scopes = []
    for name in lookups:
        module = modules.get(name, name)
        scopes.append("ZohoCRM.users.READ" if module == "Users" else f"ZohoCRM.modules.{module.lower()}.READ")
    return scopes


def _target(entry: AbcMapping[str, Any]) -> str | None:
    """The module a lookup field points at (``Users`` for an owner lookup), or None for another field."""
    if entry.get("data_type") in _USER_LOOKUPS:
        return "Users"
    lookup = entry.get("lookup")
    module = lookup.get("module") if isinstance(lookup, AbcMapping) else None
    api_name = module.get("api_name") if isinstance(module, AbcMapping) else None
    return api_name if isinstance(api_name, str) and api_name else None


def joined_reads(mapping: Mapping) -> list[tuple[str, str, str]]:
    """(mapping key, COQL column, kind of value wanted) for every field the mapping reads through a lookup
    (``Account_Name.Billing_City`` -> ``Account_Name.Billing_City``; ``Contact_Name.name`` ->
    ``Contact_Name.Full_Name``); ``X.id`` reads the lookup itself and is not listed."""
    kinds = dict(mapping.create_kinds)
    reads: list[tuple[str, str, str]] = []
    for si_name, path in mapping.create:
        kind = kinds.get(si_name) or si_type(si_name.lower())
        reads.append((f"create.{si_name}", zoho_column(path), kind))
    reads += [(f"create.{m.si}.zoho", zoho_column(m.zoho), "text") for m in mapping.create_maps]
    return [(key, column, kind) for key, column, kind in reads if "." in column]


def join_problems(
    mapping: Mapping,
    catalogue: Sequence[AbcMapping[str, Any]],
    catalogue_of: Callable[[str], Sequence[AbcMapping[str, Any]]],
) -> list[str]:
    """One line per field read through a lookup that the looked-up module lacks or that cannot hold the
    value (its module's catalogue from ``catalogue_of(module)``, asked once per module). A first hop the
    deal lacks is :func:`field_problems`' to report."""
    problems: list[str] = []
    for key, column, kind in joined_reads(mapping):
        *hops, leaf = column.split(".")
        fields = {str(f.get("api_name")): f for f in catalogue}
        module = mapping.module
        for depth, hop in enumerate(hops):
            entry = fields.get(hop)
            target = _target(entry) if entry is not None else None
            if target is None and depth == 0 and entry is not None and entry.get("data_type") == "lookup":
                target = _LOOKUP_MODULES.get(hop)  # a lookup whose catalogue entry does not name its module
            if target is None:
                if depth:  # the first hop is field_problems' to report
                    lacks = "has no field" if entry is None else "has a field that is not a lookup:"
                    problems.append(f"mapping {key}: Zoho {module} {lacks} {hop}; fix the path")
                break
            module = target
            if module == "Users":
                fields = {name: {"api_name": name, "data_type": "text"} for name in USER_FIELDS}
            else:
                fields = {str(f.get("api_name")): f for f in catalogue_of(module)}
        else:
            entry = fields.get(leaf)
            if entry is None:
                problems.append(f"mapping {key}: Zoho {module} has no field {leaf}; fix the path")
                continue
            data_type = str(entry.get("data_type") or "")
            if data_type not in _READ_THROUGH.get(kind, _SCALARS):
                problems.append(
                    f"mapping {key}: Zoho field {leaf} on {module} is {data_type}, which cannot fill a {kind}"
                    " value"
                )
    return problems
