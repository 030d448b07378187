"""Zoho OAuth: the data-centre table, the token cache protocol, and :class:`ZohoAuth` (an ``httpx.Auth``).

Facts from ``shared/reference/zoho-crm-v8.md``: the token endpoint answers a bad grant with HTTP 200 and
``{"error": "invalid_code"}``, so success means "the JSON has ``access_token``"; a token lives one hour and
a refresh token may mint at most ten of them in ten minutes, so tokens are cached (in the store, shared
between processes) and refreshed five minutes early.

Token requests are sent by httpx from inside :meth:`ZohoAuth.auth_flow`, so a throttled token answer is
raised as ``RetryableStatus`` and the choke point (:class:`~reconciler.clients.http.HttpClient`) retries
the whole logical request. :meth:`ZohoAuth.grant` asks for a token directly (``reconciler check``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from reconciler.clients.http import HttpClient, RetryableStatus, parse_retry_after, short_error
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
    "SCOPE_MISMATCH",
    "TOKEN_ENDPOINT",
    "CachedToken",
    "DataCentre",
    "MemoryTokenCache",
    "TokenCache",
    "ZohoAuth",
    "error_code",
    "exchange_grant_code",
    "json_or_none",
]

# The data centres ZOHO_DC accepts, in the order of Zoho's tables (settings take their choices from here).
DataCentre = Literal["com", "eu", "in", "com.au", "jp", "ca", "sa", "uk", "com.cn"]

# dc -> (API origin, accounts origin). Accounts servers: Zoho Accounts' multi-DC table
# (zoho.com/accounts/protocol/oauth/multi-dc.html: US, EU, IN, AU, JP, CA, SA, UK) and, for China, Zoho CRM's
# (zoho.com/crm/developer/docs/api/v8/multi-dc.html). API domains: Zoho's SDK data-centre classes and Bigin's
# multi-DC table; no Zoho page prints the UK API domain, so www.zohoapis.uk follows the pattern every other
# centre keeps (the token's api_domain, when Zoho sends one, wins over this default anyway).
DATA_CENTRES: dict[DataCentre, tuple[str, str]] = {
    "com": ("https://www.zohoapis.com", "https://accounts.zoho.com"),
    "eu": ("https://www.zohoapis.eu", "https://accounts.zoho.eu"),
    "in": ("https://www.zohoapis.in", "https://accounts.zoho.in"),
    "com.au": ("https://www.zohoapis.com.au", "https://accounts.zoho.com.au"),
    "jp": ("https://www.zohoapis.jp", "https://accounts.zoho.jp"),
    "ca": ("https://www.zohoapis.ca", "https://accounts.zohocloud.ca"),
    "sa": ("https://www.zohoapis.sa", "https://accounts.zoho.sa"),
    "uk": ("https://www.zohoapis.uk", "https://accounts.zoho.uk"),
    "com.cn": ("https://www.zohoapis.com.cn", "https://accounts.zoho.com.cn"),
}

DEFAULT_SCOPE = "ZohoCRM.modules.ALL,ZohoCRM.settings.fields.READ,ZohoCRM.coql.READ"
TOKEN_ENDPOINT = "zoho.token"
TOKEN_LIFETIME = 3600.0  # seconds an access token lives (Zoho: one hour)
REFRESH_EARLY = 300.0  # seconds before expiry at which a cached token is replaced
TOKEN_WINDOW = 600.0  # Zoho: at most TOKENS_PER_WINDOW new access tokens per refresh token in this window
TOKENS_PER_WINDOW = 10
SCOPE_MISMATCH = "OAUTH_SCOPE_MISMATCH"  # 401 when the grant lacks a scope (Zoho's OAS 401 examples)
_REFRESH_CODES = frozenset({"INVALID_TOKEN", "AUTHENTICATION_FAILURE"})
_ACCEPT_JSON = {"Accept": "application/json"}


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


def error_code(response: httpx.Response) -> str | None:
    """Zoho's error code in an answer (``code``, or ``error`` on the token endpoint), if it has one."""
    body = json_or_none(response)
    code = body.get("code") or body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def _token_answer(response: httpx.Response, *, rejected: str) -> dict[str, Any]:
    """The JSON of a token answer that carries ``access_token``; anything else raises.

    ``rejected`` is the one-line explanation used when Zoho answers ``invalid_code``.
    """
    status = response.status_code
    body = json_or_none(response)
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


def _lifetime(body: Mapping[str, Any]) -> float:
    """Seconds a new token lives, at most Zoho's documented hour.

    ``expires_in_sec`` wins when present: Zoho's older token answers carry it next to an ``expires_in`` in
    *milliseconds* (e.g. ``"expires_in_sec": 3600, "expires_in": 3600000`` on Zoho Writer's OAuth page),
    while current answers have ``expires_in`` in seconds. Anything missing, odd or longer than an hour is
    read as one hour, so a misread unit can never keep a dead token in the cache.
    """
    raw = body.get("expires_in_sec", body.get("expires_in"))
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return TOKEN_LIFETIME
    return seconds if 0 < seconds <= TOKEN_LIFETIME else TOKEN_LIFETIME


class ZohoAuth(httpx.Auth):
    """Adds ``Authorization: Zoho-oauthtoken ...``; gets, caches and refreshes the access token.

    ``auth_flow`` does no I/O of its own: it yields the token request to httpx. A 401 ``INVALID_TOKEN`` or
    ``AUTHENTICATION_FAILURE`` triggers one forced refresh and one resend; a second 401 is returned as is.

    The constructor takes every part of the grant as a keyword (accounts URL, client, refresh token or SOID,
    scope, cache, clock): eight on purpose, one per setting, so no caller can swap two of them.
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
        """Eight keywords on purpose, one per part of the grant (see the class docstring)."""
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
        body = json_or_none(response)
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
        response = yield httpx.Request("POST", self.token_url, data=self._token_form(), headers=_ACCEPT_JSON)
        return self._accept(response, now)

    def grant(self, http: HttpClient) -> str:
        """Ask Zoho for a new access token now, through ``http``, and cache it.

        ``reconciler check`` probes the grant this way, whatever the cache holds.
        """
        now = self._clock()
        response = http.request(
            TOKEN_ENDPOINT, "POST", self.token_url, data=self._token_form(), headers=_ACCEPT_JSON
        )
        return self._accept(response, now)

    @property
    def token_url(self) -> str:
        return f"{self._accounts_url}/oauth/v2/token"

    def _accept(self, response: httpx.Response, now: float) -> str:
        """Read a token answer (raising for anything but a token) and cache the token."""
        body = _token_answer(response, rejected=self._rejected_message())
        access_token: str = body["access_token"]
        redactor.add(access_token)
        lifetime = _lifetime(body)
        api_domain = body.get("api_domain")
        self._cache.note_token_issued(self.cache_key, now)
        self._cache.save_token(
            self.cache_key,
            CachedToken(access_token, now + lifetime, api_domain if isinstance(api_domain, str) else None),
        )
        event("zoho.token.issued", "INFO", grant=self.grant_type, expires_in=lifetime)
        return access_token

    def _token_form(self) -> dict[str, str]:
        form = {"client_id": self._client_id, "client_secret": self._client_secret}
        if self._refresh_token:
            form |= {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        else:
            form |= {
                "grant_type": "client_credentials",
                "soid": f"ZohoCRM.{self._soid}",
                "scope": self._scope,
            }
        return form

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
