"""The daemon loop: cycles repeat, never overlap, survive crashes, and stop cleanly, telling systemd."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler import logs
from reconciler.errors import CredentialsError
from reconciler.model import CycleReport
from reconciler.scheduler import run_daemon
from reconciler.sdnotify import Notifier

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD = 20.0  # seconds; only guards against a hang, never measures speed


def _report(outcome: str = "ok") -> CycleReport:
    now = time.time()
    return CycleReport(mode="incremental", outcome=outcome, exit_code=0, started_at=now, ended_at=now)


class Inbox:
    """A bound AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)

    def drain(self) -> list[str]:
        got: list[str] = []
        while True:
            try:
                got.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return got


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    # AF_UNIX paths are limited to ~108 bytes, so not pytest's (long) tmp_path.
    with tempfile.TemporaryDirectory(prefix="rn-") as short:
        box = Inbox(os.path.join(short, "notify"))
        yield box
        box.sock.close()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    stream = io.StringIO()
    logs.configure("json", stream=stream, level="DEBUG")

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    yield lines
    logs.configure("text")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _start(target: Callable[[], int]) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    return thread, result


def test_cycles_repeat_and_systemd_hears_ready_status_watchdog_stopping(inbox: Inbox) -> None:
    """Two+ cycles run (the first at once); the notify socket gets READY, STATUS, WATCHDOG, STOPPING."""
    stop = threading.Event()
    reports: list[CycleReport] = []
    thread, result = _start(
        lambda: run_daemon(
            _report,
            interval=0.2,
            stop=stop,
            notifier=Notifier(inbox.address),
            on_report=reports.append,
            install_signals=False,
            watchdog_every=0.05,
        )
    )
    _wait_for(lambda: len(reports) >= 2, "two cycles")
    stop.set()
    thread.join(HANG_GUARD)
    assert not thread.is_alive()
    assert result == [0]
    messages = inbox.drain()
    assert messages[0] == "READY=1"
    assert "STATUS=incremental cycle ok in 0.0s: no changes" in messages
    assert "WATCHDOG=1" in messages
    assert "STOPPING=1" in messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")


def test_cycles_never_overlap() -> None:
    """A cycle longer than the interval makes the scheduler skip ticks instead of starting a second one."""
    stop = threading.Event()
    running = 0
    most = 0
    calls = 0
    guard = threading.Lock()

    def slow_cycle() -> CycleReport:
        nonlocal running, most, calls
        with guard:
            running += 1
            calls += 1
            most = max(most, running)
        time.sleep(0.35)
        with guard:
            running -= 1
        return _report()

    thread, result = _start(
        lambda: run_daemon(
            slow_cycle, interval=0.1, stop=stop, notifier=Notifier(None), install_signals=False
        )
    )
    _wait_for(lambda: calls >= 3, "three cycles")
    stop.set()
    thread.join(HANG_GUARD)
    assert result == [0]
    assert most == 1


def test_a_crashing_cycle_is_logged_and_the_next_tick_retries(
    log_lines: Callable[[], list[dict[str, object]]],
) -> None:
    """An exception escaping cycle() is logged (cycle.crashed), reported as failed, and the daemon goes on."""
    stop = threading.Event()
    reports: list[CycleReport] = []
    calls = 0

    def flaky() -> CycleReport:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom in the planner")
        return _report()

    thread, result = _start(
        lambda: run_daemon(
            flaky,
            interval=0.2,
            stop=stop,
            notifier=Notifier(None),
            on_report=reports.append,
            install_signals=False,
        )
    )
    _wait_for(lambda: len(reports) >= 2, "a cycle after the crash")
    stop.set()
    thread.join(HANG_GUARD)
    assert result == [0]
    assert reports[0].outcome == "failed"
    assert "RuntimeError" in reports[0].message
    assert reports[1].outcome == "ok"
    crashed = [line for line in log_lines() if line["event"] == "cycle.crashed"]
    assert len(crashed) == 1
    assert "boom in the planner" in str(crashed[0]["error"])


def test_a_failing_on_report_does_not_stop_the_daemon(
    log_lines: Callable[[], list[dict[str, object]]],
) -> None:
    """on_report raising (a monitoring bug) is logged and the cycles continue."""
    stop = threading.Event()
    calls = 0

    def bad_monitor(report: CycleReport) -> None:
        nonlocal calls
        calls += 1
        raise OSError("disk full")

    thread, result = _start(
        lambda: run_daemon(
            _report,
            interval=0.2,
            stop=stop,
            notifier=Notifier(None),
            on_report=bad_monitor,
            install_signals=False,
        )
    )
    _wait_for(lambda: calls >= 2, "two cycles")
    stop.set()
    thread.join(HANG_GUARD)
    assert result == [0]
    assert any(line["event"] == "daemon.report_failed" for line in log_lines())


def test_stop_set_before_start_returns_without_a_cycle() -> None:
    """A stop that arrives during start-up ends the daemon at once, with exit code 0 and no cycle."""
    stop = threading.Event()
    stop.set()
    calls: list[int] = []

    def cycle() -> CycleReport:
        calls.append(1)
        return _report()

    thread, result = _start(
        lambda: run_daemon(cycle, interval=0.2, stop=stop, notifier=Notifier(None), install_signals=False)
    )
    thread.join(HANG_GUARD)
    assert result == [0]
    assert calls == []


def test_stop_waits_for_the_cycle_in_flight(inbox: Inbox) -> None:
    """Setting stop mid-cycle lets that cycle finish (shutdown with wait=True) before run_daemon returns."""
    stop = threading.Event()
    entered = threading.Event()
    finished: list[bool] = []

    def cycle() -> CycleReport:
        entered.set()
        stop.wait(HANG_GUARD)  # "the action in flight", which checks stop between actions
        time.sleep(0.1)
        finished.append(True)
        return _report()

    thread, result = _start(
        lambda: run_daemon(
            cycle, interval=0.2, stop=stop, notifier=Notifier(inbox.address), install_signals=False
        )
    )
    assert entered.wait(HANG_GUARD)
    stop.set()
    thread.join(HANG_GUARD)
    assert result == [0]
    assert finished == [True]
    messages = inbox.drain()
    assert messages.index("STOPPING=1") < len(messages)
    assert any(m.startswith("STATUS=incremental cycle ok") for m in messages[messages.index("STOPPING=1") :])


def test_watchdog_keeps_pinging_during_a_long_cycle_and_stops_when_it_stalls(
    inbox: Inbox, log_lines: Callable[[], list[dict[str, object]]]
) -> None:
    """A slow cycle does not starve the watchdog; one running past max_cycle_seconds stops the pings."""
    stop = threading.Event()
    release = threading.Event()
    entered = threading.Event()

    def hung_cycle() -> CycleReport:
        entered.set()
        release.wait(HANG_GUARD)
        return _report()

    thread, result = _start(
        lambda: run_daemon(
            hung_cycle,
            interval=0.2,
            stop=stop,
            notifier=Notifier(inbox.address),
            install_signals=False,
            watchdog_every=0.05,
            max_cycle_seconds=0.6,
        )
    )
    assert entered.wait(HANG_GUARD)
    _wait_for(lambda: "WATCHDOG=1" in inbox.drain(), "a watchdog ping while the cycle runs")
    _wait_for(lambda: any(x["event"] == "daemon.cycle_stalled" for x in log_lines()), "the stall")
    time.sleep(0.1)  # a ping already handed to the socket before the stall was seen
    inbox.drain()
    time.sleep(0.3)
    assert "WATCHDOG=1" not in inbox.drain()
    release.set()
    _wait_for(lambda: "WATCHDOG=1" in inbox.drain(), "pings again after the cycle ended")
    stop.set()
    thread.join(HANG_GUARD)
    assert result == [0]


_DAEMON_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    from reconciler import logs
    from reconciler.model import CycleReport
    from reconciler.sdnotify import Notifier
    from reconciler.scheduler import run_daemon

    logs.configure("json", stream=sys.stderr)
    stop = threading.Event()

    def cycle():
        print("cycle started", flush=True)
        while not stop.is_set():   # actions, checking stop between them
            time.sleep(0.02)
        print("cycle finished its action", flush=True)
        now = time.time()
        return CycleReport(mode="incremental", outcome="ok", exit_code=0, started_at=now, ended_at=now)

    sys.exit(run_daemon(cycle, interval=0.5, stop=stop, notifier=Notifier.from_env()))
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_action_in_flight_and_exits_0(inbox: Inbox, signum: signal.Signals) -> None:
    """SIGTERM/SIGINT to a real daemon process: the running cycle finishes, STOPPING=1 is sent, exit 0."""
    env = {**os.environ, "NOTIFY_SOCKET": inbox.address, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _DAEMON_SCRIPT],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "cycle started"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "cycle finished its action" in out
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "daemon.stopping" in events
    assert events[-1] == "daemon.stopped"
    messages = inbox.drain()
    assert messages[0] == "READY=1"
    assert "STOPPING=1" in messages


def test_abstract_notify_socket_from_env() -> None:
    """A NOTIFY_SOCKET starting with @ is an abstract-namespace address (no file on disk)."""
    name = f"@reconciler-test-{os.getpid()}-{time.monotonic_ns()}"
    box = Inbox(name)
    try:
        stop = threading.Event()
        reports: list[CycleReport] = []
        notifier = Notifier.from_env({"NOTIFY_SOCKET": name})
        thread, result = _start(
            lambda: run_daemon(
                _report,
                interval=0.2,
                stop=stop,
                notifier=notifier,
                on_report=reports.append,
                install_signals=False,
            )
        )
        _wait_for(lambda: len(reports) >= 1, "a cycle")
        stop.set()
        thread.join(HANG_GUARD)
        assert result == [0]
        messages = box.drain()
        assert messages[0] == "READY=1"
        assert "STOPPING=1" in messages
    finally:
        box.sock.close()


def test_rejected_credentials_three_cycles_in_a_row_stop_the_daemon_with_78(
    log_lines: Callable[[], list[dict[str, object]]],
) -> None:
    """A revoked token cannot heal by restarting: after 3 rejected cycles, one ERROR line, no traceback,
    and exit 78 (the unit's RestartPreventExitStatus); a success in between resets the count."""
    outcomes = iter(["rejected", "rejected", "ok", "rejected", "rejected", "rejected", "ok"])
    reports: list[CycleReport] = []

    def cycle() -> CycleReport:
        if next(outcomes) == "rejected":
            raise CredentialsError("Zoho rejected the refresh token (invalid_code): run `reconciler auth`")
        return _report()

    code = run_daemon(
        cycle,
        interval=0.05,
        stop=threading.Event(),
        notifier=Notifier(None),
        on_report=reports.append,
        install_signals=False,
        jitter=0,
    )
    assert code == 78
    assert [r.exit_code for r in reports] == [78, 78, 0, 78, 78, 78]
    assert reports[-1].message == (
        "credentials rejected: Zoho rejected the refresh token (invalid_code): run `reconciler auth`"
    )
    lines = log_lines()
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert [line["event"] for line in errors] == ["daemon.credentials_rejected"]
    assert errors[0]["cycles"] == 3
    assert not any("traceback" in line or "Traceback" in str(line) for line in lines)
    assert [line["event"] for line in lines].count("cycle.credentials_rejected") == 4


def test_a_database_fault_is_one_line_busy_retries_and_damage_stops_the_daemon_with_78(
    log_lines: Callable[[], list[dict[str, object]]],
) -> None:
    """A locked or full database fails one cycle (one ERROR line, the next tick retries); a damaged one
    cannot heal by restarting: one ERROR line, no traceback, exit 78."""
    from reconciler.errors import StoreBusyError, StoreError

    faults = iter([StoreBusyError("RECONCILER_DB: r.db: locked by another process"), None])
    reports: list[CycleReport] = []

    def cycle() -> CycleReport:
        fault = next(faults, StoreError("RECONCILER_DB: r.db: the file is not a database; restore a backup"))
        if fault is not None:
            raise fault
        return _report()

    code = run_daemon(
        cycle,
        interval=0.05,
        stop=threading.Event(),
        notifier=Notifier(None),
        on_report=reports.append,
        install_signals=False,
        jitter=0,
    )
    assert code == 78
    assert [r.exit_code for r in reports] == [1, 0, 78]
    lines = log_lines()
    errors = [line["event"] for line in lines if line["level"] == "ERROR"]
    assert errors == ["cycle.store_busy", "daemon.store_failed"]
    assert not any("traceback" in line for line in lines)
