"""What each ``reconciler`` command does, once :mod:`reconciler.cli` has parsed its arguments.

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

from reconciler.clients.http import HttpClient
from reconciler.clients.zoho import exchange_grant_code
from reconciler.errors import EX_FAIL, EX_OK, ApiError, ConfigError, CredentialsError, UserError
from reconciler.interrupts import StopOnSignals
from reconciler.lock import InstanceLock, lock_is_held
from reconciler.logs import LEVELS, configure, event
from reconciler.mapping import load_mapping
from reconciler.model import CycleReport
from reconciler.render import history_text, plan_json, plan_text, status_json, status_text
from reconciler.settings import Settings, load_settings
from reconciler.store import Store

__all__ = [
    "cmd_apply",
    "cmd_auth",
    "cmd_backup",
    "cmd_check",
    "cmd_daemon",
    "cmd_demo",
    "cmd_history",
    "cmd_init_config",
    "cmd_plan",
    "cmd_reconcile",
    "cmd_retry",
    "cmd_run_once",
    "cmd_status",
]


def _settings(command: str, args: argparse.Namespace) -> Settings:
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


def _require_db(path: Path) -> None:
    if not path.exists():
        raise ConfigError(
            f"RECONCILER_DB: no database at {path.absolute()}: nothing has run yet with this database, "
            "or the path is wrong (set RECONCILER_DB or pass --db)"
        )


def _open_store(settings: Settings, *, create: bool) -> Store:
    """The store; a missing database is an error naming its path unless ``create`` (cycle commands)."""
    path = settings.db_path
    if not create:
        _require_db(path)
    elif not path.exists():
        event("store.created", path=str(path.absolute()))
    return Store.open(path)


def _env_problems(args: argparse.Namespace) -> list[str]:
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

    settings = _settings(command, args)
    mapping = load_mapping(settings.reconciler_mapping)  # a bad mapping stops us before anything exists
    for problem in _env_problems(args):
        event("settings.suspicious", "WARNING", problem=problem)
    with InstanceLock(settings.lock_path) if locked else contextlib.nullcontext():
        store = _open_store(settings, create=True)
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


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.status import collect_status

    settings = _settings("status", args)
    store = _open_store(settings, create=False)
    try:
        held = lock_is_held(settings.lock_path)
        status = collect_status(
            store, db=str(settings.db_path), lock_held=held, interval=settings.reconciler_interval
        )
    finally:
        store.close()
    if not held:
        _show_abandoned(status["cycles"])
    print(status_json(status) if args.json else status_text(status))
    return EX_OK


def _show_abandoned(cycles: list[dict[str, Any]]) -> None:
    """With the lock free, a cycle still ``running`` belongs to a process that died: say so."""
    for cycle in cycles:
        if cycle["outcome"] == "running":
            cycle["outcome"] = "interrupted"
            cycle["message"] = cycle["message"] or "the process ended before the cycle finished"


def cmd_retry(args: argparse.Namespace) -> int:
    settings = _settings("retry", args)
    if not args.all and not args.key:
        raise ConfigError("retry: name a parked item's KEY (see `reconciler status`) or pass --all")
    store = _open_store(settings, create=False)
    try:
        count = store.retry(None if args.all else args.key)
    finally:
        store.close()
    if count:
        print(f"Re-queued {count} item(s); the next cycle tries them again.")
    elif args.all:
        print("No parked items.")
    else:
        print(
            f"reconciler: retry: no parked item has the key {args.key!r} (see `reconciler status`)",
            file=sys.stderr,
        )
        return EX_FAIL
    return EX_OK


def cmd_history(args: argparse.Namespace) -> int:
    settings = _settings("history", args)
    store = _open_store(settings, create=False)
    try:
        entries = store.history(args.deal_id, limit=args.limit)
    finally:
        store.close()
    print(history_text(entries))
    return EX_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from reconciler.backup import backup

    settings = _settings("backup", args)
    _require_db(settings.db_path)
    result = backup(settings.db_path, Path(args.file))
    version = "?" if result.schema_version is None else result.schema_version
    print(f"Backed up {settings.db_path} to {result.path} ({result.size} bytes, schema version {version}).")
    return EX_OK


def cmd_init_config(args: argparse.Namespace) -> int:
    from reconciler import defaults

    directory = Path(args.dir)
    targets = {directory / written: shipped for shipped, written in defaults.FILES.items()}
    existing = [str(path) for path in targets if path.exists()]
    if existing and not args.force:
        print(
            f"reconciler: init-config: would overwrite {', '.join(existing)}; nothing written "
            "(pass --force to replace them)",
            file=sys.stderr,
        )
        return EX_FAIL
    directory.mkdir(parents=True, exist_ok=True)
    for path, shipped in targets.items():
        path.write_text(defaults.text(shipped), encoding="utf-8")
        print(f"wrote {path}")
    print(
        f"Next: edit {directory / 'reconciler.env'} and {directory / 'mapping.toml'}, then "
        "`reconciler check` (see the README)."
    )
    return EX_OK


def cmd_auth(args: argparse.Namespace) -> int:
    settings = _settings("auth", args)
    secret = settings.zoho_client_secret.get_secret_value() if settings.zoho_client_secret else ""
    try:
        with httpx.Client(timeout=30.0) as client:
            token = exchange_grant_code(
                HttpClient(client), settings.accounts_url, settings.zoho_client_id or "", secret, args.code
            )
    except (UserError, ApiError) as exc:  # the contract: `auth` exits 1 when the exchange fails
        problems = exc.problems if isinstance(exc, UserError) else (str(exc),)
        for problem in problems:
            print(f"reconciler: {problem}", file=sys.stderr)
        return EX_FAIL
    print(token)
    print(
        "\nThis is your Zoho refresh token; it is shown once and never logged. Store it as a secret:\n"
        "  systemd: echo -n TOKEN | sudo systemd-creds encrypt --name=zoho_refresh_token - "
        "/etc/reconciler/credentials/zoho_refresh_token\n"
        "  or a root-only file /etc/reconciler/credentials/zoho_refresh_token (chmod 600),\n"
        "  or ZOHO_REFRESH_TOKEN=... in .env for a manual run.",
        file=sys.stderr,
    )
    return EX_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Settings, mapping and the env files offline; then a probe of every read the daemon makes."""
    from reconciler.check import run_check

    suspicious = _env_problems(args)
    if suspicious:
        raise ConfigError(*suspicious)
    settings = _settings("check", args)
    mapping = load_mapping(settings.reconciler_mapping)
    print(f"Settings OK; mapping {settings.reconciler_mapping} OK ({len(mapping.fields)} synced fields).")
    if mapping.create_kinds:  # checked against SI's Project schema when the mapping loaded
        objects = ", ".join(sorted({key.split(".", 1)[0] for key, _ in mapping.create_kinds}))
        print(f"{len(mapping.create_kinds)} nested [create] keys valid in SI's Project schema ({objects}).")
    if args.offline:
        return EX_OK
    report = run_check(settings, mapping)
    for probe in report.probes:
        print(probe.line())
    for line in report.problems:
        print(f"reconciler: {line}", file=sys.stderr)
    if args.record is not None and report.recording is not None:
        secrets = [*settings.secret_values(), settings.zoho_client_id]
        report.recording.write(args.record, secrets)
        print(f"Recorded {len(report.recording.exchanges)} exchanges to {args.record} (secrets masked).")
    return report.exit_code


def cmd_demo(args: argparse.Namespace) -> int:
    from reconciler.demo import run_demo

    configure("text", level="WARNING")
    return run_demo(keep=args.keep)
