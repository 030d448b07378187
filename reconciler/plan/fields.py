"""One mapped field of one pair: what SI's report means, and which side gets written. Pure.

All values are in *Zoho space* (:func:`reconciler.mapping.canonical`). :func:`read_si` first decides what an
SI report says, given our update to that field that may still wait in SI's queue (``pending``):

=====================================================  ===========================================
the report (SI's value for the field this cycle)        meaning
=====================================================  ===========================================
none this cycle                                         SI holds what the snapshot says (if known)
equals our pending value                                the echo of our update: the wait ends
published after SI imported our update                  SI's own newer value: the wait ends
one of the values SI may still show (``stale``)         older than our update: ignored
anything else while our update waits                    an SI edit *concurrent* with our update
=====================================================  ===========================================

(A pending entry stored before ``stale`` existed treats every report before the import as stale.)

Then :func:`decide` picks the value the field must end with (``target``) and writes each side that does
not hold it. "Changed" means: differs from the snapshot taken when the pair last agreed.

===========  ================  ================  ================================================
direction    Zoho changed      SI changed        target
===========  ================  ================  ================================================
si_to_zoho   any               any               SI's value, when known and not an empty first report
zoho_to_si   any               any               Zoho's value (SI is written when it holds another)
both         yes               yes               equal: that value; else ``on_conflict``:
                                                 si_wins SI's, zoho_wins Zoho's, manual: a conflict
both         yes               no                Zoho's value
both         no                yes               SI's value
both         no                no                none: nothing is written
===========  ================  ================  ================================================

An SI edit concurrent with our pending update counts as "both changed", and the target is always sent to
SI again, because our queued update may be imported after the edit and overwrite it. A field new to the
snapshot (just mapped) is not "changed" on the Zoho side of a ``both`` field: with SI's value unknown
nothing is written until SI reports it (or ``reconcile --deep`` reads it); with both known and different,
``on_conflict`` decides. An empty SI value (null or 0) SI reports for the first time is a baseline, not a
change, so a freshly imported project's zero price never wipes the amount sales typed.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from typing import Any, NamedTuple

from reconciler.plan.common import IMPORT_CLOCK_SLACK_MS, is_empty, new_tuple

__all__ = ["FieldDecision", "FieldView", "SiRead", "decide", "read_si"]

_UNSET: Any = object()


class SiRead(NamedTuple):
    """What SI's side of one field amounts to this cycle."""

    known: bool  # we know (or will know, once our update lands) what SI holds
    value: Any  # that value (SI's eventual value while our update waits)
    changed: bool  # SI moved since the snapshot (a real change, not our echo or a stale export)
    concurrent: bool  # an SI edit made while our update waited in SI's queue
    pending: AbcMapping[str, Any] | None  # our queued update, if it still waits after this report
    now: Any  # what SI shows now (its report, or the snapshot's belief); for a new pending's ``stale``


def read_si(
    name: str,
    snap_si: AbcMapping[str, Any],
    pending: AbcMapping[str, Any] | None,
    report: Any = _UNSET,
    report_ms: int = 0,
) -> SiRead:
    """Interpret SI's report (``_UNSET``: none this cycle) of field ``name`` against the snapshot."""
    known = name in snap_si
    old = snap_si.get(name)
    if report is _UNSET:
        value = pending["value"] if pending is not None else old
        return new_tuple(SiRead, (known or pending is not None, value, False, False, pending, old))
    if pending is None:
        changed = (not is_empty(report)) if not known else report != old
        return new_tuple(SiRead, (True, report, changed, False, None, report))
    if report == pending.get("value"):
        return new_tuple(SiRead, (True, report, False, False, None, report))  # our echo: the wait is over
    imported_ms = pending.get("imported_ms")
    if imported_ms is not None and report_ms > int(imported_ms) + IMPORT_CLOCK_SLACK_MS:
        # Exported after SI applied our update: SI's own, newer value.
        return new_tuple(SiRead, (True, report, report != old, False, None, report))
    stale = pending.get("stale")
    if stale is None or report in stale:
        # Older than our update: SI will hold our value once it imports it.
        return new_tuple(SiRead, (True, pending["value"], False, False, pending, report))
    return new_tuple(SiRead, (True, report, True, True, pending, report))


class FieldView(NamedTuple):
    """One field's inputs to :func:`decide`."""

    direction: str
    on_conflict: str
    zoho: Any  # Zoho's value now (read this cycle, else the snapshot's)
    zoho_changed: bool
    zoho_new: bool  # the snapshot has no Zoho value for the field yet (newly mapped)
    si: SiRead


class FieldDecision(NamedTuple):
    """``to_zoho``/``to_si`` are the values to write (``None`` inside a tuple means write an empty value);
    each is ``()`` when that side is left alone. ``conflict`` asks for a manual decision."""

    to_zoho: tuple[Any, ...] = ()
    to_si: tuple[Any, ...] = ()
    conflict: bool = False

    @property
    def writes(self) -> bool:
        return bool(self.to_zoho or self.to_si)


def decide(view: FieldView) -> FieldDecision:
    """Which sides get which value (see the module docstring's table)."""
    si, zoho = view.si, view.zoho
    if view.direction == "si_to_zoho":
        if si.known and si.value != zoho and (si.changed or not is_empty(si.value)):
            return new_tuple(FieldDecision, ((si.value,), (), False))
        return _NOTHING
    if view.direction == "zoho_to_si":
        if si.concurrent or (si.value != zoho if si.known else zoho is not None):
            return new_tuple(FieldDecision, ((), (zoho,), False))
        return _NOTHING
    target = _both_target(view)
    if target is None:
        return _NOTHING
    if target is _CONFLICT:
        return FieldDecision(conflict=True)
    (value,) = target
    to_zoho = (value,) if value != zoho else ()
    to_si = (value,) if si.concurrent or not si.known or si.value != value else ()
    return new_tuple(FieldDecision, (to_zoho, to_si, False))


_CONFLICT: Any = object()
_NOTHING = FieldDecision()


def _both_target(view: FieldView) -> Any:
    """``(value,)`` the field must end with, ``None`` for none, ``_CONFLICT`` for a manual decision."""
    si, zoho = view.si, view.zoho
    fresh = view.zoho_new and si.known  # both sides new to the snapshot: compared as two changes
    zoho_changed = (view.zoho_changed and not view.zoho_new) or fresh or si.concurrent
    si_changed = si.changed or fresh
    if zoho_changed and si_changed:
        if zoho == si.value:
            return (zoho,)
        if view.on_conflict == "si_wins":
            return (si.value,)
        if view.on_conflict == "zoho_wins":
            return (zoho,)
        return _CONFLICT
    if zoho_changed:
        return (zoho,)
    if si_changed:
        return (si.value,)
    return None
