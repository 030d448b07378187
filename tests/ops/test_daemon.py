"""Issue #4, done-when: `reconciler daemon` as systemd runs it, a real subprocess against served simulators.

It runs cycles every ``RECONCILER_INTERVAL`` seconds and converges, tells systemd READY/STATUS/WATCHDOG/
STOPPING on ``$NOTIFY_SOCKET``, exits 0 soon after SIGTERM, keeps going when cycles fail, and a second
instance (daemon, run-once or plan) exits 75 naming the lock file. Timeouts here only guard against hangs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from tests.conftest import DEFAULT_MAPPING, ROOT, run_cli

HANG_GUARD = 15.0  # seconds: the longest any wait below may take before the test fails


class Daemon:
    """``python -m reconciler daemon`` started by the test (and only ever stopped by its own pid)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        prefixes = ("ZOHO_", "SI_", "RECONCILER_", "CRM_")
        base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        base.update(env)
        base.setdefault("PYTHONPATH", str(ROOT))
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            if name not in env:
                base.pop(name, None)
        self.cwd = cwd
        self.env = env
        self.stderr_path = cwd / "daemon.stderr"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "daemon"],
            env=base,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def cycles(self) -> list[dict[str, Any]]:
        """Finished cycles, oldest first, as ``reconciler status --json`` shows them (none before the
        daemon created its database)."""
        result = run_cli(["status", "--json"], self.env, self.cwd)
        if result.returncode == 78 and "no database at" in result.stderr:
            return []
        assert result.returncode == 0, result.stderr
        cycles = json.loads(result.stdout)["cycles"] if result.stdout.startswith("{") else []
        return [c for c in reversed(cycles) if c["ended_at"] is not None]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while not condition():
            assert self.process.poll() is None, f"the daemon died ({self.process.returncode}):\n{self.stderr}"
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.stderr}")
            time.sleep(0.2)

    def terminate(self) -> int:
        """SIGTERM, then wait (bounded) for the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=HANG_GUARD)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=HANG_GUARD)
        self._stderr.close()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(sims: SimPair, **extra: str) -> Daemon:
        env = sims.environment(
            tmp_path / "reconciler.db", DEFAULT_MAPPING, **{"RECONCILER_INTERVAL": "2", **extra}
        )
        daemon = Daemon(env, tmp_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


class Inbox:
    """A bound AF_UNIX datagram socket in the abstract namespace, standing in for systemd's."""

    def __init__(self) -> None:
        self.address = f"@reconciler-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.1)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return self.received


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.sock.close()


def _flag_three_deals(sims: SimPair) -> list[str]:
    return [
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True, Amount=10 * n)
        for n in range(3)
    ]


def test_the_daemon_cycles_converges_and_exits_0_on_sigterm(
    served_sims: SimPair, start_daemon: Callable[..., Daemon]
) -> None:
    """Interval 2 s: at least 2 cycles in 10 s, 3 flagged deals -> 3 projects, linked; SIGTERM -> exit 0."""
    deals = _flag_three_deals(served_sims)
    daemon = start_daemon(served_sims)
    daemon.wait_for(lambda: len(daemon.cycles()) >= 2, "two cycles")
    first, second = daemon.cycles()[:2]
    assert second["started_at"] - first["started_at"] <= 10.0  # the schedule, read from the store
    publishes = [m for m in served_sims.si.publish_messages if m.type_id == 11]
    assert sorted(m.project_id for m in publishes) == sorted(project_guid(d) for d in deals)
    assert [served_sims.zoho.deal(d)["SI_Project_ID"] for d in deals] == [project_guid(d) for d in deals]
    served_sims.si.import_pending()  # SI imports the queue: a later cycle records it on the deals
    daemon.wait_for(
        lambda: all(served_sims.zoho.deal(d).get("SI_Sync_Status") == "In SI" for d in deals), "In SI"
    )
    cycles = daemon.cycles()
    assert {c["outcome"] for c in cycles} == {"ok"}
    assert len([m for m in served_sims.si.publish_messages if m.type_id == 11]) == 3
    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.stderr
    assert "daemon.stopped" in daemon.stderr


def test_the_daemon_tells_systemd_ready_status_watchdog_and_stopping(
    served_sims: SimPair, start_daemon: Callable[..., Daemon], inbox: Inbox
) -> None:
    """With $NOTIFY_SOCKET and WATCHDOG_USEC=2 s: READY=1, STATUS=<cycle summary>, WATCHDOG=1, STOPPING=1."""
    _flag_three_deals(served_sims)
    daemon = start_daemon(served_sims, NOTIFY_SOCKET=inbox.address, WATCHDOG_USEC="2000000")

    def heard(prefix: str, count: int = 1) -> Callable[[], bool]:
        return lambda: sum(m.startswith(prefix) for m in inbox.drain()) >= count

    daemon.wait_for(heard("READY=1"), "READY=1")
    daemon.wait_for(heard("STATUS=full cycle ok"), "a STATUS with the first cycle's summary")
    daemon.wait_for(heard("WATCHDOG=1", 2), "two WATCHDOG=1 pings")
    assert daemon.terminate() == 0
    messages = inbox.drain()
    assert "STOPPING=1" in messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    status = next(m for m in messages if m.startswith("STATUS=full cycle ok"))
    assert "create.applied=3" in status


def test_a_second_instance_exits_75_naming_the_lock_file_but_plan_runs(
    served_sims: SimPair, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """With the daemon running, another daemon or run-once exits 75 naming <db>.lock; `plan` runs."""
    daemon = start_daemon(served_sims)
    daemon.wait_for(lambda: len(daemon.cycles()) >= 1, "the first cycle")
    lock = f"{tmp_path / 'reconciler.db'}.lock"
    for command in (["daemon"], ["run-once"]):
        result = run_cli(command, daemon.env, tmp_path, timeout=HANG_GUARD)
        assert result.returncode == 75, (command, result.stderr)
        assert lock in result.stderr
        assert "Traceback" not in result.stderr
    served_sims.zoho.add_deal(Deal_Name="New", Account_Name="Acme", Send_to_SI=True)
    plan = run_cli(["plan"], daemon.env, tmp_path, timeout=HANG_GUARD)
    assert plan.returncode in (0, 2), plan.stderr  # 2 unless the daemon created it meanwhile
    assert "another reconciler is running" not in plan.stderr
    assert "Traceback" not in plan.stderr
    assert daemon.process.poll() is None
    assert daemon.terminate() == 0


def test_failing_cycles_do_not_kill_the_daemon(
    served_sims: SimPair, start_daemon: Callable[..., Daemon]
) -> None:
    """Zoho answers 500 to every attempt of two cycles: both fail, the daemon lives on and then converges."""
    deals = _flag_three_deals(served_sims)
    attempts = 5  # the production retry policy; Retry-After: 0 keeps the test from sleeping through backoff
    served_sims.zoho.inject(
        "POST", "/crm/v8/coql", status=500, headers={"Retry-After": "0"}, times=2 * attempts
    )
    daemon = start_daemon(served_sims)
    daemon.wait_for(lambda: any(c["outcome"] == "ok" for c in daemon.cycles()), "a successful cycle")
    outcomes = [c["outcome"] for c in daemon.cycles()]
    assert outcomes[:3] == ["failed", "failed", "ok"]
    failed = daemon.cycles()[0]
    assert failed["message"] == "could not read: zoho.coql: HTTP 500: INTERNAL_ERROR Internal Server Error"
    assert [served_sims.zoho.deal(d)["SI_Project_ID"] for d in deals] == [project_guid(d) for d in deals]
    assert daemon.terminate() == 0


def test_rejected_credentials_stop_the_daemon_with_78_and_one_error_line(
    served_sims: SimPair, start_daemon: Callable[..., Daemon]
) -> None:
    """A wrong SI key under the daemon: a few rejected cycles, then one ERROR line (no traceback), exit 78."""
    daemon = start_daemon(served_sims, SI_API_KEY="revoked-key", RECONCILER_INTERVAL="1")
    code = daemon.process.wait(timeout=HANG_GUARD)
    assert code == 78, daemon.stderr
    errors = [line for line in daemon.stderr.splitlines() if line.split()[1:2] == ["ERROR"]]
    assert len(errors) == 1 and "daemon.credentials_rejected" in errors[0], daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert "revoked-key" not in daemon.stderr


def test_sigterm_right_after_start_stops_the_daemon_cleanly(
    served_sims: SimPair, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """SIGTERM as soon as the daemon holds its lock (still setting up): exit 0, not killed by signal 15."""
    from reconciler.lock import lock_is_held

    daemon = start_daemon(served_sims)
    lock = tmp_path / "reconciler.db.lock"
    daemon.wait_for(lambda: lock_is_held(lock), "the daemon's lock")
    assert daemon.terminate() == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
