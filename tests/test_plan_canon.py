"""The deal's canonical values and their hash: the planner's fast paths give what the general rules give.

A full read canonicalises and hashes every deal, so :func:`zoho_canon` inlines the common cases and
:class:`CanonSpec` writes the hash from a template. Stored snapshots keep these hashes, so the fast forms
must agree with :func:`canonical` and :func:`canon_digest` on every value, not only the usual ones.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.mapping import Mapping, canonical, parse_mapping
from reconciler.model import Deal
from reconciler.plan import canon_digest, zoho_canon
from reconciler.plan.common import CanonSpec, canon_spec, digest
from tests.conftest import TWO_WAY_MAPPING

MAPPING: Mapping = parse_mapping(tomllib.loads(TWO_WAY_MAPPING))  # text, numbers, dates, a value map

RAW = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.sampled_from(["", "  ", "0", "007", "12.50", "true", "no", "2026-03-01", "x'y", 'a"b', "é\n%r"]),
    st.fixed_dictionaries({"id": st.sampled_from(["1", "", None])}),
)


def reference(raw_values: dict[str, Any], mapping: Mapping) -> dict[str, Any] | str:
    """The general rules, path by path (an error's text where a value is bad)."""
    by_path = {f.zoho: f for f in mapping.fields}
    out: dict[str, Any] = {}
    for path in mapping.zoho_paths():
        if path not in {mapping.flag_field, mapping.link_field, mapping.status_field, *by_path}:
            continue
        raw = raw_values.get(path)
        try:
            if path == mapping.flag_field:
                out[path] = bool(raw) if isinstance(raw, bool) else canonical(raw, "boolean") or False
            elif path in by_path:
                out[path] = canonical(raw, by_path[path].zoho_type)
            else:
                out[path] = None if raw in (None, "") else str(raw)
        except ValueError as exc:
            return str(exc)
    return out


@given(st.fixed_dictionaries({}, optional=dict.fromkeys(MAPPING.zoho_paths(), RAW)))
@example({path: "  " for path in MAPPING.zoho_paths()})
@example({path: None for path in MAPPING.zoho_paths()})
@example({path: "" for path in MAPPING.zoho_paths()})
@settings(max_examples=300)
def test_zoho_canon_gives_what_the_general_rules_give(raw_values: dict[str, Any]) -> None:
    expected = reference(raw_values, MAPPING)
    try:
        got: dict[str, Any] | str = zoho_canon(Deal("1", raw_values), MAPPING, canon_spec(MAPPING))
    except ValueError as exc:
        got = str(exc)
        assert isinstance(expected, str), f"{raw_values}: refused ({got}) but the rules accept it"
        assert got.endswith(expected)
        return
    assert got == expected
    assert list(got) == list(expected)  # same paths, same order


CANON_VALUE = st.one_of(
    st.none(), st.booleans(), st.text(max_size=10), st.sampled_from(["%r", "%s", "'", '"'])
)


@given(
    st.lists(st.text(min_size=1, max_size=8), min_size=0, max_size=6, unique=True),
    st.data(),
)
def test_the_template_hash_is_canon_digest(paths: list[str], data: st.DataObject) -> None:
    spec = CanonSpec(tuple((path, path, False, None) for path in paths))
    canon = {path: data.draw(CANON_VALUE) for path in paths}
    assert spec.digest(canon) == canon_digest(canon)
    if paths:  # another set of keys than the spec's: still canon_digest
        smaller = dict(list(canon.items())[1:])
        assert spec.digest(smaller) == canon_digest(smaller)
        assert spec.digest({**canon, "zz-extra": 1}) == canon_digest({**canon, "zz-extra": 1})


def test_a_known_hash_does_not_change() -> None:
    """Stored snapshots hold this hash: a change of its form would make every pair look edited once."""
    canon = {"Send_to_SI": True, "SI_Project_ID": "p-1", "SI_Sync_Status": "In SI", "Amount": "1005"}
    spec = CanonSpec(tuple((path, path, False, None) for path in canon))
    assert canon_digest(canon) == spec.digest(canon) == "c689c06c6a16b880a088"


JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(["é", "\u2028", '"', "\\", "\x00"]),
)


@given(
    st.one_of(
        st.dictionaries(st.text(max_size=6), JSON_SCALAR, max_size=6),
        st.dictionaries(st.text(max_size=3), st.lists(JSON_SCALAR, max_size=2), max_size=3),
        st.lists(JSON_SCALAR, max_size=4),
    )
)
def test_digest_hashes_what_json_dumps_writes(value: Any) -> None:
    """A write's input hash is stored with its intent: the flat-record fast path writes json.dumps' text."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    assert digest(value) == hashlib.sha1(text.encode()).hexdigest()[:20]
