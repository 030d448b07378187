"""Reading an API's answer: its JSON body, its error in one line, and how long it asks us to wait.

Shared by both clients and the retry choke point (:mod:`reconciler.clients.http`, which re-exports them).
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx

from reconciler.errors import PermanentApiError, ProtocolError
from reconciler.logs import redactor

__all__ = ["json_body", "parse_retry_after", "raise_for_status", "short_error"]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def short_error(response: httpx.Response) -> str:
    """A one-line description of an error answer: the API's own code/message when it sent JSON.

    Redacted here, where it is made: it travels in exceptions to stdout and into the store (cycle
    messages, parked items), which the log sink's redaction never sees, and an API may echo a secret.
    """
    return redactor(_short_error(response))


def _short_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        text = response.text.strip().replace("\n", " ")
        return text[:200] or response.reason_phrase
    if isinstance(body, dict):
        code = body.get("code") or body.get("Code") or body.get("error") or ""
        message = body.get("message") or body.get("Message") or ""
        joined = " ".join(str(x) for x in (code, message) if x)
        return joined or json.dumps(body)[:200]
    return json.dumps(body)[:200]


def json_body(response: httpx.Response, endpoint: str) -> Any:
    """The decoded JSON of a successful answer; a malformed or empty one is a ProtocolError."""
    if response.status_code == 204 or not response.content:
        raise ProtocolError(endpoint, "empty answer where a JSON body was expected", response.status_code)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise ProtocolError(endpoint, "malformed JSON in the answer", response.status_code) from None


def raise_for_status(response: httpx.Response, endpoint: str) -> None:
    """Turn a 4xx answer into a PermanentApiError naming the API's error code."""
    if response.status_code >= 400:
        raise PermanentApiError(endpoint, short_error(response), response.status_code)
