"""What the commands that run a cycle do (``run-once``, ``reconcile``, ``apply``, ``plan``, ``daemon``), once
:mod:`reconciler.cli` has parsed their arguments; the others are in :mod:`reconciler.admin`.

Each ``cmd_*`` takes the parsed arguments and returns the exit code; a
:class:`~reconciler.errors.UserError` it raises is printed by the CLI as one line per problem. The helpers
here load the settings a command needs, open the store (creating it only for the commands that run a
cycle), and wrap each applied cycle in health pings, alerts and metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from reconciler.errors import EX_FAIL, ConfigError, CredentialsError, UserError
from reconciler.interrupts import StopOnSignals
from reconciler.lock import InstanceLock
from reconciler.logs import LEVELS, configure, event
from reconciler.mapping import load_mapping
from reconciler.model import CycleReport
from reconciler.render import plan_json, plan_text
from reconciler.settings import Settings, load_settings
from reconciler.store import Store

__all__ = [
    "cmd_apply",
    "cmd_daemon",
    "cmd_plan",
    "cmd_reconcile",
    "cmd_run_once",
    "command_settings",
    "env_problems",
    "open_store",
    "require_db",
]


def command_settings(command: str, args: argparse.Namespace) -> Settings:
    settings = load_settings(command)
    args.settings = settings  # for the exit-code health ping, should the command fail later
    urls = (settings.reconciler_healthcheck_url, settings.reconciler_notify_url)
    configure(
        settings.reconciler_log_format,
        level=_level(args, settings.reconciler_log_level),
        secrets=[*settings.secret_values(), *urls],
    )
    return settings


def _level(args: argparse.Namespace, configured: str) -> str:
    """``-v`` and ``-q`` beat ``RECONCILER_LOG_LEVEL``: -v DEBUG, -q WARNING, -qq ERROR."""
    verbose, quiet = getattr(args, "verbose", 0) or 0, getattr(args, "quiet", 0) or 0
    if verbose:
        return "DEBUG"
    if quiet:
        return LEVELS[min(len(LEVELS) - 1, LEVELS.index("INFO") + quiet)]
    return configured


def require_db(path: Path) -> None:
    if not path.exists():
        raise ConfigError(
            f"RECONCILER_DB: no database at {path.absolute()}: nothing has run yet with this database, "
            "or the path is wrong (set RECONCILER_DB or pass --db)"
        )


def open_store(settings: Settings, *, create: bool) -> Store:
    """The store; a missing database is an error naming its path unless ``create`` (cycle commands)."""
    path = settings.db_path
    if not create:
        require_db(path)
    elif not path.exists():
        event("store.created", path=str(path.absolute()))
    return Store.open(path)


def env_problems(args: argparse.Namespace) -> list[str]:
    """Inline comments and placeholders in the settings' values (see :mod:`reconciler.envcheck`)."""
    from reconciler import envcheck

    names = envcheck.setting_names(Settings.model_fields)
    loaded: set[str] = getattr(args, "env_file_names", set())
    environ = {k: v for k, v in os.environ.items() if k not in loaded}
    files = [Path(".env"), *([Path(args.env_file)] if getattr(args, "env_file", None) else [])]
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    return envcheck.problems(
        names, environ=environ, files=files, credentials=Path(credentials) if credentials else None
    )


class _Monitoring:
    """Health pings, alerts and metrics around each applied cycle (each optional; none can fail one)."""

    def __init__(self, ctx: Any, client: httpx.Client) -> None:
        from reconciler.monitoring import Alerter, HealthPinger

        self.ctx = ctx
        settings: Settings = ctx.settings
        self.pinger = HealthPinger(client, settings.reconciler_healthcheck_url)
        self.alerter = Alerter(client, settings.reconciler_notify_url, ctx.store, clock=ctx.clock)

    def start(self) -> None:
        self.pinger.start()

    def after(self, report: CycleReport) -> None:
        from reconciler.metrics import write_metrics

        store: Store = self.ctx.store
        parked = [(i.key, i.last_error or "") for i in store.parked()]
        self.pinger.finished(report, parked)
        self.alerter.parked(parked)
        self.alerter.cycle_result(report)
        metrics = self.ctx.settings.reconciler_metrics_file
        if metrics is not None:
            totals = store.cycle_totals()
            # A cycle still "running" in the store belongs to a process that died: count it as what it is.
            totals["interrupted"] = totals.get("interrupted", 0) + totals.pop("running", 0)
            write_metrics(
                metrics,
                report,
                parked=len(parked),
                last_success_at=store.last_success_at(),
                totals=totals,
            )


# ---- commands -----------------------------------------------------------------------------------------


@contextmanager
def _session(
    command: str, args: argparse.Namespace, *, stop: Any = None, locked: bool = True
) -> Iterator[Any]:
    """The lock (unless ``locked`` is False), the store and a cycle context; released in reverse order."""
    from reconciler.context import build_context

    settings = command_settings(command, args)
    mapping = load_mapping(settings.reconciler_mapping)  # a bad mapping stops us before anything exists
    for problem in env_problems(args):
        event("settings.suspicious", "WARNING", problem=problem)
    with InstanceLock(settings.lock_path) if locked else contextlib.nullcontext():
        store = open_store(settings, create=True)
        try:
            if locked and (abandoned := store.close_abandoned_cycles()):
                event("cycle.abandoned", "WARNING", cycles=abandoned, recorded_as="interrupted")
            ctx = build_context(settings, mapping, store, stop=stop)
            try:
                yield ctx
            finally:
                ctx.close()
        finally:
            store.close()


def cmd_run_once(args: argparse.Namespace) -> int:
    from reconciler.cycle import CycleOptions

    options = CycleOptions(full=True if args.full else None, force=args.force, expect=args.expect)
    return _applied_cycle("run-once", args, options)


def cmd_reconcile(args: argparse.Namespace) -> int:
    """``reconcile --deep``: a full cycle that also reads SI's current state of every active pair."""
    from reconciler.cycle import CycleOptions

    if not args.deep:
        raise ConfigError("reconcile: pass --deep (it reads SI's current state of every active pair)")
    return _applied_cycle("reconcile", args, CycleOptions(deep=True, force=args.force, expect=args.expect))


def cmd_apply(args: argparse.Namespace) -> int:
    """``apply FILE``: apply exactly a plan saved with ``plan --out`` (actions gone stale are skipped)."""
    from reconciler.cycle import CycleOptions

    approved, mode = _saved_plan(Path(args.file))
    options = CycleOptions(full=mode != "incremental", deep=mode == "deep", approved=approved)
    return _applied_cycle("apply", args, options)


def _saved_plan(path: Path) -> tuple[frozenset[tuple[str, str]], str]:
    """The (key, input hash) of every action of a plan saved with ``plan --out``, and its read mode."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        approved = frozenset((str(a["key"]), str(a.get("input_hash", ""))) for a in document["actions"])
        mode = str(document.get("mode", "full"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"apply: {path}: not a plan saved by `reconciler plan --out` ({exc})") from None
    return approved, mode


def _applied_cycle(command: str, args: argparse.Namespace, options: Any) -> int:
    """One applied cycle with signals, health pings, alerts and metrics around it."""
    from reconciler.cycle import run_cycle
    from reconciler.progress import Progress

    signals: StopOnSignals = args.signals
    with _session(command, args, stop=signals.stop) as ctx, httpx.Client(timeout=10.0) as http:
        if signals.stop.is_set():
            print(f"reconciler: {signals.name} before the cycle started; nothing was done", file=sys.stderr)
            return signals.exit_code
        monitoring = _Monitoring(ctx, http)
        monitoring.start()
        try:
            every = ctx.settings.reconciler_progress_every
            result = run_cycle(
                ctx, options, progress=lambda total: Progress.for_stream(total, "applying", every=every)
            )
        except CredentialsError as exc:
            monitoring.after(_failed(exc))
            args.pinged = True
            raise
        monitoring.after(result.report)
    report = result.report
    print(report.summary())
    if report.outcome == "interrupted":
        print(f"reconciler: {signals.name or 'stop'}: {report.message}", file=sys.stderr)
        return signals.exit_code
    return report.exit_code


def _failed(exc: UserError) -> CycleReport:
    """The report of a run-once whose credentials were rejected (the cycle raised instead of returning)."""
    now = time.time()
    return CycleReport(
        mode="run-once",
        outcome="failed",
        exit_code=exc.exit_code,
        started_at=now,
        ended_at=now,
        message="; ".join(exc.problems),
    )


def cmd_plan(args: argparse.Namespace) -> int:
    from reconciler.cycle import CycleOptions, run_cycle

    # No lock: a dry run writes nothing but the shared token cache, so it may run beside the daemon.
    options = CycleOptions(full=True if args.full else None, dry_run=True, deep=args.deep)
    with _session("plan", args, locked=False) as ctx:
        result = run_cycle(ctx, options)
    report, the_plan = result.report, result.plan
    if the_plan is None:
        print(f"reconciler: {report.message}", file=sys.stderr)
        return EX_FAIL
    if args.out:
        Path(args.out).write_text(plan_json(the_plan, report) + "\n", encoding="utf-8")
    print(plan_json(the_plan, report) if args.json else plan_text(the_plan, report))
    if args.out:
        print(f"Saved to {args.out}; apply exactly this plan with: reconciler apply {args.out}")
    return report.exit_code


def cmd_daemon(args: argparse.Namespace) -> int:
    from reconciler.cycle import run_cycle
    from reconciler.scheduler import run_daemon
    from reconciler.sdnotify import Notifier

    signals: StopOnSignals = args.signals
    with _session("daemon", args, stop=signals.stop) as ctx, httpx.Client(timeout=10.0) as http:
        monitoring = _Monitoring(ctx, http)

        def cycle() -> CycleReport:
            monitoring.start()
            return run_cycle(ctx).report

        return run_daemon(
            cycle,
            interval=ctx.settings.reconciler_interval,
            stop=signals.stop,
            notifier=Notifier.from_env(),
            on_report=monitoring.after,
            signals=signals,
        )
