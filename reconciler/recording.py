"""The HTTP exchanges of ``reconciler check``, recorded, and written out with every secret masked.

:class:`RecordingTransport` wraps the real transport and keeps each request with its answer (or the
transport error that ended it), labelled with the probe that made it. ``check`` reads the vendor's answer
back from it (the error code and the host and endpoint of a failure), and ``check --record FILE`` writes
the exchanges as JSON so a support person can turn a real organisation's answers into test fixtures.

Masking is done when the file is written, by a :class:`~reconciler.logs.Redactor` that knows every
configured secret, the client id, and every token an answer carried: values are replaced with ``***``, as
are the ``Authorization`` and ``X-DTSI-ApiKey`` headers and any ``access_token``/``refresh_token``/
``client_secret`` field. Record ids, field names and values are kept: they are what a fixture needs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

from reconciler.logs import Redactor

__all__ = ["Exchange", "RecordingTransport"]

_KEPT_REQUEST_HEADERS = ("accept", "content-type", "authorization", "x-dtsi-apikey")
_KEPT_RESPONSE_HEADERS = ("content-type", "retry-after")
_TOKEN_KEYS = ("access_token", "refresh_token")


@dataclass(frozen=True)
class Exchange:
    """One request of a probe and what came back: a response, or the name of the transport error."""

    probe: str
    request: httpx.Request
    response: httpx.Response | None
    error: str | None

    @property
    def endpoint(self) -> str:
        """``METHOD scheme://host/path`` (no query string): what a failure message names."""
        url = self.request.url
        return f"{self.request.method} {url.scheme}://{url.netloc.decode()}{url.path}"

    def body(self) -> Any:
        """The answer's JSON, or its text, or None."""
        if self.response is None or not self.response.content:
            return None
        try:
            return self.response.json()
        except ValueError:
            return self.response.text


class RecordingTransport(httpx.BaseTransport):
    """Passes every request to ``inner`` and records it, labelled with the current probe."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.exchanges: list[Exchange] = []
        self.probe = ""

    @contextmanager
    def labelled(self, probe: str) -> Iterator[None]:
        """Record the requests made inside the block under ``probe``."""
        previous, self.probe = self.probe, probe
        try:
            yield
        finally:
            self.probe = previous

    def last(self, probe: str) -> Exchange | None:
        """The last exchange recorded for ``probe``."""
        return next((e for e in reversed(self.exchanges) if e.probe == probe), None)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError as exc:
            self.exchanges.append(Exchange(self.probe, request, None, type(exc).__name__))
            raise
        response.read()
        self.exchanges.append(Exchange(self.probe, request, response, None))
        return response

    def close(self) -> None:
        self.inner.close()

    # -- the file ------------------------------------------------------------------------------------------

    def write(self, path: Path, secrets: Iterable[str | None]) -> None:
        """Write the exchanges to ``path`` (mode 0600), every secret and every issued token masked."""
        masker = Redactor()
        masker.add(*secrets)
        for exchange in self.exchanges:
            body = exchange.body()
            if isinstance(body, dict):
                masker.add(*(str(body[k]) for k in _TOKEN_KEYS if isinstance(body.get(k), str)))
        document = {
            "recorded_by": "reconciler check",
            "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "note": "secrets, the client id and tokens are masked as ***; record ids and values are kept",
            "exchanges": [_as_dict(exchange) for exchange in self.exchanges],
        }
        text = masker(json.dumps(document, indent=2, ensure_ascii=False)) + "\n"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)


def _as_dict(exchange: Exchange) -> dict[str, Any]:
    request = exchange.request
    response = exchange.response
    return {
        "probe": exchange.probe,
        "request": {
            "method": request.method,
            "url": str(request.url),
            "headers": _headers(request.headers, _KEPT_REQUEST_HEADERS),
            "body": _request_body(request),
        },
        "response": None
        if response is None
        else {
            "status": response.status_code,
            "headers": _headers(response.headers, _KEPT_RESPONSE_HEADERS),
            "body": exchange.body(),
        },
        "error": exchange.error,
    }


def _headers(headers: httpx.Headers, kept: tuple[str, ...]) -> dict[str, str]:
    shown = {name: headers[name] for name in kept if name in headers}
    if "authorization" in shown:
        scheme = shown["authorization"].partition(" ")[0]
        shown["authorization"] = f"{scheme} ***"
    if "x-dtsi-apikey" in shown:
        shown["x-dtsi-apikey"] = "***"
    return shown


def _request_body(request: httpx.Request) -> Any:
    content = request.content
    if not content:
        return None
    text = content.decode("utf-8", "replace")
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = dict(parse_qsl(text))
        masked = {"client_id", "client_secret", "refresh_token", "code"}
        return {k: "***" if k in masked else v for k, v in form.items()}
    try:
        return json.loads(text)
    except ValueError:
        return text
