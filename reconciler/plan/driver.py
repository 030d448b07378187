"""The planner's driver: sorts the world into creates, pairs, stopped pairs and unknown projects. Pure.

Each read deal gets a role (:func:`reconciler.plan.needs.deal_role`): a flagged deal with no link becomes a
create; a deal naming a project the store does not know is adopted once SI confirms the project and no
other deal owns it; an unticked deal stops its pair; a linked, flagged deal is a pair. SI messages of
projects no deal is linked to are reported as unknown; those of stopped pairs are acknowledged unprocessed.
On a full read, a linked deal Zoho did not return stops syncing only once a direct read confirmed it gone;
until then its pair is held, SI's messages for it included. Re-queued items (``reconciler retry``) are
planned here like anything else, so ``plan`` shows them and the write limit counts them.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import keys
from reconciler.mapping import Mapping
from reconciler.model import (
    Action,
    AddNote,
    Deal,
    LinkState,
    Park,
    Plan,
    Settle,
    SiExport,
    Snapshot,
    World,
)
from reconciler.plan.common import canon_digest, create_spec, digest, zoho_canon
from reconciler.plan.create import plan_create, resume_create
from reconciler.plan.guard import refusal
from reconciler.plan.needs import deal_role
from reconciler.plan.pair import Lookups, PairInputs, acks_for, failure, plan_pair, split_held, unmoved
from reconciler.plan.reports import si_reports

__all__ = ["plan"]


@dataclass
class _Plan:
    """What the driver accumulates."""

    actions: list[Action] = field(default_factory=list)
    settles: list[Settle] = field(default_factory=list)
    unknown: list[SiExport] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def plan(
    world: World,
    mapping: Mapping,
    *,
    max_writes: int = 500,
    force: bool = False,
    expect: int | None = None,
) -> Plan:
    """Decide what this cycle does. Pure: same input, same plan.

    The cyclic garbage collector is paused while it plans: planning makes no reference cycles, and a
    full read of 100,000 deals otherwise spends about a tenth of its time in collections that free nothing
    (``make bench``, "Planner alone"). Memory is freed by reference counting as usual.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _Driver(world, mapping).run(max_writes=max_writes, force=force, expect=expect)
    finally:
        if collecting:
            gc.enable()


class _Driver:
    def __init__(self, world: World, mapping: Mapping) -> None:
        self.world = world
        self.mapping = mapping
        self.lookups = Lookups.of(mapping, world.intents, world.publish_outcomes, world.status_errors)
        self.spec = self.lookups.spec
        self.create_spec = create_spec(mapping)
        self.out = _Plan()
        self.by_project = {link.project_id: link for link in world.links.values()}
        self.exports: dict[str, list[SiExport]] = defaultdict(list)
        for export in sorted(world.exports, key=lambda e: e.published_ms):
            self.exports[export.project_id].append(export)
        self.retried = {k for k, i in world.intents.items() if i.status == keys.RETRY}
        # Deals and projects a re-queued item belongs to (their pairs are planned even when quiet).
        self.retried_deals = {i.deal_id for k, i in world.intents.items() if k in self.retried and i.deal_id}
        self.retried_projects = {
            i.project_id for k, i in world.intents.items() if k in self.retried and i.project_id
        }
        self.forcing = world.deep or bool(self.retried)  # can any pair be forced (planned while quiet)?
        self.pairs: dict[str, PairInputs] = {}
        self.in_flight: set[str] = set()  # deals whose create this plan makes or finishes
        self.kept: set[str] = set()  # re-queued keys still open after this plan (a republish in progress)
        self.cleared: set[str] = set()  # failed reads that no longer fail

    def run(self, *, max_writes: int, force: bool, expect: int | None) -> Plan:
        self._resume_creates()
        fetched = {deal.id: deal for deal in self.world.deals}
        for deal_id in sorted(fetched):
            if deal_id not in self.in_flight:
                self._deal(fetched[deal_id])
        missing = self._missing(fetched) if self.world.full else set()
        self._exports(fetched, missing)
        if not self.world.full:
            self._waiting(fetched)
        for deal_id in sorted(self.pairs):
            pair = plan_pair(self.pairs[deal_id], self.lookups)
            self.out.actions.extend(pair.actions)
            if pair.settle is not None:
                self.out.settles.append(pair.settle)
        self._retried_notes()
        self._read_problems()
        result = Plan(
            actions=tuple(self.out.actions),
            settles=tuple(self.out.settles),
            unknown=tuple(self.out.unknown),
            full=self.world.full,
            deep=self.world.deep,
            held=tuple(sorted(self.out.held)),
            resolved=self._resolved(),
        )
        active = self.world.active_links
        if active is None:
            active = sum(1 for link in self.world.links.values() if link.active)
        refused = refusal(
            result,
            active_links=active,
            missing=len(self.out.held),
            max_writes=max_writes,
            force=force,
            expect=expect,
        )
        return replace(result, refused=refused) if refused else result

    # ---- deals ------------------------------------------------------------------------------------

    def _resume_creates(self) -> None:
        """Creates published in an earlier cycle whose write-back did not happen: finish them first."""
        for key in sorted(self.world.intents):
            intent = self.world.intents[key]
            remote = intent.remote or {}
            if intent.kind != "create" or intent.status not in (keys.PENDING, keys.RETRY):
                continue
            link = self.world.links.get(intent.deal_id or "")
            if not remote.get("project_id") or link is None or link.project_id != remote["project_id"]:
                continue
            if link.publish_status == "failed" and keys.publish(link.deal_id) in self.retried:
                continue  # the operator asked for a new publish: planned with the deal
            deal = next((d for d in self.world.deals if d.id == link.deal_id), None)
            if deal is not None and deal.values.get(self.mapping.link_field) not in (
                None,
                "",
                link.project_id,
            ):
                continue  # the deal names another project now: handled as a mislinked deal
            self.in_flight.add(link.deal_id)
            self.out.actions.append(resume_create(intent, self.mapping))

    def _deal(self, deal: Deal) -> None:
        try:
            canon = zoho_canon(deal, self.mapping, self.spec)
        except ValueError as exc:
            self._park(keys.bad_deal(deal.id), deal.id, None, str(exc), digest(dict(deal.values)))
            return
        if self.world.intents and self.lookups.open(keys.bad_deal(deal.id)):
            self.out.settles.append(Settle(deal.id, None, (), resolved_keys=(keys.bad_deal(deal.id),)))
        zoho_hash = self.spec.digest(canon)
        link = self.world.links.get(deal.id)
        flagged = bool(canon[self.mapping.flag_field])
        link_value = canon[self.mapping.link_field]
        role = deal_role(flagged, link_value, link)
        if role == "active" and link is not None:  # first: nearly every deal of a full read
            self._active(deal, canon, zoho_hash, link, link)
        elif role == "create":
            self._create(deal, canon, zoho_hash)
        elif role == "adopt":
            self._adopt(deal, canon, zoho_hash, str(link_value), flagged)
        elif role == "mislinked" and link is not None:
            self._park(
                keys.mislinked(deal.id),
                deal.id,
                link.project_id,
                f"deal {deal.id}: {self.mapping.link_field} holds {link_value} but the deal is linked to "
                f"SI project {link.project_id}; put the right id back in Zoho",
                zoho_hash,
            )
        elif role == "inactive" and link is not None:
            self._stop(
                link,
                f"{self.mapping.flag_field} was unticked in Zoho: syncing stopped (nothing deleted in SI)",
            )

    def _create(
        self, deal: Deal, canon: dict[str, Any], zoho_hash: str, republish: str | None = None
    ) -> None:
        if self.create_spec:  # the create's input: the pair's paths and those only a create reads (as text)
            zoho_hash = canon_digest({**canon, **zoho_canon(deal, self.mapping, self.create_spec)})
        action = plan_create(deal, canon, zoho_hash, self.mapping, self.world.intents, republish=republish)
        if action is not None:
            self.out.actions.append(action)
        self.in_flight.add(deal.id)

    def _adopt(
        self, deal: Deal, canon: dict[str, Any], zoho_hash: str, project_id: str, flagged: bool
    ) -> None:
        """A deal naming a project the store does not know (store lost, or an id typed in Zoho)."""
        owner = self.by_project.get(project_id)
        confirmed = project_id in self.world.si_projects or bool(self.exports.get(project_id))
        problem = None
        if owner is not None and owner.deal_id != deal.id:
            problem = (
                f"deal {deal.id}: {self.mapping.link_field} names SI project {project_id}, which is linked "
                f"to deal {owner.deal_id}; clear or correct {self.mapping.link_field} on one of them"
            )
        elif not confirmed:
            problem = (
                f"deal {deal.id}: {self.mapping.link_field} names SI project {project_id}, which SI does not "
                f"know; clear {self.mapping.link_field} (a ticked deal is then created in SI) or correct it"
            )
        if problem is not None:
            self._park(keys.mislinked(deal.id), deal.id, project_id, problem, zoho_hash)
            return
        link = LinkState(deal.id, project_id, publish_status="imported")
        self.by_project[project_id] = link
        if not flagged:
            reason = f"{self.mapping.flag_field} is not ticked: not syncing (nothing deleted in SI)"
            link = replace(link, active=False, inactive_reason=reason)
            self.out.settles.append(
                Settle(deal.id, project_id, (), link=link, acks=acks_for(self.exports.get(project_id, [])))
            )
            return
        self._active(deal, canon, zoho_hash, link, None)

    def _active(
        self,
        deal: Deal,
        canon: dict[str, Any],
        zoho_hash: str,
        link: LinkState,
        stored: LinkState | None,
    ) -> None:
        if link.publish_status == "failed" and keys.publish(deal.id) in self.retried:
            self.kept.add(keys.publish(deal.id))  # closed by the applier once the new publish is sent
            self._create(deal, canon, zoho_hash, republish=link.project_id)
            return
        if not link.active:
            link = replace(link, active=True, inactive_reason=None)
        snapshot = self.world.snapshots.get(deal.id) or Snapshot(deal.id)
        exports = self.exports.get(link.project_id)
        forced = self.forcing and self._forced(deal.id, link.project_id)
        quiet = not exports and not forced and zoho_hash == snapshot.zoho_hash
        if quiet and unmoved(link, stored, snapshot, self.lookups):
            return  # is_quiet, asked without building the inputs: most deals of a full read end here
        self.pairs[deal.id] = PairInputs(
            link, stored, canon, zoho_hash, snapshot, tuple(exports or ()), forced=forced
        )

    def _stop(self, link: LinkState, reason: str) -> None:
        """Syncing stops; SI's messages for the project are acknowledged (so they do not come back every
        cycle while the deal is re-read), and the values they report are kept for when it syncs again."""
        exports = self.exports.get(link.project_id, [])
        acks = acks_for(exports)
        held = self._held(link, exports)
        if link.active:
            stopped = replace(link, active=False, inactive_reason=reason)
            self.out.settles.append(
                Settle(link.deal_id, link.project_id, (), link=stopped, acks=acks, held=held)
            )
        elif acks:
            self.out.settles.append(Settle(link.deal_id, link.project_id, (), acks=acks, held=held))

    def _held(self, link: LinkState, exports: list[SiExport]) -> dict[str, Any] | None:
        """SI's reports in messages acknowledged while the pair does not sync, newest kept per field."""
        usable, _ = split_held(exports, self.lookups)
        reports = si_reports(usable, self.mapping, link.project_id, link.deal_id)
        if not reports.fields:
            return None
        held = dict(self._snapshot(link.deal_id).held)
        for name, (value, when, _, _) in reports.fields.items():
            if name not in held or int(held[name][1]) <= when:
                held[name] = [value, when]
        return held

    def _missing(self, fetched: AbcMapping[str, Deal]) -> set[str]:
        """Full read: active links whose deal was not returned. Confirmed gone: stop; else: hold."""
        missing: set[str] = set()
        for link in self.world.links.values():
            if link.deal_id in fetched or not link.active or link.deal_id in self.in_flight:
                continue
            missing.add(link.deal_id)
            if link.deal_id in self.world.gone:
                self._stop(link, "deal deleted in Zoho (a direct read no longer finds it)")
            else:
                self.out.held.append(link.deal_id)
        return missing

    # ---- SI's messages and waiting pairs ----------------------------------------------------------

    def _exports(self, fetched: AbcMapping[str, Deal], missing: set[str]) -> None:
        for project_id, exports in self.exports.items():
            link = self.by_project.get(project_id)
            if link is None:
                if exports[-1].integration_id not in self.in_flight:
                    self.out.unknown.append(exports[-1])
                continue
            deal_id = link.deal_id
            if deal_id in self.pairs or deal_id in fetched or deal_id in self.in_flight:
                continue  # planned with its deal, or the deal is parked, stopped or mislinked
            if deal_id in missing:
                continue  # stopped above with its acks, or held (its messages stay unacknowledged)
            if not link.active:
                self._stop(link, link.inactive_reason or "")
                continue
            self.pairs[deal_id] = self._unread_pair(link)

    def _waiting(self, fetched: AbcMapping[str, Deal]) -> None:
        """Pairs whose deal was not read and SI sent nothing, but that have news of their own: a publish
        or update SI resolved (or whose status it lost), or an item the operator re-queued. (A cycle that
        is not a full read: on a full read every unread active link is missing or being created.)"""
        skip = fetched.keys() | self.pairs.keys() | self.in_flight
        unread = [link for link in self.world.links.values() if link.active and link.deal_id not in skip]
        for link in sorted(unread, key=lambda link: link.deal_id):
            deal_id = link.deal_id
            snap = self._snapshot(deal_id)
            messages = {str(e.get("message_id") or "") for e in snap.pending.values()}
            if link.publish_status == "pending" and link.message_id:
                messages.add(link.message_id)
            news = any(m in self.world.publish_outcomes or m in self.world.status_errors for m in messages)
            if news or self._forced(deal_id, link.project_id):
                self.pairs[deal_id] = self._unread_pair(link)

    def _unread_pair(self, link: LinkState) -> PairInputs:
        return PairInputs(
            link,
            self.world.links.get(link.deal_id),
            None,
            None,
            self._snapshot(link.deal_id),
            tuple(self.exports.get(link.project_id, ())),
            forced=self._forced(link.deal_id, link.project_id),
        )

    def _snapshot(self, deal_id: str) -> Snapshot:
        return self.world.snapshots.get(deal_id) or Snapshot(deal_id)

    def _forced(self, deal_id: str, project_id: str) -> bool:
        if self.world.deep:
            return True
        if deal_id not in self.retried_deals and project_id not in self.retried_projects:
            return False  # the common case, answered without building a key
        own = {keys.deal_update(deal_id), keys.project_update(project_id), keys.unreadable_export(project_id)}
        return bool(self.retried & own) or any(k.startswith(keys.conflict(deal_id, "")) for k in self.retried)

    # ---- re-queued items --------------------------------------------------------------------------

    def _retried_notes(self) -> None:
        """A re-queued note is posted again as recorded (its SI message was acknowledged long ago)."""
        planned = {a.key for a in self.out.actions}
        for key in sorted(self.retried - planned):
            intent = self.world.intents[key]
            payload = intent.payload or {}
            if intent.kind != "note" or "content" not in payload:
                continue
            self.out.actions.append(
                AddNote(
                    key,
                    intent.deal_id or "",
                    intent.project_id or "",
                    str(payload.get("co_number", "")),
                    str(payload.get("co_status", "")),
                    str(payload.get("title", "")),
                    str(payload["content"]),
                    look_first=True,
                )
            )

    def _read_problems(self) -> None:
        """Items the read could not tie to a pair (a Zoho row without an id, an SI message without its
        identifying fields): each counts a failed attempt, then is parked; it clears once it is gone."""
        for key, message in sorted(self.world.read_problems.items()):
            action = failure(key, None, None, message, self.lookups)
            if action is not None:
                self.out.actions.append(action)
        prefixes = (keys.bad_message(""), keys.deep_read("")) if self.world.deep else (keys.bad_message(""),)
        for key, intent in self.world.intents.items():
            if (
                key.startswith(prefixes)
                and key not in self.world.read_problems
                and intent.status in keys.OPEN
            ):
                self.cleared.add(key)

    def _resolved(self) -> tuple[str, ...]:
        """Re-queued items this plan neither plans again nor parks again: nothing is left to do for them."""
        planned = {a.key for a in self.out.actions}
        waited = {k for s in self.out.settles for k in (*s.action_keys, *s.resolved_keys)}
        open_ = planned | waited | self.kept
        return tuple(sorted({k for k in self.retried if k not in open_} | self.cleared))

    def _park(
        self, key: str, deal_id: str | None, project_id: str | None, message: str, input_hash: str
    ) -> None:
        if not self.lookups.is_parked(key, input_hash):
            self.out.actions.append(Park(key, deal_id, project_id, message, input_hash))
