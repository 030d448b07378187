"""Kill -9 at any point, run again: the end state equals an uninterrupted run's (DESIGN, Guarantees).

The whole flow runs as real ``reconciler run-once`` subprocesses against both simulators on loopback:
three flagged deals are created in SI, SI imports them, an SI user edits price/hours/progress and works
through change orders, a salesperson changes a close date, SI imports our update. The k-th external request
of the flow (counted across both simulators) kills the running subprocess with SIGKILL, either before the
simulator applies the request ("received") or after it applied it, before the answer ("handled"). The flow
then reruns ``run-once`` until it exits 0 and carries on; its final state, read canonically, must equal the
uninterrupted run's.

``make test`` kills at every request of the create path (both phases) and at a sample of the rest;
``make proof`` (``-m slow``) kills at every request of the whole flow, in both phases.

The subprocesses run with the default ``RECONCILER_SI_CONCURRENCY`` (4), and SI's simulator answers after
a short delay (:data:`SI_LATENCY`), so a kill usually finds other SI calls in flight: the three projects'
publishes, detail reads and acknowledgements overlap. Which of several concurrent calls is "the k-th"
varies from run to run, so a kill point is matched by the request's shape (ids left out).
"""

from __future__ import annotations

import os
import re
import signal
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.sim.harness import SimPair
from tests.cli_fork import fork_cli
from tests.conftest import TWO_WAY_MAPPING
from tests.e2e.helpers import (
    canonical_state,
    cli_env,
    flag_three,
    project_for,
    start_cli,
    state_diff,
    wait_dead,
    write_counts,
)

PHASES = ("received", "handled")
MAX_RUNS = 4  # the killed run plus at most three reruns per step
WORKERS = max(2, min(4, os.cpu_count() or 2))
SI_LATENCY = 0.01  # seconds before SI's simulator answers: concurrent calls overlap
Event = Callable[[SimPair, list[str]], None]


# ---- the scripted flow --------------------------------------------------------------------------------


def _nothing(sims: SimPair, deals: list[str]) -> None:
    """Sales ticked Send_to_SI on three deals before the first run (see ``flag_three``)."""


def _si_imports(sims: SimPair, deals: list[str]) -> None:
    sims.si.import_pending()


def _si_edits(sims: SimPair, deals: list[str]) -> None:
    projects = [project_for(sims, deal) for deal in deals]
    for n, project in enumerate(projects):
        sims.si.edit_project(project, Price=1000 + n * 250.5, Hours=10 + n, Progress="Approved")
    sims.si.add_change_order(projects[0], 1, "Outdoor speakers", status="Pending", price=1450.0)


def _change_orders_move(sims: SimPair, deals: list[str]) -> None:
    project = project_for(sims, deals[0])
    sims.si.set_change_order_status(project, 1, "Approved")
    sims.si.add_change_order(project, 2, "Extra rack", status="Pending", price=320.0)


def _close_date_edit(sims: SimPair, deals: list[str]) -> None:
    sims.zoho.edit_deal(deals[1], Closing_Date="2031-05-17")


STEPS: list[tuple[str, Event]] = [
    ("create", _nothing),
    ("import", _si_imports),
    ("si-edits", _si_edits),
    ("change-orders", _change_orders_move),
    ("close-date", _close_date_edit),
    ("import-update", _si_imports),
    ("idle", _nothing),
]


# ---- killing -------------------------------------------------------------------------------------------


class _Killed(Exception):
    """Raised by the observer in the "received" phase so the simulator never applies the request."""


@dataclass
class Crash:
    """Kill the running subprocess at the ``k``-th external request, in ``phase``; fires once."""

    k: int
    phase: str
    pid: int | None = None
    fired: tuple[str, str] | None = None  # (method, path) of the request it fired on
    in_flight: int = 0  # SI requests in flight (this one included) when it fired
    sims: SimPair | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, phase: str, n: int, request: httpx.Request) -> None:
        with self._lock:
            if self.fired is not None or n != self.k or phase != self.phase or self.pid is None:
                return
            self.fired = (request.method, request.url.path)
            self.in_flight = self.sims.si_wire.in_flight if self.sims is not None else 0
            os.kill(self.pid, signal.SIGKILL)
            wait_dead(self.pid)
        if phase == "received":
            raise _Killed(f"killed at request {n}")


# ---- running the flow -----------------------------------------------------------------------------------


@dataclass
class FlowResult:
    state: dict[str, Any]
    trace: list[tuple[int, str, str, str]]  # (n, step, method, path) of every request, uninterrupted run
    runs: list[tuple[str, int, str]] = field(default_factory=list)  # (step, exit code, output)
    last_run_writes: dict[str, int] = field(default_factory=dict)


def _run_step(step: str, env: dict[str, str], cwd: Path, crash: Crash | None, result: FlowResult) -> None:
    for _ in range(MAX_RUNS):
        proc = fork_cli(["run-once"], cli_env(env), cwd)
        if crash is not None:
            crash.pid = proc.pid
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.communicate()
        result.runs.append((step, proc.returncode, out + err))
        if proc.returncode == 0:
            return
    raise AssertionError(f"step {step}: run-once did not exit 0 in {MAX_RUNS} runs:\n" + result.runs[-1][2])


def play(workdir: Path, crash: Crash | None = None) -> FlowResult:
    """The scripted flow, every cycle a ``reconciler run-once`` subprocess; killed once when ``crash``."""
    workdir.mkdir(parents=True, exist_ok=True)
    mapping = workdir / "mapping.toml"
    mapping.write_text(textwrap.dedent(TWO_WAY_MAPPING), encoding="utf-8")
    trace: list[tuple[int, str, str, str]] = []
    current = ["seed"]

    def observe(phase: str, n: int, request: httpx.Request) -> None:
        if phase == "received":
            trace.append((n, current[0], request.method, request.url.path))
        if crash is not None:
            crash(phase, n, request)

    sims = SimPair().start(observer=observe)
    sims.si_wire.latency = SI_LATENCY
    if crash is not None:
        crash.sims = sims
    try:
        deals = flag_three(sims)
        env = sims.environment(workdir / "reconciler.db", mapping)
        result = FlowResult(state={}, trace=trace)
        for step, event in STEPS:
            event(sims, deals)
            current[0] = step
            before = write_counts(sims)
            _run_step(step, env, workdir, crash, result)
            after = write_counts(sims)
            result.last_run_writes = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        result.state = canonical_state(sims, deals)
        return result
    finally:
        sims.stop()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> FlowResult:
    """The uninterrupted flow, once per module (it is deterministic)."""
    result = play(tmp_path_factory.mktemp("baseline"))
    assert all(code == 0 for _, code, _ in result.runs), result.runs
    assert len(result.runs) == len(STEPS)
    return result


def _shape(path: str) -> str:
    """A request path with its ids left out: concurrent calls of one kind differ only there."""
    return re.sub(r"/[^/]*\d[^/]*", "/{id}", path)


def _sweep(baseline: FlowResult, points: list[tuple[int, str]], workdir: Path) -> list[Crash]:
    """Play the flow once per (k, phase), killed there; every end state must equal the baseline's.
    Returns the crashes (what each fired on, and how many SI calls were in flight then)."""
    crashes: list[Crash] = []

    def one(point: tuple[int, str]) -> str | None:
        k, phase = point
        crash = Crash(k, phase)
        crashes.append(crash)
        _, step, method, path = next(t for t in baseline.trace if t[0] == k)
        where = f"k={k} {phase} ({step}: {method} {path})"
        try:
            got = play(workdir / f"k{k}-{phase}", crash)
        except AssertionError as exc:
            return f"{where}: {exc}"
        if crash.fired is None:
            return f"{where}: the kill never fired"
        if crash.fired is None or (crash.fired[0], _shape(crash.fired[1])) != (method, _shape(path)):
            return f"{where}: request {k} was {crash.fired}, not as in the uninterrupted run"
        if got.state != baseline.state:
            return f"{where}: end state differs:\n    {state_diff(got.state, baseline.state)}"
        if got.last_run_writes:
            return f"{where}: the final idle run still wrote {got.last_run_writes}"
        return None

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        failures = [f for f in pool.map(one, points) if f is not None]
    assert not failures, f"{len(failures)} of {len(points)} crash points failed:\n" + "\n".join(failures)
    return crashes


def _create_range(baseline: FlowResult) -> list[int]:
    return [n for n, step, _, _ in baseline.trace if step == "create"]


def test_uninterrupted_flow_reaches_the_expected_state(baseline):
    """The reference run itself: 3 projects, synced fields, 3 notes, and an idle last run."""
    state = baseline.state
    assert [p[0] for p in state["projects"]] == sorted(state["deals"])
    assert sum(count for _, count in state["notes"]) == 3
    assert all(d["SI_Sync_Status"] == "In SI" and d["SI_Project_ID present"] for d in state["deals"].values())
    assert sorted(d["Stage"] for d in state["deals"].values()) == ["Closed Won"] * 3
    assert [p[1][-1] for p in state["projects"]].count(("CloseDate", "2031-05-17")) == 1
    assert baseline.last_run_writes == {}


def test_kill_anywhere_in_the_create_path_leaves_one_project_per_deal(baseline, tmp_path):
    """Every request of the create path, killed before and after SI/Zoho apply it: same end state."""
    points = [(k, phase) for k in _create_range(baseline) for phase in PHASES]
    crashes = _sweep(baseline, points, tmp_path)
    # With 4 SI lanes the three publishes overlap: some kills hit while other SI calls were in flight.
    assert max(c.in_flight for c in crashes) >= 2


def _is_write(method: str, path: str) -> bool:
    return method in ("PUT", "POST") and not path.endswith(("/coql", "/oauth/v2/token"))


def _sample(baseline: FlowResult) -> list[tuple[int, str]]:
    """After the create path: the first deal update and acknowledgement, every note and every SI update
    killed once applied (the answer is lost); the first note and SI update also killed before applied."""
    created = set(_create_range(baseline))
    points: list[tuple[int, str]] = []
    seen: set[str] = set()
    for n, _, method, path in baseline.trace:
        if n in created or not _is_write(method, path):
            continue
        first = path not in seen
        seen.add(path)
        if first and ("/Notes" in path or "/Publish/" in path):
            points.append((n, "received"))
        if first or "/Notes" in path or "/Publish/" in path:
            points.append((n, "handled"))
    return points


def test_kill_at_sampled_points_of_the_update_and_note_flow(baseline, tmp_path):
    """Writes after the create path killed once applied (lost answers), plus sampled early kills."""
    _sweep(baseline, _sample(baseline), tmp_path)


@pytest.mark.slow
def test_kill_at_every_request_of_the_whole_flow(baseline, tmp_path):
    """Every request of the whole flow, in both phases: the end state always equals the baseline's."""
    points = [(n, phase) for n, _, _, _ in baseline.trace for phase in PHASES]
    _sweep(baseline, points, tmp_path)


def test_the_kill_really_kills_mid_request(tmp_path):
    """The harness itself: a run killed at its first request exits by SIGKILL and leaves no cycle done."""
    crash = Crash(1, "received")
    sims = SimPair().start(observer=crash)
    try:
        flag_three(sims)
        mapping = tmp_path / "mapping.toml"
        mapping.write_text(textwrap.dedent(TWO_WAY_MAPPING), encoding="utf-8")
        proc = start_cli(["run-once"], sims.environment(tmp_path / "r.db", mapping), tmp_path)
        crash.pid = proc.pid
        proc.communicate(timeout=60)
    finally:
        sims.stop()
    assert proc.returncode == -signal.SIGKILL
    assert crash.fired == ("POST", "/oauth/v2/token")
    assert sims.zoho.token_requests == [] and sims.si.count("POST", "/Publish") == 0
