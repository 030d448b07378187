"""Secrets at rest: a vendor that echoes a secret or a token never gets it stored, shown or written to Zoho.

Some APIs echo what they refused. Here SI fails an import with a message quoting the SI key and the
access token (it becomes the deal's ``SI_Sync_Status``, readable by every CRM user), Zoho rejects a
record with a message quoting the access token (it becomes a parked item's error), and SI answers 500s
quoting both (they become the cycle's message). The token echoed is one an *earlier* process obtained
and cached, the case the log sink's redaction never saw. Every table of the database but the token
cache, `status`, `status --json` and the deal in the Zoho simulator are then searched for the secrets.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from reconciler.sim.si import SiSim
from reconciler.sim.zoho import ZohoSim
from tests.conftest import DEFAULT_MAPPING, run_cli

CLIENT_SECRET = "cs-91ab SECRET at rest".replace(" ", "-")
REFRESH_TOKEN = "1000.rt-at-rest-SECRET-77"
SI_KEY = "sikey-at-rest-SECRET-0042"


class Tokens:
    """Every access token the Zoho simulator was shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, phase: str, n: int, request: httpx.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Zoho-oauthtoken" and token and token not in self.seen:
            self.seen.append(token)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def sims(tokens: Tokens) -> Iterator[SimPair]:
    zoho = ZohoSim(client_id="1000.PUBLICID", client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    pair = SimPair(zoho=zoho, si=SiSim(api_key=SI_KEY)).start(tokens)
    yield pair
    pair.stop()


def _stored_text(db: Path) -> str:
    """Every value of every table except the access-token cache (which must hold the token)."""
    with closing(sqlite3.connect(db)) as raw:
        tables = [row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        chunks = [
            repr(raw.execute(f'SELECT * FROM "{table}"').fetchall()) for table in tables if table != "token"
        ]
    return "\n".join(chunks)


def test_vendor_errors_echoing_the_token_and_the_si_key_are_redacted_before_they_are_kept(
    sims: SimPair, tokens: Tokens, tmp_path: Path
) -> None:
    """SI import failure, Zoho per-record error and SI 500s quoting secrets: stored, shown, written as ***."""
    failing = sims.zoho.add_deal(Deal_Name="Fails in SI", Account_Name="Acme", Send_to_SI=True, Amount=1)
    rejected = sims.zoho.add_deal(
        Deal_Name="Rejected by Zoho", Account_Name="Acme", Send_to_SI=True, Amount=2
    )
    db = tmp_path / "reconciler.db"
    env = sims.environment(db, DEFAULT_MAPPING)
    assert run_cli(["run-once"], env, tmp_path).returncode == 0  # publishes both; the token is cached
    (token,) = tokens.seen
    secrets = [token, SI_KEY, REFRESH_TOKEN, CLIENT_SECRET]

    # The failing deal's import fails, whichever of the two publishes (sent in parallel lanes) came first.
    sims.si.fail_import_of(
        project_guid(failing), f"Import refused: key {SI_KEY} with Zoho-oauthtoken {token} is not licensed"
    )
    sims.si.import_pending()
    run_cli(["run-once"], env, tmp_path)  # "SI import failed: ..." goes onto the failing deal

    sims.si.edit_project(project_guid(rejected), Price=777)
    per_record = {
        "code": "INVALID_DATA",
        "details": {"api_name": "Amount"},
        "message": f"token {token} may not write Amount",
        "status": "error",
    }
    sims.zoho.inject("PUT", "/crm/v8/Deals", status=400, body={"data": [per_record]})
    run_cli(["run-once"], env, tmp_path)  # the Amount write is parked with Zoho's message
    echo = {"Message": f"Server error for X-DTSI-ApiKey {SI_KEY}, token {token}"}
    sims.si.inject("GET", "/Subscribe/Projects", status=500, body=echo, headers={"Retry-After": "0"}, times=5)
    assert run_cli(["run-once"], env, tmp_path).returncode == 1  # the cycle's message quotes the 500

    assert len(tokens.seen) == 1, "every run reused the cached token (an earlier process's)"
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    status_json = run_cli(["status", "--json"], env, tmp_path, check=True).stdout
    stored = _stored_text(db)
    written = sims.zoho.deal(failing)["SI_Sync_Status"]
    places = {"database": stored, "status": status, "status --json": status_json, "deal": written}
    leaks = {where: [s for s in secrets if s in text] for where, text in places.items()}
    assert leaks == {where: [] for where in places}
    # Not vacuous: the redacted texts are there, in every place.
    assert written.startswith("SI import failed: Import refused: key *** with Zoho-oauthtoken ***")
    assert "token *** may not write Amount" in stored and "token *** may not write Amount" in status
    assert "Server error for X-DTSI-ApiKey ***, token ***" in stored
    assert "Import refused: key ***" in status_json
