"""The planner: PURE. (Zoho deals, SI exports, the store's view, the mapping) -> a :class:`Plan`.

No I/O happens here and nothing here imports a client, the store or httpx: ``plan`` (the dry run) prints
exactly what ``run-once`` would apply, and the planner can be tested and benchmarked on plain data.

For each deal/project pair and each mapped field the planner compares both sides, in Zoho space, with
the snapshot taken when the pair last agreed. A side *changed* when its value differs from its snapshot;
our own writes are recorded in the snapshot, so they never echo back. While an update we sent to SI is
still pending there (``snapshot.pending``), an SI export showing another value for that field is stale,
not a change.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.mapping import (
    FieldMap,
    Mapping,
    canonical,
    render_template,
    to_si_json,
    to_zoho_json,
    zoho_column,
)
from reconciler.model import (
    Ack,
    Action,
    AddNote,
    Conflict,
    CreateProject,
    Deal,
    FieldChange,
    IntentState,
    LinkState,
    Park,
    Plan,
    PublishOutcome,
    Settle,
    SiExport,
    Snapshot,
    UpdateDeal,
    UpdateProject,
)

__all__ = [
    "GUID_NAMESPACE",
    "QUEUED",
    "World",
    "canon_digest",
    "digest",
    "note_reference",
    "plan",
    "project_guid",
    "zoho_canon",
]

# Our Guid for a deal's SI project is derived from the deal id, so a publish retried after any crash (or
# after the store was lost) targets the same project: SI updates a project whose Id it already has.
GUID_NAMESPACE = uuid.UUID("6f1c2a4e-1d0b-4c55-9a57-52d1f0c0a7e1")
TITLE_MAX = 120
CONTENT_MAX = 65535
STATUS_MAX = 255
REFERENCE_PREFIX = "[zohosi-ref "
QUEUED = "Queued for SI"
# SI's ImportedOn has whole seconds: an export stamped within the same second may predate the import.
IMPORT_CLOCK_SLACK_MS = 1000
# SI properties that describe a change order rather than the project ("cost" starts with "co" too).
CO_FIELDS = frozenset({
    "conumber", "coname", "costatus", "cotype", "conotes", "coid", "coacceptedon", "corejectedon",
    "cocreatedon", "ischangeorder",
})  # fmt: skip


@dataclass(frozen=True)
class World:
    """Everything the planner looks at; built by the service from the APIs and the store."""

    deals: Sequence[Deal] = ()
    exports: Sequence[SiExport] = ()
    links: AbcMapping[str, LinkState] = field(default_factory=dict)
    snapshots: AbcMapping[str, Snapshot] = field(default_factory=dict)
    intents: AbcMapping[str, IntentState] = field(default_factory=dict)
    publish_outcomes: AbcMapping[str, PublishOutcome] = field(default_factory=dict)
    full: bool = False


def digest(value: Any) -> str:
    """A short stable hash of JSON-able data (snapshot and input hashes)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def canon_digest(canon: AbcMapping[str, Any]) -> str:
    """:func:`digest` for a flat map of canonical values (str, bool or None), about three times faster."""
    return hashlib.sha1(repr(sorted(canon.items())).encode()).hexdigest()[:20]


def project_guid(deal_id: str) -> str:
    return str(uuid.uuid5(GUID_NAMESPACE, deal_id))


def note_reference(project_id: str, co_number: str, co_status: str) -> str:
    """The line that ends every change-order note; it makes the note's identity recoverable."""
    return f"{REFERENCE_PREFIX}note:{project_id}:{co_number}:{co_status}]"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _canon_spec(mapping: Mapping) -> tuple[tuple[str, str, bool, FieldMap | None], ...]:
    """Per Zoho path: its COQL column, whether it is the flag, its field map (worked out once per plan)."""
    by_path = {f.zoho: f for f in mapping.fields}
    return tuple(
        (path, zoho_column(path), path == mapping.flag_field, by_path.get(path))
        for path in mapping.zoho_paths()
    )


def zoho_canon(
    deal: Deal, mapping: Mapping, spec: tuple[tuple[str, str, bool, FieldMap | None], ...] | None = None
) -> dict[str, Any]:
    """The deal's mapped values in comparable form, keyed by mapping path. Raises ValueError on bad data."""
    canon: dict[str, Any] = {}
    for path, column, is_flag, fmap in spec or _canon_spec(mapping):
        raw = deal.values.get(column)
        try:
            if is_flag:
                canon[path] = bool(raw) if isinstance(raw, bool) else canonical(raw, "boolean") or False
            elif fmap is not None:
                canon[path] = fmap.from_zoho(raw)
            else:
                canon[path] = None if raw in (None, "") else str(raw)
        except ValueError as exc:
            raise ValueError(f"deal {deal.id}: field {path}: {exc}") from None
    return canon


def plan(world: World, mapping: Mapping, *, max_writes: int = 500, force: bool = False) -> Plan:
    """Decide what this cycle does. Pure: same input, same plan."""
    return _Planner(world, mapping).run(max_writes=max_writes, force=force)


class _Planner:
    def __init__(self, world: World, mapping: Mapping) -> None:
        self.w = world
        self.m = mapping
        self.actions: list[Action] = []
        self.settles: list[Settle] = []
        self.unknown: list[SiExport] = []
        self.by_project = {link.project_id: link for link in world.links.values()}
        self.canon_spec = _canon_spec(mapping)
        self.exports: dict[str, list[SiExport]] = defaultdict(list)
        for export in sorted(world.exports, key=lambda e: e.published_ms):
            self.exports[export.project_id].append(export)

    # ---- driver -----------------------------------------------------------------------------------

    def run(self, *, max_writes: int, force: bool) -> Plan:
        fetched: dict[str, Deal] = {deal.id: deal for deal in self.w.deals}
        pairs: dict[str, tuple[LinkState, dict[str, Any] | None, str | None]] = {}
        in_flight: set[str] = set()

        for deal_id in sorted(fetched):
            deal = fetched[deal_id]
            try:
                canon = zoho_canon(deal, self.m, self.canon_spec)
            except ValueError as exc:
                self._park(f"deal:{deal.id}", deal.id, None, str(exc), digest(dict(deal.values)))
                continue
            zoho_hash = canon_digest(canon)
            link = self.w.links.get(deal.id)
            link_value = canon[self.m.link_field]
            flagged = bool(canon[self.m.flag_field])
            if link is None and link_value:
                # The deal names its project but the store does not know it (store lost, or a crash right
                # after the write-back): adopt the link rather than publishing again.
                link = LinkState(deal_id=deal.id, project_id=str(link_value), publish_status="imported")
                self.by_project.setdefault(link.project_id, link)
            if link is not None and flagged and self._create_unfinished(link, link_value):
                # Published, but the write-back was not recorded (it failed, its answer was lost, or we
                # crashed): finish the create (the applier skips the publish and writes back again), so
                # the pair starts from the same snapshot as after an uninterrupted create.
                in_flight.add(deal.id)
                self._create(deal, canon, zoho_hash)
                continue
            if link is None:
                if flagged:
                    in_flight.add(deal.id)
                    self._create(deal, canon, zoho_hash)
                continue
            if link_value and link_value != link.project_id:
                self._park(
                    f"link:deal:{deal.id}",
                    deal.id,
                    link.project_id,
                    f"deal {deal.id}: {self.m.link_field} holds {link_value} but the deal is linked to "
                    f"SI project {link.project_id}; put the right id back in Zoho",
                    zoho_hash,
                )
                continue
            if not flagged:
                # Syncing stops; SI's messages for the project are acknowledged unprocessed (as for any
                # inactive pair), so they do not come back every cycle while the deal is re-read.
                acks = self._acks(self.exports.get(link.project_id, []))
                if link.active:
                    reason = (
                        f"{self.m.flag_field} was unticked in Zoho: syncing stopped (nothing deleted in SI)"
                    )
                    link = replace(link, active=False, inactive_reason=reason)
                    self.settles.append(Settle(deal.id, link.project_id, (), link=link, acks=acks))
                elif acks:
                    self.settles.append(Settle(deal.id, link.project_id, (), acks=acks))
                continue
            if not link.active:
                link = replace(link, active=True, inactive_reason=None)
            retry = self.w.intents.get(f"publish:deal:{deal.id}")
            if link.publish_status == "failed" and retry is not None and retry.status == "retry":
                self._create(deal, canon, zoho_hash, republish=link.project_id)
                continue
            pairs[deal.id] = (link, canon, zoho_hash)

        gone = self._missing_from_full_read(fetched) if self.w.full else set()

        for project_id, exports in self.exports.items():
            link = self.by_project.get(project_id)
            if link is None:
                integration = exports[-1].integration_id
                if integration not in in_flight:
                    self.unknown.append(exports[-1])
                continue
            if link.deal_id in pairs:
                continue
            if link.deal_id in fetched:
                continue  # fetched but parked, unflagged or mislinked: handled above
            if not link.active or link.deal_id in gone:
                self.settles.append(Settle(link.deal_id, project_id, (), acks=self._acks(exports)))
                continue
            pairs[link.deal_id] = (link, None, None)

        for link in self.w.links.values():
            if (
                link.deal_id not in pairs
                and link.deal_id not in fetched
                and link.deal_id not in gone
                and link.active
                and (
                    (link.message_id in self.w.publish_outcomes and link.publish_status == "pending")
                    or self._pending_resolved(link.deal_id)
                )
            ):
                pairs[link.deal_id] = (link, None, None)

        for deal_id in sorted(pairs):
            self._pair(*pairs[deal_id])

        result = Plan(
            actions=tuple(self.actions),
            settles=tuple(self.settles),
            unknown=tuple(self.unknown),
            full=self.w.full,
        )
        refused = self._guard(result, len(fetched), max_writes=max_writes, force=force)
        return replace(result, refused=refused) if refused else result

    def _guard(self, result: Plan, fetched: int, *, max_writes: int, force: bool) -> str | None:
        if force:
            return None
        if self.w.full and fetched == 0 and len(self.w.links) >= 10:
            return (
                "refused: a full read returned no flagged or linked deal from Zoho while "
                f"{len(self.w.links)} deals are linked; that looks like an API or mapping problem, "
                "so nothing was changed. If it is real, run: reconciler run-once --full --force"
            )
        writes = result.writes()
        if writes > max_writes:
            return (
                f"refused: this plan writes {writes} records, more than RECONCILER_MAX_WRITES={max_writes}; "
                "nothing was changed. Review it with `reconciler plan`, then run: reconciler run-once --force"
            )
        return None

    def _missing_from_full_read(self, fetched: AbcMapping[str, Deal]) -> set[str]:
        """Deactivate the links whose deal a full read no longer returns; returns their deal ids."""
        gone: set[str] = set()
        for link in self.w.links.values():
            if link.deal_id not in fetched and link.active:
                gone.add(link.deal_id)
                reason = (
                    f"deal no longer flagged or linked in Zoho ({self.m.link_field} cleared or deal deleted)"
                )
                self.settles.append(
                    Settle(
                        link.deal_id,
                        link.project_id,
                        (),
                        link=replace(link, active=False, inactive_reason=reason),
                    )
                )
        return gone

    # ---- helpers ----------------------------------------------------------------------------------

    def _create_unfinished(self, link: LinkState, link_value: Any) -> bool:
        intent = self.w.intents.get(f"create:deal:{link.deal_id}")
        return (
            intent is not None
            and intent.status in ("pending", "retry")
            and (intent.remote or {}).get("project_id") == link.project_id
            and link_value in (None, link.project_id)
        )

    def _pending_resolved(self, deal_id: str) -> bool:
        """Whether SI resolved an update of ours this pair still waits for (its entry can go)."""
        snap = self.w.snapshots.get(deal_id)
        if snap is None or not snap.pending or not self.w.publish_outcomes:
            return False  # the common case, answered without building a generator per deal
        return any(entry.get("message_id") in self.w.publish_outcomes for entry in snap.pending.values())

    def _failed_si_updates(self, snap: Snapshot, deal_id: str, project_id: str) -> None:
        """Park our SI update when SI reports it failed (status 3): ``retry`` sends it again."""
        failed: dict[str, list[str]] = defaultdict(list)
        for name, entry in snap.pending.items():
            outcome = self.w.publish_outcomes.get(str(entry.get("message_id") or ""))
            if outcome is not None and outcome.status_id == 3:
                failed[outcome.message_id].append(name)
        for message_id, names in sorted(failed.items()):
            error = self.w.publish_outcomes[message_id].error or "no reason given"
            key = f"update:project:{project_id}"
            self._park(
                key,
                deal_id,
                project_id,
                f"SI project {project_id} (deal {deal_id}): SI failed to apply our update of "
                f"{', '.join(sorted(names))}: {error}; `reconciler retry {key}` sends it again",
                message_id,
            )

    def _is_parked(self, key: str, input_hash: str) -> bool:
        intent = self.w.intents.get(key)
        return intent is not None and intent.status == "parked" and intent.input_hash == input_hash

    def _park(
        self, key: str, deal_id: str | None, project_id: str | None, message: str, input_hash: str
    ) -> None:
        if not self._is_parked(key, input_hash):
            self.actions.append(Park(key, deal_id, project_id, message, input_hash))

    @staticmethod
    def _acks(exports: Sequence[SiExport]) -> tuple[Ack, ...]:
        newest: dict[str | None, int] = {}
        for export in exports:
            newest[export.co_number] = max(newest.get(export.co_number, 0), export.published_ms)
        return tuple(Ack(exports[0].project_id, co, ms) for co, ms in newest.items())

    # ---- create -----------------------------------------------------------------------------------

    def _create(
        self, deal: Deal, canon: AbcMapping[str, Any], zoho_hash: str, republish: str | None = None
    ) -> None:
        key = f"create:deal:{deal.id}"
        if self._is_parked(key, zoho_hash) and republish is None:
            return
        body: dict[str, Any] = {}
        for si_name, path in self.m.create:
            raw = deal.values.get(zoho_column(path))
            if raw in (None, ""):
                if si_name.lower() in ("name", "client"):
                    self._park(
                        key,
                        deal.id,
                        None,
                        f"deal {deal.id}: field {path} is empty (SI requires {si_name})",
                        zoho_hash,
                    )
                    return
                continue
            try:
                body[si_name] = to_si_json(raw, si_name.lower())
            except ValueError as exc:
                self._park(key, deal.id, None, f"deal {deal.id}: field {path}: {exc}", zoho_hash)
                return
        for si_name, value in self.m.create_constants:
            body.setdefault(si_name, value)
        intent = self.w.intents.get(key)
        guid = str((intent.payload or {}).get("guid") or "") if intent else ""
        guid = republish or guid or project_guid(deal.id)
        body["Id"] = guid
        body["IntegrationProjectId"] = deal.id
        after = dict(canon)
        after[self.m.link_field] = guid
        if self.m.status_field:
            after[self.m.status_field] = QUEUED
        values = {f.zoho: canon[f.zoho] for f in self.m.fields}
        self.actions.append(
            CreateProject(
                key, deal.id, guid, body, zoho_hash, values, canon_digest(after), republish=bool(republish)
            )
        )

    # ---- linked pairs -----------------------------------------------------------------------------

    def _pair(self, link: LinkState, canon: dict[str, Any] | None, zoho_hash: str | None) -> None:
        deal_id, project_id = link.deal_id, link.project_id
        exports = self.exports.get(project_id, [])
        snap = self.w.snapshots.get(deal_id) or Snapshot(deal_id)
        acks = self._acks(exports) if exports else ()
        keys: list[str] = []
        resolved: list[str] = []
        extra: list[FieldChange] = []
        record: dict[str, Any] = {}

        if (
            canon is not None
            and zoho_hash == snap.zoho_hash
            and not exports
            and (link is self.w.links.get(deal_id) or link == self.w.links.get(deal_id))
            and link.message_id not in self.w.publish_outcomes
            and not self._pending_resolved(deal_id)
        ):
            return  # nothing moved on either side

        # The deal must carry its project id (a crash between publish and write-back, or a human cleared it).
        if canon is not None and not canon[self.m.link_field]:
            extra.append(FieldChange(self.m.link_field, None, project_id))
            record[self.m.link_field] = project_id
        outcome = self.w.publish_outcomes.get(link.message_id or "")
        if outcome is not None and link.publish_status == "pending":
            if outcome.status_id == 2:
                link = replace(link, publish_status="imported", publish_error=None)
                status_text = "In SI"
            else:
                error = outcome.error or "no reason given"
                link = replace(link, publish_status="failed", publish_error=error)
                status_text = _truncate(f"SI import failed: {error}", STATUS_MAX)
                self._park(
                    f"publish:deal:{deal_id}",
                    deal_id,
                    project_id,
                    f"deal {deal_id}: SI failed to import project {project_id}: {error}; fix the cause, then "
                    f"`reconciler retry publish:deal:{deal_id}` publishes it again",
                    outcome.message_id,
                )
            if self.m.status_field:
                old = canon.get(self.m.status_field) if canon else None
                if old != status_text:
                    extra.append(FieldChange(self.m.status_field, old, status_text))
                    record[self.m.status_field] = status_text

        zoho_now = {f.zoho: canon[f.zoho] for f in self.m.fields} if canon is not None else dict(snap.zoho)
        si_seen, si_when, bad = self._si_values(project_id, deal_id, exports)
        if bad is not None:
            park_key = f"si:project:{project_id}"
            self._park(park_key, deal_id, project_id, bad, digest([dict(e.values) for e in exports]))
            note_keys = self._notes(link, exports)
            self.settles.append(Settle(deal_id, project_id, note_keys, acks=acks, link=link))
            return

        # A stored entry without a message id is an update that never reached SI (it was parked): no echo
        # will come, so it must not make SI's later exports of that field look stale forever.
        pending: dict[str, Any] = {}
        for name, entry in snap.pending.items():
            outcome = self.w.publish_outcomes.get(str(entry.get("message_id") or ""))
            if not entry.get("message_id"):
                continue
            if outcome is None:
                pending[name] = entry
            elif outcome.status_id == 2 and outcome.imported_ms is not None:
                # Imported: exports published before the import may still show the old value; keep the
                # entry until SI echoes our value or exports something newer than the import.
                pending[name] = {**entry, "imported_ms": outcome.imported_ms}
        self._failed_si_updates(snap, deal_id, project_id)
        new_zoho = {**snap.zoho, **zoho_now}
        new_si = dict(snap.si)
        zoho_changes: list[FieldChange] = list(extra)
        si_changes: list[FieldChange] = []
        for f in self.m.fields:
            self._field(
                f,
                snap,
                zoho_now,
                si_seen,
                pending,
                new_zoho,
                new_si,
                zoho_changes,
                si_changes,
                resolved,
                deal_id,
                project_id,
                keys,
                si_when=si_when,
            )

        for change in zoho_changes[len(extra) :]:
            fmap = next(f for f in self.m.fields if f.zoho == change.field)
            record[change.field] = to_zoho_json(change.new, fmap.zoho_type)
        if record:
            key = f"update:deal:{deal_id}"
            input_hash = digest(record)
            if not self._is_parked(key, input_hash):
                self.actions.append(
                    UpdateDeal(
                        key, deal_id, project_id, tuple(zoho_changes), {"id": deal_id, **record}, input_hash
                    )
                )
            else:
                # Parked with this very input, so not applied: the snapshot keeps what Zoho really holds
                # (else a later read of the deal would look like a Zoho edit and be pushed to SI).
                for change in zoho_changes:
                    if change.field in zoho_now:
                        new_zoho[change.field] = change.old
                zoho_changes = []
            keys.append(key)
        if si_changes:
            key = f"update:project:{project_id}"
            fields = tuple(
                (fmap.si_field_id or 0, fmap.si_value(change.new))
                for change in si_changes
                for fmap in self.m.fields
                if fmap.zoho == change.field
            )
            input_hash = digest(fields)
            if not self._is_parked(key, input_hash):
                self.actions.append(
                    UpdateProject(key, deal_id, project_id, tuple(si_changes), fields, input_hash)
                )
                for change in si_changes:
                    pending[change.field] = {"value": change.new, "message_id": None}
            else:
                # Parked with this very input: SI keeps its value, and no update of ours is awaited.
                for change in si_changes:
                    if change.field in si_seen or change.field in snap.si:
                        new_si[change.field] = change.old
                    else:
                        new_si.pop(change.field, None)
            keys.append(key)

        keys.extend(self._notes(link, exports))  # the acks wait for the notes, or a failed one is lost
        if canon is not None:
            after = dict(canon)
            after.update({c.field: c.new for c in zoho_changes})
            new_hash: str | None = canon_digest(after)
        else:
            new_hash = None
        self.settles.append(
            Settle(
                deal_id,
                project_id,
                tuple(keys),
                zoho=new_zoho,
                si=new_si,
                pending=pending,
                zoho_hash=new_hash,
                acks=acks,
                link=link,
                resolved_keys=tuple(resolved),
            )
        )

    def _si_values(
        self, project_id: str, deal_id: str, exports: Sequence[SiExport]
    ) -> tuple[dict[str, Any], dict[str, int], str | None]:
        """SI's current values in Zoho space for the fields this poll tells us about, when SI published
        each (``PublishedOnUnixTimeMs``), and a park message for a bad value."""
        when: dict[str, int] = {}
        seen: dict[str, Any] = {}
        if not exports:
            return seen, when, None
        base = [e for e in exports if e.co_number is None]
        change_orders = [e for e in exports if e.co_number is not None]
        for f in self.m.fields:
            # Project fields come from the newest base-project message: a change-order message describes
            # the change order (its Price is the CO's price). Change-order fields (CONumber, COStatus ...)
            # come from the newest change-order message, so a base message's CONumber = null never wipes
            # the deal's CO number.
            is_co_field = f.si_key in CO_FIELDS
            group = change_orders if is_co_field else base
            source = group[-1] if group else None
            if source is None or f.si_key not in source.values:
                continue
            try:
                seen[f.zoho] = f.from_si(source.values[f.si_key])
            except ValueError as exc:
                return seen, when, f"SI project {project_id} (deal {deal_id}): field {f.si}: {exc}"
            when[f.zoho] = source.published_ms
        return seen, when, None

    def _field(
        self,
        f: FieldMap,
        snap: Snapshot,
        zoho_now: AbcMapping[str, Any],
        si_seen: AbcMapping[str, Any],
        pending: dict[str, Any],
        new_zoho: dict[str, Any],
        new_si: dict[str, Any],
        zoho_changes: list[FieldChange],
        si_changes: list[FieldChange],
        resolved: list[str],
        deal_id: str,
        project_id: str,
        keys: list[str],
        *,
        si_when: AbcMapping[str, int],
    ) -> None:
        name = f.zoho
        z_now = zoho_now.get(name)
        z_changed = name in zoho_now and (name not in snap.zoho or z_now != snap.zoho.get(name))
        s_old = snap.si.get(name)
        s_now = s_old
        s_changed = False
        if name in si_seen:
            s_now = si_seen[name]
            # The first time SI reports a field, an empty value (None or 0: a freshly imported project) is a
            # baseline, not news, so a new project's zero price never wipes what sales typed into the deal.
            s_changed = s_now not in (None, "0") if name not in snap.si else s_now != s_old
            waiting = pending.get(name)
            imported_ms = waiting.get("imported_ms") if waiting is not None else None
            if waiting is None:
                pass
            elif s_now == waiting.get("value"):
                del pending[name]  # SI echoed our own update: not a change
                s_changed = False
            elif imported_ms is not None and si_when.get(name, 0) > int(imported_ms) + IMPORT_CLOCK_SLACK_MS:
                del pending[name]  # exported after SI applied our update: SI's own newer value
            else:
                s_now, s_changed = s_old, False  # an export older than our pending update: stale
        if name in si_seen or name in snap.si:
            # Only what SI reported: a None recorded for a project SI has not exported yet would make
            # its first (empty) report look like a change and wipe the deal's value.
            new_si[name] = s_now

        push_zoho = push_si = False
        conflict_key = f"conflict:{deal_id}:{name}"
        if f.direction == "si_to_zoho":
            push_zoho = s_changed and s_now != z_now
        elif f.direction == "zoho_to_si":
            push_si = z_changed and z_now != s_now
        elif z_changed and s_changed:
            if z_now == s_now:
                pass
            elif f.on_conflict == "si_wins":
                push_zoho = True
            elif f.on_conflict == "zoho_wins":
                push_si = True
            else:
                input_hash = digest([z_now, s_now])
                if not self._is_parked(conflict_key, input_hash):
                    self.actions.append(
                        Conflict(conflict_key, deal_id, project_id, name, z_now, s_now, input_hash)
                    )
                keys.append(conflict_key)
                return
        elif z_changed:
            push_si = z_now != s_now
        elif s_changed:
            push_zoho = s_now != z_now

        open_conflict = self.w.intents.get(conflict_key)
        if open_conflict is not None and open_conflict.status in ("parked", "retry"):
            if push_zoho or push_si or z_now == s_now:
                resolved.append(conflict_key)
            elif not (z_changed or s_changed):
                return  # still unresolved: leave both sides alone
        if push_zoho:
            zoho_changes.append(FieldChange(name, z_now, s_now))
            new_zoho[name] = s_now
        if push_si:
            si_changes.append(FieldChange(name, s_now, z_now))
            new_si[name] = z_now

    # ---- change-order notes -----------------------------------------------------------------------

    def _notes(self, link: LinkState, exports: Sequence[SiExport]) -> tuple[str, ...]:
        """Plan one note per unseen change-order state; returns their keys."""
        planned: set[str] = set()
        for export in exports:
            if export.co_number is None:
                continue
            status = str(export.values.get("costatus") or "")
            key = f"note:{link.project_id}:{export.co_number}:{status}"
            intent = self.w.intents.get(key)
            if key in planned or (intent is not None and intent.status in ("done", "parked")):
                continue
            planned.add(key)
            reference = note_reference(link.project_id, export.co_number, status)
            title = _truncate(render_template(self.m.change_order_title, export.values), TITLE_MAX)
            body = render_template(self.m.change_order_body, export.values)
            body = _truncate(body, CONTENT_MAX - len(reference) - 2)
            self.actions.append(
                AddNote(
                    key,
                    link.deal_id,
                    link.project_id,
                    export.co_number,
                    status,
                    title,
                    f"{body}\n\n{reference}",
                )
            )
        return tuple(sorted(planned))
