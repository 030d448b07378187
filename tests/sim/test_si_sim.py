"""The SI queue simulator on its own: wire behaviour (auth, casing, binding, faults) and SI-side hooks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from reconciler.sim.si import SiSim

KEY = {"X-DTSI-ApiKey": "sim-si-key"}


@pytest.fixture
def sim() -> SiSim:
    return SiSim(clock=lambda: 1_741_232_132.0)  # a frozen clock: ms must still strictly increase


@pytest.fixture
def http(sim: SiSim) -> Iterator[httpx.Client]:
    with httpx.Client(transport=sim.transport(), base_url="http://127.0.0.1/SI", headers=KEY) as client:
        yield client


def publish(http: httpx.Client, **extra: Any) -> dict[str, Any]:
    answer = http.post("/Publish/Projects", json={"Client": "ACME", "Name": "Smith Residence", **extra})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_missing_or_wrong_key_is_401_with_aspnet_message(sim: SiSim) -> None:
    """No X-DTSI-ApiKey, or a wrong one, is a 401 with ASP.NET's denial message."""
    with httpx.Client(transport=sim.transport()) as bare:
        for headers in ({}, {"X-DTSI-ApiKey": "nope"}):
            answer = bare.get("http://127.0.0.1/SI/Subscribe/Projects", headers=headers)
            assert answer.status_code == 401
            assert answer.json() == {"Message": "Authorization has been denied for this request."}


def test_paths_and_body_keys_bind_case_insensitively(sim: SiSim, http: httpx.Client) -> None:
    """A lower-case path and camelCase body are stored under SI's PascalCase names."""
    project_id = str(uuid.uuid4())
    answer = http.post(
        "/publish/projects", json={"id": project_id, "client": "ACME", "name": "X", "customfield3": "a"}
    )
    assert answer.json()["ProjectId"] == project_id
    sim.import_pending()
    assert {
        "Client": "ACME",
        "Name": "X",
        "CustomField3": "a",
        "CurrencyCode": "USD",
    }.items() <= sim.projects[project_id].items()


def test_publish_requires_client_and_name(http: httpx.Client) -> None:
    """Client and Name are required, as SI's model validation says."""
    assert http.post("/Publish/Projects", json={"Name": "X"}).json() == {
        "Message": "The Client field is required."
    }
    assert http.post("/Publish/Projects", json={"Client": "A"}).status_code == 400


def test_publish_without_id_generates_one(http: httpx.Client) -> None:
    """Without an Id the sim makes a Guid and answers ProjectId, MessageId and a message."""
    answer = publish(http)
    assert uuid.UUID(answer["ProjectId"]) and uuid.UUID(answer["MessageId"])
    assert answer["Message"] == "Project queued"


def test_published_ms_strictly_increase_under_a_frozen_clock(sim: SiSim) -> None:
    """Each export gets a later PublishedOnUnixTimeMs even when the clock does not move."""
    project_id = sim.add_unknown_project()
    sim.edit_project(project_id, Progress="Won")
    sim.edit_project(project_id, Progress="Installed")
    stamps = [m.published_ms for m in sim.export_messages]
    assert stamps == sorted(set(stamps)) and len(stamps) == 3


def test_list_entries_are_projectinfo_only_and_detail_has_both_forms(sim: SiSim, http: httpx.Client) -> None:
    """The list shows ProjectInfo (CONumber a string); detail by path or ?id= is the full Project."""
    project_id = sim.add_unknown_project(Hours=4.0)
    sim.add_change_order(project_id, 7, "Extra TV", price=99.0)
    listing = http.get("/Subscribe/Projects", params={"includeImported": "true"}).json()
    assert listing["TotalCount"] == 2
    base, co = listing["Projects"]
    assert set(base) == {
        "Id", "IntegrationProjectId", "MessageId", "ClientId", "Client", "ClientNumber", "Name", "Number",
        "Progress", "Approved", "CONumber", "CurrencyCode", "Price", "ImportedOn", "PublishedOn",
        "PublishedOnUnixTimeMs", "Deleted", "Archived",
    }  # fmt: skip
    assert (base["CONumber"], co["CONumber"], co["Price"], base["IntegrationProjectId"]) == (
        None,
        "7",
        99.0,
        None,
    )
    by_path = http.get(f"/Subscribe/Projects/{project_id}", params={"coNumber": "7"}).json()
    by_query = http.get("/Subscribe/Projects", params={"id": project_id, "coNumber": 7}).json()
    assert by_path == by_query
    assert (by_path["IsChangeOrder"], by_path["CONumber"], by_path["COName"], by_path["Hours"]) == (
        True,
        7,
        "Extra TV",
        4.0,
    )
    assert http.get(f"/Subscribe/Projects/{uuid.uuid4()}").status_code == 404
    assert http.get(f"/Subscribe/Projects/{project_id}", params={"coNumber": "8"}).status_code == 404


def test_array_query_parameters_bind_in_both_forms(sim: SiSim, http: httpx.Client) -> None:
    """messageStatusIds=1&messageStatusIds=3 and messageStatusIds[0]=1 both filter the statuses."""
    publish(http)
    sim.fail_next_import("boom")
    sim.import_pending()
    publish(http)
    repeated = http.get("/Message/PublishedMessagesStatus?messageStatusIds=1&messageStatusIds=3").json()
    indexed = http.get("/Message/PublishedMessagesStatus?messageStatusIds[0]=3&messageTypeIds[0]=11").json()
    assert repeated["TotalCount"] == 2
    assert [s["StatusId"] for s in indexed["MessageStatuses"]] == [3]
    assert indexed["MessageStatuses"][0]["ErrorMessage"] == "boom"


def test_a_failure_aimed_at_one_project_hits_that_import_only(sim: SiSim, http: httpx.Client) -> None:
    """fail_import_of(project) fails that project's next import, whatever its place in the queue."""
    first = publish(http)["ProjectId"]
    second = publish(http, Name="Jones Residence")["ProjectId"]
    sim.fail_import_of(second, "checked out")
    sim.import_pending()
    assert first in sim.projects and second not in sim.projects
    failed = http.get("/Message/PublishedMessagesStatus?messageStatusIds=3").json()["MessageStatuses"]
    assert [m["ErrorMessage"] for m in failed] == ["checked out"]


def test_update_converts_values_and_rejects_unknown_field_ids(sim: SiSim, http: httpx.Client) -> None:
    """UpdateFields values become decimals, dates and booleans; an unknown ProjectFieldId is a 400."""
    project_id = publish(http)["ProjectId"]
    sim.import_pending()
    fields = [
        {"ProjectFieldId": 7, "Value": "1234.50"},
        {"projectFieldId": "3", "value": "2025-04-01"},
        {"ProjectFieldId": 123, "Value": "true"},
        {"ProjectFieldId": 2, "Value": "Won"},
    ]
    answer = http.post("/Publish/Projects/Update", json={"ProjectId": project_id, "UpdateFields": fields})
    assert answer.status_code == 200 and answer.json()["Message"]
    sim.import_pending()
    project = sim.projects[project_id]
    assert (project["Budget"], project["StartDate"], project["CustomField23"], project["Progress"]) == (
        1234.5,
        "2025-04-01",
        True,
        "Won",
    )
    bad = {"ProjectId": project_id, "UpdateFields": [{"ProjectFieldId": 16, "Value": "x"}]}
    assert http.post("/Publish/Projects/Update", json=bad).status_code == 400
    assert http.post("/Publish/Projects/Update", json={"UpdateFields": []}).status_code == 400


def test_an_update_with_a_bad_value_fails_at_import(sim: SiSim, http: httpx.Client) -> None:
    """A Budget that is not an invariant decimal is accepted by the queue and fails on import (status 3)."""
    project_id = publish(http)["ProjectId"]
    sim.import_pending()
    update = {"ProjectId": project_id, "UpdateFields": [{"ProjectFieldId": 7, "Value": "1,5"}]}
    message_id = http.post("/Publish/Projects/Update", json=update).json()["MessageId"]
    sim.import_pending()
    status = http.get("/Message/PublishedMessageStatus", params={"messageId": message_id}).json()
    assert status["StatusId"] == 3 and "Budget" in status["ErrorMessage"]


def test_mark_as_imported_by_message_id_and_per_change_order(sim: SiSim, http: httpx.Client) -> None:
    """Acks by project+coNumber touch only that change order; by message id only that message."""
    project_id = sim.add_unknown_project()
    sim.add_change_order(project_id, 1, "A")
    sim.add_change_order(project_id, 2, "B")
    ms = max(m.published_ms for m in sim.export_messages)
    answer = http.put(
        "/Subscribe/Projects/MarkAsImported",
        params={"id": project_id, "coNumber": "1", "publishedOnUnixTimeMs": ms},
    )
    assert answer.status_code == 200 and answer.content == b""
    assert [m.co_number for m in sim.export_messages if not m.imported] == [None, "2"]
    http.put(
        "/Subscribe/Projects/MarkAsImportedByMessageId",
        params={"messageId": sim.export_messages[0].message_id},
    )
    assert [m.co_number for m in sim.export_messages if not m.imported] == ["2"]
    assert [(a.co_number, a.marked) for a in sim.acks] == [("1", 1), (None, 1)]


def test_get_project_by_message_returns_the_snapshot_of_then(sim: SiSim, http: httpx.Client) -> None:
    """An export message keeps the Project as it was, even after later edits (bad values stored as given)."""
    project_id = sim.add_unknown_project(Price=10.0)
    first = sim.export_messages[0].message_id
    sim.edit_project(project_id, Price="12x")
    then = http.get("/Subscribe/Projects/GetProjectByMessageId", params={"messageId": first}).json()
    assert then["Price"] == 10.0
    assert http.get(f"/Subscribe/Projects/{project_id}").json()["Price"] == "12x"
    assert (
        http.get(
            "/Subscribe/Projects/GetProjectByMessageId", params={"messageId": str(uuid.uuid4())}
        ).status_code
        == 404
    )


def test_camel_case_flag_recases_every_key(sim: SiSim, http: httpx.Client) -> None:
    """With camel_case the answers use the OpenAPI's spelling (coNumber, publishedOnUnixTimeMs)."""
    sim.camel_case = True
    sim.add_unknown_project()
    listing = http.get("/Subscribe/Projects").json()
    assert listing["totalCount"] == 1
    assert {"id", "coNumber", "publishedOnUnixTimeMs", "clientNumber"} <= listing["projects"][0].keys()


def test_faults_fire_as_many_times_as_asked_and_are_logged(sim: SiSim, http: httpx.Client) -> None:
    """inject() answers the next N matching calls unapplied; requests and count() record every call."""
    sim.inject("POST", "/publish", status=429, headers={"Retry-After": "7"}, times=2)
    assert http.post("/Publish/Projects", json={"Client": "A", "Name": "B"}).headers["Retry-After"] == "7"
    assert http.post("/Publish/Projects", json={"Client": "A", "Name": "B"}).status_code == 429
    assert http.post("/Publish/Projects", json={"Client": "A", "Name": "B"}).status_code == 200
    assert len(sim.publish_messages) == 1
    assert sim.count("post", "/PUBLISH/projects") == 3
    assert sim.requests[0].body == {"Client": "A", "Name": "B"}

    sim.inject("GET", "/Subscribe", kind="timeout")
    with pytest.raises(httpx.ReadTimeout):
        http.get("/Subscribe/Projects")
    sim.inject("GET", "/Subscribe", kind="empty204")
    assert http.get("/Subscribe/Projects").status_code == 204
    sim.inject("GET", "/Subscribe", kind="malformed")
    with pytest.raises(ValueError):
        http.get("/Subscribe/Projects").json()
    assert http.get("/Subscribe/Projects").status_code == 200


def test_import_without_export_and_unknown_routes(sim: SiSim, http: httpx.Client) -> None:
    """import_pending(export=False) imports silently; an unknown route is a 404 and a wrong verb a 405."""
    publish(http)
    assert sim.import_pending(export=False) == 1
    assert sim.export_messages == [] and len(sim.projects) == 1
    assert http.get("/Publish/Nothing").status_code == 404
    assert http.get("/Publish/Projects").status_code == 405
