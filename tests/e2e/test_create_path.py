"""Issue #2, the create path, over real HTTP: flagged deals become SI projects, exactly once.

Each cycle is a ``reconciler run-once`` subprocess (as systemd's timer runs it) against both simulators
on loopback sockets.
"""

from __future__ import annotations

import textwrap

import pytest

from reconciler.plan import project_guid
from tests.conftest import DEFAULT_MAPPING, TWO_WAY_MAPPING, run_cli
from tests.e2e.helpers import flag_three, project_for, write_counts


@pytest.fixture
def env(served_sims, tmp_path):
    """The operator environment for a ``reconciler`` subprocess on the served simulators."""
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(textwrap.dedent(TWO_WAY_MAPPING), encoding="utf-8")
    return served_sims.environment(tmp_path / "reconciler.db", mapping)


def test_three_flagged_deals_give_three_publishes_and_a_rerun_writes_nothing(served_sims, env, tmp_path):
    """3 flagged deals -> exactly 3 publishes, 3 deals carrying their project id; rerun: no write call."""
    sims = served_sims
    deals = flag_three(sims)
    sims.zoho.add_deal(Deal_Name="Not ready", Account_Name="Customer 9", Send_to_SI=False)

    first = run_cli(["run-once"], env, tmp_path)

    assert first.returncode == 0, first.stderr
    assert sims.si.count("POST", "/Publish/Projects") == 3
    published = {m.payload["IntegrationProjectId"]: m.project_id for m in sims.si.publish_messages}
    assert sorted(published) == sorted(deals)
    for deal_id in deals:
        deal = sims.zoho.deal(deal_id)
        assert deal["SI_Project_ID"] == published[deal_id]
        assert deal["SI_Sync_Status"] == "Queued for SI"
    assert sims.zoho.count("PUT", "/crm/v8/Deals") == 1  # the three write-backs in one batch
    writes = write_counts(sims)

    again = run_cli(["run-once"], env, tmp_path)

    assert again.returncode == 0, again.stderr
    assert write_counts(sims) == writes
    assert "no changes" in again.stdout


def test_publish_body_carries_the_mapped_fields_and_our_guid(served_sims, env, tmp_path):
    """The publish names the deal (IntegrationProjectId), our own Guid as Id, and the [create] fields."""
    deal_id = served_sims.zoho.add_deal(Deal_Name="Harbor Office", Account_Name="Harbor LLC", Send_to_SI=True)

    run_cli(["run-once"], env, tmp_path, check=True)

    (message,) = served_sims.si.publish_messages
    assert message.payload["IntegrationProjectId"] == deal_id
    assert message.payload["Name"] == "Harbor Office"
    assert message.payload["Client"] == "Harbor LLC"
    assert message.payload["Id"] == message.project_id == served_sims.zoho.deal(deal_id)["SI_Project_ID"]


def test_sync_status_goes_from_queued_to_in_si_once_si_imports(served_sims, env, tmp_path):
    """After SI imports the projects, SI_Sync_Status goes "Queued for SI" -> "In SI"; then all is idle."""
    sims = served_sims
    deals = flag_three(sims)
    run_cli(["run-once"], env, tmp_path, check=True)
    assert {sims.zoho.deal(d)["SI_Sync_Status"] for d in deals} == {"Queued for SI"}

    assert sims.si.import_pending() == 3
    run_cli(["run-once"], env, tmp_path, check=True)

    assert {sims.zoho.deal(d)["SI_Sync_Status"] for d in deals} == {"In SI"}
    assert len(sims.si.projects) == 3
    assert {project_for(sims, d) for d in deals} == {sims.zoho.deal(d)["SI_Project_ID"] for d in deals}
    zoho_seen, si_seen = len(sims.zoho.requests), len(sims.si.requests)
    run_cli(["run-once"], env, tmp_path, check=True)

    # An idle cycle: the cached token, one COQL and one GET /Subscribe/Projects, nothing else.
    assert [(m, p) for m, p, _ in sims.zoho.requests[zoho_seen:]] == [("POST", "/crm/v8/coql")]
    assert [(r.method, r.path) for r in sims.si.requests[si_seen:]] == [("GET", "/Subscribe/Projects")]


def test_a_failed_import_shows_its_message_on_the_deal(served_sims, env, tmp_path):
    """A publish SI fails to import -> SI_Sync_Status "SI import failed: <message>"; the others go In SI."""
    sims = served_sims
    deals = flag_three(sims)
    run_cli(["run-once"], env, tmp_path, check=True)

    # The first deal's import fails, whichever publish (sent in parallel lanes) reached SI's queue first.
    sims.si.fail_import_of(project_guid(deals[0]), "Client 'Customer 1' is locked by another user")
    sims.si.import_pending()
    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 1, result.stderr  # the failed publish is parked for the operator
    statuses = [sims.zoho.deal(d)["SI_Sync_Status"] for d in deals]
    assert statuses == ["SI import failed: Client 'Customer 1' is locked by another user", "In SI", "In SI"]
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    assert deals[0] in status and "is locked by another user" in status
    writes = write_counts(sims)
    run_cli(["run-once"], env, tmp_path, check=True)
    assert write_counts(sims) == writes


def test_a_deal_without_an_account_is_parked_and_the_others_are_created(served_sims, tmp_path):
    """A flagged deal lacking the Client is parked naming deal and field; run-once exits 1; others proceed."""
    sims = served_sims
    env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING)
    good = sims.zoho.add_deal(Deal_Name="Good", Account_Name="Acme", Send_to_SI=True)
    orphan = sims.zoho.add_deal(Deal_Name="Walk-in", Send_to_SI=True)

    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 1
    assert sims.si.count("POST", "/Publish/Projects") == 1
    assert sims.zoho.deal(good)["SI_Project_ID"]
    assert not sims.zoho.deal(orphan).get("SI_Project_ID")
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    assert f"create:deal:{orphan}" in status
    assert f"deal {orphan}: field Account_Name.name is empty" in status
