"""The SI simulator's HTTP side: the cloud queue's endpoints, bound the way ASP.NET Web API binds them.

Answers are PascalCase JSON (camelCase when :attr:`SiSim.camel_case` is set); bodies, query keys and paths
bind case-insensitively; an optional leading ``/SI`` in the path is accepted; ``X-DTSI-ApiKey`` is required.
``CONumber`` is a string in the list (as the OpenAPI types it) and an integer in the detail (as the help
pages show it): clients must accept both.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from reconciler.sim.si.fields import CANONICAL, UPDATE_FIELDS, Reject, bind_nested, co_key, guid
from reconciler.sim.si.messages import Ack, ExportMessage, Fault, PublishMessage, SimRequest
from reconciler.sim.si.state import SiState

__all__ = ["SiSim"]

_DENIED = {"Message": "Authorization has been denied for this request."}
_INVALID = "The request is invalid."


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


def _flag(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    if value.lower() in {"true", "false"}:
        return value.lower() == "true"
    raise Reject(400, _INVALID + f" ({name})")


def _refused_arrays(raw: dict[str, list[str]], accepted: str) -> dict[str, Any] | None:
    """An ASP.NET Web API model-binding 400 for an array filter in a form ``accepted`` rules out."""
    state: dict[str, list[str]] = {}
    for key, values in raw.items():
        if accepted == "indexed" and len(values) > 1 and not key.endswith("]"):
            state[key] = [f"'{key}' is given more than once; send {key}[0]=...&{key}[1]=..."]
        elif accepted == "repeated" and re.search(r"\[\d*\]$", key):
            state[key] = [f"The value '{values[0]}' is not valid for {key}."]
    return {"Message": _INVALID, "ModelState": state} if state else None


class SiSim(SiState):
    """The SI queue over HTTP: ``handle`` serves one request (thread-safe)."""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

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
            refused = _refused_arrays(raw, self.array_filters)
            if refused:
                return self._json(400, refused)
            try:
                status, payload = self._route(request.method, path, query, body)
            except Reject as exc:
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
                raise Reject(405, f"The requested resource does not support http method '{method}'.")
            return action(q, body)
        detail = re.fullmatch(r"/subscribe/projects/([^/]+)", low)
        if detail and method == "GET":
            return 200, self._detail(path.rsplit("/", 1)[1], _one(q, "conumber"))
        raise Reject(404, f"No HTTP resource was found that matches the request URI '{path}'.")

    # -- endpoints --------------------------------------------------------------------------------------

    def _publish(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise Reject(400, _INVALID)
        given = {CANONICAL.get(str(k).lower(), str(k)): v for k, v in body.items()}
        given = {k: bind_nested(k, v) if isinstance(v, dict | list) else v for k, v in given.items()}
        for required in ("Client", "Name"):
            if not given.get(required):
                raise Reject(400, f"The {required} field is required.")
        project_id = guid(given["Id"], "Id") if given.get("Id") else str(uuid.uuid4())
        given["Id"] = project_id
        message = PublishMessage(id=str(uuid.uuid4()), type_id=11, project_id=project_id, payload=given)
        self.publish_messages.append(message)
        return 200, {"ProjectId": project_id, "MessageId": message.id, "Message": "Project queued"}

    def _update(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise Reject(400, _INVALID)
        fields = {str(k).lower(): v for k, v in body.items()}
        if not fields.get("projectid"):
            raise Reject(400, "The ProjectId field is required.")
        project_id = guid(fields["projectid"], "ProjectId")
        updates: list[tuple[str, str | None]] = []
        for entry in fields.get("updatefields") or []:
            item = {str(k).lower(): v for k, v in entry.items()} if isinstance(entry, dict) else {}
            field_id = item.get("projectfieldid")
            if isinstance(field_id, str) and field_id.isdigit():
                field_id = int(field_id)
            if not isinstance(field_id, int) or field_id not in UPDATE_FIELDS:
                raise Reject(400, f"Invalid ProjectFieldId '{field_id}'.")
            value = item.get("value")
            updates.append((UPDATE_FIELDS[field_id], None if value is None else str(value)))
        message_id = guid(fields["messageid"], "MessageId") if fields.get("messageid") else None
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
            raise Reject(400, "The messageId field is required.")
        wanted = guid(wanted, "messageId")
        for message in self.publish_messages:
            if message.id == wanted:
                return 200, message.status()
        # Not documented (dtools-si.md, corrections): by default 404 with a body naming the id.
        raise Reject(self.unknown_message_status, f"Message '{wanted}' was not found.")

    def _message_statuses(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        statuses = {_int(v, "messageStatusIds") for v in q.get("messagestatusids", [])}
        types = {_int(v, "messageTypeIds") for v in q.get("messagetypeids", [])}
        if self.ignore_status_filters:
            statuses, types = set(), set()
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
        imported = _flag(_one(q, "includeimported"), "includeImported")
        archived = _flag(_one(q, "includearchived"), "includeArchived")
        deleted = _flag(_one(q, "includedeleted"), "includeDeleted")
        found = [
            copy.deepcopy(m.info)
            for m in self.export_messages
            if (imported or not m.imported)
            and (archived or not m.info.get("Archived"))
            and (deleted or not m.info.get("Deleted"))
        ]
        return 200, {"Projects": _page(found, q), "TotalCount": len(found)}

    def _detail(self, raw_id: str, co_number: str | None) -> dict[str, Any]:
        project_id = guid(raw_id, "id")
        if project_id not in self.projects:
            raise Reject(404, f"Project '{raw_id}' was not found.")
        co = co_key(co_number)
        if co is not None and co not in self.change_orders.get(project_id, {}):
            raise Reject(404, f"Change order {co} of project '{raw_id}' was not found.")
        project = copy.deepcopy(self.projects[project_id])
        project["IsChangeOrder"] = False
        project.update(self._co_view(project_id, co))
        return project

    def _by_message(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        wanted = _one(q, "messageid")
        for message in self.export_messages:
            if wanted and message.message_id == guid(wanted, "messageId"):
                return 200, copy.deepcopy(message.snapshot)
        raise Reject(404, f"Message '{wanted}' was not found.")

    def _mark(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raw_id = _one(q, "id")
        if not raw_id:
            raise Reject(400, "The id field is required.")
        project_id, co = guid(raw_id, "id"), co_key(_one(q, "conumber"))
        limit = _optional_int(_one(q, "publishedonunixtimems"))
        marked = self._mark_where(
            lambda m: m.project_id == project_id and m.co_number == co and _not_newer(m, limit)
        )
        self.acks.append(Ack(project_id, co, limit, None, marked))
        return 200, None

    def _mark_by_message(self, q: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        raw_id = _one(q, "messageid")
        if not raw_id:
            raise Reject(400, "The messageId field is required.")
        message_id = guid(raw_id, "messageId")
        limit = _optional_int(_one(q, "publishedonunixtimems"))
        marked = self._mark_where(lambda m: m.message_id == message_id and _not_newer(m, limit))
        found = next((m for m in self.export_messages if m.message_id == message_id), None)
        project_id = found.project_id if found is not None else None
        co = found.co_number if found is not None else None
        self.acks.append(Ack(project_id, co, limit, message_id, marked))
        return 200, None

    def _parse_body(self, request: httpx.Request) -> Any:
        raw = request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return raw.decode("utf-8", "replace")

    def _fault_response(self, fault: Fault, request: httpx.Request) -> httpx.Response:
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
        raise Reject(400, f"The value '{value}' is not valid for {name}.")
    return int(value)


def _optional_int(value: str | None) -> int | None:
    return None if value is None or value == "" else _int(value, "publishedOnUnixTimeMs")


def _page(items: list[dict[str, Any]], q: dict[str, list[str]]) -> list[dict[str, Any]]:
    number = _int(_one(q, "pagenumber") or "1", "pageNumber")
    size = _int(_one(q, "pagesize") or "50", "pageSize")
    if number < 1 or size < 1:
        raise Reject(400, _INVALID)
    return items[(number - 1) * size : number * size]


def _not_newer(message: ExportMessage, limit: int | None) -> bool:
    return limit is None or message.published_ms <= limit
