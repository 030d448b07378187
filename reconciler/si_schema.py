"""SI's ``Project`` schema as the mapping sees it: which nested property paths exist and what they hold.

A ``[create]`` key may address a property inside the project: ``BillingAddress.City`` (an object),
``Contacts[0].Email`` (a list element). :func:`resolve` walks such a key through the vendored copy of SI's
OpenAPI ``Project`` schema (:mod:`reconciler.vendor`), case-insensitively as SI binds JSON, and returns
its canonical spelling (SI's PascalCase: ``BillingAddress.PostalCode``) and the kind of value the leaf
takes; or raises ``ValueError`` saying what is wrong with the key. Pure apart from reading the vendored
file once.

Rules, all from the schema: every segment must be a property of the object it is in; a list property
(``Contacts``) needs an index, ``[0]``, ``[1]``, ..., and nothing else takes one; the key must end at a
single value (a string, number or boolean), not at an object or a list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.vendor import si_schemas

__all__ = ["LeafKind", "SiKey", "is_container", "is_nested", "resolve"]

LeafKind = Literal["text", "number", "integer", "boolean", "datetime"]

_SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\[([^\]]*)\])?")
_INDEX = re.compile(r"0|[1-9][0-9]{0,3}")
_REF = "#/components/schemas/"


@dataclass(frozen=True)
class SiKey:
    """A resolved key: SI's spelling (``Contacts[0].Email``), its parts and what its leaf holds."""

    key: str
    parts: tuple[tuple[str, int | None], ...]
    kind: LeafKind

    @property
    def nested(self) -> bool:
        return len(self.parts) > 1


def is_nested(key: str) -> bool:
    """Whether a ``[create]`` key addresses a property inside the project (``A.B`` or ``A[0].B``)."""
    return "." in key or "[" in key


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return {str(k) for k in kind}
    return {str(kind)} if isinstance(kind, str) else set()


def _target(schema: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The object schema a property points at (``$ref``), with its name; None for a plain value."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF):
        name = ref[len(_REF) :]
        return name, si_schemas()[name]
    return None


def _leaf(schema: dict[str, Any]) -> LeafKind | None:
    types = _types(schema)
    if "boolean" in types:
        return "boolean"
    if "integer" in types:
        return "integer"
    if "number" in types:
        return "number"
    if "string" in types:
        return "datetime" if schema.get("format") == "date-time" else "text"
    return None


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def resolve(key: str) -> SiKey:
    """Walk ``key`` through SI's Project schema; ValueError says what is wrong (without the key itself)."""
    parts, prop, owner, listed = _walk(key)
    kind = _leaf(prop) if _target(prop) is None else None
    if kind is None:
        shown = _spell(parts)
        target = _target(prop.get("items", {}) if listed else prop)
        first = _pascal(next(iter(target[1].get("properties", {"name": {}})))) if target else "Name"
        if listed:
            raise ValueError(f"{shown} is a list in SI's {owner}: map its elements ({shown}[0].{first} ...)")
        raise ValueError(f"{shown} is an object in SI's {owner}: map its properties ({shown}.{first} ...)")
    return SiKey(_spell(parts), tuple(parts), kind)


def is_container(key: str) -> bool:
    """Whether ``key`` is an object or a list element of SI's Project (``BillingAddress``, ``Contacts[0]``):
    a TOML table under it holds nested keys."""
    try:
        _, prop, _, listed = _walk(key)
    except ValueError:
        return False
    return _target(prop) is not None and not listed


def _walk(key: str) -> tuple[list[tuple[str, int | None]], dict[str, Any], str, bool]:
    """The parts of ``key``, the schema of its last property, the object holding it, and whether the last
    part is a list given without an index."""
    owner, schema = "Project", si_schemas()["Project"]
    segments = key.split(".")
    parts: list[tuple[str, int | None]] = []
    prop: dict[str, Any] = {}
    listed = False
    for position, segment in enumerate(segments):
        if position:
            target, shown = _target(prop), _spell(parts)
            if listed:
                raise ValueError(f"{shown} is a list in SI's {owner}: give an index, {shown}[0]")
            if target is None:
                raise ValueError(f"{shown} holds a single value in SI's {owner}: it has no properties")
            owner, schema = f"{shown} ({target[0]})", target[1]
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise ValueError(f"{segment!r} is not a property name (write Name, Object.Name or List[0].Name)")
        name, index_text = match.group(1), match.group(2)
        properties = schema.get("properties", {})
        found = next((p for p in properties if p.lower() == name.lower()), None)
        if found is None:
            raise ValueError(f"SI's {owner} has no property {name}")
        prop, canonical = properties[found], _pascal(found)
        is_list = "array" in _types(prop)
        index: int | None = None
        if index_text is not None:
            if not is_list:
                raise ValueError(f"{canonical} is not a list in SI's {owner}: it takes no [{index_text}]")
            if not _INDEX.fullmatch(index_text):
                raise ValueError(f"{canonical}[{index_text}]: a list index is 0, 1, 2, ...")
            index = int(index_text)
        listed = is_list and index is None
        if is_list and index is not None:
            prop = prop.get("items", {})
        parts.append((canonical, index))
    return parts, prop, owner, listed


def _spell(parts: list[tuple[str, int | None]] | tuple[tuple[str, int | None], ...]) -> str:
    return ".".join(_show(p) for p in parts)


def _show(part: tuple[str, int | None]) -> str:
    name, index = part
    return name if index is None else f"{name}[{index}]"
