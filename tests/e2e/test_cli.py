"""The operator contract of the ``reconciler`` command, as real subprocesses against served simulators."""

from __future__ import annotations

import json
import sqlite3
import textwrap

import pytest

from reconciler.store import SCHEMA_VERSION
from tests.conftest import TWO_WAY_MAPPING, run_cli
from tests.e2e.helpers import flag_three, linked_three, project_for, write_counts

TOKEN_TABLES = {"token", "tokenissue"}


@pytest.fixture
def mapping(tmp_path):
    path = tmp_path / "mapping.toml"
    path.write_text(textwrap.dedent(TWO_WAY_MAPPING), encoding="utf-8")
    return path


@pytest.fixture
def env(served_sims, tmp_path, mapping):
    """The operator environment for a ``reconciler`` subprocess on the served simulators."""
    return served_sims.environment(tmp_path / "reconciler.db", mapping)


def _store_rows(db):
    """Every row of every table but the token cache, to see what a command wrote to the store."""
    with sqlite3.connect(db) as con:
        tables = [t for (t,) in con.execute("select name from sqlite_master where type = 'table'")]
        rows = {
            t: sorted(map(repr, con.execute(f"select * from {t}"))) for t in tables if t not in TOKEN_TABLES
        }
    con.close()
    return rows


# ---- plan --------------------------------------------------------------------------------------------


def test_plan_lists_the_creates_exits_2_and_writes_nothing(served_sims, env, tmp_path):
    """`plan` before the first run: exit 2, the 3 creates listed; no write to Zoho/SI; store: token only."""
    deals = flag_three(served_sims)

    result = run_cli(["plan"], env, tmp_path)

    assert result.returncode == 2, result.stderr
    creates = [line for line in result.stdout.splitlines() if line.strip().startswith("create")]
    assert len(creates) == 3
    assert all(any(deal in line for line in creates) for deal in deals)
    assert "3 record(s) to write" in result.stdout
    assert set(write_counts(served_sims).values()) == {0}
    assert {k: v for k, v in _store_rows(tmp_path / "reconciler.db").items() if v} == {
        "state": [f"('schema_version', '{SCHEMA_VERSION}')"]
    }
    with sqlite3.connect(tmp_path / "reconciler.db") as con:
        assert con.execute("select count(*) from token").fetchone() == (1,)
    con.close()


def test_plan_exits_0_once_the_run_applied_everything(served_sims, env, tmp_path):
    """After `run-once` applied the creates, `plan` has nothing to do and exits 0."""
    flag_three(served_sims)
    run_cli(["run-once"], env, tmp_path, check=True)

    result = run_cli(["plan"], env, tmp_path)

    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout


def test_plan_after_si_edits_changes_nothing_in_the_store_or_on_either_side(served_sims, env, tmp_path):
    """A plan with pending updates and notes leaves store rows (but the token), Zoho and SI untouched."""
    sims = served_sims
    deals = flag_three(sims)
    run_cli(["run-once"], env, tmp_path, check=True)
    sims.si.import_pending()
    run_cli(["run-once"], env, tmp_path, check=True)
    project = project_for(sims, deals[0])
    sims.si.edit_project(project, Price=4321.5, Hours=12)
    sims.si.add_change_order(project, 1, "Extra zone", price=99.0)
    sims.zoho.edit_deal(deals[1], Closing_Date="2030-01-31")
    before = _store_rows(tmp_path / "reconciler.db"), write_counts(sims), sims.zoho.deal(deals[0])

    result = run_cli(["plan"], env, tmp_path)

    assert result.returncode == 2, result.stderr
    assert "Amount" in result.stdout and "Change order 1: Extra zone" in result.stdout
    assert "ProjectFieldId 6='2030-01-31'" in result.stdout
    assert (_store_rows(tmp_path / "reconciler.db"), write_counts(sims), sims.zoho.deal(deals[0])) == before


def test_plan_json_is_machine_readable(served_sims, env, tmp_path):
    """`plan --json` parses and carries mode, exit_code, refused, writes, actions, acks, unknown_projects."""
    deals = flag_three(served_sims)

    result = run_cli(["plan", "--json"], env, tmp_path)

    assert result.returncode == 2, result.stderr
    document = json.loads(result.stdout)
    assert {"mode", "exit_code", "refused", "writes", "actions", "acks", "unknown_projects"} <= set(document)
    assert document["exit_code"] == 2 and document["refused"] is None and document["writes"] == 3
    assert sorted(a["deal_id"] for a in document["actions"] if a["kind"] == "create") == sorted(deals)
    assert document["acks"] == [] and document["unknown_projects"] == []


# ---- configuration errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SI_API_KEY", ""),
        ("ZOHO_CLIENT_ID", ""),
        ("RECONCILER_MAX_WRITES", "lots"),
        ("ZOHO_DC", "mars"),
        ("SI_BASE_URL", "ftp://si.example"),
    ],
)
@pytest.mark.parametrize("command", ["run-once", "plan"])
def test_bad_settings_exit_78_naming_the_variable(served_sims, env, tmp_path, command, variable, value):
    """A missing or invalid setting: exit 78, stderr names the variable, no traceback, nothing called."""
    result = run_cli([command], {**env, variable: value}, tmp_path)

    assert result.returncode == 78
    assert variable in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert served_sims.zoho.requests == [] and served_sims.si.requests == []


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('direction = "zoho_to_si"', 'direction = "sideways"'), "fields[3].direction"),
        (('si = "Hours"', 'si = "Hourz"'), "fields[1].si"),
        (
            (
                'zoho = "Amount"\nsi = "Price"\ndirection = "si_to_zoho"',
                'zoho = "Amount"\nsi = "Price"\ndirection = "zoho_to_si"',
            ),
            "fields[0].si",
        ),
        (("[notes]", "[notez]"), "[notez]"),
        (
            ('change_order_title = "Change order {CONumber}: {COName}"', 'change_order_title = "{Nope}"'),
            "notes.change_order_title",
        ),
        (("[zoho]", "[zoho"), "invalid TOML"),
    ],
)
def test_a_bad_mapping_exits_78_naming_the_key(served_sims, env, tmp_path, change, key):
    """A mapping error: exit 78, stderr names the mapping key, no traceback, no API call."""
    old, new = change
    text = textwrap.dedent(TWO_WAY_MAPPING)
    assert old in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(old, new), encoding="utf-8")

    result = run_cli(["run-once"], {**env, "RECONCILER_MAPPING": str(bad)}, tmp_path)

    assert result.returncode == 78
    assert key in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert served_sims.zoho.requests == [] and served_sims.si.requests == []


def test_a_missing_mapping_file_exits_78_naming_the_variable(env, tmp_path):
    """RECONCILER_MAPPING pointing nowhere: exit 78 naming RECONCILER_MAPPING and the path."""
    missing = tmp_path / "nope.toml"

    result = run_cli(["plan"], {**env, "RECONCILER_MAPPING": str(missing)}, tmp_path)

    assert result.returncode == 78
    assert "RECONCILER_MAPPING" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr


# ---- the mass-change guard ----------------------------------------------------------------------------


def test_a_plan_over_max_writes_is_refused_until_forced(served_sims, env, tmp_path):
    """Over RECONCILER_MAX_WRITES: run-once applies nothing, exits 1, prints the override; --force applies."""
    sims = served_sims
    deals = flag_three(sims)
    guarded = {**env, "RECONCILER_MAX_WRITES": "2"}

    refused = run_cli(["run-once"], guarded, tmp_path)

    assert refused.returncode == 1
    assert "reconciler run-once --expect 3" in refused.stdout + refused.stderr
    assert "reconciler plan --out plan.json" in refused.stdout + refused.stderr
    assert "RECONCILER_MAX_WRITES=2" in refused.stdout + refused.stderr
    assert set(write_counts(sims).values()) == {0}
    assert not any(sims.zoho.deal(d).get("SI_Project_ID") for d in deals)
    planned = run_cli(["plan"], guarded, tmp_path)
    assert planned.returncode == 2 and "reconciler run-once --expect 3" in planned.stdout

    forced = run_cli(["run-once", "--force"], guarded, tmp_path)

    assert forced.returncode == 0, forced.stderr
    assert sims.si.count("POST", "/Publish/Projects") == 3
    assert all(sims.zoho.deal(d).get("SI_Project_ID") for d in deals)


# ---- retry and history --------------------------------------------------------------------------------


def test_retry_re_queues_a_parked_item_and_the_next_run_applies_it(served_sims, env, tmp_path):
    """A deal update Zoho rejects is parked; `retry KEY` after the fix re-queues it; the next run applies."""
    sims = served_sims
    deals, projects = linked_three(sims, lambda: run_cli(["run-once"], env, tmp_path, check=True))
    amount = next(f for f in sims.zoho.fields_meta if f["api_name"] == "Amount")
    amount["read_only"] = True  # an admin locked the field
    sims.si.edit_project(projects[0], Price=7777.0)

    parked = run_cli(["run-once"], env, tmp_path)

    assert parked.returncode == 1
    key = f"update:deal:{deals[0]}"
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    assert key in status and "Amount" in status
    assert sims.zoho.deal(deals[0])["Amount"] == 100
    puts = sims.zoho.count("PUT", "/crm/v8/Deals")
    idle = run_cli(["run-once"], env, tmp_path)
    assert idle.returncode == 0, idle.stdout + idle.stderr  # parked stays parked: not re-sent every cycle
    assert sims.zoho.count("PUT", "/crm/v8/Deals") == puts
    assert sims.zoho.deal(deals[0])["Amount"] == 100

    amount["read_only"] = False  # the admin fixed it
    retried = run_cli(["retry", key], env, tmp_path, check=True)
    assert "Re-queued 1" in retried.stdout
    applied = run_cli(["run-once"], env, tmp_path)

    assert applied.returncode == 0, applied.stderr
    assert sims.zoho.deal(deals[0])["Amount"] == 7777
    assert key not in run_cli(["status"], env, tmp_path, check=True).stdout
    again = run_cli(["retry", key], env, tmp_path)
    assert again.returncode == 1 and "no parked item has the key" in again.stderr


def test_history_shows_a_deals_field_changes_old_to_new(served_sims, env, tmp_path):
    """`history DEAL` lists the applied changes of that deal only, each as field: old -> new."""
    sims = served_sims
    deals, projects = linked_three(sims, lambda: run_cli(["run-once"], env, tmp_path, check=True))
    sims.si.edit_project(projects[0], Price=2500.25, Hours=40)
    run_cli(["run-once"], env, tmp_path, check=True)

    result = run_cli(["history", deals[0]], env, tmp_path, check=True)

    lines = result.stdout.splitlines()
    assert any('Amount: "100" -> "2500.25"' in line for line in lines), result.stdout
    assert any('Labor_Hours: (empty) -> "40"' in line for line in lines), result.stdout
    assert any('SI_Sync_Status: "Queued for SI" -> "In SI"' in line for line in lines), result.stdout
    assert any("SI_Project_ID: (empty) -> " in line and projects[0] in line for line in lines)
    assert all(deals[0] in line for line in lines)
    assert deals[1] not in result.stdout
