"""The planner: PURE. (Zoho deals, SI exports, the store's view, the mapping) -> a :class:`Plan`.

No I/O happens here and nothing here imports a client, the store or httpx: ``plan`` (the dry run) prints
exactly what ``run-once`` would apply, and the planner can be tested and benchmarked on plain data.

Its parts, in the order data flows through them:

* :mod:`~reconciler.plan.needs`: what the read side must fetch from SI for the pairs this cycle touches;
* :mod:`~reconciler.plan.driver`: sorts deals and SI messages into creates, pairs, stopped pairs, unknown
  projects and re-queued items;
* :mod:`~reconciler.plan.create`: a create's publish body and the snapshot it leaves;
* :mod:`~reconciler.plan.pair`: one linked pair, from its inputs to its actions and settle;
* :mod:`~reconciler.plan.reports` and :mod:`~reconciler.plan.fields`: what SI reports, and the decision
  table for one field;
* :mod:`~reconciler.plan.notes`: one note per change-order state;
* :mod:`~reconciler.plan.guard`: the mass-change guard.
"""

from __future__ import annotations

from reconciler.model import World
from reconciler.plan.common import (
    GUID_NAMESPACE,
    IN_SI,
    QUEUED,
    canon_digest,
    digest,
    note_reference,
    project_guid,
    update_message_id,
    zoho_canon,
)
from reconciler.plan.driver import plan
from reconciler.plan.needs import ReadNeeds, read_needs

__all__ = [
    "GUID_NAMESPACE",
    "IN_SI",
    "QUEUED",
    "ReadNeeds",
    "World",
    "canon_digest",
    "digest",
    "note_reference",
    "plan",
    "project_guid",
    "read_needs",
    "update_message_id",
    "zoho_canon",
]
