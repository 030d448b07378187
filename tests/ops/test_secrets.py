"""Secrets never reach stdout, stderr, logs or `status` (DESIGN, Guarantees); `auth` shows its token once.

The simulators are set up to accept distinctive secret values; every access token the Zoho simulator
issued is collected from the Authorization headers it received. Then every command runs, successful and
failing, in both log formats, and not one of those strings may appear in what it printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.sim.harness import SimPair
from reconciler.sim.si import SiSim
from reconciler.sim.zoho import ZohoSim
from tests.conftest import DEFAULT_MAPPING, run_cli

CLIENT_SECRET = "cs-7f3a9e1dSECRETc0ffee"
REFRESH_TOKEN = "1000.rt5b2c8dSECRETbeef"
SI_KEY = "sikey-c41e07SECRETfeed"
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN, SI_KEY)


class Tokens:
    """A server observer collecting every Zoho access token presented to the simulator."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, phase: str, n: int, request: httpx.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Zoho-oauthtoken" and token:
            self.seen.add(token)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def secret_sims(tokens: Tokens) -> Iterator[SimPair]:
    """Both simulators on loopback, accepting only the distinctive credentials above."""
    zoho = ZohoSim(client_id="1000.CLIENTIDPUBLIC", client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    pair = SimPair(zoho=zoho, si=SiSim(api_key=SI_KEY)).start(tokens)
    yield pair
    pair.stop()


def _leaks(result: subprocess.CompletedProcess[str], forbidden: set[str]) -> list[str]:
    return [
        f"{s!r} in {where}"
        for s in forbidden
        for where in ("stdout", "stderr")
        if s in getattr(result, where)
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_command_prints_a_secret_or_an_access_token(
    log_format: str, secret_sims: SimPair, tokens: Tokens, tmp_path: Path
) -> None:
    """run-once/plan/status/check/history, ok and failing (401, 500s, an API echoing secrets): no secret."""
    sims = secret_sims
    for n in range(3):
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True, Amount=100 + n)
    env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING, RECONCILER_LOG_FORMAT=log_format)
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(name: str, *args: str, code: int | None = None) -> None:
        result = run_cli(list(args), env, tmp_path)
        if code is not None:
            assert result.returncode == code, f"{name}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        runs[name] = result

    run("run-once", "run-once", code=0)
    sims.si.import_pending()
    sims.si.add_change_order(next(iter(sims.si.projects)), 1, "Extra", price=50)
    sims.zoho.expire_tokens()  # the cached token dies: the next run refreshes it (a second token)
    run("run-once after expiry", "run-once", code=0)
    run("plan", "plan", code=0)
    run("plan --json", "plan", "--json", code=0)
    run("check", "check", code=0)
    run("history", "history", code=0)
    sims.si.inject("GET", "/Subscribe/Projects", status=401)
    run("run-once, SI says 401", "run-once", code=78)
    sims.zoho.inject("POST", "/crm/v8/coql", status=500, headers={"Retry-After": "0"}, times=5)
    run("run-once, Zoho 500s", "run-once", code=1)
    echo = {"Message": f"An error has occurred (X-DTSI-ApiKey: {SI_KEY}, grant {REFRESH_TOKEN})"}
    sims.si.inject("GET", "/Subscribe/Projects", status=500, body=echo, headers={"Retry-After": "0"}, times=5)
    run("run-once, SI echoes secrets", "run-once", code=1)
    run("status", "status", code=0)
    run("status --json", "status", "--json", code=0)

    assert len(tokens.seen) >= 2, "the Zoho simulator should have issued (and seen) at least two tokens"
    forbidden = set(SECRETS) | tokens.seen
    leaks = {name: found for name, result in runs.items() if (found := _leaks(result, forbidden))}
    assert leaks == {}
    # Not vacuous: the failing runs did log their retries and errors, and status shows the failed cycles.
    assert "http.retry" in runs["run-once, Zoho 500s"].stderr
    assert "http.retry" in runs["run-once, SI echoes secrets"].stderr
    assert "SI_API_KEY" in runs["run-once, SI says 401"].stderr
    assert "An error has occurred (X-DTSI-ApiKey: ***" in runs["status"].stdout
    assert "zoho.token.issued" in runs["run-once after expiry"].stderr


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_auth_prints_the_refresh_token_once_on_stdout_and_never_in_the_logs(
    log_format: str, secret_sims: SimPair, tmp_path: Path
) -> None:
    """`reconciler auth --code CODE`: the new refresh token appears once, on stdout; never on stderr."""
    code = secret_sims.zoho.issue_grant_code()
    env = {
        "ZOHO_CLIENT_ID": secret_sims.zoho.client_id,
        "ZOHO_CLIENT_SECRET": CLIENT_SECRET,
        "ZOHO_ACCOUNTS_URL": secret_sims.zoho_url,
        "RECONCILER_LOG_FORMAT": log_format,
    }
    result = run_cli(["auth", "--code", code], env, tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.splitlines()[0]
    form = {"grant_type": "refresh_token", "refresh_token": token}
    form |= {"client_id": secret_sims.zoho.client_id, "client_secret": CLIENT_SECRET}
    answer = secret_sims.zoho.handle(httpx.Request("POST", "http://zoho.sim/oauth/v2/token", data=form))
    assert "access_token" in answer.json(), "the printed token is not a working refresh token"
    assert token != REFRESH_TOKEN
    assert result.stdout.count(token) == 1
    assert token not in result.stderr
    assert CLIENT_SECRET not in result.stdout + result.stderr
    assert code not in result.stdout + result.stderr
