"""The one HTTP choke point: retries, backoff, rate limits, timeouts, error translation, call counting.

Every request either client makes goes through :meth:`HttpClient.request`. It retries timeouts,
connection errors, HTTP 429 (honouring ``Retry-After`` when the server sends it) and 5xx with exponential
backoff and jitter, a bounded number of times, logging each retry as ``http.retry``. Any other status is
returned to the caller, who knows what the body means. When retries run out the failure becomes a
:class:`~reconciler.errors.TransientApiError`.

Time is bounded three ways, so no server can hold a call (or a stopping daemon) indefinitely:

* each HTTP exchange has an overall deadline (``request_deadline``), not only per-read timeouts: the
  response body is read through a stream that gives up once the deadline passes (a server dripping one
  byte every few seconds), and every connect/read/write timeout is clamped to the time left;
* the retries of one call share a budget (``call_budget``, ``RECONCILER_CALL_BUDGET``): a wait that
  would end past it is not taken, and a ``Retry-After`` is capped at ``max_retry_after`` per attempt
  (one beyond the budget ends the call at once: the next cycle tries again);
* an optional cycle deadline (:meth:`HttpClient.cycle_deadline`): once it passes, a new call fails at
  once with :class:`CycleBudgetSpent`, so the cycle can stop starting actions and report that it overran.

Calls may run in several threads at once (SI's per-project calls, :mod:`reconciler.clients.pool`). A
429, or any answer with ``Retry-After``, pauses **every** call to that API, not only the one that got it:
no thread sends to that API again before the wait is over (``_Pauses``).

A stop request (SIGTERM sets the ``stop`` event) ends a retry wait at once. The call in flight is let
finish (the contract: a stop finishes the call in flight), but not indefinitely: an answer still being
read ``stop_grace`` seconds after the stop is cut off at its next chunk with
:class:`~reconciler.errors.StopRequested`, and a silent server is bounded by the read timeout (at most
``READ_TIMEOUT_CAP`` seconds): both well inside systemd's ``TimeoutStopSec=90``.

Tests build the policy with :meth:`RetryPolicy.no_waits` and may pass their own ``sleep`` to record
the waits that would have been taken.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from reconciler.clients.answers import json_body, parse_retry_after, raise_for_status, short_error
from reconciler.errors import StopRequested, TransientApiError
from reconciler.logs import event

__all__ = [
    "CallStats",
    "CycleBudgetSpent",
    "DeadlineExceeded",
    "HttpClient",
    "RetryPolicy",
    "RetryableStatus",
    "json_body",
    "parse_retry_after",
    "raise_for_status",
    "short_error",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
READ_TIMEOUT_CAP = 30.0  # a silent server holds one read (and so a stop request) at most this long


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``attempts`` in all, waits from ``initial_wait`` doubling up to ``max_wait``.

    ``max_retry_after`` caps one wait a server asks for; ``call_budget`` bounds one call with all its
    retries and waits; ``request_deadline`` bounds one HTTP exchange from sending to the last byte;
    ``stop_grace`` is how long an exchange in flight may go on after a stop request.
    """

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 60.0
    jitter: float = 1.0
    max_retry_after: float = 60.0
    call_budget: float = 120.0
    request_deadline: float = 60.0
    stop_grace: float = 20.0

    @classmethod
    def no_waits(cls, attempts: int = 3) -> RetryPolicy:
        """For tests: the same retries, with every wait (including ``Retry-After``) zero."""
        return cls(attempts=attempts, initial_wait=0, max_wait=0, jitter=0, max_retry_after=0)


class DeadlineExceeded(httpx.TimeoutException):
    """An HTTP exchange ran past its overall deadline (retried like any timeout, within the budget)."""


class CycleBudgetSpent(TransientApiError):
    """The cycle's time budget is spent: no new call starts. The cycle reports that it overran."""


class _Deadlines(threading.local):
    """Per thread: when the exchange in flight must end, the stop event to watch while reading, and the
    end of the last wait this thread was told to take (a 429's pause is already waited out by it)."""

    exchange: float | None = None
    stop: threading.Event | None = None
    waited_until: float = 0.0
    asked_until: float = 0.0  # the pause the last 429 asked for; waited only if tenacity then sleeps


class _DeadlineStream(httpx.SyncByteStream):
    """A response body that gives up (between chunks) once its deadline passes, or ``grace`` seconds
    after a stop was requested."""

    def __init__(
        self,
        inner: Any,
        deadline: float,
        stop: threading.Event | None,
        grace: float,
        clock: Callable[[], float],
    ) -> None:
        self._inner = inner
        self._deadline = deadline
        self._stop = stop
        self._grace = grace
        self._clock = clock
        self._stop_seen: float | None = None

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            now = self._clock()
            if self._stop is not None and self._stop.is_set():
                self._stop_seen = now if self._stop_seen is None else self._stop_seen
                if now - self._stop_seen >= self._grace:
                    raise StopRequested("stop requested; the answer in flight was still coming")
            if now >= self._deadline:
                raise DeadlineExceeded("the answer took longer than the request deadline")
            yield chunk

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


@dataclass
class CallStats:
    """API calls and failed calls per endpoint label; one instance is shared by both clients."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, endpoint: str, *, failed: bool) -> None:
        with self._lock:
            self.calls[endpoint] += 1
            if failed:
                self.errors[endpoint] += 1

    def total(self) -> int:
        return sum(self.calls.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)


class _Pauses:
    """Per API (the endpoint label's first part: ``si``, ``zoho``): the moment before which no call to it
    starts, set by a 429 or a ``Retry-After`` that any thread received."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def extend(self, endpoint: str, until: float) -> None:
        api = endpoint.split(".", 1)[0]
        with self._lock:
            self._until[api] = max(self._until.get(api, 0.0), until)

    def until(self, endpoint: str) -> float:
        with self._lock:
            return self._until.get(endpoint.split(".", 1)[0], 0.0)


class RetryableStatus(Exception):
    """Raised inside the retry loop for a 429/5xx answer (or by an auth flow for a throttled token)."""

    def __init__(self, endpoint: str, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.endpoint = endpoint
        self.status = status
        self.message = message
        self.retry_after = retry_after


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RetryableStatus | httpx.TimeoutException | httpx.TransportError)


def _never_sent(exc: BaseException, endpoint: str, url: str) -> bool:
    """Whether a failure certainly happened before the server could act on our request.

    A 429 was refused; a connect error never reached it; a failure of the token request (made by an
    auth flow on the way) happened before ours was sent. Anything else (a timeout or reset after sending,
    a 5xx) may come after the server applied it.
    """
    if isinstance(exc, RetryableStatus):
        return exc.status == 429 or exc.endpoint != endpoint
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    if isinstance(exc, httpx.RequestError):
        try:
            return exc.request.url.path != httpx.URL(url).path
        except RuntimeError:  # no request attached: assume the worst
            return False
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RetryableStatus):
        return str(exc)
    if isinstance(exc, DeadlineExceeded):
        return "timeout (the answer took longer than the request deadline)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    return f"connection error ({type(exc).__name__})"


class HttpClient:
    """Wraps an ``httpx.Client`` (built by the caller, with its transport, auth and timeout).

    It adds two event hooks to that client: one clamps each request's timeouts to the time its call
    has left, one reads each answer through a deadline-checking stream (token requests made by an auth
    flow included).
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        stats: CallStats | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.stats = stats if stats is not None else CallStats()
        self._stop = stop or threading.Event()
        self._sleep = sleep or self._interruptible_sleep
        self._clock = clock
        self._cycle_deadline: float | None = None
        self._local = _Deadlines()
        self._pauses = _Pauses()
        self._backoff = wait_exponential_jitter(
            multiplier=self.policy.initial_wait, max=self.policy.max_wait, jitter=self.policy.jitter
        )
        client.event_hooks["request"].append(self._clamp_timeouts)
        client.event_hooks["response"].append(self._bound_body)

    # ---- deadlines ------------------------------------------------------------------------------------

    @contextmanager
    def cycle_deadline(self, seconds: float | None) -> Iterator[None]:
        """Within the block, no call starts once ``seconds`` have passed (:class:`CycleBudgetSpent`),
        and no call runs past that moment. ``None`` lifts the limit."""
        previous = self._cycle_deadline
        self._cycle_deadline = None if seconds is None else self._clock() + seconds
        try:
            yield
        finally:
            self._cycle_deadline = previous

    def cycle_time_left(self) -> float | None:
        """Seconds left of the cycle budget (negative once spent); None without one."""
        return None if self._cycle_deadline is None else self._cycle_deadline - self._clock()

    def _clamp_timeouts(self, request: httpx.Request) -> None:
        deadline = self._local.exchange
        if deadline is None:
            return
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded("no time left for this request", request=request)
        given = request.extensions.get("timeout") or self.client.timeout.as_dict()
        clamped = {}
        for name in ("connect", "read", "write", "pool"):
            value = given.get(name)
            clamped[name] = min(left, READ_TIMEOUT_CAP if value is None else value)
        request.extensions["timeout"] = clamped

    def _bound_body(self, response: httpx.Response) -> None:
        deadline = self._local.exchange
        if deadline is not None:
            response.stream = _DeadlineStream(
                response.stream, deadline, self._local.stop, self.policy.stop_grace, self._clock
            )

    def _interruptible_sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise StopRequested("stop requested while waiting to retry")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableStatus) and exc.retry_after is not None:
            wait = min(exc.retry_after, self.policy.max_retry_after)
        else:
            wait = float(self._backoff(state))
        if isinstance(exc, RetryableStatus) and (exc.status == 429 or exc.retry_after is not None):
            until = self._clock() + wait
            self._pauses.extend(exc.endpoint, until)  # the whole API waits, every thread
            self._local.asked_until = until  # waited out in tenacity's sleep, if it sleeps (before_sleep)
        return wait

    def _await_pause(self, endpoint: str, deadline: float) -> None:
        """Before sending: wait out a pause another thread's 429 or ``Retry-After`` set on this API."""
        while True:  # again after each sleep: another thread's 429 may have lengthened the pause
            until = self._pauses.until(endpoint)
            wait = until - self._clock()
            if wait <= 0 or until <= self._local.waited_until:  # past, or this thread's own wait
                return
            if self._clock() + wait >= deadline:
                raise TransientApiError(endpoint, "the API asked to wait past this call's time budget", 429)
            self._sleep(wait)

    def _stop_when(self, deadline: float) -> Callable[[RetryCallState], bool]:
        """Give up after the last attempt, or when the next wait would end past the call's deadline."""

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.policy.attempts:
                return True
            exc = state.outcome.exception() if state.outcome else None
            asked = exc.retry_after if isinstance(exc, RetryableStatus) else None
            left = deadline - self._clock()
            return state.upcoming_sleep >= left or (asked is not None and asked >= left)

        return stop

    def _before_sleep(self, endpoint: str) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            # tenacity works out the wait before it decides to stop: only now is the pause really taken.
            if self._local.asked_until:
                self._local.waited_until, self._local.asked_until = self._local.asked_until, 0.0
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            event(
                "http.retry",
                "WARNING",
                endpoint=endpoint,
                attempt=state.attempt_number,
                wait=round(wait, 2),
                reason=_describe(exc) if exc else "?",
            )

        return log

    def request(
        self, endpoint: str, method: str, url: str, *, replay_safe: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send one logical request; returns any answer that is not 429/5xx; raises ``ApiError``.

        ``replay_safe=False`` marks a write that is not idempotent (creating a note): it is resent only
        when the failure certainly came before the server acted on it; otherwise the error goes up, and
        the caller looks before it writes again.
        """

        def retryable(exc: BaseException) -> bool:
            return _is_retryable(exc) and (replay_safe or _never_sent(exc, endpoint, url))

        deadline = self._clock() + self.policy.call_budget
        if self._cycle_deadline is not None:
            if self._clock() >= self._cycle_deadline:
                raise CycleBudgetSpent(endpoint, "not started: the cycle's time budget is spent")
            deadline = min(deadline, self._cycle_deadline)
        retrying = Retrying(
            stop=self._stop_when(deadline),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            sleep=self._sleep,
            before_sleep=self._before_sleep(endpoint),
            reraise=True,
        )
        try:
            return retrying(self._attempt, endpoint, method, url, deadline, **kwargs)
        except RetryableStatus as exc:
            raise TransientApiError(endpoint, exc.message, exc.status) from None
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientApiError(endpoint, _describe(exc)) from None

    def _attempt(
        self, endpoint: str, method: str, url: str, deadline: float, **kwargs: Any
    ) -> httpx.Response:
        self._await_pause(endpoint, deadline)
        local = self._local
        local.exchange = min(deadline, self._clock() + self.policy.request_deadline)
        local.stop = self._stop
        try:
            response = self.client.request(method, url, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError):
            self.stats.record(endpoint, failed=True)
            raise
        except RetryableStatus:
            self.stats.record(endpoint, failed=True)
            raise
        finally:
            local.exchange = None
            local.stop = None
        failed = response.status_code >= 400
        self.stats.record(endpoint, failed=failed)
        if response.status_code in RETRY_STATUSES or response.status_code >= 500:
            raise RetryableStatus(
                endpoint,
                response.status_code,
                short_error(response),
                parse_retry_after(response.headers.get("Retry-After")),
            )
        return response
