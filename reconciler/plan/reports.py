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
from typing import Any

from reconciler.mapping import FieldMap, Mapping
from reconciler.model import SiExport
from reconciler.plan.common import CO_FIELDS

__all__ = ["Reports", "si_reports"]


@dataclass(frozen=True)
class Reports:
    """Per Zoho field: SI's reported value and when SI published it; ``bad`` names an unreadable value.

    ``history`` has every value this poll's messages carry for the field, oldest first (an echo of our
    update may precede the newest report); ``current`` names the fields SI's present state reported.
    """

    values: dict[str, Any] = field(default_factory=dict)
    published_ms: dict[str, int] = field(default_factory=dict)
    bad: str | None = None
    history: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)
    current: set[str] = field(default_factory=set)


def si_reports(exports: Sequence[SiExport], mapping: Mapping, project_id: str, deal_id: str) -> Reports:
    """SI's values for the mapped fields these messages tell about (``exports`` oldest first)."""
    reports = Reports()
    if not exports:
        return reports
    base = [e for e in exports if e.co_number is None]
    change_orders = [e for e in exports if e.co_number is not None]
    for fmap in mapping.fields:
        group = sorted(change_orders if fmap.si_key in CO_FIELDS else base, key=lambda e: e.published_ms)
        source = group[-1] if group else None
        if source is None or fmap.si_key not in source.values:
            continue
        try:
            reports.values[fmap.zoho] = fmap.from_si(source.values[fmap.si_key])
        except ValueError as exc:
            return Reports(bad=f"SI project {project_id} (deal {deal_id}): field {fmap.si}: {exc}")
        reports.published_ms[fmap.zoho] = source.published_ms
        reports.history[fmap.zoho] = _history(group, fmap)
        if source.current:
            reports.current.add(fmap.zoho)
    return reports


def _history(group: Sequence[SiExport], fmap: FieldMap) -> list[tuple[Any, int]]:
    """Every readable value of the field in ``group`` (oldest first); older unreadable ones are skipped."""
    out = []
    for export in group:
        if fmap.si_key in export.values:
            try:
                out.append((fmap.from_si(export.values[fmap.si_key]), export.published_ms))
            except ValueError:
                continue
    return out
