"""Zoho CRM v8: our few calls (:class:`ZohoClient`); OAuth lives in :mod:`reconciler.clients.zoho_auth`.

Facts from ``shared/reference/zoho-crm-v8.md``: COQL needs criteria grouped in pairs and pages past 100,000
rows by key (the statement text comes from :mod:`reconciler.queries`); writes take at most 100 records and
answer per record in ``data[i]``; a 204 means "no rows". Every request goes through
:class:`~reconciler.clients.http.HttpClient` (retries, backoff, error translation).

The OAuth names (``ZohoAuth``, ``DATA_CENTRES``, ...) are re-exported here for existing imports.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from reconciler.clients.http import HttpClient, json_body, raise_for_status, short_error
from reconciler.clients.zoho_auth import (
    DATA_CENTRES,
    DEFAULT_SCOPE,
    SCOPE_MISMATCH,
    CachedToken,
    DataCentre,
    MemoryTokenCache,
    TokenCache,
    ZohoAuth,
    error_code,
    exchange_grant_code,
    json_or_none,
)
from reconciler.errors import CredentialsError, PermanentApiError, ProtocolError
from reconciler.logs import redactor
from reconciler.queries import COQL_MAX_ROWS, select

__all__ = [
    "DATA_CENTRES",
    "DEFAULT_SCOPE",
    "SCOPE_MISMATCH",
    "CachedToken",
    "DataCentre",
    "MemoryTokenCache",
    "NoteDraft",
    "RecordResult",
    "TokenCache",
    "ZohoAuth",
    "ZohoClient",
    "error_code",
    "exchange_grant_code",
]

WRITE_BATCH = 100  # records per PUT /Deals and POST /Notes call
NOTES_PAGE = 200
_PER_RECORD_STATUSES = frozenset({200, 201, 202, 207})


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


def _server_time(response: httpx.Response) -> float | None:
    """The answer's ``Date`` header as epoch seconds (None when absent or unreadable)."""
    value = response.headers.get("Date")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


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
        page_size: int = COQL_MAX_ROWS,
    ) -> None:
        self._http = http
        self.page_size = page_size  # rows per COQL page (Zoho's maximum; tests use less)
        self._api_url = api_url.rstrip("/") if api_url else None
        self._default_api_url = default_api_url.rstrip("/")
        self._auth = auth
        self.module = module
        self.server_time: float | None = None  # Zoho's clock (its Date header) at the last COQL answer

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
        if response.status_code == 401 and error_code(response) == SCOPE_MISMATCH:
            raise CredentialsError(
                f"Zoho refused {endpoint} with {SCOPE_MISMATCH}: the grant lacks a scope this call needs;"
                " make a new grant code with every scope the README lists, run `reconciler auth --code CODE`,"
                " and `reconciler check` names the missing one"
            )
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
        self.server_time = _server_time(response)
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
        self, fields: Sequence[str], where: str, page_size: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every row matching ``where`` (one bracketed expression), paged by id so it works past 100,000.

        The statement text comes from :func:`reconciler.queries.select` (``reconciler check`` probes the
        same text); a bad field count or page size is a ValueError before any call. A read that ends
        early (a 204, or a short page, after Zoho announced more records) raises: it is never complete.
        """
        page_size = page_size or self.page_size
        query = select(self.module, fields, where, limit=page_size)
        first = True
        while True:
            rows, more = self.coql(query)
            if not first and not rows:
                # Zoho announced more records, then answered 204: the read ended early.
                raise ProtocolError("zoho.coql", "no records after Zoho announced more (a read cut short)")
            if more and len(rows) < page_size:
                raise ProtocolError(
                    "zoho.coql", f"a page of {len(rows)} rows while Zoho announced more (a read cut short)"
                )
            yield from rows
            if not rows or not more:
                return
            first = False
            query = select(self.module, fields, where, limit=page_size, after_id=str(rows[-1]["id"]))

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
            body = json_or_none(response)
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
