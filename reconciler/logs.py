"""Logging: loguru to stderr, text for people or JSON for machines, secrets redacted at the sink.

Every log line is an *event* with a stable dotted name (``cycle.started``, ``action.applied``,
``http.retry`` ...) and key/value context. Call :func:`event`; never format secrets into messages, and
if one slips through anyway the sink's :class:`Redactor` replaces it with ``***``.

Times are UTC with their offset (``2026-03-01T09:30:00.125+00:00``) in both formats, as ``status`` shows
them. Under systemd (``$JOURNAL_STREAM`` names our stderr) each line starts with its syslog priority
(``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug) so ``journalctl -p warning`` works, and
text lines carry no time of their own: the journal stamps every line already.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC
from typing import Any, TextIO

from loguru import logger

__all__ = ["LEVELS", "Redactor", "configure", "event", "journal_stream", "redactor"]

#: The levels an operator can choose (``RECONCILER_LOG_LEVEL``, ``-v``/``-q``), most verbose first.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# loguru level -> syslog priority (sd-daemon(3) prefixes).
_PRIORITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

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


def _time(record: dict[str, Any]) -> str:
    return str(record["time"].astimezone(UTC).isoformat(timespec="milliseconds"))


def _text_line(record: dict[str, Any], *, stamp: bool = True) -> str:
    extra = {k: v for k, v in record["extra"].items() if k != "event"}
    context = " ".join(f"{k}={_plain(v)}" for k, v in extra.items())
    message = record["message"]
    if record["exception"] is not None:
        context += (" " if context else "") + f"exception={_plain(repr(record['exception'].value))}"
    line = f"{record['level'].name:<7} {message}" + (f" {context}" if context else "")
    return f"{_time(record)} {line}" if stamp else line


def _json_line(record: dict[str, Any]) -> str:
    payload: dict[str, Any] = {
        "time": _time(record),
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
    return json.dumps(text) if (not text or any(c.isspace() for c in text)) else text


def journal_stream(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is connected to journald: ``$JOURNAL_STREAM`` (``device:inode``) names it.

    systemd sets the variable for a service whose stderr goes to the journal; comparing it with the
    stream's own device and inode (as sd_journal_stream_fd(3) advises) ignores a copy inherited by a
    command whose output was redirected elsewhere.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


def configure(
    fmt: str = "text",
    *,
    stream: TextIO | None = None,
    level: str = "INFO",
    secrets: Iterable[str | None] = (),
    journal: bool | None = None,
) -> None:
    """(Re)configure the one sink: ``fmt`` is ``text`` or ``json``; secrets are added to the redactor.

    ``journal`` (default: :func:`journal_stream` of the stream) prefixes each line with its priority and
    drops the text format's time, which the journal records itself.
    """
    redactor.add(*secrets)
    out = stream if stream is not None else sys.stderr
    journal = journal_stream(out) if journal is None else journal

    def render(record: dict[str, Any]) -> str:
        line = _json_line(record) if fmt == "json" else _text_line(record, stamp=not journal)
        return f"<{_PRIORITY.get(record['level'].name, 6)}>{line}" if journal else line

    def sink(message: Any) -> None:
        out.write(redactor(render(message.record)) + "\n")
        out.flush()

    logger.remove()
    logger.add(sink, level=level, format="{message}", backtrace=False, diagnose=False)


def event(name: str, level: str = "INFO", /, **context: Any) -> None:
    """Log the event ``name`` with key/value ``context`` (values are rendered with ``str``)."""
    logger.bind(event=name, **context).log(level, name)
