"""The single-instance lock shared by ``daemon``, ``run-once`` and ``plan``.

An OS advisory lock (``flock``) on a file next to the database (the caller passes the path:
``Settings.lock_path`` is ``<real path of the database>.lock``, so a symlink to the same database takes
the same lock). The kernel drops it when the process exits, however it exits (kill -9 included), so a
stale lock file never blocks anyone: the file may stay on disk, only the lock matters. The file is never
deleted, because unlinking a lock file lets two processes lock two different inodes under one name.
A lock path that cannot be used (a directory, no permission) is a ConfigError line (exit 78).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from reconciler.dbfile import make_private_dirs, reason
from reconciler.errors import ConfigError, LockHeldError

__all__ = ["InstanceLock", "lock_is_held"]


class InstanceLock:
    """An exclusive, non-blocking lock on ``path``; a second holder gets :class:`LockHeldError`.

    Use as a context manager (or :meth:`acquire` / :meth:`release`). A missing parent directory is
    created (0700); the file is created 0600.
    While held, the file contains the holder's pid, for people; nothing reads it back.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this object")
        make_private_dirs(self.path.parent)
        try:
            # No O_TRUNC: the pid of the current holder must survive a failed attempt.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"RECONCILER_DB: the lock file {self.path} cannot be used ({reason(exc)}); it must be a "
                f"file the reconciler's user can create and write, next to the database"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeldError(f"another reconciler is running (lock file {self.path} is held)") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is a courtesy; the lock is what counts
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor releases the flock; the file stays (see the module docstring).
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def lock_is_held(path: Path) -> bool:
    """True when another process holds the lock on ``path`` (for ``status``); never keeps the lock.

    Probes with a *shared* lock, which conflicts only with the exclusive one, so two concurrent probes
    never see each other. A missing (or unreadable) file means nobody holds it, as far as we can tell.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # missing, or not ours to read: nobody we can see holds it
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
