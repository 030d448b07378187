"""`run-once` stopped by systemd (SIGTERM) or Ctrl-C (SIGINT) mid-run, and a cycle whose process died.

The simulators run on loopback; the test's observer sends the signal while the server holds a request,
so the signal lands exactly "mid-run": one publish in flight, others still to come.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from tests.conftest import DEFAULT_MAPPING, run_cli
from tests.e2e.helpers import start_cli

PUBLISH = ("POST", "/SI/Publish/Projects")


class SignalAt:
    """Observer: sends ``signum`` to ``pid`` when the ``k``-th publish arrives (before SI applies it)."""

    def __init__(self, k: int, signum: int, *, kill: bool = False) -> None:
        self.k, self.signum, self.kill = k, signum, kill
        self.pid: int | None = None
        self.seen = 0
        self.fired = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, phase: str, n: int, request: httpx.Request) -> None:
        if phase != "received" or (request.method, request.url.path) != PUBLISH:
            return
        with self._lock:
            self.seen += 1
            if self.seen == self.k and self.pid is not None:
                os.kill(self.pid, self.signum)
                self.fired.set()
                if self.kill:
                    raise httpx.ReadError("killed")  # the server drops the connection: SI never saw it


def _flag(sims: SimPair, count: int) -> list[str]:
    return [
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name=f"Client {n}", Send_to_SI=True, Amount=n)
        for n in range(count)
    ]


def _serve(observer: SignalAt) -> SimPair:
    return SimPair().start(observer=observer)


def _status(env: dict[str, str], cwd: Path) -> dict:
    return json.loads(run_cli(["status", "--json"], env, cwd, check=True).stdout)


def test_with_four_lanes_a_sigterm_lets_the_calls_in_flight_finish_and_starts_no_more(tmp_path: Path) -> None:
    """Four SI lanes, 16 creates, SIGTERM at the 2nd publish: the publishes already in flight (or picked
    up in the instant before the signal is handled) finish, no other starts; the rerun converges with
    one project per deal."""
    observer = SignalAt(2, signal.SIGTERM)
    sims = _serve(observer)
    sims.si_wire.latency = 0.05  # the four lanes' publishes overlap on the wire
    try:
        deals = _flag(sims, 16)
        env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING, RECONCILER_SI_CONCURRENCY="4")
        proc = start_cli(["run-once"], env, tmp_path)
        observer.pid = proc.pid
        _, err = proc.communicate(timeout=60)

        assert proc.returncode == 143, err
        assert re.search(r"interrupted after \d+ of 16; a rerun resumes", err), err
        assert sims.si_wire.peak <= 4
        assert 2 <= len(sims.si.publish_messages) <= 6  # the four in flight, a lane's next at most
        rerun = run_cli(["run-once"], env, tmp_path)
        assert rerun.returncode == 0, rerun.stderr
        published = sorted(m.project_id for m in sims.si.publish_messages)
        assert sorted(set(published)) == sorted(project_guid(d) for d in deals)
        assert len(published) - len(set(published)) <= 4  # at most the calls in flight are made again
    finally:
        sims.stop()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_run_finishes_the_call_in_flight_records_interrupted_and_a_rerun_resumes(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    """SIGTERM (143) / SIGINT (130) during the 2nd of 5 publishes: that publish completes, no 3rd starts,
    the cycle is recorded `interrupted` with "interrupted after N of 5; a rerun resumes"; the rerun
    converges with exactly one SI project per deal."""
    observer = SignalAt(2, signum)
    sims = _serve(observer)
    try:
        deals = _flag(sims, 5)
        # One SI call at a time, so "the one in flight" is exactly one (four lanes: the test below).
        env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING, RECONCILER_SI_CONCURRENCY="1")
        proc = start_cli(["run-once"], env, tmp_path)
        observer.pid = proc.pid
        _, err = proc.communicate(timeout=60)

        assert observer.fired.is_set()
        assert proc.returncode == code, err
        assert "Traceback" not in err
        assert re.search(r"interrupted after \d of 5; a rerun resumes", err), err
        assert len(sims.si.publish_messages) == 2  # the one in flight finished; nothing new started
        [last] = _status(env, tmp_path)["cycles"]
        assert last["outcome"] == "interrupted"
        assert re.fullmatch(r"interrupted after \d of 5; a rerun resumes", last["message"])

        rerun = run_cli(["run-once"], env, tmp_path)
        assert rerun.returncode == 0, rerun.stderr
        published = sorted(m.project_id for m in sims.si.publish_messages)
        assert published == sorted(project_guid(d) for d in deals)  # resumed: nothing published twice
        assert [sims.zoho.deal(d)["SI_Project_ID"] for d in deals] == [project_guid(d) for d in deals]
        assert run_cli(["plan"], env, tmp_path).returncode == 0
    finally:
        sims.stop()


def test_a_cycle_left_running_by_a_killed_process_shows_as_interrupted(tmp_path: Path) -> None:
    """kill -9 mid-run leaves the cycle `running` in the store: `status` (lock free) and the next run's
    metrics both count it as interrupted, never as running."""
    observer = SignalAt(2, signal.SIGKILL, kill=True)
    sims = _serve(observer)
    try:
        _flag(sims, 3)
        metrics = tmp_path / "reconciler.prom"
        env = sims.environment(
            tmp_path / "reconciler.db", DEFAULT_MAPPING, RECONCILER_METRICS_FILE=str(metrics)
        )
        proc = start_cli(["run-once"], env, tmp_path)
        observer.pid = proc.pid
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL

        [dead] = _status(env, tmp_path)["cycles"]
        assert dead["outcome"] == "interrupted" and dead["ended_at"] is None
        assert "the process ended before the cycle finished" in run_cli(["status"], env, tmp_path).stdout

        assert run_cli(["run-once"], env, tmp_path).returncode == 0
        text = metrics.read_text()
        assert 'reconciler_cycles_total{outcome="interrupted"} 1' in text
        assert 'reconciler_cycles_total{outcome="ok"} 1' in text
        assert "running" not in text
        assert [c["outcome"] for c in _status(env, tmp_path)["cycles"]] == ["ok", "interrupted"]
    finally:
        sims.stop()
