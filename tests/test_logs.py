"""Logging: one JSON object per line with an event name, and secrets redacted at the sink in both formats."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest
from loguru import logger

from reconciler import logs

CLIENT_SECRET = "9f8e7d6c5b4a39281706f5e4d3c2b1a0aa55"
REFRESH_TOKEN = "1000.3c9a7e0d1f2b4c6a8e0d1f2b4c6a8e0d.1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d"
SI_KEY = "SIkey-7Qx2Lm9Pz4Rt8Vw1"
ACCESS_TOKEN = "1000.ffeeddccbbaa00998877665544332211.00112233445566778899aabbccddeeff"
ALL_SECRETS = [CLIENT_SECRET, REFRESH_TOKEN, SI_KEY, ACCESS_TOKEN]


@pytest.fixture(params=["text", "json"])
def capture(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Configure the sink in each format with the settings' secrets; yield a reader of the output."""
    stream = io.StringIO()
    logs.configure(request.param, stream=stream, secrets=[CLIENT_SECRET, REFRESH_TOKEN, SI_KEY, None])
    yield stream.getvalue
    logs.configure("text")


def _assert_clean(out: str) -> None:
    for secret in ALL_SECRETS:
        assert secret not in out
        assert secret[:12] not in out
    assert "***" in out


def test_json_format_is_one_object_per_line_with_the_event_name() -> None:
    """Each record is one line holding a JSON object with time, level, event, message and the context."""
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    try:
        logs.event("cycle.started", mode="full", deals=3)
        logs.event("action.applied", "WARNING", key="create:deal:1", detail="multi\nline")
    finally:
        logs.configure("text")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "cycle.started" and first["level"] == "INFO"
    assert first["mode"] == "full" and first["deals"] == 3
    assert {"time", "message"} <= first.keys()
    assert second["event"] == "action.applied" and second["level"] == "WARNING"
    assert second["detail"] == "multi\nline"


def test_text_format_is_one_line_with_event_and_context() -> None:
    """Text lines carry the event name and key=value context; values with spaces are quoted."""
    stream = io.StringIO()
    logs.configure("text", stream=stream)
    try:
        logs.event("cycle.finished", outcome="ok", summary="no changes")
    finally:
        logs.configure("text")
    (line,) = stream.getvalue().splitlines()
    assert "INFO" in line and "cycle.finished" in line
    assert "outcome=ok" in line and 'summary="no changes"' in line


def test_registered_secrets_are_redacted_in_messages_and_context(capture: Callable[[], str]) -> None:
    """Secrets given to configure(secrets=...) never appear, whether in context values or nested data."""
    logs.event("settings.loaded", client_secret=CLIENT_SECRET, note=f"refresh={REFRESH_TOKEN} key {SI_KEY}")
    logs.event("http.request", data={"form": {"refresh_token": REFRESH_TOKEN}, "key": [SI_KEY]})
    logger.info(f"a careless f-string with {CLIENT_SECRET}")
    _assert_clean(capture())


def test_tokens_added_later_are_redacted(capture: Callable[[], str]) -> None:
    """An access token registered with the redactor after configure() is redacted from then on."""
    logs.redactor.add(ACCESS_TOKEN)
    logs.event("auth.token_refreshed", token=ACCESS_TOKEN, expires_in=3600)
    _assert_clean(capture())


def test_header_strings_are_redacted_even_for_unknown_values(capture: Callable[[], str]) -> None:
    """Authorization: Zoho-oauthtoken ... and X-DTSI-ApiKey: ... are masked even if never registered."""
    unknown_token = "1000.0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"
    unknown_key = "neverRegisteredKey42"
    logs.event("http.debug", header=f"Authorization: Zoho-oauthtoken {unknown_token}")
    logs.event(
        "http.debug",
        headers={"Authorization": f"Zoho-oauthtoken {unknown_token}", "X-DTSI-ApiKey": unknown_key},
    )
    logs.event("http.debug", raw=f"X-DTSI-ApiKey: {unknown_key}\r\nAccept: application/json")
    logs.event("http.debug", header=f"authorization=Bearer {unknown_token}")
    out = capture()
    assert unknown_token not in out and unknown_token[:20] not in out
    assert unknown_key not in out
    assert "application/json" in out  # only the credential is masked


def test_exception_messages_are_redacted(capture: Callable[[], str]) -> None:
    """Secrets inside exception messages, logged as context or as the record's exception, are masked."""
    logs.redactor.add(ACCESS_TOKEN)
    try:
        raise RuntimeError(f"request failed with Authorization: Zoho-oauthtoken {ACCESS_TOKEN} key={SI_KEY}")
    except RuntimeError as exc:
        logs.event("cycle.crashed", "ERROR", error=repr(exc), text=str(exc))
        logger.opt(exception=exc).error("crashed")
    out = capture()
    _assert_clean(out)
    assert "RuntimeError" in out


def test_exception_is_shown_in_text_format_too() -> None:
    """A record's exception is rendered in text mode as well (it used to be dropped)."""
    stream = io.StringIO()
    logs.configure("text", stream=stream)
    try:
        try:
            raise ValueError("the detail people need")
        except ValueError as exc:
            logger.opt(exception=exc).error("crashed")
    finally:
        logs.configure("text")
    assert "the detail people need" in stream.getvalue()


@pytest.mark.parametrize("secret", ['pa"ss\\word-42', "pässwörd-42", "it's\\\"tricky"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_with_escaped_characters_are_redacted(fmt: str, secret: str) -> None:
    """Quotes, backslashes and non-ASCII are escaped by JSON/repr rendering; the secret is still masked."""
    stream = io.StringIO()
    logs.configure(fmt, stream=stream, secrets=[secret])
    try:
        logs.event("x", value=secret, spaced=f"has {secret} inside", nested={"v": secret})
        try:
            raise ValueError(f"bad {secret}")
        except ValueError as exc:
            logs.event("y", error=repr(exc))
            logger.opt(exception=exc).error("z")
    finally:
        logs.configure("text")
    out = stream.getvalue()
    assert out.count("***") >= 5
    for spelling in {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}:
        assert spelling not in out
    assert secret[-5:] not in out  # no tail of it survives in any escaping


def test_journal_lines_carry_their_priority_and_no_timestamp(tmp_path) -> None:
    """With $JOURNAL_STREAM naming our stream: `<3>`/`<4>`/`<6>`/`<7>` prefixes, no second time."""
    import os
    import re

    with (tmp_path / "stderr").open("w+") as stream:
        info = os.fstat(stream.fileno())
        os.environ["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
        try:
            logs.configure("text", stream=stream, level="DEBUG")
            logs.event("cycle.started", mode="full")
            logs.event("action.applied", "DEBUG", key="k")
            logs.event("action.parked", "WARNING", key="k")
            logs.event("cycle.failed", "ERROR", error="down")
        finally:
            del os.environ["JOURNAL_STREAM"]
            logs.configure("text")
        stream.seek(0)
        lines = stream.read().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<7>", "<4>", "<3>"]
    assert lines[0] == "<6>INFO    cycle.started mode=full"
    assert not any(re.search(r"\d{4}-\d\d-\d\d", line) for line in lines)


def test_journal_stream_of_another_file_is_ignored(tmp_path) -> None:
    """An inherited $JOURNAL_STREAM that names a different file (output redirected): plain lines."""
    stream = io.StringIO()
    assert logs.journal_stream(stream, {"JOURNAL_STREAM": "8:12345"}) is False
    with (tmp_path / "other").open("w") as other:
        assert logs.journal_stream(other, {"JOURNAL_STREAM": "8:12345"}) is False


def test_times_are_utc_with_their_offset_in_both_formats() -> None:
    """One time zone everywhere: UTC, written with its +00:00 offset, in text and JSON."""
    import re

    for fmt in ("text", "json"):
        stream = io.StringIO()
        logs.configure(fmt, stream=stream)
        try:
            logs.event("cycle.started")
        finally:
            logs.configure("text")
        assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stream.getvalue()), fmt
