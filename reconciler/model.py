"""Frozen value objects shared by the planner, the applier and the service.

Records from the two APIs arrive here already parsed: a Zoho deal keeps Zoho's API names as keys; an SI
record's keys are *folded* to lower case (SI answers in PascalCase, its spec says camelCase, so every
lookup on the SI side is case-insensitive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CycleReport", "CycleResult", "World", "fold"]


def fold(value: Any) -> Any:
    """Return ``value`` with every mapping key lower-cased, recursively (SI's case-insensitive JSON)."""
    if isinstance(value, Mapping):
        return {str(k).lower(): fold(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fold(v) for v in value]
    return value


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did; part of :class:`CycleResult`, shown by the CLI, ``status`` and the metrics.

    ``outcome`` is one of ``ok`` (everything applied or nothing to do), ``pending`` (dry run with changes),
    ``parked`` (an item was parked this cycle), ``refused`` (the mass-change guard stopped the plan),
    ``failed`` (the cycle could not run: an API was unreachable; or an action will be retried),
    ``interrupted`` (a stop request ended it early) or ``overran`` (its time budget ran out). ``counts``
    holds actions by ``"<kind>.<result>"`` (``create.applied``, ``note.parked`` ...).
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


@dataclass(frozen=True, slots=True)
class LinkState:
    deal_id: str
    project_id: str
    message_id: str | None = None
    publish_status: str = "pending"  # pending | imported | failed
    publish_error: str | None = None
    active: bool = True
    inactive_reason: str | None = None
    si_state: str = ""  # "archived" or "deleted" when SI's newest export says so


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What both sides held, in Zoho space, when the pair last agreed (keys: Zoho field names).

    ``si`` is the value SI holds or will hold once our queued updates are imported; ``pending`` lists
    those queued updates per field (``value``, ``message_id``, ``stale``: values SI may still show that
    are not edits, ``imported_ms`` once SI imported it). ``updates`` counts the SI updates this pair has
    begun, so each new one gets a new ``MessageId``. ``held`` keeps what SI reported while the pair was not
    syncing (field -> ``[value, PublishedOnUnixTimeMs]``): those messages were acknowledged, and the values
    are applied when the pair syncs again. ``reported`` holds, per field, when SI published the report
    ``si`` comes from: an older message delivered again (its acknowledgement failed) is not news.
    """

    deal_id: str
    zoho_hash: str = ""
    zoho: Mapping[str, Any] = None  # type: ignore[assignment]
    si: Mapping[str, Any] = None  # type: ignore[assignment]
    pending: Mapping[str, Any] = None  # type: ignore[assignment]
    updates: int = 0
    held: Mapping[str, Any] = None  # type: ignore[assignment]
    reported: Mapping[str, int] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name in ("zoho", "si", "pending", "held", "reported"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, {})


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Deal:
    """A Zoho deal as COQL returned it: ``values`` keyed by COQL column (``Account_Name.Account_Name``)."""

    id: str
    values: Mapping[str, Any]

    @property
    def modified_time(self) -> str | None:
        value = self.values.get("Modified_Time")
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class SiExport:
    """One SI export message (a ``ProjectInfo``), with the detail fields merged in when fetched.

    ``detailed`` is False when the message needed a detail read that did not happen; ``problem`` says why
    a message cannot be used (its details could not be read, or it lacks an identifying field). A
    ``current`` export is SI's present state read by ``reconcile --deep``: a report of values, never
    acknowledged and never a note.
    """

    project_id: str
    integration_id: str | None
    message_id: str | None
    co_number: str | None
    published_ms: int
    values: Mapping[str, Any]
    detailed: bool = True
    problem: str | None = None
    current: bool = False


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """A publish message that left SI's pending list: imported (2) or failed (3)."""

    message_id: str
    status_id: int
    error: str | None = None
    imported_ms: int | None = None  # SI's ImportedOn, on SI's clock like PublishedOnUnixTimeMs


# ---- the plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class CreateProject:
    """Publish a new SI project for a flagged deal (our Guid as ``Id``), then write its id back.

    ``record`` is the write-back onto the deal (project id and sync status). ``zoho_values`` and
    ``si_values`` (Zoho space) are the pair's snapshot once the create is done: what the deal held and
    what SI was sent *in this publish*. ``project_id``/``message_id`` are set when the publish already
    happened in an earlier, interrupted cycle: then only the write-back is left to do.
    """

    key: str
    deal_id: str
    guid: str
    body: Mapping[str, Any]
    input_hash: str
    zoho_values: Mapping[str, Any] = field(default_factory=dict)
    zoho_hash_after: str = ""
    republish: bool = False  # SI failed to import the first publish and the operator asked to retry
    kind: str = "create"
    si_values: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)
    project_id: str | None = None
    message_id: str | None = None

    @property
    def published(self) -> bool:
        return self.project_id is not None


@dataclass(frozen=True, slots=True)
class UpdateDeal:
    """Write fields onto one deal (batched with others, 100 a call)."""

    key: str
    deal_id: str
    project_id: str | None
    changes: tuple[FieldChange, ...]
    record: Mapping[str, Any]
    input_hash: str
    kind: str = "update_deal"


@dataclass(frozen=True, slots=True)
class UpdateProject:
    """Send changed Zoho fields to SI through ``POST /Publish/Projects/Update``."""

    key: str
    deal_id: str
    project_id: str
    changes: tuple[FieldChange, ...]
    fields: tuple[tuple[int, str], ...]
    input_hash: str
    kind: str = "update_project"
    message_id: str = ""  # ours, decided by the planner: a resend keeps it, a new value gets a new one


@dataclass(frozen=True, slots=True)
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
    look_first: bool = False  # an earlier attempt may have reached Zoho: look for the note before posting
    blanked: tuple[str, ...] = ()  # placeholders whose value could not be shown (rendered empty)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Park:
    """Input the planner cannot use (missing required field, bad value): kept with its reason."""

    key: str
    deal_id: str | None
    project_id: str | None
    message: str
    input_hash: str
    kind: str = "park"


@dataclass(frozen=True, slots=True)
class Defer:
    """An item that failed this cycle (e.g. its SI details could not be read): one attempt is counted and
    the next cycle tries again; the planner parks it instead once the attempts are used up."""

    key: str
    deal_id: str | None
    project_id: str | None
    message: str
    input_hash: str
    kind: str = "defer"


Action = CreateProject | UpdateDeal | UpdateProject | AddNote | Conflict | Park | Defer
WRITES = (CreateProject, UpdateDeal, UpdateProject, AddNote)


@dataclass(frozen=True, slots=True)
class Ack:
    """``MarkAsImportedByMessageId`` for exactly one export message (the one the cycle processed)."""

    project_id: str
    co_number: str | None
    published_ms: int
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
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
    updates: int | None = None  # the snapshot's count of SI updates begun (None: unchanged)
    held: Mapping[str, Any] | None = None  # a stopped pair: SI's reports to keep until it syncs again
    reported: Mapping[str, int] | None = None  # per field, when SI published the report ``si`` comes from


@dataclass(frozen=True)
class Plan:
    """Everything one cycle will do, decided before anything is done.

    ``held`` lists deal ids a full read did not return and no direct read has confirmed gone: their
    pairs are left as they are (SI's messages for them stay unacknowledged) until a read settles it.
    """

    actions: tuple[Action, ...] = ()
    settles: tuple[Settle, ...] = ()
    unknown: tuple[SiExport, ...] = ()
    refused: str | None = None
    full: bool = False
    deep: bool = False
    held: tuple[str, ...] = ()
    resolved: tuple[str, ...] = ()  # re-queued items this plan no longer needs: the applier closes them

    def writes(self) -> int:
        """Records this plan writes to Zoho or SI (the mass-change guard counts these)."""
        return sum(1 for a in self.actions if isinstance(a, WRITES))

    def acks(self) -> list[Ack]:
        return [ack for settle in self.settles for ack in settle.acks]

    @property
    def has_changes(self) -> bool:
        return self.writes() > 0 or bool(self.acks())


# ---- what the planner looks at ---------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Everything the planner looks at; built by :mod:`reconciler.read` from the APIs and the store.

    ``links``, ``snapshots`` and ``intents`` hold what the store knows of the pairs this cycle's input
    touches (not necessarily every pair). ``gone`` names linked deals a full read missed and a direct
    read confirmed deleted; ``status_errors`` maps our SI message ids to why SI could not tell their
    status; ``active_links`` is the store's count of active links (the mass-change guard's yardstick,
    ``None``: count ``links``). ``deep`` marks a ``reconcile --deep`` read (SI's current state of every
    active pair is among ``exports``, marked ``current``).
    """

    deals: Sequence[Deal] = ()
    exports: Sequence[SiExport] = ()
    links: Mapping[str, LinkState] = field(default_factory=dict)
    snapshots: Mapping[str, Snapshot] = field(default_factory=dict)
    intents: Mapping[str, IntentState] = field(default_factory=dict)
    publish_outcomes: Mapping[str, PublishOutcome] = field(default_factory=dict)
    full: bool = False
    gone: frozenset[str] = frozenset()
    status_errors: Mapping[str, str] = field(default_factory=dict)
    active_links: int | None = None
    deep: bool = False
    si_projects: frozenset[str] = frozenset()  # projects SI confirmed exist (detail reads for adoption)
    read_problems: Mapping[str, str] = field(default_factory=dict)  # item key -> why it could not be read
    zoho_time: float | None = None  # Zoho's clock (its Date header) when the deals were read


@dataclass(frozen=True)
class CycleResult:
    """One cycle's outcome: its report, its plan (None when it could not plan), what it parked."""

    report: CycleReport
    plan: Plan | None = None
    parked: tuple[tuple[str, str], ...] = ()
    done: int = 0
    total: int = 0
