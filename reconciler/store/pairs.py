"""The rows of each pair: its link (deal <-> project) and its snapshot (what both sides held when the pair
last agreed, and our SI updates still pending in SI's queue).

A cycle loads these for the pairs its input touches, never for every pair: :meth:`PairRows.links_where`
and :meth:`PairRows.pending_snapshots` are served by indexes, so an idle cycle's work does not grow with
the number of pairs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import peewee as pw

from reconciler.model import LinkState, Snapshot
from reconciler.store import statements as sql
from reconciler.store.schema import StoreBase, any_of, dumps

__all__ = ["PairRows"]


class PairRows(StoreBase):
    # ---- links ------------------------------------------------------------------------------------

    def links(self) -> dict[str, LinkState]:
        return {row.deal_id: self._link(row) for row in self.tables.Link.select()}

    def links_where(
        self,
        *,
        deal_ids: Iterable[str] = (),
        project_ids: Iterable[str] = (),
        pending_publish: bool = False,
        active: bool = False,
    ) -> dict[str, LinkState]:
        """The links of these deals, of these projects, with a publish still pending, and (``active``)
        every active link: what one cycle's input can touch, without loading every pair."""
        Link = self.tables.Link
        found: dict[str, LinkState] = {}
        for column, values in ((Link.deal_id, deal_ids), (Link.project_id, project_ids)):
            ids = sorted(set(values))
            for start in range(0, len(ids), 500):
                for row in Link.select().where(column.in_(ids[start : start + 500])):
                    found[row.deal_id] = self._link(row)
        conditions = []
        if pending_publish:
            conditions.append(Link.publish_status == "pending")
        if active:
            conditions.append(Link.active == True)  # noqa: E712 (peewee expression, not a comparison)
        if conditions:
            for row in Link.select().where(any_of(conditions)):
                found[row.deal_id] = self._link(row)
        return found

    def active_link_count(self) -> int:
        return int(self.tables.Link.select().where(self.tables.Link.active == True).count())  # noqa: E712

    @staticmethod
    def _link(row: Any) -> LinkState:
        return LinkState(
            deal_id=row.deal_id,
            project_id=row.project_id,
            message_id=row.message_id,
            publish_status=row.publish_status,
            publish_error=row.publish_error,
            active=bool(row.active),
            inactive_reason=row.inactive_reason,
            si_state=row.si_state or "",
        )

    def link_count(self) -> int:
        return int(self.tables.Link.select().count())

    def upsert_link(self, link: LinkState) -> None:
        now = self.clock()
        self._sql(
            sql.UPSERT_LINK,
            (
                link.deal_id,
                link.project_id,
                link.message_id,
                link.publish_status,
                link.publish_error,
                int(link.active),
                link.inactive_reason,
                link.si_state,
                now,
                now,
            ),
        )

    # ---- snapshots --------------------------------------------------------------------------------

    def snapshots(self, deal_ids: Iterable[str] | None = None) -> dict[str, Snapshot]:
        query = self.tables.SnapshotRow.select()
        if deal_ids is not None:
            # In deal order, as the planner walks them: a dict filled in a random (set) order costs a
            # cache miss per lookup once it outgrows the CPU's caches (a full read of 100,000 pairs).
            ids = sorted(set(deal_ids))
            result: dict[str, Snapshot] = {}
            for start in range(0, len(ids), 500):
                chunk = query.where(self.tables.SnapshotRow.deal_id.in_(ids[start : start + 500]))
                result.update({row.deal_id: self._snapshot(row) for row in chunk})
            return result
        return {row.deal_id: self._snapshot(row) for row in query}

    def pending_snapshots(self) -> dict[str, Snapshot]:
        """Snapshots with an SI update of ours still waiting in SI's queue."""
        query = self.tables.SnapshotRow.select().where(self.tables.SnapshotRow.pending != "{}")
        return {row.deal_id: self._snapshot(row) for row in query}

    @staticmethod
    def _snapshot(row: Any) -> Snapshot:
        return Snapshot(
            deal_id=row.deal_id,
            zoho_hash=row.zoho_hash,
            zoho=json.loads(row.zoho),
            si=json.loads(row.si),
            pending=json.loads(row.pending),
            updates=int(row.updates or 0),
            held=json.loads(row.held or "{}"),
            reported=json.loads(row.reported or "{}"),
        )

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a pair's snapshot. Its ``updates`` counter never goes down (it seeds our MessageIds)."""
        self._sql(
            sql.SAVE_SNAPSHOT,
            (
                snapshot.deal_id,
                snapshot.zoho_hash,
                dumps(dict(snapshot.zoho)),
                dumps(dict(snapshot.si)),
                dumps(dict(snapshot.pending)),
                self.clock(),
                snapshot.updates,
                dumps(dict(snapshot.held)),
                dumps(dict(snapshot.reported)),
            ),
        )

    def save_held(self, deal_id: str, held: Mapping[str, Any]) -> None:
        """Keep SI's reports for a pair that is not syncing (the rest of its snapshot is left alone)."""
        row = self.tables.SnapshotRow
        row.insert(deal_id=deal_id, held=dumps(dict(held)), updated_at=self.clock()).on_conflict(
            conflict_target=[row.deal_id], update={row.held: pw.EXCLUDED.held}
        ).execute()
