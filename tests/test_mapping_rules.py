"""Mapping validation matches what the runtime does: what loads, a cycle can run; what cannot, is one line.

Each rule is pinned by a case that used to load and then fail at run time (a traceback inside the
planner, a wrong write, text in a COQL query); the property tests prove note rendering total.
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import EX_CONFIG, ConfigError
from reconciler.mapping import COQL_MAX_COLUMNS, Mapping, load_mapping, parse_mapping
from reconciler.queries import COQL_MAX_FIELDS
from reconciler.templates import render, render_template, template_problems

BASE = """
[zoho]
module = "Deals"
flag_field = "Send_to_SI"
link_field = "SI_Project_ID"
status_field = "SI_Sync_Status"

[create]
Name = "Deal_Name"
Client = "Account_Name.name"
"""


def _parse(extra: str, base: str = BASE) -> Mapping:
    return parse_mapping(tomllib.loads(base + textwrap.dedent(extra)), source="m.toml")


def _problems(extra: str, base: str = BASE) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _parse(extra, base)
    assert caught.value.exit_code == EX_CONFIG
    return [p.removeprefix("mapping m.toml: ") for p in caught.value.problems]


def _note(title: str) -> str:
    return f"\n[notes]\nchange_order_title = {_toml_string(title)}\n"


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (every character escaped as TOML wants)."""
    return (
        '"' + "".join(c if c.isalnum() or c in " {}:.!>[]_-#()" else f"\\U{ord(c):08x}" for c in text) + '"'
    )


# ---- templates ----------------------------------------------------------------------------------------

ONLY_FIELDS = (
    "only {Field} placeholders are allowed (no format spec, conversion, attribute or index); "
    "write {{ and }} for literal braces"
)


@pytest.mark.parametrize(
    "template",
    [
        "{Price:d}",
        "{Price:.2f}",
        "{COName!x}",
        "{COName!r}",
        "{COName:>99999999999}",
        "{Price.real}",
        "{0}",
        "{}",
    ],
)
def test_a_template_with_anything_but_field_placeholders_is_refused(template: str) -> None:
    """Format specs, conversions, attributes and positional fields raised inside the planner: now at load."""
    assert _problems(_note(f"CO {template}")) == [f"notes.change_order_title: {template}: {ONLY_FIELDS}"]


@pytest.mark.parametrize(("template", "brace"), [("CO {CONumber", "{"), ("CO } {CONumber}", "}")])
def test_a_stray_brace_is_refused(template: str, brace: str) -> None:
    """A lone brace: the line says to double it."""
    assert _problems(_note(template)) == [
        f"notes.change_order_title: a lone {brace!r}: write {brace * 2} for a literal brace"
    ]


def test_doubled_braces_are_literal_and_placeholders_are_case_insensitive() -> None:
    """{{ and }} render as braces; {conumber} finds CONumber; a missing or null value renders empty."""
    m = _parse(_note("{{CO}} #{conumber}: {COName} ({COType})"))
    assert render_template(m.change_order_title, {"CONumber": 7, "COName": None}) == "{CO} #7:  ()"


def test_a_value_that_cannot_render_is_shown_empty_and_named() -> None:
    """An object or a list where text belongs: empty in the note, named so the caller can warn."""
    rendered = render("{COName} / {Price} / {COType}", {"COName": {"a": 1}, "Price": [1, 2], "COType": "Add"})
    assert rendered.text == " /  / Add"
    assert rendered.blanked == ("COName", "Price")


_PIECES = st.sampled_from(
    [
        "{CONumber}", "{COName}", "{Price}", "{costatus}", "{Price:d}", "{Price:.2f}", "{COName!x}",
        "{COName!r}", "{COName:>99999999999}", "{}", "{0}", "{Price.real}", "{Price[0]}", "{", "}",
        "{{", "}}", "{ Price }", "{Colour}", "{{Price}}", "{Price:{Price}}",
    ]
)  # fmt: skip
_TEMPLATES = st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=8).map("".join)
_VALUES = st.dictionaries(
    st.sampled_from(["CONumber", "COName", "Price", "COStatus", "conumber", "PRICE"]),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
)


@settings(max_examples=300)
@given(template=st.text(), values=_VALUES)
def test_rendering_is_total_for_any_text_and_any_values(template: str, values: dict[str, Any]) -> None:
    """Whatever the template and the values, render returns text and never raises."""
    rendered = render(template, values)
    assert isinstance(rendered.text, str)


@settings(max_examples=300)
@given(template=_TEMPLATES, values=_VALUES)
def test_a_template_the_mapping_accepts_renders_like_str_format_without_raising(
    template: str, values: dict[str, Any]
) -> None:
    """Accepted templates render; for plain values the text equals what str.format gives."""
    try:
        m = _parse(_note(template))
    except ConfigError as exc:
        assert all(p.startswith("mapping m.toml: notes.change_order_title: ") for p in exc.problems)
        return
    assert template_problems(m.change_order_title) == []
    rendered = render(m.change_order_title, values)
    plain = {k.lower(): v for k, v in values.items() if not isinstance(v, list | dict)}
    # Compare with str.format only where it is defined the same way: no list or object values, and no
    # two keys that differ only in case (which one a case-insensitive lookup finds is arbitrary).
    if len(plain) == len({k.lower() for k in values}) == len(values):

        class Folded(dict[str, Any]):
            def __missing__(self, key: str) -> Any:
                return self.get(key.lower(), "")

        expected = m.change_order_title.format_map(
            Folded({k: "" if v is None else v for k, v in plain.items()})
        )
        assert rendered.text == expected


# ---- names and paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("Account Name", "'Account Name'"),
        ("Deal_Name from Deals where id = '1' --", "\"Deal_Name from Deals where id = '1' --\""),
        ("Account_Name.", "'Account_Name.'"),
        ("1st_Field", "'1st_Field'"),
        ("Owner.$name", "'Owner.$name'"),
    ],
)
def test_a_create_path_must_be_api_names_joined_by_dots(path: str, shown: str) -> None:
    """Spaces or COQL text in a [create] path went verbatim into the query; now it is one line."""
    base = BASE.replace('Client = "Account_Name.name"', f"Client = {path!r}")
    assert _problems("", base) == [
        f"create.Client: {shown} is not a Zoho field path (API names joined by dots, e.g. Account_Name.name)"
    ]


@pytest.mark.parametrize("key", ["module", "flag_field", "link_field", "status_field"])
def test_zoho_section_names_are_single_api_names(key: str) -> None:
    """A dot, a dollar or a space in the module or a role field is refused, naming the key."""
    line = next(line for line in BASE.splitlines() if line.startswith(f"{key} = "))
    problems = _problems("", BASE.replace(line, f'{key} = "Send to SI"'))
    assert problems == [
        f"zoho.{key}: must be a Zoho API name such as Send_to_SI, not 'Send to SI'"
        + (" (or omit it)" if key == "status_field" else "")
    ]


# ---- roles and targets ------------------------------------------------------------------------------------


def test_flag_link_and_status_must_be_three_different_fields() -> None:
    """link_field = flag_field: the project id would overwrite the checkbox."""
    base = BASE.replace('link_field = "SI_Project_ID"', 'link_field = "Send_to_SI"')
    assert _problems("", base) == [
        "zoho.link_field: Send_to_SI is also zoho.flag_field; the flag, link and status fields must differ"
    ]
    base = BASE.replace('status_field = "SI_Sync_Status"', 'status_field = "SI_Project_ID"')
    assert _problems("", base) == [
        "zoho.status_field: SI_Project_ID is also zoho.link_field; "
        "the flag, link and status fields must differ"
    ]


@pytest.mark.parametrize(("zoho", "role"), [("SI_Project_ID", "link_field"), ("Send_to_SI", "flag_field")])
def test_a_synced_field_cannot_be_a_field_the_reconciler_manages(zoho: str, role: str) -> None:
    """si_to_zoho Name -> SI_Project_ID overwrote the project id with the project's name."""
    extra = f'\n[[fields]]\nzoho = "{zoho}"\nsi = "Name"\ndirection = "si_to_zoho"\n'
    assert _problems(extra) == [
        f"fields[0].zoho: {zoho} is zoho.{role}, which the reconciler manages; it cannot be synced"
    ]


def test_two_zoho_fields_may_not_write_one_si_field() -> None:
    """Deal_Name and Project_Title both sending Name to SI: the second entry is named."""
    extra = """
    [[fields]]
    zoho = "Deal_Name"
    si = "Name"
    direction = "both"

    [[fields]]
    zoho = "Project_Title"
    si = "Name"
    direction = "zoho_to_si"
    """
    assert _problems(extra) == [
        "fields[1].si: Deal_Name already sends Name to SI; one Zoho field per SI field"
    ]


def test_one_si_field_may_feed_several_zoho_fields() -> None:
    """Reading SI's Price into two Zoho fields writes nothing to SI: allowed."""
    extra = """
    [[fields]]
    zoho = "Amount"
    si = "Price"

    [[fields]]
    zoho = "Expected_Revenue"
    si = "Price"
    """
    assert [f.zoho for f in _parse(extra).fields] == ["Amount", "Expected_Revenue"]


def test_a_value_map_must_convert_to_the_zoho_type() -> None:
    """A value map entry the planner could not compare in Zoho's type is refused at load."""
    extra = """
    [[fields]]
    zoho = "Amount"
    si = "Progress"
    zoho_type = "number"
    [fields.values]
    "Approved" = "Closed Won"
    """
    assert _problems(extra) == [
        "fields[0].values.Approved: expected a number, got 'Closed Won' (zoho_type = number)"
    ]


@pytest.mark.parametrize(
    ("constant", "problem"),
    [
        ("CloseDate = [1, 2]", "expected a single value, got a list of 2"),
        ("Budget = { a = 1 }", "expected a single value, got an object with keys a"),
        ('Budget = "lots"', "expected a number, got 'lots'"),
    ],
)
def test_a_create_constant_must_be_one_value_si_can_take(constant: str, problem: str) -> None:
    """Constants go into every publish body: a table, a list or a non-number for Budget is refused."""
    field = constant.split(" ")[0]
    assert _problems(f"\n[create.constants]\n{constant}\n") == [f"create.constants.{field}: {problem}"]


def test_a_toml_date_constant_becomes_what_si_takes() -> None:
    """CloseDate = 2026-03-01 (a TOML date, not JSON-serialisable) is sent as SI's date-time text."""
    m = _parse('\n[create.constants]\nCloseDate = 2026-03-01\nTemplateName = "Residential"\n')
    assert dict(m.create_constants) == {"CloseDate": "2026-03-01T00:00:00", "TemplateName": "Residential"}


# ---- size, encoding, depth ---------------------------------------------------------------------------------


def _wide(n: int) -> str:
    return "".join(f'\n[[fields]]\nzoho = "Custom_{i}"\nsi = "CustomField{1 + i % 75}"\n' for i in range(n))


def test_the_coql_column_limit_is_zohos_500_and_is_checked_at_load() -> None:
    """60 fields load (they crashed run-once at the old limit of 50); past 500 columns is one line."""
    assert COQL_MAX_COLUMNS == COQL_MAX_FIELDS == 500
    # id, Modified_Time, 3 roles, 2 create paths and the account lookup itself (IntegrationClientId)
    assert len(_parse(_wide(60)).coql_columns()) == 60 + 8
    assert _problems(_wide(493)) == [
        "[[fields]]: the deal read would select 501 columns, more than Zoho's COQL limit of 500; "
        "map fewer fields"
    ]


def test_a_mapping_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """A Latin-1 file: exit 78 naming the file, the byte and the line, not a UnicodeDecodeError."""
    path = tmp_path / "mapping.toml"
    path.write_bytes(BASE.encode() + b'\n[notes]\nchange_order_title = "Ordre de modification n\xb0"\n')
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert caught.value.problems == (
        f"mapping {path}: not UTF-8 text (byte 0xb0 on line 13); save it as UTF-8",
    )


@pytest.mark.parametrize("opening", ["[", "{ a = "])
def test_a_mapping_file_nested_too_deeply_is_one_line(opening: str, tmp_path: Path) -> None:
    """Arrays or inline tables nested thousands deep: one line, not a RecursionError traceback."""
    closing = {"[": "]", "{ a = ": "}"}[opening]
    path = tmp_path / "mapping.toml"
    path.write_text(BASE + "\n[notes]\nx = " + opening * 5000 + "1" + closing * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_mapping(path)
    assert caught.value.problems == (
        f"mapping {path}: nested too deeply to read (a mapping is a few tables deep)",
    )
