"""The simulators' vendor variants and the forms issue 9 settles: COQL booleans, scopes, date-times, SI array
filters, archived/deleted projects, acknowledging one message, unknown statuses, UpdateFields ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from reconciler.sim.si import UPDATE_FIELDS, SiSim
from reconciler.sim.zoho import ZohoSim
from reconciler.sim.zoho.state import NEEDED_SCOPES

GRANT = {
    "grant_type": "refresh_token",
    "client_id": "sim-client",
    "client_secret": "sim-secret",
    "refresh_token": "sim-refresh",
}
KEY = {"X-DTSI-ApiKey": "sim-si-key"}


@contextmanager
def zoho_api(sim: ZohoSim, **grant: str) -> Iterator[httpx.Client]:
    """A client carrying an access token from the given grant (the default refresh token by default)."""
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1") as web:
        token = web.post("/oauth/v2/token", data=GRANT | grant).json()["access_token"]
        web.headers["Authorization"] = f"Zoho-oauthtoken {token}"
        yield web


def coql(api: httpx.Client, query: str) -> httpx.Response:
    return api.post("/crm/v8/coql", json={"select_query": query})


def flagged(sim: ZohoSim) -> tuple[str, str]:
    """One ticked deal with an account and one unticked."""
    yes = sim.add_deal(Deal_Name="Ticked", Send_to_SI=True, Account_Name="Acme")
    no = sim.add_deal(Deal_Name="Not ticked", Send_to_SI=False)
    return yes, no


# ---- Zoho: boolean literals ---------------------------------------------------------------------------


def test_the_default_sim_reads_quoted_and_bare_booleans_alike() -> None:
    """`Send_to_SI = 'true'` (documented) and `= true` select the same rows from the default simulator."""
    sim = ZohoSim()
    yes, _ = flagged(sim)
    with zoho_api(sim) as api:
        for literal in ("'true'", "true", "'TRUE'"):
            answer = coql(api, f"select Deal_Name from Deals where Send_to_SI = {literal}")
            assert [row["id"] for row in answer.json()["data"]] == [yes], literal
        assert len(coql(api, "select Deal_Name from Deals where Send_to_SI = 'false'").json()["data"]) == 1


def test_the_strict_variant_refuses_a_bare_boolean_with_a_syntax_error() -> None:
    """`boolean_literals="quoted"`: `= true` is 400 SYNTAX_ERROR with line, column and near, in Zoho's
    envelope; the quoted form still reads."""
    sim = ZohoSim(boolean_literals="quoted")
    yes, _ = flagged(sim)
    with zoho_api(sim) as api:
        query = "select Deal_Name from Deals where Send_to_SI = true"
        answer = coql(api, query)
        assert answer.status_code == 400
        assert answer.json() == {
            "code": "SYNTAX_ERROR",
            "details": {"line": 1, "column": query.index("true") + 1, "near": "true"},
            "message": "error occured while parsing the query",
            "status": "error",
        }
        quoted = coql(api, "select Deal_Name from Deals where Send_to_SI = 'true'")
        assert [row["id"] for row in quoted.json()["data"]] == [yes]


def test_a_variant_that_wants_bare_booleans_refuses_the_quoted_one() -> None:
    """`boolean_literals="bare"` (a Zoho that disagreed with its docs) answers `'true'` with INVALID_QUERY."""
    with zoho_api(ZohoSim(boolean_literals="bare")) as api:
        answer = coql(api, "select Deal_Name from Deals where Send_to_SI = 'true'")
        assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_QUERY")


def test_a_boolean_compared_with_other_text_is_an_invalid_query() -> None:
    """`Send_to_SI = 'maybe'` is not a boolean: 400 INVALID_QUERY, never an empty result."""
    sim = ZohoSim()
    flagged(sim)
    with zoho_api(sim) as api:
        answer = coql(api, "select Deal_Name from Deals where Send_to_SI = 'maybe'")
        assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_QUERY")


# ---- Zoho: scopes -------------------------------------------------------------------------------------


def test_a_grant_without_the_accounts_scope_cannot_join_the_account() -> None:
    """Without ZohoCRM.modules.accounts.READ, a COQL joining `Account_Name.` is 401 OAUTH_SCOPE_MISMATCH
    (Zoho's documented 401 example); the same query without the join, and `Account_Name.id`, still read."""
    sim = ZohoSim(scopes=NEEDED_SCOPES - {"ZohoCRM.modules.accounts.READ"})
    flagged(sim)
    with zoho_api(sim) as api:
        joined = coql(api, "select Deal_Name, Account_Name.Account_Name from Deals where Send_to_SI = 'true'")
        assert joined.status_code == 401
        assert joined.json() == {
            "code": "OAUTH_SCOPE_MISMATCH",
            "details": {},
            "message": "invalid oauth scope to access this URL",
            "status": "error",
        }
        plain = coql(api, "select Deal_Name, Account_Name.id from Deals where Send_to_SI = 'true'")
        assert plain.status_code == 200


@pytest.mark.parametrize(
    ("scopes", "ok"),
    [
        (NEEDED_SCOPES, True),
        ({"ZohoCRM.modules.ALL", "ZohoCRM.coql.READ"}, True),
        ({"zohocrm.modules.Deals.READ", "ZohoCRM.modules.Accounts.READ", "ZohoCRM.coql.READ"}, True),
        ({"ZohoCRM.modules.deals.READ", "ZohoCRM.modules.accounts.READ"}, False),  # no coql scope
        ({"ZohoCRM.modules.accounts.ALL", "ZohoCRM.coql.READ"}, False),  # no deals scope
    ],
)
def test_wider_scopes_cover_narrower_ones(scopes: set[str], ok: bool) -> None:
    """modules.ALL covers every module's READ; names compare case-insensitively; coql.READ is needed."""
    sim = ZohoSim(scopes=scopes)
    flagged(sim)
    with zoho_api(sim) as api:
        answer = coql(api, "select Account_Name.Account_Name from Deals where Send_to_SI = 'true'")
        assert (answer.status_code == 200) is ok, answer.text


def test_writes_need_their_own_scopes() -> None:
    """A read-only grant cannot PUT Deals, POST Notes or read the field list: 401 OAUTH_SCOPE_MISMATCH."""
    sim = ZohoSim(scopes={"ZohoCRM.modules.deals.READ", "ZohoCRM.coql.READ"})
    yes, _ = flagged(sim)
    with zoho_api(sim) as api:
        refused = [
            api.put("/crm/v8/Deals", json={"data": [{"id": yes, "Deal_Name": "x"}]}),
            api.post("/crm/v8/Notes", json={"data": [{"Note_Title": "t", "Parent_Id": {"id": yes}}]}),
            api.get("/crm/v8/settings/fields", params={"module": "Deals"}),
            api.get(f"/crm/v8/Deals/{yes}/Notes", params={"fields": "Note_Title"}),
        ]
        assert [(r.status_code, r.json()["code"]) for r in refused] == [(401, "OAUTH_SCOPE_MISMATCH")] * 4
    assert sim.deal(yes)["Deal_Name"] == "Ticked"


def test_a_client_credentials_token_has_the_scopes_it_asked_for() -> None:
    """`grant_type=client_credentials&scope=...`: the token holds exactly the scopes named."""
    sim = ZohoSim()
    flagged(sim)
    grant = {"grant_type": "client_credentials", "soid": "ZohoCRM.123", "scope": "ZohoCRM.coql.READ"}
    with zoho_api(sim, **grant) as api:
        answer = coql(api, "select Deal_Name from Deals where Send_to_SI = 'true'")
        assert answer.json()["code"] == "OAUTH_SCOPE_MISMATCH"


# ---- Zoho: date-times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2025-03-01T10:30:00+00:00", True),
        ("2025-03-01T16:00:00+05:30", True),
        ("2025-03-01T10:30:00-07:00", True),
        ("2025-03-01T10:30:00", False),
        ("2025-03-01T10:30:00Z", False),
        ("2025-03-01", False),
    ],
)
def test_a_date_time_is_written_with_its_utc_offset(value: str, ok: bool) -> None:
    """Zoho's Date/Time fields take `yyyy-MM-ddTHH:mm:ss±HH:mm`; anything else is INVALID_DATA naming the
    field, and nothing is written."""
    sim = ZohoSim()
    sim.fields_meta.append(
        {"api_name": "Install_At", "data_type": "datetime", "field_label": "Install At", "id": "1"}
        | {"custom_field": True, "read_only": False}
    )
    deal = sim.add_deal(Deal_Name="D")
    with zoho_api(sim) as api:
        answer = api.put("/crm/v8/Deals", json={"data": [{"id": deal, "Install_At": value}]})
    item = answer.json()["data"][0]
    if ok:
        assert (answer.status_code, item["status"], sim.deal(deal)["Install_At"]) == (200, "success", value)
    else:
        assert (answer.status_code, item["code"]) == (400, "INVALID_DATA")
        assert item["details"] == {
            "expected_data_type": "datetime",
            "api_name": "Install_At",
            "json_path": "$.data[0].Install_At",
        }
        assert "Install_At" not in sim.deal(deal)


# ---- SI: array filters ---------------------------------------------------------------------------------


@pytest.fixture
def si() -> SiSim:
    return SiSim(clock=lambda: 1_741_232_132.0)


def si_http(sim: SiSim) -> httpx.Client:
    return httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1/SI", headers=KEY)


INDEXED = "messageStatusIds[0]=1&messageTypeIds[0]=11&messageTypeIds[1]=12"
REPEATED = "messageStatusIds=1&messageTypeIds=11&messageTypeIds=12"


@pytest.mark.parametrize(
    ("accepted", "indexed_ok", "repeated_ok"),
    [("any", True, True), ("indexed", True, False), ("repeated", False, True)],
)
def test_array_filters_bind_in_the_forms_the_variant_accepts(
    accepted: Any, indexed_ok: bool, repeated_ok: bool
) -> None:
    """The default binds both forms as ASP.NET does; "indexed" (strict, the documented form) answers a
    repeated key with an ASP.NET model-state 400; "repeated" refuses the indexed form."""
    sim = SiSim(array_filters=accepted)
    with si_http(sim) as http:
        http.post("/Publish/Projects", json={"Client": "ACME", "Name": "P"})
        for query, ok in ((INDEXED, indexed_ok), (REPEATED, repeated_ok)):
            answer = http.get(f"/Message/PublishedMessagesStatus?{query}&pageNumber=1&pageSize=1")
            if ok:
                assert (answer.status_code, answer.json()["TotalCount"]) == (200, 1), query
            else:
                assert answer.status_code == 400, query
                assert answer.json()["Message"] == "The request is invalid."
                assert "messageTypeIds" in " ".join(answer.json()["ModelState"])


def test_a_filter_the_sim_ignores_lists_every_status(si: SiSim) -> None:
    """`ignore_status_filters`: PublishedMessagesStatus answers every message whatever it was asked for."""
    with si_http(si) as http:
        http.post("/Publish/Projects", json={"Client": "ACME", "Name": "P"})
        si.import_pending()
        http.post("/Publish/Projects", json={"Client": "ACME", "Name": "Q"})
        asked = f"/Message/PublishedMessagesStatus?{INDEXED}"
        assert [m["StatusId"] for m in http.get(asked).json()["MessageStatuses"]] == [1]
        si.ignore_status_filters = True
        assert [m["StatusId"] for m in http.get(asked).json()["MessageStatuses"]] == [2, 1]


# ---- SI: archived and deleted projects -----------------------------------------------------------------


def _listed(http: httpx.Client, **flags: str) -> list[tuple[str, bool, bool]]:
    answer = http.get("/Subscribe/Projects", params={"includeImported": "true", **flags}).json()
    return [(p["Id"], p["Archived"], p["Deleted"]) for p in answer["Projects"]]


def test_archived_and_deleted_exports_are_hidden_unless_asked_for(si: SiSim) -> None:
    """Archiving/deleting in SI exports the project flagged; GET /Subscribe/Projects hides those messages
    unless includeArchived/includeDeleted=true; unarchiving exports it visible again."""
    project = si.add_unknown_project(Name="P")
    other = si.add_unknown_project(Name="Q")
    with si_http(si) as http:
        si.archive_project(project)
        si.delete_project(other)
        assert _listed(http) == [(project, False, False), (other, False, False)]
        assert (project, True, False) in _listed(http, includeArchived="true")
        assert (other, False, True) in _listed(http, includeDeleted="true")
        assert (project, True, False) not in _listed(http, includeDeleted="true")
        si.unarchive_project(project)
        assert _listed(http)[-1] == (project, False, False)
    assert si.projects[project]["Archived"] is False and si.projects[other]["Deleted"] is True


# ---- SI: acknowledging, statuses ------------------------------------------------------------------------


def test_mark_as_imported_by_message_id_marks_exactly_that_message(si: SiSim) -> None:
    """Two unacknowledged messages of one project: acknowledging one by its id leaves the other listed."""
    project = si.add_unknown_project(Name="P")
    si.edit_project(project, Name="P2")
    first, second = si.export_messages
    with si_http(si) as http:
        answer = http.put(
            "/Subscribe/Projects/MarkAsImportedByMessageId",
            params={"messageId": first.message_id, "publishedOnUnixTimeMs": first.published_ms},
        )
        assert (answer.status_code, answer.content) == (200, b"")
        listed = http.get("/Subscribe/Projects").json()["Projects"]
    assert [p["MessageId"] for p in listed] == [second.message_id]
    assert (si.acks[-1].message_id, si.acks[-1].marked) == (first.message_id, 1)


def test_an_unknown_or_purged_message_status_is_a_404_with_a_body(si: SiSim) -> None:
    """Not documented: the sim answers 404 `{"Message": ...}` naming the id (configurable); a purged status
    (SI forgot it) answers the same and leaves the pending list."""
    with si_http(si) as http:
        message_id = http.post("/Publish/Projects", json={"Client": "A", "Name": "P"}).json()["MessageId"]
        status = "/Message/PublishedMessageStatus"
        assert http.get(status, params={"messageId": message_id}).json()["StatusId"] == 1
        assert si.purge_message_status(message_id) is True
        gone = http.get(status, params={"messageId": message_id})
        assert (gone.status_code, gone.json()) == (404, {"Message": f"Message '{message_id}' was not found."})
        assert http.get(f"/Message/PublishedMessagesStatus?{INDEXED}").json()["TotalCount"] == 0
        si.unknown_message_status = 400
        assert http.get(status, params={"messageId": str(uuid.uuid4())}).status_code == 400
    assert si.purge_message_status(message_id) is False


# ---- SI: UpdateFields ids --------------------------------------------------------------------------------


def test_update_field_ids_follow_the_published_table() -> None:
    """CustomField1..54 = 101..154, CustomField65..75 = 155..165; CustomField55..64 have no id."""
    assert UPDATE_FIELDS[101] == "CustomField1" and UPDATE_FIELDS[154] == "CustomField54"
    assert UPDATE_FIELDS[155] == "CustomField65" and UPDATE_FIELDS[165] == "CustomField75"
    assert max(UPDATE_FIELDS) == 165
    assert not {f"CustomField{n}" for n in range(55, 65)} & set(UPDATE_FIELDS.values())


def test_si_applies_field_155_to_custom_field_65_and_refuses_166(si: SiSim) -> None:
    """An update with ProjectFieldId 155 sets CustomField65 (a bool) on import; 166 is a 400."""
    project = si.add_unknown_project(Name="P")
    with si_http(si) as http:
        body: dict[str, Any] = {
            "ProjectId": project,
            "UpdateFields": [{"ProjectFieldId": 155, "Value": "true"}],
        }
        assert http.post("/Publish/Projects/Update", json=body).status_code == 200
        si.import_pending(export=False)
        body["UpdateFields"] = [{"ProjectFieldId": 166, "Value": "x"}]
        refused = http.post("/Publish/Projects/Update", json=body)
    assert si.projects[project]["CustomField65"] is True
    assert si.projects[project]["CustomField55"] is None
    assert (refused.status_code, refused.json()) == (400, {"Message": "Invalid ProjectFieldId '166'."})
