"""Time has an upper bound: no server can hold a call, a cycle or a stopping daemon past its budget.

A loopback server drips one byte at a time, never answers, or answers 429 with ``Retry-After: 100000``.
The assertions are on the outcome (which error, how many attempts, which waits) and on a generous bound,
never on wall-clock precision: a dripping body alone would take hours, the bound is a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.clients.http import CycleBudgetSpent, HttpClient, RetryPolicy
from reconciler.errors import StopRequested, TransientApiError
from reconciler.sim.harness import SimPair
from tests.conftest import DEFAULT_MAPPING, run_cli
from tests.faults.slow_server import SlowServer, elapsed

FAST = RetryPolicy(
    attempts=5, initial_wait=0.05, max_wait=0.05, jitter=0, call_budget=1.5, request_deadline=0.5
)
SLACK = 3.0  # generous room on top of a budget for a loaded machine; a drip alone would take hours


@pytest.fixture
def slow() -> Iterator[SlowServer]:
    with SlowServer(drip_every=0.1) as server:
        yield server


@pytest.fixture
def raw() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0)) as client:
        yield client


class FakeTime:
    """A clock that only the fake sleep moves: waits are recorded, never taken."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_a_dripping_answer_cannot_hold_a_call_past_its_budget(slow: SlowServer, raw: httpx.Client) -> None:
    """One byte every 0.1 s: each exchange ends at its deadline, the retries end at the call budget."""
    http = HttpClient(raw, policy=FAST)
    started = time.monotonic()
    with pytest.raises(TransientApiError) as caught:
        http.request("test.drip", "GET", f"{slow.url}/drip")
    assert str(caught.value) == "test.drip: timeout (the answer took longer than the request deadline)"
    assert 2 <= slow.hits["drip"] <= FAST.attempts
    assert elapsed(started) < FAST.call_budget + SLACK


def test_a_server_that_never_answers_is_bounded_by_the_deadline_not_the_30s_read_timeout(
    slow: SlowServer, raw: httpx.Client
) -> None:
    """The client's read timeout is 30 s; each read is clamped to what is left of the exchange."""
    http = HttpClient(raw, policy=FAST)
    started = time.monotonic()
    with pytest.raises(TransientApiError, match=r"^test\.silent: timeout \(ReadTimeout\)$"):
        http.request("test.silent", "GET", f"{slow.url}/silent")
    assert elapsed(started) < FAST.call_budget + SLACK


def test_a_token_request_made_by_an_auth_flow_is_bounded_too(slow: SlowServer, raw: httpx.Client) -> None:
    """Requests an httpx.Auth yields get no client timeout from httpx; the choke point gives them one."""

    class SlowTokenAuth(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
            yield httpx.Request("POST", f"{slow.url}/silent")  # a token endpoint that never answers
            yield request

    http = HttpClient(raw, policy=FAST)
    started = time.monotonic()
    with pytest.raises(TransientApiError):
        http.request("test.ok", "GET", f"{slow.url}/ok", auth=SlowTokenAuth())
    assert slow.hits["silent"] >= 1 and slow.hits["ok"] == 0
    assert elapsed(started) < FAST.call_budget + SLACK


def test_a_retry_after_beyond_the_budget_ends_the_call_at_once(slow: SlowServer, raw: httpx.Client) -> None:
    """429 with Retry-After: 100000 (27 hours): no wait is taken, one attempt, a transient error."""
    fake = FakeTime()
    http = HttpClient(raw, policy=RetryPolicy(), sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(TransientApiError, match=r"^test\.later: HTTP 429"):
        http.request("test.later", "GET", f"{slow.url}/later")
    assert fake.waits == []
    assert slow.hits["later"] == 1


def test_retry_after_is_capped_per_attempt_and_the_waits_fit_the_budget(raw: httpx.Client) -> None:
    """Retry-After: 90 with a 60 s cap and a 120 s budget: one 60 s wait, then the budget is spent."""
    calls: list[int] = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "90"})

    fake = FakeTime()
    client = httpx.Client(transport=httpx.MockTransport(busy))
    http = HttpClient(client, policy=RetryPolicy(), sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(TransientApiError):
        http.request("test.busy", "GET", "http://api.test/busy")
    assert fake.waits == [60.0]
    assert len(calls) == 2
    assert sum(fake.waits) <= RetryPolicy().call_budget


def test_a_stop_request_lets_the_call_in_flight_finish_but_cuts_off_a_dripping_one(
    slow: SlowServer, raw: httpx.Client
) -> None:
    """SIGTERM sets the stop event: a call in flight finishes; one still dripping `stop_grace` after the
    stop ends at its next chunk, not when its body would end (in hours)."""
    stop = threading.Event()
    patient = RetryPolicy(call_budget=3600, request_deadline=3600, stop_grace=0.5)
    http = HttpClient(raw, policy=patient, stop=stop)
    stop.set()
    assert http.request("test.ok", "GET", f"{slow.url}/ok").status_code == 200  # in flight: finishes
    stop.clear()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(StopRequested):
        http.request("test.drip", "GET", f"{slow.url}/drip")
    assert elapsed(started) < 0.3 + patient.stop_grace + SLACK  # well inside TimeoutStopSec=90


def test_a_spent_cycle_budget_starts_no_call_and_bounds_the_call_in_flight(
    slow: SlowServer, raw: httpx.Client
) -> None:
    """Inside cycle_deadline(s): a call in flight ends by it; once spent, no new call is sent."""
    patient = RetryPolicy(attempts=2, initial_wait=0, max_wait=0, jitter=0, call_budget=3600)
    http = HttpClient(raw, policy=patient)
    started = time.monotonic()
    with http.cycle_deadline(0.5):
        with pytest.raises(TransientApiError):
            http.request("test.drip", "GET", f"{slow.url}/drip")
        assert elapsed(started) < 0.5 + SLACK
        left = http.cycle_time_left()
        assert left is not None and left <= 0
        with pytest.raises(CycleBudgetSpent, match="not started: the cycle's time budget is spent"):
            http.request("test.ok", "GET", f"{slow.url}/ok")
    assert slow.hits["ok"] == 0
    assert http.cycle_time_left() is None
    assert http.request("test.ok", "GET", f"{slow.url}/ok").status_code == 200


def test_run_once_against_a_dripping_api_ends_within_the_call_budget(
    served_sims: SimPair, slow: SlowServer, tmp_path: Path
) -> None:
    """`reconciler run-once` with RECONCILER_CALL_BUDGET=2 and a Zoho API that drips: exit 1 in bounds."""
    served_sims.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    env = served_sims.environment(
        tmp_path / "reconciler.db",
        DEFAULT_MAPPING,
        ZOHO_API_URL=slow.url,
        RECONCILER_CALL_BUDGET="2",
    )
    started = time.monotonic()
    result = run_cli(["run-once"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "could not read: zoho.coql: timeout (the answer took longer than the request deadline)" in (
        result.stdout
    )
    assert "Traceback" not in result.stderr
    assert slow.hits["drip"] >= 1
    assert elapsed(started) < 2 + 10  # the budget, plus interpreter start-up and the token exchange
