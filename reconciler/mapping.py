"""The mapping file (TOML): its model, the SI field tables, and pure value transforms.

Loading and validation (errors that name the key) are :mod:`reconciler.mapping_rules`; note templates
are :mod:`reconciler.templates`.

Every comparison the planner makes happens in *Zoho space*: an SI value is mapped through the entry's
value map and converted to the Zoho field's type, then compared with the deal's value converted the
same way. :func:`canonical` defines that form (numbers as normalised decimal strings, dates as
``YYYY-MM-DD``, booleans as ``True``/``False``, empty text as ``None``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

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
ZohoType = Literal["number", "integer", "text", "date", "datetime", "boolean"]
DIRECTIONS = ("si_to_zoho", "zoho_to_si", "both")
CONFLICT_POLICIES = ("si_wins", "zoho_wins", "manual")
ZOHO_TYPES = ("number", "integer", "text", "date", "datetime", "boolean")

# ProjectFieldId for POST /Publish/Projects/Update, as D-Tools publishes it: the SI OpenAPI's
# UpdateProjectField.projectFieldId table (dtools-si.md, corrections). CustomField1..54 = 101..154 and
# CustomField65..75 = 155..165; CustomField55..64 (the decimal ones) have no id, so SI cannot receive them.
# The jump may be a vendor typo, but it is the only published source: followed as written.
SI_FIELD_IDS: dict[str, int] = {
    "name": 1, "progress": 2, "startdate": 3, "enddate": 4, "estimatedclosedate": 5, "closedate": 6,
    "budget": 7, "scopeofwork": 8, "assignedto": 9, "salesrep": 10, "projectmanager": 11, "designer": 12,
    "client": 13, "clientnumber": 14, "clientponumber": 15,
}  # fmt: skip
SI_FIELD_IDS.update({f"customfield{n}": 100 + n for n in range(1, 55)})
SI_FIELD_IDS.update({f"customfield{n}": 90 + n for n in range(65, 76)})

# SI Project properties and their types (SI OpenAPI ``Project`` schema), keyed lower-case.
_SI_DECIMAL = {
    "price",
    "cost",
    "tax",
    "hours",
    "budget",
    "margin",
    "markup",
    "pricewithouttax",
    "currencyrate",
}
_SI_INTEGER = {"revision", "coid", "publishedonunixtimems"}
_SI_DATETIME = {
    "startdate", "enddate", "estimatedclosedate", "closedate", "createdon", "updatedon", "approvedon",
    "coacceptedon", "corejectedon", "cocreatedon", "publishedon", "importedon",
}  # fmt: skip
_SI_BOOLEAN = {"approved", "ischangeorder", "quantitybased", "isitemleveltax", "deleted", "archived"}
_SI_TEXT = {
    "templatename", "id", "integrationprojectid", "messageid", "client", "clientid", "integrationclientid",
    "clientnumber", "name", "number", "progress", "assignedto", "salesrep", "projectmanager", "designer",
    "currencycode", "productpricetype", "clientponumber", "accountingestimatenumbers", "scopeofwork", "notes",
    "productaxid", "labortaxid", "updatedby", "updatedbyemail", "createdby", "publishedby", "conumber",
    "coname", "costatus", "cotype", "conotes",
}  # fmt: skip
for _n in range(1, 76):
    _key = f"customfield{_n}"
    if 15 <= _n <= 18 or 55 <= _n <= 64:
        _SI_DECIMAL.add(_key)
    elif 19 <= _n <= 22:
        _SI_DATETIME.add(_key)
    elif 23 <= _n <= 26 or _n >= 65:
        _SI_BOOLEAN.add(_key)
    else:
        _SI_TEXT.add(_key)
SI_FIELDS = frozenset(_SI_DECIMAL | _SI_INTEGER | _SI_DATETIME | _SI_BOOLEAN | _SI_TEXT)

# What GET /Subscribe/Projects (ProjectInfo) carries; anything else needs a detail GET.
SI_LIST_FIELDS = frozenset({
    "id", "integrationprojectid", "messageid", "clientid", "client", "clientnumber", "name", "number",
    "progress", "approved", "conumber", "currencycode", "price", "importedon", "publishedon",
    "publishedonunixtimems", "deleted", "archived",
})  # fmt: skip

# Zoho's COQL selects at most 500 columns since v7 (Kaizen #183; shared/reference/zoho-crm-v8.md,
# "Corrections and open questions"): a mapping needing more is refused when it is loaded.
COQL_MAX_COLUMNS = 500

# COQL returns a lookup as {"id"} only: `X.name` must be read through the join column of X's module.
_LOOKUP_NAME_COLUMNS = {"Account_Name": "Account_Name", "Contact_Name": "Full_Name", "Owner": "full_name"}


def si_type(si_key: str) -> ZohoType:
    """The Zoho-side type an SI field converts to when nothing else is said."""
    if si_key in _SI_DECIMAL:
        return "number"
    if si_key in _SI_INTEGER:
        return "integer"
    if si_key in _SI_DATETIME:
        return "date"
    if si_key in _SI_BOOLEAN:
        return "boolean"
    return "text"


_DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def _single(value: Any) -> None:
    """Raise ValueError for an object or a list where one value belongs (a lookup of unexpected shape)."""
    if isinstance(value, AbcMapping):
        raise ValueError(f"expected a single value, got an object with keys {', '.join(map(str, value))}")
    if isinstance(value, list | tuple | set):
        raise ValueError(f"expected a single value, got a list of {len(value)}")


def canonical(value: Any, kind: ZohoType) -> Any:
    """``value`` in the comparable form for ``kind``; raises ValueError naming what is wrong."""
    # Fast paths for what the APIs send most (the planner calls this for every field of every deal):
    # plain text, ints, and floats whose shortest repr is already a normalised decimal.
    kind_of = type(value)
    if value is None:
        return None
    if kind == "text":
        if kind_of is str:
            return value if value.strip() else None
        if kind_of is int or kind_of is float:
            return str(value)
    elif kind in ("number", "integer"):
        if kind_of is int:
            return str(value)
        if kind_of is float and math.isfinite(value):
            if value.is_integer():
                return str(int(value))
            text = repr(value)
            if kind == "number" and "e" not in text:
                return text
    if isinstance(value, str) and value.strip() == "":
        return None
    _single(value)
    if kind in ("number", "integer"):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        text = str(value).strip() if not isinstance(value, float) else repr(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"expected a number, got {value!r}") from None
        if not number.is_finite() or (isinstance(value, str) and not _DECIMAL_RE.match(text)):
            raise ValueError(f"expected a number, got {value!r}")
        if kind == "integer" and number != number.to_integral_value():
            raise ValueError(f"expected a whole number, got {value!r}")
        normal = number.normalize()
        return format(normal, "f") if normal != normal.to_integral_value() else str(int(normal))
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if kind in ("date", "datetime"):
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        else:
            text = str(value).strip().replace("Z", "+00:00")
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}") from None
        return moment.date().isoformat() if kind == "date" else _utc_text(moment)
    return str(value)


def _utc_text(moment: datetime) -> str:
    """A date-time as one instant in Zoho's written form, ``yyyy-MM-ddTHH:mm:ss+00:00``.

    Zoho requires the offset on a Date/Time value (zoho-crm-v8.md, corrections) and answers in the org's
    zone; comparing in UTC makes ``10:30+00:00`` and ``16:00+05:30`` the same value. A value without an
    offset (SI's, which documents its times as UTC) is taken as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def to_zoho_json(value: Any, kind: ZohoType) -> Any:
    """A canonical value as Zoho wants it in a PUT body (numbers as JSON numbers; date-times carry their
    UTC offset already)."""
    if value is None:
        return None
    if kind in ("integer", "number") and type(value) is str and value.isascii() and value.isdigit():
        return int(value)  # a whole number (most amounts): no Decimal needed
    if kind == "integer":
        return int(Decimal(value))
    if kind == "number":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    return value


def to_si_string(value: Any, si_key: str) -> str:
    """A canonical value in SI's invariant string form for ``UpdateFields[].Value``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if si_key in _SI_DATETIME:
        text = str(value)
        return text[:10] if len(text) >= 10 and text[4] == "-" else text
    return str(value)


def to_si_json(value: Any, si_key: str) -> Any:
    """A Zoho value as SI wants it in a publish body (typed JSON, date-times without offset)."""
    if value is None:
        return None
    _single(value)
    if si_key in _SI_DECIMAL:
        return float(Decimal(canonical(value, "number")))
    if si_key in _SI_INTEGER:
        return int(Decimal(canonical(value, "integer")))
    if si_key in _SI_BOOLEAN:
        return canonical(value, "boolean")
    if si_key in _SI_DATETIME:
        return f"{canonical(value, 'date')}T00:00:00"
    return str(value)


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
