"""The mapping file (TOML): load, validate with errors that name the key, and pure value transforms.

Every comparison the planner makes happens in *Zoho space*: an SI value is mapped through the entry's
value map and converted to the Zoho field's type, then compared with the deal's value converted the
same way. :func:`canonical` defines that form (numbers as normalised decimal strings, dates as
``YYYY-MM-DD``, booleans as ``True``/``False``, empty text as ``None``).
"""

from __future__ import annotations

import math
import re
import string
import tomllib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from reconciler.errors import ConfigError

__all__ = ["FieldMap", "Mapping", "canonical", "load_mapping", "parse_mapping", "render_template"]

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
    if kind_of is str and kind == "text":
        return value if value.strip() else None
    if kind in ("number", "integer"):
        if kind_of is int:
            return str(value)
        if kind_of is float and math.isfinite(value):
            if value.is_integer():
                return str(int(value))
            text = repr(value)
            if kind == "number" and "e" not in text:
                return text
    if value is None or (isinstance(value, str) and value.strip() == ""):
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

    @property
    def si_key(self) -> str:
        return self.si.lower()

    @property
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
class Mapping:
    """The whole mapping file, validated."""

    module: str = "Deals"
    flag_field: str = "Send_to_SI"
    link_field: str = "SI_Project_ID"
    status_field: str | None = "SI_Sync_Status"
    create: tuple[tuple[str, str], ...] = (("Name", "Deal_Name"), ("Client", "Account_Name.name"))
    create_constants: tuple[tuple[str, Any], ...] = ()
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
            keys |= {name.lower() for name in _placeholders(template)}
        return keys

    def needs_project_detail(self) -> bool:
        """Whether field sync needs more than the list payload (ProjectInfo) gives."""
        return bool(self.si_keys_needed() - SI_LIST_FIELDS)

    def needs_change_order_detail(self) -> bool:
        """Whether a change-order message needs a detail read (for its notes or its fields)."""
        return bool(self.template_keys() - SI_LIST_FIELDS) or self.needs_project_detail()


def zoho_column(path: str) -> str:
    """The COQL column for a mapping path: ``Account_Name.name`` -> ``Account_Name.Account_Name``."""
    if "." not in path:
        return path
    lookup, attribute = path.split(".", 1)
    if attribute == "name" and lookup in _LOOKUP_NAME_COLUMNS:
        return f"{lookup}.{_LOOKUP_NAME_COLUMNS[lookup]}"
    return path


def _placeholders(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


class _FoldedValues(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        return self.get(key.lower(), "")


def render_template(template: str, values: AbcMapping[str, Any]) -> str:
    """Fill ``{Field}`` placeholders from folded SI values (missing or null -> empty)."""
    folded = _FoldedValues({k.lower(): ("" if v is None else v) for k, v in values.items()})
    return template.format_map(folded)


# ---- loading and validation -----------------------------------------------------------------------

_SECTIONS = {"zoho", "create", "fields", "notes"}
_ZOHO_KEYS = {"module", "flag_field", "link_field", "status_field"}
_FIELD_KEYS = {"zoho", "si", "direction", "on_conflict", "values", "zoho_type"}
_NOTE_KEYS = {"change_order_title", "change_order_body"}


def load_mapping(path: Path) -> Mapping:
    """Read and validate the mapping file; every problem is one line of one ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"RECONCILER_MAPPING: cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"mapping {path}: invalid TOML: {exc}") from None
    return parse_mapping(data, source=str(path))


def parse_mapping(data: dict[str, Any], *, source: str = "<mapping>") -> Mapping:
    problems: list[str] = []

    def problem(key: str, text: str) -> None:
        problems.append(f"mapping {source}: {key}: {text}")

    for section in sorted(set(data) - _SECTIONS):
        problem(f"[{section}]", f"unknown section (known: {', '.join(sorted(_SECTIONS))})")

    zoho = _table(data, "zoho", problem)
    for key in sorted(set(zoho) - _ZOHO_KEYS):
        problem(f"zoho.{key}", "unknown key")
    for key in ("module", "flag_field", "link_field"):
        if key in zoho and not _is_name(zoho[key]):
            problem(f"zoho.{key}", "must be a Zoho API name")
    if (
        "status_field" in zoho
        and zoho["status_field"] not in ("", None)
        and not _is_name(zoho["status_field"])
    ):
        problem("zoho.status_field", "must be a Zoho API name (or omit it)")

    create_table = _table(data, "create", problem)
    constants = create_table.get("constants", {})
    if not isinstance(constants, dict):
        problem("create.constants", "must be a table")
        constants = {}
    create: list[tuple[str, str]] = []
    for si_name, path in create_table.items():
        if si_name == "constants":
            continue
        if si_name.lower() not in SI_FIELDS:
            problem(f"create.{si_name}", "is not an SI project field")
        elif not isinstance(path, str) or not path:
            problem(f"create.{si_name}", 'must be a Zoho field path such as "Deal_Name"')
        else:
            create.append((si_name, path))
    for si_name in constants:
        if si_name.lower() not in SI_FIELDS:
            problem(f"create.constants.{si_name}", "is not an SI project field")
    given = {name.lower() for name, _ in create} | {name.lower() for name in constants}
    for required in ("Name", "Client"):
        if required.lower() not in given:
            problem(f"create.{required}", "SI requires it on every new project: map it or set a constant")

    fields: list[FieldMap] = []
    raw_fields = data.get("fields", [])
    if not isinstance(raw_fields, list):
        problem("[[fields]]", "must be an array of tables ([[fields]])")
        raw_fields = []
    seen: set[str] = set()
    for index, entry in enumerate(raw_fields):
        parsed = _field(index, entry, problem)
        if parsed is None:
            continue
        if parsed.zoho in seen:
            problem(f"fields[{index}].zoho", f"{parsed.zoho} is mapped twice")
        seen.add(parsed.zoho)
        fields.append(parsed)

    notes = _table(data, "notes", problem)
    for key in sorted(set(notes) - _NOTE_KEYS):
        problem(f"notes.{key}", "unknown key")
    defaults = Mapping()
    title = notes.get("change_order_title", defaults.change_order_title)
    body = notes.get("change_order_body", defaults.change_order_body)
    for key, template in (("change_order_title", title), ("change_order_body", body)):
        if not isinstance(template, str):
            problem(f"notes.{key}", "must be a string")
            continue
        try:
            names = _placeholders(template)
        except ValueError as exc:
            problem(f"notes.{key}", f"bad template: {exc}")
            continue
        for name in names:
            if name.lower() not in SI_FIELDS:
                problem(f"notes.{key}", f"{{{name}}} is not an SI field")

    if problems:
        raise ConfigError(*problems)
    status_field = zoho.get("status_field") or None
    return Mapping(
        module=zoho.get("module", "Deals"),
        flag_field=zoho.get("flag_field", "Send_to_SI"),
        link_field=zoho.get("link_field", "SI_Project_ID"),
        status_field=status_field,
        create=tuple(create),
        create_constants=tuple(constants.items()),
        fields=tuple(fields),
        change_order_title=title,
        change_order_body=body,
        source=source,
    )


def _table(data: dict[str, Any], name: str, problem: Any) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problem(f"[{name}]", "must be a table")
        return {}
    return value


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9_.$]*", value))


def _field(index: int, entry: Any, problem: Any) -> FieldMap | None:
    where = f"fields[{index}]"
    if not isinstance(entry, dict):
        problem(where, "must be a table")
        return None
    bad = False
    for key in sorted(set(entry) - _FIELD_KEYS):
        problem(f"{where}.{key}", "unknown key")
        bad = True
    zoho, si = entry.get("zoho"), entry.get("si")
    if not _is_name(zoho):
        problem(f"{where}.zoho", "required: the Zoho field API name")
        bad = True
    elif "." in str(zoho):
        problem(f"{where}.zoho", f"{zoho} is a lookup path; a synced field must be on the deal itself")
        bad = True
    if not isinstance(si, str) or si.lower() not in SI_FIELDS:
        problem(f"{where}.si", f"{si!r} is not an SI project field")
        return None
    direction = entry.get("direction", "si_to_zoho")
    if direction not in DIRECTIONS:
        problem(f"{where}.direction", f"unknown direction {direction!r} (use {' | '.join(DIRECTIONS)})")
        return None
    if direction in ("zoho_to_si", "both") and si.lower() not in SI_FIELD_IDS:
        problem(
            f"{where}.si", f'SI cannot receive {si} (it has no ProjectFieldId); use direction = "si_to_zoho"'
        )
        bad = True
    on_conflict = entry.get("on_conflict", "manual")
    if on_conflict not in CONFLICT_POLICIES:
        problem(
            f"{where}.on_conflict", f"unknown policy {on_conflict!r} (use {' | '.join(CONFLICT_POLICIES)})"
        )
        bad = True
    elif "on_conflict" in entry and direction != "both":
        problem(f"{where}.on_conflict", 'only applies to direction = "both"')
        bad = True
    values = entry.get("values", {})
    if not isinstance(values, dict) or not all(isinstance(v, str | int | float) for v in values.values()):
        problem(f"{where}.values", 'must be a table of "SI value" = "Zoho value"')
        bad = True
        values = {}
    zoho_type = entry.get("zoho_type", si_type(si.lower()))
    if zoho_type not in ZOHO_TYPES:
        problem(f"{where}.zoho_type", f"unknown type {zoho_type!r} (use {' | '.join(ZOHO_TYPES)})")
        bad = True
    if bad:
        return None
    return FieldMap(
        zoho=str(zoho),
        si=si,
        direction=direction,
        on_conflict=on_conflict,
        values=tuple((str(k), str(v)) for k, v in values.items()),
        zoho_type=zoho_type,
    )
