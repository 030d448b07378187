"""Bounded concurrency for SI's per-project calls (``RECONCILER_SI_CONCURRENCY``).

SI's API has no bulk publish, detail read or acknowledgement: 1,000 changed projects cost 2,000 calls.
Made one after the other, each waits out the network's round trip. :class:`Lanes` runs one call per
item with at most ``width`` calls in flight, and gives the outcomes back **in the items' order**, so the
caller (the read side, the applier) records them in the main thread, exactly as a sequential run would.

Only the calls run in worker threads: they touch the HTTP client (thread-safe: the retry state and
deadlines are per thread, the call counter is locked) and nothing else. The store is written by the
caller's thread only, before the calls (intents) and after them (outcomes).

``width`` 1 runs every call in the caller's thread, one after the other, each outcome handed to the
caller before the next call starts: exactly the sequential behaviour.
A call started before a stop request finishes; a call not started by then is not started
(``Done.started`` is False). An exception the caller did not list in ``catch`` stops the start of new
calls, lets those in flight finish, and is raised once they have.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["DEFAULT_WIDTH", "MAX_WIDTH", "Done", "Lanes"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_WIDTH = 4
MAX_WIDTH = 16  # SI publishes no limit; more lanes than this only queue up at its end


@dataclass(frozen=True)
class Done(Generic[T, R]):
    """One item's outcome: its call's value, or the caught error, or not started (a stop came first)."""

    item: T
    value: R | None = None
    error: BaseException | None = None
    started: bool = True


class Lanes:
    """At most ``width`` calls in flight; outcomes in the items' order (see the module docstring)."""

    def __init__(self, width: int = 1) -> None:
        if not 1 <= width <= MAX_WIDTH:
            raise ValueError(f"width must be 1..{MAX_WIDTH}, not {width}")
        self.width = width
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def each(
        self,
        items: Sequence[T],
        call: Callable[[T], R],
        *,
        catch: tuple[type[BaseException], ...] = (),
        go_on: Callable[[], bool] = lambda: True,
    ) -> Iterator[Done[T, R]]:
        """``call(item)`` for every item while ``go_on()`` holds, each outcome yielded in the items' order
        as soon as it is known (so the caller records it before more complete). Errors of the ``catch``
        types come back on their item; any other is raised once the calls in flight have finished. If the
        caller stops iterating (or raises), no new call starts, and those in flight are waited for."""
        abort = threading.Event()

        def one(item: T) -> Done[T, R]:
            if abort.is_set() or not go_on():
                return Done(item, started=False)
            try:
                return Done(item, call(item))
            except catch as exc:
                return Done(item, error=exc)
            except BaseException:
                abort.set()
                raise

        if self.width == 1 or len(items) <= 1:
            for item in items:
                yield one(item)
            return
        # A sliding window: item k + width is submitted once the caller is done with item k, so while the
        # caller records an outcome at most ``width - 1`` other calls are running or waiting to be handed
        # over: a crash then repeats at most ``width`` calls.
        pool = self._pool()
        futures: list[Future[Done[T, R]]] = [pool.submit(one, item) for item in items[: self.width]]
        failure: BaseException | None = None
        try:
            for k, item in enumerate(items):
                try:
                    done = futures[k].result()
                except BaseException as exc:  # raised below, once every call in flight has ended
                    failure = failure or exc
                    abort.set()
                    done = Done(item, started=False)
                if failure is None:
                    yield done
                if k + self.width < len(items):
                    futures.append(pool.submit(one, items[k + self.width]))
        finally:
            abort.set()
            wait(futures)
        if failure is not None:
            raise failure

    def run(
        self,
        items: Sequence[T],
        call: Callable[[T], R],
        *,
        catch: tuple[type[BaseException], ...] = (),
        go_on: Callable[[], bool] = lambda: True,
    ) -> list[Done[T, R]]:
        """:meth:`each`, collected."""
        return list(self.each(items, call, catch=catch, go_on=go_on))

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.width, thread_name_prefix="si-lane")
            return self._executor

    def close(self) -> None:
        """Stop the worker threads (after the calls in flight)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
