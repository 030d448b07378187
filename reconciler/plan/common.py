"""What the planner's parts share: stable hashes, our Guids and message ids, the deal's canonical values.

Pure: nothing here reads a clock, the network or the store.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import uuid
from collections.abc import Mapping as AbcMapping
from typing import Any

from reconciler import keys
from reconciler.mapping import FieldMap, Mapping, canonical, zoho_column
from reconciler.model import Deal

__all__ = [
    "ARCHIVED_IN_SI",
    "CO_FIELDS",
    "DELETED_IN_SI",
    "GUID_NAMESPACE",
    "IN_SI",
    "QUEUED",
    "CanonSpec",
    "canon_digest",
    "canon_spec",
    "create_spec",
    "digest",
    "is_empty",
    "new_tuple",
    "note_reference",
    "project_guid",
    "truncate",
    "update_message_id",
    "zoho_canon",
]

# Our Guid for a deal's SI project is derived from the deal id, so a publish retried after any crash (or
# after the store was lost) targets the same project: SI updates a project whose Id it already has.
GUID_NAMESPACE = uuid.UUID("6f1c2a4e-1d0b-4c55-9a57-52d1f0c0a7e1")
# Our MessageId for an SI update is derived from the pair, a per-pair counter and the values: a resend of
# the same update keeps its id, and every new update (even back to an earlier value) gets a new one.
MESSAGE_NAMESPACE = uuid.UUID("0b8d3c62-5a57-4f0e-8f3e-9f1d6a7c2b10")
TITLE_MAX = 120
CONTENT_MAX = 65535
STATUS_MAX = 255
REFERENCE_PREFIX = "[zohosi-ref "
QUEUED = "Queued for SI"
IN_SI = "In SI"
ARCHIVED_IN_SI = "Archived in SI"
DELETED_IN_SI = "Deleted in SI"
# SI's ImportedOn has whole seconds: an export stamped within the same second may predate the import.
IMPORT_CLOCK_SLACK_MS = 1000
# SI properties that describe a change order rather than the project ("cost" starts with "co" too).
CO_FIELDS = frozenset({
    "conumber", "coname", "costatus", "cotype", "conotes", "coid", "coacceptedon", "corejectedon",
    "cocreatedon", "ischangeorder",
})  # fmt: skip

# A named tuple built without its generated __new__ (a Python frame): ``new_tuple(SiRead, (...))`` costs half
# as much, and the planner builds several per field of every planned pair.
new_tuple = tuple.__new__

# One encoder for every digest: what json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
# writes, without building an encoder per call (the planner hashes every planned write's input).
_JSON = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


class CanonSpec:
    """The Zoho paths a canonical map holds, worked out once per plan: per path its COQL column, whether
    it is the flag, and its field map; and a ready-made template that writes :func:`canon_digest`'s text
    for exactly these paths (a full read hashes every deal: the template saves sorting and a repr a tuple).
    """

    __slots__ = ("_order", "_template", "_values", "rows")

    def __init__(self, fields: tuple[tuple[str, str, bool, FieldMap | None], ...]) -> None:
        # What zoho_canon reads per path, with the kind of path worked out (its fast paths key on it).
        self.rows = tuple(
            (path, column, is_flag, fmap, _kind(is_flag, fmap)) for path, column, is_flag, fmap in fields
        )
        self._order = tuple(sorted(path for path, _, _, _ in fields))
        # repr(sorted(canon.items())) is "[('a', <repr>), ('b', <repr>)]": the keys' part is fixed.
        parts = ("(" + repr(path).replace("%", "%%") + ", %r)" for path in self._order)
        self._template = "[" + ", ".join(parts) + "]"
        self._values = operator.itemgetter(*self._order) if len(self._order) > 1 else None

    def __bool__(self) -> bool:
        return bool(self.rows)

    def digest(self, canon: AbcMapping[str, Any]) -> str:
        """:func:`canon_digest` of ``canon``, faster when its keys are exactly this spec's paths."""
        if self._values is None or len(canon) != len(self._order):
            return canon_digest(canon)
        try:
            text = self._template % self._values(canon)
        except KeyError:
            return canon_digest(canon)
        return hashlib.sha1(text.encode()).hexdigest()[:20]


# Kinds of path, for zoho_canon's fast paths: the flag, a path read as it is (link, status, a [create]
# value), a mapped text field, a mapped number, any other mapped field.
_FLAG, _PLAIN, _TEXT, _NUMBER, _OTHER = range(5)


def _kind(is_flag: bool, fmap: FieldMap | None) -> int:
    """In zoho_canon's order of rules: a mapped text field's text rule first (even for the flag)."""
    if fmap is not None and fmap.zoho_type == "text":
        return _TEXT
    if is_flag:
        return _FLAG
    if fmap is not None:
        return _NUMBER if fmap.zoho_type in ("number", "integer") else _OTHER
    return _PLAIN


def digest(value: Any) -> str:
    """A short stable hash of JSON-able data (snapshot and input hashes)."""
    text = _flat_json(value) if type(value) is dict else None
    return hashlib.sha1((text if text is not None else _JSON.encode(value)).encode()).hexdigest()[:20]


_STR_JSON = json.encoder.encode_basestring_ascii  # what _JSON writes for a str


def _flat_json(record: dict[Any, Any]) -> str | None:
    """What ``_JSON`` writes for a dict of text keys and plain values (a deal update's record, hashed for
    every planned update), without setting up the encoder; None for anything else."""
    parts = []
    for key in sorted(record) if all(type(key) is str for key in record) else ():
        value = record[key]
        kind = type(value)
        if kind is str:
            text = _STR_JSON(value)
        elif value is None:
            text = "null"
        elif value is True or value is False:
            text = "true" if value else "false"
        elif kind is int:
            text = int.__repr__(value)
        elif kind is float and math.isfinite(value):
            text = float.__repr__(value)
        else:
            return None
        parts.append(_STR_JSON(key) + ":" + text)
    if len(parts) != len(record):
        return None
    return "{" + ",".join(parts) + "}"


def canon_digest(canon: AbcMapping[str, Any]) -> str:
    """:func:`digest` for a flat map of canonical values (str, bool or None), about three times faster.

    Stored snapshots keep this hash: its form must not change (every pair would look edited once)."""
    return hashlib.sha1(repr(sorted(canon.items())).encode()).hexdigest()[:20]


def project_guid(deal_id: str) -> str:
    return str(uuid.uuid5(GUID_NAMESPACE, deal_id))


def update_message_id(project_id: str, sequence: int, input_hash: str) -> str:
    """The MessageId of a pair's ``sequence``-th SI update, carrying the values hashed as ``input_hash``."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{keys.project_update(project_id)}:{sequence}:{input_hash}"))


def note_reference(project_id: str, co_number: str, co_status: str) -> str:
    """The line that ends every change-order note; it makes the note's identity recoverable."""
    return f"{REFERENCE_PREFIX}{keys.note(project_id, co_number, co_status)}]"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_empty(value: Any) -> bool:
    """An SI value that says "nothing yet" (null, or a zero on a project that was just imported)."""
    return value in (None, "0")


def canon_spec(mapping: Mapping) -> CanonSpec:
    """The paths a pair compares (flag, link, status, synced fields): its snapshot hashes these."""
    by_path = {f.zoho: f for f in mapping.fields}
    create_only = set(_create_only(mapping))
    return CanonSpec(
        tuple(
            (path, zoho_column(path), path == mapping.flag_field, by_path.get(path))
            for path in mapping.zoho_paths()
            if path not in create_only
        )
    )


def create_spec(mapping: Mapping) -> CanonSpec:
    """The paths only a create reads (``[create]`` values: the account's address, the contact ...): read
    for a deal that is to be created, hashed into its create's input, never into a pair's snapshot."""
    return CanonSpec(tuple((path, zoho_column(path), False, None) for path in _create_only(mapping)))


def _create_only(mapping: Mapping) -> list[str]:
    synced = {mapping.flag_field, mapping.link_field, mapping.status_field, *(f.zoho for f in mapping.fields)}
    return [path for path in mapping.zoho_paths() if path not in synced]


def zoho_canon(deal: Deal, mapping: Mapping, spec: CanonSpec | None = None) -> dict[str, Any]:
    """The deal's mapped values in comparable form, keyed by mapping path. Raises ValueError on bad data."""
    canon: dict[str, Any] = {}
    values = deal.values
    for path, column, is_flag, fmap, kind in (spec or canon_spec(mapping)).rows:
        raw = values.get(column)
        # Inlined for the common values (every deal of a full read passes here); the same results as below.
        of = type(raw)
        if raw is None:
            canon[path] = False if is_flag else None  # what each branch below makes of a missing value
            continue
        if of is str:
            if kind == _TEXT:
                canon[path] = raw if raw.strip() else None  # what canonical() does for text
                continue
            if kind == _PLAIN:
                canon[path] = raw or None  # a path read as it is (the link, the status)
                continue
        elif of is bool and kind == _FLAG:
            canon[path] = raw
            continue
        elif of is int and kind == _NUMBER:
            canon[path] = str(raw)  # what canonical() does for a whole number
            continue
        try:
            if is_flag:
                canon[path] = bool(raw) if isinstance(raw, bool) else canonical(raw, "boolean") or False
            elif fmap is not None:
                canon[path] = fmap.from_zoho(raw)
            else:
                if type(raw) is dict and path.endswith(".id"):
                    raw = raw.get("id")  # X.id: the id inside the lookup column X
                canon[path] = None if raw in (None, "") else str(raw)
        except ValueError as exc:
            raise ValueError(f"deal {deal.id}: field {path}: {exc}") from None
    return canon
