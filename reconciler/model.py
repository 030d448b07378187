"""Frozen value objects shared by the planner, the applier and the service.

Records from the two APIs arrive here already parsed: a Zoho deal keeps Zoho's API names as keys; an SI
record's keys are *folded* to lower case (SI answers in PascalCase, its spec says camelCase, so every
lookup on the SI side is case-insensitive).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CycleReport", "fold"]


def fold(value: Any) -> Any:
    """Return ``value`` with every mapping key lower-cased, recursively (SI's case-insensitive JSON)."""
    if isinstance(value, Mapping):
        return {str(k).lower(): fold(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fold(v) for v in value]
    return value


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did; returned by ``service.run_cycle`` and shown by the CLI, status and metrics.

    ``outcome`` is one of ``ok`` (everything applied or nothing to do), ``pending`` (dry run with changes),
    ``parked`` (an item was parked this cycle), ``refused`` (the mass-change guard stopped the plan) or
    ``failed`` (the cycle could not run: an API was unreachable). ``counts`` holds actions by
    ``"<kind>.<result>"`` (``create.applied``, ``note.parked`` ...).
    """

    mode: str
    outcome: str
    exit_code: int
    started_at: float
    ended_at: float
    dry_run: bool = False
    cycle_id: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    api_calls: Mapping[str, int] = field(default_factory=dict)
    api_errors: Mapping[str, int] = field(default_factory=dict)
    message: str = ""

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at

    @property
    def succeeded(self) -> bool:
        return self.outcome in {"ok", "pending"}

    def summary(self) -> str:
        """One line for people, systemd's STATUS= and alerts."""
        done = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()) if v) or "no changes"
        text = f"{self.mode} cycle {self.outcome} in {self.duration:.1f}s: {done}"
        return f"{text} ({self.message})" if self.message else text


# ---- what the store remembers (read by the planner as plain data) -----------------------------------


@dataclass(frozen=True)
class LinkState:
    deal_id: str
    project_id: str
    message_id: str | None = None
    publish_status: str = "pending"  # pending | imported | failed
    publish_error: str | None = None
    active: bool = True
    inactive_reason: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """What both sides held, in Zoho space, when the pair last agreed (keys: Zoho field names)."""

    deal_id: str
    zoho_hash: str = ""
    zoho: Mapping[str, Any] = None  # type: ignore[assignment]
    si: Mapping[str, Any] = None  # type: ignore[assignment]
    pending: Mapping[str, Any] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name in ("zoho", "si", "pending"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, {})


@dataclass(frozen=True)
class IntentState:
    key: str
    kind: str
    status: str  # pending | done | parked
    attempts: int = 0
    input_hash: str = ""
    last_error: str | None = None
    payload: Mapping[str, Any] | None = None
    remote: Mapping[str, Any] | None = None
    deal_id: str | None = None
    project_id: str | None = None
    updated_at: float = 0.0
    next_retry_at: float | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: float
    cycle_id: int | None
    deal_id: str | None
    project_id: str | None
    action: str
    field: str
    old: Any
    new: Any


# ---- inputs of the planner -------------------------------------------------------------------------


@dataclass(frozen=True)
class Deal:
    """A Zoho deal as COQL returned it: ``values`` keyed by COQL column (``Account_Name.Account_Name``)."""

    id: str
    values: Mapping[str, Any]

    @property
    def modified_time(self) -> str | None:
        value = self.values.get("Modified_Time")
        return None if value is None else str(value)


@dataclass(frozen=True)
class SiExport:
    """One SI export message (a ``ProjectInfo``), with the detail fields merged in when fetched."""

    project_id: str
    integration_id: str | None
    message_id: str | None
    co_number: str | None
    published_ms: int
    values: Mapping[str, Any]


@dataclass(frozen=True)
class PublishOutcome:
    """A publish message that left SI's pending list: imported (2) or failed (3)."""

    message_id: str
    status_id: int
    error: str | None = None
    imported_ms: int | None = None  # SI's ImportedOn, on SI's clock like PublishedOnUnixTimeMs


# ---- the plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class CreateProject:
    """Publish a new SI project for a flagged deal (our Guid as ``Id``), then write its id back."""

    key: str
    deal_id: str
    guid: str
    body: Mapping[str, Any]
    input_hash: str
    zoho_values: Mapping[str, Any] = field(default_factory=dict)
    zoho_hash_after: str = ""
    republish: bool = False  # SI failed to import the first publish and the operator asked to retry
    kind: str = "create"


@dataclass(frozen=True)
class UpdateDeal:
    """Write fields onto one deal (batched with others, 100 a call)."""

    key: str
    deal_id: str
    project_id: str | None
    changes: tuple[FieldChange, ...]
    record: Mapping[str, Any]
    input_hash: str
    kind: str = "update_deal"


@dataclass(frozen=True)
class UpdateProject:
    """Send changed Zoho fields to SI through ``POST /Publish/Projects/Update``."""

    key: str
    deal_id: str
    project_id: str
    changes: tuple[FieldChange, ...]
    fields: tuple[tuple[int, str], ...]
    input_hash: str
    kind: str = "update_project"


@dataclass(frozen=True)
class AddNote:
    """One Zoho note for one change-order state ``(project, CONumber, COStatus)``."""

    key: str
    deal_id: str
    project_id: str
    co_number: str
    co_status: str
    title: str
    content: str
    input_hash: str = ""
    kind: str = "note"


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed to different values under ``on_conflict = "manual"``."""

    key: str
    deal_id: str
    project_id: str
    field: str
    zoho_value: Any
    si_value: Any
    input_hash: str
    kind: str = "conflict"


@dataclass(frozen=True)
class Park:
    """Input the planner cannot use (missing required field, bad value): kept with its reason."""

    key: str
    deal_id: str | None
    project_id: str | None
    message: str
    input_hash: str
    kind: str = "park"


Action = CreateProject | UpdateDeal | UpdateProject | AddNote | Conflict | Park


@dataclass(frozen=True)
class Ack:
    """``MarkAsImported`` for every message of ``(project, CONumber)`` up to ``published_ms``."""

    project_id: str
    co_number: str | None
    published_ms: int


@dataclass(frozen=True)
class Settle:
    """The snapshot a pair takes once all its actions are applied (or parked), and its messages acked.

    ``link`` is the link row to store, ``unknown`` an SI project no deal claims (reported, not acked).
    """

    deal_id: str
    project_id: str | None
    action_keys: tuple[str, ...]
    zoho: Mapping[str, Any] | None = None
    si: Mapping[str, Any] | None = None
    pending: Mapping[str, Any] | None = None
    zoho_hash: str | None = None
    acks: tuple[Ack, ...] = ()
    link: Any = None
    resolved_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything one cycle will do, decided before anything is done."""

    actions: tuple[Action, ...] = ()
    settles: tuple[Settle, ...] = ()
    unknown: tuple[SiExport, ...] = ()
    refused: str | None = None
    full: bool = False

    def writes(self) -> int:
        """Records this plan writes to Zoho or SI (the mass-change guard counts these)."""
        return sum(1 for a in self.actions if not isinstance(a, Conflict | Park))

    def acks(self) -> list[Ack]:
        return [ack for settle in self.settles for ack in settle.acks]

    @property
    def has_changes(self) -> bool:
        return self.writes() > 0 or bool(self.acks())
