"""The simulators as the benchmarks use them: a shared movable clock, indexed lookups, call counting.

The stock simulators answer some requests by scanning every deal or message (fine for tests, quadratic at
100,000 deals). :class:`IndexedZohoSim` and :class:`IndexedSiSim` narrow those scans with an index and
then let the stock code answer, so every answer (and every error) is the stock simulator's own.

Calls are counted on the simulator side, from each simulator's request log, with the same endpoint labels
as :class:`reconciler.clients.http.CallStats`; so our cycles and the naive strategies are counted by
the same counter, token requests included (the client's ``CallStats`` does not see those: they are sent
from inside the ``httpx.Auth`` flow).
"""

from __future__ import annotations

import bisect
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from reconciler.sim.harness import SimPair
from reconciler.sim.si import ExportMessage, PublishMessage, SiSim
from reconciler.sim.si import routes as si_module
from reconciler.sim.zoho import ZohoSim
from reconciler.sim.zoho import coql as zoho_module

__all__ = [
    "WRITE_LABELS",
    "ZOHO_LABELS",
    "IndexedSiSim",
    "IndexedZohoSim",
    "SimClock",
    "SimLog",
    "make_pair",
]

# What DESIGN.md calls a write (COQL is a POST but a read; a token request is neither).
WRITE_LABELS = frozenset(
    {"zoho.deals.update", "zoho.notes.create", "si.publish", "si.update", "si.mark_imported"}
)
ZOHO_LABELS = frozenset(
    {"zoho.token", "zoho.coql", "zoho.deals.update", "zoho.notes.create", "zoho.notes.list", "zoho.fields"}
)


class SimClock:
    """Wall time plus an offset that :meth:`advance` moves forward: shared by both sims and the reconciler."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# ---- Zoho ---------------------------------------------------------------------------------------------


def _conjuncts(cond: Any) -> Iterator[Any]:
    """The atoms that every matching row must satisfy (the AND-spine of the criteria)."""
    if isinstance(cond, zoho_module._Atom):
        yield cond
    elif isinstance(cond, zoho_module._Pair) and cond.op == "and":
        yield from _conjuncts(cond.left)
        yield from _conjuncts(cond.right)


def _floors(cond: Any, types: dict[str, str]) -> list[tuple[str, str, datetime]]:
    """The ``datetime > / >= literal`` atoms every matching row must satisfy (``Modified_Time >= ...``)."""
    floors = []
    for atom in _conjuncts(cond):
        if types.get(atom.field) == "datetime" and atom.op in (">", ">=") and isinstance(atom.value, str):
            try:
                floors.append((atom.field, atom.op, datetime.fromisoformat(atom.value)))
            except ValueError:
                continue
    return floors


def _maybe_after(deal: dict[str, Any], floors: list[tuple[str, str, datetime]]) -> bool:
    """False only when the deal's own value is certainly before a floor; otherwise the stock code decides."""
    for name, op, floor in floors:
        raw = deal.get(name)
        if not isinstance(raw, str):
            continue
        try:
            value = datetime.fromisoformat(raw)
            if value < floor or (op == ">" and value == floor):
                return False
        except (TypeError, ValueError):  # unparseable, or naive against aware: not ours to judge
            continue
    return True


class IndexedZohoSim(ZohoSim):
    """ZohoSim whose COQL visits deals in id order from the first id the criteria allow, and stops once
    the page (plus one row, for ``more_records``) is full, for the queries our clients send
    (``order by id asc``, no offset). A deal whose ``Modified_Time`` is certainly before the query's
    ``Modified_Time >= ...`` is passed over with one comparison (Zoho serves that criterion from its own
    index); the stock ``_run`` then answers from the remaining rows only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bx_ids: list[int] = []
        self._bx_ids_for = -1

    def _sorted_ids(self) -> list[int]:
        if self._bx_ids_for != len(self.deals):  # deals are only ever added
            self._bx_ids = sorted(int(k) for k in self.deals)
            self._bx_ids_for = len(self.deals)
        return self._bx_ids

    def _narrow(self, query: Any) -> dict[str, dict[str, Any]] | None:
        if query.order_by != "id" or query.descending or query.offset or query.where is None:
            return None
        try:
            meta = self._meta()
            atoms = zoho_module.atoms(query.where)
            types = {atom.field: self._column_type(atom.field, meta, "where") for atom in atoms}
            ids = self._sorted_ids()
            start, exact = 0, None
            for atom in _conjuncts(query.where):
                if atom.field != "id" or atom.op not in ("=", ">", ">="):
                    continue
                value = int(atom.value)
                if atom.op == "=":
                    exact = value
                elif atom.op == ">":
                    start = max(start, bisect.bisect_right(ids, value))
                else:
                    start = max(start, bisect.bisect_left(ids, value))
            if exact is not None:
                candidates: Any = [exact] if str(exact) in self.deals else []
            else:
                candidates = (ids[i] for i in range(start, len(ids)))
            floors = _floors(query.where, types)
            found: dict[str, dict[str, Any]] = {}
            for deal_id in candidates:
                deal = self.deals[str(deal_id)]
                if _maybe_after(deal, floors) and self._matches(deal, query.where, types):
                    found[str(deal_id)] = deal
                    if len(found) > query.limit:
                        break
            return found
        except (zoho_module.CoqlError, KeyError, TypeError, ValueError):
            return None  # let the stock code produce its own answer or error

    def _run(self, query: Any) -> tuple[list[dict[str, Any]], bool]:
        narrowed = self._narrow(query)
        if narrowed is None:
            return super()._run(query)
        everything, self.deals = self.deals, narrowed  # under the sim's lock (``handle`` holds it)
        try:
            return super()._run(query)
        finally:
            self.deals = everything


# ---- SI -----------------------------------------------------------------------------------------------


class IndexedSiSim(SiSim):
    """SiSim with an index of publish messages by id and of export messages by project, and a cached
    filtered listing; the stock methods then answer (or refuse) as they always do."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._bx_publish_by_id: dict[str, PublishMessage] = {}
        self._bx_publish_seen = 0
        self._bx_exports_by_project: dict[str, list[ExportMessage]] = {}
        self._bx_exports_by_message: dict[str, list[ExportMessage]] = {}
        self._bx_exports_seen = 0
        self._bx_marks = 0
        self._bx_narrowed: list[ExportMessage] | None = None
        self._bx_listing: tuple[tuple[bool, int, int], list[ExportMessage]] | None = None
        self._bx_imports = 0
        self._bx_pages: dict[tuple[str | None, str | None], dict[str, Any]] = {}
        self._bx_encoded: dict[int, bytes] = {}
        self._bx_statuses: tuple[tuple[Any, ...], list[PublishMessage]] | None = None

    def _index(self) -> None:
        if self._bx_publish_seen > len(self.publish_messages) or self._bx_exports_seen > len(
            self.export_messages
        ):
            self._bx_publish_by_id, self._bx_publish_seen = {}, 0  # the lists were replaced: start again
            self._bx_exports_by_project, self._bx_exports_seen = {}, 0
            self._bx_exports_by_message = {}
        for message in self.publish_messages[self._bx_publish_seen :]:
            self._bx_publish_by_id.setdefault(message.id, message)  # the stock lookup finds the first
        self._bx_publish_seen = len(self.publish_messages)
        for export in self.export_messages[self._bx_exports_seen :]:
            self._bx_exports_by_project.setdefault(export.project_id, []).append(export)
            self._bx_exports_by_message.setdefault(export.message_id, []).append(export)
        self._bx_exports_seen = len(self.export_messages)

    def _message_status(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        wanted = si_module._one(q, "messageid")
        try:
            key = str(uuid.UUID(str(wanted)))
        except ValueError:
            return super()._message_status(q, body)
        self._index()
        message = self._bx_publish_by_id.get(key)
        return (200, message.status()) if message is not None else super()._message_status(q, body)

    def _mark(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        try:
            project_id = str(uuid.UUID(str(si_module._one(q, "id"))))
        except ValueError:
            return super()._mark(q, body)
        self._index()
        self._bx_narrowed = self._bx_exports_by_project.get(project_id, [])
        try:
            return super()._mark(q, body)
        finally:
            self._bx_narrowed = None

    def _mark_by_message(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        """The stock answer, looking only at the export messages with that id (it scans them all)."""
        try:
            key = str(uuid.UUID(str(si_module._one(q, "messageid"))))
        except ValueError:
            return super()._mark_by_message(q, body)
        self._index()
        narrowed = self._bx_exports_by_message.get(key, [])
        everything, self.export_messages = self.export_messages, narrowed  # under the sim's lock
        try:
            return super()._mark_by_message(q, body)
        finally:
            self.export_messages = everything

    def _mark_where(self, match: Any) -> int:
        self._bx_marks += 1
        if self._bx_narrowed is None:
            return super()._mark_where(match)
        everything, self.export_messages = self.export_messages, self._bx_narrowed  # under the sim's lock
        try:
            return super()._mark_where(match)
        finally:
            self.export_messages = everything

    def import_pending(self, *, export: bool = True) -> int:
        self._bx_imports += 1  # the one place message statuses change
        return super().import_pending(export=export)

    def _message_statuses(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        try:
            statuses = frozenset(int(v) for v in q.get("messagestatusids", []))
            types = frozenset(int(v) for v in q.get("messagetypeids", []))
        except ValueError:
            return super()._message_statuses(q, body)
        key = (statuses, types, len(self.publish_messages), self._bx_imports)
        if self._bx_statuses is None or self._bx_statuses[0] != key:
            found = [
                m
                for m in self.publish_messages
                if (not statuses or m.status_id in statuses) and (not types or m.type_id in types)
            ]
            self._bx_statuses = (key, found)
        found = self._bx_statuses[1]
        page: list[Any] = si_module._page(found, q)  # type: ignore[arg-type]  # messages, not dicts
        return 200, {"MessageStatuses": [m.status() for m in page], "TotalCount": len(found)}

    def _subscribe_list(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if si_module._one(q, "id"):
            return super()._subscribe_list(q, body)
        everything = si_module._flag(si_module._one(q, "includeimported"), "includeImported")
        key = (everything, len(self.export_messages), self._bx_marks)
        if self._bx_listing is None or self._bx_listing[0] != key:
            found = [m for m in self.export_messages if everything or not m.imported]
            self._bx_listing = (key, found)
            self._bx_pages, self._bx_encoded = {}, {}
        found = self._bx_listing[1]
        page_key = (si_module._one(q, "pagenumber"), si_module._one(q, "pagesize"))
        payload = self._bx_pages.get(page_key)
        if payload is None:
            page: list[Any] = si_module._page(found, q)  # type: ignore[arg-type]  # messages, not dicts
            payload = {"Projects": [dict(m.info) for m in page], "TotalCount": len(found)}
            self._bx_pages[page_key] = payload
        return 200, payload

    def _json(self, status: int, payload: Any) -> httpx.Response:
        """Encode each listing page once while the listing stays the same (the old app reads it again and
        again); the page dicts are never changed after they are made."""
        if (
            not self._bx_pages
            or self.camel_case
            or not isinstance(payload, dict)
            or "Projects" not in payload
        ):
            return super()._json(status, payload)
        content = self._bx_encoded.get(id(payload))
        if content is None:
            content = super()._json(status, payload).content
            self._bx_encoded[id(payload)] = content  # the payload stays alive in _bx_pages: its id is stable
        return httpx.Response(
            status, content=content, headers={"Content-Type": "application/json; charset=utf-8"}
        )


# ---- both -------------------------------------------------------------------------------------------


def make_pair(clock: SimClock, *, loopback: bool) -> SimPair:
    """Both indexed simulators on ``clock``; serving on loopback sockets when ``loopback``."""
    pair = SimPair(zoho=IndexedZohoSim(clock=clock.utc), si=IndexedSiSim(clock=clock.now))
    return pair.start() if loopback else pair


_SI_ROUTES = [
    ("POST", re.compile(r"(?i)^/publish/projects$"), "si.publish"),
    ("POST", re.compile(r"(?i)^/publish/projects/update$"), "si.update"),
    ("GET", re.compile(r"(?i)^/message/publishedmessagestatus$"), "si.message_status"),
    ("GET", re.compile(r"(?i)^/message/publishedmessagesstatus$"), "si.message_statuses"),
    ("GET", re.compile(r"(?i)^/subscribe/projects$"), "si.subscribe.list"),
    ("GET", re.compile(r"(?i)^/subscribe/projects/getprojectbymessageid$"), "si.subscribe.by_message"),
    ("PUT", re.compile(r"(?i)^/subscribe/projects/markasimported"), "si.mark_imported"),
    ("GET", re.compile(r"(?i)^/subscribe/projects/[^/]+$"), "si.subscribe.get"),
]


def _zoho_label(method: str, path: str) -> str:
    if path == "/oauth/v2/token":
        return "zoho.token"
    rest = path.removeprefix("/crm/v8/")
    if (method, rest) == ("POST", "coql"):
        return "zoho.coql"
    if (method, rest) == ("PUT", "Deals"):
        return "zoho.deals.update"
    if (method, rest) == ("POST", "Notes"):
        return "zoho.notes.create"
    if method == "GET" and rest.endswith("/Notes"):
        return "zoho.notes.list"
    if rest == "settings/fields":
        return "zoho.fields"
    return f"zoho.other:{method} {rest}"


def _si_label(method: str, path: str) -> str:
    for verb, pattern, label in _SI_ROUTES:
        if method == verb and pattern.match(path):
            return label
    return f"si.other:{method} {path}"


class SimLog:
    """Counts what both simulators received since :meth:`mark`, per endpoint label."""

    def __init__(self, pair: SimPair) -> None:
        self.pair = pair
        self._zoho = 0
        self._si = 0

    def mark(self) -> None:
        self._zoho = len(self.pair.zoho.requests)
        self._si = len(self.pair.si.requests)

    def since_mark(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for method, path, _ in self.pair.zoho.requests[self._zoho :]:
            counts[_zoho_label(method, path)] += 1
        for request in self.pair.si.requests[self._si :]:
            counts[_si_label(request.method, request.path)] += 1
        return counts
