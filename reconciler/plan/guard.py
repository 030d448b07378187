"""The mass-change guard: refuse a plan that looks like an outage or a mistake rather than real work. Pure.

A plan is refused, and nothing is applied, when

* it writes more records than ``RECONCILER_MAX_WRITES`` (or, with ``run-once --expect N``, more than N);
* a full read misses markedly more linked deals than a real day's work would untick or delete: more than
  :func:`missing_limit` of them. Below that the read side asks Zoho about each missing deal directly, and
  only a deal Zoho confirms gone (or unticked, or unlinked) stops syncing.

``--force`` lifts both; a saved plan (``reconciler apply FILE``) is its own review.
"""

from __future__ import annotations

from reconciler.model import Plan

__all__ = ["MISSING_FLOOR", "MISSING_SHARE", "missing_limit", "refusal"]

MISSING_FLOOR = 9  # a full read may always miss this many linked deals (each is then read directly)
MISSING_SHARE = 0.1  # ... or this share of the linked deals, whichever is more


def missing_limit(active_links: int) -> int:
    """How many linked deals a full read may miss before the read itself looks broken."""
    return max(MISSING_FLOOR, int(active_links * MISSING_SHARE))


def refusal(
    plan: Plan,
    *,
    active_links: int,
    missing: int,
    max_writes: int,
    force: bool = False,
    expect: int | None = None,
) -> str | None:
    """Why ``plan`` must not be applied, or None."""
    if force:
        return None
    if plan.full and missing > missing_limit(active_links):
        return (
            f"refused: a full read returned {active_links - missing} of the {active_links} linked deals "
            f"({missing} missing); that looks like an API, permission or mapping problem, so nothing was "
            "changed. If those deals were really deleted or unticked, run: reconciler run-once --full --force"
        )
    writes = plan.writes()
    if expect is not None:
        if writes > expect:
            return (
                f"refused: this plan writes {writes} records, more than --expect {expect}; nothing was "
                "changed. Review it with `reconciler plan`"
            )
        return None
    if writes > max_writes:
        return (
            f"refused: this plan writes {writes} records, more than RECONCILER_MAX_WRITES={max_writes}; "
            "nothing was changed. Review it with `reconciler plan --out plan.json` and apply exactly that "
            f"plan with `reconciler apply plan.json`, or run: reconciler run-once --expect {writes}"
        )
    return None
