"""The Zoho client and its OAuth flow, against the Zoho simulator (in-process, and once over loopback)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, get_args

import httpx
import pytest

from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.zoho import (
    DATA_CENTRES,
    DEFAULT_SCOPE,
    DataCentre,
    MemoryTokenCache,
    NoteDraft,
    ZohoAuth,
    ZohoClient,
    exchange_grant_code,
)
from reconciler.errors import (
    ConfigError,
    CredentialsError,
    PermanentApiError,
    ProtocolError,
    TransientApiError,
)
from reconciler.logs import redactor
from reconciler.settings import Settings
from reconciler.sim.server import SimServer
from reconciler.sim.zoho import ZohoSim

BASE = "http://127.0.0.1"
FLAGGED = "Send_to_SI = true"


class Clock:
    """A controllable epoch clock for the client side."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    client: ZohoClient
    auth: ZohoAuth
    http: HttpClient
    cache: MemoryTokenCache
    sleeps: list[float]


RigFactory = Callable[..., Rig]


@pytest.fixture
def sim() -> ZohoSim:
    return ZohoSim()


@pytest.fixture
def rig(sim: ZohoSim) -> Iterator[RigFactory]:
    """Builds clients wired to ``sim`` with zero retry waits; closes them afterwards."""
    opened: list[httpx.Client] = []

    def make(
        *,
        cache: MemoryTokenCache | None = None,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
        refresh_token: str | None = "sim-refresh",
        soid: str | None = None,
        client_secret: str = "sim-secret",
        api_url: str | None = None,
        default_api_url: str = BASE,
    ) -> Rig:
        cache = cache if cache is not None else MemoryTokenCache()
        sleeps: list[float] = []
        raw = httpx.Client(transport=sim.transport())
        opened.append(raw)
        http = HttpClient(raw, policy=policy or RetryPolicy.no_waits(), sleep=sleeps.append)
        auth = ZohoAuth(
            accounts_url=BASE,
            client_id="sim-client",
            client_secret=client_secret,
            refresh_token=refresh_token,
            soid=soid,
            cache=cache,
            clock=clock,
        )
        client = ZohoClient(http, api_url=api_url, default_api_url=default_api_url, auth=auth)
        return Rig(client, auth, http, cache, sleeps)

    yield make
    for raw in opened:
        raw.close()


def _queries(sim: ZohoSim) -> list[str]:
    return [body["select_query"] for method, path, body in sim.requests if path == "/crm/v8/coql"]


# ---- OAuth --------------------------------------------------------------------------------------------


def test_data_centres_cover_every_dc_with_zohocloud_for_canada() -> None:
    """Every DC in Zoho's tables (UK included) maps to its API and accounts origins; Canada's accounts
    host is zohocloud.ca; ZOHO_DC accepts exactly the table's keys."""
    assert set(DATA_CENTRES) == {"com", "eu", "in", "com.au", "jp", "ca", "sa", "uk", "com.cn"}
    assert DATA_CENTRES["ca"] == ("https://www.zohoapis.ca", "https://accounts.zohocloud.ca")
    assert DATA_CENTRES["eu"] == ("https://www.zohoapis.eu", "https://accounts.zoho.eu")
    assert DATA_CENTRES["uk"] == ("https://www.zohoapis.uk", "https://accounts.zoho.uk")
    assert list(get_args(DataCentre)) == list(DATA_CENTRES)


def test_zoho_dc_uk_points_the_token_request_at_accounts_zoho_uk(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ZOHO_DC=uk`` is accepted and sends the token request to accounts.zoho.uk, the API to zohoapis.uk."""
    monkeypatch.setenv("ZOHO_DC", "uk")
    settings = Settings(_env_file=None)
    assert (settings.accounts_url, settings.zoho_default_api_url) == (
        "https://accounts.zoho.uk",
        "https://www.zohoapis.uk",
    )


def test_refresh_token_grant_is_posted_as_form_and_token_sent_as_zoho_oauthtoken(
    sim: ZohoSim, rig: RigFactory
) -> None:
    """The refresh-token grant is a form POST; the API call carries ``Zoho-oauthtoken <token>``."""
    r = rig()
    assert r.client.coql(f"select Deal_Name from Deals where {FLAGGED}") == ([], False)
    assert sim.token_requests == [
        {
            "client_id": "sim-client",
            "client_secret": "sim-secret",
            "grant_type": "refresh_token",
            "refresh_token": "sim-refresh",
        }
    ]
    cached = r.cache.load_token(r.auth.cache_key)
    assert cached is not None and cached.api_domain == BASE
    assert redactor(f"token={cached.access_token}") == "token=***"


def test_client_credentials_grant_sends_soid_and_scope(sim: ZohoSim, rig: RigFactory) -> None:
    """Without a refresh token the client-credentials grant sends ``soid=ZohoCRM.<org>`` and the scopes."""
    r = rig(refresh_token=None, soid="771234")
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    grant = sim.token_requests[-1]
    assert grant["grant_type"] == "client_credentials"
    assert grant["soid"] == "ZohoCRM.771234"
    assert grant["scope"] == DEFAULT_SCOPE
    assert sim.tokens_issued == 1


def test_auth_needs_a_refresh_token_or_soid() -> None:
    """Neither grant configured is a ConfigError naming the settings."""
    with pytest.raises(ConfigError, match="ZOHO_REFRESH_TOKEN"):
        ZohoAuth(accounts_url=BASE, client_id="c", client_secret="s", cache=MemoryTokenCache())


def test_cache_key_is_stable_and_holds_no_secret() -> None:
    """The cache key is derived from client id + grant but contains neither."""
    one = ZohoAuth(
        accounts_url=BASE,
        client_id="cid",
        client_secret="s",
        refresh_token="refresh-token-one",
        cache=MemoryTokenCache(),
    )
    two = ZohoAuth(
        accounts_url=BASE,
        client_id="cid",
        client_secret="x",
        refresh_token="refresh-token-one",
        cache=MemoryTokenCache(),
    )
    other = ZohoAuth(
        accounts_url=BASE,
        client_id="cid",
        client_secret="s",
        refresh_token="refresh-token-two",
        cache=MemoryTokenCache(),
    )
    assert one.cache_key == two.cache_key != other.cache_key
    assert "refresh-token-one" not in one.cache_key and "cid" not in one.cache_key


def test_token_is_shared_between_clients_through_the_cache(sim: ZohoSim, rig: RigFactory) -> None:
    """Two clients sharing one cache make one token request between them."""
    cache = MemoryTokenCache()
    first, second = rig(cache=cache), rig(cache=cache)
    first.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    second.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.tokens_issued == 1
    assert sim.count("POST", "/oauth/v2/token") == 1


def test_token_is_refreshed_five_minutes_before_it_expires(sim: ZohoSim, rig: RigFactory) -> None:
    """A cached token is used until 300 s before expiry, then replaced."""
    clock = Clock()
    r = rig(clock=clock)
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    clock.now += 3600 - 301
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.tokens_issued == 1
    clock.now += 2
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.tokens_issued == 2


def test_invalid_token_401_refreshes_once_and_succeeds(sim: ZohoSim, rig: RigFactory) -> None:
    """After the server drops our token, one 401 INVALID_TOKEN leads to one refresh and a resend."""
    sim.add_deal(Deal_Name="A", Send_to_SI=True)
    r = rig()
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    sim.expire_tokens()
    rows, _ = r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert [row["Deal_Name"] for row in rows] == ["A"]
    assert sim.tokens_issued == 2
    assert sim.count("POST", "/crm/v8/coql") == 3


def test_second_401_is_not_refreshed_again_and_is_a_credentials_error(sim: ZohoSim, rig: RigFactory) -> None:
    """A 401 that survives the one forced refresh is returned as is and becomes CredentialsError."""
    r = rig()
    sim.inject("POST", "/crm/v8/coql", status=401, times=2)
    with pytest.raises(CredentialsError, match="INVALID_TOKEN"):
        r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.count("POST", "/crm/v8/coql") == 2
    assert sim.tokens_issued == 2


def test_scope_mismatch_401_does_not_refresh(sim: ZohoSim, rig: RigFactory) -> None:
    """Only INVALID_TOKEN/AUTHENTICATION_FAILURE trigger a refresh; OAUTH_SCOPE_MISMATCH does not."""
    r = rig()
    body = {"code": "OAUTH_SCOPE_MISMATCH", "details": {}, "message": "Unauthorized", "status": "error"}
    sim.inject("POST", "/crm/v8/coql", status=401, body=body)
    with pytest.raises(CredentialsError, match="OAUTH_SCOPE_MISMATCH"):
        r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.tokens_issued == 1


def test_invalid_refresh_token_is_a_credentials_error_naming_the_setting(rig: RigFactory) -> None:
    """HTTP 200 ``invalid_code`` is a CredentialsError naming ZOHO_REFRESH_TOKEN, without the secret."""
    r = rig(refresh_token="not-the-refresh-token")
    with pytest.raises(CredentialsError) as caught:
        r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    text = str(caught.value)
    assert "invalid_code" in text and "ZOHO_REFRESH_TOKEN" in text
    assert "not-the-refresh-token" not in text and "sim-secret" not in text


def test_invalid_client_is_a_credentials_error_naming_the_settings(rig: RigFactory) -> None:
    """HTTP 200 ``invalid_client`` is a CredentialsError naming ZOHO_CLIENT_ID / ZOHO_CLIENT_SECRET."""
    r = rig(client_secret="wrong-secret")
    with pytest.raises(CredentialsError) as caught:
        r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    text = str(caught.value)
    assert "invalid_client" in text and "ZOHO_CLIENT_ID" in text and "ZOHO_CLIENT_SECRET" in text
    assert "wrong-secret" not in text


def test_token_limit_is_enforced_before_asking_zoho(sim: ZohoSim, rig: RigFactory) -> None:
    """With 10 tokens issued in the last 10 minutes, the client refuses without calling Zoho."""
    clock = Clock()
    r = rig(clock=clock)
    for _ in range(10):
        r.cache.note_token_issued(r.auth.cache_key, clock.now - 120)
    with pytest.raises(TransientApiError, match="10 access tokens"):
        r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.count("POST", "/oauth/v2/token") == 0
    clock.now += 481  # the oldest issue leaves the window
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.tokens_issued == 1


def test_access_denied_from_zoho_is_transient(sim: ZohoSim, rig: RigFactory) -> None:
    """Zoho's own token rate limit (``Access Denied``) is a TransientApiError, not retried in-cycle."""
    for _ in range(10):
        rig().client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    with pytest.raises(TransientApiError, match="Access Denied") as caught:
        rig().client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert caught.value.endpoint == "zoho.token"
    assert sim.count("POST", "/oauth/v2/token") == 11


def test_token_endpoint_5xx_is_retried_by_the_choke_point(sim: ZohoSim, rig: RigFactory) -> None:
    """A 503 from the token endpoint (inside the auth flow) is retried like any other 5xx."""
    sim.inject("POST", "/oauth/v2/token", status=503)
    r = rig()
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.count("POST", "/oauth/v2/token") == 2
    assert sim.tokens_issued == 1
    assert r.sleeps == [0.0]


def test_malformed_token_answer_is_a_protocol_error(sim: ZohoSim, rig: RigFactory) -> None:
    """A token answer that is not JSON is a ProtocolError."""
    sim.inject("POST", "/oauth/v2/token", kind="malformed")
    with pytest.raises(ProtocolError):
        rig().client.coql(f"select Deal_Name from Deals where {FLAGGED}")


def test_grant_code_is_exchanged_for_a_working_refresh_token(sim: ZohoSim, rig: RigFactory) -> None:
    """``exchange_grant_code`` returns a refresh token that then works; a reused code is invalid_code."""
    http = rig().http
    code = sim.issue_grant_code()
    refresh = exchange_grant_code(http, BASE, "sim-client", "sim-secret", code)
    assert sim.token_requests[-1]["grant_type"] == "authorization_code"
    rig(refresh_token=refresh).client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    with pytest.raises(CredentialsError, match="grant code"):
        exchange_grant_code(http, BASE, "sim-client", "sim-secret", code)


def test_api_domain_from_the_token_is_used_unless_api_url_is_set(rig: RigFactory) -> None:
    """Without ZOHO_API_URL the token's api_domain becomes the base; an explicit api_url always wins."""
    r = rig(default_api_url="http://127.0.0.1:9")
    assert r.client.base_url == "http://127.0.0.1:9"
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert r.client.base_url == BASE
    pinned = rig(api_url="http://127.0.0.1:7/")
    pinned.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert pinned.client.base_url == "http://127.0.0.1:7"


# ---- COQL ---------------------------------------------------------------------------------------------


def test_iter_records_pages_by_key_across_three_pages(sim: ZohoSim, rig: RigFactory) -> None:
    """Keyset paging: ``order by id`` with ``id > 'last'`` ANDed onto the bracketed criteria."""
    ids = [sim.add_deal(Deal_Name=f"D{n}", Send_to_SI=True) for n in range(5)]
    sim.add_deal(Deal_Name="unflagged")
    rows = list(rig().client.iter_records(["Deal_Name"], FLAGGED, page_size=2))
    assert [row["id"] for row in rows] == ids
    select = "select id, Deal_Name from Deals"
    assert _queries(sim) == [
        f"{select} where {FLAGGED} order by id asc limit 2",
        f"{select} where ({FLAGGED} and id > '{ids[1]}') order by id asc limit 2",
        f"{select} where ({FLAGGED} and id > '{ids[3]}') order by id asc limit 2",
    ]


def test_coql_without_rows_is_204_and_empty(sim: ZohoSim, rig: RigFactory) -> None:
    """A 204 answer means no rows: coql returns ([], False) and iter_records yields nothing."""
    r = rig()
    assert r.client.coql(f"select Deal_Name from Deals where {FLAGGED}") == ([], False)
    assert list(r.client.iter_records(["Deal_Name"], f"({FLAGGED} and SI_Project_ID is null)")) == []
    assert sim.count("POST", "/crm/v8/coql") == 2


def test_coql_400_is_permanent_names_the_code_and_is_not_retried(sim: ZohoSim, rig: RigFactory) -> None:
    """An unbracketed triple criterion is Zoho's SYNTAX_ERROR: PermanentApiError, sent once."""
    r = rig()
    with pytest.raises(PermanentApiError, match="SYNTAX_ERROR") as caught:
        r.client.coql("select Deal_Name from Deals where Send_to_SI = true and Amount > 1 and Amount < 9")
    assert caught.value.status == 400
    assert sim.count("POST", "/crm/v8/coql") == 1


def test_iter_records_refuses_more_than_500_fields(rig: RigFactory) -> None:
    """COQL selects at most 500 fields since v7 (id included): more is a ValueError before any call."""
    with pytest.raises(ValueError, match="500"):
        list(rig().client.iter_records([f"F{n}" for n in range(500)], FLAGGED))


# ---- writes -------------------------------------------------------------------------------------------


def test_update_records_sends_batches_of_100_without_triggers(sim: ZohoSim, rig: RigFactory) -> None:
    """250 records go out as 100 + 100 + 50, each call with ``"trigger": []``; one result per record."""
    ids = [sim.add_deal(Deal_Name=f"D{n}") for n in range(250)]
    results = rig().client.update_records([{"id": i, "SI_Sync_Status": "Linked"} for i in ids])
    sizes = [
        len(body["data"]) for method, path, body in sim.requests if (method, path) == ("PUT", "/crm/v8/Deals")
    ]
    assert sizes == [100, 100, 50]
    assert sim.triggers == [[], [], []]
    assert [res.id for res in results] == ids and all(res.ok for res in results)
    assert sim.deal(ids[-1])["SI_Sync_Status"] == "Linked"


def test_update_records_bad_id_fails_alone(sim: ZohoSim, rig: RigFactory) -> None:
    """A 207: the bad id gets INVALID_DATA, its batch-mates are applied."""
    good = [sim.add_deal(Deal_Name="A"), sim.add_deal(Deal_Name="B")]
    records = [
        {"id": good[0], "Amount": 10.5},
        {"id": "4150868000000000000", "Amount": 1},
        {"id": good[1], "Amount": 7},
    ]
    results = rig().client.update_records(records)
    assert [(res.ok, res.code) for res in results] == [
        (True, "SUCCESS"),
        (False, "INVALID_DATA"),
        (True, "SUCCESS"),
    ]
    assert results[1].id == "4150868000000000000" and results[1].details == {"id": "4150868000000000000"}
    assert sim.deal(good[0])["Amount"] == 10.5 and sim.deal(good[1])["Amount"] == 7


def test_update_records_all_failed_400_is_read_per_record(sim: ZohoSim, rig: RigFactory) -> None:
    """A 400 carrying ``data`` is per-record failures, not an exception."""
    deal = sim.add_deal(Deal_Name="A")
    results = rig().client.update_records([{"id": deal, "Amount": "12"}, {"id": deal, "Bogus__c": 1}])
    assert [res.ok for res in results] == [False, False]
    assert results[0].details["expected_data_type"] == "currency"
    assert results[1].details["api_name"] == "Bogus__c"


def test_update_records_request_level_400_raises(sim: ZohoSim, rig: RigFactory) -> None:
    """A 400 without ``data`` is a request-level PermanentApiError naming Zoho's code."""
    deal = sim.add_deal(Deal_Name="A")
    body = {
        "code": "INVALID_MODULE",
        "details": {},
        "message": "the module name given seems to be invalid",
        "status": "error",
    }
    sim.inject("PUT", "/crm/v8/Deals", status=400, body=body)
    with pytest.raises(PermanentApiError, match="INVALID_MODULE"):
        rig().client.update_records([{"id": deal, "Amount": 1}])


def test_update_records_empty_204_is_a_protocol_error(sim: ZohoSim, rig: RigFactory) -> None:
    """A write answered with an empty 204 broke the contract: ProtocolError."""
    deal = sim.add_deal(Deal_Name="A")
    sim.inject("PUT", "/crm/v8/Deals", kind="empty204")
    with pytest.raises(ProtocolError):
        rig().client.update_records([{"id": deal, "Amount": 1}])


def test_create_notes_batches_and_isolates_a_bad_parent(sim: ZohoSim, rig: RigFactory) -> None:
    """150 notes go out as 100 + 50; a note on a missing deal fails alone; results carry new note ids."""
    deal = sim.add_deal(Deal_Name="A")
    drafts = [NoteDraft(deal, f"Change order {n}", f"Status: Approved {n}") for n in range(150)]
    drafts[120] = NoteDraft("4150868000000000000", "orphan", "x")
    results = rig().client.create_notes(drafts)
    sizes = [
        len(body["data"])
        for method, path, body in sim.requests
        if (method, path) == ("POST", "/crm/v8/Notes")
    ]
    assert sizes == [100, 50]
    assert [n for n, res in enumerate(results) if not res.ok] == [120]
    assert results[120].code == "INVALID_DATA" and results[120].id is None
    assert [res.id for res in results if res.ok] == [note["id"] for note in sim.notes_for(deal)]
    first = sim.requests[-2][2]["data"][0]
    assert first["Parent_Id"] == {"module": {"api_name": "Deals"}, "id": deal}


def test_deal_notes_reads_every_page(sim: ZohoSim, rig: RigFactory) -> None:
    """Notes of a deal are read 200 a page until ``more_records`` is false; none is 204 -> []."""
    deal, empty = sim.add_deal(Deal_Name="A"), sim.add_deal(Deal_Name="B")
    for n in range(450):
        sim.add_note(deal, f"T{n}", f"C{n}")
    r = rig()
    notes = r.client.deal_notes(deal)
    assert [note["Note_Title"] for note in notes] == [f"T{n}" for n in range(450)]
    assert sim.count("GET", f"/crm/v8/Deals/{deal}/Notes") == 3
    assert r.client.deal_notes(empty) == []


def test_fields_lists_the_catalogue(sim: ZohoSim, rig: RigFactory) -> None:
    """``fields()`` returns Zoho's field list (api_name, data_type, field_label)."""
    sim.fields_meta = [entry for entry in sim.fields_meta if entry["api_name"] != "SI_Custom_1"]
    fields = {entry["api_name"]: entry for entry in rig().client.fields()}
    assert fields["Send_to_SI"]["data_type"] == "boolean"
    assert fields["Amount"]["field_label"] == "Amount"
    assert "SI_Custom_1" not in fields


# ---- the choke point ----------------------------------------------------------------------------------


def test_429_with_retry_after_waits_that_long(sim: ZohoSim, rig: RigFactory) -> None:
    """A 429 with ``Retry-After: 7`` is retried after 7 s (recorded, not slept)."""
    r = rig(policy=RetryPolicy(attempts=3, jitter=0))
    sim.inject("POST", "/crm/v8/coql", status=429, headers={"Retry-After": "7"})
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert r.sleeps == [7.0]
    assert sim.count("POST", "/crm/v8/coql") == 2


def test_429_without_retry_after_backs_off_exponentially(sim: ZohoSim, rig: RigFactory) -> None:
    """Without ``Retry-After`` the waits double: 1 s, then 2 s."""
    r = rig(policy=RetryPolicy(attempts=3, jitter=0))
    sim.inject("POST", "/crm/v8/coql", status=429, times=2)
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert r.sleeps == [1.0, 2.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_then_transient_when_attempts_run_out(
    sim: ZohoSim, rig: RigFactory, status: int
) -> None:
    """One 5xx is retried to success; three in a row (all attempts) become TransientApiError."""
    r = rig()
    sim.inject("POST", "/crm/v8/coql", status=status)
    r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.count("POST", "/crm/v8/coql") == 2
    sim.inject("POST", "/crm/v8/coql", status=status, times=3)
    with pytest.raises(TransientApiError) as caught:
        r.client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert caught.value.status == status and caught.value.endpoint == "zoho.coql"
    assert sim.count("POST", "/crm/v8/coql") == 5


def test_timeout_is_retried(sim: ZohoSim, rig: RigFactory) -> None:
    """A read timeout is retried by the choke point."""
    sim.add_deal(Deal_Name="A", Send_to_SI=True)
    sim.inject("POST", "/crm/v8/coql", kind="timeout")
    rows, _ = rig().client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert len(rows) == 1


def test_malformed_json_is_a_protocol_error_and_not_retried(sim: ZohoSim, rig: RigFactory) -> None:
    """A 200 with broken JSON is a ProtocolError after one call."""
    sim.inject("POST", "/crm/v8/coql", kind="malformed")
    with pytest.raises(ProtocolError):
        rig().client.coql(f"select Deal_Name from Deals where {FLAGGED}")
    assert sim.count("POST", "/crm/v8/coql") == 1


def test_over_real_loopback_http(sim: ZohoSim) -> None:
    """The same client works against the simulator served by SimServer over real HTTP on 127.0.0.1."""
    deal = sim.add_deal(Deal_Name="Loop", Send_to_SI=True, Account_Name="Zylker")
    with SimServer(sim.handle) as server, httpx.Client(timeout=5) as raw:
        auth = ZohoAuth(
            accounts_url=server.url,
            client_id="sim-client",
            client_secret="sim-secret",
            refresh_token="sim-refresh",
            cache=MemoryTokenCache(),
        )
        client = ZohoClient(
            HttpClient(raw, policy=RetryPolicy.no_waits()),
            api_url=None,
            default_api_url=server.url,
            auth=auth,
        )
        rows = list(client.iter_records(["Deal_Name", "Account_Name.Account_Name"], FLAGGED))
        assert rows == [{"id": deal, "Deal_Name": "Loop", "Account_Name.Account_Name": "Zylker"}]
        assert client.update_records([{"id": deal, "SI_Project_ID": "P-1"}])[0].ok
        assert client.create_notes([NoteDraft(deal, "t", "c")])[0].ok
        assert client.base_url == server.url
    assert sim.deal(deal)["SI_Project_ID"] == "P-1"


# ---- contract -----------------------------------------------------------------------------------------


def test_request_bodies_follow_zohos_openapi(sim: ZohoSim, rig: RigFactory, vendor_specs: ModuleType) -> None:
    """Every CRM request the client sends validates against Zoho's OpenAPI (skipped without the specs)."""
    validate = vendor_specs
    deals = [sim.add_deal(Deal_Name=f"D{n}", Send_to_SI=True, Account_Name="Zylker") for n in range(3)]
    client = rig().client
    list(
        client.iter_records(["Deal_Name", "Account_Name", "Account_Name.Account_Name"], FLAGGED, page_size=2)
    )
    client.update_records([{"id": deals[0], "SI_Project_ID": "P-1", "Amount": 12.5, "Send_to_SI": True}])
    client.create_notes([NoteDraft(deals[0], "Change order 1", "Status: Approved")])
    client.deal_notes(deals[0])
    client.fields()
    sent: list[tuple[str, str, Any]] = [req for req in sim.requests if req[1].startswith("/crm/v8/")]
    assert {(method, path.split("/")[3]) for method, path, _ in sent} >= {
        ("POST", "coql"),
        ("PUT", "Deals"),
        ("POST", "Notes"),
    }
    problems = [
        p for method, path, body in sent for p in validate.validate_request_body("zoho", method, path, body)
    ]
    assert problems == []
