"""Intents: one row per deterministic action key, written *before* the external call and settled after it.

An intent is ``pending`` (begun, maybe sent; or failed transiently), ``done``, ``parked`` (failed for good
or too often: it waits for its input to change or for ``retry``) or ``retry`` (re-queued by the
operator). The keys are :mod:`reconciler.keys`'s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler import keys
from reconciler.model import IntentState
from reconciler.store import statements as sql
from reconciler.store.schema import StoreBase, any_of, dumps

__all__ = ["IntentRows"]


class IntentRows(StoreBase):
    # ---- intents ----------------------------------------------------------------------------------

    def _intent(self, row: Any) -> IntentState:
        return IntentState(
            key=row.key,
            kind=row.kind,
            status=row.status,
            attempts=row.attempts,
            input_hash=row.input_hash,
            last_error=row.last_error,
            payload=json.loads(row.payload),
            remote=json.loads(row.remote),
            deal_id=row.deal_id,
            project_id=row.project_id,
            updated_at=row.updated_at,
            next_retry_at=row.next_retry_at,
        )

    def intent(self, key: str) -> IntentState | None:
        row = self.tables.Intent.get_or_none(self.tables.Intent.key == key)
        return None if row is None else self._intent(row)

    def open_intents(self) -> dict[str, IntentState]:
        """Every intent not done: pending (in flight or failed before), parked and re-queued.

        ``status IN (...)`` rather than ``!= 'done'``: SQLite serves the former from the status index and
        must scan every intent (three or more a pair) for the latter."""
        query = self.tables.Intent.select().where(self.tables.Intent.status.in_(sorted(keys.OPEN)))
        return {row.key: self._intent(row) for row in query}

    def intents_with_prefixes(self, prefixes: Iterable[str]) -> dict[str, IntentState]:
        # Key ranges [prefix, prefix + U+10FFFF) use the primary-key index, 100 prefixes a query. (Peewee's
        # startswith is a case-insensitive LIKE, which SQLite cannot serve from the index: one full scan
        # per prefix made a cycle quadratic in the number of intents.)
        key = self.tables.Intent.key
        ordered = sorted(set(prefixes))
        result: dict[str, IntentState] = {}
        for start in range(0, len(ordered), 100):
            chunk = ordered[start : start + 100]
            condition = any_of([(key >= p) & (key < p + "\U0010ffff") for p in chunk])
            for row in self.tables.Intent.select().where(condition):
                result[row.key] = self._intent(row)
        return result

    def begin_intent(
        self,
        key: str,
        kind: str,
        *,
        deal_id: str | None,
        project_id: str | None,
        payload: Mapping[str, Any],
        input_hash: str = "",
        cycle_id: int | None = None,
    ) -> None:
        """Record (or re-arm) the intent to act, before the external call. Keeps remote ids, and the
        attempts of an intent still pending. One statement: the applier begins thousands in a row.

        The keyword parameters are the intent row's own columns, named one by one at every call so that a
        deal id can never land in the project id's place; grouping them in an object would only move the
        same names into its constructor.
        """
        now = self.clock()
        self._sql(
            sql.BEGIN_INTENT,
            (key, kind, deal_id, project_id, dumps(dict(payload)), input_hash, cycle_id, now, now),
        )

    def set_remote(self, key: str, remote: Mapping[str, Any]) -> None:
        """Remember what the far side answered (project id, message id ...) before going on."""
        found = self._sql(sql.REMOTE_OF, (key,)).fetchone()
        if found is None:
            raise self.tables.Intent.DoesNotExist(f"no intent {key!r}")
        merged = {**json.loads(found[0]), **remote}
        self._sql(sql.SET_REMOTE, (dumps(merged), self.clock(), key))

    def finish_intent(self, key: str) -> None:
        self._sql(sql.FINISH_INTENT, (self.clock(), key))

    def fail_intent(self, key: str, error: str, *, permanent: bool, max_attempts: int = 5) -> bool:
        """Count a failed attempt; park when permanent or out of attempts. Returns True when parked."""
        row = self.tables.Intent.get(self.tables.Intent.key == key)
        attempts = row.attempts + 1
        parked = permanent or attempts >= max_attempts
        now = self.clock()
        self.tables.Intent.update(
            attempts=attempts,
            last_error=error,
            status="parked" if parked else "pending",
            next_retry_at=None,
            updated_at=now,
        ).where(self.tables.Intent.key == key).execute()
        return parked

    def record_failure(
        self,
        key: str,
        kind: str,
        error: str,
        *,
        deal_id: str | None,
        project_id: str | None,
        input_hash: str,
        cycle_id: int | None,
        park: bool,
    ) -> None:
        """Count one failed attempt of an item the planner could not use this cycle (a read that failed),
        pending for the next cycle, or parked (``park``).

        Eight parameters, like :meth:`begin_intent` and for its reason: they are the row's columns.
        """
        existing = self.tables.Intent.get_or_none(self.tables.Intent.key == key)
        attempts = (existing.attempts if existing is not None and existing.status == "pending" else 0) + 1
        now = self.clock()
        values = {
            "kind": kind,
            "status": "parked" if park else "pending",
            "deal_id": deal_id,
            "project_id": project_id,
            "attempts": attempts,
            "input_hash": input_hash,
            "last_error": error,
            "cycle_id": cycle_id,
            "updated_at": now,
        }
        if existing is None:
            self.tables.Intent.create(key=key, payload="{}", remote="{}", created_at=now, **values)
        else:
            self.tables.Intent.update(**values).where(self.tables.Intent.key == key).execute()

    def park(
        self,
        key: str,
        kind: str,
        error: str,
        *,
        deal_id: str | None,
        project_id: str | None,
        payload: Mapping[str, Any],
        input_hash: str,
        cycle_id: int | None,
    ) -> None:
        """Park an item the planner found bad (no call was made now). An existing intent keeps its payload
        when none is given, so a write SI later rejected can still be re-sent by ``retry``.

        Eight parameters, like :meth:`begin_intent` and for its reason: they are the row's columns.
        """
        existing = self.intent(key)
        if existing is not None and not payload:
            payload = existing.payload or {}
        self.begin_intent(
            key,
            kind,
            deal_id=deal_id,
            project_id=project_id,
            payload=payload,
            input_hash=input_hash,
            cycle_id=cycle_id,
        )
        self.tables.Intent.update(
            status="parked", last_error=error, attempts=self.tables.Intent.attempts + 1
        ).where(self.tables.Intent.key == key).execute()

    def parked(self) -> list[IntentState]:
        query = (
            self.tables.Intent.select()
            .where(self.tables.Intent.status == "parked")
            .order_by(self.tables.Intent.updated_at)
        )
        return [self._intent(row) for row in query]

    def retry(self, key: str | None = None) -> int:
        """Re-queue one parked item (or all with ``key=None``): the next cycle plans it afresh."""
        query = self.tables.Intent.update(status="retry", attempts=0, input_hash="", next_retry_at=None)
        condition = self.tables.Intent.status == "parked"
        if key is not None:
            condition &= self.tables.Intent.key == key
        with self.db.atomic():
            count = int(query.where(condition).execute())
            if count:
                self._set("retry.requested", "1")
        return count
