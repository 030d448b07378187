"""The Zoho simulator's HTTP side: OAuth token grants and the CRM v8 endpoints the clients call.

``POST /oauth/v2/token`` and ``/crm/v8/...`` are served on the same origin. Every error is Zoho's envelope
``{"code", "details", "message", "status": "error"}``; writes answer per record (200/201/207/400).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx

from reconciler.sim.zoho.coql import CoqlError, parse
from reconciler.sim.zoho.state import (
    ACCESS_DENIED,
    SIM_USER,
    TOKEN_LIFETIME,
    TOKEN_WINDOW,
    TOKENS_PER_WINDOW,
    Fault,
    ZohoState,
    iso_stamp,
)

__all__ = ["ZohoSim"]

_TEXT_TYPES = frozenset({"text", "textarea", "picklist", "email", "phone", "website", "autonumber"})


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body).encode()
    return httpx.Response(
        status, content=content, headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
    )


def _envelope(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "details": dict(details or {}), "message": message, "status": "error"}


def _error(status: int, code: str, message: str, details: Mapping[str, Any] | None = None) -> httpx.Response:
    return _json(status, _envelope(code, message, details))


def _per_record_status(items: list[dict[str, Any]], all_ok: int) -> int:
    ok = sum(1 for item in items if item["status"] == "success")
    return all_ok if ok == len(items) else 400 if ok == 0 else 207


class ZohoSim(ZohoState):
    """Zoho accounts + CRM v8 in one object; ``handle`` is thread-safe (one lock)."""

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- dispatch -------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            content = request.read()
            try:
                body: Any = json.loads(content) if content else None
                parsed = True
            except (json.JSONDecodeError, UnicodeDecodeError):
                body, parsed = None, False
            path = request.url.path
            self.requests.append((request.method, path, body))
            fault = self._take_fault(request.method, path)
            if fault is not None and fault.before:
                return self._fault_response(fault, request)
            response = self._route(request, body, parsed)
            return self._fault_response(fault, request) if fault is not None else response

    @staticmethod
    def _fault_response(fault: Fault, request: httpx.Request) -> httpx.Response:
        if fault.kind == "timeout":
            raise httpx.ReadTimeout("simulated timeout", request=request)
        if fault.kind == "reset":
            raise httpx.RemoteProtocolError("Server disconnected without an answer.", request=request)
        if fault.kind == "malformed":
            return httpx.Response(
                200, content=b'{"data": [{"id": ', headers={"Content-Type": "application/json"}
            )
        if fault.kind == "empty204":
            return httpx.Response(204)
        if isinstance(fault.body, dict):
            return _json(fault.status, fault.body, fault.headers)
        if fault.body is not None:
            return httpx.Response(fault.status, content=fault.body, headers=fault.headers)
        defaults = {
            401: ("INVALID_TOKEN", "invalid oauth token"),
            429: ("TOO_MANY_REQUESTS", "Too many requests. Please try again later."),
        }
        code, message = defaults.get(fault.status, ("INTERNAL_ERROR", "Internal Server Error"))
        if 400 <= fault.status < 500 and fault.status not in defaults:
            code, message = "INVALID_REQUEST", "the request is invalid"
        return _json(fault.status, _envelope(code, message), fault.headers)

    def _route(self, request: httpx.Request, body: Any, parsed: bool) -> httpx.Response:
        method, path = request.method, request.url.path
        if path == "/oauth/v2/token" and method == "POST":
            return self._token(request)
        if not path.startswith("/crm/v8/"):
            return self._not_found()
        if not self._authorised(request):
            return _error(401, "INVALID_TOKEN", "invalid oauth token")
        if method in ("POST", "PUT") and not parsed:
            return _error(400, "INVALID_DATA", "the input is not valid JSON")
        rest = path[len("/crm/v8/") :].rstrip("/")
        params = request.url.params
        if (method, rest) == ("POST", "coql"):
            return self._coql(body)
        if (method, rest) == ("PUT", "Deals"):
            return self._update_deals(body)
        if (method, rest) == ("POST", "Notes"):
            return self._create_notes(body)
        if (method, rest) == ("GET", "settings/fields"):
            return self._fields(params.get("module"))
        match = re.fullmatch(r"Deals/([^/]+)/Notes", rest)
        if method == "GET" and match:
            return self._list_notes(match.group(1), params)
        return self._not_found()

    @staticmethod
    def _not_found() -> httpx.Response:
        return _error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    # -- accounts -------------------------------------------------------------------------------------

    def _authorised(self, request: httpx.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._access.get(token.strip())
        return scheme == "Zoho-oauthtoken" and expiry is not None and self._now() < expiry

    def _token(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        params.update(parse_qsl(request.content.decode("utf-8", "replace")))
        self.token_requests.append(params)
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            return _json(200, {"error": "invalid_client"})
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        grant = params.get("grant_type")
        if grant == "refresh_token":
            refresh = params.get("refresh_token", "")
            if refresh not in self._refresh_tokens:
                return _json(200, {"error": "invalid_code"})
            return self._issue(refresh, origin, params.get("scope"))
        if grant == "authorization_code":
            new_refresh = self._grant_codes.pop(params.get("code", ""), None)
            if new_refresh is None:
                return _json(200, {"error": "invalid_code"})
            self._refresh_tokens.add(new_refresh)
            return self._issue(new_refresh, origin, params.get("scope"), refresh_token=new_refresh)
        if grant == "client_credentials":
            soid = params.get("soid", "")
            if not re.fullmatch(r"ZohoCRM\.\w+", soid):
                return _json(200, {"error": "invalid_code"})
            return self._issue(soid, origin, params.get("scope"))
        return _json(200, {"error": "unsupported_grant_type"})

    def _issue(
        self, grant: str, origin: str, scope: str | None, refresh_token: str | None = None
    ) -> httpx.Response:
        now = self._now()
        recent = [at for at in self._issued.get(grant, []) if now - at < TOKEN_WINDOW]
        if self.token_limit and len(recent) >= TOKENS_PER_WINDOW:
            return _json(400, ACCESS_DENIED)
        self._issued[grant] = [*recent, now]
        token = f"1000.simtoken{next(self._serial):06d}.{self._new_id()}"
        self._access[token] = now + TOKEN_LIFETIME
        self.tokens_issued += 1
        answer: dict[str, Any] = {"access_token": token, "api_domain": origin, "token_type": "Bearer"}
        answer["expires_in"] = int(TOKEN_LIFETIME.total_seconds())
        if scope:
            answer["scope"] = scope.replace(",", " ")
        if refresh_token:
            answer["refresh_token"] = refresh_token
        return _json(200, answer)

    # -- COQL -----------------------------------------------------------------------------------------

    def _coql(self, body: Any) -> httpx.Response:
        text = body.get("select_query") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return _error(
                400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "select_query"}
            )
        try:
            query = parse(text)
            rows, more = self._run(query)
        except CoqlError as exc:
            return _error(400, exc.code, exc.message, exc.details)
        if not rows:
            return httpx.Response(204)
        return _json(200, {"data": rows, "info": {"count": len(rows), "more_records": more}})

    # -- writes ---------------------------------------------------------------------------------------

    def _bad_value(self, entry: dict[str, Any], value: Any) -> dict[str, Any] | None:
        """The INVALID_DATA details for a value of the wrong type for its field, or None."""
        dtype = entry["data_type"]
        if value is None:
            return None
        wrong = {"expected_data_type": dtype}
        if dtype in ("currency", "double", "percent"):
            return None if isinstance(value, int | float) and not isinstance(value, bool) else wrong
        if dtype in ("integer", "bigint"):
            return None if isinstance(value, int) and not isinstance(value, bool) else wrong
        if dtype == "boolean":
            return None if isinstance(value, bool) else wrong
        if dtype == "date":
            try:
                date.fromisoformat(value)
            except (TypeError, ValueError):
                return wrong
            return None if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else wrong
        if dtype == "datetime":
            try:
                datetime.fromisoformat(value)
            except (TypeError, ValueError):
                return wrong
            return None
        if dtype in _TEXT_TYPES:
            if not isinstance(value, str):
                return wrong
            length = entry.get("length")
            return {"maximum_length": length} if isinstance(length, int) and len(value) > length else None
        if dtype == "lookup":
            ok = isinstance(value, Mapping) and isinstance(value.get("id"), str)
            if ok and entry["api_name"] == "Account_Name" and value["id"] not in self.accounts:
                return {"id": value["id"]}
            return None if ok else wrong
        return None

    def _update_one(self, index: int, record: Any, meta: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(record, dict) or not record.get("id"):
            missing = {"api_name": "id", "json_path": f"$.data[{index}].id"}
            return _envelope("MANDATORY_NOT_FOUND", "required field not found", missing)
        deal_id = str(record["id"])
        deal = self.deals.get(deal_id)
        if deal is None:
            return _envelope("INVALID_DATA", "the related id given seems to be invalid", {"id": deal_id})
        for name, value in record.items():
            if name == "id":
                continue
            where = {"api_name": name, "json_path": f"$.data[{index}].{name}"}
            entry = meta.get(name)
            if entry is None:
                return _envelope("INVALID_DATA", "the field api name given seems to be invalid", where)
            if entry.get("read_only"):
                return _envelope("INVALID_DATA", "the field is read only", where)
            bad = self._bad_value(entry, value)
            if bad is not None:
                return _envelope("INVALID_DATA", "invalid data", bad | where)
        for name, value in record.items():
            if name == "Account_Name":
                deal[name] = self._account_ref(value)
            elif name != "id":
                deal[name] = copy.deepcopy(value)
        deal["Modified_Time"] = iso_stamp(self._now())
        details: dict[str, Any] = {"Modified_Time": deal["Modified_Time"], "Modified_By": SIM_USER}
        details |= {"Created_Time": deal["Created_Time"], "id": deal_id, "Created_By": SIM_USER}
        return {"code": "SUCCESS", "details": details, "message": "record updated", "status": "success"}

    def _update_deals(self, body: Any) -> httpx.Response:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return _error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data"})
        if len(data) > 100:
            return _error(400, "LIMIT_EXCEEDED", "the given data exceeds the limit", {"limit": 100})
        self.triggers.append(body.get("trigger"))
        meta = self._meta()
        items = [self._update_one(i, record, meta) for i, record in enumerate(data)]
        return _json(_per_record_status(items, 200), {"data": items})

    def _create_one(self, index: int, note: Any) -> dict[str, Any]:
        path = f"$.data[{index}]"
        if not isinstance(note, dict):
            return _envelope("INVALID_DATA", "invalid data", {"json_path": path})
        title, content = note.get("Note_Title"), note.get("Note_Content")
        if title is None and content is None:
            expected = [{"api_name": n, "json_path": f"{path}.{n}"} for n in ("Note_Title", "Note_Content")]
            return _envelope(
                "EXPECTED_FIELD_MISSING", "expected field missing", {"expected_fields": expected}
            )
        for name, value, limit in (("Note_Title", title, 120), ("Note_Content", content, 65535)):
            where = {"api_name": name, "json_path": f"{path}.{name}"}
            if value is not None and not isinstance(value, str):
                return _envelope("INVALID_DATA", "invalid data", {"expected_data_type": "text"} | where)
            if isinstance(value, str) and len(value) > limit:
                return _envelope("INVALID_DATA", "invalid data", {"maximum_length": limit} | where)
        parent = note.get("Parent_Id")
        module = parent.get("module") if isinstance(parent, dict) else None
        deal_id = str(parent.get("id")) if isinstance(parent, dict) else ""
        module_ok = isinstance(module, dict) and (module.get("api_name") == "Deals" or "id" in module)
        if not module_ok or deal_id not in self.deals:
            where = {"api_name": "Parent_Id", "json_path": f"{path}.Parent_Id"}
            return _envelope("INVALID_DATA", "the related id given seems to be invalid", where)
        note_id = self._store_note(deal_id, title or "", content or "")
        stored = self.notes[-1]
        details: dict[str, Any] = {"Modified_Time": stored["Modified_Time"], "Modified_By": SIM_USER}
        details |= {"Created_Time": stored["Created_Time"], "id": note_id, "Created_By": SIM_USER}
        return {"code": "SUCCESS", "details": details, "message": "record added", "status": "success"}

    def _create_notes(self, body: Any) -> httpx.Response:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return _error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data"})
        if len(data) > 200:
            return _error(400, "LIMIT_EXCEEDED", "the given data exceeds the limit", {"limit": 200})
        items = [self._create_one(i, note) for i, note in enumerate(data)]
        return _json(_per_record_status(items, 201), {"data": items})

    # -- other reads ----------------------------------------------------------------------------------

    def _list_notes(self, deal_id: str, params: httpx.QueryParams) -> httpx.Response:
        fields = params.get("fields")
        if not fields:
            return _error(
                400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": "fields"}
            )
        try:
            page, per_page = int(params.get("page", "1")), int(params.get("per_page", "200"))
        except ValueError:
            return _error(400, "INVALID_DATA", "invalid data", {"param_name": "page"})
        if not 1 <= per_page <= 200 or page < 1:
            return _error(400, "INVALID_DATA", "invalid data", {"param_name": "per_page", "maximum": 200})
        if deal_id not in self.deals:
            return _error(
                400, "INVALID_DATA", "the related id given seems to be invalid", {"resource_path_index": 2}
            )
        mine = [n for n in self.notes if n["Parent_Id"]["id"] == deal_id]
        chunk = mine[(page - 1) * per_page : page * per_page]
        if not chunk:
            return httpx.Response(204)
        names = [name.strip() for name in fields.split(",") if name.strip()]
        data = [{"id": n["id"]} | {name: copy.deepcopy(n.get(name)) for name in names} for n in chunk]
        info = {
            "per_page": per_page,
            "count": len(data),
            "page": page,
            "more_records": len(mine) > page * per_page,
        }
        return _json(200, {"data": data, "info": info})

    def _fields(self, module: str | None) -> httpx.Response:
        if not module:
            return _error(
                400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": "module"}
            )
        if module != "Deals":
            return _error(
                400, "INVALID_MODULE", "the module name given seems to be invalid", {"param_name": "module"}
            )
        return _json(200, {"fields": copy.deepcopy(self.fields_meta)})
