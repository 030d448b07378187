"""The field decision tables of :mod:`reconciler.plan.fields`, one test per row (values in Zoho space)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.plan.fields import _UNSET, FieldDecision, FieldView, SiRead, decide, read_si

PENDING = {"value": "ours", "message_id": "m1", "stale": ["before"]}


# ---- read_si: what SI's report means -------------------------------------------------------------------


def test_no_report_means_si_holds_what_the_snapshot_says() -> None:
    got = read_si("F", {"F": "x"}, None)
    assert (got.known, got.value, got.changed, got.concurrent) == (True, "x", False, False)
    assert read_si("F", {}, None).known is False


def test_no_report_while_our_update_waits_means_si_will_hold_ours() -> None:
    got = read_si("F", {"F": "ours"}, PENDING)
    assert (got.known, got.value, got.pending) == (True, "ours", PENDING)


def test_a_report_equal_to_our_pending_value_is_our_echo_and_ends_the_wait() -> None:
    got = read_si("F", {"F": "ours"}, PENDING, "ours", 10)
    assert (got.value, got.changed, got.concurrent, got.pending) == ("ours", False, False, None)


def test_a_report_published_after_sis_import_of_ours_is_sis_own_newer_value() -> None:
    imported = {**PENDING, "imported_ms": 1000}
    got = read_si("F", {"F": "ours"}, imported, "edited later", 2001)
    assert (got.value, got.changed, got.concurrent, got.pending) == ("edited later", True, False, None)


def test_a_report_within_a_second_of_the_import_still_counts_as_older() -> None:
    imported = {**PENDING, "imported_ms": 1000}
    assert read_si("F", {"F": "ours"}, imported, "before", 1999).pending == imported


def test_a_report_of_a_value_si_may_still_show_is_stale() -> None:
    got = read_si("F", {"F": "ours"}, PENDING, "before", 10)
    assert (got.value, got.changed, got.concurrent, got.pending) == ("ours", False, False, PENDING)


def test_any_other_report_while_our_update_waits_is_a_concurrent_si_edit() -> None:
    got = read_si("F", {"F": "ours"}, PENDING, "theirs", 10)
    assert (got.value, got.changed, got.concurrent, got.pending) == ("theirs", True, True, PENDING)


def test_an_entry_without_stale_values_treats_every_report_before_the_import_as_stale() -> None:
    legacy = {"value": "ours", "message_id": "m1"}
    assert read_si("F", {"F": "ours"}, legacy, "anything", 10).concurrent is False


@pytest.mark.parametrize(("report", "changed"), [(None, False), ("0", False), ("450", True)])
def test_a_first_report_of_an_empty_value_is_a_baseline_not_a_change(report: Any, changed: bool) -> None:
    assert read_si("F", {}, None, report, 10).changed is changed


def test_a_report_differing_from_the_snapshot_is_a_change() -> None:
    assert read_si("F", {"F": "a"}, None, "b", 10).changed is True
    assert read_si("F", {"F": "a"}, None, "a", 10).changed is False


# ---- decide: which side gets which value --------------------------------------------------------------


def si(value: Any = _UNSET, *, changed: bool = False, concurrent: bool = False) -> SiRead:
    known = value is not _UNSET
    return SiRead(known, None if not known else value, changed, concurrent, None, value)


def view(direction: str, zoho: Any, si_read: SiRead, **kw: Any) -> FieldView:
    kw.setdefault("zoho_changed", False)
    kw.setdefault("zoho_new", False)
    kw.setdefault("on_conflict", "manual")
    return FieldView(direction, kw["on_conflict"], zoho, kw["zoho_changed"], kw["zoho_new"], si_read)


def test_si_to_zoho_writes_sis_value_to_zoho_whatever_changed() -> None:
    assert decide(view("si_to_zoho", "z", si("s", changed=True))) == FieldDecision(to_zoho=("s",))
    assert decide(view("si_to_zoho", "z", si("s"), zoho_changed=True)) == FieldDecision(to_zoho=("s",))


def test_si_to_zoho_never_writes_an_empty_first_report_or_an_unknown_value() -> None:
    assert decide(view("si_to_zoho", "18000", si(None))) == FieldDecision()
    assert decide(view("si_to_zoho", "18000", si())) == FieldDecision()
    assert decide(view("si_to_zoho", "18000", si("0", changed=True))) == FieldDecision(to_zoho=("0",))


def test_zoho_to_si_writes_zohos_value_to_si_whatever_changed() -> None:
    assert decide(view("zoho_to_si", "z", si("s", changed=True))) == FieldDecision(to_si=("z",))
    assert decide(view("zoho_to_si", "z", si("z"))) == FieldDecision()
    assert decide(view("zoho_to_si", "z", si())) == FieldDecision(to_si=("z",))
    assert decide(view("zoho_to_si", None, si())) == FieldDecision()


def test_zoho_to_si_resends_after_a_concurrent_si_edit() -> None:
    assert decide(view("zoho_to_si", "z", si("z", changed=True, concurrent=True))) == FieldDecision(
        to_si=("z",)
    )


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("si_wins", FieldDecision(to_zoho=("s",))),
        ("zoho_wins", FieldDecision(to_si=("z",))),
        ("manual", FieldDecision(conflict=True)),
    ],
)
def test_both_changed_differently_follows_on_conflict(policy: str, expected: FieldDecision) -> None:
    both = view("both", "z", si("s", changed=True), zoho_changed=True, on_conflict=policy)
    assert decide(both) == expected


def test_both_changed_to_the_same_value_writes_nothing() -> None:
    assert decide(view("both", "v", si("v", changed=True), zoho_changed=True)) == FieldDecision()


def test_both_zoho_changed_only_goes_to_si() -> None:
    assert decide(view("both", "z", si("s"), zoho_changed=True)) == FieldDecision(to_si=("z",))
    assert decide(view("both", "z", si(), zoho_changed=True)) == FieldDecision(to_si=("z",))


def test_both_si_changed_only_goes_to_zoho() -> None:
    assert decide(view("both", "z", si("s", changed=True))) == FieldDecision(to_zoho=("s",))


def test_both_neither_changed_writes_nothing() -> None:
    assert decide(view("both", "z", si("s"))) == FieldDecision()


def test_both_newly_mapped_with_si_unknown_waits() -> None:
    assert decide(view("both", "z", si(), zoho_changed=True, zoho_new=True)) == FieldDecision()


def test_both_newly_mapped_and_equal_writes_nothing_and_different_follows_on_conflict() -> None:
    assert decide(view("both", "v", si("v"), zoho_changed=True, zoho_new=True)) == FieldDecision()
    fresh = view("both", "z", si("s"), zoho_changed=True, zoho_new=True, on_conflict="zoho_wins")
    assert decide(fresh) == FieldDecision(to_si=("z",))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("si_wins", FieldDecision(to_zoho=("s",), to_si=("s",))),
        ("zoho_wins", FieldDecision(to_si=("z",))),
        ("manual", FieldDecision(conflict=True)),
    ],
)
def test_both_a_concurrent_si_edit_is_a_conflict_and_the_winner_is_sent_to_si(
    policy: str, expected: FieldDecision
) -> None:
    concurrent = view("both", "z", si("s", changed=True, concurrent=True), on_conflict=policy)
    assert decide(concurrent) == expected
