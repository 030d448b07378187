"""Issue 9, items 1-8 on the client side: the daemon sends the documented forms, and never trusts a filter.

Each test fails on the code before issue 9: the bare COQL boolean, repeated-key SI filters, a trusted
status filter, CustomFieldN = 100 + N, date-times without an offset, no scope hint, no UK data centre, no
acknowledgement by message id and no archived/deleted filters.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.si import SiClient
from reconciler.clients.zoho import MemoryTokenCache, ZohoAuth, ZohoClient
from reconciler.convert import to_zoho_json
from reconciler.errors import CredentialsError, PermanentApiError
from reconciler.mapping import FieldMap
from reconciler.sim.harness import SimPair
from reconciler.sim.si import SiSim
from reconciler.sim.zoho import ZohoSim
from reconciler.sim.zoho.state import NEEDED_SCOPES
from tests.conftest import cycle

BASE = "http://127.0.0.1"


@pytest.fixture
def si_sim() -> SiSim:
    return SiSim(array_filters="indexed")


@pytest.fixture
def si(si_sim: SiSim) -> Iterator[SiClient]:
    with httpx.Client(transport=si_sim.transport()) as raw:
        yield SiClient(HttpClient(raw, policy=RetryPolicy.no_waits()), BASE + "/SI", si_sim.api_key)


def _zoho(sim: ZohoSim) -> ZohoClient:
    raw = httpx.Client(transport=sim.transport())
    auth = ZohoAuth(
        accounts_url=BASE,
        client_id=sim.client_id,
        client_secret=sim.client_secret,
        refresh_token=sim.refresh_token,
        cache=MemoryTokenCache(),
    )
    return ZohoClient(
        HttpClient(raw, policy=RetryPolicy.no_waits()), api_url=BASE, default_api_url=BASE, auth=auth
    )


# ---- 1. the COQL boolean literal -----------------------------------------------------------------------


def test_a_cycle_reads_flagged_deals_from_a_zoho_that_takes_only_quoted_booleans(make_ctx: Any) -> None:
    """Against `boolean_literals="quoted"` the deals query works (it sends `Send_to_SI = 'true'`)."""
    sims = SimPair(zoho=ZohoSim(boolean_literals="quoted"))
    deal = sims.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    report = cycle(make_ctx(sims))
    assert report.exit_code == 0, report.message
    assert sims.zoho.deal(deal)["SI_Project_ID"] in {m.project_id for m in sims.si.publish_messages}
    queries = [body["select_query"] for _, path, body in sims.zoho.requests if path == "/crm/v8/coql"]
    assert queries and all("Send_to_SI = 'true'" in q for q in queries)


# ---- 2. SI list filters ----------------------------------------------------------------------------------


def test_status_filters_go_out_indexed_to_an_si_that_refuses_repeated_keys(
    si_sim: SiSim, si: SiClient
) -> None:
    """`messageStatusIds[0]=1&messageTypeIds[0]=11&messageTypeIds[1]=12`: the strict SI answers it."""
    published = si.publish_project({"Client": "ACME", "Name": "P"})
    assert [s.id for s in si.iter_message_statuses()] == [published.message_id]
    assert si_sim.requests[-1].query["messageTypeIds[1]"] == "12"


def test_a_status_filter_si_ignores_cannot_make_imported_look_pending(si_sim: SiSim, si: SiClient) -> None:
    """SI answering every status whatever was asked: entries of another StatusId/TypeId are skipped."""
    imported = si.publish_project({"Client": "ACME", "Name": "P"})
    si_sim.import_pending()
    pending = si.publish_project({"Client": "ACME", "Name": "Q"})
    si_sim.ignore_status_filters = True
    assert [s.id for s in si.iter_message_statuses()] == [pending.message_id]
    assert [s.id for s in si.iter_message_statuses(status_ids=(2,))] == [imported.message_id]


def test_deals_leave_queued_for_si_even_when_si_ignores_the_status_filter(make_ctx: Any) -> None:
    """The cycle lists pending publishes; an SI ignoring the filter lists the imported one too. The deal
    still moves from `Queued for SI` to `In SI`, never stuck."""
    sims = SimPair(si=SiSim(array_filters="indexed"))
    deal = sims.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    ctx = make_ctx(sims)
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "Queued for SI"
    sims.si.import_pending()
    sims.si.ignore_status_filters = True
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deal)["SI_Sync_Status"] == "In SI"


# ---- 3. SI custom field ids -------------------------------------------------------------------------------


def test_custom_field_ids_follow_dtools_table() -> None:
    """CustomField1 = 101, CustomField54 = 154, CustomField65 = 155, CustomField75 = 165, 55..64 none."""
    ids = {
        n: FieldMap(zoho="X", si=f"CustomField{n}", direction="zoho_to_si").si_field_id for n in range(1, 76)
    }
    assert (ids[1], ids[54], ids[65], ids[75]) == (101, 154, 155, 165)
    assert all(ids[n] is None for n in range(55, 65))


def test_mapping_onto_a_custom_field_without_an_id_stops_with_exit_78(
    mapping_file: Any, tmp_path: Any
) -> None:
    """`zoho_to_si` onto CustomField60 (no ProjectFieldId in D-Tools' table) is a mapping error naming it."""
    from reconciler.errors import ConfigError
    from reconciler.mapping import load_mapping

    path = mapping_file(
        """
        [create]
        Name = "Deal_Name"
        Client = "Account_Name.name"
        [[fields]]
        zoho = "Amount"
        si = "CustomField60"
        direction = "zoho_to_si"
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert caught.value.exit_code == 78
    assert caught.value.problems == (
        f"mapping {path}: fields[0].si: SI cannot receive CustomField60 (it has no ProjectFieldId);"
        ' use direction = "si_to_zoho"',
    )


def test_a_zoho_edit_reaches_custom_field_65_as_project_field_155(make_ctx: Any, mapping_file: Any) -> None:
    """A Zoho -> SI mapping onto CustomField65 sends ProjectFieldId 155, which SI applies to CustomField65."""
    sims = SimPair()
    sims.zoho.fields_meta.append(
        {"api_name": "Rush", "data_type": "boolean", "field_label": "Rush", "id": "9"}
        | {"custom_field": True, "read_only": False}
    )
    mapping = mapping_file(
        textwrap.dedent(
            """
            [create]
            Name = "Deal_Name"
            Client = "Account_Name.name"
            [[fields]]
            zoho = "Rush"
            si = "CustomField65"
            direction = "zoho_to_si"
            """
        )
    )
    deal = sims.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    ctx = make_ctx(sims, mapping)
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    sims.zoho.edit_deal(deal, Rush=True)
    assert cycle(ctx).exit_code == 0
    update = next(r for r in sims.si.requests if r.path == "/Publish/Projects/Update")
    assert update.body["UpdateFields"] == [{"ProjectFieldId": 155, "Value": "true"}]
    sims.si.import_pending()
    assert sims.si.projects[sims.zoho.deal(deal)["SI_Project_ID"]]["CustomField65"] is True


# ---- 4. Zoho date-times ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("2025-03-01T10:30:00", "2025-03-01T10:30:00+00:00"),  # SI's form, UTC by SI's own documentation
        ("2025-03-01T16:00:00+05:30", "2025-03-01T10:30:00+00:00"),
        ("2025-03-01T10:30:00Z", "2025-03-01T10:30:00+00:00"),
    ],
)
def test_a_date_time_goes_to_zoho_with_its_utc_offset(raw: str, sent: str) -> None:
    """`zoho_type = "datetime"` values are written `yyyy-MM-ddTHH:mm:ss±HH:mm`, one instant in UTC."""
    field = FieldMap(zoho="Install_At", si="CustomField19", direction="si_to_zoho", zoho_type="datetime")
    assert to_zoho_json(field.from_si(raw), "datetime") == sent


def test_an_si_date_time_lands_in_a_zoho_date_time_field_and_does_not_echo(
    make_ctx: Any, mapping_file: Any
) -> None:
    """SI CustomField19 -> a Zoho Date/Time field: Zoho accepts the offset form; Zoho answering the same
    instant in another zone is no change, so the next cycle writes nothing."""
    sims = SimPair()
    sims.zoho.fields_meta.append(
        {"api_name": "Install_At", "data_type": "datetime", "field_label": "Install At", "id": "9"}
        | {"custom_field": True, "read_only": False}
    )
    mapping = mapping_file(
        """
        [create]
        Name = "Deal_Name"
        Client = "Account_Name.name"
        [[fields]]
        zoho = "Install_At"
        si = "CustomField19"
        direction = "si_to_zoho"
        zoho_type = "datetime"
        """
    )
    deal = sims.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    ctx = make_ctx(sims, mapping)
    assert cycle(ctx).exit_code == 0
    sims.si.import_pending()
    assert cycle(ctx).exit_code == 0
    project = sims.zoho.deal(deal)["SI_Project_ID"]
    sims.si.edit_project(project, CustomField19="2025-03-01T10:30:00")
    report = cycle(ctx)
    assert report.exit_code == 0, report.message
    assert sims.zoho.deal(deal)["Install_At"] == "2025-03-01T10:30:00+00:00"
    sims.zoho.edit_deal(deal, Install_At="2025-03-01T16:00:00+05:30")
    puts = sims.zoho.count("PUT", "/crm/v8/Deals")
    assert cycle(ctx, full=True).exit_code == 0
    assert sims.zoho.count("PUT", "/crm/v8/Deals") == puts


# ---- 5. scopes ----------------------------------------------------------------------------------------


def test_a_missing_scope_is_reported_with_zohos_code_not_as_bad_credentials() -> None:
    """OAUTH_SCOPE_MISMATCH on the account join becomes a CredentialsError naming the code (no refresh)."""
    sim = ZohoSim(scopes=NEEDED_SCOPES - {"ZohoCRM.modules.accounts.READ"})
    sim.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    client = _zoho(sim)
    with pytest.raises(CredentialsError, match="OAUTH_SCOPE_MISMATCH"):
        client.coql("select Account_Name.Account_Name from Deals where Send_to_SI = 'true'")
    assert sim.tokens_issued == 1  # a scope problem is not "refresh the token and retry"


# ---- 7/8. acknowledging one message; archived and deleted projects ------------------------------------


def test_mark_imported_by_message_acknowledges_only_that_message(si_sim: SiSim, si: SiClient) -> None:
    """`PUT /Subscribe/Projects/MarkAsImportedByMessageId?messageId=&publishedOnUnixTimeMs=`: one message."""
    project = si_sim.add_unknown_project(Name="P")
    si_sim.add_change_order(project, 1, "CO", status="Pending")
    base, change_order = list(si.iter_exports())
    si.mark_imported_by_message(change_order["messageid"], change_order["publishedonunixtimems"])
    request = si_sim.requests[-1]
    assert (request.method, request.path) == ("PUT", "/Subscribe/Projects/MarkAsImportedByMessageId")
    assert request.query == {
        "messageId": change_order["messageid"],
        "publishedOnUnixTimeMs": str(change_order["publishedonunixtimems"]),
    }
    assert [e["messageid"] for e in si.iter_exports()] == [base["messageid"]]


def test_archived_and_deleted_exports_are_read_only_when_asked_for(si_sim: SiSim, si: SiClient) -> None:
    """`iter_exports` sends includeArchived/includeDeleted (false by default) and reads them when asked."""
    project = si_sim.add_unknown_project(Name="P")
    si_sim.archive_project(project)
    assert [e["archived"] for e in si.iter_exports()] == [False]
    assert si_sim.requests[-1].query["includeArchived"] == "false"
    assert [e["archived"] for e in si.iter_exports(include_archived=True)] == [False, True]
    si_sim.delete_project(project)
    assert [e["deleted"] for e in si.iter_exports(include_archived=True, include_deleted=True)] == [
        False,
        False,
        True,
    ]


def test_an_archived_entry_si_sends_anyway_is_skipped_unless_asked_for(si_sim: SiSim, si: SiClient) -> None:
    """Never trust a filter: an `Archived: true` entry in a listing that asked for none is skipped."""
    entry = {"Id": "p", "MessageId": "m", "PublishedOnUnixTimeMs": 1, "Archived": True, "Deleted": False}
    si_sim.inject(
        "GET", "/Subscribe/Projects", status=200, body={"Projects": [entry], "TotalCount": 1}, times=2
    )
    assert list(si.iter_exports()) == []
    assert [e["id"] for e in si.iter_exports(include_archived=True)] == ["p"]


def test_an_unknown_message_status_is_a_permanent_error_naming_the_answer(
    si_sim: SiSim, si: SiClient
) -> None:
    """A purged or unknown message id: SI's 404 (undocumented) is a PermanentApiError for that one call."""
    published = si.publish_project({"Client": "ACME", "Name": "P"})
    si_sim.purge_message_status(published.message_id)
    with pytest.raises(PermanentApiError, match="404") as caught:
        si.message_status(published.message_id)
    assert caught.value.endpoint == "si.message_status"
