"""The ``reconciler`` command: parse arguments, load settings, build objects, call the service.

Any :class:`~reconciler.errors.UserError` becomes one line per problem on stderr and its exit code
(78 for configuration and credentials, 75 for a held lock); nothing here prints a traceback for them.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from reconciler import __version__
from reconciler.clients.http import HttpClient
from reconciler.clients.zoho import exchange_grant_code
from reconciler.errors import EX_CONFIG, EX_FAIL, EX_OK, ApiError, ConfigError, UserError
from reconciler.lock import InstanceLock, lock_is_held
from reconciler.logs import configure, event
from reconciler.mapping import load_mapping
from reconciler.model import CycleReport
from reconciler.render import history_text, plan_json, plan_text, status_json, status_text
from reconciler.settings import Settings, load_settings
from reconciler.store import Store

__all__ = ["main"]


def _settings(command: str) -> Settings:
    settings = load_settings(command)
    configure(settings.reconciler_log_format, secrets=settings.secret_values())
    return settings


def _open_store(settings: Settings) -> Store:
    return Store.open(settings.db_path)


def _context(settings: Settings, store: Store, stop: threading.Event | None = None) -> Any:
    from reconciler.service import build_context

    mapping = load_mapping(settings.reconciler_mapping)
    return build_context(settings, mapping, store, stop=stop)


def _monitor(ctx: Any, client: httpx.Client) -> Any:
    """Health ping, alerts and metrics after each applied cycle (each optional, none can fail a cycle)."""
    from reconciler.monitoring import Alerter, HealthPinger, write_metrics

    settings: Settings = ctx.settings
    pinger = HealthPinger(client, settings.reconciler_healthcheck_url)
    alerter = Alerter(client, settings.reconciler_notify_url, ctx.store, clock=ctx.clock)

    def after(report: CycleReport, parked: Sequence[tuple[str, str]] = ()) -> None:
        if settings.reconciler_healthcheck_url:
            pinger.ping(report.succeeded)
        alerter.parked(parked)
        alerter.cycle_result(report)
        if settings.reconciler_metrics_file is not None:
            write_metrics(
                settings.reconciler_metrics_file,
                report,
                parked=len(ctx.store.parked()),
                last_success_at=ctx.store.last_success_at(),
                totals=ctx.store.cycle_totals(),
            )

    return after


def _parked_in(report: CycleReport, store: Store) -> list[tuple[str, str]]:
    if report.outcome != "parked":
        return []
    return [(i.key, i.last_error or "") for i in store.parked() if i.updated_at >= report.started_at]


# ---- commands -----------------------------------------------------------------------------------------


@contextmanager
def _session(command: str, stop: threading.Event | None = None) -> Iterator[Any]:
    """The lock, the store and a cycle context for ``command``; released in reverse order."""
    settings = _settings(command)
    with InstanceLock(settings.lock_path):
        store = _open_store(settings)
        try:
            ctx = _context(settings, store, stop=stop)
            try:
                yield ctx
            finally:
                ctx.close()
        finally:
            store.close()


def cmd_run_once(args: argparse.Namespace) -> int:
    from reconciler.service import run_cycle

    with _session("run-once") as ctx, httpx.Client(timeout=10.0) as monitoring:
        report, _ = run_cycle(ctx, full=True if args.full else None, force=args.force)
        _monitor(ctx, monitoring)(report, _parked_in(report, ctx.store))
    print(report.summary())
    return report.exit_code


def cmd_plan(args: argparse.Namespace) -> int:
    from reconciler.service import run_cycle

    with _session("plan") as ctx:
        report, the_plan = run_cycle(ctx, full=True if args.full else None, dry_run=True)
    if the_plan is None:
        print(f"reconciler: {report.message}", file=sys.stderr)
        return EX_FAIL
    print(plan_json(the_plan, report) if args.json else plan_text(the_plan, report))
    return report.exit_code


def cmd_daemon(args: argparse.Namespace) -> int:
    from reconciler.sdnotify import Notifier
    from reconciler.scheduler import run_daemon
    from reconciler.service import run_cycle

    stop = threading.Event()
    with _session("daemon", stop=stop) as ctx, httpx.Client(timeout=10.0) as monitoring:
        after = _monitor(ctx, monitoring)

        def cycle() -> CycleReport:
            report, _ = run_cycle(ctx)
            return report

        def on_report(report: CycleReport) -> None:
            after(report, _parked_in(report, ctx.store))

        settings = ctx.settings
        event("daemon.started", interval=settings.reconciler_interval, db=str(settings.db_path))
        code = run_daemon(
            cycle,
            interval=settings.reconciler_interval,
            stop=stop,
            notifier=Notifier.from_env(),
            on_report=on_report,
        )
    event("daemon.stopped")
    return code


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.service import collect_status

    settings = _settings("status")
    if not settings.db_path.exists():
        print(f"No database yet at {settings.db_path}: nothing has run.")
        return EX_OK
    store = _open_store(settings)
    try:
        status = collect_status(
            store,
            db=str(settings.db_path),
            lock_held=lock_is_held(settings.lock_path),
            interval=settings.reconciler_interval,
        )
    finally:
        store.close()
    print(status_json(status) if args.json else status_text(status))
    return EX_OK


def cmd_retry(args: argparse.Namespace) -> int:
    settings = _settings("retry")
    if not args.all and not args.key:
        raise ConfigError("retry: name a parked item's KEY (see `reconciler status`) or pass --all")
    store = _open_store(settings)
    try:
        count = store.retry(None if args.all else args.key)
    finally:
        store.close()
    if count == 0:
        print("Nothing re-queued: no parked item matches." if args.key else "No parked items.")
    else:
        print(f"Re-queued {count} item(s); the next cycle tries them again.")
    return EX_OK


def cmd_history(args: argparse.Namespace) -> int:
    settings = _settings("history")
    if not settings.db_path.exists():
        print("No database yet: nothing has been applied.")
        return EX_OK
    store = _open_store(settings)
    try:
        entries = store.history(args.deal_id, limit=args.limit)
    finally:
        store.close()
    print(history_text(entries))
    return EX_OK


def cmd_auth(args: argparse.Namespace) -> int:
    settings = _settings("auth")
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
    from reconciler.check import run_check

    settings = _settings("check")
    mapping = load_mapping(settings.reconciler_mapping)
    print(f"Settings OK; mapping {settings.reconciler_mapping} OK ({len(mapping.fields)} synced fields).")
    if args.offline:
        return EX_OK
    store = _open_store(settings)
    try:
        problems, notes = run_check(settings, mapping, store)
    finally:
        store.close()
    for line in notes:
        print(line)
    for line in problems:
        print(f"reconciler: {line}", file=sys.stderr)
    return EX_CONFIG if problems else EX_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from reconciler.demo import run_demo

    configure("text", level="WARNING")
    return run_demo(keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconciler", description="Keeps Zoho CRM deals and D-Tools SI projects in agreement."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run-once", help="one cycle, applied")
    p.add_argument("--full", action="store_true", help="re-read every flagged and linked deal")
    p.add_argument("--force", action="store_true", help="apply even when the mass-change guard refuses")
    p.set_defaults(func=cmd_run_once)

    p = sub.add_parser("plan", help="one cycle, printed; writes nothing")
    p.add_argument("--full", action="store_true", help="re-read every flagged and linked deal")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("daemon", help="scheduled cycles until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_daemon)

    p = sub.add_parser("status", help="last cycles, parked items, conflicts, cursors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("retry", help="re-queue parked items")
    p.add_argument("key", nargs="?", help="a parked item's key, as `status` shows it")
    p.add_argument("--all", action="store_true", help="every parked item")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("history", help="the audit trail of applied changes")
    p.add_argument("deal_id", nargs="?", help="only this deal")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("auth", help="exchange a Zoho self-client grant code for a refresh token")
    p.add_argument("--code", required=True)
    p.set_defaults(func=cmd_auth)

    p = sub.add_parser("check", help="validate settings and mapping; check credentials and fields online")
    p.add_argument("--offline", action="store_true", help="skip the network checks")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="the whole flow against built-in simulators (no credentials)")
    p.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        for problem in exc.problems:
            print(f"reconciler: {problem}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
