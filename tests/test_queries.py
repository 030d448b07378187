"""The deals query text: the documented quoted boolean, the columns, the statement and its keyset pages."""

from __future__ import annotations

import pytest

from reconciler.mapping import Mapping
from reconciler.queries import deal_columns, deal_where, joined_modules, select
from reconciler.sim.zoho.coql import parse


def test_the_flag_is_compared_with_the_quoted_boolean_literal() -> None:
    """`Send_to_SI = 'true'`, as every Zoho COQL example writes a boolean; never the bare `true`."""
    assert deal_where(Mapping(), None) == "(Send_to_SI = 'true' or SI_Project_ID is not null)"
    assert "= true" not in deal_where(Mapping(), "2025-03-01T09:00:00+00:00")


def test_an_incremental_read_adds_the_modified_time_in_pairs() -> None:
    """`since` adds `Modified_Time >= '...'`, bracketed so no level holds more than two criteria."""
    where = deal_where(Mapping(flag_field="Ready", link_field="Project"), "2025-03-01T09:00:00+05:30")
    assert where == (
        "(Modified_Time >= '2025-03-01T09:00:00+05:30' and (Ready = 'true' or Project is not null))"
    )


def test_columns_join_the_account_name_and_keep_one_of_each() -> None:
    """The cursor column first, then every mapped path, lookups through their join column, no repeats."""
    columns = deal_columns(Mapping())
    assert columns == [
        "Modified_Time",
        "Send_to_SI",
        "SI_Project_ID",
        "SI_Sync_Status",
        "Deal_Name",
        "Account_Name.Account_Name",
        "Account_Name",  # IntegrationClientId = Account_Name.id: the lookup itself, no join
    ]
    assert joined_modules(columns) == ["Account_Name"]
    assert joined_modules(["Account_Name.id", "Contact_Name.Full_Name"]) == ["Contact_Name"]


def test_the_statement_and_its_next_page_parse_as_zoho_demands() -> None:
    """`id` first, ordered by id; the next page ANDs `id > 'last'` in brackets; both parse strictly."""
    where = deal_where(Mapping(), None)
    first = select("Deals", ["Deal_Name"], where, limit=1)
    assert first == f"select id, Deal_Name from Deals where {where} order by id asc limit 1"
    after = select("Deals", ["id", "Deal_Name"], where, limit=2000, after_id="57'25")
    assert after.endswith(f"where ({where} and id > '5725') order by id asc limit 2000")
    for text in (first, after):
        parse(text, booleans="quoted")  # grouped in pairs, quoted boolean: no SYNTAX_ERROR


@pytest.mark.parametrize(("columns", "limit"), [([f"F{n}" for n in range(500)], 1), (["Deal_Name"], 2001)])
def test_too_many_columns_or_rows_is_refused_before_any_call(columns: list[str], limit: int) -> None:
    """COQL takes at most 500 columns since v7 (id included) and 2,000 rows a call."""
    with pytest.raises(ValueError, match="COQL"):
        select("Deals", columns, "(a = 'true')", limit=limit)
