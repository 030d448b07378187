"""Health pings and alerts as `run-once` sends them, caught by a loopback server standing in for
healthchecks.io, a Slack webhook and the services apprise reaches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.lock import InstanceLock
from reconciler.sim.harness import SimPair
from reconciler.sim.server import SimServer
from tests.conftest import DEFAULT_MAPPING, run_cli

NO_ACCOUNT = "field Account_Name.name is empty (SI requires Client)"


class Catcher:
    """Records every request (method, path, raw body) and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self.server = SimServer(self.handle).start()

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.received.append((request.method, request.url.path, request.content))
        return httpx.Response(200, text="OK")

    def url(self, path: str, scheme: str = "http") -> str:
        return self.server.url.replace("http", scheme, 1) + path

    def calls(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.received]

    def body(self, index: int) -> str:
        return self.received[index][2].decode()


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    made = Catcher()
    yield made
    made.server.stop()


def _env(sims: SimPair, tmp_path: Path, **extra: str) -> dict[str, str]:
    return sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING, **extra)


def test_start_then_success_with_the_parked_items_in_the_body(
    served_sims: SimPair, catcher: Catcher, tmp_path: Path
) -> None:
    """A run that parks a deal without an account: /start, then a success ping listing it (not /fail)."""
    served_sims.zoho.add_deal(Deal_Name="Good", Account_Name="Acme", Send_to_SI=True)
    bad = served_sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    env = _env(served_sims, tmp_path, RECONCILER_HEALTHCHECK_URL=catcher.url("/ping/abc"))

    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 1  # the contract: an item was parked in this cycle
    assert catcher.calls() == [("GET", "/ping/abc/start"), ("POST", "/ping/abc")]
    body = catcher.body(1)
    assert "create.applied=1" in body
    assert "1 item(s) parked (data to fix, not an outage" in body
    assert f"create:deal:{bad}: deal {bad}: {NO_ACCOUNT}" in body


def test_a_cycle_that_could_not_run_pings_its_exit_code(
    served_sims: SimPair, catcher: Catcher, tmp_path: Path
) -> None:
    """Zoho answers garbage: run-once exits 1 and pings /1 with the reason."""
    served_sims.zoho.inject("POST", "/crm/v8/coql", kind="malformed")
    env = _env(served_sims, tmp_path, RECONCILER_HEALTHCHECK_URL=catcher.url("/ping/abc"))

    assert run_cli(["run-once"], env, tmp_path).returncode == 1

    assert catcher.calls() == [("GET", "/ping/abc/start"), ("POST", "/ping/abc/1")]
    assert "could not read" in catcher.body(1)


def test_exit_75_with_the_lock_held_is_pinged(served_sims: SimPair, catcher: Catcher, tmp_path: Path) -> None:
    """Another instance holds the lock: exit 75, and the check hears /75 naming the lock file."""
    env = _env(served_sims, tmp_path, RECONCILER_HEALTHCHECK_URL=catcher.url("/ping/abc"))
    with InstanceLock(tmp_path / "reconciler.db.lock"):
        assert run_cli(["run-once"], env, tmp_path).returncode == 75
    assert catcher.calls() == [("POST", "/ping/abc/75")]
    assert "reconciler.db.lock" in catcher.body(0)


def test_exit_78_for_bad_settings_is_pinged_even_from_a_credential_file(
    served_sims: SimPair, catcher: Catcher, tmp_path: Path
) -> None:
    """A setting that does not load still reaches the check: its URL read from the credentials dir."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "reconciler_healthcheck_url").write_text(catcher.url("/ping/cred") + "\n")
    env = _env(served_sims, tmp_path, RECONCILER_INTERVAL="soon", CREDENTIALS_DIRECTORY=str(credentials))

    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 78
    assert catcher.calls() == [("POST", "/ping/cred/78")]
    assert "RECONCILER_INTERVAL" in catcher.body(0)


def test_rejected_credentials_ping_78_once(served_sims: SimPair, catcher: Catcher, tmp_path: Path) -> None:
    """SI rejects the key: the cycle starts, then one /78 ping (not a second one from the exit path)."""
    env = _env(
        served_sims, tmp_path, SI_API_KEY="not-the-key", RECONCILER_HEALTHCHECK_URL=catcher.url("/ping/abc")
    )
    assert run_cli(["run-once"], env, tmp_path).returncode == 78
    assert catcher.calls() == [("GET", "/ping/abc/start"), ("POST", "/ping/abc/78")]


def test_plan_sends_no_ping(served_sims: SimPair, catcher: Catcher, tmp_path: Path) -> None:
    """A dry run is not a cycle the health check watches."""
    env = _env(served_sims, tmp_path, RECONCILER_HEALTHCHECK_URL=catcher.url("/ping/abc"))
    assert run_cli(["plan"], env, tmp_path).returncode in (0, 2)
    assert catcher.received == []


def test_alerts_go_through_apprise_once_per_parked_item(
    served_sims: SimPair, catcher: Catcher, tmp_path: Path
) -> None:
    """An apprise URL (json://, from a credential file) gets the parked deal once, not again each cycle
    nor after a mapping edit that parks it again."""
    bad = served_sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "reconciler_notify_url").write_text(catcher.url("/apprise/hook", scheme="json"))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(DEFAULT_MAPPING.read_text())
    env = served_sims.environment(tmp_path / "reconciler.db", mapping, CREDENTIALS_DIRECTORY=str(credentials))

    assert run_cli(["run-once"], env, tmp_path).returncode == 1
    assert run_cli(["run-once"], env, tmp_path).returncode == 0
    mapping.write_text(
        mapping.read_text().replace("[create.constants]", '[create.constants]\nTemplateName = "Residential"')
    )
    run_cli(["run-once"], env, tmp_path)

    assert catcher.calls() == [("POST", "/apprise/hook")]
    sent = json.loads(catcher.body(0))
    assert sent["title"].endswith("1 item parked (see `reconciler status`; `reconciler retry KEY`)")
    assert f"create:deal:{bad}: deal {bad}: {NO_ACCOUNT}" in sent["message"]


def test_an_unknown_alert_scheme_is_a_setting_error(served_sims: SimPair, tmp_path: Path) -> None:
    """RECONCILER_NOTIFY_URL that neither http(s) nor apprise understands: one line naming it, exit 78."""
    env = _env(served_sims, tmp_path, RECONCILER_NOTIFY_URL="carrier-pigeon://coop/1")
    result = run_cli(["check", "--offline"], env, tmp_path)
    assert result.returncode == 78
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("reconciler: RECONCILER_NOTIFY_URL: ")
    assert "carrier-pigeon" in line


def test_slack_webhook_keeps_its_text_payload(served_sims: SimPair, catcher: Catcher, tmp_path: Path) -> None:
    """A plain http(s) URL still gets the Slack-compatible {"text": ...} body."""
    served_sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    env = _env(served_sims, tmp_path, RECONCILER_NOTIFY_URL=catcher.url("/services/T/B/x"))
    assert run_cli(["run-once"], env, tmp_path).returncode == 1
    [(method, path, raw)] = catcher.received
    assert (method, path) == ("POST", "/services/T/B/x")
    assert list(json.loads(raw)) == ["text"]
