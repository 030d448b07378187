"""The real parsers on the vendors' own documented samples (`tests/fixtures/vendor/`), and the simulators
held to the same shapes.

Each fixture names its source page and keeps the sample's keys, nesting, types, codes and messages (names,
ids and dates are ours). Zoho: tokens, COQL (200/204/400), bulk update with per-record errors, notes
create and list, fields metadata, error bodies. SI: publish, update, message status(es), the export list,
project detail by id and by message, and the empty 200/204 answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.check_fields import field_problems
from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.si import SiClient
from reconciler.clients.zoho import (
    CachedToken,
    MemoryTokenCache,
    NoteDraft,
    ZohoAuth,
    ZohoClient,
    exchange_grant_code,
)
from reconciler.errors import CredentialsError, PermanentApiError
from reconciler.mapping import Mapping
from reconciler.sim.harness import SimPair

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor"
ZOHO = "https://www.zohoapis.com"
ACCOUNTS = "https://accounts.zoho.com"
SI_BASE = "https://api.d-tools.com/SI"


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def answer(name: str) -> httpx.Response:
    """The fixture as the vendor would send it."""
    data = sample(name)
    if data["body"] is None:
        return httpx.Response(data["status"])
    return httpx.Response(data["status"], json=data["body"], headers=data.get("headers"))


Route = Callable[[httpx.Request], str]


def client(route: Route) -> tuple[httpx.Client, list[httpx.Request]]:
    """An httpx client answering each request with the fixture ``route`` names; keeps the requests."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(route(request))

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


NOW = 1_770_000_000.0


def zoho(route: Route, token: str = "zoho/token_refresh") -> tuple[ZohoClient, ZohoAuth, list[httpx.Request]]:
    """A Zoho client whose token requests get ``token`` and whose API calls get ``route``'s fixture."""
    raw, seen = client(lambda r: token if r.url.path == "/oauth/v2/token" else route(r))
    auth = ZohoAuth(
        accounts_url=ACCOUNTS,
        client_id="1000.ID",
        client_secret="s3",
        refresh_token="1000.r",
        cache=MemoryTokenCache(),
        clock=lambda: NOW,
    )
    http = HttpClient(raw, policy=RetryPolicy.no_waits())
    return ZohoClient(http, api_url=None, default_api_url=ZOHO, auth=auth), auth, seen


def cached(auth: ZohoAuth) -> CachedToken:
    token = auth._cache.load_token(auth.cache_key)
    assert token is not None
    return token


@pytest.fixture
def si_for() -> Iterator[Callable[[str], SiClient]]:
    made: list[httpx.Client] = []

    def build(name: str) -> SiClient:
        raw, _ = client(lambda r: name)
        made.append(raw)
        return SiClient(HttpClient(raw, policy=RetryPolicy.no_waits()), SI_BASE, "key")

    yield build
    for raw in made:
        raw.close()


def test_every_fixture_names_its_source() -> None:
    """Each sample says where it comes from and how faithful it is."""
    names = sorted(FIXTURES.glob("*/*.json"))
    assert len(names) >= 25
    for path in names:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["source"] and data["fidelity"] and isinstance(data["status"], int), path.name


# ---- Zoho: tokens ------------------------------------------------------------------------------------------


def test_a_documented_token_answer_is_cached_for_its_hour_and_names_the_api_domain() -> None:
    """`{access_token, expires_in: 3600, api_domain, token_type}`: the token is sent, it is cached for
    3600 s, and once known its api_domain is the API origin (the very first call, made before any token
    existed, goes to ZOHO_DC's default: see the README's vendor assumptions)."""
    client_, auth, seen = zoho(lambda r: "zoho/coql_204")
    client_.coql("select id from Deals where Send_to_SI = 'true' limit 1")
    client_.coql("select id from Deals where Send_to_SI = 'true' limit 1")
    token = cached(auth)
    assert (token.api_domain, token.expires_at) == ("https://www.zohoapis.eu", NOW + 3600)
    access = sample("zoho/token_refresh")["body"]["access_token"]
    assert [r.url.host for r in seen] == ["accounts.zoho.com", "www.zohoapis.com", "www.zohoapis.eu"]
    assert seen[2].headers["Authorization"] == f"Zoho-oauthtoken {access}"


def test_an_older_token_answer_in_milliseconds_is_read_as_one_hour() -> None:
    """`expires_in_sec: 3600, expires_in: 3600000` (Zoho's older answers): one hour, not 41 days."""
    client_, auth, _ = zoho(lambda r: "zoho/coql_204", token="zoho/token_expires_in_sec")
    client_.coql("select id from Deals limit 1")
    assert cached(auth).expires_at == NOW + 3600


def test_a_grant_code_answer_gives_its_refresh_token() -> None:
    """The authorization-code answer carries `refresh_token`: `auth --code` prints exactly it."""
    raw, _ = client(lambda r: "zoho/token_authorization_code")
    with raw:
        token = exchange_grant_code(HttpClient(raw), ACCOUNTS, "1000.ID", "s3", "1000.code")
    assert token == sample("zoho/token_authorization_code")["body"]["refresh_token"]


def test_invalid_code_with_http_200_is_a_credentials_error() -> None:
    """A refused refresh token is HTTP 200 `{"error": "invalid_code"}`: credentials, not a token."""
    client_, _, _ = zoho(lambda r: "zoho/coql_204", token="zoho/token_invalid_code")
    with pytest.raises(CredentialsError, match="invalid_code"):
        client_.coql("select id from Deals limit 1")


# ---- Zoho: COQL --------------------------------------------------------------------------------------------


def test_coql_rows_and_more_records() -> None:
    """`{data: [...], info: {count, more_records}}`: the rows as sent, joined column included."""
    client_, _, _ = zoho(lambda r: "zoho/coql_200")
    rows, more = client_.coql("select Deal_Name, Account_Name.Account_Name from Deals limit 1")
    assert rows == sample("zoho/coql_200")["body"]["data"] and more is False


def test_coql_syntax_error_is_permanent_and_names_zohos_code() -> None:
    """400 SYNTAX_ERROR: a PermanentApiError carrying the code and Zoho's message, sent once."""
    client_, _, seen = zoho(lambda r: "zoho/coql_400_syntax_error")
    with pytest.raises(PermanentApiError, match="SYNTAX_ERROR error occured while parsing the query"):
        client_.coql("select where")
    assert len([r for r in seen if r.url.path == "/crm/v8/coql"]) == 1


# ---- Zoho: writes ------------------------------------------------------------------------------------------


def test_a_mixed_bulk_update_reads_each_records_result_in_order() -> None:
    """207: the first record updated, the second refused with INVALID_DATA naming its field."""
    client_, _, _ = zoho(lambda r: "zoho/deals_update_207")
    ok, bad = client_.update_records(
        [{"id": "4876876000002210014", "Amount": 1}, {"id": "2", "Labor_Hourz": 1}]
    )
    assert (ok.ok, ok.id, ok.code) == (True, "4876876000002210014", "SUCCESS")
    assert (bad.ok, bad.id, bad.code) == (False, "2", "INVALID_DATA")
    assert bad.details == {"api_name": "Labor_Hourz", "json_path": "$.data[1].Labor_Hourz"}


def test_a_400_with_per_record_data_is_results_not_an_exception() -> None:
    """400 `{data: [INVALID_DATA expected_data_type]}`: one failed result, no request-level error."""
    client_, _, _ = zoho(lambda r: "zoho/deals_update_400")
    (result,) = client_.update_records([{"id": "7", "Labor_Hours": "12x"}])
    assert (result.ok, result.code, result.details["expected_data_type"]) == (False, "INVALID_DATA", "double")


def test_created_notes_carry_their_new_ids_and_a_partial_failure_stays_per_note() -> None:
    """201: the note's id from `details.id`; 207: one created, one EXPECTED_FIELD_MISSING."""
    client_, _, _ = zoho(lambda r: "zoho/notes_create_201")
    (created,) = client_.create_notes([NoteDraft("4876876000002210014", "T", "C")])
    assert (created.ok, created.id) == (True, "4876876000006021077")
    client_, _, _ = zoho(lambda r: "zoho/notes_create_207")
    first, second = client_.create_notes([NoteDraft("1", "T", "C"), NoteDraft("1", "", "")])
    assert (first.ok, first.id, second.ok, second.code) == (
        True,
        "4876876000006021081",
        False,
        "EXPECTED_FIELD_MISSING",
    )


def test_a_deals_notes_list_keeps_a_null_title() -> None:
    """GET Deals/{id}/Notes: the notes as sent (a null Note_Title included), one page."""
    client_, _, seen = zoho(lambda r: "zoho/notes_list_200")
    (note,) = client_.deal_notes("4876876000002210014")
    assert note["Note_Title"] is None and "[zohosi-ref note:" in note["Note_Content"]
    assert seen[-1].url.params["fields"] == "Note_Title,Note_Content"


# ---- Zoho: fields and errors -------------------------------------------------------------------------------


def test_fields_metadata_is_read_and_a_field_read_only_for_everyone_is_refused_for_writes() -> None:
    """The catalogue as sent; field_read_only (true on Owner in Zoho's own sample) refuses our writes."""
    client_, _, _ = zoho(lambda r: "zoho/fields_200")
    catalogue = client_.fields()
    assert [f["api_name"] for f in catalogue] == ["Labor_Hours", "Owner", "SI_Project_ID"]
    ours = Mapping(flag_field="SI_Project_ID", link_field="SI_Project_ID", status_field=None, create=())
    assert field_problems(ours, catalogue) == [
        "mapping zoho.flag_field: Zoho field SI_Project_ID is text, which cannot hold a boolean value"
    ]
    owner_as_text = [{**catalogue[1], "data_type": "text"}]  # the sample's Owner flags, on a text field
    (problem,) = field_problems(Mapping(link_field="Owner", status_field=None, create=()), [
        {**owner_as_text[0], "api_name": "Send_to_SI", "data_type": "boolean"}, *owner_as_text])  # fmt: skip
    assert "Zoho field Owner is read-only for everyone (field_read_only)" in problem


def test_oauth_scope_mismatch_is_reported_with_its_code_and_never_refreshes() -> None:
    """401 OAUTH_SCOPE_MISMATCH: a CredentialsError naming the code; the token is not refreshed for it."""
    client_, _, seen = zoho(lambda r: "zoho/error_401_oauth_scope_mismatch")
    with pytest.raises(CredentialsError, match="OAUTH_SCOPE_MISMATCH"):
        client_.fields()
    assert [r.url.path for r in seen].count("/oauth/v2/token") == 1


def test_invalid_token_refreshes_once_then_gives_up_as_credentials() -> None:
    """401 INVALID_TOKEN: one refresh and one resend; a second 401 is a credentials problem."""
    client_, _, seen = zoho(lambda r: "zoho/error_401_invalid_token")
    with pytest.raises(CredentialsError, match="INVALID_TOKEN"):
        client_.fields()
    assert [r.url.path for r in seen] == ["/oauth/v2/token", "/crm/v8/settings/fields"] * 2


def test_invalid_url_pattern_is_permanent() -> None:
    """404 INVALID_URL_PATTERN: a PermanentApiError with Zoho's code."""
    client_, _, _ = zoho(lambda r: "zoho/error_404_invalid_url_pattern")
    with pytest.raises(PermanentApiError, match="INVALID_URL_PATTERN"):
        client_.fields()


# ---- SI ----------------------------------------------------------------------------------------------------


def test_si_publish_and_update_answers(si_for: Callable[[str], SiClient]) -> None:
    """PublishProjectResponse gives ProjectId and MessageId; PublishResponse gives the MessageId."""
    published = si_for("si/publish_200").publish_project({"Client": "A", "Name": "P"})
    assert (published.project_id, published.message_id) == (
        "3f2c0d1e-7a6b-4c5d-8e9f-0a1b2c3d4e5f",
        "6b1d3c2e-9f8a-4e7d-a6c5-b4a3928170f6",
    )
    message_id = si_for("si/update_200").update_project(published.project_id, [(1, "New name")])
    assert message_id == "0e9d8c7b-6a5f-4e3d-b2c1-a0f9e8d7c6b5"


def test_si_message_status_and_statuses(si_for: Callable[[str], SiClient]) -> None:
    """One status (ImportedOn with 7-digit fractions and an offset, as the help page shows) and a page."""
    status = si_for("si/message_status_200").message_status("6b1d3c2e-9f8a-4e7d-a6c5-b4a3928170f6")
    assert (status.imported, status.type_id, status.imported_on) == (
        True,
        11,
        "2026-02-07T07:01:54.3024701+00:00",
    )
    from datetime import datetime

    assert datetime.fromisoformat(status.imported_on or "").microsecond == 302470
    listed = list(si_for("si/message_statuses_200").iter_message_statuses())
    assert [(s.type_id, s.pending) for s in listed] == [(11, True), (12, True)]


def test_si_export_list_and_the_two_detail_reads(si_for: Callable[[str], SiClient]) -> None:
    """ProjectInfo entries folded to lower-case keys (CONumber a string in the list); the Project by id
    and by message (CONumber an integer there)."""
    base, change_order = si_for("si/projects_200").iter_exports()
    assert (base["conumber"], change_order["conumber"], base["publishedonunixtimems"]) == (
        None,
        "2",
        1770447714302,
    )
    detail = si_for("si/project_200").get_project("3f2c0d1e-7a6b-4c5d-8e9f-0a1b2c3d4e5f")
    assert (detail["hours"], detail["revision"], detail["ischangeorder"]) == (42.5, 3, False)
    by_message = si_for("si/project_by_message_200").get_project_by_message(
        "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e"
    )
    assert (by_message["conumber"], by_message["costatus"], by_message["price"]) == (2, "Approved", 1200.0)


@pytest.mark.parametrize("name", ["si/mark_imported_200_empty", "si/mark_imported_204"])
def test_si_acknowledgements_answer_with_no_body(name: str, si_for: Callable[[str], SiClient]) -> None:
    """MarkAsImported / MarkAsImportedByMessageId: a 200 with no content, or a 204, is success."""
    client_ = si_for(name)
    client_.mark_imported("3f2c0d1e-7a6b-4c5d-8e9f-0a1b2c3d4e5f", None, 1770447714302)
    client_.mark_imported_by_message("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", 1770447714302)


def test_si_denial_is_a_credentials_error(si_for: Callable[[str], SiClient]) -> None:
    """401 `{"Message": "Authorization has been denied for this request."}`: the key is refused."""
    with pytest.raises(CredentialsError, match="SI_API_KEY"):
        list(si_for("si/denied_401").iter_exports())


# ---- the simulators answer in the documented shapes --------------------------------------------------------


def _keys(value: Any) -> set[str]:
    return set(value) if isinstance(value, dict) else set()


def test_the_simulators_answer_with_the_keys_of_the_documented_samples() -> None:
    """Sim and sample agree on every envelope and entry the clients read: token, COQL, per-record write
    results, notes list info, fields entries; SI publish, status, status list, ProjectInfo, Project."""
    pair = SimPair()
    deal = pair.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    with httpx.Client(transport=pair.transport()) as web:
        token = web.post("http://zoho.sim/oauth/v2/token", data={
            "grant_type": "refresh_token", "client_id": "sim-client", "client_secret": "sim-secret",
            "refresh_token": "sim-refresh"}).json()  # fmt: skip
        web.headers["Authorization"] = f"Zoho-oauthtoken {token['access_token']}"
        coql = web.post(
            "http://zoho.sim/crm/v8/coql", json={"select_query": "select Deal_Name from Deals"}
        ).json()
        update = web.put("http://zoho.sim/crm/v8/Deals", json={"data": [{"id": deal, "Amount": 5}]}).json()
        note = {
            "Note_Title": "T",
            "Note_Content": "C",
            "Parent_Id": {"module": {"api_name": "Deals"}, "id": deal},
        }
        created = web.post("http://zoho.sim/crm/v8/Notes", json={"data": [note]}).json()
        notes = web.get(f"http://zoho.sim/crm/v8/Deals/{deal}/Notes", params={"fields": "Note_Title"}).json()
        fields = web.get("http://zoho.sim/crm/v8/settings/fields", params={"module": "Deals"}).json()
        web.headers["X-DTSI-ApiKey"] = pair.si.api_key
        published = web.post("http://si.sim/SI/Publish/Projects", json={"Client": "A", "Name": "P"}).json()
        status = web.get(
            "http://si.sim/SI/Message/PublishedMessageStatus", params={"messageId": published["MessageId"]}
        ).json()
        statuses = web.get("http://si.sim/SI/Message/PublishedMessagesStatus").json()
        pair.si.import_pending()
        projects = web.get("http://si.sim/SI/Subscribe/Projects").json()
        detail = web.get(f"http://si.sim/SI/Subscribe/Projects/{published['ProjectId']}").json()

    assert _keys(sample("zoho/token_refresh")["body"]) <= _keys(token)
    assert _keys(sample("zoho/coql_200")["body"]["info"]) == _keys(coql["info"])
    assert _keys(sample("zoho/deals_update_207")["body"]["data"][0]) == _keys(update["data"][0])
    success_details = _keys(sample("zoho/deals_update_207")["body"]["data"][0]["details"]) - {
        "$approval_state"
    }
    assert success_details <= _keys(update["data"][0]["details"])
    assert _keys(sample("zoho/notes_create_201")["body"]["data"][0]["details"]) == _keys(
        created["data"][0]["details"]
    )
    assert _keys(sample("zoho/notes_list_200")["body"]["info"]) == _keys(notes["info"])
    read_keys = {"api_name", "data_type", "json_type", "read_only", "field_read_only", "operation_type"}
    assert all(read_keys <= _keys(entry) for entry in fields["fields"])
    assert _keys(sample("si/publish_200")["body"]) == _keys(published)
    assert _keys(sample("si/message_status_200")["body"]) == _keys(status)
    assert _keys(sample("si/message_statuses_200")["body"]) == _keys(statuses)
    assert _keys(sample("si/projects_200")["body"]["Projects"][0]) == _keys(projects["Projects"][0])
    assert _keys(sample("si/project_200")["body"]) <= _keys(detail)
