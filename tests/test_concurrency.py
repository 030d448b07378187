"""Bounded concurrency for SI's per-project calls (``RECONCILER_SI_CONCURRENCY``, issue 12).

The simulators sit behind a :class:`~reconciler.sim.wire.Wire` with a delay per request, so calls really
overlap; the wire records how many were in flight at once and when each arrived.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from reconciler import keys
from reconciler.apply.book import Book
from reconciler.apply.si_writes import SiWriter
from reconciler.clients.http import HttpClient, RetryPolicy, TransientApiError
from reconciler.clients.pool import Lanes
from reconciler.context import build_context
from reconciler.cycle import CycleOptions, run_cycle
from reconciler.mapping import load_mapping
from reconciler.model import Ack
from reconciler.sim.harness import SimPair
from reconciler.sim.wire import Wire
from reconciler.store import Store
from tests.conftest import DEFAULT_MAPPING

# ---- the lanes alone ---------------------------------------------------------------------------------


def test_lanes_give_outcomes_in_the_items_order_with_at_most_width_in_flight() -> None:
    lanes = Lanes(3)
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def call(n: int) -> int:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02 if n % 2 else 0.005)  # finish out of order
        with lock:
            state["now"] -= 1
        return n * n

    try:
        done = lanes.run(list(range(12)), call)
    finally:
        lanes.close()
    assert [d.value for d in done] == [n * n for n in range(12)]
    assert 2 <= state["peak"] <= 3


def test_while_the_caller_records_an_outcome_at_most_width_minus_one_other_calls_have_started() -> None:
    """What a crash while recording item k can make the rerun repeat: item k and the width - 1 after it."""
    lanes = Lanes(4)
    started: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        with lock:
            started.append(n)
        time.sleep(0.002 * (n % 3))
        return n

    try:
        for done in lanes.each(list(range(40)), call):
            time.sleep(0.003)  # the caller's bookkeeping
            with lock:
                ahead = [n for n in started if n > done.item]
            assert len(ahead) <= 3, (done.item, ahead)
    finally:
        lanes.close()


def test_width_one_runs_in_the_callers_thread_one_after_the_other() -> None:
    seen = Lanes(1).run([1, 2, 3], lambda n: threading.current_thread())
    assert {d.value for d in seen} == {threading.current_thread()}


def test_a_stop_starts_nothing_new_and_lets_the_calls_in_flight_finish() -> None:
    lanes = Lanes(2)
    stop = threading.Event()
    finished: list[int] = []

    def call(n: int) -> int:
        if n == 1:
            stop.set()
        time.sleep(0.02)
        finished.append(n)
        return n

    try:
        done = lanes.run(list(range(10)), call, go_on=lambda: not stop.is_set())
    finally:
        lanes.close()
    started = [d.item for d in done if d.started]
    assert set(started) == set(finished)  # everything started also finished
    assert 1 in started and len(started) <= 3  # at most the two in flight, plus one already picked up
    assert all(not d.started for d in done if d.item not in started)


def test_an_unexpected_error_is_raised_after_the_calls_in_flight_and_stops_the_rest() -> None:
    lanes = Lanes(2)
    calls: list[int] = []

    def call(n: int) -> int:
        calls.append(n)
        if n == 0:
            raise RuntimeError("boom")
        time.sleep(0.01)
        return n

    try:
        with pytest.raises(RuntimeError, match="boom"):
            lanes.run(list(range(20)), call)
    finally:
        lanes.close()
    assert len(calls) < 20


def test_caught_errors_come_back_on_their_item() -> None:
    def call(n: int) -> int:
        if n == 2:
            raise KeyError(n)
        return n

    done = Lanes(4).run([1, 2, 3], call, catch=(KeyError,))
    assert [(d.value, type(d.error).__name__ if d.error else None) for d in done] == [
        (1, None),
        (None, "KeyError"),
        (3, None),
    ]


# ---- the cycle, against the simulators behind a slow wire -----------------------------------------------


def _flag(sims: SimPair, n: int) -> list[str]:
    return [
        sims.zoho.add_deal(Deal_Name=f"Deal {i}", Account_Name="Acme", Send_to_SI=True, Amount=100 * i)
        for i in range(n)
    ]


def _run(sims: SimPair, tmp_path: Any, width: int, *, policy: RetryPolicy | None = None, **opts: Any) -> Any:
    """One cycle with ``width`` SI lanes (its own store under ``tmp_path``); returns its report."""
    settings = sims.settings(
        tmp_path / f"w{width}.db",
        DEFAULT_MAPPING,
        reconciler_si_concurrency=width,
        reconciler_max_writes=10_000,
    )
    store = Store.open(settings.db_path)
    ctx = build_context(
        settings,
        load_mapping(DEFAULT_MAPPING),
        store,
        transport=sims.transport(),
        policy=policy or RetryPolicy.no_waits(),
    )
    try:
        return run_cycle(ctx, CycleOptions(**opts)).report
    finally:
        ctx.close()
        store.close()


def _si_calls(sims: SimPair) -> Counter[str]:
    return Counter(f"{r.method} {r.path.lower()}" for r in sims.si.requests)


def _slow_pair() -> SimPair:
    return SimPair(si_wire=Wire(latency=0.03))


def test_creates_confirmations_and_acks_overlap_but_never_exceed_the_width(tmp_path: Any) -> None:
    """24 creates, then the cycle that reads 24 details and acknowledges 24 messages: with 4 lanes the
    wire sees up to 4 SI requests at once, never 5; each project is created once."""
    sims = _slow_pair()
    deals = _flag(sims, 24)
    assert _run(sims, tmp_path, 4).exit_code == 0
    assert sims.si_wire.peak == 4
    assert sims.si.count("POST", "/Publish/Projects") == 24
    assert len({sims.zoho.deals[d]["SI_Project_ID"] for d in deals}) == 24

    sims.si.import_pending()
    for deal in deals:
        sims.si.edit_project(sims.zoho.deals[deal]["SI_Project_ID"], Price=777.0)
    sims.si_wire.reset()
    assert _run(sims, tmp_path, 4).exit_code == 0
    assert 2 <= sims.si_wire.peak <= 4
    assert {sims.zoho.deals[d]["Amount"] for d in deals} == {777.0}
    assert sims.si.count("PUT", "/Subscribe/Projects/MarkAsImported") >= 24


def test_the_same_calls_whatever_the_width(tmp_path: Any) -> None:
    """Concurrency changes when calls are made, not which: same requests, same end state."""
    ends = []
    for width in (1, 4):
        (tmp_path / str(width)).mkdir()
        sims = _slow_pair()
        deals = _flag(sims, 12)
        assert _run(sims, tmp_path / str(width), width).exit_code == 0
        sims.si.import_pending()
        for deal in deals[:6]:
            sims.si.edit_project(sims.zoho.deals[deal]["SI_Project_ID"], Price=55.0)
        assert _run(sims, tmp_path / str(width), width).exit_code == 0
        ends.append((_si_calls(sims), sorted(str(sims.zoho.deals[d].get("Amount")) for d in deals)))
    assert ends[0] == ends[1]


def test_a_429_pauses_every_lane_for_its_retry_after(tmp_path: Any) -> None:
    """SI answers one publish 429 with Retry-After: 1 while 4 lanes are busy: no SI request arrives in
    the second after that answer (the requests already on the wire excepted), and every deal converges."""
    sims = SimPair(si_wire=Wire(latency=0.02))
    deals = _flag(sims, 16)
    sims.si.inject("POST", "/Publish/Projects", status=429, headers={"Retry-After": "1"}, times=1)
    policy = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0, max_retry_after=5)
    assert _run(sims, tmp_path, 4, policy=policy).exit_code == 0

    exchanges = sims.si_wire.exchanges
    refused = [e for e in exchanges if e.status == 429]
    assert len(refused) == 1
    told_at = refused[0].answered
    in_flight_then = 4  # at most the other lanes' requests, already sent when the 429 came back
    during = [e for e in exchanges if told_at < e.arrived < told_at + 1.0]
    assert len(during) <= in_flight_then - 1
    assert all(e.arrived < told_at + 0.1 for e in during)  # only those already on their way
    assert sims.si_wire.peak <= 4
    assert sims.si.count("POST", "/Publish/Projects") == 17  # 16 and the one retried
    assert all(sims.zoho.deals[d].get("SI_Project_ID") for d in deals)


def test_one_projects_acknowledgements_keep_their_order(tmp_path: Any) -> None:
    """A project with three change-order states: notes in state order, and its messages acknowledged
    in the order SI published them, while other projects' acknowledgements run beside them."""
    sims = _slow_pair()
    deals = _flag(sims, 6)
    _run(sims, tmp_path, 4)
    sims.si.import_pending()
    _run(sims, tmp_path, 4)
    project = sims.zoho.deals[deals[0]]["SI_Project_ID"]
    sims.si.add_change_order(project, 1, "Speakers", status="Pending", price=10.0)
    sims.si.set_change_order_status(project, 1, "Approved")
    sims.si.set_change_order_status(project, 1, "Completed")
    for deal in deals[1:]:
        sims.si.edit_project(sims.zoho.deals[deal]["SI_Project_ID"], Price=9.0)
    published = [m.message_id for m in sims.si.export_messages if m.project_id == project and not m.imported]
    sims.si.requests.clear()
    assert _run(sims, tmp_path, 4).exit_code == 0

    acked = [
        r.query.get("messageId")
        for r in sims.si.requests
        if r.method == "PUT" and r.query.get("messageId") in published
    ]
    assert acked == published
    notes = [n["Note_Content"].split("\n\n")[0] for n in sims.zoho.notes_for(deals[0])]
    assert [n.split(".")[0] for n in notes] == ["Status: Pending", "Status: Approved", "Status: Completed"]


def test_a_thread_that_gives_up_on_a_429_still_waits_out_the_pause_before_its_next_call() -> None:
    """A 429 with Retry-After: 1 on the last attempt: the call gives up, and the API stays paused for
    everyone, this thread included: its next request is not sent before the second is over."""
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(time.monotonic())
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"}, json={"message": "slow down"})
        return httpx.Response(200, json={})

    policy = RetryPolicy(attempts=1, initial_wait=0.01, max_wait=0.05, jitter=0, max_retry_after=5)
    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://127.0.0.1") as raw:
        http = HttpClient(raw, policy=policy)
        with pytest.raises(TransientApiError):
            http.request("si.publish", "POST", "/Publish/Projects", json={})
        http.request("si.list", "GET", "/Subscribe/Projects")
    assert len(sent) == 2
    assert sent[1] - sent[0] >= 0.9, f"sent again after {sent[1] - sent[0]:.2f} s of a 1 s pause"


class _StopAfterFirstAck:
    """An SI client whose first acknowledgement is followed by a stop request (SIGTERM mid-acks)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.acked: list[str] = []

    def mark_imported_by_message(self, message_id: str, published_ms: int) -> None:
        self.acked.append(message_id)
        self.stop.set()


def test_a_stop_between_one_projects_acknowledgements_leaves_the_rest_for_the_rerun(tmp_path: Any) -> None:
    """Acks of one project go out one by one; a stop requested after the first sends no more of them
    (they are acknowledged by the next cycle) and the cycle reports it stopped, not that acks failed."""
    stop = threading.Event()
    si = _StopAfterFirstAck(stop)
    store = Store.open(tmp_path / "r.db")
    book = Book(store, cycle_id=None, stop=stop)
    writer = SiWriter(si, load_mapping(DEFAULT_MAPPING), book, Lanes(1))  # type: ignore[arg-type]
    writer.ack_all([Ack("P1", "1", ms, f"m{ms}") for ms in (1, 2, 3)])
    store.close()
    assert si.acked == ["m1"]
    assert book.result.stopped and book.result.counts["ack.failed"] == 0 and not book.result.failed


class _TimedAcks:
    """An SI client that records when each acknowledgement starts and ends; ``slow`` ones take 0.2 s."""

    def __init__(self, slow: set[str]) -> None:
        self.slow = slow
        self.calls: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def mark_imported_by_message(self, message_id: str, published_ms: int) -> None:
        start = time.monotonic()
        time.sleep(0.2 if message_id in self.slow else 0.01)
        with self.lock:
            self.calls[message_id] = (start, time.monotonic())


def test_a_projects_next_acknowledgement_waits_for_its_slow_first_one(tmp_path: Any) -> None:
    """Four lanes: project P's first ack is slow; P's next acks start only after it ended (in order),
    while the other projects' acks run beside it."""
    si = _TimedAcks(slow={"p1"})
    store = Store.open(tmp_path / "r.db")
    book = Book(store, cycle_id=None, stop=threading.Event())
    writer = SiWriter(si, load_mapping(DEFAULT_MAPPING), book, Lanes(4))  # type: ignore[arg-type]
    acks = [Ack("P", "1", ms, f"p{ms}") for ms in (1, 2, 3)]
    acks += [Ack(project, None, 1, f"{project.lower()}1") for project in ("Q", "R")]
    writer.ack_all(acks)
    store.close()
    calls = si.calls
    assert book.result.counts["ack.applied"] == 5
    assert calls["p1"][1] <= calls["p2"][0] and calls["p2"][1] <= calls["p3"][0]
    assert calls["q1"][1] < calls["p1"][1] and calls["r1"][1] < calls["p1"][1]  # beside P, not after it


class _RefusingAcks:
    """An SI client that refuses every acknowledgement while ``refuse`` is set."""

    def __init__(self) -> None:
        self.refuse = True

    def mark_imported_by_message(self, message_id: str, published_ms: int) -> None:
        if self.refuse:
            raise TransientApiError("si.mark_imported", "HTTP 500: the message is locked", 500)


def test_an_ack_si_keeps_refusing_is_parked_and_clears_once_it_goes_through(
    tmp_path: Any,
) -> None:
    """A failing ack is an item, not only a line in one cycle's failures: one attempt a cycle on
    ack:message:<id>, parked after MAX_ATTEMPTS (shown by `status`), and settled once SI accepts it."""
    si = _RefusingAcks()
    store = Store.open(tmp_path / "r.db")
    key = keys.ack("m1", "P", None)

    def one_cycle() -> Book:
        book = Book(store, cycle_id=None, stop=threading.Event())
        SiWriter(si, load_mapping(DEFAULT_MAPPING), book, Lanes(1)).ack_all([Ack("P", None, 1, "m1")])  # type: ignore[arg-type]
        return book

    first = one_cycle()
    assert [k for k, _ in first.result.failed] == [key] and "locked" in first.result.failed[0][1]
    for _ in range(keys.MAX_ATTEMPTS - 2):
        assert one_cycle().result.failed
    last = one_cycle()
    assert [k for k, _ in last.result.parked] == [key] and not last.result.failed
    assert [i.key for i in store.parked()] == [key]

    si.refuse = False
    assert one_cycle().result.counts["ack.applied"] == 1
    assert store.parked() == [] and store.intent(key).status == keys.DONE  # type: ignore[union-attr]
    store.close()
