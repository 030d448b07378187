"""What the planner will need from SI, decided before SI is read: the read side asks here. Pure.

The read side fetches the deals first, then asks which pairs will be *active* in this cycle: their export
messages need detail reads (the list payload lacks Hours, Revision and a change order's name and status).
A pair is active when its deal is flagged and linked, as this cycle's read of the deal says, whatever the
store last recorded: a deal ticked again in this cycle gets the same detail reads as any active pair. The
planner classifies deals with the same function (:func:`deal_role`), so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.mapping import Mapping, canonical
from reconciler.model import Deal, LinkState

__all__ = ["ReadNeeds", "deal_role", "read_needs"]


def deal_role(flag: Any, link_value: Any, link: LinkState | None) -> str:
    """What a read deal is to the cycle: ``create``, ``adopt``, ``mislinked``, ``inactive``, ``active``,
    or ``none`` (unflagged and unlinked). ``flag`` and ``link_value`` are the deal's canonical values."""
    if link is None:
        if link_value:
            return "adopt"
        return "create" if flag else "none"
    if link_value and link_value != link.project_id:
        return "mislinked"
    return "active" if flag else "inactive"


@dataclass(frozen=True)
class ReadNeeds:
    """``active``: projects whose messages need details; ``adopt``: projects deals name that no link knows
    (SI must confirm they exist before a deal is linked to one)."""

    active: frozenset[str]
    adopt: frozenset[str]


def _flag_and_link(deal: Deal, mapping: Mapping) -> tuple[bool, str | None] | None:
    try:
        raw = deal.values.get(mapping.flag_field)
        flag = bool(raw) if isinstance(raw, bool) else bool(canonical(raw, "boolean"))
    except ValueError:
        return None  # a bad flag parks the deal: it needs nothing from SI
    link_value = deal.values.get(mapping.link_field)
    return flag, None if link_value in (None, "") else str(link_value)


def read_needs(
    deals: Sequence[Deal],
    links: AbcMapping[str, LinkState],
    mapping: Mapping,
) -> ReadNeeds:
    """Which projects' messages need details, and which projects deals want to adopt (see the docstring)."""
    active = {link.project_id for link in links.values() if link.active}
    adopt: set[str] = set()
    for deal in deals:
        parsed = _flag_and_link(deal, mapping)
        link = links.get(deal.id)
        if parsed is None:
            if link is not None:
                active.discard(link.project_id)
            continue
        flag, link_value = parsed
        role = deal_role(flag, link_value, link)
        if role == "adopt" and link_value is not None:
            adopt.add(link_value)
            if flag:
                active.add(link_value)
        elif link is not None and role in ("mislinked", "inactive"):
            active.discard(link.project_id)
        elif link is not None and role == "active":
            active.add(link.project_id)
    return ReadNeeds(frozenset(active), frozenset(adopt))
