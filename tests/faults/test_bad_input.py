"""The bad-input table (README, "Bad input"; the rows live in ``table.py``): one test per row.

Settings, mapping and database problems stop every command with their exit code (78, or 1 and 75 for a
transient store fault and a held lock) and one line naming the variable, the mapping key or the file;
each row runs through the real ``reconciler`` command, and a sweep runs every row under every command
that reads them, looking for a traceback. Bad records (a Zoho deal, an SI export) are parked or skipped
with a message naming the record and the field while the other records of the cycle go through; those
rows are pinned by the tests below.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import keys, logs
from reconciler.context import Context
from reconciler.plan import project_guid
from reconciler.sim.harness import IN_PROCESS_SI, SimPair
from tests.conftest import ROOT, TWO_WAY_MAPPING, cycle, run_cli
from tests.faults.table import ROWS, RUNNABLE, Row, modes, pattern, render_readme, run, sandbox

# ---- the table, through the real command ---------------------------------------------------------------


@pytest.mark.parametrize("row", RUNNABLE, ids=[row.id for row in RUNNABLE])
def test_each_bad_input_gives_its_exit_code_and_one_line_naming_the_culprit(row: Row) -> None:
    """The row's command exits with its code and prints exactly its one line; named paths keep their mode."""
    assert row.setup is not None
    with sandbox() as box:
        skip = row.setup(box)
        if skip:
            pytest.skip(skip)
        before = modes(box, row.unchanged)
        result = run(box, row.command)
        lines = result.stderr.splitlines()
        assert result.returncode == row.exit_code, result.stdout + result.stderr
        if row.message is None:
            assert lines == [], result.stderr
        else:
            assert len(lines) == 1, result.stderr
            assert pattern("reconciler: " + row.message, box.subs).fullmatch(lines[0]), lines[0]
        assert modes(box, row.unchanged) == before
        if row.command == ("run-once",) and row.exit_code != 0:
            assert result.stdout == ""


def _sweep(command: tuple[str, ...]) -> dict[str, str]:
    """Run ``command`` in each runnable row's sandbox; the rows where it printed a traceback or exited
    with a code outside the contract."""
    found: dict[str, str] = {}
    for row in RUNNABLE:
        assert row.setup is not None
        with sandbox() as box:
            if row.setup(box):
                continue  # skipped on this machine, as its own test says
            result = run(box, command)
        if "Traceback" in result.stderr or result.returncode not in (0, 1, 2, 75, 78):
            found[row.id] = f"exit {result.returncode}: {result.stderr[-300:]}"
    return found


def test_status_prints_no_traceback_for_any_row_of_the_table() -> None:
    """`reconciler status` (which needs no secret) in every row's sandbox: no traceback, a contract code."""
    assert _sweep(("status",)) == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [("history",), ("check", "--offline"), ("status", "--json")], ids=" ".join
)
def test_no_other_command_prints_a_traceback_for_any_row_of_the_table(command: tuple[str, ...]) -> None:
    """history, check --offline and status --json in every row's sandbox (make proof): no traceback."""
    assert _sweep(command) == {}


def test_the_readme_bad_input_tables_are_the_table_in_this_folder() -> None:
    """README's "Bad input" tables equal tests/faults/table.py row for row (regenerate it from there)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for section, lines in render_readme().items():
        heading = f"### {section}\n\n"
        assert heading in readme, f"README has no section {section!r}"
        block = readme.split(heading, 1)[1].split("\n\n", 1)[0].splitlines()
        assert block == lines, f"README section {section!r} differs from tests/faults/table.py"


def test_every_documented_row_is_pinned_by_a_test() -> None:
    """A row without a setup names the test that pins it, and that test exists."""
    module = sys.modules[__name__]
    for row in ROWS:
        assert (row.setup is None) == (row.pinned_by is not None), row.what
        if row.pinned_by is not None:
            assert callable(getattr(module, row.pinned_by, None)), row.pinned_by


# ---- bad records --------------------------------------------------------------------------------------


@pytest.fixture
def log_events() -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """The JSON log events with a given name emitted during the test."""
    stream = io.StringIO()
    logs.configure("json", stream=stream)

    def named(name: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
        return [e for e in lines if e["event"] == name]

    yield named
    logs.configure("text")


BOTH_AMOUNT = """
[zoho]
module = "Deals"
flag_field = "Send_to_SI"
link_field = "SI_Project_ID"
status_field = "SI_Sync_Status"

[create]
Name = "Deal_Name"
Client = "Account_Name.name"

[[fields]]
zoho = "Amount"
si = "Budget"
direction = "both"
on_conflict = "si_wins"
"""


@dataclass
class Records:
    """Two deals (``deals[0]`` gets the bad input, ``deals[1]`` must go through) and their projects."""

    sims: SimPair
    ctx: Context
    deals: list[str]

    @property
    def projects(self) -> list[str]:
        return [project_guid(deal) for deal in self.deals]


def two_deals(sims: SimPair, ctx: Context, *, linked: bool, **fields: Any) -> Records:
    """Two flagged deals; with ``linked`` they are already created, imported and in sync."""
    deals = [
        sims.zoho.add_deal(
            Deal_Name=f"Deal {n}", Account_Name=f"Client {n}", Send_to_SI=True, Amount=100, **fields
        )
        for n in range(2)
    ]
    if linked:
        assert cycle(ctx).exit_code == 0
        sims.si.import_pending()
        assert cycle(ctx).exit_code == 0
    return Records(sims, ctx, deals)


def parked_errors(records: Records) -> dict[str, str | None]:
    return {item.key: item.last_error for item in records.ctx.store.parked()}


def si_list_answer(sims: SimPair) -> dict[str, Any]:
    """What SI's export list answers right now (to hand back a doctored copy of it)."""
    url = f"{IN_PROCESS_SI}/Subscribe/Projects?includeImported=false&pageNumber=1&pageSize=200"
    answer = sims.si.handle(httpx.Request("GET", url, headers={"X-DTSI-ApiKey": sims.si.api_key}))
    body: dict[str, Any] = answer.json()
    return body


# -- Zoho data


def test_a_deal_without_account_parks_its_create_and_the_other_deal_is_created(sims, make_ctx) -> None:
    """Create needs Client: the deal is parked naming deal and field; the other deal becomes a project."""
    ok = sims.zoho.add_deal(Deal_Name="Has account", Account_Name="Acme", Send_to_SI=True)
    bad = sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    ctx = make_ctx(sims)
    report = cycle(ctx)
    assert report.exit_code == 1 and report.outcome == "parked"
    records = Records(sims, ctx, [bad, ok])
    assert parked_errors(records) == {
        f"create:deal:{bad}": f"deal {bad}: field Account_Name.name is empty (SI requires Client)"
    }
    assert sims.zoho.deal(ok)["SI_Project_ID"] == project_guid(ok)
    assert "SI_Project_ID" not in sims.zoho.deal(bad)
    assert cycle(ctx).exit_code == 0  # parked once, not again and again


def test_a_non_number_in_a_both_direction_field_parks_the_deal(sims, make_ctx, mapping_file) -> None:
    """Amount "12x" under direction = both: the deal is parked naming deal and field; the other is created."""
    ctx = make_ctx(sims, mapping_file(BOTH_AMOUNT))
    records = two_deals(sims, ctx, linked=False)
    sims.zoho.edit_deal(records.deals[0], Amount="12x")
    report = cycle(ctx)
    assert report.exit_code == 1 and report.outcome == "parked"
    bad, ok = records.deals
    assert parked_errors(records) == {
        f"deal:{bad}": f"deal {bad}: field Amount: expected a number, got '12x'"
    }
    assert sims.zoho.deal(ok)["SI_Project_ID"] == project_guid(ok)
    assert [m.payload["IntegrationProjectId"] for m in sims.si.publish_messages] == [ok]


@pytest.mark.parametrize(
    ("shape", "described"),
    [({"id": "77", "name": "Acme"}, "an object with keys id, name"), (["Acme", "Other"], "a list of 2")],
    ids=["object", "list"],
)
def test_a_lookup_of_unexpected_shape_is_parked_not_sent_to_si(
    shape: Any, described: str, sims, make_ctx
) -> None:
    """COQL giving a lookup's name as an object or a list: parked naming deal and field, not published."""
    ctx = make_ctx(sims)
    records = two_deals(sims, ctx, linked=False)
    rows = [
        {
            "id": deal,
            "Modified_Time": sims.zoho.deal(deal)["Modified_Time"],
            "Send_to_SI": True,
            "Deal_Name": f"Deal {n}",
            "Account_Name.Account_Name": shape if n == 0 else "Client 1",
        }
        for n, deal in enumerate(records.deals)
    ]
    sims.zoho.inject(
        "POST", "/crm/v8/coql", status=200, body={"data": rows, "info": {"count": 2, "more_records": False}}
    )
    report = cycle(ctx)
    assert report.exit_code == 1 and report.outcome == "parked"
    bad = records.deals[0]
    assert parked_errors(records) == {
        f"create:deal:{bad}": f"deal {bad}: field Account_Name.name: expected a single value, got {described}"
    }
    assert [m.payload["Client"] for m in sims.si.publish_messages] == ["Client 1"]


TEMPLATES = """
[create]
Name = "Deal_Name"
Client = "Account_Name.name"
TemplateName = { zoho = "Type", values = { "Residential" = "Res Standard" } }
"""


def test_a_type_without_a_template_parks_its_create_and_the_others_are_created(
    sims, make_ctx, mapping_file
) -> None:
    """A value map with no entry for the deal's Type and no default: that create is parked naming the
    value; the other deal is created with its template; the next cycle does not park it again."""
    ctx = make_ctx(sims, mapping_file(TEMPLATES))
    ok = sims.zoho.add_deal(Deal_Name="Home", Account_Name="Acme", Type="Residential", Send_to_SI=True)
    bad = sims.zoho.add_deal(Deal_Name="Plant", Account_Name="Acme", Type="Industrial", Send_to_SI=True)
    report = cycle(ctx)
    assert report.exit_code == 1 and report.outcome == "parked"
    records = Records(sims, ctx, [bad, ok])
    assert parked_errors(records) == {
        f"create:deal:{bad}": f"deal {bad}: field Type: no TemplateName for 'Industrial' (add it under"
        " create.TemplateName.values in the mapping, or give a default)"
    }
    assert [m.payload["TemplateName"] for m in sims.si.publish_messages] == ["Res Standard"]
    assert cycle(ctx).exit_code == 0


# -- SI data

SI_VALUES = [
    pytest.param("Price", "12x", "Price: expected a number, got '12x'", id="price-12x"),
    pytest.param(
        "CloseDate", "next week", "CloseDate: expected a date (YYYY-MM-DD), got 'next week'", id="not-a-date"
    ),
    pytest.param(
        "Price",
        {"Amount": 5},
        "Price: expected a single value, got an object with keys amount",
        id="object-for-a-number",
    ),
]


@pytest.mark.parametrize(("si_field", "value", "problem"), SI_VALUES)
def test_a_bad_si_value_parks_the_project_and_the_other_project_syncs(
    si_field: str, value: Any, problem: str, sims, make_ctx, mapping_file
) -> None:
    """An SI export with a value of the wrong type: parked naming project, deal and field; others flow."""
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    records = two_deals(sims, ctx, linked=True)
    bad, ok = records.projects
    sims.si.edit_project(bad, **{si_field: value})
    sims.si.edit_project(ok, Price=777)
    report = cycle(ctx)
    assert report.exit_code == 1 and report.outcome == "parked"
    deal = records.deals[0]
    assert parked_errors(records) == {f"si:project:{bad}": f"SI project {bad} (deal {deal}): field {problem}"}
    assert sims.zoho.deal(records.deals[1])["Amount"] == 777
    assert sims.zoho.deal(deal)["Amount"] == 100
    assert cycle(ctx).exit_code == 0


def test_an_export_without_published_time_is_held_and_reported(sims, make_ctx, log_events) -> None:
    """A list entry lacking PublishedOnUnixTimeMs is never acknowledged nor used, and never skipped silently:
    the cycle exits 1 naming message, project and field, the item waits for a retry (parked after 5)."""
    ctx = make_ctx(sims)
    records = two_deals(sims, ctx, linked=True)
    bad, ok = records.projects
    sims.si.edit_project(bad, Price=555)
    sims.si.edit_project(ok, Price=777)
    answer = si_list_answer(sims)
    broken = next(p for p in answer["Projects"] if p["Id"] == bad)
    del broken["PublishedOnUnixTimeMs"]
    sims.si.inject("GET", "/Subscribe/Projects", status=200, body=answer)
    report = cycle(ctx)
    assert report.exit_code == 1, report.summary()
    assert "PublishedOnUnixTimeMs is None" in report.message and bad in report.message
    waiting = [i for i in ctx.store.open_intents().values() if i.key.startswith("read:message:")]
    assert [(i.status, i.attempts) for i in waiting] == [("pending", 1)]
    assert sims.zoho.deal(records.deals[1])["Amount"] == 777
    assert sims.zoho.deal(records.deals[0])["Amount"] == 100
    warnings = log_events("si.bad_export")
    assert [(w["project_id"], w["problem"]) for w in warnings] == [
        (bad, "PublishedOnUnixTimeMs is None, not a whole number")
    ]
    assert [a.project_id for a in sims.si.acks][-1:] == [ok]  # the broken message is not acknowledged
    assert any(m.project_id == bad and not m.imported for m in sims.si.export_messages)


@pytest.mark.parametrize("odd", [2.0, "02", " 2 "], ids=["float", "leading-zero", "spaces"])
def test_an_odd_conumber_is_the_same_change_order(odd: Any, sims, make_ctx) -> None:
    """CONumber 2.0 / "02" / " 2 " is change order 2: its note says 2, CO_Number is "2", no second note."""
    ctx = make_ctx(sims)
    records = two_deals(sims, ctx, linked=True)
    project, deal = records.projects[0], records.deals[0]
    sims.si.add_change_order(project, 2, "Extra speakers", price=500)
    answer = si_list_answer(sims)
    for entry in answer["Projects"]:
        entry["CONumber"] = odd
    sims.si.inject("GET", "/Subscribe/Projects", status=200, body=answer)
    assert cycle(ctx).exit_code == 0
    assert [n["Note_Title"] for n in sims.zoho.notes_for(deal)] == ["Change order 2: Extra speakers"]
    assert sims.zoho.deal(deal)["CO_Number"] == "2"
    sims.si.export(project, 2)  # the same state again, as SI numbers it
    writes = sims.zoho.count("PUT", "/crm/v8/Deals") + sims.zoho.count("POST", "/crm/v8/Notes")
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.count("PUT", "/crm/v8/Deals") + sims.zoho.count("POST", "/crm/v8/Notes") == writes
    assert len(sims.zoho.notes_for(deal)) == 1


def test_a_malformed_export_list_fails_the_cycle_cleanly_and_the_next_proceeds(sims, make_ctx) -> None:
    """Broken JSON from SI's list: exit 1 naming the call, nothing written or acknowledged; next cycle ok."""
    ctx = make_ctx(sims)
    records = two_deals(sims, ctx, linked=True)
    sims.si.edit_project(records.projects[1], Price=777)
    acks = len(sims.si.acks)
    sims.si.inject("GET", "/Subscribe/Projects", kind="malformed")
    report = cycle(ctx)
    assert report.exit_code == 1
    assert report.message == "could not read: si.subscribe.list: HTTP 200: malformed JSON in the answer"
    assert len(sims.si.acks) == acks
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(records.deals[1])["Amount"] == 777


def test_one_projects_malformed_details_do_not_hold_up_the_others(sims, make_ctx, log_events) -> None:
    """A project whose detail GET is always broken JSON is retried, then parked (visible, exit 1, never
    acknowledged); the other project syncs in every one of those cycles."""
    ctx = make_ctx(sims)  # the default mapping syncs Hours, which only the detail GET carries
    records = two_deals(sims, ctx, linked=True)
    bad, ok = records.projects
    sims.si.edit_project(bad, Hours=3)
    sims.si.edit_project(ok, Hours=4, Price=777)
    sims.si.inject("GET", f"/Subscribe/Projects/{bad}", kind="malformed", times=-1)
    outcomes = []
    for _ in range(keys.MAX_ATTEMPTS):
        report = cycle(ctx)
        assert report.exit_code == 1, report.summary()
        outcomes.append(report.outcome)
        assert sims.zoho.deal(records.deals[1])["Labor_Hours"] == 4
    assert outcomes == ["failed"] * (keys.MAX_ATTEMPTS - 1) + ["parked"]
    assert "Labor_Hours" not in sims.zoho.deal(records.deals[0])
    (parked,) = ctx.store.parked()
    assert parked.key == f"read:project:{bad}"
    assert "malformed JSON" in (parked.last_error or "")
    quiet = cycle(ctx)  # parked: it no longer fails every cycle, and the rest stays in sync
    assert quiet.exit_code == 0, quiet.summary()
    warnings = log_events("si.bad_detail")
    assert {(w["project_id"], w["error"]) for w in warnings} == {
        (bad, "si.subscribe.get: HTTP 200: malformed JSON in the answer")
    }
    assert any(m.project_id == bad and not m.imported for m in sims.si.export_messages)


def test_bad_records_never_crash_a_real_run_once(served_sims: SimPair, tmp_path: Path) -> None:
    """Over real HTTP, a deal without account and an SI price "12x" park (exit 1); nothing crashes."""
    good = served_sims.zoho.add_deal(Deal_Name="Good", Account_Name="Acme", Send_to_SI=True, Amount=1)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(textwrap.dedent(TWO_WAY_MAPPING), encoding="utf-8")
    env = served_sims.environment(tmp_path / "reconciler.db", mapping)
    assert run_cli(["run-once"], env, tmp_path).returncode == 0
    served_sims.si.import_pending()
    assert run_cli(["run-once"], env, tmp_path).returncode == 0
    served_sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    served_sims.si.edit_project(project_guid(good), Price="12x")
    result = run_cli(["run-once"], env, tmp_path)
    assert result.returncode == 1
    assert "2 item(s) parked" in result.stdout
    assert "Traceback" not in result.stderr
    status = run_cli(["status"], env, tmp_path, check=True).stdout
    assert "field Account_Name.name is empty (SI requires Client)" in status
    assert "field Price: expected a number, got '12x'" in status
