"""``reconciler backup FILE``: a consistent copy of the live database, safe while the daemon runs.

The store is SQLite in WAL mode: committed data may still sit in ``reconciler.db-wal``, so copying the
``.db`` file alone (``cp``) can give a torn or stale copy. SQLite's online backup API copies a consistent
snapshot through a normal connection, in one step: in WAL mode that step is one read transaction, which
never blocks the daemon's writes and, unlike a page-by-page copy, is never restarted by them (a busy
daemon could restart a large copy forever). The copy is written next to ``FILE`` under a temporary
name, switched to the rollback journal (one self-contained file), checked with ``PRAGMA quick_check``,
made 0600 (it holds the Zoho access token) and renamed over ``FILE``: a failed backup never leaves half
a file where the last good one was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ConfigError, UserError

__all__ = ["BackupResult", "backup"]

_BUSY_MS = 10_000


class BackupError(UserError):
    """The backup could not be written (exit 1)."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    schema_version: int | None


def backup(source: Path, target: Path) -> BackupResult:
    """Copy the database ``source`` to ``target`` with SQLite's online backup API (see the module)."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise ConfigError(
            f"RECONCILER_DB: no database at {source.absolute()}: nothing to back up (set RECONCILER_DB "
            "or pass --db)"
        )
    if target.exists() and target.is_dir():
        target = target / source.name
    if target.exists() and os.path.samefile(source, target):
        raise BackupError(f"backup: {target} is the live database itself; name another file")
    if not target.parent.is_dir():
        raise BackupError(f"backup: directory {target.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o600)
        version = _copy(source, tmp)
        os.replace(tmp, target)
    except (sqlite3.Error, OSError) as exc:
        raise BackupError(f"backup: could not back up {source} to {target}: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return BackupResult(target, target.stat().st_size, version)


def _copy(source: Path, tmp: Path) -> int | None:
    # A normal connection, as the daemon's: a read-only one cannot open a WAL database whose -shm file
    # does not exist yet. The backup API only reads from it.
    src = sqlite3.connect(source, timeout=_BUSY_MS / 1000)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # pages=-1: the whole snapshot in one read transaction
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            problems = [row[0] for row in dst.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"the copy fails quick_check: {'; '.join(problems[:3])}")
            row = dst.execute("SELECT value FROM state WHERE key = 'schema_version'").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    return int(row[0]) if row and str(row[0]).isdigit() else None
