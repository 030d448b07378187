"""The database file: where it may live, how it is created, and what SQLite's failures tell the operator.

``RECONCILER_DB`` must name a regular file (a symlink to one is followed) or a file that does not exist
yet. A new file is created with mode 0600 from the start (``os.open`` with that mode; the umask can only
narrow it), and directories the reconciler creates on the way are 0700. Nothing that already exists is
ever chmodded: not the file, not its directory (``/dev/null``, the working directory or a directory named
by mistake stay exactly as they were), and not a database its owner made read-only.

:class:`SafeSqliteDatabase` is peewee's SQLite database with SQLite's failures turned into one-line
:class:`~reconciler.errors.StoreError` problems that name the file, the cause and the remedy: a damaged
file (never overwritten; restore a backup), no permission, a read-only file or file system (exit 78), a
lock held by another process past the busy timeout, a full disk or an I/O error (``StoreBusyError``,
exit 1: SQLite rolled the transaction back and the next cycle resumes).
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import peewee as pw

from reconciler.errors import StoreBusyError, StoreError

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "SafeSqliteDatabase",
    "db_path_problem",
    "make_private_dirs",
    "prepare_db_file",
    "reason",
    "restore_hint",
]

BUSY_TIMEOUT_SECONDS = 10.0
SETTING = "RECONCILER_DB"

# SQLite primary result codes (https://www.sqlite.org/rescode.html).
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _AUTH, _NOTADB = (
    3, 5, 6, 8, 10, 11, 13, 14, 23, 26,
)  # fmt: skip


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _user(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def restore_hint(path: Path | str) -> str:
    """How to restore the database from a backup, for the messages about a damaged file."""
    return (
        f"restore a backup: stop the service, then copy the file written by `reconciler backup FILE` over "
        f"{path} (or move {path} aside to start afresh)"
    )


def db_path_problem(path: Path) -> str | None:
    """What is wrong with ``path`` as the database location, or None; looks, never touches."""
    if str(path) == ":memory:":
        return None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None  # a new file; its directories are created (0700) when missing
    except NotADirectoryError:
        return f"{SETTING}: {path}: a part of the path is a file, not a directory"
    except OSError as exc:
        return f"{SETTING}: {path}: cannot be checked: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        example = Path(path) / "reconciler.db"
        return f"{SETTING}: {path} is a directory; name the database file in it, e.g. {example}"
    return f"{SETTING}: {path} is {_kind(mode)}; name a database file, e.g. /var/lib/reconciler/reconciler.db"


def make_private_dirs(directory: Path, setting: str = SETTING) -> None:
    """Create ``directory`` and any missing parent with mode 0700; an existing one is left as it is."""
    missing: list[Path] = []
    current = directory
    try:
        while not current.exists():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
    except OSError as exc:  # a directory on the way that we may not look into
        raise StoreError(f"{setting}: cannot look into {current}: {reason(exc)}") from None
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            if not folder.is_dir():
                raise StoreError(
                    f"{setting}: cannot create the directory {folder}: a file is in the way"
                ) from None
        except OSError as exc:
            raise StoreError(
                f"{setting}: cannot create the directory {folder}: {reason(exc)}; create it "
                f"(install -d -m 0700 -o <service user> {folder}) or point {setting} elsewhere"
            ) from None


def reason(exc: OSError) -> str:
    """A short cause for an OSError, as the messages show it."""
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    return exc.strerror or type(exc).__name__


def prepare_db_file(path: Path) -> Path:
    """Check ``path`` and create it (0600, in 0700 directories) when new; returns the real path to open.

    An existing file is checked for read and write access, never chmodded: a problem is a StoreError line
    naming the owner and mode.
    """
    problem = db_path_problem(path)
    if problem is not None:
        raise StoreError(problem)
    real = Path(os.path.realpath(path))
    if not real.exists():
        make_private_dirs(real.parent)
        try:
            os.close(os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            pass  # another process created it just now; check it like any existing file
        except OSError as exc:
            raise StoreError(
                f"{SETTING}: cannot create {path}: {reason(exc)}; check that the reconciler's user may "
                f"write to {real.parent}, or point {SETTING} elsewhere"
            ) from None
    _check_access(path, real)
    return real


def _check_access(path: Path, real: Path) -> None:
    try:
        os.close(os.open(real, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        try:
            info = os.stat(real)
        except OSError:
            raise StoreError(f"{SETTING}: cannot open {path}: {reason(exc)}") from None
        mode = f"{stat.S_IMODE(info.st_mode):04o}"
        owner = _user(info.st_uid)
        me = _user(os.geteuid())
        if exc.errno == errno.EROFS:
            raise StoreError(
                f"{SETTING}: {path} is on a read-only file system: the reconciler writes to its database; "
                f"point {SETTING} at a writable place (the unit's StateDirectory=, or ReadWritePaths=)"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM) and os.access(real, os.R_OK):
            raise StoreError(
                f"{SETTING}: {path} is read-only for {me} (owner {owner}, mode {mode}): the reconciler "
                f"writes to its database; make it writable for that user (chmod 600) or run as its owner"
            ) from None
        raise StoreError(
            f"{SETTING}: cannot open {path}: {reason(exc)} (owner {owner}, mode {mode}; this process runs "
            f"as {me}): run the reconciler as the file's owner, or fix its owner and mode (chown, chmod 600)"
        ) from None


def translate(exc: BaseException, path: Path | str, busy_seconds: float) -> StoreError | None:
    """The StoreError an SQLite failure means for the operator; None for a programming error."""
    original = exc
    while isinstance(getattr(original, "orig", None), BaseException):  # peewee keeps SQLite's error here
        original = original.orig  # type: ignore[attr-defined]
    code = getattr(original, "sqlite_errorcode", None)
    text = str(original)
    primary = code & 0xFF if isinstance(code, int) else None
    where = f"{SETTING}: {path}"
    if primary in (_CORRUPT, _NOTADB):
        return StoreError(
            f"{where} is damaged or not a reconciler database ({text}); it was left as it is: "
            f"{restore_hint(path)}"
        )
    if primary in (_BUSY, _LOCKED) or "database is locked" in text:
        return StoreBusyError(
            f"{where} is locked by another process for more than {busy_seconds:g} s ({text}); the step in "
            f"progress was rolled back and the next run resumes (see what holds it with `fuser {path}`)"
        )
    if primary == _FULL or (primary == _IOERR and _nearly_full(path)):
        return StoreBusyError(
            f"{where}: the disk is full ({text}); the transaction was rolled back: free space on its file "
            f"system and the next run resumes"
        )
    if primary == _IOERR:
        name = getattr(original, "sqlite_errorname", "SQLITE_IOERR")
        return StoreBusyError(
            f"{where}: disk I/O error ({name}); the transaction was rolled back: check the disk (dmesg) "
            f"and its free space; the next run tries again"
        )
    if primary == _READONLY:
        return StoreError(
            f"{where} cannot be written ({text}): the file, its -wal/-shm files or the file system are "
            f"read-only; make them writable for the reconciler's user or point {SETTING} elsewhere"
        )
    if primary in (_CANTOPEN, _PERM, _AUTH):
        return StoreError(
            f"{where} cannot be opened ({text}): the reconciler's user must be able to read and write the "
            f"file and create its -wal/-shm files in {Path(path).parent}"
        )
    return None


def _nearly_full(path: Path | str) -> bool:
    """Whether the database's file system has (almost) no room left: SQLite then often reports an I/O
    error (growing the -wal or -shm file) rather than SQLITE_FULL."""
    try:
        info = os.statvfs(Path(path).resolve().parent)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < 256 * 1024


class SafeSqliteDatabase(pw.SqliteDatabase):
    """A peewee SQLite database whose failures are one-line StoreErrors naming ``shown``.

    A rollback after SQLite already rolled the transaction back itself (it does on a full disk or an I/O
    error) is skipped instead of failing with ``cannot rollback - no transaction is active`` on top of
    the real cause.
    """

    def __init__(self, database: str, *, shown: Path | str, busy_seconds: float, **kwargs: Any) -> None:
        self.shown = shown
        self.busy_seconds = busy_seconds
        super().__init__(database, timeout=busy_seconds, **kwargs)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except pw.DatabaseError as exc:
            problem = translate(exc, self.shown, self.busy_seconds)
            if problem is None:
                raise
            raise problem from None

    def _sqlite_in_transaction(self) -> bool:
        return not self.is_closed() and bool(self.connection().in_transaction)  # type: ignore[no-untyped-call]

    def connect(self, reuse_if_open: bool = False) -> bool:
        with self._translated():
            return bool(super().connect(reuse_if_open))

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        if sql.startswith("ROLLBACK TO SAVEPOINT") and not self._sqlite_in_transaction():
            return None  # SQLite already undid the whole transaction, this savepoint with it
        with self._translated():
            return super().execute_sql(sql, params)  # type: ignore[no-untyped-call]

    def begin(self, *args: Any, **kwargs: Any) -> None:
        with self._translated():
            super().begin(*args, **kwargs)

    def commit(self) -> None:
        with self._translated():
            super().commit()

    def rollback(self) -> None:
        if not self._sqlite_in_transaction():
            return  # SQLite already rolled back (a full disk, an I/O error): nothing left to undo
        with self._translated():
            super().rollback()
