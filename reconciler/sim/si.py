"""A stateful fake of the D-Tools SI cloud *queue* (facts from ``shared/reference/dtools-si.md``).

Publishes (``POST /Publish/Projects[/Update]``) queue *publish messages* (pending); the test hook
:meth:`SiSim.import_pending` plays SI's desktop client importing them (imported or failed) and, like a
check-in with automatic export, *exports* the project. Exports are *export messages*: a ``ProjectInfo``
entry in ``GET /Subscribe/Projects`` plus a full snapshot for ``GetProjectByMessageId``, hidden once
acknowledged with ``MarkAsImported``. Test hooks edit projects and change orders as an SI user would.

The sim answers PascalCase JSON (camelCase when :attr:`SiSim.camel_case` is set), binds bodies, query keys
and paths case-insensitively as ASP.NET does, accepts an optional leading ``/SI`` in the path, and requires
``X-DTSI-ApiKey``. ``CONumber`` is a string in the list (as the OpenAPI types it) and an integer in the
detail (as the help pages show it): clients must accept both.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import httpx

__all__ = ["Ack", "ExportMessage", "PublishMessage", "SiSim", "SimRequest"]

# Project properties by their lower-case name, to store what arrives in any casing under SI's spelling.
_BASE_FIELDS = (  # noqa: SIM905 - a word list reads better than seventy quoted names
    "Id IntegrationProjectId TemplateName Client ClientId IntegrationClientId ClientNumber Name Number"
    " Progress AssignedTo SalesRep ProjectManager Designer Revision CurrencyCode CurrencyRate Cost Tax"
    " Margin Markup PriceWithoutTax Price Hours Budget ClientPONumber StartDate EndDate EstimatedCloseDate"
    " CloseDate ScopeOfWork Notes SiteAddress BillingAddress Contacts Resources Items Packages Locations"
    " Systems Taxes PaymentTerms MiscItems CreatedOn UpdatedOn UpdatedBy UpdatedByEmail CreatedBy"
    " PublishedBy PublishedOn PublishedOnUnixTimeMs ImportedOn Approved ApprovedOn Deleted Archived"
    " IsChangeOrder CONumber COId COName COStatus COType CONotes COAcceptedOn CORejectedOn COCreatedOn"
).split()
_CANONICAL = {name.lower(): name for name in [*_BASE_FIELDS, *(f"CustomField{n}" for n in range(1, 76))]}

# The ProjectInfo entry of GET /Subscribe/Projects: no Hours, Revision or change-order name/status.
_INFO_FIELDS = (  # noqa: SIM905 - as above
    "Id IntegrationProjectId MessageId ClientId Client ClientNumber Name Number Progress Approved CONumber"
    " CurrencyCode Price ImportedOn PublishedOn PublishedOnUnixTimeMs Deleted Archived"
).split()

# ProjectFieldId -> Project property: 1..15 in this order, 100 + N for CustomFieldN.
_UPDATE_NAMES = (  # noqa: SIM905 - as above
    "Name Progress StartDate EndDate EstimatedCloseDate CloseDate Budget ScopeOfWork AssignedTo SalesRep"
    " ProjectManager Designer Client ClientNumber ClientPONumber"
).split()
UPDATE_FIELDS = {
    **dict(enumerate(_UPDATE_NAMES, start=1)),
    **{100 + n: f"CustomField{n}" for n in range(1, 76)},
}
_DATE_FIELDS = {"StartDate", "EndDate", "EstimatedCloseDate", "CloseDate"}
_DECIMAL_CUSTOM = {*range(15, 19), *range(55, 65)}
_DATE_CUSTOM = set(range(19, 23))
_BOOL_CUSTOM = {*range(23, 27), *range(65, 76)}

_DENIED = {"Message": "Authorization has been denied for this request."}
_INVALID = "The request is invalid."


class SimRequest(NamedTuple):
    """One received request: path relative to the API root (``/Publish/Projects``), query, parsed body."""

    method: str
    path: str
    query: dict[str, str | list[str]]
    body: Any


@dataclass
class PublishMessage:
    """A queued write: TypeId 11 (project) or 12 (update); StatusId 1 pending, 2 imported, 3 failed."""

    id: str
    type_id: int
    project_id: str
    payload: dict[str, Any]
    status_id: int = 1
    imported_on: str | None = None
    error_message: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "TypeId": self.type_id,
            "StatusId": self.status_id,
            "ImportedOn": self.imported_on,
            "ErrorMessage": self.error_message,
        }


@dataclass
class ExportMessage:
    """What SI sent out: the ``ProjectInfo`` list entry and the full Project as of this message."""

    info: dict[str, Any]
    snapshot: dict[str, Any]
    imported: bool = False

    @property
    def message_id(self) -> str:
        return str(self.info["MessageId"])

    @property
    def project_id(self) -> str:
        return str(self.info["Id"])

    @property
    def co_number(self) -> str | None:
        value = self.info["CONumber"]
        return None if value is None else str(value)

    @property
    def published_ms(self) -> int:
        return int(self.info["PublishedOnUnixTimeMs"])


class Ack(NamedTuple):
    """One MarkAsImported call: what it named and how many messages it marked."""

    project_id: str | None
    co_number: str | None
    published_ms: int | None
    message_id: str | None
    marked: int


@dataclass
class _Fault:
    method: str
    prefix: str
    status: int | None
    body: Any
    headers: dict[str, str]
    times: int
    kind: str | None


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _camel(key: str) -> str:
    head = re.match(r"[A-Z]+", key)
    if not head:
        return key
    n = len(head.group())
    if n > 1 and n < len(key):
        n -= 1  # "CONumber" -> "coNumber"
    return key[:n].lower() + key[n:]


def _recase(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(str(k)): _recase(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_recase(v) for v in value]
    return value


def _guid(value: object, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise _Reject(400, f"The value '{value}' is not valid for {name}.") from None


def _co_key(value: object) -> str | None:
    """A CONumber as the sim keys it: None for the base project ("", 0, None), digits without zeros."""
    text = "" if value is None else str(value).strip()
    if text.isdigit():
        return str(int(text)) if int(text) else None
    return text or None


def _co_out(co: str) -> int | str:
    return int(co) if co.isdigit() else co


def _flag(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    if value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise _Reject(400, _INVALID + f" ({name})")


def _convert(prop: str, value: str | None) -> Any:
    """An UpdateFields value (an invariant string) as the Project stores it; ValueError when bad."""
    if value is None or value == "":
        return None
    custom = int(prop[11:]) if prop.startswith("CustomField") else 0
    if prop == "Budget" or custom in _DECIMAL_CUSTOM:
        if not re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
            raise ValueError(f"'{value}' is not a valid decimal for {prop}")
        return float(Decimal(value.strip()))
    if prop in _DATE_FIELDS or custom in _DATE_CUSTOM:
        try:
            if len(value) == 10:
                return date.fromisoformat(value).isoformat()
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").isoformat()
        except ValueError:
            raise ValueError(f"'{value}' is not a valid date for {prop}") from None
    if custom in _BOOL_CUSTOM:
        if value.lower() not in {"true", "false"}:
            raise ValueError(f"'{value}' is not a valid boolean for {prop}")
        return value.lower() == "true"
    return value


class SiSim:
    """The SI queue in memory. All state changes happen under one lock; read it freely in tests."""

    def __init__(
        self,
        api_key: str = "sim-si-key",
        *,
        clock: Callable[[], float] | None = None,
        camel_case: bool = False,
    ) -> None:
        self.api_key = api_key
        self.camel_case = camel_case  # answer camelCase (as the OpenAPI spells it) instead of PascalCase
        self.projects: dict[str, dict[str, Any]] = {}
        self.change_orders: dict[str, dict[str, dict[str, Any]]] = {}
        self.publish_messages: list[PublishMessage] = []
        self.export_messages: list[ExportMessage] = []
        self.acks: list[Ack] = []
        self.requests: list[SimRequest] = []
        self._clock = clock or time.time
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._import_failures: list[str] = []
        self._last_ms = 0
        self._numbers = 1000
        self._client_ids: dict[str, str] = {}

    # -- test hooks: the SI side -----------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail_next_import(self, error: str) -> None:
        """The next publish message that :meth:`import_pending` takes fails with ``error``."""
        with self._lock:
            self._import_failures.append(error)

    def import_pending(self, *, export: bool = True) -> int:
        """SI's desktop client imports the queue: apply pending messages in order; returns how many."""
        with self._lock:
            touched: list[str] = []
            pending = [m for m in self.publish_messages if m.status_id == 1]
            for message in pending:
                error = self._import_failures.pop(0) if self._import_failures else None
                if error is None:
                    try:
                        self._apply(message)
                    except (KeyError, ValueError) as exc:
                        error = str(exc.args[0] if exc.args else exc)
                if error is not None:
                    message.status_id, message.error_message = 3, error
                    continue
                message.status_id, message.imported_on = 2, self._iso()
                if message.project_id not in touched:
                    touched.append(message.project_id)
            if export:
                for project_id in touched:
                    self.export(project_id)
            return len(pending)

    def export(self, project_id: str, co_number: object = None) -> str:
        """SI exports the project (or one change order of it); returns the export message id."""
        with self._lock:
            project = self.projects[project_id]
            co = _co_key(co_number)
            ms = max(int(self._clock() * 1000), self._last_ms + 1)
            self._last_ms = ms
            message_id = str(uuid.uuid4())
            published_on = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            project.update(PublishedOn=published_on, PublishedOnUnixTimeMs=ms)
            snapshot = copy.deepcopy(project)
            snapshot.update(ImportedOn=None, IsChangeOrder=False)
            snapshot.update(self._co_view(project_id, co))
            info = {name: snapshot.get(name) for name in _INFO_FIELDS}
            info.update(MessageId=message_id, CONumber=co)
            self.export_messages.append(ExportMessage(info=info, snapshot=snapshot))
            return message_id

    def edit_project(self, project_id: str, *, export: bool = True, **fields: Any) -> str | None:
        """An SI user edits and checks in; values are stored as given (bad ones too)."""
        with self._lock:
            project = self.projects[project_id]
            project.update({_CANONICAL.get(k.lower(), k): v for k, v in fields.items()})
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
        """An SI user adds a change order to a project; exported unless ``export`` is False."""
        with self._lock:
            co = _co_key(co_number)
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
            co = _co_key(co_number)
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
            given = {_CANONICAL.get(k.lower(), k): v for k, v in fields.items()}
            project_id = _guid(given.pop("Id", uuid.uuid4()), "Id")
            given.setdefault("Client", "Walk-in Client")
            given.setdefault("Name", "Project made in SI")
            given.setdefault("IntegrationProjectId", None)
            self.projects[project_id] = self._new_project(project_id, given)
            if export:
                self.export(project_id)
            return project_id

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
            fault = _Fault(
                method.upper(), path_prefix.lower(), status, body, dict(headers or {}), times, kind
            )
            self._faults.append(fault)

    def count(self, method: str, path_prefix: str) -> int:
        """Requests received with ``method`` whose path starts with ``path_prefix`` (any case)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.method == method.upper() and r.path.lower().startswith(path_prefix.lower())
            )

    # -- HTTP ------------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Serve one request (thread-safe)."""
        with self._lock:
            path = request.url.path
            if re.match(r"(?i)^/si(/|$)", path):
                path = path[3:] or "/"
            path = path.rstrip("/") or "/"
            query: dict[str, list[str]] = {}  # ASP.NET binding: any case, "x=1&x=2" or "x[0]=1&x[1]=2"
            raw: dict[str, list[str]] = {}
            for key, value in request.url.params.multi_items():
                query.setdefault(re.sub(r"\[\d*\]$", "", key).lower(), []).append(value)
                raw.setdefault(key, []).append(value)
            body = self._parse_body(request)
            logged: dict[str, str | list[str]] = {k: v[0] if len(v) == 1 else v for k, v in raw.items()}
            self.requests.append(SimRequest(request.method, path, logged, body))
            fault = self._take_fault(request.method, path)
            if fault is not None:
                return self._fault_response(fault, request)
            if request.headers.get("X-DTSI-ApiKey") != self.api_key:
                return self._json(401, _DENIED)
            try:
                status, payload = self._route(request.method, path, query, body)
            except _Reject as exc:
                return self._json(exc.status, {"Message": exc.message})
            if payload is None:
                return httpx.Response(status)
            return self._json(status, payload)

    def _route(self, method: str, path: str, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        low = path.lower()
        routes: dict[str, tuple[str, Callable[[dict[str, list[str]], Any], tuple[int, Any]]]] = {
            "/publish/projects": ("POST", self._publish),
            "/publish/projects/update": ("POST", self._update),
            "/message/publishedmessagestatus": ("GET", self._message_status),
            "/message/publishedmessagesstatus": ("GET", self._message_statuses),
            "/subscribe/projects": ("GET", self._subscribe_list),
            "/subscribe/projects/getprojectbymessageid": ("GET", self._by_message),
            "/subscribe/projects/markasimported": ("PUT", self._mark),
            "/subscribe/projects/markasimportedbymessageid": ("PUT", self._mark_by_message),
        }
        if low in routes:
            verb, action = routes[low]
            if method != verb:
                raise _Reject(405, f"The requested resource does not support http method '{method}'.")
            return action(q, body)
        detail = re.fullmatch(r"/subscribe/projects/([^/]+)", low)
        if detail and method == "GET":
            return 200, self._detail(path.rsplit("/", 1)[1], _one(q, "conumber"))
        raise _Reject(404, f"No HTTP resource was found that matches the request URI '{path}'.")

    # -- endpoints --------------------------------------------------------------------------------------

    def _publish(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _Reject(400, _INVALID)
        given = {_CANONICAL.get(str(k).lower(), str(k)): v for k, v in body.items()}
        for required in ("Client", "Name"):
            if not given.get(required):
                raise _Reject(400, f"The {required} field is required.")
        project_id = _guid(given["Id"], "Id") if given.get("Id") else str(uuid.uuid4())
        given["Id"] = project_id
        message = PublishMessage(id=str(uuid.uuid4()), type_id=11, project_id=project_id, payload=given)
        self.publish_messages.append(message)
        return 200, {"ProjectId": project_id, "MessageId": message.id, "Message": "Project queued"}

    def _update(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise _Reject(400, _INVALID)
        fields = {str(k).lower(): v for k, v in body.items()}
        if not fields.get("projectid"):
            raise _Reject(400, "The ProjectId field is required.")
        project_id = _guid(fields["projectid"], "ProjectId")
        updates: list[tuple[str, str | None]] = []
        for entry in fields.get("updatefields") or []:
            item = {str(k).lower(): v for k, v in entry.items()} if isinstance(entry, dict) else {}
            field_id = item.get("projectfieldid")
            if isinstance(field_id, str) and field_id.isdigit():
                field_id = int(field_id)
            if not isinstance(field_id, int) or field_id not in UPDATE_FIELDS:
                raise _Reject(400, f"Invalid ProjectFieldId '{field_id}'.")
            value = item.get("value")
            updates.append((UPDATE_FIELDS[field_id], None if value is None else str(value)))
        message_id = _guid(fields["messageid"], "MessageId") if fields.get("messageid") else None
        existing = next((m for m in self.publish_messages if m.id == message_id), None)
        if existing is not None:  # a retried MessageId is the same message: never queued twice
            if existing.status_id == 1:
                existing.payload = {"ProjectId": project_id, "UpdateFields": updates}
            return 200, {"MessageId": existing.id, "Message": "Project update queued"}
        message = PublishMessage(
            id=message_id or str(uuid.uuid4()),
            type_id=12,
            project_id=project_id,
            payload={"ProjectId": project_id, "UpdateFields": updates},
        )
        self.publish_messages.append(message)
        return 200, {"MessageId": message.id, "Message": "Project update queued"}

    def _message_status(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        wanted = _one(q, "messageid")
        if not wanted:
            raise _Reject(400, "The messageId field is required.")
        wanted = _guid(wanted, "messageId")
        for message in self.publish_messages:
            if message.id == wanted:
                return 200, message.status()
        raise _Reject(404, f"Message '{wanted}' was not found.")

    def _message_statuses(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        statuses = {_int(v, "messageStatusIds") for v in q.get("messagestatusids", [])}
        types = {_int(v, "messageTypeIds") for v in q.get("messagetypeids", [])}
        found = [
            m.status()
            for m in self.publish_messages
            if (not statuses or m.status_id in statuses) and (not types or m.type_id in types)
        ]
        page = _page(found, q)
        return 200, {"MessageStatuses": page, "TotalCount": len(found)}

    def _subscribe_list(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if _one(q, "id"):
            return 200, self._detail(str(_one(q, "id")), _one(q, "conumber"))
        everything = _flag(_one(q, "includeimported"), "includeImported")
        found = [copy.deepcopy(m.info) for m in self.export_messages if everything or not m.imported]
        return 200, {"Projects": _page(found, q), "TotalCount": len(found)}

    def _detail(self, raw_id: str, co_number: str | None) -> dict[str, Any]:
        project_id = _guid(raw_id, "id")
        if project_id not in self.projects:
            raise _Reject(404, f"Project '{raw_id}' was not found.")
        co = _co_key(co_number)
        if co is not None and co not in self.change_orders.get(project_id, {}):
            raise _Reject(404, f"Change order {co} of project '{raw_id}' was not found.")
        project = copy.deepcopy(self.projects[project_id])
        project["IsChangeOrder"] = False
        project.update(self._co_view(project_id, co))
        return project

    def _by_message(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        wanted = _one(q, "messageid")
        for message in self.export_messages:
            if wanted and message.message_id == _guid(wanted, "messageId"):
                return 200, copy.deepcopy(message.snapshot)
        raise _Reject(404, f"Message '{wanted}' was not found.")

    def _mark(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raw_id = _one(q, "id")
        if not raw_id:
            raise _Reject(400, "The id field is required.")
        project_id, co = _guid(raw_id, "id"), _co_key(_one(q, "conumber"))
        limit = _optional_int(_one(q, "publishedonunixtimems"))
        marked = self._mark_where(
            lambda m: m.project_id == project_id and m.co_number == co and _not_newer(m, limit)
        )
        self.acks.append(Ack(project_id, co, limit, None, marked))
        return 200, None

    def _mark_by_message(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raw_id = _one(q, "messageid")
        if not raw_id:
            raise _Reject(400, "The messageId field is required.")
        message_id = _guid(raw_id, "messageId")
        limit = _optional_int(_one(q, "publishedonunixtimems"))
        marked = self._mark_where(lambda m: m.message_id == message_id and _not_newer(m, limit))
        found = next((m for m in self.export_messages if m.message_id == message_id), None)
        project_id = found.project_id if found is not None else None
        co = found.co_number if found is not None else None
        self.acks.append(Ack(project_id, co, limit, message_id, marked))
        return 200, None

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
            else:
                self.projects[project_id] = self._new_project(project_id, fields)
            return
        if project_id not in self.projects:
            raise KeyError(f"Project '{project_id}' was not found.")
        converted = {prop: _convert(prop, value) for prop, value in message.payload["UpdateFields"]}
        self.projects[project_id].update(converted)
        self.projects[project_id]["UpdatedOn"] = self._iso()

    def _new_project(self, project_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        self._numbers += 1
        now = self._iso()
        client = str(fields.get("Client") or "")
        project: dict[str, Any] = {
            "Id": project_id,
            "IntegrationProjectId": None,
            "ClientId": self._client_ids.setdefault(client.lower(), str(uuid.uuid4())),
            "Number": f"P-{self._numbers}",
            "Progress": None,
            "Price": 0.0,
            "Hours": 0.0,
            "Revision": 1,
            "Budget": None,
            "CurrencyCode": "USD",
            "Approved": False,
            "Deleted": False,
            "Archived": False,
            "CreatedOn": now,
            "UpdatedOn": now,
        }
        project.update(fields)
        return project

    def _co_view(self, project_id: str, co: str | None) -> dict[str, Any]:
        if co is None:
            return {"CONumber": None}
        order = self.change_orders.get(project_id, {})[co]
        return {"IsChangeOrder": True, "CONumber": _co_out(co), **copy.deepcopy(order)}

    def _iso(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S")

    def _parse_body(self, request: httpx.Request) -> Any:
        raw = request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return raw.decode("utf-8", "replace")

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method.upper() and path.lower().startswith(fault.prefix):
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _fault_response(self, fault: _Fault, request: httpx.Request) -> httpx.Response:
        if fault.kind == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=request)
        if fault.kind == "reset":
            raise httpx.RemoteProtocolError("Server disconnected without an answer.", request=request)
        if fault.kind == "malformed":
            return httpx.Response(
                200, content=b'{"Projects": [{"Id": ', headers={"Content-Type": "application/json"}
            )
        if fault.kind == "empty204":
            return httpx.Response(204)
        status = fault.status or 500
        if isinstance(fault.body, str):
            return httpx.Response(status, text=fault.body, headers=fault.headers)
        payload = fault.body if fault.body is not None else {"Message": "An error has occurred."}
        response = self._json(status, payload)
        response.headers.update(fault.headers)
        return response

    def _json(self, status: int, payload: Any) -> httpx.Response:
        data = _recase(payload) if self.camel_case else payload
        return httpx.Response(
            status,
            content=json.dumps(data).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )


def _one(q: dict[str, list[str]], key: str) -> str | None:
    values = q.get(key)
    return values[-1] if values else None


def _int(value: str, name: str) -> int:
    if not value.strip().lstrip("-").isdigit():
        raise _Reject(400, f"The value '{value}' is not valid for {name}.")
    return int(value)


def _optional_int(value: str | None) -> int | None:
    return None if value is None or value == "" else _int(value, "publishedOnUnixTimeMs")


def _page(items: list[dict[str, Any]], q: dict[str, list[str]]) -> list[dict[str, Any]]:
    number = _int(_one(q, "pagenumber") or "1", "pageNumber")
    size = _int(_one(q, "pagesize") or "50", "pageSize")
    if number < 1 or size < 1:
        raise _Reject(400, _INVALID)
    return items[(number - 1) * size : number * size]


def _not_newer(message: ExportMessage, limit: int | None) -> bool:
    return limit is None or message.published_ms <= limit
