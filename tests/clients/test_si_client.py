"""The D-Tools SI client against the SI queue simulator (in-process, and once over loopback HTTP)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.si import PublishResult, SiClient, co_number
from reconciler.errors import CredentialsError, PermanentApiError, ProtocolError, TransientApiError
from reconciler.sim.server import SimServer
from reconciler.sim.si import SiSim

BASE = "http://127.0.0.1/SI/"


@pytest.fixture
def sim() -> SiSim:
    return SiSim()


@pytest.fixture
def si(sim: SiSim) -> Iterator[SiClient]:
    with httpx.Client(transport=sim.transport()) as raw:
        yield SiClient(HttpClient(raw, policy=RetryPolicy.no_waits()), BASE, sim.api_key)


def body(deal_id: str = "4150868000000002175", **extra: Any) -> dict[str, Any]:
    return {
        "Id": str(uuid.uuid4()),
        "IntegrationProjectId": deal_id,
        "Client": "ACME",
        "Name": "Smith Residence",
        **extra,
    }


def published(sim: SiSim, si: SiClient, **extra: Any) -> str:
    """Publish one project and let SI import (and export) it; returns its id."""
    result = si.publish_project(body(**extra))
    sim.import_pending()
    return result.project_id


def test_publish_is_pending_until_imported_then_exported(sim: SiSim, si: SiClient) -> None:
    """A publish is queued (status 1), and after SI imports it is status 2 with one export message."""
    sent = body()
    result = si.publish_project(sent)
    assert result.project_id == sent["Id"]
    assert si.message_status(result.message_id).pending
    assert list(si.iter_exports()) == []

    assert sim.import_pending() == 1

    status = si.message_status(result.message_id)
    assert (status.status_id, status.type_id, status.error_message) == (2, 11, None)
    assert status.imported_on
    exports = list(si.iter_exports())
    assert [(e["id"], e["integrationprojectid"], e["conumber"]) for e in exports] == [
        (sent["Id"], sent["IntegrationProjectId"], None)
    ]


def test_republishing_the_same_id_after_a_crash_gives_one_project(sim: SiSim, si: SiClient) -> None:
    """Publishing the same Guid twice (a retry after a crash) targets one project, before and after import."""
    sent = body()
    first = si.publish_project(sent)
    again = si.publish_project(sent)
    assert first.project_id == again.project_id
    sim.import_pending()
    si.publish_project({**sent, "Name": "Smith Residence (v2)"})
    sim.import_pending()
    assert list(sim.projects) == [sent["Id"]]
    assert si.get_project(sent["Id"])["name"] == "Smith Residence (v2)"


def test_publish_without_client_is_a_permanent_error(si: SiClient) -> None:
    """A publish SI refuses (no Client) raises PermanentApiError naming the endpoint and SI's message."""
    with pytest.raises(PermanentApiError) as caught:
        si.publish_project({"Id": str(uuid.uuid4()), "Name": "No client"})
    assert caught.value.endpoint == "si.publish"
    assert caught.value.status == 400
    assert "The Client field is required." in str(caught.value)


def test_failed_import_reports_status_3_with_its_error(sim: SiSim, si: SiClient) -> None:
    """A message SI fails to import is status 3 and carries SI's ErrorMessage."""
    result = si.publish_project(body())
    sim.fail_next_import("Template 'Residential' not found")
    sim.import_pending()
    status = si.message_status(result.message_id)
    assert status.failed
    assert status.error_message == "Template 'Residential' not found"
    assert [s.id for s in si.iter_message_statuses(status_ids=(3,))] == [result.message_id]


def test_iter_message_statuses_pages_through_all_pending(sim: SiSim, si: SiClient) -> None:
    """450 pending publishes come back in 3 calls of 200, the filters in SI's documented indexed form."""
    sent = {si.publish_project(body(deal_id=str(n))).message_id for n in range(450)}
    sim.requests.clear()
    statuses = list(si.iter_message_statuses(page_size=200))
    assert {s.id for s in statuses} == sent
    assert all(s.pending for s in statuses)
    assert sim.count("GET", "/Message/PublishedMessagesStatus") == 3
    first = sim.requests[0].query
    assert (first["messageStatusIds[0]"], first["messageTypeIds[0]"], first["messageTypeIds[1]"]) == (
        "1",
        "11",
        "12",
    )
    assert "messageTypeIds" not in first
    assert [r.query["pageNumber"] for r in sim.requests] == ["1", "2", "3"]


def test_iter_exports_pages_and_hides_acknowledged_messages(sim: SiSim, si: SiClient) -> None:
    """Exports page until TotalCount; acknowledged messages are gone from the next poll."""
    ids = [sim.add_unknown_project(Name=f"P{n}") for n in range(5)]
    exports = list(si.iter_exports(page_size=2))
    assert [e["id"] for e in exports] == ids
    assert sim.count("GET", "/Subscribe/Projects") == 3
    assert all(r.query["includeImported"] == "false" for r in sim.requests)
    for entry in exports[:2]:
        si.mark_imported(entry["id"], co_number(entry["conumber"]), entry["publishedonunixtimems"])
    assert [e["id"] for e in si.iter_exports(page_size=2)] == ids[2:]
    assert "coNumber" not in sim.requests[-3].query  # the ack of a base-project message omits it


def test_mark_imported_keeps_a_message_newer_than_the_one_read(sim: SiSim, si: SiClient) -> None:
    """MarkAsImported with publishedOnUnixTimeMs leaves a message exported after our read in the queue."""
    project_id = published(sim, si)
    [seen] = list(si.iter_exports())
    sim.edit_project(project_id, Price=1500.0)  # SI exports again while we were busy
    si.mark_imported(project_id, None, seen["publishedonunixtimems"])
    [left] = list(si.iter_exports())
    assert left["price"] == 1500.0
    assert left["publishedonunixtimems"] > seen["publishedonunixtimems"]
    assert sim.acks[-1].marked == 1


def test_list_lacks_details_that_the_detail_gets_have(sim: SiSim, si: SiClient) -> None:
    """ProjectInfo has no Hours/Revision/COStatus; get_project and get_project_by_message do."""
    project_id = published(sim, si)
    sim.edit_project(project_id, Hours=12.5, Revision=3)
    sim.add_change_order(project_id, 1, "Extra speakers", price=800.0)
    entries = list(si.iter_exports())
    for entry in entries:
        assert not {"hours", "revision", "costatus", "coname"} & entry.keys()
    detail = si.get_project(project_id)
    assert (detail["hours"], detail["revision"], detail["ischangeorder"]) == (12.5, 3, False)
    co_entry = entries[-1]
    assert co_number(co_entry["conumber"]) == "1"
    co = si.get_project_by_message(co_entry["messageid"])
    assert (co["ischangeorder"], co["costatus"], co["coname"], co["price"]) == (
        True,
        "Pending",
        "Extra speakers",
        800.0,
    )
    assert si.get_project(project_id, co_number=" 1 ")["costatus"] == "Pending"


def test_two_change_order_states_in_one_poll_are_both_recoverable(sim: SiSim, si: SiClient) -> None:
    """A CO created and approved between polls: each message still yields its own state."""
    project_id = published(sim, si)
    si.mark_imported(project_id, None, next(si.iter_exports())["publishedonunixtimems"])
    sim.add_change_order(project_id, 2, "Rack upgrade", status="Pending")
    sim.set_change_order_status(project_id, 2, "Approved")
    entries = list(si.iter_exports())
    assert [co_number(e["conumber"]) for e in entries] == ["2", "2"]
    states = [si.get_project_by_message(e["messageid"])["costatus"] for e in entries]
    assert states == ["Pending", "Approved"]
    assert si.get_project(project_id, "2")["costatus"] == "Approved"


def test_update_project_changes_fields_after_import(sim: SiSim, si: SiClient) -> None:
    """UpdateFields are queued (TypeId 12) and change the project once SI imports them."""
    project_id = published(sim, si)
    message_id = si.update_project(
        project_id, [(1, "Smith Residence - Phase 2"), (7, "1234.50"), (6, "2025-03-01"), (105, "Gold")]
    )
    status = si.message_status(message_id)
    assert (status.type_id, status.status_id) == (12, 1)
    sim.import_pending()
    assert si.message_status(message_id).imported
    detail = si.get_project(project_id)
    assert (detail["name"], detail["budget"], detail["closedate"], detail["customfield5"]) == (
        "Smith Residence - Phase 2",
        1234.5,
        "2025-03-01",
        "Gold",
    )
    assert list(si.iter_exports())[-1]["name"] == "Smith Residence - Phase 2"


def test_update_project_sends_our_message_id(sim: SiSim, si: SiClient) -> None:
    """A MessageId we choose is the one SI reports back, so a retried update is not queued twice."""
    project_id = published(sim, si)
    chosen = str(uuid.uuid4())
    assert si.update_project(project_id, [(2, "Won")], message_id=chosen) == chosen
    assert si.update_project(project_id, [(2, "Won")], message_id=chosen) == chosen
    assert [m.id for m in sim.publish_messages if m.type_id == 12] == [chosen]


def test_answers_are_parsed_case_insensitively(sim: SiSim, si: SiClient) -> None:
    """camelCase answers (as the OpenAPI spells them) parse exactly like PascalCase ones."""
    sim.camel_case = True
    result = si.publish_project(body())
    assert isinstance(result, PublishResult)
    sim.import_pending()
    assert si.message_status(result.message_id).imported
    [entry] = list(si.iter_exports())
    assert entry["id"] == result.project_id
    assert entry["publishedonunixtimems"] > 0
    assert si.get_project(result.project_id)["integrationprojectid"] == "4150868000000002175"


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_a_credentials_error(sim: SiSim, status: int) -> None:
    """401/403 from SI is a CredentialsError (exit 78) that never shows the key."""
    if status == 403:
        sim.inject("GET", "/Subscribe", status=403)
    key = sim.api_key if status == 403 else "wrong-key-1234"
    with httpx.Client(transport=sim.transport()) as raw:
        si = SiClient(HttpClient(raw, policy=RetryPolicy.no_waits()), BASE, key)
        with pytest.raises(CredentialsError) as caught:
            list(si.iter_exports())
    assert str(caught.value) == f"D-Tools SI rejected SI_API_KEY (HTTP {status})"
    assert caught.value.exit_code == 78
    assert "wrong-key" not in str(caught.value)


def test_every_call_carries_the_key_on_a_base_url_without_double_slash(sim: SiSim, si: SiClient) -> None:
    """The trailing / of the base URL is stripped and X-DTSI-ApiKey is sent (the sim accepts nothing else)."""
    si.publish_project(body())
    assert sim.requests[-1].path == "/Publish/Projects"


def test_server_errors_are_retried(sim: SiSim, si: SiClient) -> None:
    """A 500 then success is one logical call; 503s until the attempts run out are a TransientApiError."""
    sim.inject("POST", "/Publish/Projects", status=500)
    si.publish_project(body())
    assert sim.count("POST", "/Publish/Projects") == 2
    assert len(sim.publish_messages) == 1

    sim.inject("GET", "/Subscribe/Projects", status=503, times=-1)
    with pytest.raises(TransientApiError):
        list(si.iter_exports())
    assert sim.count("GET", "/Subscribe/Projects") == 3


def test_a_timeout_is_retried(sim: SiSim, si: SiClient) -> None:
    """A read timeout is retried by the choke point."""
    sim.add_unknown_project()
    sim.inject("GET", "/Subscribe/Projects", kind="timeout")
    assert len(list(si.iter_exports())) == 1


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/Subscribe/Projects", "malformed"), ("/Message/PublishedMessageStatus", "empty204")],
)
def test_a_broken_answer_is_a_protocol_error(sim: SiSim, si: SiClient, path: str, kind: str) -> None:
    """Malformed JSON, or a 204 where a body was due, is a ProtocolError, not a crash."""
    sim.inject("GET", path, kind=kind)
    with pytest.raises(ProtocolError):
        if kind == "malformed":
            list(si.iter_exports())
        else:
            si.message_status(str(uuid.uuid4()))


def test_unknown_project_is_a_permanent_error(si: SiClient) -> None:
    """A detail GET for a project SI does not know is a 404 PermanentApiError."""
    with pytest.raises(PermanentApiError) as caught:
        si.get_project(str(uuid.uuid4()))
    assert (caught.value.endpoint, caught.value.status) == ("si.subscribe.get", 404)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        (0, None),
        ("0", None),
        (2, "2"),
        ("2", "2"),
        (" 02 ", "2"),
        (3.0, "3"),
        ("A1", "A1"),
    ],
)
def test_co_number_normalises_both_wire_types(value: object, expected: str | None) -> None:
    """CONumber arrives as string or int; empty/zero mean the base project."""
    assert co_number(value) == expected


def test_over_real_loopback_http(sim: SiSim) -> None:
    """The whole publish / import / poll / ack loop works over sockets through SimServer."""
    with SimServer(sim.handle) as server, httpx.Client(trust_env=False, timeout=5) as raw:
        si = SiClient(HttpClient(raw, policy=RetryPolicy.no_waits()), server.url + "/SI", sim.api_key)
        result = si.publish_project(body())
        sim.import_pending()
        assert si.message_status(result.message_id).imported
        [entry] = list(si.iter_exports())
        si.mark_imported(entry["id"], None, entry["publishedonunixtimems"])
        assert list(si.iter_exports()) == []
        assert si.get_project(result.project_id)["name"] == "Smith Residence"


# -- contract: what we send matches D-Tools' published OpenAPI -------------------------------------------


def test_requests_match_the_published_openapi(sim: SiSim, si: SiClient, vendor_specs: ModuleType) -> None:
    """Every request the client sends has a spec operation, declared query names and a valid body."""
    validate = vendor_specs

    result = si.publish_project(body(CloseDate="2025-03-01T00:00:00", Budget=1000.5, Progress="Proposal"))
    si.update_project(result.project_id, [(1, "New name"), (7, "10.00")], message_id=str(uuid.uuid4()))
    sim.import_pending()
    si.message_status(result.message_id)
    list(si.iter_message_statuses(status_ids=(1, 3)))
    sim.add_change_order(result.project_id, 1, "CO", status="Approved")
    entries = list(si.iter_exports())
    si.get_project(result.project_id)
    si.get_project(result.project_id, "1")
    si.get_project_by_message(entries[-1]["messageid"])
    for entry in entries[:-1]:
        si.mark_imported(entry["id"], co_number(entry["conumber"]), entry["publishedonunixtimems"])
    si.mark_imported_by_message(entries[-1]["messageid"], entries[-1]["publishedonunixtimems"])

    seen = set()
    for request in sim.requests:
        problems = validate.validate_request_body("si", request.method, request.path, request.body)
        assert problems == [], f"{request.method} {request.path}"
        template, operation = validate.find_operation("si", request.method, request.path)
        query = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        declared = {p["name"] for p in query}
        arrays = {p["name"] for p in query if p.get("schema", {}).get("type") == "array"}
        for name in request.query:  # an indexed name (x[0]) must belong to a declared array parameter
            base = re.sub(r"\[\d+\]$", "", name)
            assert base in (arrays if base != name else declared), f"{request.method} {template}: {name}"
        seen.add((request.method, template))
    assert len(seen) == 9
