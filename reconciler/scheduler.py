"""``reconciler daemon``: scheduled cycles under APScheduler 3.x, with systemd's notify and watchdog.

Shape of the daemon (the caller holds the :class:`~reconciler.lock.InstanceLock` around it):

* one ``BlockingScheduler`` in the main thread, with **one** cycle job (interval trigger, first run at
  start, ``max_instances=1``, ``coalesce=True``, ``misfire_grace_time`` about the interval, a little
  jitter) on a one-thread executor, so two cycles can never overlap. ``cycle()`` itself decides between
  a full and an incremental reconcile; an overrunning cycle makes the scheduler skip ticks, never queue
  them.
* a light watchdog job on its **own** one-thread executor. It sends ``WATCHDOG=1`` as long as the
  scheduler keeps firing jobs, independent of how long a cycle waits for the APIs, because a cycle may
  legitimately take longer than ``WatchdogSec=`` (a first full sync, a slow API, long backoffs). It stops
  pinging only when one cycle has run for more than ``max_cycle_seconds`` (wedged), and then systemd
  restarts the service. Sharing the cycle's executor would starve it behind any long cycle.
* a crashing cycle is logged (``cycle.crashed``) and the next tick retries; the daemon never dies of it.
  Rejected credentials are the exception: a restart cannot fix them, so after ``credential_strikes``
  cycles in a row rejected them the daemon logs one ERROR line and returns 78, which the unit's
  ``RestartPreventExitStatus=78`` honours.
* SIGTERM/SIGINT only set ``stop`` (nothing else is safe inside a signal handler); the CLI installs the
  handlers (:class:`~reconciler.interrupts.StopOnSignals`) before it even reads the settings. A watcher
  thread sees
  ``stop``, sends ``STOPPING=1`` and shuts the scheduler down with ``wait=True``: the cycle notices
  ``stop`` between actions, finishes the one in flight and returns; then :func:`run_daemon` returns 0.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from reconciler.errors import (
    EX_CONFIG,
    EX_FAIL,
    EX_OK,
    CredentialsError,
    StopRequested,
    StoreBusyError,
    StoreError,
)
from reconciler.interrupts import StopOnSignals
from reconciler.logs import event
from reconciler.model import CycleReport
from reconciler.sdnotify import Notifier

__all__ = ["run_daemon"]

CYCLE_JOB = "cycle"
WATCHDOG_JOB = "watchdog"
_DEFAULT_WATCHDOG_EVERY = 30.0
CREDENTIAL_STRIKES = 3  # cycles in a row with rejected credentials before the daemon gives up (exit 78)


class _Heartbeat:
    """When the cycle in progress (if any) started; read by the watchdog job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: float | None = None
        self.stall_reported = False

    def start(self) -> None:
        with self._lock:
            self._started = time.monotonic()
            self.stall_reported = False

    def finish(self) -> None:
        with self._lock:
            self._started = None

    def running_for(self) -> float | None:
        with self._lock:
            return None if self._started is None else time.monotonic() - self._started


class _ForwardErrors(logging.Handler):
    """APScheduler logs through stdlib logging; pass its errors on as ``scheduler.log`` events.

    Its warnings (missed runs, skipped overlapping runs) are already reported by our listeners.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)

    def emit(self, record: logging.LogRecord) -> None:
        event("scheduler.log", record.levelname, logger=record.name, text=record.getMessage())


def run_daemon(
    cycle: Callable[[], CycleReport],
    *,
    interval: float,
    stop: threading.Event,
    notifier: Notifier,
    on_report: Callable[[CycleReport], None] | None = None,
    jitter: float | None = None,
    install_signals: bool = True,
    watchdog_every: float | None = None,
    max_cycle_seconds: float | None = None,
    signals: StopOnSignals | None = None,
    credential_strikes: int = CREDENTIAL_STRIKES,
) -> int:
    """Run ``cycle`` every ``interval`` seconds (first run at once) until ``stop`` is set; return 0.

    Returns 78 instead when ``credential_strikes`` cycles in a row raised
    :class:`~reconciler.errors.CredentialsError`. ``signals`` are handlers the caller already installed
    (their first signal is logged with ``daemon.stopping``); without them, ``install_signals`` installs
    our own for the duration of the call. The parameters are many because each is a seam for a test
    (timings, signals) or a knob the CLI sets; all but the first three have defaults.

    ``on_report`` gets each cycle's report (health ping, alerts, metrics); when ``cycle`` raises it gets
    a synthesised ``failed`` report instead, so monitoring sees crashes too. Its own errors are logged
    (``daemon.report_failed``) and ignored. ``jitter`` defaults to ``min(interval * 0.1, 30)`` seconds.
    ``watchdog_every`` defaults to a third of ``$WATCHDOG_USEC`` (else 30 s); ``max_cycle_seconds``
    (default ``max(12 * interval, 3600)``) is how long one cycle may run before the watchdog stops
    vouching for it. ``install_signals`` must be False when not called from the main thread.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    daemon = _Daemon(
        cycle,
        stop=stop,
        notifier=notifier,
        on_report=on_report,
        max_cycle_seconds=max_cycle_seconds or max(12 * interval, 3600.0),
        credential_strikes=credential_strikes,
    )
    scheduler = daemon.scheduler(
        interval=interval,
        jitter=min(interval * 0.1, 30.0) if jitter is None else jitter,
        watchdog_every=watchdog_every or notifier.watchdog_interval or _DEFAULT_WATCHDOG_EVERY,
    )
    own_signals = signals is None and install_signals
    signals = signals or StopOnSignals(stop)
    if own_signals:
        signals.install()
    aps_logger = logging.getLogger("apscheduler")
    forward, propagate = _ForwardErrors(), aps_logger.propagate
    aps_logger.addHandler(forward)
    aps_logger.propagate = False
    try:
        daemon.run(scheduler, signals)
    finally:
        aps_logger.removeHandler(forward)
        aps_logger.propagate = propagate
        if own_signals:
            signals.restore()
    event("daemon.stopped")
    return daemon.exit_code


class _Daemon:
    """The two jobs (cycle and watchdog), the stop watcher and the credential strikes of one daemon run."""

    def __init__(
        self,
        cycle: Callable[[], CycleReport],
        *,
        stop: threading.Event,
        notifier: Notifier,
        on_report: Callable[[CycleReport], None] | None,
        max_cycle_seconds: float,
        credential_strikes: int,
    ) -> None:
        self.cycle = cycle
        self.stop = stop
        self.notifier = notifier
        self.on_report = on_report
        self.max_cycle_seconds = max_cycle_seconds
        self.credential_strikes = credential_strikes
        self.beat = _Heartbeat()
        self.rejected = 0  # consecutive cycles whose credentials were rejected
        self.exit_code = EX_OK
        self._started_with: dict[str, float] = {}

    # ---- the jobs ---------------------------------------------------------------------------------------

    def cycle_job(self) -> None:
        if self.stop.is_set():
            return
        self.beat.start()
        started = time.time()
        self.notifier.status("cycle running")
        try:
            report = self.cycle()
            self.rejected = 0
        except CredentialsError as exc:
            report = self._credentials_rejected(exc, started)
        except StopRequested:
            event("cycle.interrupted")
            self.notifier.status("cycle interrupted by stop")
            return
        except StoreError as exc:
            report = self._store_fault(exc, started)
        except Exception as exc:  # a crash must never kill the daemon: the next tick retries
            report = self._crashed(exc, started)
        finally:
            self.beat.finish()
        self.notifier.status(report.summary())
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception as exc:  # monitoring must not break the daemon either
                event("daemon.report_failed", "ERROR", error=repr(exc))

    def watchdog_job(self) -> None:
        running_for = self.beat.running_for()
        if running_for is not None and running_for > self.max_cycle_seconds:
            if not self.beat.stall_reported:
                self.beat.stall_reported = True
                event("daemon.cycle_stalled", "ERROR", running_for=round(running_for))
            return  # no ping: systemd's WatchdogSec= restarts the wedged service
        self.notifier.watchdog()

    def _credentials_rejected(self, exc: CredentialsError, started: float) -> CycleReport:
        self.rejected += 1
        message = "; ".join(exc.problems)
        if self.rejected >= self.credential_strikes:
            self.exit_code = EX_CONFIG
            event(
                "daemon.credentials_rejected",
                "ERROR",
                cycles=self.rejected,
                error=message,
                action="fix the credentials, then `systemctl restart reconciler`",
            )
            self.stop.set()
        else:
            event("cycle.credentials_rejected", "WARNING", consecutive=self.rejected, error=message)
        return _failed(started, EX_CONFIG, f"credentials rejected: {message}")

    def _store_fault(self, exc: StoreError, started: float) -> CycleReport:
        """The database failed: one line, no traceback. Busy or a full disk: the next tick tries again;
        anything else (a damaged file, permissions) a restart cannot fix, so the daemon exits 78."""
        message = "; ".join(exc.problems)
        if isinstance(exc, StoreBusyError):
            event("cycle.store_busy", "ERROR", error=message)
            return _failed(started, EX_FAIL, message)
        event("daemon.store_failed", "ERROR", error=message)
        self.exit_code = EX_CONFIG
        self.stop.set()
        return _failed(started, EX_CONFIG, message)

    @staticmethod
    def _crashed(exc: Exception, started: float) -> CycleReport:
        event("cycle.crashed", "ERROR", error=repr(exc), traceback="".join(traceback.format_exception(exc)))
        return _failed(started, EX_FAIL, f"crashed: {type(exc).__name__}")

    # ---- the scheduler ------------------------------------------------------------------------------------

    def scheduler(self, *, interval: float, jitter: float, watchdog_every: float) -> BlockingScheduler:
        """One cycle job (never two at once, overruns skip ticks) and a watchdog job on its own thread."""
        scheduler = BlockingScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(1), WATCHDOG_JOB: ThreadPoolExecutor(1)},
        )
        scheduler.add_job(
            self.cycle_job,
            "interval",
            seconds=interval,
            jitter=jitter or None,
            id=CYCLE_JOB,
            name="reconcile",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, math.ceil(interval)),
            next_run_time=datetime.now(UTC),
        )
        scheduler.add_job(
            self.watchdog_job,
            "interval",
            seconds=watchdog_every,
            id=WATCHDOG_JOB,
            name="watchdog",
            executor=WATCHDOG_JOB,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._started_with = {"interval": interval, "jitter": jitter, "watchdog_every": watchdog_every}
        return scheduler

    def run(self, scheduler: BlockingScheduler, signals: StopOnSignals) -> None:
        """Block until a stop: a watcher thread then shuts the scheduler down, waiting for the job in
        flight (SIGTERM/SIGINT only set ``stop``; nothing else is safe inside a signal handler)."""

        def shut_down() -> None:
            self.stop.wait()
            event("daemon.stopping", signal=signals.name)
            self.notifier.stopping()
            self.notifier.status("stopping: finishing the action in flight")
            try:
                # No new job may start while we wait for the one in flight: pause, and drop the jobs in
                # case the main loop is already past its pause check.
                scheduler.pause()
                scheduler.remove_all_jobs()
                scheduler.shutdown(wait=True)
            except SchedulerNotRunningError:
                pass

        watcher = threading.Thread(target=shut_down, name="reconciler-stop", daemon=True)

        def on_event(ev: Any) -> None:
            if ev.code == EVENT_SCHEDULER_STARTED:
                watcher.start()
                self.notifier.ready()
                event("daemon.started", **self._started_with)
            else:
                _scheduler_event(ev)

        scheduler.add_listener(
            on_event, EVENT_SCHEDULER_STARTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES
        )
        scheduler.start()  # blocks in this thread until the watcher shuts the scheduler down
        if watcher.is_alive():
            watcher.join()


def _scheduler_event(ev: Any) -> None:
    """APScheduler's news about a job: a missed tick, an error, an overrun."""
    if ev.code == EVENT_JOB_MISSED:
        event("scheduler.job_missed", "WARNING", job=ev.job_id, scheduled=str(ev.scheduled_run_time))
    elif ev.code == EVENT_JOB_ERROR:
        event("scheduler.job_error", "ERROR", job=ev.job_id, error=repr(ev.exception))
    elif ev.code == EVENT_JOB_MAX_INSTANCES:
        # For the cycle this is an overrun (the tick is skipped, as intended); for the watchdog it means
        # its thread is stuck, which deserves attention.
        level = "INFO" if ev.job_id == CYCLE_JOB else "WARNING"
        event("scheduler.job_skipped", level, job=ev.job_id, reason="previous run still going")


def _failed(started: float, code: int, message: str) -> CycleReport:
    return CycleReport(
        mode="daemon",
        outcome="failed",
        exit_code=code,
        started_at=started,
        ended_at=time.time(),
        message=message,
    )
