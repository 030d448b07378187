"""The ``reconciler`` command: parse arguments, handle what concerns the whole process, call a command.

Process-wide here: the global flags (``--env-file``, ``--db``, ``-v``/``-q``), SIGTERM/SIGINT for
``run-once`` and ``daemon`` (installed first thing, see :mod:`reconciler.interrupts`), a closed stdout
(``status | head -2`` ends quietly), and any :class:`~reconciler.errors.UserError` becoming one line per
problem on stderr and its exit code (78 configuration and credentials, 75 a held lock; a cycle command
tells the health check about those two). What each command does is in :mod:`reconciler.commands` (the
commands that run a cycle) and :mod:`reconciler.admin` (the others).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from reconciler import __version__
from reconciler.admin import (
    cmd_auth,
    cmd_backup,
    cmd_check,
    cmd_demo,
    cmd_history,
    cmd_init_config,
    cmd_retry,
    cmd_status,
)
from reconciler.commands import cmd_apply, cmd_daemon, cmd_plan, cmd_reconcile, cmd_run_once
from reconciler.errors import EX_CONFIG, EX_TEMPFAIL, UserError
from reconciler.interrupts import StopOnSignals
from reconciler.settings import Settings

__all__ = ["main"]

EX_SIGPIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away
_CYCLE_COMMANDS = ("run-once", "daemon", "reconcile", "apply")
_HEALTH_URL = "RECONCILER_HEALTHCHECK_URL"


# ---- arguments ----------------------------------------------------------------------------------------


def _global_options(suppress: bool) -> argparse.ArgumentParser:
    """The flags every command takes, before or after its name (``reconciler --db X status``)."""
    default: Any = argparse.SUPPRESS if suppress else None
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--env-file",
        metavar="PATH",
        default=default,
        help="read settings from PATH as systemd's EnvironmentFile= does (the environment still wins)",
    )
    options.add_argument("--db", metavar="PATH", default=default, help="the database (beats RECONCILER_DB)")
    options.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0, help="log DEBUG"
    )
    options.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=argparse.SUPPRESS if suppress else 0,
        help="log WARNING and above (-qq: ERROR)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    """Every command and its flags. Long on purpose: one declarative block per command, read like the
    README's command table it matches."""
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="Keeps Zoho CRM deals and D-Tools SI projects in agreement.",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [_global_options(suppress=True)]

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=common)

    p = command("run-once", "one cycle, applied")
    p.add_argument("--full", action="store_true", help="re-read every flagged and linked deal")
    p.add_argument("--force", action="store_true", help="apply even when the mass-change guard refuses")
    p.add_argument(
        "--expect", type=int, metavar="N", help="apply a large plan only if it writes at most N records"
    )
    p.set_defaults(func=cmd_run_once)

    p = command("plan", "one cycle, printed; writes nothing")
    p.add_argument("--full", action="store_true", help="re-read every flagged and linked deal")
    p.add_argument(
        "--deep", action="store_true", help="preview `reconcile --deep` (reads SI's current state)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--out", metavar="FILE", help="also save the plan, to apply it with `reconciler apply FILE`"
    )
    p.set_defaults(func=cmd_plan)

    p = command("apply", "apply exactly a plan saved with `plan --out`; stale actions are skipped")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_apply)

    p = command("reconcile", "with --deep: repair drift against SI's current state of every pair")
    p.add_argument("--deep", action="store_true", help="read SI's current state of every active pair")
    p.add_argument("--force", action="store_true", help="apply even when the mass-change guard refuses")
    p.add_argument("--expect", type=int, metavar="N", help="apply only if the plan writes at most N records")
    p.set_defaults(func=cmd_reconcile)

    p = command("daemon", "scheduled cycles until SIGTERM/SIGINT")
    p.set_defaults(func=cmd_daemon)

    p = command("status", "last cycles, parked items, conflicts, cursors")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = command("retry", "re-queue parked items")
    p.add_argument("key", nargs="?", help="a parked item's key, as `status` shows it")
    p.add_argument("--all", action="store_true", help="every parked item")
    p.set_defaults(func=cmd_retry)

    p = command("history", "the audit trail of applied changes")
    p.add_argument("deal_id", nargs="?", help="only this deal")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_history)

    p = command("backup", "a consistent copy of the database (safe while the daemon runs)")
    p.add_argument("file", metavar="FILE", help="where to write the copy (replaced if it exists)")
    p.set_defaults(func=cmd_backup)

    p = command("init-config", "write the default mapping, its example and the env file to DIR")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--force", action="store_true", help="replace files that exist")
    p.set_defaults(func=cmd_init_config)

    p = command("auth", "exchange a Zoho self-client grant code for a refresh token")
    p.add_argument("--code", required=True)
    p.set_defaults(func=cmd_auth)

    p = command("check", "validate settings and mapping; probe every read the daemon makes")
    p.add_argument("--offline", action="store_true", help="skip the network checks")
    p.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="write the probes' requests and answers to FILE as JSON, secrets and tokens masked",
    )
    p.set_defaults(func=cmd_check)

    p = command("demo", "the whole flow against built-in simulators (no credentials)")
    p.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")
    p.set_defaults(func=cmd_demo)
    return parser


def _apply_global_flags(args: argparse.Namespace) -> None:
    """``--env-file`` adds the file's variables to the environment (set ones win); ``--db`` beats all."""
    from reconciler.envcheck import load_env_file

    if args.env_file:
        loaded = load_env_file(Path(args.env_file))
        args.env_file_names = {name for name in loaded if name not in os.environ}
        for name in args.env_file_names:
            os.environ[name] = loaded[name]
    if args.db:
        os.environ["RECONCILER_DB"] = args.db


def _health_url(args: argparse.Namespace) -> str | None:
    """The health-check URL, from the loaded settings or, when they failed to load, read leniently."""
    settings: Settings | None = getattr(args, "settings", None)
    if settings is not None:
        return settings.reconciler_healthcheck_url
    from reconciler.envcheck import parse_env

    url = os.environ.get(_HEALTH_URL)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    candidates = [Path(credentials) / _HEALTH_URL.lower()] if credentials else []
    for path in candidates:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            url = url or path.read_text(encoding="utf-8").strip()
    with contextlib.suppress(OSError, UnicodeDecodeError):
        dotenv = {a.name: a.value for a in parse_env(Path(".env").read_text(encoding="utf-8"))}
        url = url or dotenv.get(_HEALTH_URL)
    return url if url and url.startswith(("http://", "https://")) and " " not in url else None


def _ping_exit(args: argparse.Namespace, exc: UserError) -> None:
    """A cycle command that exits 75 or 78 tells the health check, which would otherwise just wait."""
    if args.command not in _CYCLE_COMMANDS or exc.exit_code not in (EX_TEMPFAIL, EX_CONFIG):
        return
    if getattr(args, "pinged", False):
        return
    from reconciler.logs import redactor
    from reconciler.monitoring import HealthPinger

    url = _health_url(args)
    redactor.add(url)
    with httpx.Client(timeout=10.0) as http:
        HealthPinger(http, url).exited(exc.exit_code, "\n".join(exc.problems))


def _run(args: argparse.Namespace) -> int:
    saved = dict(os.environ)
    try:
        _apply_global_flags(args)
        return int(args.func(args))
    except UserError as exc:
        for problem in exc.problems:
            print(f"reconciler: {problem}", file=sys.stderr)
        _ping_exit(args, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("reconciler: interrupted at once; a rerun resumes", file=sys.stderr)
        return 130
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.signals = None
    if args.command in _CYCLE_COMMANDS:
        # First thing: a SIGTERM while we read settings or open the store must stop us, not kill us.
        args.signals = StopOnSignals(second_aborts=args.command == "run-once").install()
    try:
        code = _run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`status | head -2`): no traceback, and no second error at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EX_SIGPIPE
    finally:
        if args.signals is not None:
            args.signals.restore()
