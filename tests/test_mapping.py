"""Mapping file: shipped files load, every error names its key, value maps and canonical forms."""

from __future__ import annotations

import textwrap
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.convert import to_si_json, to_si_string, to_zoho_json
from reconciler.errors import EX_CONFIG, ConfigError
from reconciler.mapping import (
    FieldMap,
    Mapping,
    canonical,
    load_mapping,
    parse_mapping,
    render_template,
    zoho_column,
)
from tests.conftest import DEFAULT_MAPPING, ROOT, TWO_WAY_MAPPING

BASE = """
[zoho]
module = "Deals"
flag_field = "Send_to_SI"
link_field = "SI_Project_ID"

[create]
Name = "Deal_Name"
Client = "Account_Name.name"
"""


def _parse(extra: str, base: str = BASE) -> Mapping:
    return parse_mapping(tomllib.loads(base + textwrap.dedent(extra)), source="m.toml")


def _problems(extra: str, base: str = BASE) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        _parse(extra, base)
    assert caught.value.exit_code == EX_CONFIG
    return caught.value.problems


# ---- the shipped files -----------------------------------------------------------------------------------


def test_shipped_default_mapping_loads() -> None:
    """config/mapping.toml loads: Deals, the contract's flag/link/status fields, SI -> Zoho fields."""
    m = load_mapping(DEFAULT_MAPPING)
    assert (m.module, m.flag_field, m.link_field, m.status_field) == (
        "Deals",
        "Send_to_SI",
        "SI_Project_ID",
        "SI_Sync_Status",
    )
    create = dict(m.create)
    assert {k: create[k] for k in ("Name", "Client", "IntegrationClientId")} == {
        "Name": "Deal_Name",
        "Client": "Account_Name.name",
        "IntegrationClientId": "Account_Name.id",
    }
    assert {k for k in create if k.startswith("BillingAddress.")} == {
        f"BillingAddress.{p}" for p in ("Street1", "City", "State", "PostalCode", "Country")
    }
    assert create["Contacts[0].Name"] == "Contact_Name.name"
    assert dict(m.create_constants) == {"Contacts[0].IsPrimary": True}
    assert {f.zoho: f.si for f in m.fields}["Amount"] == "Price"
    assert {f.zoho: f.si for f in m.fields}["SI_Project_Number"] == "Number"
    assert all(f.direction == "si_to_zoho" for f in m.fields)
    assert m.source == str(DEFAULT_MAPPING)


def test_shipped_example_mapping_loads_with_every_direction() -> None:
    """config/mapping.example.toml loads and uses all three directions and a value map."""
    m = load_mapping(ROOT / "config" / "mapping.example.toml")
    assert {f.direction for f in m.fields} == {"si_to_zoho", "zoho_to_si", "both"}
    stage = next(f for f in m.fields if f.zoho == "Stage")
    assert stage.from_si("Approved") == "Closed Won"
    name = next(f for f in m.fields if f.zoho == "Deal_Name")
    assert name.on_conflict == "zoho_wins"


def test_two_way_test_mapping_loads() -> None:
    """The tests' TWO_WAY_MAPPING is itself a valid mapping."""
    m = parse_mapping(tomllib.loads(TWO_WAY_MAPPING))
    assert len(m.fields) == 6


def test_typed_defaults_follow_the_si_field() -> None:
    """Price -> number, Revision -> integer, CloseDate -> date, Progress -> text, unless zoho_type says."""
    m = _parse(
        """
        [[fields]]
        zoho = "Amount"
        si = "Price"
        [[fields]]
        zoho = "Rev"
        si = "Revision"
        [[fields]]
        zoho = "Rev_Text"
        si = "revision"
        zoho_type = "text"
        [[fields]]
        zoho = "Closing_Date"
        si = "CloseDate"
        direction = "zoho_to_si"
        [[fields]]
        zoho = "Stage"
        si = "Progress"
        """
    )
    assert [f.zoho_type for f in m.fields] == ["number", "integer", "text", "date", "text"]
    assert [f.si_field_id for f in m.fields] == [None, None, None, 6, 2]
    assert m.fields[0].direction == "si_to_zoho"


# ---- errors name their key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[bogus]\nx = 1\n", "[bogus]"),
        ("[notes]\nchange_order_titel = 'x'\n", "notes.change_order_titel"),
        ("[[fields]]\nzoho = 'Amount'\nsi = 'Price'\ncolour = 'red'\n", "fields[0].colour"),
        ("[[fields]]\nzoho = 'Amount'\nsi = 'Price'\ndirection = 'sideways'\n", "fields[0].direction"),
        (
            "[[fields]]\nzoho = 'Deal_Name'\nsi = 'Name'\ndirection = 'both'\non_conflict = 'coin'\n",
            "fields[0].on_conflict",
        ),
        (
            "[[fields]]\nzoho = 'Deal_Name'\nsi = 'Name'\ndirection = 'zoho_to_si'\n"
            "on_conflict = 'si_wins'\n",
            "fields[0].on_conflict",
        ),
        ("[[fields]]\nzoho = 'Amount'\nsi = 'Pricey'\n", "fields[0].si"),
        ("[[fields]]\nzoho = 'Amount'\nsi = 'Price'\ndirection = 'zoho_to_si'\n", "fields[0].si"),
        ("[[fields]]\nzoho = 'Labor_Hours'\nsi = 'Hours'\ndirection = 'both'\n", "fields[0].si"),
        ("[[fields]]\nzoho = 'Rev'\nsi = 'Revision'\ndirection = 'zoho_to_si'\n", "fields[0].si"),
        ("[[fields]]\nsi = 'Price'\n", "fields[0].zoho"),
        ("[[fields]]\nzoho = 'Amount'\nsi = 'Price'\nzoho_type = 'money'\n", "fields[0].zoho_type"),
        (
            "[[fields]]\nzoho = 'Amount'\nsi = 'Price'\n[[fields]]\nzoho = 'Amount'\nsi = 'Cost'\n",
            "fields[1].zoho",
        ),
        ("[notes]\nchange_order_title = 'CO {Foo}'\n", "notes.change_order_title"),
        ("[notes]\nchange_order_body = 'Price: {Price'\n", "notes.change_order_body"),
        ("[create.constants]\nColour = 'red'\n", "create.constants.Colour"),
    ],
)
def test_each_mapping_error_names_its_key(extra: str, key: str) -> None:
    """One problem, naming the offending key (and the file), exit 78."""
    problems = _problems(extra)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"mapping m.toml: {key}: ")


def test_unknown_key_in_zoho_section_is_named() -> None:
    """A typo in [zoho] is reported as zoho.<key>."""
    problems = _problems("", base=BASE.replace('module = "Deals"', 'modul = "Deals"'))
    assert problems == ("mapping m.toml: zoho.modul: unknown key",)


def test_unknown_create_field_is_named() -> None:
    """An SI field that does not exist under [create] is reported as create.<name>."""
    problems = _problems("", base=BASE + 'Colour = "Stage"\n')
    assert problems[0].startswith("mapping m.toml: create.Colour:")


@pytest.mark.parametrize("missing", ["Name", "Client"])
def test_create_without_name_or_client_is_an_error(missing: str) -> None:
    """SI requires Name and Client on a new project: a mapping without either names create.<it>."""
    base = "\n".join(line for line in BASE.splitlines() if not line.startswith(f"{missing} ="))
    problems = _problems("", base=base)
    assert problems == (
        f"mapping m.toml: create.{missing}: SI requires it on every new project: map it or set a constant",
    )


def test_create_constant_satisfies_client() -> None:
    """A constant Client is as good as a mapped one."""
    base = "\n".join(line for line in BASE.splitlines() if not line.startswith("Client =")) + "\n"
    m = _parse('[create.constants]\nClient = "Walk-in"\n', base=base)
    assert m.create_constants == (("Client", "Walk-in"),)


def test_placeholder_error_names_the_placeholder() -> None:
    """An unknown {Foo} in a note template is quoted in the message."""
    (problem,) = _problems("[notes]\nchange_order_body = 'Hi {Foo} {COStatus}'\n")
    assert "{Foo} is not an SI field" in problem


def test_sending_a_field_without_project_field_id_explains_the_fix() -> None:
    """zoho_to_si on Price says SI cannot receive it and to use si_to_zoho."""
    (problem,) = _problems("[[fields]]\nzoho = 'Amount'\nsi = 'Price'\ndirection = 'zoho_to_si'\n")
    assert "Price" in problem and "ProjectFieldId" in problem and "si_to_zoho" in problem


def test_several_problems_are_reported_together() -> None:
    """Every problem in the file is one line of the same error, in file order."""
    problems = _problems(
        """
        [bogus]
        x = 1
        [[fields]]
        zoho = "Amount"
        si = "Price"
        direction = "zoho_to_si"
        [[fields]]
        zoho = "Thing"
        si = "Nope"
        [notes]
        change_order_title = "{Foo}"
        """
    )
    keys = [p.split(": ")[1] for p in problems]
    assert keys == ["[bogus]", "fields[0].si", "fields[1].si", "notes.change_order_title"]


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    """A syntax error: one line naming the file and saying invalid TOML, exit 78."""
    path = tmp_path / "mapping.toml"
    path.write_text("[zoho\nmodule = 'Deals'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"mapping {path}: invalid TOML")
    assert caught.value.exit_code == EX_CONFIG


def test_unreadable_mapping_names_reconciler_mapping(tmp_path: Path) -> None:
    """A missing file is reported against RECONCILER_MAPPING."""
    with pytest.raises(ConfigError, match=r"^RECONCILER_MAPPING: cannot read"):
        load_mapping(tmp_path / "nope.toml")


def test_status_field_can_be_disabled() -> None:
    """status_field = "" (or omitted) turns the sync status off."""
    base = BASE.replace('link_field = "SI_Project_ID"', 'link_field = "SI_Project_ID"\nstatus_field = ""')
    assert _parse("", base=base).status_field is None
    assert _parse("").status_field is None


# ---- value maps and transforms --------------------------------------------------------------------------


STAGE = FieldMap(
    zoho="Stage",
    si="Progress",
    direction="both",
    values=(("Approved", "Closed Won"), ("On Hold", "Negotiation")),
)


def test_value_map_translates_si_values_into_zoho_values() -> None:
    """from_si maps exact SI text through the table, and passes other values through."""
    assert STAGE.from_si("Approved") == "Closed Won"
    assert STAGE.from_si("On Hold") == "Negotiation"
    assert STAGE.from_si("Design") == "Design"
    assert STAGE.from_si(None) is None


def test_value_map_is_read_backwards_for_si() -> None:
    """si_value turns a Zoho value back into the SI text the map names, else passes it through."""
    assert STAGE.si_value("Closed Won") == "Approved"
    assert STAGE.si_value("Negotiation") == "On Hold"
    assert STAGE.si_value("Qualification") == "Qualification"


def test_si_value_of_a_date_is_the_invariant_form() -> None:
    """A canonical date goes to SI as YYYY-MM-DD; a boolean as true/false."""
    close = FieldMap("Closing_Date", "CloseDate", "zoho_to_si", zoho_type="date")
    assert close.si_value("2026-03-01") == "2026-03-01"
    assert to_si_string(True, "customfield23") == "true"
    assert to_si_string(None, "name") == ""


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("12345.50", "number", "12345.5"),
        (100.0, "number", "100"),
        (100, "number", "100"),
        ("0.10", "number", "0.1"),
        ("-3", "number", "-3"),
        (" 7 ", "integer", "7"),
        ("7.0", "integer", "7"),
        ("1E+2", "number", None),
        ("", "number", None),
        (None, "text", None),
        ("  ", "text", None),
        ("2026-03-01T00:00:00", "date", "2026-03-01"),
        ("2026-03-01", "date", "2026-03-01"),
        ("2026-03-01T10:30:00Z", "date", "2026-03-01"),
        (date(2026, 3, 1), "date", "2026-03-01"),
        (datetime(2026, 3, 1, 10, 30, 5, 123), "datetime", "2026-03-01T10:30:05+00:00"),
        ("true", "boolean", True),
        ("False", "boolean", False),
        (1, "boolean", True),
        (False, "boolean", False),
        (12, "text", "12"),
    ],
)
def test_canonical_forms(value: Any, kind: Any, expected: Any) -> None:
    """Numbers normalised, dates YYYY-MM-DD, booleans True/False, empty text None."""
    if expected is None and value not in (None, "", "  "):
        with pytest.raises(ValueError):
            canonical(value, kind)
    else:
        assert canonical(value, kind) == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [("12x", "number"), ("NaN", "number"), ("inf", "number"), (True, "number"), ("7.5", "integer")],
)
def test_canonical_rejects_bad_numbers(value: Any, kind: Any) -> None:
    """Text that is not a plain decimal (or a fraction for an integer) raises ValueError."""
    with pytest.raises(ValueError, match="expected a"):
        canonical(value, kind)


@pytest.mark.parametrize(("value", "kind"), [("maybe", "boolean"), ("01/03/2026", "date")])
def test_canonical_rejects_bad_booleans_and_dates(value: Any, kind: Any) -> None:
    """A boolean or date that cannot be read raises ValueError quoting the value."""
    with pytest.raises(ValueError, match=repr(value)):
        canonical(value, kind)


def test_zoho_json_sends_numbers_as_json_numbers() -> None:
    """Canonical "12345.5" goes to Zoho as 12345.5, "100" as 100, an integer as int."""
    assert to_zoho_json("12345.5", "number") == 12345.5
    assert to_zoho_json("100", "number") == 100
    assert isinstance(to_zoho_json("100", "number"), int)
    assert to_zoho_json("3", "integer") == 3
    assert to_zoho_json("2026-03-01", "date") == "2026-03-01"
    assert to_zoho_json(None, "number") is None


def test_si_json_types_a_publish_body() -> None:
    """Publish bodies carry typed JSON: decimals as floats, dates as midnight date-times."""
    assert to_si_json("1,5".replace(",", "."), "price") == 1.5
    assert to_si_json("2026-03-01", "closedate") == "2026-03-01T00:00:00"
    assert to_si_json("3", "revision") == 3
    assert to_si_json("Acme", "client") == "Acme"


@pytest.mark.parametrize(
    ("path", "column"),
    [
        ("Account_Name.name", "Account_Name.Account_Name"),
        ("Contact_Name.name", "Contact_Name.Full_Name"),
        ("Owner.name", "Owner.full_name"),
        ("Account_Name.Phone", "Account_Name.Phone"),
        ("Deal_Name", "Deal_Name"),
    ],
)
def test_zoho_column_reads_a_lookup_name_through_its_join(path: str, column: str) -> None:
    """COQL returns lookups as {id}: X.name becomes the looked-up module's name column."""
    assert zoho_column(path) == column


def test_render_template_is_case_insensitive_and_blanks_missing_values() -> None:
    """{CONumber} finds 'conumber'; null and absent values render as empty."""
    values = {"conumber": "CO-7", "coname": None, "PRICE": 12.5}
    text = render_template("Change order {CONumber}: {COName} / {COType} / {Price}", values)
    assert text == "Change order CO-7:  /  / 12.5"


def test_mapping_lists_what_the_cycle_reads() -> None:
    """zoho_paths lists flag, link, status, create and field paths once each."""
    m = parse_mapping(tomllib.loads(TWO_WAY_MAPPING))
    paths = m.zoho_paths()
    assert paths[:3] == ["Send_to_SI", "SI_Project_ID", "SI_Sync_Status"]
    assert len(paths) == len(set(paths))
    assert {"Deal_Name", "Account_Name.name", "Amount", "Closing_Date"} <= set(paths)
    assert m.needs_project_detail()  # Hours is not in the list payload


def test_a_lookup_path_cannot_be_a_synced_field():
    """[[fields]] zoho = "Account_Name.name" is refused: it would write a dotted key onto the deal."""
    with pytest.raises(ConfigError) as caught:
        parse_mapping(
            {
                "create": {"Name": "Deal_Name", "Client": "Account_Name.name"},
                "fields": [{"zoho": "Account_Name.name", "si": "Client", "direction": "si_to_zoho"}],
            }
        )
    assert any("fields[0].zoho" in p and "lookup path" in p for p in caught.value.problems)
