"""A stateful fake of Zoho accounts (OAuth) and CRM v8, following ``shared/reference/zoho-crm-v8.md``.

One :class:`ZohoSim` serves ``POST /oauth/v2/token`` and ``/crm/v8/...`` on the same origin:

- tokens: refresh-token, authorization-code (codes from :meth:`ZohoSim.issue_grant_code`) and
  client-credentials (``soid=ZohoCRM.<org>``) grants; one-hour tokens; at most 10 per grant per 10 minutes
  (``Access Denied``) unless ``token_limit`` is off; a bad grant is HTTP 200 ``invalid_code``;
- ``POST /crm/v8/coql``: the subset of COQL the client sends, criteria grouped in pairs as Zoho demands;
- ``PUT /crm/v8/Deals`` and ``POST /crm/v8/Notes`` with per-record results (200/201/207/400);
- ``GET /crm/v8/Deals/{id}/Notes`` paged, ``GET /crm/v8/settings/fields?module=Deals``;
- every error in Zoho's envelope ``{"code", "details", "message", "status": "error"}``.

Tests queue faults with :meth:`ZohoSim.inject` and read ``requests`` (method, path, JSON body or None).
"""

from __future__ import annotations

import copy
import itertools
import json
import operator
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx

__all__ = ["ZohoSim"]

TOKEN_LIFETIME = timedelta(hours=1)
TOKEN_WINDOW = timedelta(minutes=10)
TOKENS_PER_WINDOW = 10
ACCESS_DENIED = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}
SIM_USER = {"name": "Sim Integration", "id": "5725767000000411001"}
_TEXT_TYPES = frozenset({"text", "textarea", "picklist", "email", "phone", "website", "autonumber"})
_DEFAULT_FIELDS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("Owner", "ownerlookup", "Deal Owner", {}),
    ("Deal_Name", "text", "Deal Name", {"length": 120}),
    ("Account_Name", "lookup", "Account Name", {"lookup": {"module": {"api_name": "Accounts"}}}),
    ("Contact_Name", "lookup", "Contact Name", {"lookup": {"module": {"api_name": "Contacts"}}}),
    ("Amount", "currency", "Amount", {}),
    ("Closing_Date", "date", "Closing Date", {}),
    ("Stage", "picklist", "Stage", {}),
    ("Probability", "integer", "Probability (%)", {}),
    ("Type", "picklist", "Type", {}),
    ("Lead_Source", "picklist", "Lead Source", {}),
    ("Next_Step", "text", "Next Step", {"length": 100}),
    ("Pipeline", "picklist", "Pipeline", {}),
    ("Description", "textarea", "Description", {"length": 32000}),
    ("Created_Time", "datetime", "Created Time", {"read_only": True}),
    ("Modified_Time", "datetime", "Modified Time", {"read_only": True}),
    ("Send_to_SI", "boolean", "Send to SI", {"custom_field": True}),
    ("SI_Project_ID", "text", "SI Project ID", {"custom_field": True, "length": 255}),
    ("SI_Sync_Status", "text", "SI Sync Status", {"custom_field": True, "length": 255}),
    ("Labor_Hours", "double", "Labor Hours", {"custom_field": True}),
    ("Revision_Number", "text", "Revision Number", {"custom_field": True, "length": 255}),
    ("CO_Number", "text", "CO Number", {"custom_field": True, "length": 255}),
    ("Progress_Status", "picklist", "Progress Status", {"custom_field": True}),
    ("SI_Custom_1", "text", "SI Custom 1", {"custom_field": True, "length": 255}),
]


def default_fields_meta() -> list[dict[str, Any]]:
    """The Deals field catalogue the simulator starts with (standard fields plus our custom ones)."""
    meta = []
    for n, (api_name, data_type, label, extra) in enumerate(_DEFAULT_FIELDS):
        entry = {
            "api_name": api_name,
            "data_type": data_type,
            "field_label": label,
            "id": str(5725767000000002000 + n),
        }
        entry |= {"custom_field": False, "read_only": False} | extra
        meta.append(entry)
    return meta


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


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


# ---- COQL ---------------------------------------------------------------------------------------------


class CoqlError(Exception):
    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class _Atom:
    field: str
    op: str  # = != > >= < <= "is null" "is not null" "in" "not in"
    value: Any


@dataclass(frozen=True)
class _Pair:
    op: str  # and | or
    left: _Atom | _Pair
    right: _Atom | _Pair


@dataclass(frozen=True)
class _Query:
    fields: list[str]
    module: str
    where: _Atom | _Pair | None
    order_by: str
    descending: bool
    limit: int
    offset: int


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)(?![\w.$])|(?P<op>>=|<=|!=|=|>|<|\(|\)|,)"
    r"|(?P<word>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class _Parser:
    """``select f, ... from M [where C] [order by f [asc|desc]] [limit N[, M]] [offset M]``."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while text[pos:].strip():
            match = _TOKEN.match(text, pos)
            if match is None or match.lastgroup is None:
                raise CoqlError(
                    "SYNTAX_ERROR", "error at or near the given position", near=text[pos:].strip()[:20]
                )
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            pos = match.end()
        self.pos = 0

    def peek_word(self, *words: str) -> bool:
        if self.pos >= len(self.tokens):
            return False
        kind, value = self.tokens[self.pos]
        return kind == "word" and value.lower() in words

    def peek_op(self, op: str) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos] == ("op", op)

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        if self.pos >= len(self.tokens):
            raise CoqlError("SYNTAX_ERROR", "the query ended too early", near="end of query")
        got_kind, got = self.tokens[self.pos]
        if (kind and got_kind != kind) or (value and got.lower() != value):
            raise CoqlError("SYNTAX_ERROR", f"error at or near '{got}'", near=got)
        self.pos += 1
        return got

    def query(self) -> _Query:
        self.take("word", "select")
        fields = [self.take("word")]
        while self.peek_op(","):
            self.take()
            fields.append(self.take("word"))
        self.take("word", "from")
        module = self.take("word")
        where = None
        if self.peek_word("where"):
            self.take()
            where = self.condition()
        order_by, descending, limit, offset = "id", False, 200, 0
        if self.peek_word("order"):
            self.take()
            self.take("word", "by")
            order_by = self.take("word")
            if self.peek_word("asc", "desc"):
                descending = self.take().lower() == "desc"
        if self.peek_word("limit"):
            self.take()
            limit = self.integer()
            if self.peek_op(","):
                self.take()
                offset, limit = limit, self.integer()
        if self.peek_word("offset"):
            self.take()
            offset = self.integer()
        if self.pos < len(self.tokens):
            raise CoqlError(
                "SYNTAX_ERROR",
                f"error at or near '{self.tokens[self.pos][1]}'",
                near=self.tokens[self.pos][1],
            )
        return _Query(fields, module, where, order_by, descending, limit, offset)

    def integer(self) -> int:
        text = self.take("num")
        if not text.isdigit():
            raise CoqlError("INVALID_QUERY", "limit given seems to be invalid", limit=text)
        return int(text)

    def condition(self) -> _Atom | _Pair:
        left = self.primary()
        if not self.peek_word("and", "or"):
            return left
        op = self.take().lower()
        result = _Pair(op, left, self.primary())
        if self.peek_word("and", "or"):
            raise CoqlError(
                "SYNTAX_ERROR", "more than two criteria must be grouped in brackets", near=self.take()
            )
        return result

    def primary(self) -> _Atom | _Pair:
        if self.peek_op("("):
            self.take()
            inner = self.condition()
            self.take("op", ")")
            return inner
        name = self.take("word")
        if self.peek_word("is"):
            self.take()
            negate = self.peek_word("not")
            if negate:
                self.take()
            self.take("word", "null")
            return _Atom(name, "is not null" if negate else "is null", None)
        negate = self.peek_word("not")
        if negate:
            self.take()
        if self.peek_word("in"):
            self.take()
            self.take("op", "(")
            values = [self.value()]
            while self.peek_op(","):
                self.take()
                values.append(self.value())
            self.take("op", ")")
            return _Atom(name, "not in" if negate else "in", values)
        op = self.take("op")
        if op not in _COMPARE:
            raise CoqlError("SYNTAX_ERROR", f"error at or near '{op}'", near=op)
        return _Atom(name, op, self.value())

    def value(self) -> Any:
        kind, text = self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")
        self.take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "word" and text.lower() == "null":
            return None
        raise CoqlError("SYNTAX_ERROR", f"error at or near '{text}'", near=text)


def _atoms(cond: _Atom | _Pair | None) -> list[_Atom]:
    if cond is None:
        return []
    if isinstance(cond, _Atom):
        return [cond]
    return _atoms(cond.left) + _atoms(cond.right)


# ---- the simulator ------------------------------------------------------------------------------------


@dataclass
class _Fault:
    method: str
    prefix: str
    kind: str
    status: int
    body: bytes | str | dict[str, Any] | None
    headers: dict[str, str]
    times: int
    before: bool


class ZohoSim:
    """Zoho accounts + CRM v8 in one object; ``handle`` is thread-safe (one lock)."""

    def __init__(
        self,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        refresh_token: str = "sim-refresh",
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.token_limit = True
        self.tokens_issued = 0
        self.fields_meta: list[dict[str, Any]] = default_fields_meta()
        self.accounts: dict[str, str] = {}
        self.deals: dict[str, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.token_requests: list[dict[str, str]] = []
        self.triggers: list[Any] = []
        self._refresh_tokens = {refresh_token}
        self._grant_codes: dict[str, str] = {}
        self._access: dict[str, datetime] = {}
        self._issued: dict[str, list[datetime]] = {}
        self._faults: list[_Fault] = []
        self._ids = itertools.count(5725767000000420001)
        self._serial = itertools.count(1)
        self._lock = threading.RLock()

    # -- test helpers ---------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _now(self) -> datetime:
        now = self.clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)

    def _new_id(self) -> str:
        return str(next(self._ids))

    def issue_grant_code(self) -> str:
        """A one-use self-client grant code; exchanging it yields a new refresh token."""
        with self._lock:
            n = next(self._serial)
            code = f"1000.simcode{n:04d}"
            self._grant_codes[code] = f"1000.sim-refresh-{n:04d}"
            return code

    def expire_tokens(self) -> None:
        """Invalidate every access token issued so far (the next API call answers 401 INVALID_TOKEN)."""
        with self._lock:
            self._access.clear()

    def add_account(self, name: str) -> str:
        with self._lock:
            account_id = self._new_id()
            self.accounts[account_id] = name
            return account_id

    def _account_ref(self, value: Any) -> dict[str, Any] | None:
        if value is None or value == "":
            return None
        if isinstance(value, Mapping):
            value = value.get("id") or value.get("name")
        text = str(value)
        if text in self.accounts:
            return {"name": self.accounts[text], "id": text}
        for account_id, name in self.accounts.items():
            if name == text:
                return {"name": name, "id": account_id}
        return {"name": text, "id": self.add_account(text)}

    def add_deal(self, **fields: Any) -> str:
        """Create a deal as a salesperson would; ``Account_Name`` may be an account name or id."""
        with self._lock:
            deal_id = self._new_id()
            stamp = _stamp(self._now())
            record: dict[str, Any] = {"id": deal_id, "Created_Time": stamp, "Modified_Time": stamp}
            record |= fields
            if "Account_Name" in fields:
                record["Account_Name"] = self._account_ref(fields["Account_Name"])
            self.deals[deal_id] = record
            return deal_id

    def edit_deal(self, deal_id: str, **fields: Any) -> None:
        """A salesperson's edit: sets fields and bumps ``Modified_Time`` (unless given)."""
        with self._lock:
            record = self.deals[deal_id]
            record["Modified_Time"] = _stamp(self._now())
            record |= fields
            if "Account_Name" in fields:
                record["Account_Name"] = self._account_ref(fields["Account_Name"])

    def deal(self, deal_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.deals[deal_id])

    def add_note(self, deal_id: str, title: str, content: str) -> str:
        with self._lock:
            return self._store_note(deal_id, title, content)

    def notes_for(self, deal_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(n) for n in self.notes if n["Parent_Id"]["id"] == deal_id]

    def inject(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int = 500,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        before: bool = True,
        kind: str = "status",
    ) -> None:
        """Queue a fault for the next ``times`` requests matching method and path prefix.

        ``kind``: ``status`` (answer ``status``/``body``/``headers``), ``timeout`` (raise httpx.ReadTimeout),
        ``reset`` (the connection drops without an answer: httpx.RemoteProtocolError in-process, a closed
        socket when served), ``malformed`` (200 with broken JSON), ``empty204``. With ``before=False`` the
        request is applied first and its answer replaced (a lost answer).
        """
        if kind not in ("status", "timeout", "reset", "malformed", "empty204"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.append(
                _Fault(method.upper(), path_prefix, kind, status, body, dict(headers or {}), times, before)
            )

    def count(self, method: str, path_prefix: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method.upper() and p.startswith(path_prefix))

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

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method == method.upper() and path.startswith(fault.prefix):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_response(fault: _Fault, request: httpx.Request) -> httpx.Response:
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

    def _meta(self) -> dict[str, dict[str, Any]]:
        return {entry["api_name"]: entry for entry in self.fields_meta}

    def _column_type(self, name: str, meta: dict[str, dict[str, Any]], clause: str) -> str:
        if name == "id":
            return "bigint"
        if name in meta:
            return str(meta[name]["data_type"])
        base, _, sub = name.partition(".")
        if base in meta and meta[base]["data_type"] == "lookup":
            if sub == "id":
                return "bigint"
            if base == "Account_Name" and sub == "Account_Name":
                return "text"
        raise CoqlError("INVALID_QUERY", "column given seems to be invalid", column_name=name, clause=clause)

    def _read(self, deal: dict[str, Any], name: str, dtype: str) -> Any:
        """A column's value for output: lookups as ``{"id"}``, unset booleans false, empty text null."""
        if name == "id":
            return deal["id"]
        base, _, sub = name.partition(".")
        if sub:
            ref = deal.get(base)
            if not isinstance(ref, Mapping):
                return None
            return ref.get("id") if sub == "id" else self.accounts.get(str(ref.get("id")), ref.get("name"))
        value = deal.get(name)
        if dtype == "boolean":
            return bool(value)
        if dtype in ("lookup", "ownerlookup"):
            return {"id": value["id"]} if isinstance(value, Mapping) and "id" in value else None
        if value == "" or value == []:
            return None
        return copy.deepcopy(value)

    @staticmethod
    def _comparable(value: Any, dtype: str) -> Any:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get("id")
        try:
            if dtype == "bigint":
                return int(value)
            if dtype == "datetime":
                return datetime.fromisoformat(str(value))
            if dtype in ("currency", "double", "integer", "percent") and not isinstance(value, bool):
                return float(value)
        except (TypeError, ValueError):
            raise CoqlError(
                "INVALID_QUERY", f"value given is not a valid {dtype}", value=str(value)
            ) from None
        return value

    def _matches(self, deal: dict[str, Any], cond: _Atom | _Pair | None, types: dict[str, str]) -> bool:
        if cond is None:
            return True
        if isinstance(cond, _Pair):
            left = self._matches(deal, cond.left, types)
            if cond.op == "and":
                return left and self._matches(deal, cond.right, types)
            return left or self._matches(deal, cond.right, types)
        dtype = types[cond.field]
        have = self._comparable(self._read(deal, cond.field, dtype), dtype)
        if cond.op == "is null":
            return have is None
        if cond.op == "is not null":
            return have is not None
        if cond.op in ("in", "not in"):
            inside = have in [self._comparable(v, dtype) for v in cond.value]
            return have is not None and inside == (cond.op == "in")
        want = self._comparable(cond.value, dtype)
        if have is None or want is None:
            return False
        try:
            return _COMPARE[cond.op](have, want)
        except TypeError:
            return False

    def _coql(self, body: Any) -> httpx.Response:
        text = body.get("select_query") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return _error(
                400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "select_query"}
            )
        try:
            query = _Parser(text).query()
            rows, more = self._run(query)
        except CoqlError as exc:
            return _error(400, exc.code, exc.message, exc.details)
        if not rows:
            return httpx.Response(204)
        return _json(200, {"data": rows, "info": {"count": len(rows), "more_records": more}})

    def _run(self, query: _Query) -> tuple[list[dict[str, Any]], bool]:
        if query.module.lower() != "deals":
            raise CoqlError("INVALID_QUERY", "invalid module given", clause="from", module=query.module)
        if len(query.fields) > 500:  # since v7 (Kaizen #183; reference, Corrections)
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=500, clause="select")
        atoms = _atoms(query.where)
        if len(atoms) > 25:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=25, clause="where")
        if query.limit < 1:
            raise CoqlError("INVALID_QUERY", "limit given seems to be invalid", limit=query.limit)
        if query.limit > 2000:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=2000, clause="limit")
        if query.offset + query.limit > 100_000:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=100_000, clause="offset")
        meta = self._meta()
        types = {name: self._column_type(name, meta, "select") for name in query.fields}
        types |= {atom.field: self._column_type(atom.field, meta, "where") for atom in atoms}
        order_type = self._column_type(query.order_by, meta, "order by")
        matched = [deal for deal in self.deals.values() if self._matches(deal, query.where, types)]

        def key(deal: dict[str, Any]) -> tuple[bool, Any]:
            value = self._comparable(self._read(deal, query.order_by, order_type), order_type)
            return (value is None, value if value is not None else 0)

        matched.sort(key=key, reverse=query.descending)
        page = matched[query.offset : query.offset + query.limit]
        rows = [
            {"id": deal["id"]} | {name: self._read(deal, name, types[name]) for name in query.fields}
            for deal in page
        ]
        return rows, len(matched) > query.offset + query.limit

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
        deal["Modified_Time"] = _stamp(self._now())
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

    def _store_note(self, deal_id: str, title: str, content: str) -> str:
        note_id = self._new_id()
        stamp = _stamp(self._now())
        parent: dict[str, Any] = {"module": {"api_name": "Deals", "id": "5725767000000002181"}, "id": deal_id}
        parent["name"] = self.deals[deal_id].get("Deal_Name")
        note: dict[str, Any] = {
            "id": note_id,
            "Note_Title": title,
            "Note_Content": content,
            "Parent_Id": parent,
        }
        note |= {
            "Created_Time": stamp,
            "Modified_Time": stamp,
            "Created_By": SIM_USER,
            "Modified_By": SIM_USER,
        }
        self.notes.append(note)
        return note_id

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
