"""A mapping that `check --offline` accepts never makes a cycle raise.

The cases of issue 13 that used to pass `check` and then raise inside the planner on the first change
order (a traceback on every cycle, no note ever written) are refused by `check --offline` now; a
property test runs real cycles, with change orders carrying random values, under random templates the
mapping accepts; and a mapping of 60 fields (over the old, wrong limit of 50 columns) runs.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.clients.http import RetryPolicy
from reconciler.context import build_context
from reconciler.errors import ConfigError
from reconciler.mapping import parse_mapping
from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from reconciler.store import Store
from tests.conftest import cycle, run_cli

HEAD = """
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
si = "Price"
"""


def _with_title(title: str) -> dict[str, Any]:
    import tomllib

    data = tomllib.loads(HEAD)
    data["notes"] = {"change_order_title": title}
    return data


@pytest.mark.parametrize(
    "title", ["CO {Price:d}", "CO {Price:.2f}", "CO {COName!x}", "CO {COName:>99999999999}"]
)
def test_check_offline_refuses_the_templates_that_used_to_break_every_cycle(
    title: str, tmp_path: Path
) -> None:
    """The issue's four templates: `check --offline` exits 78, one line naming notes.change_order_title."""
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(HEAD + f'\n[notes]\nchange_order_title = "{title}"\n', encoding="utf-8")
    result = run_cli(["check", "--offline"], {"RECONCILER_MAPPING": str(mapping), **_CREDENTIALS}, tmp_path)
    assert result.returncode == 78, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"reconciler: mapping {mapping}: notes.change_order_title: {title[3:]}: only")


_CREDENTIALS = {
    "ZOHO_CLIENT_ID": "1000.id",
    "ZOHO_CLIENT_SECRET": "secret",
    "ZOHO_REFRESH_TOKEN": "1000.refresh",
    "SI_API_KEY": "key",
}

_VALID = st.sampled_from(
    [
        "{CONumber}",
        "{COName}",
        "{Price}",
        "{costatus}",
        "{COType}",
        "{CONotes}",
        "{{",
        "}}",
        "CO ",
        ": ",
        "ü",
        "\n",
    ]
)
_INVALID = st.sampled_from(
    ["{Price:d}", "{Price:.2f}", "{COName!x}", "{COName:>99999999999}", "{}", "{0}", "{Price.real}", "{", "}"]
)
_PIECES = st.one_of(_VALID, _VALID, _VALID, _VALID, _INVALID)  # mostly accepted, so cycles really run
_VALUE = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["Amount", "x"]), st.integers(), max_size=2),
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # each example runs three real cycles
@given(
    title=st.lists(_PIECES, min_size=1, max_size=6).map("".join),
    body=st.lists(_PIECES, max_size=6).map("".join),
    name=_VALUE,
    price=_VALUE,
)
def test_a_mapping_check_accepts_never_makes_a_cycle_raise(
    title: str, body: str, name: Any, price: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Random templates: refused at load, or every cycle with a change order of odd values completes."""
    data = _with_title(title)
    data["notes"]["change_order_body"] = body
    try:
        mapping = parse_mapping(data, source="random.toml")
    except ConfigError as exc:
        assert all(p.startswith("mapping random.toml: notes.change_order_") for p in exc.problems)
        return
    sims = SimPair()
    deal = sims.zoho.add_deal(Deal_Name="Deal", Account_Name="Acme", Send_to_SI=True, Amount=1)
    folder = tmp_path_factory.mktemp("cycle")
    store = Store.open(folder / "reconciler.db")
    settings_ = sims.settings(folder / "reconciler.db")
    ctx = build_context(settings_, mapping, store, transport=sims.transport(), policy=RetryPolicy.no_waits())
    try:
        cycle(ctx)
        sims.si.import_pending()
        project = project_guid(deal)
        sims.si.add_change_order(project, 1, "Extra")
        sims.si.change_orders[project]["1"].update(COName=name, Price=price)
        sims.si.export(project, 1)
        for _ in range(2):
            report = cycle(ctx)
            assert report.outcome in ("ok", "parked"), report.summary()
        assert len(sims.zoho.notes_for(deal)) == 1
    finally:
        ctx.close()
        store.close()


def test_sixty_mapped_fields_pass_check_and_run(tmp_path: Path) -> None:
    """60 synced fields (over the old, wrong 50-column cap that crashed run-once) read and sync."""
    sims = SimPair()
    for n in range(60):
        sims.zoho.fields_meta.append(
            {"api_name": f"Custom_{n}", "data_type": "text", "field_label": f"Custom {n}", "id": f"9{n:05d}"}
        )
    entries = "".join(
        f'\n[[fields]]\nzoho = "Custom_{n}"\nsi = "CustomField{n + 1}"\nzoho_type = "text"\n'
        for n in range(60)
    )
    text = textwrap.dedent(HEAD.replace('[[fields]]\nzoho = "Amount"\nsi = "Price"\n', "")) + entries
    mapping_file = tmp_path / "mapping.toml"
    mapping_file.write_text(text, encoding="utf-8")
    result = run_cli(
        ["check", "--offline"], {"RECONCILER_MAPPING": str(mapping_file), **_CREDENTIALS}, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "(60 synced fields)" in result.stdout
    deal = sims.zoho.add_deal(Deal_Name="Wide", Account_Name="Acme", Send_to_SI=True)
    from reconciler.mapping import load_mapping

    store = Store.open(tmp_path / "reconciler.db")
    ctx = build_context(
        sims.settings(tmp_path / "reconciler.db", mapping_file),
        load_mapping(mapping_file),
        store,
        transport=sims.transport(),
        policy=RetryPolicy.no_waits(),
    )
    try:
        assert cycle(ctx).exit_code == 0
        sims.si.import_pending()
        assert cycle(ctx).exit_code == 0
        sims.si.edit_project(project_guid(deal), CustomField60="sixty")
        assert cycle(ctx).exit_code == 0
        assert sims.zoho.deal(deal)["Custom_59"] == "sixty"
    finally:
        ctx.close()
        store.close()
