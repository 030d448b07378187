"""The COQL subset the simulator understands: a tokenizer, a parser and an evaluator over deal dicts.

``select f, ... from Deals [where C] [order by f [asc|desc]] [limit N[, M]] [offset M]``, with criteria
grouped in pairs as Zoho demands (``((A and B) and C)``; ``A and B and C`` is a ``SYNTAX_ERROR``), the
operators ``= != > >= < <= is [not] null [not] in``, and the lookup joins ``X.id`` and ``X.field`` (any
field of the looked-up account, contact or user), at most two lookups and 15 joined columns a query.
Errors are :class:`CoqlError` carrying Zoho's code and details.

:class:`CoqlEngine` evaluates a parsed query against the simulator's deals; :class:`ZohoSim` inherits it.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "MAX_JOIN_COLUMNS",
    "MAX_RELATIONS",
    "USER_FIELDS",
    "BooleanLiterals",
    "CoqlEngine",
    "CoqlError",
    "Query",
    "atoms",
    "parse",
]

BooleanLiterals = Literal["any", "quoted", "bare"]
# What a join to a user (an owner lookup) reads: the Users API's keys. Users are not a module of the fields
# metadata API, so no catalogue is served for them.
USER_FIELDS = ("full_name", "first_name", "last_name", "email")
# COQL-Limitations (v7/v8): "a maximum of two relations (joins) in a select query" and "a maximum of 15
# SELECT clause JOINs". The simulator holds queries to the stricter reading of each: two lookups joined,
# 15 joined columns.
MAX_RELATIONS = 2
MAX_JOIN_COLUMNS = 15
_PARSE_ERROR = "error occured while parsing the query"  # Zoho's own words (and spelling), OAS 400 example


class CoqlError(Exception):
    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class _Atom:
    field: str
    op: str  # = != > >= < <= "is null" "is not null" "in" "not in"
    value: Any


@dataclass(frozen=True)
class _Pair:
    op: str  # and | or
    left: _Atom | _Pair
    right: _Atom | _Pair


@dataclass(frozen=True)
class Query:
    fields: list[str]
    module: str
    where: _Atom | _Pair | None
    order_by: str
    descending: bool
    limit: int
    offset: int


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)(?![\w.$])|(?P<op>>=|<=|!=|=|>|<|\(|\)|,)"
    r"|(?P<word>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)?))"
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


class _Parser:
    """``select f, ... from M [where C] [order by f [asc|desc]] [limit N[, M]] [offset M]``."""

    def __init__(self, text: str, *, booleans: BooleanLiterals = "any") -> None:
        self.booleans = booleans
        self.tokens: list[tuple[str, str]] = []
        self.columns: list[int] = []  # 1-based column of each token, for SYNTAX_ERROR details
        pos = 0
        while text[pos:].strip():
            match = _TOKEN.match(text, pos)
            if match is None or match.lastgroup is None:
                raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, near=text[pos:].strip()[:20])
            self.tokens.append((match.lastgroup, match.group(match.lastgroup)))
            self.columns.append(match.start(match.lastgroup) + 1)
            pos = match.end()
        self.pos = 0

    def peek_word(self, *words: str) -> bool:
        if self.pos >= len(self.tokens):
            return False
        kind, value = self.tokens[self.pos]
        return kind == "word" and value.lower() in words

    def peek_op(self, op: str) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos] == ("op", op)

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        if self.pos >= len(self.tokens):
            raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, near="end of query")
        got_kind, got = self.tokens[self.pos]
        if (kind and got_kind != kind) or (value and got.lower() != value):
            raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, near=got)
        self.pos += 1
        return got

    def query(self) -> Query:
        self.take("word", "select")
        fields = [self.take("word")]
        while self.peek_op(","):
            self.take()
            fields.append(self.take("word"))
        self.take("word", "from")
        module = self.take("word")
        where = None
        if self.peek_word("where"):
            self.take()
            where = self.condition()
        order_by, descending, limit, offset = "id", False, 200, 0
        if self.peek_word("order"):
            self.take()
            self.take("word", "by")
            order_by = self.take("word")
            if self.peek_word("asc", "desc"):
                descending = self.take().lower() == "desc"
        if self.peek_word("limit"):
            self.take()
            limit = self.integer()
            if self.peek_op(","):
                self.take()
                offset, limit = limit, self.integer()
        if self.peek_word("offset"):
            self.take()
            offset = self.integer()
        if self.pos < len(self.tokens):
            raise CoqlError(
                "SYNTAX_ERROR",
                _PARSE_ERROR,
                near=self.tokens[self.pos][1],
            )
        return Query(fields, module, where, order_by, descending, limit, offset)

    def integer(self) -> int:
        text = self.take("num")
        if not text.isdigit():
            raise CoqlError("INVALID_QUERY", "limit given seems to be invalid", limit=text)
        return int(text)

    def condition(self) -> _Atom | _Pair:
        left = self.primary()
        if not self.peek_word("and", "or"):
            return left
        op = self.take().lower()
        result = _Pair(op, left, self.primary())
        if self.peek_word("and", "or"):
            raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, near=self.take())
        return result

    def primary(self) -> _Atom | _Pair:
        if self.peek_op("("):
            self.take()
            inner = self.condition()
            self.take("op", ")")
            return inner
        name = self.take("word")
        if self.peek_word("is"):
            self.take()
            negate = self.peek_word("not")
            if negate:
                self.take()
            self.take("word", "null")
            return _Atom(name, "is not null" if negate else "is null", None)
        negate = self.peek_word("not")
        if negate:
            self.take()
        if self.peek_word("in"):
            self.take()
            self.take("op", "(")
            values = [self.value()]
            while self.peek_op(","):
                self.take()
                values.append(self.value())
            self.take("op", ")")
            return _Atom(name, "not in" if negate else "in", values)
        op = self.take("op")
        if op not in _COMPARE:
            raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, near=op)
        return _Atom(name, op, self.value())

    def value(self) -> Any:
        kind, text = self.tokens[self.pos] if self.pos < len(self.tokens) else ("", "")
        column = self.columns[self.pos] if self.pos < len(self.columns) else 0
        self.take()
        if kind == "str":
            inner = re.sub(r"\\(.)", r"\1", text[1:-1])
            if self.booleans == "bare" and inner.lower() in ("true", "false"):  # a variant that differs
                raise CoqlError("INVALID_QUERY", "value given is not a valid boolean", value=inner)
            return inner
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "word" and text.lower() in ("true", "false"):
            if self.booleans == "quoted":  # Zoho documents only the quoted form, 'true'
                raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, line=1, column=column, near=text)
            return text.lower() == "true"
        if kind == "word" and text.lower() == "null":
            return None
        raise CoqlError("SYNTAX_ERROR", _PARSE_ERROR, near=text)


def _relation_limits(
    query: Query, meta: dict[str, dict[str, Any]], joined: Callable[..., str | None]
) -> None:
    """LIMIT_EXCEEDED for a query joining more lookups, or selecting more joined columns, than COQL allows."""
    names = [*query.fields, query.order_by, *(atom.field for atom in atoms(query.where))]
    lookups = {n.split(".", 1)[0] for n in names if "." in n and not n.endswith(".id")}
    relations = sorted(base for base in lookups if joined(base, meta) is not None)
    if len(relations) > MAX_RELATIONS:
        raise CoqlError(
            "LIMIT_EXCEEDED", "limit exceeded", limit=MAX_RELATIONS, clause="select", relations=relations
        )
    join_columns = [n for n in dict.fromkeys(query.fields) if "." in n and not n.endswith(".id")]
    if len(join_columns) > MAX_JOIN_COLUMNS:
        raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=MAX_JOIN_COLUMNS, clause="select")


def atoms(cond: _Atom | _Pair | None) -> list[_Atom]:
    if cond is None:
        return []
    if isinstance(cond, _Atom):
        return [cond]
    return atoms(cond.left) + atoms(cond.right)


def parse(text: str, *, booleans: BooleanLiterals = "any") -> Query:
    """Parse one ``select_query``; raises :class:`CoqlError` as Zoho would answer it.

    ``booleans``: ``any`` takes ``'true'`` (the documented form) and bare ``true``; ``quoted`` (the strict
    variant) answers a bare ``true`` with ``SYNTAX_ERROR``; ``bare`` answers the text ``'true'`` with
    ``INVALID_QUERY`` (a Zoho that disagreed with its documentation, for testing ``reconciler check``).
    """
    return _Parser(text, booleans=booleans).query()


class CoqlEngine:
    """Runs parsed queries over ``deals``: types from ``fields_meta``; a join ``X.field`` reads the record
    the deal's lookup ``X`` points at (``accounts``, ``contacts``, or ``users`` for an owner lookup), its
    type from that module's catalogue (``module_fields``)."""

    deals: dict[str, dict[str, Any]]
    accounts: dict[str, dict[str, Any]]
    contacts: dict[str, dict[str, Any]]
    users: dict[str, dict[str, Any]]
    fields_meta: list[dict[str, Any]]
    module_fields: dict[str, list[dict[str, Any]]]

    def _meta(self) -> dict[str, dict[str, Any]]:
        return {entry["api_name"]: entry for entry in self.fields_meta}

    def _joined(self, base: str, meta: dict[str, dict[str, Any]]) -> str | None:
        """The module a deal lookup points at (``Users`` for an owner lookup), or None."""
        entry = meta.get(base, {})
        if entry.get("data_type") in ("ownerlookup", "userlookup"):
            return "Users"
        if entry.get("data_type") == "lookup":
            return str(entry.get("lookup", {}).get("module", {}).get("api_name") or "") or None
        return None

    def _records(self, module: str) -> dict[str, dict[str, Any]]:
        return {"Accounts": self.accounts, "Contacts": self.contacts, "Users": self.users}.get(module, {})

    def _column_type(self, name: str, meta: dict[str, dict[str, Any]], clause: str) -> str:
        if name == "id":
            return "bigint"
        if name in meta:
            return str(meta[name]["data_type"])
        base, _, sub = name.partition(".")
        module = self._joined(base, meta)
        if module is not None and sub == "id":
            return "bigint"
        if module == "Users" and sub in USER_FIELDS:
            return "text"
        joined = {f["api_name"]: f for f in self.module_fields.get(module or "", [])}
        if sub in joined:
            return str(joined[sub]["data_type"])
        raise CoqlError("INVALID_QUERY", "column given seems to be invalid", column_name=name, clause=clause)

    def _read(self, deal: dict[str, Any], name: str, dtype: str) -> Any:
        """A column's value for output: lookups as ``{"id"}``, unset booleans false, empty text null."""
        if name == "id":
            return deal["id"]
        base, _, sub = name.partition(".")
        if sub:
            ref = deal.get(base)
            if not isinstance(ref, Mapping):
                return None
            if sub == "id":
                return ref.get("id")
            module = self._joined(base, self._meta()) or ""
            value = self._records(module).get(str(ref.get("id")), {}).get(sub)
            return None if value in ("", []) else copy.deepcopy(value)
        value = deal.get(name)
        if dtype == "boolean":
            return bool(value)
        if dtype in ("lookup", "ownerlookup"):
            return {"id": value["id"]} if isinstance(value, Mapping) and "id" in value else None
        if value == "" or value == []:
            return None
        return copy.deepcopy(value)

    @staticmethod
    def _comparable(value: Any, dtype: str) -> Any:
        if value is None:
            return None
        if isinstance(value, Mapping):
            value = value.get("id")
        try:
            if dtype == "bigint":
                return int(value)
            if dtype == "datetime":
                return datetime.fromisoformat(str(value))
            if dtype in ("currency", "double", "integer", "percent") and not isinstance(value, bool):
                return float(value)
            if dtype == "boolean" and isinstance(value, str):
                return {"true": True, "false": False}[value.strip().lower()]
        except (TypeError, ValueError, KeyError):
            raise CoqlError(
                "INVALID_QUERY", f"value given is not a valid {dtype}", value=str(value)
            ) from None
        return value

    def _matches(self, deal: dict[str, Any], cond: _Atom | _Pair | None, types: dict[str, str]) -> bool:
        if cond is None:
            return True
        if isinstance(cond, _Pair):
            left = self._matches(deal, cond.left, types)
            if cond.op == "and":
                return left and self._matches(deal, cond.right, types)
            return left or self._matches(deal, cond.right, types)
        dtype = types[cond.field]
        have = self._comparable(self._read(deal, cond.field, dtype), dtype)
        if cond.op == "is null":
            return have is None
        if cond.op == "is not null":
            return have is not None
        if cond.op in ("in", "not in"):
            inside = have in [self._comparable(v, dtype) for v in cond.value]
            return have is not None and inside == (cond.op == "in")
        want = self._comparable(cond.value, dtype)
        if have is None or want is None:
            return False
        try:
            return _COMPARE[cond.op](have, want)
        except TypeError:
            return False

    def _run(self, query: Query) -> tuple[list[dict[str, Any]], bool]:
        if query.module.lower() != "deals":
            raise CoqlError("INVALID_QUERY", "invalid module given", clause="from", module=query.module)
        if len(query.fields) > 500:  # since v7 (Kaizen #183; reference, Corrections)
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=500, clause="select")
        criteria = atoms(query.where)
        if len(criteria) > 25:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=25, clause="where")
        if query.limit < 1:
            raise CoqlError("INVALID_QUERY", "limit given seems to be invalid", limit=query.limit)
        if query.limit > 2000:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=2000, clause="limit")
        if query.offset + query.limit > 100_000:
            raise CoqlError("LIMIT_EXCEEDED", "limit exceeded", limit=100_000, clause="offset")
        meta = self._meta()
        _relation_limits(query, meta, self._joined)
        types = {name: self._column_type(name, meta, "select") for name in query.fields}
        types |= {atom.field: self._column_type(atom.field, meta, "where") for atom in criteria}
        order_type = self._column_type(query.order_by, meta, "order by")
        matched = [deal for deal in self.deals.values() if self._matches(deal, query.where, types)]

        def key(deal: dict[str, Any]) -> tuple[bool, Any]:
            value = self._comparable(self._read(deal, query.order_by, order_type), order_type)
            return (value is None, value if value is not None else 0)

        matched.sort(key=key, reverse=query.descending)
        page = matched[query.offset : query.offset + query.limit]
        rows = [
            {"id": deal["id"]} | {name: self._read(deal, name, types[name]) for name in query.fields}
            for deal in page
        ]
        return rows, len(matched) > query.offset + query.limit
