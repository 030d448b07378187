"""Issue #3, field sync for linked pairs, over real HTTP against both simulators on loopback.

Cycles run in-process on a loopback context (``make_ctx`` on ``served_sims``) where a subprocess adds
nothing; what the operator sees (``run-once`` exit codes, ``status``) runs as ``reconciler`` subprocesses
on the same database.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import TWO_WAY_MAPPING, cycle, run_cli
from tests.e2e.helpers import linked_three, write_counts, zoho_puts


@pytest.fixture
def mapping(mapping_file):
    return mapping_file(TWO_WAY_MAPPING)


@pytest.fixture
def env(served_sims, tmp_path, mapping):
    """A ``reconciler`` subprocess's environment on the same simulators and database as ``make_ctx``."""
    return served_sims.environment(tmp_path / "reconciler.db", mapping)


@pytest.fixture
def ctx(served_sims, make_ctx, mapping):
    return make_ctx(served_sims, mapping)


def ok(ctx, **kwargs):
    """Run one cycle that must succeed."""
    report = cycle(ctx, **kwargs)
    assert report.exit_code == 0, report.message
    return report


@pytest.fixture
def linked(served_sims, ctx):
    """Three deals created in SI and imported there: (deal ids, project ids)."""
    return linked_three(served_sims, lambda: ok(ctx))


# ---- SI -> Zoho ---------------------------------------------------------------------------------------


def test_si_edits_on_three_projects_give_one_put_carrying_all_three(served_sims, ctx, linked):
    """Price, Hours and Progress edited on 3 projects -> ONE PUT /Deals with all 3, Progress value-mapped."""
    sims = served_sims
    deals, projects = linked
    progress = ["Approved", "On Hold", "Design"]  # two mapped to Zoho stages, one passed through
    for n, project in enumerate(projects):
        sims.si.edit_project(project, Price=1000 + n + 0.5, Hours=20 + n, Progress=progress[n])
    puts_before = len(zoho_puts(sims))

    ok(ctx)

    puts = zoho_puts(sims)[puts_before:]
    assert len(puts) == 1
    records = {r["id"]: r for r in puts[0]["data"]}
    assert sorted(records) == sorted(deals)
    assert puts[0]["trigger"] == []
    expected_stage = ["Closed Won", "Negotiation", "Design"]
    for n, deal_id in enumerate(deals):
        assert records[deal_id]["Amount"] == 1000 + n + 0.5
        assert records[deal_id]["Labor_Hours"] == 20 + n
        assert records[deal_id]["Stage"] == expected_stage[n]
        deal = sims.zoho.deal(deal_id)
        assert (deal["Amount"], deal["Labor_Hours"], deal["Stage"]) == (
            1000 + n + 0.5,
            20 + n,
            expected_stage[n],
        )
    assert sims.si.count("POST", "/Publish") == 3  # only the creates: nothing echoed back to SI
    writes = write_counts(sims)

    ok(ctx)

    assert write_counts(sims) == writes


def test_an_unchanged_reexport_writes_nothing_to_zoho(served_sims, ctx, linked):
    """SI exporting a project again without a change (a re-check-in) -> no Zoho write, only the ack."""
    sims = served_sims
    _, projects = linked
    sims.si.edit_project(projects[0], Price=640.0)
    ok(ctx)
    puts = len(zoho_puts(sims))

    sims.si.export(projects[0])
    ok(ctx)

    assert len(zoho_puts(sims)) == puts
    assert not any(m.imported is False for m in sims.si.export_messages)


# ---- Zoho -> SI -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "direction",
    ['direction = "zoho_to_si"', 'direction = "both"\non_conflict = "si_wins"'],
    ids=["zoho_to_si", "both-si_wins"],
)
def test_a_close_date_change_is_one_update_that_never_reverts(served_sims, make_ctx, mapping_file, direction):
    """Closing_Date edited -> one Update with ProjectFieldId 6; stale and echoing exports revert nothing."""
    sims = served_sims
    text = textwrap.dedent(TWO_WAY_MAPPING).replace(
        'zoho = "Closing_Date"\nsi = "CloseDate"\ndirection = "zoho_to_si"',
        f'zoho = "Closing_Date"\nsi = "CloseDate"\n{direction}',
    )
    text = text.replace(
        'Client = "Account_Name.name"', 'Client = "Account_Name.name"\nCloseDate = "Closing_Date"'
    )
    assert direction in text and "CloseDate = " in text
    ctx = make_ctx(sims, mapping_file(text))
    deals, projects = linked_three(sims, lambda: ok(ctx), Closing_Date="2030-06-30")
    assert sims.si.projects[projects[1]]["CloseDate"] == "2030-06-30T00:00:00"

    sims.zoho.edit_deal(deals[1], Closing_Date="2031-05-17")
    ok(ctx)

    updates = [r for r in sims.si.requests if r.method == "POST" and r.path == "/Publish/Projects/Update"]
    assert len(updates) == 1
    assert updates[0].body["ProjectId"] == projects[1]
    assert updates[0].body["UpdateFields"] == [{"ProjectFieldId": 6, "Value": "2031-05-17"}]
    writes = write_counts(sims)
    ok(ctx)
    assert write_counts(sims) == writes

    # An SI user checks the project in before SI imported our update: the export carries the OLD date.
    sims.si.edit_project(projects[1], Price=880.0)
    assert sims.si.export_messages[-1].snapshot["CloseDate"] == "2030-06-30T00:00:00"
    ok(ctx)
    deal = sims.zoho.deal(deals[1])
    assert (deal["Closing_Date"], deal["Amount"]) == ("2031-05-17", 880)
    assert sims.si.count("POST", "/Publish/Projects/Update") == 1

    # SI imports our update and exports the project again: the echo of our own write changes nothing.
    sims.si.import_pending()
    assert sims.si.projects[projects[1]]["CloseDate"] == "2031-05-17"
    puts = len(zoho_puts(sims))
    ok(ctx)
    assert len(zoho_puts(sims)) == puts
    assert sims.si.count("POST", "/Publish") == 4
    assert sims.zoho.deal(deals[1])["Closing_Date"] == "2031-05-17"
    writes = write_counts(sims)
    ok(ctx)
    assert write_counts(sims) == writes
    assert [sims.zoho.deal(d)["Closing_Date"] for d in deals] == ["2030-06-30", "2031-05-17", "2030-06-30"]


# ---- conflicts and bad values -----------------------------------------------------------------------------


def test_a_manual_conflict_touches_neither_side_and_shows_in_status(served_sims, ctx, linked, env, tmp_path):
    """Deal_Name changed on both sides (manual): both left as they are; status shows both values."""
    sims = served_sims
    deals, projects = linked
    sims.zoho.edit_deal(deals[0], Deal_Name="Smith Residence (Zoho)")
    sims.si.edit_project(projects[0], Name="Smith Residence (SI)")
    writes = write_counts(sims)

    report = cycle(ctx)

    assert report.exit_code == 1  # parked for a person
    assert sims.zoho.deal(deals[0])["Deal_Name"] == "Smith Residence (Zoho)"
    assert sims.si.projects[projects[0]]["Name"] == "Smith Residence (SI)"
    after = write_counts(sims)
    assert after["si POST /Publish"] == writes["si POST /Publish"]
    assert after["zoho PUT /crm/v8/Deals"] == writes["zoho PUT /crm/v8/Deals"]
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    line = next(line for line in status.splitlines() if "field Deal_Name:" in line)
    assert deals[0] in line and '"Smith Residence (Zoho)"' in line and '"Smith Residence (SI)"' in line
    document = json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)
    (conflict,) = document["conflicts"]
    assert conflict["deal_id"] == deals[0] and conflict["field"] == "Deal_Name"
    assert (conflict["zoho"], conflict["si"]) == ("Smith Residence (Zoho)", "Smith Residence (SI)")

    ok(ctx)  # unresolved: still nothing written
    assert write_counts(sims) == {
        **after,
        "si PUT /Subscribe/Projects/MarkAsImported": after["si PUT /Subscribe/Projects/MarkAsImported"],
    }

    sims.si.edit_project(projects[0], Name="Smith Residence (Zoho)")  # a person makes them agree
    ok(ctx)
    assert json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)["conflicts"] == []
    assert sims.zoho.deal(deals[0])["Deal_Name"] == "Smith Residence (Zoho)"


def test_a_bad_si_value_parks_that_project_and_the_others_proceed(served_sims, ctx, linked, env, tmp_path):
    """SI Price "12x": that project is parked naming project and field; run-once exits 1; others sync."""
    sims = served_sims
    deals, projects = linked
    sims.si.edit_project(projects[0], Price="12x", Hours=5)
    sims.si.edit_project(projects[1], Price=999.0)

    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert sims.zoho.deal(deals[1])["Amount"] == 999
    assert sims.zoho.deal(deals[0])["Amount"] == 100
    assert sims.zoho.deal(deals[0]).get("Labor_Hours") is None  # the whole bad message waits
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    parked = [line for line in status.splitlines() if projects[0] in line and "Price" in line]
    assert parked, status
    assert "12x" in parked[0]
    document = json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)
    assert any(p["project_id"] == projects[0] and "Price" in p["error"] for p in document["parked"])

    sims.si.edit_project(projects[0], Price=12.0)  # SI fixes the value
    fixed = run_cli(["run-once"], env, tmp_path)

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    deal = sims.zoho.deal(deals[0])
    assert (deal["Amount"], deal["Labor_Hours"]) == (12, 5)


# ---- stopping and unknown projects ----------------------------------------------------------------------


def test_unflagging_a_linked_deal_stops_syncing_it_and_deletes_nothing(
    served_sims, ctx, linked, env, tmp_path
):
    """Send_to_SI unticked: status says syncing stopped, the SI project stays, SI edits no longer flow."""
    sims = served_sims
    deals, projects = linked
    sims.zoho.edit_deal(deals[0], Send_to_SI=False)

    ok(ctx)

    status = run_cli(["status"], env, tmp_path, check=True).stdout
    stopped = [line for line in status.splitlines() if deals[0] in line and "unticked" in line]
    assert stopped, status
    assert projects[0] in sims.si.projects
    assert sims.si.count("POST", "/Publish") == 3
    sims.si.edit_project(projects[0], Price=5555.0)
    sims.si.edit_project(projects[1], Price=6666.0)
    ok(ctx)
    assert sims.zoho.deal(deals[0])["Amount"] == 100
    assert sims.zoho.deal(deals[1])["Amount"] == 6666


def test_a_deal_dropped_from_the_incremental_read_is_caught_by_full(served_sims, ctx, linked, env, tmp_path):
    """Unticked and unlinked (so no incremental read returns it): `run-once --full` stops its sync."""
    sims = served_sims
    deals, projects = linked
    sims.zoho.edit_deal(deals[2], Send_to_SI=False, SI_Project_ID=None)

    result = run_cli(["run-once"], env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)["stopped"] == []

    full = run_cli(["run-once", "--full"], env, tmp_path)

    assert full.returncode == 0, full.stderr
    document = json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)
    (stopped,) = document["stopped"]
    assert (stopped["deal_id"], stopped["project_id"]) == (deals[2], projects[2])
    assert "unticked" in stopped["reason"]  # a direct read of the missing deal said why
    assert projects[2] in sims.si.projects and sims.si.count("POST", "/Publish") == 3
    assert sims.zoho.deal(deals[2]).get("SI_Project_ID") is None  # not written back either


def test_an_unknown_si_project_is_reported_and_not_acknowledged(served_sims, ctx, linked, env, tmp_path):
    """A project made in SI itself: listed by status, its export never acknowledged, nothing written."""
    sims = served_sims
    unknown = sims.si.add_unknown_project(Name="Walk-in install", Client="Cash Customer")
    writes = write_counts(sims)

    ok(ctx)
    ok(ctx)

    assert write_counts(sims) == writes
    assert not any(a.project_id == unknown for a in sims.si.acks)
    assert not next(m for m in sims.si.export_messages if m.project_id == unknown).imported
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    assert unknown in status and "Walk-in install" in status
    document = json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)
    assert [u["project_id"] for u in document["unknown_projects"]] == [unknown]
