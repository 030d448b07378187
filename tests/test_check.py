"""`reconciler check`: one line per production read, probed at the smallest size, writing nothing; the
vendor's own error code and the fix when a probe fails; exit 0 / 1 / 78 as DESIGN.md's command table says.

In-process against the simulators (and their vendor variants); the CLI and `--record` run as a subprocess
in `test_check_cli` below, against the simulators on loopback.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.check import CheckReport, run_check
from reconciler.clients.http import RetryPolicy
from reconciler.mapping import load_mapping
from reconciler.sim.harness import SimPair
from reconciler.sim.si import SiSim
from reconciler.sim.zoho import ZohoSim
from reconciler.sim.zoho.state import NEEDED_SCOPES
from tests.conftest import DEFAULT_MAPPING, run_cli

PROBES = [
    "zoho.token",
    "zoho.fields",
    "zoho.coql",
    "zoho.coql.since",
    "si.subscribe.list",
    "si.message_statuses",
]


def check(pair: SimPair, tmp_path: Path, mapping: Path = DEFAULT_MAPPING, **overrides: Any) -> CheckReport:
    settings = pair.settings(tmp_path / "reconciler.db", mapping, **overrides)
    return run_check(
        settings, load_mapping(mapping), transport=pair.transport(), policy=RetryPolicy.no_waits(attempts=2)
    )


def lines(report: CheckReport) -> dict[str, tuple[str, str]]:
    return {p.name: (p.status, p.detail) for p in report.probes}


def with_deal(pair: SimPair) -> SimPair:
    pair.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    return pair


# ---- passing ---------------------------------------------------------------------------------------------


def test_every_read_is_probed_once_in_its_production_form_at_size_one(tmp_path: Path) -> None:
    """Six probes, six ok lines, exit 0: a fresh token; the field list; the deals COQL (quoted boolean,
    account join, LIMIT 1) for a full and an incremental read; SI's export list and pending statuses,
    page size 1, filters indexed."""
    pair = with_deal(SimPair())
    report = check(pair, tmp_path)
    assert [(p.name, p.status) for p in report.probes] == [(name, "ok") for name in PROBES]
    assert report.exit_code == 0 and report.problems == []
    assert "Zoho: credentials OK" in lines(report)["zoho.token"][1]
    assert "1 row with every column" in lines(report)["zoho.coql"][1]

    coql = [body["select_query"] for _, path, body in pair.zoho.requests if path == "/crm/v8/coql"]
    assert len(coql) == 2
    assert all(
        "Send_to_SI = 'true'" in q and "Account_Name.Account_Name" in q and q.endswith("limit 1")
        for q in coql
    )
    assert "Modified_Time >= '" in coql[1] and "+00:00'" in coql[1]
    listing, statuses = pair.si.requests
    assert (listing.path, listing.query["pageSize"], listing.query["includeImported"]) == (
        "/Subscribe/Projects",
        "1",
        "false",
    )
    assert (statuses.path, statuses.query["pageSize"], statuses.query["messageTypeIds[1]"]) == (
        "/Message/PublishedMessagesStatus",
        "1",
        "12",
    )


def test_check_writes_nothing_anywhere(tmp_path: Path) -> None:
    """No Zoho write, no SI publish or acknowledgement, no database file: only reads and one token."""
    pair = with_deal(SimPair())
    pair.si.add_unknown_project(Name="Waiting export")
    check(pair, tmp_path)
    zoho_calls = {(method, path) for method, path, _ in pair.zoho.requests}
    assert zoho_calls == {
        ("POST", "/oauth/v2/token"),
        ("GET", "/crm/v8/settings/fields"),
        ("POST", "/crm/v8/coql"),
    }
    assert {(r.method, r.path) for r in pair.si.requests} == {
        ("GET", "/Subscribe/Projects"),
        ("GET", "/Message/PublishedMessagesStatus"),
    }
    assert pair.si.acks == [] and not pair.si.export_messages[0].imported
    assert not (tmp_path / "reconciler.db").exists()


@pytest.mark.parametrize(
    "pair",
    [
        pytest.param(
            lambda: SimPair(zoho=ZohoSim(boolean_literals="quoted")), id="zoho-refuses-bare-booleans"
        ),
        pytest.param(lambda: SimPair(si=SiSim(array_filters="indexed")), id="si-refuses-repeated-keys"),
    ],
)
def test_strict_variants_pass_because_the_daemon_sends_the_documented_forms(
    pair: Any, tmp_path: Path
) -> None:
    """A Zoho that refuses `= true`, an SI that refuses `x=1&x=2`: every probe passes, exit 0."""
    report = check(with_deal(pair()), tmp_path)
    assert report.exit_code == 0, report.problems


# ---- failing with the vendor's code and the fix ---------------------------------------------------------


def test_a_grant_without_the_accounts_scope_fails_with_zohos_code_and_the_scope_to_add(
    tmp_path: Path,
) -> None:
    """OAUTH_SCOPE_MISMATCH on the deals query: exit 1, and the line names the missing scope, found by
    running the query once more without its join."""
    pair = with_deal(SimPair(zoho=ZohoSim(scopes=NEEDED_SCOPES - {"ZohoCRM.modules.accounts.READ"})))
    report = check(pair, tmp_path)
    assert report.exit_code == 1
    status, detail = lines(report)["zoho.coql"]
    assert status == "FAIL"
    assert detail == (
        "OAUTH_SCOPE_MISMATCH: add ZohoCRM.modules.accounts.READ to the grant (the deals query joins"
        " Account_Name)"
    )
    assert any("ZohoCRM.modules.accounts.READ" in p and "reconciler auth" in p for p in report.problems)
    assert lines(report)["si.subscribe.list"][0] == "ok"  # SI is probed regardless


def test_a_grant_without_the_fields_scope_names_it_and_still_probes_the_query(tmp_path: Path) -> None:
    """OAUTH_SCOPE_MISMATCH on the field list names ZohoCRM.settings.fields.READ; the COQL still runs."""
    pair = with_deal(SimPair(zoho=ZohoSim(scopes=NEEDED_SCOPES - {"ZohoCRM.settings.fields.READ"})))
    report = check(pair, tmp_path)
    assert lines(report)["zoho.fields"] == (
        "FAIL",
        "OAUTH_SCOPE_MISMATCH: add ZohoCRM.settings.fields.READ to the grant",
    )
    assert lines(report)["zoho.coql"][0] == "ok"
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("pair", "probe", "said"),
    [
        pytest.param(
            lambda: SimPair(zoho=ZohoSim(boolean_literals="bare")),
            "zoho.coql",
            'HTTP 400 INVALID_QUERY value given is not a valid boolean {"value": "true"}',
            id="zoho-refuses-quoted-booleans",
        ),
        pytest.param(
            lambda: SimPair(si=SiSim(array_filters="repeated")),
            "si.message_statuses",
            "HTTP 400 The request is invalid. (ModelState: messageStatusIds[0], messageTypeIds[0],"
            " messageTypeIds[1])",
            id="si-refuses-indexed-filters",
        ),
    ],
)
def test_a_vendor_refusing_the_form_we_send_fails_the_probe_with_its_own_words(
    pair: Any, probe: str, said: str, tmp_path: Path
) -> None:
    """Should a vendor disagree with its own documentation, `check` says so at install time: exit 1, the
    vendor's status, code and details, and what to do."""
    report = check(with_deal(pair()), tmp_path)
    assert report.exit_code == 1
    status, detail = lines(report)[probe]
    assert status == "FAIL" and detail.startswith(said) and "--record FILE" in detail


def test_a_row_without_the_join_column_is_a_warning(tmp_path: Path) -> None:
    """Zoho answering the deals query without `Account_Name.Account_Name` (the key the daemon reads the
    account's name under): `warn` naming the column, exit 0."""
    pair = with_deal(SimPair())
    row = {"id": "1", "Modified_Time": "2026-01-12T09:14:02+00:00", "Send_to_SI": True, "SI_Project_ID": None}
    row |= {"SI_Sync_Status": None, "Deal_Name": "D", "Account_Name": {"id": "2"}}
    body = {"data": [row], "info": {"count": 1, "more_records": False}}
    pair.zoho.inject("POST", "/crm/v8/coql", status=200, body=body, times=2)
    report = check(pair, tmp_path)
    status, detail = lines(report)["zoho.coql"]
    assert status == "warn" and "lacks Account_Name.Account_Name" in detail
    assert report.exit_code == 0


def test_an_ignored_status_filter_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    """SI answering an imported message to a pending-only listing: `warn`, exit 0 (the daemon copes)."""
    pair = with_deal(SimPair())
    with httpx.Client(transport=pair.si.transport(), headers={"X-DTSI-ApiKey": pair.si.api_key}) as http:
        http.post("http://si.sim/SI/Publish/Projects", json={"Client": "A", "Name": "P"})
    pair.si.import_pending()
    pair.si.ignore_status_filters = True
    report = check(pair, tmp_path)
    status, detail = lines(report)["si.message_statuses"]
    assert status == "warn" and "SI ignored the filter" in detail and "StatusId 2" in detail
    assert report.exit_code == 0


def test_refused_credentials_are_configuration_and_skip_that_vendors_other_probes(tmp_path: Path) -> None:
    """A bad refresh token: zoho.token FAILs with Zoho's invalid_code and the fix, the Zoho reads are
    skipped, SI is still probed; exit 78 (the fix is in the settings)."""
    report = check(with_deal(SimPair()), tmp_path, zoho_refresh_token="1000.not-a-grant")
    assert [(p.name, p.status) for p in report.probes] == [
        ("zoho.token", "FAIL"),
        ("zoho.fields", "skip"),
        ("zoho.coql", "skip"),
        ("zoho.coql.since", "skip"),
        ("si.subscribe.list", "ok"),
        ("si.message_statuses", "ok"),
    ]
    assert lines(report)["zoho.token"][1].startswith("Zoho rejected the refresh token (invalid_code)")
    assert report.exit_code == 78


def test_an_unreachable_host_is_named_with_its_endpoint_after_two_attempts(tmp_path: Path) -> None:
    """Nothing listens at ZOHO_ACCOUNTS_URL: the line names the host and `POST .../oauth/v2/token`, after 2
    attempts (the daemon makes 5); the other Zoho probes are skipped; exit 1."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    pair = with_deal(SimPair())
    settings = pair.settings(tmp_path / "db", DEFAULT_MAPPING, zoho_accounts_url=f"http://127.0.0.1:{port}")
    report = run_check(
        settings,
        load_mapping(DEFAULT_MAPPING),
        transport=_RouteLoopback(pair),
        policy=RetryPolicy.no_waits(attempts=2),
    )
    status, detail = lines(report)["zoho.token"]
    assert status == "FAIL"
    assert detail.startswith(f"cannot reach 127.0.0.1 (POST http://127.0.0.1:{port}/oauth/v2/token)")
    assert "after 2 attempts" in detail
    assert report.recording is not None
    assert len([e for e in report.recording.exchanges if e.probe == "zoho.token"]) == 2
    assert lines(report)["zoho.coql"][0] == "skip" and lines(report)["si.subscribe.list"][0] == "ok"
    assert report.exit_code == 1


class _RouteLoopback(httpx.BaseTransport):
    """The in-process sims for their own hosts, a real socket for anything else (a closed port)."""

    def __init__(self, pair: SimPair) -> None:
        self.sims = pair.transport()
        self.real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = self.sims if request.url.host.endswith(".sim") else self.real
        return target.handle_request(request)

    def close(self) -> None:
        self.real.close()


# ---- fields --------------------------------------------------------------------------------------------


def _field(sim: ZohoSim, name: str, **changes: Any) -> None:
    entry = next(f for f in sim.fields_meta if f["api_name"] == name)
    entry.update(changes)


@pytest.mark.parametrize(
    ("name", "changes", "problem"),
    [
        (
            "Labor_Hours",
            {"data_type": "formula"},
            "mapping fields[1].zoho: Zoho field Labor_Hours is a formula field (Zoho computes it), and the"
            " reconciler writes it; map another field or change the field in Zoho",
        ),
        (
            "SI_Sync_Status",
            {"read_only": True},
            "mapping zoho.status_field: Zoho field SI_Sync_Status is read-only for the user of this grant"
            " (read_only), and the reconciler writes it; map another field or change the field in Zoho",
        ),
        (
            "SI_Project_ID",
            {"field_read_only": True},
            "mapping zoho.link_field: Zoho field SI_Project_ID is read-only for everyone (field_read_only),"
            " and the reconciler writes it; map another field or change the field in Zoho",
        ),
        (
            "CO_Number",
            {"operation_type": {"api_update": False, "api_create": True}},
            "mapping fields[3].zoho: Zoho field CO_Number is closed to updates through the API"
            " (operation_type.api_update is false), and the reconciler writes it; map another field or change"
            " the field in Zoho",
        ),
        (
            "Revision_Number",
            {"data_type": "integer"},
            "mapping fields[2].zoho: Zoho field Revision_Number is integer, which cannot hold a text value",
        ),
    ],
)
def test_a_field_we_write_must_fit_and_be_writable(
    name: str, changes: dict[str, Any], problem: str, tmp_path: Path
) -> None:
    """Formula, read-only (per user or for all), API-closed, or a text value into a number: exit 78."""
    pair = with_deal(SimPair())
    _field(pair.zoho, name, **changes)
    report = check(pair, tmp_path)
    assert report.problems == [problem]
    assert report.exit_code == 78
    assert lines(report)["zoho.coql"][0] == "skip"


def test_a_field_we_only_read_may_be_read_only_or_a_formula(tmp_path: Path) -> None:
    """Deal_Name (read into SI's Name) as a read-only formula is fine: the reconciler never writes it."""
    pair = with_deal(SimPair())
    _field(pair.zoho, "Deal_Name", data_type="formula", read_only=True, field_read_only=True)
    assert check(pair, tmp_path).exit_code == 0


# ---- the command ------------------------------------------------------------------------------------------


def test_check_cli_prints_one_line_per_probe_and_records_without_a_secret(tmp_path: Path) -> None:
    """`reconciler check --record FILE` on loopback sims with distinctive secrets: six ok lines, exit 0,
    no database created; the file (mode 0600) keeps record ids and carries no configured secret, client
    id or issued token."""
    zoho = ZohoSim(
        client_id="1000.CLIENTIDc4fe", client_secret="cs-9d2eSECRETbabe", refresh_token="1000.rtSECRETf00d"
    )
    pair = SimPair(zoho=zoho, si=SiSim(api_key="sikey-SECRETcafe"))
    deal = pair.zoho.add_deal(Deal_Name="Recorded", Account_Name="Acme", Send_to_SI=True)
    record = tmp_path / "check.json"
    with pair:
        env = pair.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING)
        result = run_cli(["check", "--record", str(record)], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    probe_lines = [
        line for line in result.stdout.splitlines() if line.startswith(("ok ", "warn", "FAIL", "skip"))
    ]
    assert [line.split()[1] for line in probe_lines] == PROBES
    assert not (tmp_path / "reconciler.db").exists()

    text = record.read_text(encoding="utf-8")
    assert os.stat(record).st_mode & 0o777 == 0o600
    forbidden = {zoho.client_id, zoho.client_secret, zoho.refresh_token, pair.si.api_key}
    forbidden |= set(pair.zoho.issued_access_tokens)
    assert pair.zoho.issued_access_tokens, "the check should have been issued a token"
    assert [secret for secret in forbidden if secret in text] == []
    document = json.loads(text)
    # zoho.fields reads Deals, then each module the default mapping joins (Accounts, Contacts)
    probes = [name for name in PROBES for _ in range(3 if name == "zoho.fields" else 1)]
    assert [e["probe"] for e in document["exchanges"]] == probes
    assert [e["request"]["url"].rsplit("=", 1)[1] for e in document["exchanges"][1:4]] == [
        "Deals",
        "Accounts",
        "Contacts",
    ]
    coql = document["exchanges"][4]
    assert coql["response"]["body"]["data"][0]["id"] == deal  # record ids are kept for fixtures
    assert coql["request"]["headers"]["authorization"].endswith("***")
