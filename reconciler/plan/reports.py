"""What SI's export messages of one pair report, field by field, in Zoho space. Pure.

Project fields come from the newest *base-project* message: a change-order message describes the change
order (its ``Price`` is the change order's price). Change-order fields (``CONumber``, ``COStatus`` ...) come
from the newest change-order message, so a base message's empty ``CONumber`` never wipes the deal's
change-order number. A ``current`` message (SI's present state, read by ``reconcile --deep``) competes by
its ``PublishedOnUnixTimeMs`` like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler.mapping import FieldMap, Mapping
from reconciler.model import SiExport
from reconciler.plan.common import CO_FIELDS, new_tuple

__all__ = ["Report", "Reports", "si_reports"]


class Report(NamedTuple):
    """What SI said of one field: its newest value, when SI published it, whether it is SI's present state
    (``reconcile --deep``), and every value the poll's messages carry for it, oldest first (an echo of our
    update may precede the newest report)."""

    value: Any
    ms: int
    current: bool = False
    history: tuple[tuple[Any, int], ...] = ()


@dataclass(frozen=True)
class Reports:
    """Per Zoho field, SI's :class:`Report`; ``bad`` names an unreadable value (then ``fields`` is empty)."""

    fields: dict[str, Report] = field(default_factory=dict)
    bad: str | None = None


def si_reports(exports: Sequence[SiExport], mapping: Mapping, project_id: str, deal_id: str) -> Reports:
    """SI's values for the mapped fields these messages tell about (``exports`` oldest first)."""
    fields: dict[str, Report] = {}
    if not exports:
        return Reports(fields)
    base: list[SiExport] = []
    change_orders: list[SiExport] = []
    for export in sorted(exports, key=_published) if len(exports) > 1 else exports:
        (base if export.co_number is None else change_orders).append(export)
    for fmap in mapping.fields:
        si_key = fmap.si_key
        group = change_orders if si_key in CO_FIELDS else base
        if not group:
            continue
        source = group[-1]
        raw = source.values.get(si_key, _ABSENT)
        if raw is _ABSENT:
            continue
        try:
            value = fmap.from_si(raw)
        except ValueError as exc:
            return Reports(bad=f"SI project {project_id} (deal {deal_id}): field {fmap.si}: {exc}")
        ms = source.published_ms
        history = (*_history(group[:-1], fmap), (value, ms)) if len(group) > 1 else ((value, ms),)
        fields[fmap.zoho] = new_tuple(Report, (value, ms, source.current, history))
    return Reports(fields)


_ABSENT: Any = object()


def _published(export: SiExport) -> int:
    return export.published_ms


def _history(group: Sequence[SiExport], fmap: FieldMap) -> list[tuple[Any, int]]:
    """Every readable value of the field in ``group`` (oldest first); unreadable ones are skipped."""
    out = []
    si_key = fmap.si_key
    for export in group:
        if si_key in export.values:
            try:
                out.append((fmap.from_si(export.values[si_key]), export.published_ms))
            except ValueError:
                continue
    return out
