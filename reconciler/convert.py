"""SI's field tables and the value conversions every comparison rests on. Pure.

Every comparison the planner makes happens in *Zoho space*: an SI value is mapped through its field's
value map and converted to the Zoho field's type, then compared with the deal's value converted the same
way. :func:`canonical` defines that form (numbers as normalised decimal strings, dates as ``YYYY-MM-DD``,
booleans as ``True``/``False``, empty text as ``None``); ``to_*`` write a canonical value in the form each
API takes. :mod:`reconciler.mapping` re-exports them with the mapping model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping as AbcMapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "SI_FIELDS",
    "SI_FIELD_IDS",
    "SI_LIST_FIELDS",
    "ZohoType",
    "canonical",
    "si_type",
    "to_si_json",
    "to_si_string",
    "to_zoho_json",
]

ZohoType = Literal["number", "integer", "text", "date", "datetime", "boolean"]

# ProjectFieldId for POST /Publish/Projects/Update, as D-Tools publishes it: the SI OpenAPI's
# UpdateProjectField.projectFieldId table (dtools-si.md, corrections). CustomField1..54 = 101..154 and
# CustomField65..75 = 155..165; CustomField55..64 (the decimal ones) have no id, so SI cannot receive them.
# The jump may be a vendor typo, but it is the only published source: followed as written.
SI_FIELD_IDS: dict[str, int] = {
    "name": 1, "progress": 2, "startdate": 3, "enddate": 4, "estimatedclosedate": 5, "closedate": 6,
    "budget": 7, "scopeofwork": 8, "assignedto": 9, "salesrep": 10, "projectmanager": 11, "designer": 12,
    "client": 13, "clientnumber": 14, "clientponumber": 15,
}  # fmt: skip
SI_FIELD_IDS.update({f"customfield{n}": 100 + n for n in range(1, 55)})
SI_FIELD_IDS.update({f"customfield{n}": 90 + n for n in range(65, 76)})

# SI Project properties and their types (SI OpenAPI ``Project`` schema), keyed lower-case.
_SI_DECIMAL = {
    "price",
    "cost",
    "tax",
    "hours",
    "budget",
    "margin",
    "markup",
    "pricewithouttax",
    "currencyrate",
}
_SI_INTEGER = {"revision", "coid", "publishedonunixtimems"}
_SI_DATETIME = {
    "startdate", "enddate", "estimatedclosedate", "closedate", "createdon", "updatedon", "approvedon",
    "coacceptedon", "corejectedon", "cocreatedon", "publishedon", "importedon",
}  # fmt: skip
_SI_BOOLEAN = {"approved", "ischangeorder", "quantitybased", "isitemleveltax", "deleted", "archived"}
_SI_TEXT = {
    "templatename", "id", "integrationprojectid", "messageid", "client", "clientid", "integrationclientid",
    "clientnumber", "name", "number", "progress", "assignedto", "salesrep", "projectmanager", "designer",
    "currencycode", "productpricetype", "clientponumber", "accountingestimatenumbers", "scopeofwork", "notes",
    "productaxid", "labortaxid", "updatedby", "updatedbyemail", "createdby", "publishedby", "conumber",
    "coname", "costatus", "cotype", "conotes",
}  # fmt: skip
for _n in range(1, 76):
    _key = f"customfield{_n}"
    if 15 <= _n <= 18 or 55 <= _n <= 64:
        _SI_DECIMAL.add(_key)
    elif 19 <= _n <= 22:
        _SI_DATETIME.add(_key)
    elif 23 <= _n <= 26 or _n >= 65:
        _SI_BOOLEAN.add(_key)
    else:
        _SI_TEXT.add(_key)
SI_FIELDS = frozenset(_SI_DECIMAL | _SI_INTEGER | _SI_DATETIME | _SI_BOOLEAN | _SI_TEXT)

# What GET /Subscribe/Projects (ProjectInfo) carries; anything else needs a detail GET.
SI_LIST_FIELDS = frozenset({
    "id", "integrationprojectid", "messageid", "clientid", "client", "clientnumber", "name", "number",
    "progress", "approved", "conumber", "currencycode", "price", "importedon", "publishedon",
    "publishedonunixtimems", "deleted", "archived",
})  # fmt: skip


def si_type(si_key: str) -> ZohoType:
    """The Zoho-side type an SI field converts to when nothing else is said."""
    if si_key in _SI_DECIMAL:
        return "number"
    if si_key in _SI_INTEGER:
        return "integer"
    if si_key in _SI_DATETIME:
        return "date"
    if si_key in _SI_BOOLEAN:
        return "boolean"
    return "text"


_DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def _single(value: Any) -> None:
    """Raise ValueError for an object or a list where one value belongs (a lookup of unexpected shape)."""
    if isinstance(value, AbcMapping):
        raise ValueError(f"expected a single value, got an object with keys {', '.join(map(str, value))}")
    if isinstance(value, list | tuple | set):
        raise ValueError(f"expected a single value, got a list of {len(value)}")


def canonical(value: Any, kind: ZohoType) -> Any:
    """``value`` in the comparable form for ``kind``; raises ValueError naming what is wrong."""
    # Fast paths for what the APIs send most (the planner calls this for every field of every deal):
    # plain text, ints, and floats whose shortest repr is already a normalised decimal.
    kind_of = type(value)
    if value is None:
        return None
    if kind == "text":
        if kind_of is str:
            return value if value.strip() else None
        if kind_of is int or kind_of is float:
            return str(value)
    elif kind in ("number", "integer"):
        if kind_of is int:
            return str(value)
        if kind_of is float and math.isfinite(value):
            if value.is_integer():
                return str(int(value))
            text = repr(value)
            if kind == "number" and "e" not in text:
                return text
    if isinstance(value, str) and value.strip() == "":
        return None
    _single(value)
    if kind in ("number", "integer"):
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        text = str(value).strip() if not isinstance(value, float) else repr(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"expected a number, got {value!r}") from None
        if not number.is_finite() or (isinstance(value, str) and not _DECIMAL_RE.match(text)):
            raise ValueError(f"expected a number, got {value!r}")
        if kind == "integer" and number != number.to_integral_value():
            raise ValueError(f"expected a whole number, got {value!r}")
        normal = number.normalize()
        return format(normal, "f") if normal != normal.to_integral_value() else str(int(normal))
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if kind in ("date", "datetime"):
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        else:
            text = str(value).strip().replace("Z", "+00:00")
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"expected a date (YYYY-MM-DD), got {value!r}") from None
        return moment.date().isoformat() if kind == "date" else _utc_text(moment)
    return str(value)


def _utc_text(moment: datetime) -> str:
    """A date-time as one instant in Zoho's written form, ``yyyy-MM-ddTHH:mm:ss+00:00``.

    Zoho requires the offset on a Date/Time value (zoho-crm-v8.md, corrections) and answers in the org's
    zone; comparing in UTC makes ``10:30+00:00`` and ``16:00+05:30`` the same value. A value without an
    offset (SI's, which documents its times as UTC) is taken as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def to_zoho_json(value: Any, kind: ZohoType) -> Any:
    """A canonical value as Zoho wants it in a PUT body (numbers as JSON numbers; date-times carry their
    UTC offset already)."""
    if value is None:
        return None
    if kind in ("integer", "number") and type(value) is str and value.isascii() and value.isdigit():
        return int(value)  # a whole number (most amounts): no Decimal needed
    if kind == "integer":
        return int(Decimal(value))
    if kind == "number":
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)
    return value


def to_si_string(value: Any, si_key: str) -> str:
    """A canonical value in SI's invariant string form for ``UpdateFields[].Value``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if si_key in _SI_DATETIME:
        text = str(value)
        return text[:10] if len(text) >= 10 and text[4] == "-" else text
    return str(value)


def to_si_json(value: Any, si_key: str) -> Any:
    """A Zoho value as SI wants it in a publish body (typed JSON, date-times without offset)."""
    if value is None:
        return None
    _single(value)
    if si_key in _SI_DECIMAL:
        return float(Decimal(canonical(value, "number")))
    if si_key in _SI_INTEGER:
        return int(Decimal(canonical(value, "integer")))
    if si_key in _SI_BOOLEAN:
        return canonical(value, "boolean")
    if si_key in _SI_DATETIME:
        return f"{canonical(value, 'date')}T00:00:00"
    return str(value)
