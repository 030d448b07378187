"""Loading and validating the mapping file: what ``check --offline`` accepts, a cycle can run.

Every rule here mirrors something the runtime relies on, so a mapping that loads never makes a cycle
raise:

* the file is UTF-8 TOML of reasonable depth;
* every Zoho name is an API name (``[A-Za-z][A-Za-z0-9_]*``) and every ``[create]`` path a dot-separated
  chain of them, so nothing but a column name (no space, no COQL text) reaches the query; the
  ``[create]`` forms (nested SI keys, value maps, the client id, COQL's join limits) are
  :mod:`reconciler.create_forms`;
* the flag, link and status fields are three different fields, and none of them is a synced field (the
  reconciler writes the link and status itself; the flag is the operator's switch);
* at most one ``[[fields]]`` entry sends a given SI field to SI (two Zoho fields cannot write one SI
  field); each value map's Zoho values convert to the entry's ``zoho_type``; ``[create.constants]``
  values are single values SI can take for that field;
* note templates hold only ``{Field}`` placeholders naming SI fields (:mod:`reconciler.templates`);
* the deal read selects at most Zoho's COQL column limit (:data:`~reconciler.mapping.COQL_MAX_COLUMNS`).

Each problem is one line ``mapping <file>: <key>: <what is wrong>``; all of them are raised together as
one :class:`~reconciler.errors.ConfigError` (exit 78).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from reconciler.convert import SI_FIELD_IDS, SI_FIELDS, si_type
from reconciler.create_forms import parse_create, query_problems
from reconciler.errors import ConfigError
from reconciler.mapping import (
    CONFLICT_POLICIES,
    COQL_MAX_COLUMNS,
    DIRECTIONS,
    ZOHO_TYPES,
    FieldMap,
    Mapping,
    canonical,
)
from reconciler.templates import placeholders, template_problems

__all__ = ["load", "parse"]

_SECTIONS = {"zoho", "create", "fields", "notes"}
_ZOHO_KEYS = {"module", "flag_field", "link_field", "status_field"}
_FIELD_KEYS = {"zoho", "si", "direction", "on_conflict", "values", "zoho_type"}
_NOTE_KEYS = {"change_order_title", "change_order_body"}
_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_API_NAME = re.compile(_NAME)
_PATH = re.compile(rf"{_NAME}(?:\.{_NAME})*")
_ROLES = ("flag_field", "link_field", "status_field")


class _Problems(list[str]):
    """The problem lines of one mapping file."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def add(self, key: str, text: str) -> None:
        self.append(f"mapping {self.source}: {key}: {text}")


def load(path: Path) -> Mapping:
    """Read ``path`` (UTF-8 TOML) and validate it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"RECONCILER_MAPPING: cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"mapping {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"mapping {path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"mapping {path}: nested too deeply to read (a mapping is a few tables deep)"
        ) from None
    return parse(data, source=str(path))


def parse(data: dict[str, Any], *, source: str = "<mapping>") -> Mapping:
    """Validate parsed TOML into a :class:`Mapping`; raise one ConfigError listing every problem."""
    problems = _Problems(source)
    for section in sorted(set(data) - _SECTIONS):
        problems.add(f"[{section}]", f"unknown section (known: {', '.join(sorted(_SECTIONS))})")
    zoho = _zoho(data, problems)
    create = parse_create(_table(data, "create", problems), problems.add)
    fields = _fields(data, problems)
    title, body = _notes(data, problems)
    mapping = Mapping(
        module=zoho.get("module", "Deals"),
        flag_field=zoho.get("flag_field", "Send_to_SI"),
        link_field=zoho.get("link_field", "SI_Project_ID"),
        status_field=zoho.get("status_field") or None,
        create=tuple(create.create),
        create_constants=tuple(create.constants.items()),
        create_maps=tuple(create.maps),
        create_kinds=tuple(sorted(create.kinds.items())),
        fields=tuple(fields),
        change_order_title=title,
        change_order_body=body,
        source=source,
    )
    _roles_apart(mapping, problems)
    _one_writer_per_si_field(fields, problems)
    for key, text in query_problems(mapping):
        problems.add(key, text)
    columns = len(mapping.coql_columns())
    if columns > COQL_MAX_COLUMNS:
        problems.add(
            "[[fields]]",
            f"the deal read would select {columns} columns, more than Zoho's COQL limit of "
            f"{COQL_MAX_COLUMNS}; map fewer fields",
        )
    if problems:
        raise ConfigError(*problems)
    return mapping


def _table(data: dict[str, Any], name: str, problems: _Problems) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        problems.add(f"[{name}]", "must be a table")
        return {}
    return value


def _zoho(data: dict[str, Any], problems: _Problems) -> dict[str, Any]:
    zoho = _table(data, "zoho", problems)
    for key in sorted(set(zoho) - _ZOHO_KEYS):
        problems.add(f"zoho.{key}", "unknown key")
    valid = {}
    for key in ("module", *_ROLES):
        value = zoho.get(key)
        if key not in zoho or (key == "status_field" and value in ("", None)):
            continue
        if isinstance(value, str) and _API_NAME.fullmatch(value):
            valid[key] = value
        else:
            optional = " (or omit it)" if key == "status_field" else ""
            problems.add(
                f"zoho.{key}", f"must be a Zoho API name such as Send_to_SI, not {value!r}{optional}"
            )
    return valid


def _fields(data: dict[str, Any], problems: _Problems) -> list[FieldMap]:
    raw_fields = data.get("fields", [])
    if not isinstance(raw_fields, list):
        problems.add("[[fields]]", "must be an array of tables ([[fields]])")
        return []
    fields: list[FieldMap] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw_fields):
        parsed = _field(index, entry, problems)
        if parsed is None:
            continue
        if parsed.zoho in seen:
            problems.add(f"fields[{index}].zoho", f"{parsed.zoho} is mapped twice")
        seen.add(parsed.zoho)
        fields.append(parsed)
    return fields


def _notes(data: dict[str, Any], problems: _Problems) -> tuple[str, str]:
    notes = _table(data, "notes", problems)
    for key in sorted(set(notes) - _NOTE_KEYS):
        problems.add(f"notes.{key}", "unknown key")
    defaults = Mapping()
    texts = {
        "change_order_title": notes.get("change_order_title", defaults.change_order_title),
        "change_order_body": notes.get("change_order_body", defaults.change_order_body),
    }
    for key, template in texts.items():
        if not isinstance(template, str):
            problems.add(f"notes.{key}", "must be a string")
            texts[key] = getattr(defaults, key)
            continue
        for text in template_problems(template):
            problems.add(f"notes.{key}", text)
        for name in placeholders(template):
            if name.lower() not in SI_FIELDS:
                problems.add(f"notes.{key}", f"{{{name}}} is not an SI field")
    return texts["change_order_title"], texts["change_order_body"]


def _roles_apart(mapping: Mapping, problems: _Problems) -> None:
    """The flag, link and status fields: three different fields, none of them synced."""
    roles = {role: getattr(mapping, role) for role in _ROLES if getattr(mapping, role)}
    holder: dict[str, str] = {}
    for role, name in roles.items():
        if name in holder:
            problems.add(
                f"zoho.{role}",
                f"{name} is also zoho.{holder[name]}; the flag, link and status fields must differ",
            )
        holder.setdefault(name, role)
    for index, fmap in enumerate(mapping.fields):
        if fmap.zoho in holder:
            problems.add(
                f"fields[{index}].zoho",
                f"{fmap.zoho} is zoho.{holder[fmap.zoho]}, which the reconciler manages; it cannot be synced",
            )


def _one_writer_per_si_field(fields: list[FieldMap], problems: _Problems) -> None:
    """At most one entry sends each SI field to SI (reading one SI field into several is fine)."""
    writer: dict[str, int] = {}
    for index, fmap in enumerate(fields):
        if not fmap.to_si_side:
            continue
        if fmap.si_key in writer:
            first = fields[writer[fmap.si_key]]
            problems.add(
                f"fields[{index}].si",
                f"{first.zoho} already sends {fmap.si} to SI; one Zoho field per SI field",
            )
        writer.setdefault(fmap.si_key, index)


def _field(index: int, entry: Any, problems: _Problems) -> FieldMap | None:
    """One ``[[fields]]`` entry, or None (with its problems added) when it is unusable."""
    where = f"fields[{index}]"
    if not isinstance(entry, dict):
        problems.add(where, "must be a table")
        return None
    before = len(problems)
    for key in sorted(set(entry) - _FIELD_KEYS):
        problems.add(f"{where}.{key}", "unknown key")
    zoho, si = entry.get("zoho"), entry.get("si")
    if isinstance(zoho, str) and _PATH.fullmatch(zoho) and "." in zoho:
        problems.add(f"{where}.zoho", f"{zoho} is a lookup path; a synced field must be on the deal itself")
    elif not (isinstance(zoho, str) and _API_NAME.fullmatch(zoho)):
        problems.add(f"{where}.zoho", "required: the Zoho field API name")
    if not isinstance(si, str) or si.lower() not in SI_FIELDS:
        problems.add(f"{where}.si", f"{si!r} is not an SI project field")
        return None
    direction = entry.get("direction", "si_to_zoho")
    if direction not in DIRECTIONS:
        problems.add(f"{where}.direction", f"unknown direction {direction!r} (use {' | '.join(DIRECTIONS)})")
        return None
    if direction in ("zoho_to_si", "both") and si.lower() not in SI_FIELD_IDS:
        problems.add(
            f"{where}.si", f'SI cannot receive {si} (it has no ProjectFieldId); use direction = "si_to_zoho"'
        )
    on_conflict = entry.get("on_conflict", "manual")
    if on_conflict not in CONFLICT_POLICIES:
        problems.add(
            f"{where}.on_conflict", f"unknown policy {on_conflict!r} (use {' | '.join(CONFLICT_POLICIES)})"
        )
    elif "on_conflict" in entry and direction != "both":
        problems.add(f"{where}.on_conflict", 'only applies to direction = "both"')
    zoho_type = entry.get("zoho_type", si_type(si.lower()))
    if zoho_type not in ZOHO_TYPES:
        problems.add(f"{where}.zoho_type", f"unknown type {zoho_type!r} (use {' | '.join(ZOHO_TYPES)})")
    values = _values(where, entry.get("values", {}), zoho_type, problems)
    if len(problems) > before:
        return None
    return FieldMap(
        zoho=str(zoho),
        si=si,
        direction=direction,
        on_conflict=on_conflict,
        values=values,
        zoho_type=zoho_type,
    )


def _values(where: str, values: Any, zoho_type: Any, problems: _Problems) -> tuple[tuple[str, str], ...]:
    """A value map whose Zoho values all convert to ``zoho_type`` (the planner compares in that form)."""
    if not isinstance(values, dict) or not all(isinstance(v, str | int | float) for v in values.values()):
        problems.add(f"{where}.values", 'must be a table of "SI value" = "Zoho value"')
        return ()
    pairs = tuple((str(k), str(v)) for k, v in values.items())
    if zoho_type in ZOHO_TYPES:
        for si_value, zoho_value in pairs:
            try:
                canonical(zoho_value, zoho_type)
            except ValueError as exc:
                problems.add(f"{where}.values.{si_value}", f"{exc} (zoho_type = {zoho_type})")
    return pairs
