"""Creating a deal's SI project: the publish body, and the snapshot the pair starts from. Pure.

The body carries every ``[create]`` entry, every ``[create.constants]`` value, and the value of every
``zoho_to_si`` or ``both`` field the deal has (SI's ``Project`` accepts each property that has a
``ProjectFieldId``), so nothing Zoho knew before the project existed is left behind. The snapshot a create
leaves is built from that body: Zoho's side holds the deal's values as published, SI's side holds exactly
what the body sent. When the publish happened in an earlier, interrupted cycle, the create is *resumed*
from what its intent recorded at the time; edits made since are ordinary changes for the next cycle.

Nested ``[create]`` keys fill SI's objects and lists (``BillingAddress.City``, ``Contacts[0].Email``); a
list element with no value from the deal is left out (a deal without a contact sends no ``Contacts``, even
when ``Contacts[0].IsPrimary`` is a constant). A value map (``TemplateName`` by the deal's ``Type``) takes
the entry for the deal's value, else its default; a value with neither parks the create with a message
naming the value (the other deals go on), like an empty ``Client``.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from typing import Any

from reconciler import keys
from reconciler.convert import to_si_json
from reconciler.mapping import Mapping, lookup_id, match_text, to_si_leaf, zoho_column
from reconciler.model import CreateProject, Deal, IntentState, Park
from reconciler.plan.common import QUEUED, canon_digest, digest, project_guid

__all__ = ["plan_create", "resume_create"]

_REQUIRED = ("name", "client")


def plan_create(
    deal: Deal,
    canon: AbcMapping[str, Any],
    zoho_hash: str,
    mapping: Mapping,
    intents: AbcMapping[str, IntentState],
    *,
    republish: str | None = None,
) -> CreateProject | Park | None:
    """The create of a flagged deal, a Park when it cannot be published, None when it is parked already.

    ``republish`` is the project id of a publish SI failed to import that the operator re-queued.
    """
    key = keys.create(deal.id)
    intent = intents.get(key)
    park_hash = _park_hash(zoho_hash, mapping)
    parked = intent is not None and intent.status == keys.PARKED and intent.input_hash == park_hash
    if parked and republish is None:
        return None  # parked with this very input (neither the deal nor the value maps changed since)
    body, problem = _body(deal, canon, mapping)
    if problem is not None:
        return None if parked else Park(key, deal.id, None, problem, park_hash)
    earlier = str((intent.payload or {}).get("guid") or "") if intent is not None else ""
    guid = republish or earlier or project_guid(deal.id)
    body["Id"] = guid
    body["IntegrationProjectId"] = deal.id
    record: dict[str, Any] = {"id": deal.id, mapping.link_field: guid}
    after = dict(canon)
    after[mapping.link_field] = guid
    if mapping.status_field:
        after[mapping.status_field] = QUEUED
        record[mapping.status_field] = QUEUED
    return CreateProject(
        key,
        deal.id,
        guid,
        body,
        zoho_hash,
        zoho_values={f.zoho: canon[f.zoho] for f in mapping.fields},
        zoho_hash_after=canon_digest(after),
        republish=bool(republish),
        si_values=_sent(body, mapping),
        record=record,
    )


def _park_hash(zoho_hash: str, mapping: Mapping) -> str:
    """What a parked create waits on: the deal's values and, when the mapping has value maps, those maps
    too (a value added to ``values`` is a fix the create must see without ``reconciler retry``)."""
    if not mapping.create_maps:
        return zoho_hash
    return digest(
        [zoho_hash, [[m.si, m.zoho, m.values, m.default, m.has_default] for m in mapping.create_maps]]
    )


def resume_create(intent: IntentState, mapping: Mapping) -> CreateProject:
    """Finish a create whose publish an earlier cycle made: the write-back, and the recorded snapshot."""
    payload, remote = dict(intent.payload or {}), dict(intent.remote or {})
    project_id = str(remote["project_id"])
    deal_id = intent.deal_id or ""
    body = dict(payload.get("body") or {})
    record = dict(payload.get("record") or {"id": deal_id})
    record[mapping.link_field] = project_id
    if mapping.status_field:
        record.setdefault(mapping.status_field, QUEUED)
    return CreateProject(
        intent.key,
        deal_id,
        str(payload.get("guid") or project_id),
        body,
        intent.input_hash,
        zoho_values=dict(payload.get("zoho_values") or {}),
        zoho_hash_after=str(payload.get("zoho_hash_after") or ""),
        si_values=dict(payload.get("si_values") or _sent(body, mapping)),
        record=record,
        project_id=project_id,
        message_id=None if remote.get("message_id") is None else str(remote["message_id"]),
    )


def _body(deal: Deal, canon: AbcMapping[str, Any], mapping: Mapping) -> tuple[dict[str, Any], str | None]:
    """The publish body without its ids, or a problem naming the deal and the field (or the value)."""
    body = _Body(dict(mapping.create_kinds))
    for si_name, path in mapping.create:
        raw = _read(deal, path)
        if raw in (None, ""):
            if si_name.lower() in _REQUIRED:
                return {}, f"deal {deal.id}: field {path} is empty (SI requires {si_name})"
            continue
        try:
            body.put(si_name, raw, from_deal=True)
        except ValueError as exc:
            return {}, f"deal {deal.id}: field {path}: {exc}"
    for vmap in mapping.create_maps:
        raw = _read(deal, vmap.zoho)
        try:
            found, value = vmap.pick(raw if raw in (None, "") else _one(raw))
        except ValueError as exc:
            return {}, f"deal {deal.id}: field {vmap.zoho}: {exc}"
        if not found:
            return {}, (
                f"deal {deal.id}: field {vmap.zoho}: no {vmap.si} for {match_text(raw)!r} (add it under"
                f" create.{vmap.si}.values in the mapping, or give a default)"
            )
        if value is None:
            if vmap.si.lower() in _REQUIRED:
                return {}, f"deal {deal.id}: field {vmap.zoho} is empty (SI requires {vmap.si})"
            continue
        body.put_json(vmap.si, value, from_deal=True)
    given = body.top_keys() | {name.lower() for name, _ in mapping.create}
    given |= {vmap.si.lower() for vmap in mapping.create_maps}
    for fmap in mapping.fields:
        value = canon.get(fmap.zoho)
        if not fmap.to_si_side or fmap.si_key in given or value is None:
            continue
        try:
            body.put_json(fmap.si, to_si_json(fmap.si_value(value), fmap.si_key), from_deal=True)
        except ValueError as exc:
            return {}, f"deal {deal.id}: field {fmap.zoho}: {exc}"
        given.add(fmap.si_key)
    for si_name, value in mapping.create_constants:
        if not body.has(si_name):
            body.put_json(si_name, value, from_deal=False)
    return body.build(), None


def _read(deal: Deal, path: str) -> Any:
    """The deal's value for a mapping path (``Account_Name.id``: the id inside the lookup column)."""
    raw = deal.values.get(zoho_column(path))
    return lookup_id(raw) if path.endswith(".id") else raw


def _one(raw: Any) -> Any:
    to_si_leaf(raw, "text")  # raises ValueError for an object or a list where one value belongs
    return raw


class _Body:
    """A publish body being filled: top-level fields, nested objects (``BillingAddress.City``) and list
    elements (``Contacts[0].Email``). A list element that got no value from the deal (only constants,
    such as ``Contacts[0].IsPrimary``) is left out: the deal has no such contact."""

    def __init__(self, kinds: dict[str, str]) -> None:
        self.kinds = kinds
        self.tree: dict[Any, Any] = {}
        self.keys: set[str] = set()
        self.from_deal: set[tuple[Any, ...]] = set()

    def put(self, key: str, raw: Any, *, from_deal: bool) -> None:
        """A Zoho value under ``key``, converted to the JSON form SI's schema gives the property."""
        kind = self.kinds.get(key)
        value = to_si_leaf(raw, kind) if kind is not None else to_si_json(raw, key.lower())
        self.put_json(key, value, from_deal=from_deal)

    def put_json(self, key: str, value: Any, *, from_deal: bool) -> None:
        steps: list[Any] = []
        for segment in key.split("."):
            name, _, index = segment.partition("[")
            steps.append(name)
            if index:
                steps.append(int(index.rstrip("]")))
        node = self.tree
        for depth, step in enumerate(steps[:-1]):
            node = node.setdefault(step, {})
            if from_deal and isinstance(step, int):
                self.from_deal.add(tuple(steps[: depth + 1]))
        node[steps[-1]] = value
        self.keys.add(key.lower())

    def has(self, key: str) -> bool:
        return key.lower() in self.keys

    def top_keys(self) -> set[str]:
        return {str(k).lower() for k in self.tree}

    def build(self) -> dict[str, Any]:
        built: dict[str, Any] = self._build(self.tree, ())
        return built

    def _build(self, node: dict[Any, Any], path: tuple[Any, ...]) -> Any:
        if node and all(isinstance(k, int) for k in node):  # a list, its elements by index
            kept = [k for k in sorted(node) if (*path, k) in self.from_deal]
            return [self._build(node[k], (*path, k)) for k in kept]
        built = {k: self._build(v, (*path, k)) if isinstance(v, dict) else v for k, v in node.items()}
        return {k: v for k, v in built.items() if v != [] and v != {}}


def _sent(body: AbcMapping[str, Any], mapping: Mapping) -> dict[str, Any]:
    """What the body tells SI, per mapped field, in Zoho space (the snapshot's SI side after a create)."""
    folded = {name.lower(): value for name, value in body.items()}
    sent: dict[str, Any] = {}
    for fmap in mapping.fields:
        if fmap.si_key not in folded:
            continue
        try:
            sent[fmap.zoho] = fmap.from_si(folded[fmap.si_key])
        except ValueError:
            continue  # cannot happen for a body we built; a hand-edited intent just loses the entry
    return sent
