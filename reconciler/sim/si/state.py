"""The SI simulator's state: projects, change orders, the publish and export queues, and the test hooks.

Publishes queue *publish messages* (pending); :meth:`SiState.import_pending` plays SI's desktop client
importing them (imported or failed) and, like a check-in with automatic export, *exports* the project.
Exports are *export messages*: a ``ProjectInfo`` entry for ``GET /Subscribe/Projects`` plus a full snapshot
for ``GetProjectByMessageId``, hidden once acknowledged. The other hooks edit projects and change orders as
an SI user would. Every hook holds the one lock; :class:`~reconciler.sim.si.routes.SiSim` adds HTTP.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from reconciler.sim.si.fields import (
    CANONICAL,
    INFO_FIELDS,
    PROJECT_FIELDS,
    PROJECT_LISTS,
    co_key,
    co_out,
    convert,
    guid,
)
from reconciler.sim.si.messages import Ack, ExportMessage, Fault, PublishMessage, SimRequest

__all__ = ["ArrayFilters", "SiState"]

ArrayFilters = Literal["any", "indexed", "repeated"]


class SiState:
    """The SI queue in memory. All state changes happen under one lock; read it freely in tests."""

    def __init__(
        self,
        api_key: str = "sim-si-key",
        *,
        clock: Callable[[], float] | None = None,
        camel_case: bool = False,
        array_filters: ArrayFilters = "any",
    ) -> None:
        self.api_key = api_key
        self.camel_case = camel_case  # answer camelCase (as the OpenAPI spells it) instead of PascalCase
        # Array filters taken: "any" (x=1&x=2 or x[0]=1&x[1]=2, as ASP.NET binds both); "indexed" (strict:
        # a repeated key is a 400, as SI's help page documents only x[0]=..); "repeated" (the indexed form is
        # a 400: a variant that disagrees with the docs, for testing ``reconciler check``).
        self.array_filters: ArrayFilters = array_filters
        # Answer PublishedMessagesStatus with every message, whatever the filters (a filter SI ignored).
        self.ignore_status_filters = False
        # PublishedMessageStatus for an id SI does not know: not documented; this status, with a body.
        self.unknown_message_status = 404
        self.projects: dict[str, dict[str, Any]] = {}
        self.change_orders: dict[str, dict[str, dict[str, Any]]] = {}
        self.publish_messages: list[PublishMessage] = []
        self.export_messages: list[ExportMessage] = []
        self.acks: list[Ack] = []
        self.requests: list[SimRequest] = []
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._faults: list[Fault] = []
        self._import_failures: list[str] = []
        self._project_failures: dict[str, str] = {}  # project id -> error of its next import
        self._last_ms = 0
        self._numbers = 1000
        # SI's clients, by their ClientId: Name, IntegrationId (the integration's IntegrationClientId),
        # Number, and what the first project brought (BillingAddress, Contacts).
        self.clients: dict[str, dict[str, Any]] = {}

    # -- test hooks: the SI side -----------------------------------------------------------------------

    def fail_next_import(self, error: str) -> None:
        """The next publish message that :meth:`import_pending` takes fails with ``error``."""
        with self._lock:
            self._import_failures.append(error)

    def fail_import_of(self, project_id: str, error: str) -> None:
        """The next import of ``project_id``'s publish message fails with ``error`` (whatever the order
        in which concurrent publishes reached the queue)."""
        with self._lock:
            self._project_failures[project_id] = error

    def import_pending(self, *, export: bool = True) -> int:
        """SI's desktop client imports the queue: apply pending messages in order; returns how many."""
        with self._lock:
            touched: dict[str, None] = {}  # projects in import order (a dict: 100,000 of them at bench scale)
            pending = [m for m in self.publish_messages if m.status_id == 1]
            for message in pending:
                error = self._project_failures.pop(message.project_id, None)
                if error is None and self._import_failures:
                    error = self._import_failures.pop(0)
                if error is None:
                    try:
                        self._apply(message)
                    except (KeyError, ValueError) as exc:
                        error = str(exc.args[0] if exc.args else exc)
                if error is not None:
                    message.status_id, message.error_message = 3, error
                    continue
                message.status_id, message.imported_on = 2, self._iso()
                touched.setdefault(message.project_id, None)
            if export:
                for project_id in touched:
                    self.export(project_id)
            return len(pending)

    def export(self, project_id: str, co_number: object = None) -> str:
        """SI exports the project (or one change order of it); returns the export message id."""
        with self._lock:
            project = self.projects[project_id]
            co = co_key(co_number)
            ms = max(int(self._clock() * 1000), self._last_ms + 1)
            self._last_ms = ms
            message_id = str(uuid.uuid4())
            published_on = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            project.update(PublishedOn=published_on, PublishedOnUnixTimeMs=ms)
            snapshot = copy.deepcopy(project)
            snapshot.update(ImportedOn=None, IsChangeOrder=False)
            snapshot.update(self._co_view(project_id, co))
            info = {name: snapshot.get(name) for name in INFO_FIELDS}
            info.update(MessageId=message_id, CONumber=co)
            self.export_messages.append(ExportMessage(info=info, snapshot=snapshot))
            return message_id

    def edit_project(self, project_id: str, *, export: bool = True, **fields: Any) -> str | None:
        """An SI user edits and checks in; values are stored as given (bad ones too)."""
        with self._lock:
            project = self.projects[project_id]
            project.update({CANONICAL.get(k.lower(), k): v for k, v in fields.items()})
            project["UpdatedOn"] = self._iso()
            return self.export(project_id) if export else None

    def add_change_order(
        self,
        project_id: str,
        co_number: int | str,
        name: str,
        status: str = "Pending",
        type: str = "External",
        price: float = 0.0,
        export: bool = True,
    ) -> str | None:
        """An SI user adds a change order to a project; exported unless ``export`` is False.

        (Seven parameters on purpose: the change order's own fields, as an SI user fills them in.)
        """
        with self._lock:
            co = co_key(co_number)
            if co is None or project_id not in self.projects:
                raise ValueError(f"no project {project_id} or bad change order number {co_number!r}")
            self.change_orders.setdefault(project_id, {})[co] = {
                "COName": name,
                "COStatus": status,
                "COType": type,
                "Price": price,
                "CONotes": "",
                "COCreatedOn": self._iso(),
                "COAcceptedOn": None,
                "CORejectedOn": None,
            }
            return self.export(project_id, co) if export else None

    def set_change_order_status(
        self, project_id: str, co_number: int | str, status: str, export: bool = True
    ) -> str | None:
        """An SI user moves a change order to ``status`` (Approved/Rejected stamp their dates)."""
        with self._lock:
            co = co_key(co_number)
            order = self.change_orders.get(project_id, {}).get(co or "")
            if co is None or order is None:
                raise ValueError(f"project {project_id} has no change order {co_number!r}")
            order["COStatus"] = status
            if status.lower() in {"approved", "accepted"}:
                order["COAcceptedOn"] = self._iso()
            elif status.lower() in {"rejected", "declined"}:
                order["CORejectedOn"] = self._iso()
            return self.export(project_id, co) if export else None

    def add_unknown_project(self, *, export: bool = True, **fields: Any) -> str:
        """A project created in SI itself (no deal knows it); exported unless ``export`` is False."""
        with self._lock:
            given = {CANONICAL.get(k.lower(), k): v for k, v in fields.items()}
            project_id = guid(given.pop("Id", uuid.uuid4()), "Id")
            given.setdefault("Client", "Walk-in Client")
            given.setdefault("Name", "Project made in SI")
            given.setdefault("IntegrationProjectId", None)
            self.projects[project_id] = self._new_project(project_id, given)
            if export:
                self.export(project_id)
            return project_id

    def archive_project(self, project_id: str, *, export: bool = True) -> str | None:
        """An SI user archives a project; SI exports it with ``Archived: true``."""
        return self._set_state(project_id, "Archived", True, export)

    def unarchive_project(self, project_id: str, *, export: bool = True) -> str | None:
        """An SI user takes a project out of the archive; exported with ``Archived: false``."""
        return self._set_state(project_id, "Archived", False, export)

    def delete_project(self, project_id: str, *, export: bool = True) -> str | None:
        """An SI user deletes a project; SI exports it with ``Deleted: true``."""
        return self._set_state(project_id, "Deleted", True, export)

    def purge_message_status(self, message_id: str) -> bool:
        """SI forgets a publish message (no retention is documented): its status becomes unknown."""
        with self._lock:
            kept = [m for m in self.publish_messages if m.id != message_id]
            purged = len(kept) != len(self.publish_messages)
            self.publish_messages = kept
            return purged

    def _set_state(self, project_id: str, flag: str, value: bool, export: bool) -> str | None:
        with self._lock:
            project = self.projects[project_id]
            project[flag] = value
            project["UpdatedOn"] = self._iso()
            return self.export(project_id) if export else None

    # -- test hooks: faults and the request log --------------------------------------------------------

    def clear_faults(self) -> None:
        """Drop every fault still queued (the network is healthy again)."""
        with self._lock:
            self._faults.clear()

    def inject(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        kind: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests (``times=-1``: all) with a fault, unapplied.

        (Many keyword parameters on purpose: each is one property of the fault, set in one call.)

        ``kind``: ``timeout`` raises ``httpx.ReadTimeout``, ``reset`` drops the connection unanswered
        (``httpx.RemoteProtocolError`` in-process, a closed socket when served), ``malformed`` answers 200
        with broken JSON, ``empty204`` answers 204; otherwise ``status`` with ``body`` (JSON unless a str)
        and ``headers``.
        """
        if kind not in {None, "timeout", "reset", "malformed", "empty204"}:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind is None and status is None:
            raise ValueError("inject() needs a status or a kind")
        with self._lock:
            fault = Fault(method.upper(), path_prefix.lower(), status, body, dict(headers or {}), times, kind)
            self._faults.append(fault)

    def count(self, method: str, path_prefix: str) -> int:
        """Requests received with ``method`` whose path starts with ``path_prefix`` (any case)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.method == method.upper() and r.path.lower().startswith(path_prefix.lower())
            )

    # -- internals --------------------------------------------------------------------------------------

    def _mark_where(self, match: Callable[[ExportMessage], bool]) -> int:
        marked = 0
        for message in self.export_messages:
            if not message.imported and match(message):
                message.imported = True
                message.info["ImportedOn"] = message.snapshot["ImportedOn"] = self._iso()
                marked += 1
        return marked

    def _apply(self, message: PublishMessage) -> None:
        project_id = message.project_id
        if message.type_id == 11:
            fields = {k: v for k, v in message.payload.items() if k != "Id"}
            if project_id in self.projects:  # the same Id again: update, never a second project
                self.projects[project_id].update(fields)
                self.projects[project_id]["UpdatedOn"] = self._iso()
                self._attach_client(self.projects[project_id])
            else:
                self.projects[project_id] = self._new_project(project_id, fields)
            return
        if project_id not in self.projects:
            raise KeyError(f"Project '{project_id}' was not found.")
        converted = {prop: convert(prop, value) for prop, value in message.payload["UpdateFields"]}
        self.projects[project_id].update(converted)
        self.projects[project_id]["UpdatedOn"] = self._iso()

    def _attach_client(self, project: dict[str, Any]) -> None:
        """Give the project its SI client: the one with its ``IntegrationClientId``; else, falling back to
        the name (any case), one of that name (with an id: one no integration claimed yet, which then
        takes the id); else a new one. The project then shows the client's own name, however this publish
        spelled it."""
        integration = str(project.get("IntegrationClientId") or "") or None
        name = str(project.get("Client") or "")
        clients = list(self.clients.values())
        found = next((c for c in clients if integration and c["IntegrationId"] == integration), None)
        if found is None:
            named = (c for c in clients if c["Name"].lower() == name.lower())
            found = next((c for c in named if integration is None or c["IntegrationId"] is None), None)
        if found is None:
            client_id = str(uuid.uuid4())
            found = self.clients[client_id] = {"Id": client_id, "Name": name, "IntegrationId": None}
            found |= {"Number": project.get("ClientNumber"), "BillingAddress": project.get("BillingAddress")}
            found["Contacts"] = copy.deepcopy(project.get("Contacts") or [])
        if integration and found["IntegrationId"] is None:
            found["IntegrationId"] = integration
        project["ClientId"], project["Client"] = found["Id"], found["Name"]

    def _new_project(self, project_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        self._numbers += 1
        now = self._iso()
        # Every property of SI's Project model is present, null when unset (ASP.NET serializes them all,
        # as the help page's Project sample shows); collections are empty lists.
        project: dict[str, Any] = dict.fromkeys(PROJECT_FIELDS)
        project |= {name: [] for name in PROJECT_LISTS}
        project |= {
            "Id": project_id,
            "IntegrationProjectId": None,
            "Number": f"P-{self._numbers}",
            "Progress": None,
            "Price": 0.0,
            "Hours": 0.0,
            "Revision": 1,
            "Budget": None,
            "CurrencyCode": "USD",
            "CurrencyRate": 1.0,
            "QuantityBased": False,
            "Approved": False,
            "Deleted": False,
            "Archived": False,
            "CreatedOn": now,
            "UpdatedOn": now,
        }
        project.update(fields)
        self._attach_client(project)
        return project

    def _co_view(self, project_id: str, co: str | None) -> dict[str, Any]:
        if co is None:
            return {"CONumber": None}
        order = self.change_orders.get(project_id, {})[co]
        return {"IsChangeOrder": True, "CONumber": co_out(co), **copy.deepcopy(order)}

    def _iso(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S")

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method.upper() and path.lower().startswith(fault.prefix):
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None
