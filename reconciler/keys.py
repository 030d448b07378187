"""Names several modules must agree on: intent keys, intent statuses, SI message states, shared limits.

Every action the planner decides has a deterministic *key*; the applier writes an intent row under it
before the external call and settles it after, and ``status``/``retry`` show and take the same keys. The
functions below are the only place a key's spelling lives. The parts of a key that come from outside
(a change order's number and status) are escaped, so no two distinct states ever share a key.

===========================  ===========================================================================
key                          what it stands for
===========================  ===========================================================================
``create:deal:<deal>``       publishing the deal's SI project, then writing its id back onto the deal
``publish:deal:<deal>``      SI failed to import our publish (``retry`` publishes it again, same Guid)
``update:deal:<deal>``       one batched write of mapped fields onto the deal
``update:project:<proj>``    one ``Publish/Projects/Update`` of mapped fields to SI
``note:<proj>:<co>:<st>``    the Zoho note for one change-order state
``conflict:<deal>:<field>``  a ``manual`` field both sides changed differently
``deal:<deal>``              a deal whose mapped values cannot be read (bad data)
``link:deal:<deal>``         a deal naming another SI project than the one it is linked to
``si:project:<proj>``        an SI project whose exported values cannot be read (bad data)
``read:project:<proj>``      an SI export of the project whose details cannot be read
``read:message:<msg>``       an SI export message missing the fields that identify it
``status:message:<msg>``     one of our SI messages whose status SI cannot tell
``deep:project:<proj>``      SI's current state of the project cannot be read (``reconcile --deep``)
``ack:message:<msg>``        SI refuses to acknowledge one of its export messages (it comes back until it
                             is acknowledged; ``ack:project:<proj>:<co>`` for one without a MessageId)
===========================  ===========================================================================
"""

from __future__ import annotations

__all__ = [
    "DONE",
    "MAX_ATTEMPTS",
    "MESSAGE_FAILED",
    "MESSAGE_IMPORTED",
    "MESSAGE_PENDING",
    "PARKED",
    "PENDING",
    "RETRY",
    "ZOHO_WRITE_BATCH",
]

# ---- intent statuses --------------------------------------------------------------------------------
PENDING = "pending"  # begun (maybe sent) and not settled, or failed transiently: the next cycle resumes it
DONE = "done"
PARKED = "parked"  # failed permanently or too often: waits for its input to change or for `retry`
RETRY = "retry"  # re-queued by `reconciler retry`: the next cycle plans it again
OPEN = frozenset({PENDING, PARKED, RETRY})

# ---- limits -----------------------------------------------------------------------------------------
MAX_ATTEMPTS = 5  # failed attempts (one per cycle) before an item is parked
ZOHO_WRITE_BATCH = 100  # records per PUT /Deals and POST /Notes (Zoho's documented maximum for writes)

# ---- SI message states (MessageStatus.StatusId) and types (TypeId), per SI's OpenAPI ----------------
MESSAGE_PENDING = 1
MESSAGE_IMPORTED = 2
MESSAGE_FAILED = 3
TYPE_PROJECT = 11
TYPE_UPDATE_PROJECT = 12


_ESCAPES = {"%": "%25", ":": "%3A", "]": "%5D", "\n": "%0A", "\r": "%0D"}


def _part(value: object) -> str:
    """An outside-supplied key part with ``%``, ``:``, ``]`` and line breaks escaped.

    Any other text is kept as it is, so the keys (and note reference lines) of every state that has no
    such character are the same as before escaping existed: an upgrade never notes a state twice.
    """
    return "".join(_ESCAPES.get(char, char) for char in str(value))


def create(deal_id: str) -> str:
    return f"create:deal:{deal_id}"


def publish(deal_id: str) -> str:
    return f"publish:deal:{deal_id}"


def deal_update(deal_id: str) -> str:
    return f"update:deal:{deal_id}"


def project_update(project_id: str) -> str:
    return f"update:project:{project_id}"


def note(project_id: str, co_number: str, co_status: str) -> str:
    return f"note:{project_id}:{_part(co_number)}:{_part(co_status)}"


def note_prefix(project_id: str) -> str:
    return f"note:{project_id}:"


def conflict(deal_id: str, field: str) -> str:
    return f"conflict:{deal_id}:{field}"


CONFLICTS = "conflict:"  # what every conflict key starts with


def bad_deal(deal_id: str) -> str:
    return f"deal:{deal_id}"


def mislinked(deal_id: str) -> str:
    return f"link:deal:{deal_id}"


def bad_project(project_id: str) -> str:
    return f"si:project:{project_id}"


def unreadable_export(project_id: str) -> str:
    return f"read:project:{project_id}"


def bad_message(message: str) -> str:
    return f"read:message:{message}"


def lost_status(message_id: str) -> str:
    return f"status:message:{message_id}"


def deep_read(project_id: str) -> str:
    return f"deep:project:{project_id}"


ACKS = "ack:"  # what every acknowledgement key starts with


def ack(message_id: str | None, project_id: str, co_number: str | None) -> str:
    if message_id:
        return f"ack:message:{message_id}"
    return f"ack:project:{project_id}:{_part(co_number or '')}"
