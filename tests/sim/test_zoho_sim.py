"""The Zoho simulator follows the reference: tokens and their limits, COQL, per-record writes, faults."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from reconciler.sim.zoho import ZohoSim

BASE = "http://127.0.0.1"


class SimClock:
    """A controllable clock for the simulator."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
def sim(clock: SimClock) -> ZohoSim:
    return ZohoSim(clock=clock)


@pytest.fixture
def web(sim: ZohoSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sim.transport(), base_url=BASE) as client:
        yield client


GRANT = {
    "grant_type": "refresh_token",
    "client_id": "sim-client",
    "client_secret": "sim-secret",
    "refresh_token": "sim-refresh",
}


def token(web: httpx.Client, **overrides: str) -> dict[str, Any]:
    answer = web.post("/oauth/v2/token", data=GRANT | overrides)
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def api(web: httpx.Client) -> httpx.Client:
    """The same client, now carrying a valid access token."""
    web.headers["Authorization"] = f"Zoho-oauthtoken {token(web)['access_token']}"
    return web


def coql(api: httpx.Client, query: str) -> httpx.Response:
    return api.post("/crm/v8/coql", json={"select_query": query})


def rows(api: httpx.Client, query: str) -> list[dict[str, Any]]:
    answer = coql(api, query)
    if answer.status_code == 204:
        return []
    assert answer.status_code == 200, answer.text
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


# ---- accounts -----------------------------------------------------------------------------------------


def test_refresh_grant_returns_a_one_hour_token_for_the_request_origin(
    sim: ZohoSim, web: httpx.Client
) -> None:
    """A good refresh grant: access_token, expires_in 3600, token_type Bearer, api_domain = our origin."""
    body = token(web)
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer" and body["api_domain"] == BASE
    assert body["access_token"].startswith("1000.")
    assert sim.tokens_issued == 1


def test_token_params_are_accepted_in_the_query_string(web: httpx.Client) -> None:
    """Zoho's docs send the grant as query parameters; that works as well as a form body."""
    assert "access_token" in web.post("/oauth/v2/token", params=GRANT).json()


def test_bad_grants_answer_http_200_with_an_error(web: httpx.Client) -> None:
    """A bad refresh token is 200 invalid_code; a bad client secret is 200 invalid_client."""
    bad_refresh = web.post("/oauth/v2/token", data=GRANT | {"refresh_token": "nope"})
    assert (bad_refresh.status_code, bad_refresh.json()) == (200, {"error": "invalid_code"})
    bad_client = web.post("/oauth/v2/token", data=GRANT | {"client_secret": "nope"})
    assert (bad_client.status_code, bad_client.json()) == (200, {"error": "invalid_client"})


def test_eleventh_token_in_ten_minutes_is_access_denied(
    sim: ZohoSim, web: httpx.Client, clock: SimClock
) -> None:
    """Ten tokens per refresh token per ten minutes; the 11th is 400 Access Denied; the window slides."""
    for _ in range(10):
        assert "access_token" in token(web)
    denied = web.post("/oauth/v2/token", data=GRANT)
    assert denied.status_code == 400 and denied.json()["error"] == "Access Denied"
    clock.advance(minutes=10)
    assert "access_token" in token(web)
    sim.token_limit = False
    for _ in range(12):
        assert "access_token" in token(web)
    assert sim.tokens_issued == 23


def test_grant_code_works_once_and_yields_a_refresh_token(sim: ZohoSim, web: httpx.Client) -> None:
    """``issue_grant_code`` codes exchange once for a refresh token, which then works."""
    code = sim.issue_grant_code()
    exchange = {"grant_type": "authorization_code", "code": code}
    first = web.post("/oauth/v2/token", data=GRANT | exchange).json()
    assert "access_token" in first and first["refresh_token"]
    assert "access_token" in token(web, refresh_token=first["refresh_token"])
    assert web.post("/oauth/v2/token", data=GRANT | exchange).json() == {"error": "invalid_code"}


def test_client_credentials_grant_needs_a_zohocrm_soid(web: httpx.Client) -> None:
    """``client_credentials`` with ``soid=ZohoCRM.<org>`` is granted; a malformed soid is not."""
    grant = {"grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret"}
    ok = web.post("/oauth/v2/token", data=grant | {"soid": "ZohoCRM.771234", "scope": "ZohoCRM.coql.READ"})
    assert "access_token" in ok.json()
    assert web.post("/oauth/v2/token", data=grant | {"soid": "771234"}).json() == {"error": "invalid_code"}


def test_missing_dropped_or_expired_token_is_401_invalid_token(
    sim: ZohoSim, api: httpx.Client, clock: SimClock
) -> None:
    """No token, a dropped token and a token older than an hour all answer 401 INVALID_TOKEN."""
    query = "select Deal_Name from Deals where Send_to_SI = true"
    assert coql(api, query).status_code == 204
    clock.advance(minutes=61)
    expired = coql(api, query)
    assert expired.status_code == 401
    assert expired.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }
    api.headers["Authorization"] = f"Zoho-oauthtoken {token(api)['access_token']}"
    sim.expire_tokens()
    assert coql(api, query).status_code == 401
    del api.headers["Authorization"]
    assert coql(api, query).json()["code"] == "INVALID_TOKEN"


# ---- COQL ---------------------------------------------------------------------------------------------


def test_three_criteria_need_brackets(sim: ZohoSim, api: httpx.Client) -> None:
    """``A and B and C`` is SYNTAX_ERROR; ``((A and B) and C)`` works."""
    sim.add_deal(Deal_Name="A", Send_to_SI=True, Amount=5)
    bare = coql(api, "select Deal_Name from Deals where Send_to_SI = true and Amount > 1 and Amount < 9")
    assert bare.status_code == 400 and bare.json()["code"] == "SYNTAX_ERROR"
    grouped = "select Deal_Name from Deals where ((Send_to_SI = true and Amount > 1) and Amount < 9)"
    assert [row["Deal_Name"] for row in rows(api, grouped)] == ["A"]


def test_lookup_is_id_only_and_the_join_column_gives_the_name(sim: ZohoSim, api: httpx.Client) -> None:
    """``Account_Name`` comes back as {"id"}; ``Account_Name.Account_Name`` as a flat name key."""
    account = sim.add_account("Zylker Corp")
    by_name = sim.add_deal(Deal_Name="A", Account_Name="Zylker Corp")
    by_id = sim.add_deal(Deal_Name="B", Account_Name=account)
    assert sim.deal(by_name)["Account_Name"] == {"name": "Zylker Corp", "id": account}
    assert sim.deal(by_id)["Account_Name"] == {"name": "Zylker Corp", "id": account}
    got = rows(
        api, "select Account_Name, Account_Name.Account_Name from Deals where Account_Name is not null"
    )
    assert got == [
        {"id": by_name, "Account_Name": {"id": account}, "Account_Name.Account_Name": "Zylker Corp"},
        {"id": by_id, "Account_Name": {"id": account}, "Account_Name.Account_Name": "Zylker Corp"},
    ]
    assert len(rows(api, f"select Deal_Name from Deals where Account_Name = '{account}'")) == 2


def test_unset_boolean_is_false_and_empty_text_is_null(sim: ZohoSim, api: httpx.Client) -> None:
    """An unset checkbox reads and matches as false; an empty text field is null."""
    unset = sim.add_deal(Deal_Name="A", SI_Project_ID="")
    linked = sim.add_deal(Deal_Name="B", Send_to_SI=True, SI_Project_ID="P-1")
    got = rows(api, "select Send_to_SI, SI_Project_ID from Deals where Send_to_SI = false")
    assert got == [{"id": unset, "Send_to_SI": False, "SI_Project_ID": None}]
    assert [r["id"] for r in rows(api, "select Deal_Name from Deals where SI_Project_ID is null")] == [unset]
    assert [r["id"] for r in rows(api, "select Deal_Name from Deals where SI_Project_ID is not null")] == [
        linked
    ]


def test_comparison_operators(sim: ZohoSim, api: httpx.Client, clock: SimClock) -> None:
    """``in``, ``not in``, ``!=``, numbers, ids numerically and datetimes as datetimes."""
    first = sim.add_deal(Deal_Name="A", Stage="Qualification", Amount=100)
    clock.advance(minutes=30)
    second = sim.add_deal(Deal_Name="B", Stage="Closed Won", Amount=2500.5)

    def ids(where: str) -> list[str]:
        return [row["id"] for row in rows(api, f"select Deal_Name from Deals where {where}")]

    assert ids("Stage in ('Closed Won', 'Closed Lost')") == [second]
    assert ids("Stage not in ('Closed Won')") == [first]
    assert ids("Stage != 'Closed Won'") == [first]
    assert ids("(Amount >= 100 and Amount < 2500.5)") == [first]
    assert ids(f"id > '{first}'") == [second]
    assert ids("Modified_Time > '2025-03-01T09:15:00+00:00'") == [second]
    assert ids("Modified_Time <= '2025-03-01T14:30:00+05:30'") == [first]  # 09:00 UTC, written in IST


def test_order_offset_and_more_records(sim: ZohoSim, api: httpx.Client) -> None:
    """``order by ... desc``, ``limit``/``offset`` and ``info.more_records``."""
    ids = [sim.add_deal(Deal_Name=f"D{n}", Amount=n) for n in range(5)]
    answer = coql(
        api, "select Amount from Deals where Amount >= 0 order by Amount desc limit 2 offset 1"
    ).json()
    assert [row["id"] for row in answer["data"]] == [ids[3], ids[2]]
    assert answer["info"] == {"count": 2, "more_records": True}
    last = coql(api, "select Amount from Deals where Amount >= 0 order by id asc limit 2 offset 3").json()
    assert last["info"] == {"count": 2, "more_records": False}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("select Deal_Name from Deals where Amount > 1 limit 2001", "LIMIT_EXCEEDED"),
        ("select Deal_Name from Deals where Amount > 1 limit 2000 offset 98001", "LIMIT_EXCEEDED"),
        ("select " + ", ".join(["Deal_Name"] * 501) + " from Deals where Amount > 1", "LIMIT_EXCEEDED"),
        ("select Nope from Deals where Amount > 1", "INVALID_QUERY"),
        ("select Deal_Name from Deals where Nope = 1", "INVALID_QUERY"),
        ("select Deal_Name from Deals where Amount >", "SYNTAX_ERROR"),
        ("select Deal_Name from Deals where Amount > 'lots'", "INVALID_QUERY"),
        ("select Deal_Name from Deals where Amount > 1 limit 2.5", "INVALID_QUERY"),
        ("select Deal_Name from Leads where Amount > 1", "INVALID_QUERY"),
    ],
)
def test_coql_limits_and_errors(sim: ZohoSim, api: httpx.Client, query: str, code: str) -> None:
    """Limits (2,000 rows, 100,000 offset+limit, 500 fields) and bad names/values are 400 with Zoho codes."""
    sim.add_deal(Deal_Name="A", Amount=5)
    answer = coql(api, query)
    assert answer.status_code == 400
    assert answer.json()["code"] == code and answer.json()["status"] == "error"


def test_no_rows_is_204_with_an_empty_body(api: httpx.Client) -> None:
    """Zero rows: HTTP 204, no body."""
    answer = coql(api, "select Deal_Name from Deals where Send_to_SI = true")
    assert (answer.status_code, answer.content) == (204, b"")


# ---- writes -------------------------------------------------------------------------------------------


def test_update_answers_per_record_in_input_order(sim: ZohoSim, api: httpx.Client, clock: SimClock) -> None:
    """200 all ok, 207 mixed, 400 all failed; bad id/field/type fail alone; success bumps Modified_Time."""
    deal = sim.add_deal(Deal_Name="A")
    clock.advance(minutes=5)
    ok = api.put(
        "/crm/v8/Deals", json={"data": [{"id": deal, "Amount": 12, "Send_to_SI": True}], "trigger": []}
    )
    assert ok.status_code == 200
    item = ok.json()["data"][0]
    assert (item["code"], item["message"], item["status"]) == ("SUCCESS", "record updated", "success")
    assert item["details"]["Modified_Time"] == "2025-03-01T09:05:00+00:00" == sim.deal(deal)["Modified_Time"]
    mixed = api.put(
        "/crm/v8/Deals",
        json={
            "data": [
                {"id": "1234567890123456789", "Amount": 1},
                {"id": deal, "Nope": 1},
                {"id": deal, "Closing_Date": "31/01/2025"},
                {"id": deal, "Labor_Hours": 7.5},
            ]
        },
    )
    assert mixed.status_code == 207
    details = [entry["details"] for entry in mixed.json()["data"]]
    assert details[0] == {"id": "1234567890123456789"}
    assert details[1] == {"api_name": "Nope", "json_path": "$.data[1].Nope"}
    assert details[2]["expected_data_type"] == "date"
    assert sim.deal(deal)["Labor_Hours"] == 7.5
    failed = api.put("/crm/v8/Deals", json={"data": [{"id": deal, "Send_to_SI": "yes"}]})
    assert failed.status_code == 400 and failed.json()["data"][0]["code"] == "INVALID_DATA"
    assert sim.triggers == [[], None, None]


def test_update_of_more_than_100_records_is_refused(sim: ZohoSim, api: httpx.Client) -> None:
    """More than 100 records in one PUT is a request-level 400 LIMIT_EXCEEDED."""
    deal = sim.add_deal(Deal_Name="A")
    answer = api.put("/crm/v8/Deals", json={"data": [{"id": deal, "Amount": n} for n in range(101)]})
    assert answer.status_code == 400 and answer.json()["code"] == "LIMIT_EXCEEDED"


def test_notes_create_validates_each_note(sim: ZohoSim, api: httpx.Client) -> None:
    """201 ``record added``; a long title/content or a non-deal parent fails alone (207); >200 refused."""
    deal = sim.add_deal(Deal_Name="A")
    parent = {"module": {"api_name": "Deals"}, "id": deal}
    good = {"Note_Title": "CO 1", "Note_Content": "Approved", "Parent_Id": parent}
    created = api.post("/crm/v8/Notes", json={"data": [good]})
    assert created.status_code == 201 and created.json()["data"][0]["message"] == "record added"
    batch = [
        good,
        good | {"Note_Title": "x" * 121},
        good | {"Note_Content": "x" * 65536},
        good | {"Parent_Id": {"module": {"api_name": "Deals"}, "id": "1234567890123456789"}},
    ]
    mixed = api.post("/crm/v8/Notes", json={"data": batch})
    assert mixed.status_code == 207
    assert [entry["status"] for entry in mixed.json()["data"]] == ["success", "error", "error", "error"]
    assert [note["Note_Title"] for note in sim.notes_for(deal)] == ["CO 1", "CO 1"]
    assert api.post("/crm/v8/Notes", json={"data": [good] * 200}).status_code == 201
    too_many = api.post("/crm/v8/Notes", json={"data": [good] * 201})
    assert too_many.status_code == 400 and too_many.json()["code"] == "LIMIT_EXCEEDED"


def test_deal_notes_are_paged_and_204_when_none(sim: ZohoSim, api: httpx.Client) -> None:
    """GET Deals/{id}/Notes pages with per_page <= 200 and answers 204 past the end or when none."""
    deal, empty = sim.add_deal(Deal_Name="A"), sim.add_deal(Deal_Name="B")
    for n in range(3):
        sim.add_note(deal, f"T{n}", f"C{n}")
    params = {"fields": "Note_Title,Note_Content", "per_page": 2, "page": 1}
    page = api.get(f"/crm/v8/Deals/{deal}/Notes", params=params).json()
    assert [note["Note_Title"] for note in page["data"]] == ["T0", "T1"]
    assert page["info"]["more_records"] is True
    last = api.get(f"/crm/v8/Deals/{deal}/Notes", params=params | {"page": 2}).json()
    assert [note["Note_Content"] for note in last["data"]] == ["C2"] and last["info"]["more_records"] is False
    assert api.get(f"/crm/v8/Deals/{empty}/Notes", params=params).status_code == 204
    assert api.get(f"/crm/v8/Deals/{deal}/Notes", params=params | {"per_page": 201}).status_code == 400


def test_fields_and_unknown_routes(sim: ZohoSim, api: httpx.Client) -> None:
    """settings/fields lists the catalogue with our custom fields; an unknown path is INVALID_URL_PATTERN."""
    fields = api.get("/crm/v8/settings/fields", params={"module": "Deals"}).json()["fields"]
    types = {entry["api_name"]: entry["data_type"] for entry in fields}
    assert (
        types["Send_to_SI"] == "boolean"
        and types["Labor_Hours"] == "double"
        and types["Amount"] == "currency"
    )
    assert {"SI_Project_ID", "SI_Sync_Status", "Revision_Number", "CO_Number", "Progress_Status"} <= set(
        types
    )
    missing = api.get("/crm/v8/Nope")
    assert missing.status_code == 404 and missing.json()["code"] == "INVALID_URL_PATTERN"


def test_edit_deal_bumps_modified_time(sim: ZohoSim, clock: SimClock) -> None:
    """A salesperson's edit changes the field and Modified_Time, never Created_Time."""
    deal = sim.add_deal(Deal_Name="A")
    assert sim.deal(deal)["Created_Time"] == "2025-03-01T09:00:00+00:00"
    clock.advance(seconds=90)
    sim.edit_deal(deal, Stage="Closed Won")
    record = sim.deal(deal)
    assert record["Stage"] == "Closed Won" and record["Modified_Time"] == "2025-03-01T09:01:30+00:00"
    assert record["Created_Time"] == "2025-03-01T09:00:00+00:00"


def test_deal_ids_are_19_digit_and_increasing(sim: ZohoSim) -> None:
    """Record ids are 19-digit numeric strings, increasing (so keyset paging sees creation order)."""
    ids = [sim.add_deal(Deal_Name=str(n)) for n in range(3)]
    assert all(len(i) == 19 and i.isdigit() for i in ids)
    assert ids == sorted(ids, key=int)


# ---- faults -------------------------------------------------------------------------------------------


def test_fault_after_apply_loses_the_answer_but_keeps_the_write(sim: ZohoSim, api: httpx.Client) -> None:
    """``before=False`` applies the write, then answers the fault (a lost answer)."""
    deal = sim.add_deal(Deal_Name="A")
    sim.inject("PUT", "/crm/v8/Deals", status=502, before=False)
    assert api.put("/crm/v8/Deals", json={"data": [{"id": deal, "Amount": 3}]}).status_code == 502
    assert sim.deal(deal)["Amount"] == 3
    sim.inject("PUT", "/crm/v8/Deals", status=503)
    assert api.put("/crm/v8/Deals", json={"data": [{"id": deal, "Amount": 4}]}).status_code == 503
    assert sim.deal(deal)["Amount"] == 3
    assert sim.count("PUT", "/crm/v8/Deals") == 2


def test_fault_kinds_and_times(sim: ZohoSim, api: httpx.Client) -> None:
    """Fault kinds: ``timeout`` raises, ``malformed`` is broken JSON, ``empty204``; ``times`` counts down."""
    query = "select Deal_Name from Deals where Send_to_SI = true"
    sim.inject("POST", "/crm/v8/coql", kind="timeout")
    with pytest.raises(httpx.ReadTimeout):
        coql(api, query)
    sim.inject("POST", "/crm/v8/coql", kind="malformed")
    malformed = coql(api, query)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    sim.inject("GET", "/crm/v8/settings", kind="empty204")
    assert api.get("/crm/v8/settings/fields", params={"module": "Deals"}).status_code == 204
    sim.inject("POST", "/crm/v8/coql", status=429, headers={"Retry-After": "3"}, times=2)
    throttled = [coql(api, query) for _ in range(3)]
    assert [r.status_code for r in throttled] == [429, 429, 204]
    assert throttled[0].headers["Retry-After"] == "3" and throttled[0].json()["code"] == "TOO_MANY_REQUESTS"
    assert sim.requests[-1] == ("POST", "/crm/v8/coql", {"select_query": query})
