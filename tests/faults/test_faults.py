"""Fault injection (issue #5): every fault ends one of two ways, and neither loses or repeats a write.

Either the cycle converges despite the fault (the choke point retried it), or the cycle fails with a
message naming the call (exit 1) and the next clean cycle converges. In both cases the scripted flow below
(three deals become SI projects, SI edits flow back, a change order gets its notes, a close date goes to
SI) ends in the same SI projects, deal fields and notes as an uninterrupted run of the same flow.

Retries use the production policy's shape (3 attempts, waits doubling from 1 s, no jitter) with a
recording ``sleep``: the waits are asserted, never slept.
"""

from __future__ import annotations

import io
import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import logs
from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.si import SiClient
from reconciler.clients.zoho import ZohoAuth, ZohoClient
from reconciler.context import Context
from reconciler.mapping import load_mapping
from reconciler.model import CycleReport
from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from reconciler.sim.zoho import ACCESS_DENIED
from reconciler.store import Store
from tests.conftest import DEFAULT_MAPPING, TWO_WAY_MAPPING, cycle, run_cli

POLICY = RetryPolicy(attempts=3, initial_wait=1.0, max_wait=60.0, jitter=0.0, max_retry_after=300.0)
MAX_FOLLOWUPS = 4
CREATE, IMPORTED, SYNC, NOTES = range(4)  # the flow's cycles, in order
VOLATILE = {  # SI's own timestamps and numbering: differ between any two runs
    "CreatedOn",
    "UpdatedOn",
    "PublishedOn",
    "PublishedOnUnixTimeMs",
    "ImportedOn",
    "ClientId",
    "Number",
    "COCreatedOn",
    "COAcceptedOn",
    "CORejectedOn",
}


# ---- wiring -------------------------------------------------------------------------------------------


@dataclass
class Rig:
    """One reconciler (context and store) on one pair of simulators, with the retry waits it asked for."""

    pair: SimPair
    ctx: Context
    waits: list[float]


def _build(pair: SimPair, directory: Path, transport: httpx.BaseTransport | None = None) -> Rig:
    mapping_path = directory / "mapping.toml"
    mapping_path.write_text(textwrap.dedent(TWO_WAY_MAPPING), encoding="utf-8")
    settings = pair.settings(directory / "reconciler.db", mapping_path)
    store = Store.open(settings.db_path)
    waits: list[float] = []
    if transport is None and not pair.servers:
        transport = pair.transport()
    raw = httpx.Client(transport=transport, timeout=httpx.Timeout(10.0))
    http = HttpClient(raw, policy=POLICY, sleep=waits.append)
    auth = ZohoAuth(
        accounts_url=settings.accounts_url,
        client_id=pair.zoho.client_id,
        client_secret=pair.zoho.client_secret,
        refresh_token=pair.zoho.refresh_token,
        cache=store,
    )
    zoho = ZohoClient(
        http, api_url=settings.zoho_api_url, default_api_url=settings.zoho_default_api_url, auth=auth
    )
    si = SiClient(http, settings.si_base_url, pair.si.api_key)
    ctx = Context(settings, load_mapping(mapping_path), store, zoho, si, stats=http.stats, http=raw)
    return Rig(pair, ctx, waits)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    """Build a :class:`Rig` on a pair (in-process unless it is serving); closed at teardown."""
    built: list[Rig] = []

    def build(pair: SimPair, transport: httpx.BaseTransport | None = None) -> Rig:
        made = _build(pair, tmp_path, transport)
        built.append(made)
        return made

    yield build
    for made in built:
        made.ctx.close()
        made.ctx.store.close()


@pytest.fixture
def served() -> Iterator[Callable[..., SimPair]]:
    """Start a pair on loopback, optionally with a server observer; stopped at teardown."""
    started: list[SimPair] = []

    def start(observer: Any = None) -> SimPair:
        pair = SimPair().start(observer)
        started.append(pair)
        return pair

    yield start
    for pair in started:
        pair.stop()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON log events emitted during the test."""
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    logs.configure("text")


# ---- the flow -----------------------------------------------------------------------------------------


@dataclass
class Trace:
    """The faulted cycle's report and the follow-up cycles it took to converge."""

    faulted: CycleReport | None = None
    followups: list[CycleReport] = field(default_factory=list)


def write_count(pair: SimPair) -> int:
    """Write requests received so far (DESIGN's definition of a write)."""
    zoho = pair.zoho.count("PUT", "/crm/v8/Deals") + pair.zoho.count("POST", "/crm/v8/Notes")
    si = pair.si.count("POST", "/Publish") + pair.si.count("PUT", "/Subscribe/Projects/MarkAsImported")
    return zoho + si


def run_flow(made: Rig, *, step: int | None = None, inject: Callable[[SimPair], None] | None = None) -> Trace:
    """The scripted flow; at cycle ``step`` the fault is injected and cycles rerun until one exits 0."""
    pair, ctx = made.pair, made.ctx
    trace = Trace()
    deals = [
        pair.zoho.add_deal(
            Deal_Name=f"Deal {n}",
            Account_Name=f"Client {n}",
            Send_to_SI=True,
            Amount=100 * (n + 1),
            Closing_Date=f"2025-01-1{n}",
        )
        for n in range(3)
    ]
    guids = [project_guid(deal) for deal in deals]

    def run(k: int) -> None:
        if k != step:
            report = cycle(ctx)
            assert report.exit_code == 0, f"clean cycle {k}: {report.summary()}"
            return
        assert inject is not None
        inject(pair)
        report = trace.faulted = cycle(ctx)
        while report.exit_code != 0 and len(trace.followups) < MAX_FOLLOWUPS:
            report = cycle(ctx)
            trace.followups.append(report)

    run(CREATE)
    pair.si.import_pending()
    run(IMPORTED)
    pair.si.edit_project(guids[0], Price=1234.5, Hours=12, Progress="Approved")
    pair.si.add_change_order(guids[1], 1, "Extra speakers", price=500)
    pair.zoho.edit_deal(deals[2], Closing_Date="2025-03-01")
    run(SYNC)
    pair.si.set_change_order_status(guids[1], 1, "Approved")
    pair.si.import_pending()
    run(NOTES)
    for _ in range(2):  # SI imports our update and exports it; its echo must not write anything
        assert cycle(ctx).exit_code == 0
        pair.si.import_pending()
    before = write_count(pair)
    assert cycle(ctx).exit_code == 0
    assert write_count(pair) == before, "the flow did not settle: an idle cycle still wrote"
    return trace


def final_state(pair: SimPair) -> dict[str, Any]:
    """SI projects and change orders, deal fields and notes, without timestamps and generated ids."""
    deals = {
        deal_id: {k: v for k, v in deal.items() if k not in ("Created_Time", "Modified_Time")}
        for deal_id, deal in pair.zoho.deals.items()
    }
    notes = sorted((n["Parent_Id"]["id"], n["Note_Title"], n["Note_Content"]) for n in pair.zoho.notes)
    projects = {
        pid: {k: v for k, v in project.items() if k not in VOLATILE}
        for pid, project in pair.si.projects.items()
    }
    orders = {
        pid: {co: {k: v for k, v in order.items() if k not in VOLATILE} for co, order in by_co.items()}
        for pid, by_co in pair.si.change_orders.items()
    }
    return {"deals": deals, "notes": notes, "projects": projects, "change_orders": orders}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The end state of the flow without any fault."""
    made = _build(SimPair(), tmp_path_factory.mktemp("baseline"))
    try:
        run_flow(made)
        state = final_state(made.pair)
    finally:
        made.ctx.close()
        made.ctx.store.close()
    assert len(state["notes"]) == 2 and len(state["projects"]) == 3
    return state


def assert_nothing_lost_or_repeated(made: Rig, baseline: dict[str, Any]) -> None:
    """The end state equals the uninterrupted run's; each project was published once; nothing parked."""
    assert final_state(made.pair) == baseline
    publishes = [m for m in made.pair.si.publish_messages if m.type_id == 11]
    assert len(publishes) == 3
    assert [i.key for i in made.ctx.store.parked()] == []


def assert_converged_in_cycle(trace: Trace) -> None:
    assert trace.faulted is not None
    assert trace.faulted.exit_code == 0, trace.faulted.summary()
    assert trace.followups == []


def assert_failed_then_converged(trace: Trace, *names: str) -> None:
    """The faulted cycle exited 1 with a message naming the call; a later clean cycle converged."""
    assert trace.faulted is not None
    assert trace.faulted.exit_code == 1
    assert trace.faulted.outcome == "failed"
    for name in names:
        assert name in trace.faulted.message, trace.faulted.message
    assert trace.followups, "no follow-up cycle ran"
    assert trace.followups[-1].exit_code == 0, trace.followups[-1].summary()


# ---- 429 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "method", "path"),
    [("zoho", "POST", "/crm/v8/coql"), ("si", "GET", "/Subscribe/Projects")],
    ids=["zoho-coql", "si-subscribe"],
)
def test_429_with_retry_after_waits_as_told_and_converges(
    side: str, method: str, path: str, rig: Callable[..., Rig], baseline: dict[str, Any], log_lines: Any
) -> None:
    """A 429 with Retry-After: 7 makes the choke point wait exactly 7 s (twice); the cycle converges."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        getattr(pair, side).inject(method, path, status=429, headers={"Retry-After": "7"}, times=2)

    trace = run_flow(made, step=CREATE, inject=inject)
    assert_converged_in_cycle(trace)
    assert made.waits == [7.0, 7.0]
    retries = [e for e in log_lines() if e["event"] == "http.retry"]
    assert [(e["wait"], e["attempt"]) for e in retries] == [(7.0, 1), (7.0, 2)]
    assert all("429" in e["reason"] for e in retries)
    assert_nothing_lost_or_repeated(made, baseline)


def test_429_with_retry_after_over_real_http(
    served: Callable[..., SimPair], rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """The Retry-After header survives a real HTTP round trip and is honoured on a write (PUT /Deals)."""
    made = rig(served())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("PUT", "/crm/v8/Deals", status=429, headers={"Retry-After": "3"}, times=1)

    assert_converged_in_cycle(run_flow(made, step=SYNC, inject=inject))
    assert made.waits == [3.0]
    assert_nothing_lost_or_repeated(made, baseline)


def test_429_without_retry_after_backs_off_exponentially(
    rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """Without Retry-After the waits double from the policy's first wait (1 s, 2 s); the cycle converges."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("PUT", "/crm/v8/Deals", status=429, times=2)

    assert_converged_in_cycle(run_flow(made, step=CREATE, inject=inject))
    assert made.waits == [1.0, 2.0]
    assert_nothing_lost_or_repeated(made, baseline)


# ---- 5xx ----------------------------------------------------------------------------------------------

FIVE_XX = [
    (500, "si", "POST", "/Publish/Projects", CREATE, "si.publish"),
    (502, "zoho", "PUT", "/crm/v8/Deals", CREATE, "zoho.deals.update"),
    (503, "si", "PUT", "/Subscribe/Projects/MarkAsImported", IMPORTED, "si.mark_imported"),
]


@pytest.mark.parametrize(
    ("status", "side", "method", "path", "step", "label"),
    FIVE_XX,
    ids=["500-si-publish", "502-zoho-writeback", "503-si-ack"],
)
def test_5xx_within_the_retry_budget_converges_in_the_cycle(
    status: int,
    side: str,
    method: str,
    path: str,
    step: int,
    label: str,
    rig: Callable[..., Rig],
    baseline: dict[str, Any],
) -> None:
    """Two 5xx answers in a row are retried away (waits 1 s, 2 s); the cycle exits 0."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        getattr(pair, side).inject(method, path, status=status, times=2)

    assert_converged_in_cycle(run_flow(made, step=step, inject=inject))
    assert made.waits == [1.0, 2.0]
    assert_nothing_lost_or_repeated(made, baseline)


@pytest.mark.parametrize(
    ("status", "side", "method", "path", "step", "label"),
    FIVE_XX,
    ids=["500-si-publish", "502-zoho-writeback", "503-si-ack"],
)
def test_5xx_past_the_retry_budget_fails_the_cycle_and_the_next_converges(
    status: int,
    side: str,
    method: str,
    path: str,
    step: int,
    label: str,
    rig: Callable[..., Rig],
    baseline: dict[str, Any],
) -> None:
    """5xx on every attempt: exit 1 naming the call and status; the next cycle resumes without repeating."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        getattr(pair, side).inject(method, path, status=status, times=3)

    trace = run_flow(made, step=step, inject=inject)
    assert_failed_then_converged(trace, label, f"HTTP {status}")
    assert len(trace.followups) == 1
    assert_nothing_lost_or_repeated(made, baseline)


# ---- timeouts and resets ------------------------------------------------------------------------------


def test_read_timeouts_past_the_budget_fail_the_cycle_and_the_next_converges(
    rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """COQL timing out on every attempt: "could not read" naming zoho.coql; the next cycle converges."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("POST", "/crm/v8/coql", kind="timeout", times=3)

    trace = run_flow(made, step=IMPORTED, inject=inject)
    assert_failed_then_converged(trace, "could not read", "zoho.coql", "timeout")
    assert_nothing_lost_or_repeated(made, baseline)


def test_a_timeout_on_an_si_update_is_retried_in_the_cycle(
    rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """A timed-out POST /Publish/Projects/Update is resent with the same MessageId: one update, cycle ok."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        pair.si.inject("POST", "/Publish/Projects/Update", kind="timeout", times=2)

    assert_converged_in_cycle(run_flow(made, step=SYNC, inject=inject))
    updates = [m for m in made.pair.si.publish_messages if m.type_id == 12]
    assert len(updates) == 1
    assert_nothing_lost_or_repeated(made, baseline)


@pytest.mark.parametrize("kind", ["timeout", "reset"])
def test_a_note_whose_answer_was_lost_is_not_posted_twice(
    kind: str, rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """Zoho stored the note, then the answer was lost: no blind resend; the next cycle finds it, exit 0."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("POST", "/crm/v8/Notes", kind=kind, before=False)

    trace = run_flow(made, step=SYNC, inject=inject)
    assert_failed_then_converged(trace, "zoho.notes.create")
    assert made.waits == []  # a note POST is never replayed inside the choke point
    assert_nothing_lost_or_repeated(made, baseline)


def test_a_note_zoho_refused_with_a_5xx_is_kept_for_the_next_cycle(
    rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """A 503 on the note POST fails the cycle; SI's change-order message stays unacknowledged till then."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("POST", "/crm/v8/Notes", status=503)

    trace = run_flow(made, step=SYNC, inject=inject)
    assert_failed_then_converged(trace, "zoho.notes.create", "HTTP 503")
    assert_nothing_lost_or_repeated(made, baseline)


def test_a_connection_reset_is_retried_over_real_http(
    served: Callable[..., SimPair], rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """The SI server hangs up on a publish (a real dropped socket); the choke point resends, cycle exits 0."""
    made = rig(served())

    def inject(pair: SimPair) -> None:
        pair.si.inject("POST", "/Publish/Projects", kind="reset", times=1)

    assert_converged_in_cycle(run_flow(made, step=CREATE, inject=inject))
    assert made.waits == [1.0]
    assert_nothing_lost_or_repeated(made, baseline)


def test_connection_resets_past_the_budget_over_real_http(
    served: Callable[..., SimPair], rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """Zoho hangs up on every attempt of the deal update: exit 1 naming the call; the next cycle converges."""
    made = rig(served())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("PUT", "/crm/v8/Deals", kind="reset", times=3)

    trace = run_flow(made, step=SYNC, inject=inject)
    assert_failed_then_converged(trace, "zoho.deals.update", "connection error")
    assert_nothing_lost_or_repeated(made, baseline)


def test_a_reset_after_zoho_stored_the_note_over_real_http(
    served: Callable[..., SimPair], rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """Zoho applies the note POST then drops the socket: no duplicate note over real HTTP either."""
    made = rig(served())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("POST", "/crm/v8/Notes", kind="reset", before=False)

    trace = run_flow(made, step=NOTES, inject=inject)
    assert_failed_then_converged(trace, "zoho.notes.create")
    assert_nothing_lost_or_repeated(made, baseline)


# ---- malformed answers --------------------------------------------------------------------------------

MALFORMED = [
    ("zoho", "POST", "/crm/v8/coql", IMPORTED, "zoho.coql", {}),
    ("zoho", "PUT", "/crm/v8/Deals", SYNC, "zoho.deals.update", {"before": False}),
    ("si", "GET", "/Subscribe/Projects", NOTES, "si.subscribe.list", {}),
    ("si", "POST", "/Publish/Projects", CREATE, "si.publish", {}),
]


@pytest.mark.parametrize(
    ("side", "method", "path", "step", "label", "extra"),
    MALFORMED,
    ids=["zoho-coql", "zoho-deals-applied", "si-subscribe", "si-publish"],
)
def test_malformed_json_fails_the_cycle_and_the_next_converges(
    side: str,
    method: str,
    path: str,
    step: int,
    label: str,
    extra: dict[str, Any],
    rig: Callable[..., Rig],
    baseline: dict[str, Any],
) -> None:
    """A 200 with broken JSON is a protocol error named in the message (not retried); the next cycle is ok."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        getattr(pair, side).inject(method, path, kind="malformed", **extra)

    trace = run_flow(made, step=step, inject=inject)
    assert_failed_then_converged(trace, label, "malformed JSON")
    assert_nothing_lost_or_repeated(made, baseline)


EMPTY = [
    ("zoho", "PUT", "/crm/v8/Deals", CREATE, "zoho.deals.update", {"before": False}),
    ("si", "GET", "/Subscribe/Projects", IMPORTED, "si.subscribe.list", {}),
    ("si", "POST", "/Publish/Projects/Update", SYNC, "si.update", {}),
]


@pytest.mark.parametrize(
    ("side", "method", "path", "step", "label", "extra"),
    EMPTY,
    ids=["zoho-deals-applied", "si-subscribe", "si-update"],
)
def test_an_empty_204_where_a_body_was_due_fails_the_cycle_and_the_next_converges(
    side: str,
    method: str,
    path: str,
    step: int,
    label: str,
    extra: dict[str, Any],
    rig: Callable[..., Rig],
    baseline: dict[str, Any],
) -> None:
    """A 204 for a write's per-record results or for the SI list is a protocol error; the next cycle is ok."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        getattr(pair, side).inject(method, path, kind="empty204", **extra)

    trace = run_flow(made, step=step, inject=inject)
    assert_failed_then_converged(trace, label, "HTTP 204")
    assert_nothing_lost_or_repeated(made, baseline)


# ---- a lagging SI queue -------------------------------------------------------------------------------


def test_a_deal_edited_while_si_has_not_imported_keeps_its_amount(rig: Callable[..., Rig]) -> None:
    """Sales edits a synced field before SI imports the project: SI's first, empty price does not wipe it."""
    made = rig(SimPair())
    pair = made.pair
    deal = pair.zoho.add_deal(
        Deal_Name="Lagging", Account_Name="Acme", Send_to_SI=True, Amount=200, Closing_Date="2025-01-01"
    )
    assert cycle(made.ctx).exit_code == 0
    pair.zoho.edit_deal(deal, Amount=250, Closing_Date="2025-02-02")  # SI's queue has not imported yet
    assert cycle(made.ctx).exit_code == 0
    pair.si.import_pending()  # the project appears with SI's defaults: Price 0, Hours 0
    assert cycle(made.ctx).exit_code == 0
    assert pair.zoho.deal(deal)["Amount"] == 250
    assert "Labor_Hours" not in pair.zoho.deal(deal)
    assert pair.si.projects[project_guid(deal)]["CloseDate"] == "2025-02-02"


# ---- tokens -------------------------------------------------------------------------------------------


class ExpireBeforeDealUpdate:
    """Once armed, expires every Zoho access token just before the next PUT /crm/v8/Deals reaches Zoho."""

    def __init__(self) -> None:
        self.pair: SimPair | None = None
        self.armed = threading.Event()

    def arm(self, pair: SimPair) -> None:
        self.armed.set()

    def maybe_expire(self, request: httpx.Request) -> None:
        if request.method == "PUT" and request.url.path == "/crm/v8/Deals" and self.armed.is_set():
            self.armed.clear()
            assert self.pair is not None
            self.pair.zoho.expire_tokens()

    def observer(self, phase: str, n: int, request: httpx.Request) -> None:
        if phase == "received":
            self.maybe_expire(request)

    def transport(self, pair: SimPair) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.maybe_expire(request)
            return pair.handle(request)

        return httpx.MockTransport(handle)


@pytest.mark.parametrize("where", ["in-process", "served"])
def test_a_token_expiring_mid_cycle_is_refreshed_once_and_the_cycle_goes_on(
    where: str, served: Callable[..., SimPair], rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """COQL ran on a token that dies before the deal update: one 401, one refresh, one resend, exit 0."""
    expiry = ExpireBeforeDealUpdate()
    if where == "served":
        expiry.pair = served(expiry.observer)
        made = rig(expiry.pair)
    else:
        expiry.pair = SimPair()
        made = rig(expiry.pair, transport=expiry.transport(expiry.pair))
    trace = run_flow(made, step=SYNC, inject=expiry.arm)
    assert_converged_in_cycle(trace)
    assert not expiry.armed.is_set()
    zoho = made.pair.zoho
    assert zoho.tokens_issued == 2  # the first one, and exactly one refresh
    assert len(zoho.token_requests) == 2
    assert made.waits == []  # a refresh is not a retry
    assert_nothing_lost_or_repeated(made, baseline)


def test_access_denied_on_the_token_endpoint_fails_the_cycle_and_the_next_converges(
    rig: Callable[..., Rig], baseline: dict[str, Any]
) -> None:
    """Zoho's token rate limit ("Access Denied") is not hammered: one request, exit 1 naming it; next ok."""
    made = rig(SimPair())

    def inject(pair: SimPair) -> None:
        pair.zoho.inject("POST", "/oauth/v2/token", status=400, body=ACCESS_DENIED)

    trace = run_flow(made, step=CREATE, inject=inject)
    assert_failed_then_converged(trace, "zoho.token", "Access Denied")
    assert len(trace.followups) == 1
    assert made.waits == []
    assert made.pair.zoho.count("POST", "/oauth/v2/token") == 2  # the denied one and the next cycle's
    assert_nothing_lost_or_repeated(made, baseline)


def test_access_denied_via_run_once_exits_1_naming_it_and_the_next_run_converges(
    served_sims: SimPair, tmp_path: Path
) -> None:
    """`reconciler run-once` on a denied token: exit 1, "Access Denied" shown, no traceback; rerun exits 0."""
    deals = [
        served_sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True)
        for n in range(3)
    ]
    env = served_sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING)
    served_sims.zoho.inject("POST", "/oauth/v2/token", status=400, body=ACCESS_DENIED)
    first = run_cli(["run-once"], env, tmp_path)
    assert first.returncode == 1, first.stderr
    assert "Access Denied" in first.stdout
    assert "Traceback" not in first.stderr
    assert served_sims.si.count("POST", "/Publish") == 0
    second = run_cli(["run-once"], env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert len([m for m in served_sims.si.publish_messages if m.type_id == 11]) == 3
    assert all(served_sims.zoho.deal(d).get("SI_Project_ID") == project_guid(d) for d in deals)
