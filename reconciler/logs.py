"""Logging: loguru to stderr, text for people or JSON for machines, secrets redacted at the sink.

Every log line is an *event* with a stable dotted name (``cycle.started``, ``action.applied``,
``http.retry`` ...) and key/value context. Call :func:`event`; never format secrets into messages, and
if one slips through anyway the sink's :class:`Redactor` replaces it with ``***``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from loguru import logger

__all__ = ["Redactor", "configure", "event", "redactor"]

_HEADER_PATTERNS = [
    # Authorization: Zoho-oauthtoken 1000.abc...   /  X-DTSI-ApiKey: abc
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(zoho-oauthtoken\s+|bearer\s+)?[^\s'\",}]+"),
    re.compile(r"(?i)(x-dtsi-apikey['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(?i)((?:access_token|refresh_token|client_secret)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}&]+"),
]


class Redactor:
    """Replaces known secret values and credential-bearing patterns with ``***``.

    Secrets are registered once at start (from the settings) and again whenever a new access token is
    obtained, so even a value that was never meant to be logged cannot reach a sink.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= 4:
                    # Sinks render values through repr and json.dumps, which escape quotes, backslashes
                    # and (ASCII mode) non-ASCII: register those spellings too, or they would pass.
                    spellings = {value, repr(value)[1:-1]}
                    for text in list(spellings):
                        spellings |= {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
                    self._secrets.update(spellings)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "***")
        for pattern in _HEADER_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + "***", text)
        return text


redactor = Redactor()


def _text_line(record: dict[str, Any]) -> str:
    extra = {k: v for k, v in record["extra"].items() if k != "event"}
    context = " ".join(f"{k}={_plain(v)}" for k, v in extra.items())
    time = record["time"].strftime("%Y-%m-%d %H:%M:%S")
    message = record["message"]
    if record["exception"] is not None:
        context += (" " if context else "") + f"exception={_plain(repr(record['exception'].value))}"
    return f"{time} {record['level'].name:<7} {message}" + (f" {context}" if context else "")


def _json_line(record: dict[str, Any]) -> str:
    payload: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "event": record["extra"].get("event", "log"),
        "message": record["message"],
    }
    payload.update({k: v for k, v in record["extra"].items() if k != "event"})
    if record["exception"] is not None:
        payload["exception"] = repr(record["exception"].value)
    return json.dumps(payload, default=str, ensure_ascii=False)


def _plain(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def configure(
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    level: str = "INFO",
    secrets: Iterable[str | None] = (),
) -> None:
    """(Re)configure the one sink: ``fmt`` is ``text`` or ``json``; secrets are added to the redactor."""
    redactor.add(*secrets)
    out = stream if stream is not None else sys.stderr
    render: Callable[[dict[str, Any]], str] = _json_line if fmt == "json" else _text_line

    def sink(message: Any) -> None:
        out.write(redactor(render(message.record)) + "\n")
        out.flush()

    logger.remove()
    logger.add(sink, level=level, format="{message}", backtrace=False, diagnose=False)


def event(name: str, level: str = "INFO", /, **context: Any) -> None:
    """Log the event ``name`` with key/value ``context`` (values are rendered with ``str``)."""
    logger.bind(event=name, **context).log(level, name)
