"""The applier's bookkeeping: what was applied, parked or left for later, and when to stop starting work.

Every outcome of an action goes through :class:`Book`, which writes it to the store (in its own
transaction) and counts it in the :class:`ApplyResult`. A stop request (SIGTERM/SIGINT) or the end of the
cycle's time budget makes :meth:`Book.stopping` true: the call in flight finishes, nothing new starts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from reconciler import keys
from reconciler.errors import ApiError, PermanentApiError
from reconciler.logs import event
from reconciler.store import Store

__all__ = ["ApplyResult", "Book", "Progress"]


class Progress(Protocol):
    """Where the applier reports records done (see :mod:`reconciler.progress`)."""

    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class ApplyResult:
    counts: Counter[str] = field(default_factory=Counter)
    parked: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)  # reads that failed: tried next cycle
    stopped: bool = False  # a stop request ended the apply early
    overran: bool = False  # the cycle's time budget ran out
    done: int = 0  # the plan's writes finished (applied, or failed)
    total: int = 0  # the plan's writes

    @property
    def clean(self) -> bool:
        """Nothing left for a later cycle: no transient failure, no stop."""
        return not self.failed and not self.stopped and not self.overran


class Intended(Protocol):
    """What an intent row is begun from: any planned write (or a deal write of one)."""

    @property
    def key(self) -> str: ...
    @property
    def deal_id(self) -> str | None: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def input_hash(self) -> str: ...


W = TypeVar("W", bound=Intended)


class Book:
    """Records outcomes in the store and the result; decides when to stop starting new work."""

    def __init__(
        self,
        store: Store,
        *,
        cycle_id: int | None,
        stop: threading.Event,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.cycle_id = cycle_id
        self.stop = stop
        self.deadline = deadline
        self.clock = clock
        self.progress = progress or _NoProgress()
        self.result = ApplyResult()
        self.finished: set[str] = set()  # keys applied or parked this cycle
        self.blocked: set[str] = set()  # keys that failed, were parked, or never started
        self._counted: set[str] = set()  # writes already counted as progress
        self._stopping = threading.Lock()  # SI lanes ask too, from their threads

    def stopping(self) -> bool:
        """True once a stop was requested or the time budget is spent (checked between actions, and by
        each SI lane before it starts a call)."""
        with self._stopping:
            if self.stop.is_set():
                self.result.stopped = True
            elif self.deadline is not None and self.clock() >= self.deadline:
                if not self.result.overran:
                    event("cycle.overran", "WARNING", done=self.result.done, total=self.result.total)
                self.result.overran = True
            return self.result.stopped or self.result.overran

    def skipped(self, key: str) -> None:
        self.blocked.add(key)

    def progressed(self, key: str) -> None:
        """The write's external call is done (a create's publish) though a step of it remains."""
        self._advance(key)

    def applied(self, key: str, kind: str) -> None:
        self.finished.add(key)
        self.result.counts[f"{kind}.applied"] += 1
        self._advance(key)

    def failed(self, key: str, kind: str, error: ApiError | str, *, permanent: bool | None = None) -> None:
        """A call failed: count an attempt (parked once permanent or out of attempts)."""
        message = str(error)
        if permanent is None:
            permanent = isinstance(error, PermanentApiError)
        with self.store.atomic():
            parked = self.store.fail_intent(key, message, permanent=permanent, max_attempts=keys.MAX_ATTEMPTS)
        self.blocked.add(key)
        if parked:
            # Parked writes did not happen: the pair keeps its old snapshot (and its SI messages stay
            # unacknowledged) until the planner sees the parked intent next cycle and settles it for real.
            self.finished.add(key)
            self.result.parked.append((key, message))
            self.result.counts[f"{kind}.parked"] += 1
            event("action.parked", "WARNING", key=key, error=message)
        else:
            self.result.failed.append((key, message))
            self.result.counts[f"{kind}.failed"] += 1
            event("action.failed", "WARNING", key=key, error=message)
        self._advance(key)

    def begin(self, actions: Iterable[W], kind: str, payload: Callable[[W], Mapping[str, Any]]) -> None:
        """Begin the intents of a group of writes in one transaction, before any of their calls: each is
        durable before its call, whatever the order in which the lanes then send them."""
        with self.store.atomic():
            for action in actions:
                self.store.begin_intent(
                    action.key,
                    kind,
                    deal_id=action.deal_id,
                    project_id=action.project_id,
                    payload=payload(action),
                    input_hash=action.input_hash,
                    cycle_id=self.cycle_id,
                )

    def ack_failed(self, key: str, project_id: str, error: ApiError) -> None:
        """SI refused to acknowledge a message: one attempt counted on ``ack:…`` (its message comes back
        and is acknowledged again next cycle), parked once permanent or out of attempts, so that a message
        SI never lets go of shows in ``status`` and the alerts rather than only in one cycle's failures."""
        message = f"SI project {project_id}: acknowledging its export message failed: {error}"
        with self.store.atomic():
            earlier = self.store.intent(key)
            attempts = earlier.attempts if earlier is not None and earlier.status == keys.PENDING else 0
            park = isinstance(error, PermanentApiError) or attempts + 1 >= keys.MAX_ATTEMPTS
            self.store.record_failure(
                key,
                "ack",
                message,
                deal_id=None,
                project_id=project_id,
                input_hash="",
                cycle_id=self.cycle_id,
                park=park,
            )
        if park:
            self.result.parked.append((key, message))
            self.result.counts["ack.parked"] += 1
            event("action.parked", "WARNING", key=key, error=message)
        else:
            self.result.failed.append((key, message))
            self.result.counts["ack.failed"] += 1
            event("action.failed", "WARNING", key=key, error=message)

    def parked(self, key: str, kind: str, message: str) -> None:
        """The planner parked an item (bad input, a conflict, a failed read out of attempts)."""
        self.finished.add(key)
        self.result.parked.append((key, message))
        self.result.counts[f"{kind}.parked"] += 1
        event("action.parked", "WARNING", key=key, error=message)

    def deferred(self, key: str, message: str) -> None:
        """An item failed in this cycle's read: one attempt counted, tried again next cycle."""
        self.finished.add(key)
        self.result.deferred.append((key, message))
        self.result.counts["read.failed"] += 1
        event("action.failed", "WARNING", key=key, error=message)

    def _advance(self, key: str) -> None:
        """One more of the plan's writes is done (applied, published, or failed and left for later)."""
        if key in self._counted:
            return
        self._counted.add(key)
        self.result.done += 1
        self.progress.advance(1)
