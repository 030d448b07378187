"""What the store keeps beside the pairs: key/value state (cursors), the Zoho token cache and its ledger,
projects SI exported that no deal claims, the cycles and the audit trail."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import peewee as pw

from reconciler.clients.zoho import CachedToken
from reconciler.model import AuditEntry, CycleReport
from reconciler.store import statements as sql
from reconciler.store.schema import StoreBase, dumps

__all__ = ["Records"]


class Records(StoreBase):
    # ---- key/value state (cursors, alert bookkeeping) -----------------------------------------------

    def get_state(self, key: str) -> str | None:
        row = self.tables.State.get_or_none(self.tables.State.key == key)
        return None if row is None else str(row.value)

    def set_state(self, key: str, value: str) -> None:
        with self.db.atomic():
            self._set(key, value)

    def delete_state(self, key: str) -> None:
        with self.db.atomic():
            self.tables.State.delete().where(self.tables.State.key == key).execute()

    # ---- token cache (reconciler.clients.zoho.TokenCache) ------------------------------------------

    def load_token(self, key: str) -> CachedToken | None:
        row = self.tables.Token.get_or_none(self.tables.Token.key == key)
        if row is None:
            return None
        return CachedToken(
            access_token=row.access_token, expires_at=row.expires_at, api_domain=row.api_domain
        )

    def save_token(self, key: str, token: CachedToken) -> None:
        with self.db.atomic():
            self.tables.Token.insert(
                key=key,
                access_token=token.access_token,
                expires_at=token.expires_at,
                api_domain=token.api_domain,
            ).on_conflict_replace().execute()

    def note_token_issued(self, key: str, at: float) -> None:
        with self.db.atomic():
            self.tables.TokenIssue.insert(key=key, at=at).execute()
            self.tables.TokenIssue.delete().where(self.tables.TokenIssue.at < at - 3600).execute()

    def tokens_issued_since(self, key: str, since: float) -> int:
        query = self.tables.TokenIssue.select().where(
            (self.tables.TokenIssue.key == key) & (self.tables.TokenIssue.at >= since)
        )
        return int(query.count())

    def token_expiry(self) -> float | None:
        row = self.tables.Token.select(pw.fn.MAX(self.tables.Token.expires_at).alias("e")).scalar()
        return None if row is None else float(row)

    # ---- unknown projects -------------------------------------------------------------------------

    def note_unknown_project(self, project_id: str, integration_id: str | None, name: str | None) -> None:
        now = self.clock()
        existing = self.tables.UnknownProject.get_or_none(self.tables.UnknownProject.project_id == project_id)
        if existing is None:
            self.tables.UnknownProject.create(
                project_id=project_id, integration_id=integration_id, name=name, first_seen=now, last_seen=now
            )
        else:
            self.tables.UnknownProject.update(last_seen=now, integration_id=integration_id, name=name).where(
                self.tables.UnknownProject.project_id == project_id
            ).execute()

    def forget_unknown_project(self, project_id: str) -> None:
        self.tables.UnknownProject.delete().where(
            self.tables.UnknownProject.project_id == project_id
        ).execute()

    def unknown_projects(self) -> list[dict[str, Any]]:
        return [
            {
                "project_id": r.project_id,
                "integration_id": r.integration_id,
                "name": r.name,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
            }
            for r in self.tables.UnknownProject.select().order_by(self.tables.UnknownProject.first_seen)
        ]

    # ---- cycles -----------------------------------------------------------------------------------

    def start_cycle(self, mode: str, dry_run: bool) -> int:
        row = self.tables.Cycle.create(started_at=self.clock(), mode=mode, dry_run=dry_run)
        return int(row.id)

    def finish_cycle(self, cycle_id: int, report: CycleReport) -> None:
        self.tables.Cycle.update(
            ended_at=report.ended_at,
            outcome=report.outcome,
            mode=report.mode,
            counts=dumps(dict(report.counts)),
            api_calls=dumps(dict(report.api_calls)),
            message=report.message,
        ).where(self.tables.Cycle.id == cycle_id).execute()

    def close_abandoned_cycles(self) -> int:
        """Record cycles left ``running`` by a process that died as ``interrupted``; returns how many.

        Only the holder of the instance lock may call this: then no other process can be running a cycle.
        """
        with self.db.atomic():
            query = self.tables.Cycle.update(
                outcome="interrupted",
                message="the process ended before the cycle finished; a rerun resumes",
            ).where(self.tables.Cycle.outcome == "running")
            return int(query.execute())

    def recent_cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        query = self.tables.Cycle.select().order_by(self.tables.Cycle.id.desc()).limit(limit)
        return [
            {
                "id": r.id,
                "started_at": r.started_at,
                "ended_at": r.ended_at,
                "mode": r.mode,
                "dry_run": r.dry_run,
                "outcome": r.outcome,
                "counts": json.loads(r.counts),
                "api_calls": json.loads(r.api_calls),
                "message": r.message,
            }
            for r in query
        ]

    def cycle_totals(self) -> dict[str, int]:
        query = (
            self.tables.Cycle.select(self.tables.Cycle.outcome, pw.fn.COUNT(self.tables.Cycle.id).alias("n"))
            .where(self.tables.Cycle.dry_run == False)  # noqa: E712 (peewee expression, not a comparison)
            .group_by(self.tables.Cycle.outcome)
        )
        return {row.outcome: int(row.n) for row in query}

    def last_success_at(self) -> float | None:
        value = (
            self.tables.Cycle.select(pw.fn.MAX(self.tables.Cycle.ended_at))
            .where((self.tables.Cycle.outcome == "ok") & (self.tables.Cycle.dry_run == False))  # noqa: E712
            .scalar()
        )
        return None if value is None else float(value)

    # ---- audit ------------------------------------------------------------------------------------

    def audit(
        self,
        cycle_id: int | None,
        action: str,
        changes: Sequence[tuple[str, Any, Any]],
        *,
        deal_id: str | None,
        project_id: str | None,
    ) -> None:
        now = self.clock()
        for field, old, new in changes:
            old_text = None if old is None else dumps(old)
            new_text = None if new is None else dumps(new)
            self._sql(sql.AUDIT, (now, cycle_id, deal_id, project_id, action, field, old_text, new_text))

    def history(self, deal_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        query = self.tables.Audit.select().order_by(self.tables.Audit.id.desc()).limit(limit)
        if deal_id is not None:
            query = query.where(self.tables.Audit.deal_id == deal_id)
        return [
            AuditEntry(
                at=r.at,
                cycle_id=r.cycle_id,
                deal_id=r.deal_id,
                project_id=r.project_id,
                action=r.action,
                field=r.field,
                old=None if r.old is None else json.loads(r.old),
                new=None if r.new is None else json.loads(r.new),
            )
            for r in reversed(list(query))
        ]
