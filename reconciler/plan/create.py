"""Creating a deal's SI project: the publish body, and the snapshot the pair starts from. Pure.

The body carries every ``[create]`` entry, every ``[create.constants]`` value, and the value of every
``zoho_to_si`` or ``both`` field the deal has (SI's ``Project`` accepts each property that has a
``ProjectFieldId``), so nothing Zoho knew before the project existed is left behind. The snapshot a create
leaves is built from that body: Zoho's side holds the deal's values as published, SI's side holds exactly
what the body sent. When the publish happened in an earlier, interrupted cycle, the create is *resumed*
from what its intent recorded at the time; edits made since are ordinary changes for the next cycle.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from typing import Any

from reconciler import keys
from reconciler.mapping import Mapping, to_si_json, zoho_column
from reconciler.model import CreateProject, Deal, IntentState, Park
from reconciler.plan.common import QUEUED, canon_digest, project_guid

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
    parked = intent is not None and intent.status == keys.PARKED and intent.input_hash == zoho_hash
    if parked and republish is None:
        return None  # parked with this very input (the deal has not changed since)
    body, problem = _body(deal, canon, mapping)
    if problem is not None:
        return None if parked else Park(key, deal.id, None, problem, zoho_hash)
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
    """The publish body without its ids, or a problem naming the deal and the field."""
    body: dict[str, Any] = {}
    for si_name, path in mapping.create:
        raw = deal.values.get(zoho_column(path))
        if raw in (None, ""):
            if si_name.lower() in _REQUIRED:
                return body, f"deal {deal.id}: field {path} is empty (SI requires {si_name})"
            continue
        try:
            body[si_name] = to_si_json(raw, si_name.lower())
        except ValueError as exc:
            return body, f"deal {deal.id}: field {path}: {exc}"
    given = {name.lower() for name in body} | {name.lower() for name, _ in mapping.create}
    for fmap in mapping.fields:
        value = canon.get(fmap.zoho)
        if not fmap.to_si_side or fmap.si_key in given or value is None:
            continue
        try:
            body[fmap.si] = to_si_json(fmap.si_value(value), fmap.si_key)
        except ValueError as exc:
            return body, f"deal {deal.id}: field {fmap.zoho}: {exc}"
        given.add(fmap.si_key)
    present = {name.lower() for name in body}
    for si_name, value in mapping.create_constants:
        if si_name.lower() not in present:
            body[si_name] = value
    return body, None


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
