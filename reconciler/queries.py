"""The text of the deals query: which deals a cycle reads, which columns, and the COQL statement around them.

Pure functions, no I/O: the read side (the cycle) and ``reconciler check`` build the very same query text
from them, so what ``check`` probes at install time is what the daemon sends.

- The WHERE clause: deals whose flag is ticked or that carry an SI project id, and on an incremental read
  only those modified since ``since``. A checkbox is compared with the *quoted* literal ``'true'``: Zoho's
  COQL documentation quotes booleans in every example (operator table of "Get Records through COQL Query",
  v7/v8: ``Email_Opt_Out = 'true'``; Kaizen #81: ``Product_Active = 'false'``); the unquoted form is not
  documented.
- The columns: ``Modified_Time`` (the cursor) and every Zoho path the mapping reads, lookups through their
  join column (``Account_Name.name`` -> ``Account_Name.Account_Name``: COQL returns a lookup as ``{"id"}``).
- The statement: ``select id, ... from Deals where (...) order by id asc limit N``; the next page adds
  ``and id > 'LAST'`` (keyset paging, which works past COQL's 100,000-row offset cap). Zoho wants more than
  two criteria grouped in pairs, so each addition wraps what came before in brackets.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.mapping import Mapping, zoho_column

__all__ = [
    "COQL_MAX_FIELDS",
    "COQL_MAX_ROWS",
    "TRUE",
    "deal_columns",
    "deal_where",
    "joined_modules",
    "select",
]

COQL_MAX_ROWS = 2000  # rows a COQL call returns at most (COQL-Limitations, v8)
# Selectable columns: 500 since v7 (Kaizen #183; shared/reference/zoho-crm-v8.md, "Corrections and open
# questions", which supersede the older COQL-Limitations pages' 50). With 50, a mapping of 60 fields passed
# `check` and then failed every cycle; the mapping is checked against the same cap when it is loaded.
COQL_MAX_FIELDS = 500
TRUE = "'true'"  # the documented, quoted boolean literal


def deal_where(mapping: Mapping, since: str | None) -> str:
    """The criteria of the deals read, one bracketed expression; ``since`` is an ISO time with offset."""
    wanted = f"({mapping.flag_field} = {TRUE} or {mapping.link_field} is not null)"
    if since is None:
        return wanted
    return f"(Modified_Time >= '{since}' and {wanted})"


def deal_columns(mapping: Mapping) -> list[str]:
    """The COQL columns the deals read selects (besides ``id``), without duplicates, in a stable order."""
    columns = ["Modified_Time", *(zoho_column(path) for path in mapping.zoho_paths())]
    return list(dict.fromkeys(columns))


def joined_modules(columns: Sequence[str]) -> list[str]:
    """The lookups a column list joins (``Account_Name.Account_Name`` joins ``Account_Name``)."""
    return list(dict.fromkeys(c.split(".", 1)[0] for c in columns if "." in c and not c.endswith(".id")))


def select(
    module: str, columns: Sequence[str], where: str, *, limit: int, after_id: str | None = None
) -> str:
    """One page of the read: ``id`` first, ordered by id; ``after_id`` continues after that row."""
    wanted = list(columns) if "id" in columns else ["id", *columns]
    if len(wanted) > COQL_MAX_FIELDS:
        raise ValueError(f"COQL selects at most {COQL_MAX_FIELDS} fields; {len(wanted)} were asked for")
    if not 1 <= limit <= COQL_MAX_ROWS:
        raise ValueError(f"a COQL page is 1..{COQL_MAX_ROWS} rows, not {limit}")
    if after_id is not None:
        where = f"({where} and id > '{after_id.replace(chr(39), '')}')"
    return f"select {', '.join(wanted)} from {module} where {where} order by id asc limit {limit}"
