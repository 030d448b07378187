"""The ``[create]`` table of the mapping file: what a new SI project is filled with, validated at start.

Forms (every problem is one line naming the key; the mapping then stops the program, exit 78):

- ``Name = "Deal_Name"``: an SI project field from a Zoho field path; ``Account_Name.Billing_City`` reads
  through a lookup (a COQL join, a selected column of the one deals query), ``Account_Name.id`` is the
  lookup's own id (no join);
- nested SI properties, checked against the vendored SI ``Project`` schema (:mod:`reconciler.si_schema`):
  ``BillingAddress.City = "..."`` (or a ``[create.BillingAddress]`` table), ``"Contacts[0].Email" = "..."``
  (or ``[[create.Contacts]]``);
- a value map over a deal field: ``TemplateName = { zoho = "Type", values = { "Residential" = "Res" },
  default = "Res" }`` (Zoho value = SI value);
- ``IntegrationClientId``: SI keys its client on it. When the table does not name it, it is
  ``Account_Name.id`` (one SI client per Zoho account, whatever the spelling of its name);
  ``IntegrationClientId = false`` leaves it out;
- ``[create.constants]``: fixed values, nested keys included (``"Contacts[0].IsPrimary" = true``).

The deals query must stay one COQL statement Zoho accepts: at most two relations (lookups, counting each
hop of a deeper path) and at most 15 joined columns (COQL-Limitations, v7/v8: "a maximum of two relations
(joins)", "a maximum of 15 SELECT clause JOINs"; the stricter reading of each is kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.convert import SI_FIELDS, to_si_json
from reconciler.mapping import CreateValueMap, Mapping, to_si_leaf, zoho_column
from reconciler.si_schema import SiKey, is_container, is_nested, resolve

__all__ = ["CLIENT_ID", "MAX_JOIN_COLUMNS", "MAX_RELATIONS", "CreateSpec", "parse_create", "query_problems"]

Problem = Callable[[str, str], None]

CLIENT_ID = ("IntegrationClientId", "Account_Name.id")  # on unless configured away
MAX_RELATIONS = 2  # COQL-Limitations: "a maximum of two relations (joins) in a select query"
MAX_JOIN_COLUMNS = 15  # COQL-Limitations v7/v8: "a maximum of 15 SELECT clause JOINs"
_VALUE_MAP_KEYS = {"zoho", "values", "default"}
# API names joined by dots: nothing but a column name (no space, no COQL text) reaches the query.
_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_REQUIRED = ("Name", "Client")


@dataclass
class CreateSpec:
    """The parsed ``[create]`` table, ready for :class:`~reconciler.mapping.Mapping`."""

    create: list[tuple[str, str]] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    maps: list[CreateValueMap] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)


def parse_create(table: dict[str, Any], problem: Problem) -> CreateSpec:
    """Validate the ``[create]`` table (with its ``constants``); each problem names its key."""
    spec = CreateSpec()
    seen: dict[str, str] = {}  # SI key (lower-case) -> the mapping key that names it
    client_id: Any = None
    raw_constants = table.get("constants", {})
    if not isinstance(raw_constants, dict):
        problem("create.constants", "must be a table")
        raw_constants = {}
    entries = _flatten([(k, v) for k, v in table.items() if k != "constants"])
    constants = _flatten(list(raw_constants.items()))
    for name, value in entries:
        if name.lower() == CLIENT_ID[0].lower() and value is False:
            client_id = False
            continue
        si = _si_key(name, f"create.{name}", problem)
        if si is None or not _once(si, f"create.{name}", seen, problem):
            continue
        if isinstance(value, dict):
            vmap = _value_map(si, f"create.{name}", value, problem)
            if vmap is not None:
                spec.maps.append(vmap)
        elif isinstance(value, str) and _PATH.fullmatch(value):
            spec.create.append((si.key if si.nested else name, value))
        else:
            problem(
                f"create.{name}",
                f"{value!r} is not a Zoho field path (API names joined by dots, e.g. Account_Name.name)",
            )
        if si is not None and si.nested:
            spec.kinds[si.key] = si.kind
    if client_id is None and CLIENT_ID[0].lower() not in seen:
        spec.create.append(CLIENT_ID)
    primaries: list[str] = []
    for name, value in constants:
        si = _si_key(name, f"create.constants.{name}", problem)
        if si is None:
            continue
        try:
            spec.constants[si.key if si.nested else name] = (
                to_si_leaf(value, si.kind) if si.nested else to_si_json(value, name.lower())
            )
        except ValueError as exc:
            problem(f"create.constants.{name}", str(exc))
            continue
        if si.nested:
            spec.kinds[si.key] = si.kind
            if si.parts[-1][0] == "IsPrimary" and spec.constants[si.key] is True:
                primaries.append(si.key)
    if len(primaries) > 1:
        problem(
            f"create.constants.{primaries[1]}",
            f"{primaries[0]} is primary already; SI marks one contact as the primary one",
        )
    _gaps(spec, problem)
    given = {name.lower() for name, _ in entries + constants}  # named, even if wrongly: one problem each
    for required in _REQUIRED:
        if required.lower() not in given:
            problem(f"create.{required}", "SI requires it on every new project: map it or set a constant")
    return spec


Entries = list[tuple[str, Any]]


def _flatten(entries: Entries, prefix: str = "") -> Entries:
    """``(key, value)`` pairs with TOML's nested tables and arrays of tables under SI's objects and lists
    spelled as dotted keys: ``BillingAddress = {City = ...}`` -> ``BillingAddress.City``;
    ``Contacts = [{...}]`` -> ``Contacts[0]...``. Any other table is left whole: a value map in
    ``[create]``, a value that is not one value in ``[create.constants]``."""
    flat: Entries = []
    for name, value in entries:
        key = f"{prefix}{name}"
        tables = isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
        if tables and is_container(f"{key}[0]"):
            for index, item in enumerate(value):
                flat += _flatten(list(item.items()), f"{key}[{index}].")
        elif isinstance(value, dict) and is_container(key):
            flat += _flatten(list(value.items()), f"{key}.")
        else:
            flat.append((key, value))
    return flat


def _si_key(name: str, where: str, problem: Problem) -> SiKey | None:
    """The SI property ``name`` addresses: a top-level field (as before) or a nested path in the schema."""
    if not is_nested(name) and name.lower() in SI_FIELDS:
        return SiKey(name, ((name, None),), "text")
    try:
        return resolve(name)
    except ValueError as exc:
        plain = not is_nested(name) and "has no property" in str(exc)
        problem(where, "is not an SI project field" if plain else str(exc))
        return None


def _once(si: SiKey, where: str, seen: dict[str, str], problem: Problem) -> bool:
    earlier = seen.get(si.key.lower())
    if earlier is not None:
        problem(where, f"{si.key} is already given by {earlier}")
        return False
    seen[si.key.lower()] = where
    return True


def _value_map(si: SiKey, where: str, table: dict[str, Any], problem: Problem) -> CreateValueMap | None:
    """``{ zoho = "Type", values = { "Zoho value" = "SI value", ... }, default = "SI value" }``."""
    bad = False
    for key in sorted(set(table) - _VALUE_MAP_KEYS):
        problem(f"{where}.{key}", "unknown key (a value map takes zoho, values and default)")
        bad = True
    zoho, values = table.get("zoho"), table.get("values", {})
    if not isinstance(zoho, str) or not _PATH.fullmatch(zoho):
        problem(f"{where}.zoho", 'required: the Zoho field whose value picks, such as "Type"')
        bad = True
    if not isinstance(values, dict):
        problem(f"{where}.values", 'must be a table of "Zoho value" = "SI value"')
        return None

    def convert(value: Any) -> Any:
        return to_si_leaf(value, si.kind) if si.nested else to_si_json(value, si.key.lower())

    pairs: list[tuple[str, Any]] = []
    for zoho_value, si_value in values.items():
        try:
            pairs.append((str(zoho_value), convert(si_value)))
        except ValueError as exc:
            problem(f"{where}.values.{zoho_value}", str(exc))
            bad = True
    default = None
    if "default" in table:
        try:
            default = convert(table["default"])
        except ValueError as exc:
            problem(f"{where}.default", str(exc))
            bad = True
    if bad:
        return None
    return CreateValueMap(si.key, str(zoho), tuple(pairs), default, "default" in table)


def _gaps(spec: CreateSpec, problem: Problem) -> None:
    """A list index must follow the ones before it: ``Contacts[1]`` needs ``Contacts[0]``."""
    keys = [k for k, _ in spec.create] + [m.si for m in spec.maps] + list(spec.constants)
    used: dict[str, set[int]] = {}
    for key in keys:
        for match in re.finditer(r"([A-Za-z0-9.\[\]]*?)\[(\d+)\]", key):
            used.setdefault(match.group(1), set()).add(int(match.group(2)))
    for name, indexes in used.items():
        missing = sorted(set(range(max(indexes) + 1)) - indexes)
        if missing:
            problem(
                f"create.{name}[{max(indexes)}]",
                f"SI's {name} is a list: index {max(indexes)} needs {name}[{missing[0]}] first",
            )


def relations(path: str) -> list[str]:
    """The lookups a path joins: ``A.B.C`` joins ``A`` and ``A.B``; ``A.id`` and ``A.B.id`` end at an id."""
    segments = (path[: -len(".id")] if path.endswith(".id") else path).split(".")
    return [".".join(segments[:n]) for n in range(1, len(segments))]


def query_problems(mapping: Mapping) -> list[tuple[str, str]]:
    """(key, problem) for a mapping whose deals query joins more than Zoho's COQL takes (relations, joined
    columns); the total column count is :mod:`reconciler.mapping_rules`' to check."""
    problems: list[tuple[str, str]] = []
    named = [(f"create.{si}", path) for si, path in mapping.create]
    named += [(f"create.{m.si}.zoho", m.zoho) for m in mapping.create_maps]
    joined: list[str] = []
    for key, path in named:
        new = [r for r in relations(path) if r not in joined]
        if len(joined) + len(new) > MAX_RELATIONS:
            problems.append(
                (
                    key,
                    f"{path} would join {', '.join(new)} besides {', '.join(joined)}: Zoho's COQL joins at"
                    f" most {MAX_RELATIONS} lookups in one query; read fewer lookups",
                )
            )
            continue
        joined += new
    join_columns = [c for c in dict.fromkeys(zoho_column(p) for _, p in named) if "." in c]
    if len(join_columns) > MAX_JOIN_COLUMNS:
        problems.append(
            (
                "[create]",
                f"the deals query would select {len(join_columns)} columns through lookups; Zoho's COQL takes"
                f" at most {MAX_JOIN_COLUMNS} (map fewer lookup fields)",
            )
        )
    return problems
