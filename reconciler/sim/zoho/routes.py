"""The Zoho simulator's HTTP side: dispatch, faults, OAuth token grants, scopes and COQL.

``POST /oauth/v2/token`` and ``/crm/v8/...`` are served on the same origin. Every error is Zoho's envelope
``{"code", "details", "message", "status": "error"}``. A token carries its grant's scopes; a call the scopes
do not cover is 401 ``OAUTH_SCOPE_MISMATCH``. The record endpoints live in :mod:`.records`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

import httpx

from reconciler.sim.zoho.answers import envelope, error, json_answer
from reconciler.sim.zoho.coql import CoqlError, Query, atoms, parse
from reconciler.sim.zoho.records import RecordRoutes
from reconciler.sim.zoho.state import (
    ACCESS_DENIED,
    TOKEN_LIFETIME,
    TOKEN_WINDOW,
    TOKENS_PER_WINDOW,
    Fault,
    scope_covers,
)

__all__ = ["ZohoSim"]

# The scope each endpoint needs (scope names: Zoho's OAS securitySchemes and operation pages).
_SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("PUT", "Deals"): ("ZohoCRM.modules.deals.UPDATE",),
    ("POST", "Notes"): ("ZohoCRM.modules.notes.CREATE",),
    ("GET", "Deals/{id}/Notes"): ("ZohoCRM.modules.notes.READ",),
    ("GET", "settings/fields"): ("ZohoCRM.settings.fields.READ",),
}


class ZohoSim(RecordRoutes):
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
            return json_answer(fault.status, fault.body, fault.headers)
        if fault.body is not None:
            return httpx.Response(fault.status, content=fault.body, headers=fault.headers)
        defaults = {
            401: ("INVALID_TOKEN", "invalid oauth token"),
            429: ("TOO_MANY_REQUESTS", "Too many requests. Please try again later."),
        }
        code, message = defaults.get(fault.status, ("INTERNAL_ERROR", "Internal Server Error"))
        if 400 <= fault.status < 500 and fault.status not in defaults:
            code, message = "INVALID_REQUEST", "the request is invalid"
        return json_answer(fault.status, envelope(code, message), fault.headers)

    def _route(self, request: httpx.Request, body: Any, parsed: bool) -> httpx.Response:
        method, path = request.method, request.url.path
        if path == "/oauth/v2/token" and method == "POST":
            return self._token(request)
        if not path.startswith("/crm/v8/"):
            return self._not_found()
        if not self._authorised(request):
            return error(401, "INVALID_TOKEN", "invalid oauth token")
        if method in ("POST", "PUT") and not parsed:
            return error(400, "INVALID_DATA", "the input is not valid JSON")
        rest = path[len("/crm/v8/") :].rstrip("/")
        params = request.url.params
        if (method, rest) == ("POST", "coql"):
            return self._coql(request, body)
        match = re.fullmatch(r"Deals/([^/]+)/Notes", rest)
        needed = _SCOPES.get((method, "Deals/{id}/Notes" if match else rest))
        if needed is None:
            return self._not_found()
        refused = self._scope_mismatch(request, needed)
        if refused is not None:
            return refused
        if (method, rest) == ("PUT", "Deals"):
            return self._update_deals(body)
        if (method, rest) == ("POST", "Notes"):
            return self._create_notes(body)
        if (method, rest) == ("GET", "settings/fields"):
            return self._fields(params.get("module"))
        assert match is not None
        return self._list_notes(match.group(1), params)

    @staticmethod
    def _not_found() -> httpx.Response:
        return error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    # -- accounts -------------------------------------------------------------------------------------

    def _authorised(self, request: httpx.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self._access.get(token.strip())
        return scheme == "Zoho-oauthtoken" and expiry is not None and self._now() < expiry

    def _scope_mismatch(self, request: httpx.Request, needed: Iterable[str]) -> httpx.Response | None:
        """401 OAUTH_SCOPE_MISMATCH (Zoho's createNotes 401 example) when the token lacks a needed scope."""
        token = request.headers.get("Authorization", "").partition(" ")[2].strip()
        granted = self._token_scopes.get(token, frozenset())
        if all(scope_covers(granted, scope) for scope in needed):
            return None
        return error(401, "OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")

    def _token(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        params.update(parse_qsl(request.content.decode("utf-8", "replace")))
        self.token_requests.append(params)
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            return json_answer(200, {"error": "invalid_client"})
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        grant = params.get("grant_type")
        if grant == "refresh_token":
            refresh = params.get("refresh_token", "")
            if refresh not in self._refresh_tokens:
                return json_answer(200, {"error": "invalid_code"})
            return self._issue(refresh, origin, params.get("scope"))
        if grant == "authorization_code":
            new_refresh = self._grant_codes.pop(params.get("code", ""), None)
            if new_refresh is None:
                return json_answer(200, {"error": "invalid_code"})
            self._refresh_tokens.add(new_refresh)
            return self._issue(new_refresh, origin, params.get("scope"), refresh_token=new_refresh)
        if grant == "client_credentials":
            soid = params.get("soid", "")
            if not re.fullmatch(r"ZohoCRM\.\w+", soid):
                return json_answer(200, {"error": "invalid_code"})
            return self._issue(soid, origin, params.get("scope"))
        return json_answer(200, {"error": "unsupported_grant_type"})

    def _issue(
        self, grant: str, origin: str, scope: str | None, refresh_token: str | None = None
    ) -> httpx.Response:
        now = self._now()
        recent = [at for at in self._issued.get(grant, []) if now - at < TOKEN_WINDOW]
        if self.token_limit and len(recent) >= TOKENS_PER_WINDOW:
            return json_answer(400, ACCESS_DENIED)
        self._issued[grant] = [*recent, now]
        token = f"1000.simtoken{next(self._serial):06d}.{self._new_id()}"
        self._access[token] = now + TOKEN_LIFETIME
        asked = {part for part in re.split(r"[,\s]+", scope or "") if part}
        self._token_scopes[token] = (
            frozenset(asked) if asked and grant.startswith("ZohoCRM.") else self.grant_scopes
        )
        self.tokens_issued += 1
        self.issued_access_tokens.append(token)
        answer: dict[str, Any] = {"access_token": token, "api_domain": origin, "token_type": "Bearer"}
        answer["expires_in"] = int(TOKEN_LIFETIME.total_seconds())
        if scope:
            answer["scope"] = scope.replace(",", " ")
        if refresh_token:
            answer["refresh_token"] = refresh_token
        return json_answer(200, answer)

    # -- COQL -----------------------------------------------------------------------------------------

    def _coql(self, request: httpx.Request, body: Any) -> httpx.Response:
        text = body.get("select_query") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "select_query"})
        try:
            query = parse(text, booleans=self.boolean_literals)
            rows, more = self._run(query)  # a query Zoho cannot run is refused before its scopes matter
            refused = self._scope_mismatch(request, self._coql_scopes(query))
            if refused is not None:
                return refused
        except CoqlError as exc:
            return error(400, exc.code, exc.message, exc.details)
        if not rows:
            return httpx.Response(204)
        return json_answer(200, {"data": rows, "info": {"count": len(rows), "more_records": more}})

    def _coql_scopes(self, query: Query) -> list[str]:
        """COQL itself, the module read, and the module of every lookup the query joins
        (``Account_Name.Account_Name`` reads Accounts; ``Account_Name.id`` is on the deal)."""
        needed = ["ZohoCRM.coql.READ", f"ZohoCRM.modules.{query.module.lower()}.READ"]
        meta = self._meta()
        names = [*query.fields, query.order_by, *(atom.field for atom in atoms(query.where))]
        for name in names:
            base, _, sub = name.partition(".")
            target = meta.get(base, {}).get("lookup", {}).get("module", {}).get("api_name")
            if sub and sub != "id" and isinstance(target, str):
                needed.append(f"ZohoCRM.modules.{target.lower()}.READ")
        return list(dict.fromkeys(needed))
