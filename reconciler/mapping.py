"""The mapping file (TOML): its model (fields, ``[create]`` values, note templates) and where each Zoho
path is read from.

Loading and validation (errors that name the key) are :mod:`reconciler.mapping_rules`; note templates
are :mod:`reconciler.templates`; SI's field tables and the value conversions every comparison rests on
(:func:`canonical`, Zoho space) are :mod:`reconciler.convert`.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from reconciler.convert import (
    SI_FIELD_IDS,
    SI_LIST_FIELDS,
    ZohoType,
    _single,
    canonical,
    to_si_string,
)
from reconciler.templates import placeholders, render, render_template

__all__ = [
    "COQL_MAX_COLUMNS",
    "CreateValueMap",
    "FieldMap",
    "Mapping",
    "canonical",
    "load_mapping",
    "lookup_id",
    "parse_mapping",
    "render",
    "render_template",
    "to_si_leaf",
]

Direction = Literal["si_to_zoho", "zoho_to_si", "both"]
DIRECTIONS = ("si_to_zoho", "zoho_to_si", "both")
CONFLICT_POLICIES = ("si_wins", "zoho_wins", "manual")
ZOHO_TYPES = ("number", "integer", "text", "date", "datetime", "boolean")

# Zoho's COQL selects at most 500 columns since v7 (Kaizen #183; shared/reference/zoho-crm-v8.md,
# "Corrections and open questions"): a mapping needing more is refused when it is loaded.
COQL_MAX_COLUMNS = 500

# COQL returns a lookup as {"id"} only: `X.name` must be read through the join column of X's module.
_LOOKUP_NAME_COLUMNS = {"Account_Name": "Account_Name", "Contact_Name": "Full_Name", "Owner": "full_name"}


@dataclass(frozen=True)
class FieldMap:
    """One ``[[fields]]`` entry: a Zoho field and an SI field kept in step in ``direction``."""

    zoho: str
    si: str
    direction: Direction
    on_conflict: str = "manual"
    values: tuple[tuple[str, str], ...] = ()
    zoho_type: ZohoType = "text"

    @cached_property
    def si_key(self) -> str:
        return self.si.lower()

    @cached_property
    def si_field_id(self) -> int | None:
        return SI_FIELD_IDS.get(self.si_key)

    @property
    def to_zoho_side(self) -> bool:
        return self.direction in ("si_to_zoho", "both")

    @property
    def to_si_side(self) -> bool:
        return self.direction in ("zoho_to_si", "both")

    def from_si(self, raw: Any) -> Any:
        """An SI value in Zoho space: value map first (exact SI text), then the Zoho type."""
        if raw is not None:
            for si_value, zoho_value in self.values:
                if str(raw) == si_value:
                    return canonical(zoho_value, self.zoho_type)
        return canonical(raw, self.zoho_type)

    def from_zoho(self, raw: Any) -> Any:
        return canonical(raw, self.zoho_type)

    def si_value(self, zoho_value: Any) -> str:
        """A Zoho-space value as the SI string to send (the value map read backwards)."""
        for si_value, mapped in self.values:
            if canonical(mapped, self.zoho_type) == zoho_value:
                return si_value
        return to_si_string(zoho_value, self.si_key)


@dataclass(frozen=True)
class CreateValueMap:
    """A ``[create]`` value picked by a deal field's value: ``TemplateName = { zoho = "Type", values =
    { "Residential" = "Res Standard" }, default = "Res Standard" }`` (Zoho value = SI value; the SI values
    are already in the JSON form the publish body takes)."""

    si: str
    zoho: str
    values: tuple[tuple[str, Any], ...]
    default: Any = None
    has_default: bool = False

    def pick(self, raw: Any) -> tuple[bool, Any]:
        """(found, SI value) for the deal's value ``raw``: its entry, else the default; an empty value
        takes the default too, or nothing (found, None) when there is none."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return True, self.default
        text = match_text(raw)
        for zoho_value, si_value in self.values:
            if zoho_value == text:
                return True, si_value
        return self.has_default, self.default


def match_text(raw: Any) -> str:
    """A Zoho value as a value map's key matches it: text as is, ``true``/``false``, ``3`` for ``3.0``."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).strip()


def to_si_leaf(value: Any, kind: str) -> Any:
    """A value for a nested SI property (``BillingAddress.City``, ``Contacts[0].IsPrimary``) in the JSON
    form SI's schema gives it (``kind``: text, number, integer, boolean, datetime)."""
    if value is None:
        return None
    _single(value)
    if kind == "boolean":
        return canonical(value, "boolean")
    if kind == "number":
        return float(Decimal(canonical(value, "number")))
    if kind == "integer":
        return int(Decimal(canonical(value, "integer")))
    if kind == "datetime":
        return f"{canonical(value, 'date')}T00:00:00"
    return str(value)


def lookup_id(raw: Any) -> Any:
    """The id inside a lookup value (COQL answers ``Account_Name`` as ``{"id"}``); others as they are."""
    return raw.get("id") if isinstance(raw, AbcMapping) else raw


@dataclass(frozen=True)
class Mapping:
    """The whole mapping file, validated."""

    module: str = "Deals"
    flag_field: str = "Send_to_SI"
    link_field: str = "SI_Project_ID"
    status_field: str | None = "SI_Sync_Status"
    create: tuple[tuple[str, str], ...] = (
        ("Name", "Deal_Name"),
        ("Client", "Account_Name.name"),
        ("IntegrationClientId", "Account_Name.id"),
    )
    create_constants: tuple[tuple[str, Any], ...] = ()
    # [create] value maps (a value picked by a deal field's value) and, for every nested key that
    # [create] or [create.constants] names (``BillingAddress.City``), the kind of value SI's schema takes.
    create_maps: tuple[CreateValueMap, ...] = ()
    create_kinds: tuple[tuple[str, str], ...] = ()
    fields: tuple[FieldMap, ...] = ()
    change_order_title: str = "Change order {CONumber}: {COName}"
    change_order_body: str = "Status: {COStatus}. Type: {COType}. Price: {Price}."
    source: str = field(default="<default>", compare=False)

    def zoho_paths(self) -> list[str]:
        """Every Zoho field path the cycle reads (mapping paths, not yet COQL columns)."""
        paths = [self.flag_field, self.link_field]
        if self.status_field:
            paths.append(self.status_field)
        paths += [path for _, path in self.create]
        paths += [vmap.zoho for vmap in self.create_maps]
        paths += [f.zoho for f in self.fields]
        return list(dict.fromkeys(paths))

    def si_keys_needed(self) -> set[str]:
        """SI fields (lower-case) the field sync reads."""
        return {f.si_key for f in self.fields if f.to_zoho_side} | {
            f.si_key for f in self.fields if f.to_si_side
        }

    def template_keys(self) -> set[str]:
        keys: set[str] = set()
        for template in (self.change_order_title, self.change_order_body):
            keys |= {name.lower() for name in placeholders(template)}
        return keys

    def coql_columns(self) -> list[str]:
        """The COQL columns the deal read selects: ``id``, ``Modified_Time`` and every mapped path."""
        columns = ["id", "Modified_Time", *(zoho_column(path) for path in self.zoho_paths())]
        return list(dict.fromkeys(columns))

    def needs_project_detail(self) -> bool:
        """Whether field sync needs more than the list payload (ProjectInfo) gives."""
        return bool(self.si_keys_needed() - SI_LIST_FIELDS)

    def needs_change_order_detail(self) -> bool:
        """Whether a change-order message needs a detail read (for its notes or its fields)."""
        return bool(self.template_keys() - SI_LIST_FIELDS) or self.needs_project_detail()


def zoho_column(path: str) -> str:
    """The COQL column for a mapping path: ``Account_Name.name`` -> ``Account_Name.Account_Name``.

    ``X.id`` is the lookup column ``X`` itself: COQL answers a lookup as ``{"id"}`` (the id is read out
    of it), so the account's id costs no join.
    """
    if "." not in path:
        return path
    if path.endswith(".id"):
        return path[: -len(".id")]
    lookup, attribute = path.split(".", 1)
    if attribute == "name" and lookup in _LOOKUP_NAME_COLUMNS:
        return f"{lookup}.{_LOOKUP_NAME_COLUMNS[lookup]}"
    return path


# ---- loading and validation (the rules live in reconciler.mapping_rules) ----------------------------


def load_mapping(path: Path) -> Mapping:
    """Read and validate the mapping file; every problem is one line of one ConfigError (exit 78)."""
    from reconciler.mapping_rules import load  # the rules build this module's classes

    return load(path)


def parse_mapping(data: dict[str, Any], *, source: str = "<mapping>") -> Mapping:
    """Validate parsed TOML (``data``) into a :class:`Mapping`; ``source`` names it in the problems."""
    from reconciler.mapping_rules import parse

    return parse(data, source=source)
