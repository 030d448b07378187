"""The planner's shared parts for one pair: its inputs, what planning it accumulates, and the world's
lookups every pair consults. Pure."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler import keys
from reconciler.mapping import FieldMap, Mapping
from reconciler.model import (
    Ack,
    Action,
    Defer,
    FieldChange,
    IntentState,
    LinkState,
    Park,
    PublishOutcome,
    Settle,
    SiExport,
    Snapshot,
)
from reconciler.plan.common import CanonSpec, canon_spec, digest
from reconciler.plan.fields import SiRead

__all__ = ["Lookups", "PairInputs", "PairPlan", "PairState", "Work", "acks_for", "add", "failure"]


@dataclass(frozen=True)
class Lookups:
    """What the whole world offers every pair: the mapping and the store's and SI's answers by key."""

    mapping: Mapping
    intents: AbcMapping[str, IntentState]
    outcomes: AbcMapping[str, PublishOutcome]
    status_errors: AbcMapping[str, str]
    need_base: bool = False  # a base-project message needs a detail read (worked out once per plan)
    need_co: bool = False  # a change-order message does
    spec: CanonSpec = field(default_factory=lambda: CanonSpec(()))  # the paths a pair's canonical map holds
    by_zoho: AbcMapping[str, FieldMap] = field(default_factory=dict)  # mapped fields by Zoho name
    open_conflicts: frozenset[str] = frozenset()  # keys of conflicts waiting for a decision

    @classmethod
    def of(
        cls,
        mapping: Mapping,
        intents: AbcMapping[str, IntentState],
        outcomes: AbcMapping[str, PublishOutcome],
        status_errors: AbcMapping[str, str],
    ) -> Lookups:
        need_base, need_co = mapping.needs_project_detail(), mapping.needs_change_order_detail()
        by_zoho = {f.zoho: f for f in mapping.fields}
        conflicts = frozenset(
            k for k, i in intents.items() if k.startswith(keys.CONFLICTS) and i.status in keys.OPEN
        )
        spec = canon_spec(mapping)
        return cls(mapping, intents, outcomes, status_errors, need_base, need_co, spec, by_zoho, conflicts)

    def is_parked(self, key: str, input_hash: str) -> bool:
        intent = self.intents.get(key)
        return intent is not None and intent.status == keys.PARKED and intent.input_hash == input_hash

    def open(self, key: str) -> bool:
        intent = self.intents.get(key)
        return intent is not None and intent.status in keys.OPEN


class PairInputs(NamedTuple):
    """One pair as this cycle sees it. ``canon`` is None when the deal was not read this cycle."""

    link: LinkState
    stored: LinkState | None  # the link as the store has it (None: adopted in this cycle)
    canon: AbcMapping[str, Any] | None
    zoho_hash: str | None
    snapshot: Snapshot
    exports: tuple[SiExport, ...] = ()  # this pair's messages, oldest first
    forced: bool = False  # re-queued by `retry`, or read by `reconcile --deep`: plan it even if quiet


class PairPlan(NamedTuple):
    actions: tuple[Action, ...] = ()
    settle: Settle | None = None


class PairState(NamedTuple):
    """What the pair's snapshot becomes as its planning goes: both sides' values (Zoho space), our SI
    updates still waiting, and per field when SI published the report ``si`` comes from."""

    zoho: AbcMapping[str, Any]
    si: AbcMapping[str, Any]
    pending: AbcMapping[str, Any]
    reported: AbcMapping[str, int]


@dataclass
class Work:
    """What one pair's planning accumulates (local to :func:`plan_pair`)."""

    actions: list[Action] = field(default_factory=list)
    waits: list[str] = field(default_factory=list)  # keys the settle waits for
    resolved: list[str] = field(default_factory=list)
    deal_record: dict[str, Any] = field(default_factory=dict)
    zoho_changes: list[FieldChange] = field(default_factory=list)
    si_changes: list[tuple[FieldMap, FieldChange, SiRead]] = field(default_factory=list)
    parks: dict[str, str] = field(default_factory=dict)  # key -> input hash parked by this plan


def failure(key: str, deal_id: str | None, project_id: str | None, message: str, w: Lookups) -> Action | None:
    """A failed item: Defer (count an attempt), Park once attempts are used up, None when parked already."""
    input_hash = digest(message)
    intent = w.intents.get(key)
    if intent is not None and intent.status == keys.PARKED and intent.input_hash == input_hash:
        return None
    attempts = intent.attempts if intent is not None and intent.status == keys.PENDING else 0
    if attempts + 1 >= keys.MAX_ATTEMPTS:
        return Park(key, deal_id, project_id, message, input_hash)
    return Defer(key, deal_id, project_id, message, input_hash)


def add(work: Work, action: Action | None) -> None:
    if action is not None:
        work.actions.append(action)


def acks_for(exports: Sequence[SiExport]) -> tuple[Ack, ...]:
    """One acknowledgement per export message (SI's present state, read by --deep, is never acked)."""
    return tuple(
        Ack(e.project_id, e.co_number, e.published_ms, e.message_id) for e in exports if not e.current
    )
