"""Health pings, chat alerts and the Prometheus file: informative, rate limited, and never in the way."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import logs
from reconciler.model import CycleReport
from reconciler.monitoring import Alerter, HealthPinger, MemoryState, health_ping, write_metrics

HC_URL = "https://hc-ping.example/6f1c2b1e-aaaa-bbbb-cccc-0123456789ab"
HOOK_URL = "https://hooks.chat.example/services/T000/B000/s3cr3tWebhookToken"


class Recorder:
    """An httpx transport that records requests and answers with ``status`` (or raises ``error``)."""

    def __init__(self, status: int = 200, error: Exception | None = None) -> None:
        self.status = status
        self.error = error
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status, text="OK")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))

    def texts(self) -> list[str]:
        return [json.loads(r.content)["text"] for r in self.requests]


@pytest.fixture
def log_text() -> Iterator[Callable[[], str]]:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield stream.getvalue
    logs.configure("text")


def _report(outcome: str = "ok", **changes: Any) -> CycleReport:
    base = CycleReport(
        mode="incremental",
        outcome=outcome,
        exit_code=0 if outcome == "ok" else 1,
        started_at=1000.0,
        ended_at=1002.5,
    )
    return dataclasses.replace(base, **changes)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- HealthPinger -----------------------------------------------------------------------------------


def test_start_success_and_exit_code_pings() -> None:
    """/start is a GET; a cycle that ran POSTs its summary to the URL; one that could not, to /<exit code>."""
    rec = Recorder()
    with rec.client() as http:
        pinger = HealthPinger(http, HC_URL + "/", timeout=3)
        assert pinger.start()
        assert pinger.finished(_report("ok", counts={"create.applied": 2}))
        assert pinger.finished(_report("failed", exit_code=1, message="could not read: zoho.coql: HTTP 500"))
        assert pinger.finished(_report("failed", exit_code=78, message="credentials rejected"))
        assert pinger.exited(75, "another reconciler is running")
    sent = [(r.method, str(r.url).removeprefix(HC_URL)) for r in rec.requests]
    assert sent == [("GET", "/start"), ("POST", ""), ("POST", "/1"), ("POST", "/78"), ("POST", "/75")]
    bodies = [r.content.decode() for r in rec.requests]
    assert bodies[1] == "incremental cycle ok in 2.5s: create.applied=2"
    assert "could not read: zoho.coql: HTTP 500" in bodies[2]
    assert bodies[4] == "another reconciler is running"
    assert rec.requests[0].extensions["timeout"]["read"] == 3


def test_parked_data_items_are_a_success_ping_listing_them() -> None:
    """A deal without an account is the data's problem: success ping, the parked items in its body."""
    report = _report("parked", exit_code=1, counts={"create.applied": 3, "park.parked": 1})
    suffix, body = health_ping(report, [("create:deal:9", "deal 9: field Account_Name.name is empty")])
    assert suffix == ""
    assert body.splitlines()[1:] == [
        "1 item(s) parked (data to fix, not an outage; see `reconciler status`):",
        "• create:deal:9: deal 9: field Account_Name.name is empty",
    ]


@pytest.mark.parametrize(
    ("outcome", "code", "suffix"),
    [
        ("ok", 0, ""),
        ("pending", 2, ""),
        ("parked", 1, ""),
        ("refused", 1, "/1"),
        ("failed", 1, "/1"),
        ("failed", 78, "/78"),
        ("interrupted", 143, "/log"),
    ],
)
def test_which_ping_each_outcome_sends(outcome: str, code: int, suffix: str) -> None:
    """Success unless the cycle could not do its job (its exit code); a stop only logs (/log)."""
    assert health_ping(_report(outcome, exit_code=code))[0] == suffix


def test_ping_never_raises_and_keeps_the_url_out_of_the_logs(log_text: Callable[[], str]) -> None:
    """Network errors and non-2xx answers are logged as health.ping_failed, without the (secret) URL."""
    down = Recorder(error=httpx.ConnectError(f"cannot connect to {HC_URL}"))
    with down.client() as http:
        assert HealthPinger(http, HC_URL).start() is False
    with Recorder(status=503).client() as http:
        assert HealthPinger(http, HC_URL).finished(_report("failed")) is False
    out = log_text()
    assert out.count('"event": "health.ping_failed"') == 2
    assert "6f1c2b1e" not in out


def test_ping_without_url_does_nothing() -> None:
    """No RECONCILER_HEALTHCHECK_URL: no request at all."""
    rec = Recorder()
    with rec.client() as http:
        pinger = HealthPinger(http, None)
        assert pinger.start() is False
        assert pinger.finished(_report()) is False
        assert pinger.exited(78, "bad") is False
    assert rec.requests == []


# -- Alerter: parked items ----------------------------------------------------------------------------


def test_parked_items_go_out_in_one_slack_message() -> None:
    """New parked items are listed in one JSON {"text": ...} POST with their keys and errors."""
    rec = Recorder()
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, MemoryState(), clock=Clock(), source="reconciler@office")
        alerter.parked(
            [("create:deal:1", "SI said 400: Name is required"), ("note:7:CO-2:Approved", "timeout")]
        )
    assert len(rec.requests) == 1
    request = rec.requests[0]
    assert request.method == "POST" and str(request.url) == HOOK_URL
    assert request.headers["content-type"] == "application/json"
    text = rec.texts()[0]
    assert text.startswith("reconciler@office: 2 items parked")
    assert "create:deal:1: SI said 400: Name is required" in text
    assert "note:7:CO-2:Approved: timeout" in text


def test_each_parked_item_is_announced_once_while_it_stays_parked() -> None:
    """Re-parked with a new error (a mapping edit) or reported again next cycle: no second alert."""
    rec, clock, state = Recorder(), Clock(), MemoryState()
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, state, clock=clock, min_interval=0)
        alerter.parked([("create:deal:1", "field Account_Name.name is empty")])
        alerter.parked([("create:deal:1", "field Account_Name.name is empty")])
        alerter.parked([("create:deal:1", "field Client is empty (after the mapping edit)")])
        alerter.parked([("create:deal:1", "same"), ("create:deal:2", "new one")])
    assert len(rec.requests) == 2
    assert "create:deal:2: new one" in rec.texts()[1] and "create:deal:1" not in rec.texts()[1]


def test_an_item_parked_again_after_it_cleared_is_announced_again() -> None:
    """Once an item is no longer parked it is forgotten: parking it later is news again."""
    rec, state = Recorder(), MemoryState()
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, state, clock=Clock(), min_interval=0)
        alerter.parked([("create:deal:1", "bad")])
        alerter.parked([])
        alerter.parked([("create:deal:1", "bad again")])
    assert len(rec.requests) == 2 and "bad again" in rec.texts()[1]


def test_parked_alerts_are_rate_limited_but_nothing_is_lost() -> None:
    """Items parked within min_interval of the last alert wait and go out with the next allowed one."""
    rec, clock, state = Recorder(), Clock(), MemoryState()
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, state, clock=clock, min_interval=3600)
        alerter.parked([("create:deal:1", "bad")])
        clock.now += 60
        both = [("create:deal:1", "bad"), ("create:deal:2", "worse")]
        alerter.parked(both)
        assert len(rec.requests) == 1
        clock.now += 3600
        alerter.parked(both)
        clock.now += 3600
        alerter.parked(both)
    assert len(rec.requests) == 2
    assert "1 item parked" in rec.texts()[0]
    assert "create:deal:2: worse" in rec.texts()[1]
    assert "create:deal:1" not in rec.texts()[1]


def test_a_long_parked_list_is_truncated() -> None:
    """More than 20 items: the first 20 are listed, then 'and N more'; errors are kept to one short line."""
    rec = Recorder()
    with rec.client() as http:
        items = [(f"create:deal:{i}", "line one\nline two " + "x" * 500) for i in range(25)]
        Alerter(http, HOOK_URL, MemoryState(), clock=Clock()).parked(items)
    text = rec.texts()[0]
    assert "25 items parked" in text
    assert text.count("• ") == 20
    assert text.endswith("… and 5 more")
    assert "line one line two" in text
    assert max(len(line) for line in text.splitlines()) < 260


def test_webhook_down_keeps_the_alert_for_later(log_text: Callable[[], str]) -> None:
    """A failed POST does not raise, logs alert.failed without the webhook URL, and is retried next call."""
    down = Recorder(error=httpx.ConnectError(f"no route to {HOOK_URL}"))
    state, clock = MemoryState(), Clock()
    with down.client() as http:
        Alerter(http, HOOK_URL, state, clock=clock).parked([("create:deal:1", "bad")])
    up = Recorder()
    with up.client() as http:
        Alerter(http, HOOK_URL, state, clock=clock).parked([("create:deal:1", "bad")])
    assert len(up.requests) == 1 and "create:deal:1" in up.texts()[0]
    out = log_text()
    assert '"event": "alert.failed"' in out
    assert "s3cr3tWebhookToken" not in out


# -- Alerter: failing cycles --------------------------------------------------------------------------


def test_failing_cycles_alert_at_the_threshold_then_recover_once() -> None:
    """Alert when 3 cycles in a row fail, remind at most hourly, then send one recovery message."""
    rec, clock, state = Recorder(), Clock(), MemoryState()
    failed = _report("failed", message="zoho.coql: HTTP 503: unavailable")
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, state, clock=clock, min_interval=3600, failure_threshold=3)
        alerter.cycle_result(failed)
        alerter.cycle_result(failed)
        assert rec.requests == []
        alerter.cycle_result(failed)
        assert len(rec.requests) == 1
        clock.now += 300
        alerter.cycle_result(failed)
        assert len(rec.requests) == 1
        clock.now += 3600
        alerter.cycle_result(failed)
        assert len(rec.requests) == 2
        alerter.cycle_result(_report("ok"))
        alerter.cycle_result(_report("ok"))
    texts = rec.texts()
    assert len(texts) == 3
    assert "3 cycles in a row" in texts[0] and "zoho.coql: HTTP 503" in texts[0]
    assert "5 cycles in a row" in texts[1]
    assert "recovered after 5 failing cycles" in texts[2]


def test_a_success_resets_the_streak_and_needs_no_recovery_without_an_alert() -> None:
    """Two failures, a success, two failures: never three in a row, so no alert and no recovery message."""
    rec = Recorder()
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, MemoryState(), clock=Clock())
        for outcome in ["failed", "failed", "parked", "failed", "failed", "ok"]:
            alerter.cycle_result(_report(outcome))
    assert rec.requests == []


def test_refused_plans_count_as_failing() -> None:
    """The mass-change guard refusing cycle after cycle needs a person: it alerts like failures do."""
    rec = Recorder()
    with rec.client() as http:
        alerter = Alerter(http, HOOK_URL, MemoryState(), clock=Clock(), failure_threshold=2)
        alerter.cycle_result(_report("refused", message="plan writes 900 records, limit 500"))
        alerter.cycle_result(_report("refused", message="plan writes 900 records, limit 500"))
    assert len(rec.requests) == 1 and "limit 500" in rec.texts()[0]


def test_alert_state_survives_a_restart() -> None:
    """Streak and rate limit live in the store: a new Alerter (daemon restart) continues where it left."""
    rec, clock, state = Recorder(), Clock(), MemoryState()
    with rec.client() as http:
        for _ in range(3):
            Alerter(http, HOOK_URL, state, clock=clock).cycle_result(_report("failed"))
        Alerter(http, HOOK_URL, state, clock=clock).cycle_result(_report("failed"))
        Alerter(http, HOOK_URL, state, clock=clock).cycle_result(_report("ok"))
    assert len(rec.requests) == 2
    assert "recovered after 4 failing cycles" in rec.texts()[1]


class BrokenState:
    def get_state(self, key: str) -> str | None:
        raise OSError("database is locked")

    def set_state(self, key: str, value: str) -> None:
        raise OSError("database is locked")


def test_alerter_never_raises(log_text: Callable[[], str]) -> None:
    """A broken state store is logged as alert.failed; the cycle is unaffected."""
    with Recorder().client() as http:
        alerter = Alerter(http, HOOK_URL, BrokenState(), clock=Clock())
        alerter.parked([("k", "e")])
        alerter.cycle_result(_report("failed"))
    assert log_text().count('"event": "alert.failed"') == 2


def test_no_url_no_alerts() -> None:
    """Without RECONCILER_NOTIFY_URL nothing is sent and no state is written."""
    rec, state = Recorder(), MemoryState()
    with rec.client() as http:
        alerter = Alerter(http, None, state)
        alerter.parked([("k", "e")])
        alerter.cycle_result(_report("failed"))
    assert rec.requests == [] and state.values == {}


# -- Prometheus textfile ----------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def _parse(
    text: str,
) -> tuple[dict[str, tuple[str, str]], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """A small parser for the text exposition format: ({name: (type, help)}, {(name, labels): value})."""
    meta: dict[str, list[str]] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            meta.setdefault(name, ["", ""])[1] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ", 1)
            meta.setdefault(name, ["", ""])[0] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels, value = match.groups()
            assert name in meta, f"{name} has no HELP/TYPE"
            pairs = frozenset(
                (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                for k, v in _LABEL.findall(labels or "")
            )
            samples[(name, pairs)] = float(value)
    return {k: (v[0], v[1]) for k, v in meta.items()}, samples


def _key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_metrics_file_has_every_family(tmp_path: Path) -> None:
    """All families with HELP/TYPE; counts from the report, cumulative totals from the store."""
    path = tmp_path / "reconciler.prom"
    report = _report(
        "parked",
        counts={"create.applied": 2, "note.parked": 1, "update_deal.applied": 5},
        api_calls={"zoho.coql": 3, "si.publish": 2},
        api_errors={"si.publish": 1},
    )
    assert write_metrics(
        path,
        report,
        parked=4,
        last_success_at=900.0,
        totals={"ok": 120, "parked": 7, "failed": 2},
        now=1000.0,
    )
    meta, samples = _parse(path.read_text())
    assert meta["reconciler_cycles_total"][0] == "counter"
    for name in [
        "reconciler_actions",
        "reconciler_api_calls",
        "reconciler_api_errors",
        "reconciler_parked_items",
        "reconciler_last_success_age_seconds",
        "reconciler_last_cycle_duration_seconds",
    ]:
        assert meta[name][0] == "gauge" and meta[name][1]
    assert samples[_key("reconciler_cycles_total", outcome="ok")] == 120
    assert samples[_key("reconciler_cycles_total", outcome="refused")] == 0
    assert samples[_key("reconciler_actions", kind="create", result="applied")] == 2
    assert samples[_key("reconciler_actions", kind="update_deal", result="applied")] == 5
    assert samples[_key("reconciler_actions", kind="note", result="parked")] == 1
    assert samples[_key("reconciler_api_calls", endpoint="zoho.coql")] == 3
    assert samples[_key("reconciler_api_errors", endpoint="si.publish")] == 1
    assert samples[_key("reconciler_parked_items")] == 4
    assert samples[_key("reconciler_last_success_age_seconds")] == 100
    assert samples[_key("reconciler_last_success_timestamp_seconds")] == 900
    assert samples[_key("reconciler_last_cycle_duration_seconds")] == 2.5


def test_metrics_file_is_replaced_atomically_and_world_readable(tmp_path: Path) -> None:
    """The file is renamed into place (new inode, no temp file left) with mode 0644 despite a 0077 umask."""
    path = tmp_path / "reconciler.prom"
    path.write_text("old\n")
    before = path.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        assert write_metrics(path, _report(), parked=0, last_success_at=None, now=1000.0)
    finally:
        os.umask(old_umask)
    assert path.stat().st_ino != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reconciler.prom"]
    _, samples = _parse(path.read_text())
    assert math.isinf(samples[_key("reconciler_last_success_age_seconds")])
    assert _key("reconciler_last_success_timestamp_seconds") not in samples


def test_metrics_labels_are_escaped(tmp_path: Path) -> None:
    """Quotes, backslashes and newlines in label values cannot break the format."""
    path = tmp_path / "m.prom"
    weird = 'zoho."coql"\\x\ny'
    assert write_metrics(path, _report(api_calls={weird: 1}), parked=0, last_success_at=None, now=0)
    _, samples = _parse(path.read_text())
    assert samples[_key("reconciler_api_calls", endpoint=weird)] == 1


def test_metrics_write_failure_returns_false(tmp_path: Path, log_text: Callable[[], str]) -> None:
    """A missing directory is logged as metrics.write_failed, never raised into the cycle."""
    path = tmp_path / "missing" / "reconciler.prom"
    assert write_metrics(path, _report(), parked=0, last_success_at=None) is False
    assert '"event": "metrics.write_failed"' in log_text()
