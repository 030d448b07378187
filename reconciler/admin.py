"""What the commands that run no cycle do: ``status``, ``retry``, ``history``, ``backup``, ``init-config``,
``auth``, ``check`` and ``demo`` (the cycle commands are in :mod:`reconciler.commands`).

Each ``cmd_*`` takes the parsed arguments and returns the exit code; a
:class:`~reconciler.errors.UserError` it raises is printed by the CLI as one line per problem. None of
them creates a database: a missing one is an error naming its path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from reconciler.clients.http import HttpClient
from reconciler.clients.zoho import exchange_grant_code
from reconciler.commands import command_settings, env_problems, open_store, require_db
from reconciler.errors import EX_FAIL, EX_OK, ApiError, ConfigError, UserError
from reconciler.lock import lock_is_held
from reconciler.logs import configure
from reconciler.mapping import load_mapping
from reconciler.render import history_text, status_json, status_text

__all__ = [
    "cmd_auth",
    "cmd_backup",
    "cmd_check",
    "cmd_demo",
    "cmd_history",
    "cmd_init_config",
    "cmd_retry",
    "cmd_status",
]


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.status import collect_status

    settings = command_settings("status", args)
    store = open_store(settings, create=False)
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
    settings = command_settings("retry", args)
    if not args.all and not args.key:
        raise ConfigError("retry: name a parked item's KEY (see `reconciler status`) or pass --all")
    store = open_store(settings, create=False)
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
    settings = command_settings("history", args)
    store = open_store(settings, create=False)
    try:
        entries = store.history(args.deal_id, limit=args.limit)
    finally:
        store.close()
    print(history_text(entries))
    return EX_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from reconciler.backup import backup

    settings = command_settings("backup", args)
    require_db(settings.db_path)
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
    settings = command_settings("auth", args)
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

    suspicious = env_problems(args)
    if suspicious:
        raise ConfigError(*suspicious)
    settings = command_settings("check", args)
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
