"""Zoho CRM v8: OAuth as an ``httpx.Auth`` (:class:`ZohoAuth`) and our few calls (:class:`ZohoClient`).

Facts come from ``shared/reference/zoho-crm-v8.md``: the token endpoint answers a bad grant with HTTP 200 and
``{"error": "invalid_code"}``, so success means "the JSON has ``access_token``"; a token lives one hour and a
refresh token may mint at most ten of them in ten minutes, so tokens are cached (in the store, shared between
processes) and refreshed five minutes early; COQL needs criteria grouped in pairs and pages past 100,000
rows by key; writes take at most 100 records and answer per record in ``data[i]``.

Every request goes through :class:`~reconciler.clients.http.HttpClient` (retries, backoff, error
translation). Token requests are sent by httpx from inside :meth:`ZohoAuth.auth_flow`, so a throttled token
answer is raised as ``RetryableStatus`` and the choke point retries the whole logical request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from reconciler.clients.http import (
    HttpClient,
    RetryableStatus,
    json_body,
    parse_retry_after,
    raise_for_status,
    short_error,
)
from reconciler.errors import (
    ConfigError,
    CredentialsError,
    PermanentApiError,
    ProtocolError,
    TransientApiError,
)
from reconciler.logs import event, redactor

__all__ = [
    "DATA_CENTRES",
    "DEFAULT_SCOPE",
    "CachedToken",
    "MemoryTokenCache",
    "NoteDraft",
    "RecordResult",
    "TokenCache",
    "ZohoAuth",
    "ZohoClient",
    "exchange_grant_code",
]

# dc -> (API origin, accounts origin); from Zoho's SDK data-centre classes (reference, section 1).
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "com": ("https://www.zohoapis.com", "https://accounts.zoho.com"),
    "eu": ("https://www.zohoapis.eu", "https://accounts.zoho.eu"),
    "in": ("https://www.zohoapis.in", "https://accounts.zoho.in"),
    "com.au": ("https://www.zohoapis.com.au", "https://accounts.zoho.com.au"),
    "jp": ("https://www.zohoapis.jp", "https://accounts.zoho.jp"),
    "ca": ("https://www.zohoapis.ca", "https://accounts.zohocloud.ca"),
    "sa": ("https://www.zohoapis.sa", "https://accounts.zoho.sa"),
    "com.cn": ("https://www.zohoapis.com.cn", "https://accounts.zoho.com.cn"),
}

DEFAULT_SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.settings.fields.READ,ZohoCRM.coql.READ"
TOKEN_ENDPOINT = "zoho.token"
REFRESH_EARLY = 300.0  # seconds before expiry at which a cached token is replaced
TOKEN_WINDOW = 600.0  # Zoho: at most TOKENS_PER_WINDOW new access tokens per refresh token in this window
TOKENS_PER_WINDOW = 10
WRITE_BATCH = 100  # records per PUT /Deals and POST /Notes call
COQL_MAX_ROWS = 2000
COQL_MAX_FIELDS = 500  # columns a COQL select may name since v7 (Kaizen #183; reference, Corrections)
NOTES_PAGE = 200
_REFRESH_CODES = frozenset({"INVALID_TOKEN", "AUTHENTICATION_FAILURE"})
_PER_RECORD_STATUSES = frozenset({200, 201, 202, 207})


@dataclass(frozen=True)
class CachedToken:
    """An access token, when it expires (epoch seconds) and the API origin Zoho issued it for."""

    access_token: str
    expires_at: float
    api_domain: str | None


class TokenCache(Protocol):
    """Where access tokens live between calls and processes (the SQLite store implements it)."""

    def load_token(self, key: str) -> CachedToken | None: ...

    def save_token(self, key: str, token: CachedToken) -> None: ...

    def note_token_issued(self, key: str, at: float) -> None: ...

    def tokens_issued_since(self, key: str, since: float) -> int: ...


class MemoryTokenCache:
    """A :class:`TokenCache` in memory: for tests and for uses without a store."""

    def __init__(self) -> None:
        self._tokens: dict[str, CachedToken] = {}
        self._issued: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def load_token(self, key: str) -> CachedToken | None:
        with self._lock:
            return self._tokens.get(key)

    def save_token(self, key: str, token: CachedToken) -> None:
        with self._lock:
            self._tokens[key] = token

    def note_token_issued(self, key: str, at: float) -> None:
        with self._lock:
            self._issued.setdefault(key, []).append(at)

    def tokens_issued_since(self, key: str, since: float) -> int:
        with self._lock:
            return sum(1 for at in self._issued.get(key, ()) if at >= since)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def _token_answer(response: httpx.Response, *, rejected: str) -> dict[str, Any]:
    """The JSON of a token answer that carries ``access_token``; anything else raises.

    ``rejected`` is the one-line explanation used when Zoho answers ``invalid_code``.
    """
    status = response.status_code
    body = _json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and error.strip().lower() == "access denied":
        raise TransientApiError(
            TOKEN_ENDPOINT, "Zoho refused a new access token (Access Denied: too many token requests)", status
        )
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RetryableStatus(TOKEN_ENDPOINT, status, short_error(response), retry_after)
    if not isinstance(body, dict):
        raise ProtocolError(TOKEN_ENDPOINT, "malformed JSON in the token answer", status)
    token = body.get("access_token")
    if isinstance(token, str) and token:
        return body
    if error == "invalid_code":
        raise CredentialsError(rejected)
    if isinstance(error, str) and error.startswith("invalid_client"):
        raise CredentialsError(
            f"Zoho rejected the client credentials ({error}): check ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET,"
            " and that ZOHO_DC / ZOHO_ACCOUNTS_URL is the data centre the self client was made in"
        )
    if isinstance(error, str) and error:
        raise PermanentApiError(TOKEN_ENDPOINT, f"token request refused: {error[:100]}", status)
    raise ProtocolError(TOKEN_ENDPOINT, "token answer without access_token", status)


def _lifetime(expires_in: Any) -> float:
    """Seconds a new token lives: ``expires_in`` when it is a positive number, else Zoho's one hour."""
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        return 3600.0
    return seconds if seconds > 0 else 3600.0


class ZohoAuth(httpx.Auth):
    """Adds ``Authorization: Zoho-oauthtoken ...``; gets, caches and refreshes the access token.

    ``auth_flow`` does no I/O of its own: it yields the token request to httpx. A 401 ``INVALID_TOKEN`` or
    ``AUTHENTICATION_FAILURE`` triggers one forced refresh and one resend; a second 401 is returned as is.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        accounts_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str | None = None,
        soid: str | None = None,
        scope: str = DEFAULT_SCOPE,
        cache: TokenCache,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not refresh_token and not soid:
            raise ConfigError(
                "ZOHO_REFRESH_TOKEN: not set (or set ZOHO_SOID for the client-credentials grant)"
            )
        self._accounts_url = accounts_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token or None
        self._soid = soid.removeprefix("ZohoCRM.") if soid else None
        self._scope = scope
        self._cache = cache
        self._clock = clock
        redactor.add(client_secret, refresh_token)
        grant = f"refresh:{refresh_token}" if refresh_token else f"soid:{self._soid}"
        digest = hashlib.sha256(f"{client_id}\0{grant}".encode()).hexdigest()[:16]
        self.cache_key = f"zoho:{digest}"

    @property
    def grant_type(self) -> str:
        return "refresh_token" if self._refresh_token else "client_credentials"

    def api_domain(self) -> str | None:
        """The API origin Zoho named with the cached token, if there is one."""
        cached = self._cache.load_token(self.cache_key)
        return cached.api_domain if cached is not None else None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = yield from self._token(stale=None)
        request.headers["Authorization"] = f"Zoho-oauthtoken {token}"
        response = yield request
        if response.status_code != 401:
            return
        body = _json_or_none(response)
        code = body.get("code") if isinstance(body, dict) else None
        if code not in _REFRESH_CODES:
            return
        event("zoho.token.rejected", "INFO", code=code)
        token = yield from self._token(stale=token)
        request.headers["Authorization"] = f"Zoho-oauthtoken {token}"
        yield request

    def _token(self, *, stale: str | None) -> Generator[httpx.Request, httpx.Response, str]:
        """A usable access token: the cached one, or a new one (``stale`` is one the API just rejected)."""
        now = self._clock()
        cached = self._cache.load_token(self.cache_key)
        if cached is not None and cached.expires_at - REFRESH_EARLY > now and cached.access_token != stale:
            redactor.add(cached.access_token)  # issued by an earlier process: redact it in this one too
            return cached.access_token
        if self._cache.tokens_issued_since(self.cache_key, now - TOKEN_WINDOW) >= TOKENS_PER_WINDOW:
            raise TransientApiError(
                TOKEN_ENDPOINT,
                "10 access tokens were issued in the last 10 minutes (Zoho's limit); waiting for the window",
            )
        response = yield self._token_request()
        body = _token_answer(response, rejected=self._rejected_message())
        access_token: str = body["access_token"]
        redactor.add(access_token)
        lifetime = _lifetime(body.get("expires_in", body.get("expires_in_sec")))
        api_domain = body.get("api_domain")
        self._cache.note_token_issued(self.cache_key, now)
        self._cache.save_token(
            self.cache_key,
            CachedToken(access_token, now + lifetime, api_domain if isinstance(api_domain, str) else None),
        )
        event("zoho.token.issued", "INFO", grant=self.grant_type, expires_in=lifetime)
        return access_token

    def _token_request(self) -> httpx.Request:
        form = {"client_id": self._client_id, "client_secret": self._client_secret}
        if self._refresh_token:
            form |= {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        else:
            form |= {
                "grant_type": "client_credentials",
                "soid": f"ZohoCRM.{self._soid}",
                "scope": self._scope,
            }
        return httpx.Request(
            "POST", f"{self._accounts_url}/oauth/v2/token", data=form, headers={"Accept": "application/json"}
        )

    def _rejected_message(self) -> str:
        if self._refresh_token:
            return (
                "Zoho rejected the refresh token (invalid_code): it is wrong, revoked or from another data"
                " centre; check ZOHO_REFRESH_TOKEN, ZOHO_CLIENT_ID / ZOHO_CLIENT_SECRET and ZOHO_DC"
            )
        return (
            "Zoho rejected the client-credentials grant (invalid_code): check ZOHO_SOID, ZOHO_CLIENT_ID /"
            " ZOHO_CLIENT_SECRET and ZOHO_DC"
        )


def exchange_grant_code(
    http: HttpClient, accounts_url: str, client_id: str, client_secret: str, code: str
) -> str:
    """Trade a self-client grant code for a refresh token (``authorization_code`` grant); returns it."""
    redactor.add(client_secret, code)
    response = http.request(
        TOKEN_ENDPOINT,
        "POST",
        f"{accounts_url.rstrip('/')}/oauth/v2/token",
        data={
            "grant_type": "authorization_code",
            "client_id": client_id,
            "client_secret": client_secret,
            "code": code,
        },
        headers={"Accept": "application/json"},
    )
    body = _token_answer(
        response,
        rejected=(
            "Zoho rejected the grant code (invalid_code): codes expire after a few minutes and work once;"
            " generate a new one, and check ZOHO_CLIENT_ID / ZOHO_CLIENT_SECRET and ZOHO_DC"
        ),
    )
    refresh_token = body.get("refresh_token")
    redactor.add(body.get("access_token"))
    if not isinstance(refresh_token, str) or not refresh_token:
        raise ProtocolError(
            TOKEN_ENDPOINT, "the grant-code answer has no refresh_token", response.status_code
        )
    redactor.add(refresh_token)
    return refresh_token


@dataclass(frozen=True)
class RecordResult:
    """One record's outcome of a write, in input order. ``id`` is the record's id (a new note's id)."""

    ok: bool
    id: str | None
    code: str
    message: str
    details: Mapping[str, Any]


@dataclass(frozen=True)
class NoteDraft:
    """A note to attach to a deal."""

    deal_id: str
    title: str
    content: str


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ZohoClient:
    """Zoho CRM v8 calls. The API origin is ``api_url``, else the token's ``api_domain``, else the default."""

    def __init__(
        self,
        http: HttpClient,
        *,
        api_url: str | None,
        default_api_url: str,
        auth: ZohoAuth | None = None,
        module: str = "Deals",
    ) -> None:
        self._http = http
        self._api_url = api_url.rstrip("/") if api_url else None
        self._default_api_url = default_api_url.rstrip("/")
        self._auth = auth
        self.module = module

    @property
    def base_url(self) -> str:
        if self._api_url:
            return self._api_url
        domain = self._auth.api_domain() if self._auth is not None else None
        return domain.rstrip("/") if domain else self._default_api_url

    def _request(self, endpoint: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._auth is not None:
            kwargs["auth"] = self._auth
        return self._http.request(endpoint, method, f"{self.base_url}/crm/v8/{path}", **kwargs)

    @staticmethod
    def _fail(response: httpx.Response, endpoint: str) -> None:
        """Raise for a 4xx: a 401 that survived a refresh is a credentials problem."""
        if response.status_code == 401:
            raise CredentialsError(
                f"Zoho rejected a fresh access token ({short_error(response)}): check that ZOHO_DC /"
                " ZOHO_API_URL is the account's data centre and that the grant has the needed scopes"
            )
        raise_for_status(response, endpoint)

    # -- reads ----------------------------------------------------------------------------------------

    def coql(self, query: str) -> tuple[list[dict[str, Any]], bool]:
        """Run one COQL query; returns its rows and whether Zoho has more (``info.more_records``)."""
        response = self._request("zoho.coql", "POST", "coql", json={"select_query": query})
        if response.status_code == 204:
            return [], False
        self._fail(response, "zoho.coql")
        body = json_body(response, "zoho.coql")
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ProtocolError("zoho.coql", "the answer has no data list", response.status_code)
        info = body.get("info")
        more = bool(info.get("more_records")) if isinstance(info, dict) else False
        return rows, more

    def iter_records(
        self, fields: Sequence[str], where: str, page_size: int = COQL_MAX_ROWS
    ) -> Iterator[dict[str, Any]]:
        """Every row matching ``where`` (one bracketed expression), paged by id so it works past 100,000."""
        columns = list(fields) if "id" in fields else ["id", *fields]
        if len(columns) > COQL_MAX_FIELDS:
            raise ValueError(f"COQL selects at most {COQL_MAX_FIELDS} fields; {len(columns)} were asked for")
        if not 1 <= page_size <= COQL_MAX_ROWS:
            raise ValueError(f"page_size must be 1..{COQL_MAX_ROWS}, not {page_size}")
        select = f"select {', '.join(columns)} from {self.module}"
        tail = f"order by id asc limit {page_size}"
        query = f"{select} where {where} {tail}"
        while True:
            rows, more = self.coql(query)
            yield from rows
            if not rows or not more or len(rows) < page_size:
                return
            last = str(rows[-1]["id"]).replace("'", "")
            query = f"{select} where ({where} and id > '{last}') {tail}"

    def deal_notes(self, deal_id: str) -> list[dict[str, Any]]:
        """All notes on one deal (title and content), every page."""
        notes: list[dict[str, Any]] = []
        page = 1
        path = f"{self.module}/{quote(deal_id, safe='')}/Notes"
        while True:
            params = {"fields": "Note_Title,Note_Content", "per_page": NOTES_PAGE, "page": page}
            response = self._request("zoho.notes.list", "GET", path, params=params)
            if response.status_code == 204:
                return notes
            self._fail(response, "zoho.notes.list")
            body = json_body(response, "zoho.notes.list")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise ProtocolError("zoho.notes.list", "the answer has no data list", response.status_code)
            notes.extend(data)
            info = body.get("info")
            if not (isinstance(info, dict) and info.get("more_records")):
                return notes
            page += 1

    def fields(self, module: str | None = None) -> list[dict[str, Any]]:
        """The field catalogue of ``module`` (default: ours): api_name, data_type, field_label, ..."""
        response = self._request(
            "zoho.fields", "GET", "settings/fields", params={"module": module or self.module}
        )
        self._fail(response, "zoho.fields")
        body = json_body(response, "zoho.fields")
        found = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(found, list):
            raise ProtocolError("zoho.fields", "the answer has no fields list", response.status_code)
        return found

    # -- writes ---------------------------------------------------------------------------------------

    def update_records(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Update records (each with ``id``), 100 a call, no workflows; one result per record, in order.

        A request-level failure raises; batches sent before it were applied (pass at most 100 records to
        know exactly what was).
        """
        results: list[RecordResult] = []
        for batch in _chunks(records, WRITE_BATCH):
            body = {"data": [dict(record) for record in batch], "trigger": []}
            response = self._request("zoho.deals.update", "PUT", self.module, json=body)
            ids = [str(record["id"]) if record.get("id") is not None else None for record in batch]
            results.extend(self._per_record(response, "zoho.deals.update", ids))
        return results

    def create_notes(self, notes: Sequence[NoteDraft]) -> list[RecordResult]:
        """Attach notes to deals, 100 a call; one result per note, in order (``id`` is the new note's)."""
        results: list[RecordResult] = []
        for batch in _chunks(notes, WRITE_BATCH):
            data = [
                {
                    "Note_Title": note.title,
                    "Note_Content": note.content,
                    "Parent_Id": {"module": {"api_name": self.module}, "id": note.deal_id},
                }
                for note in batch
            ]
            # Not idempotent: a resent POST adds the notes twice. The applier looks before it retries.
            response = self._request(
                "zoho.notes.create", "POST", "Notes", json={"data": data}, replay_safe=False
            )
            results.extend(self._per_record(response, "zoho.notes.create", [None] * len(batch)))
        return results

    def _per_record(
        self, response: httpx.Response, endpoint: str, sent_ids: Sequence[str | None]
    ) -> list[RecordResult]:
        """Read ``data[i]`` of a write answer (200/201/202/207, or 400 with data) into results."""
        status = response.status_code
        if status == 400:
            body = _json_or_none(response)
            if not (isinstance(body, dict) and isinstance(body.get("data"), list)):
                raise PermanentApiError(endpoint, short_error(response), status)
        elif status in _PER_RECORD_STATUSES:
            body = json_body(response, endpoint)
        else:
            self._fail(response, endpoint)
            raise ProtocolError(endpoint, "unexpected answer to a write", status)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != len(sent_ids):
            raise ProtocolError(endpoint, f"expected {len(sent_ids)} per-record results in data", status)
        results = []
        for item, sent_id in zip(data, sent_ids, strict=True):
            if not isinstance(item, dict):
                raise ProtocolError(endpoint, "a per-record result is not an object", status)
            details = item.get("details")
            details = details if isinstance(details, dict) else {}
            ok = item.get("status") == "success"
            record_id = sent_id if sent_id is not None else (details.get("id") if ok else None)
            results.append(
                RecordResult(
                    ok=ok,
                    id=str(record_id) if record_id is not None else None,
                    code=redactor(str(item.get("code", ""))),
                    message=redactor(str(item.get("message", ""))),  # stored and shown: may echo a token
                    details=details,
                )
            )
        return results
