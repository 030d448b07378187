"""The single-instance lock: one holder across processes, released however the holder ends."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import EX_CONFIG, EX_TEMPFAIL, ConfigError, LockHeldError
from reconciler.lock import InstanceLock, lock_is_held
from reconciler.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD = 20.0

_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from reconciler.lock import InstanceLock

    with InstanceLock(Path(sys.argv[1])):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process holding the lock until its stdin gets a line."""
    path = tmp_path / "state" / "reconciler.db.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    try:
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=HANG_GUARD)


def test_second_process_gets_lock_held_error_naming_the_file(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    """While another process holds the lock, acquiring raises LockHeldError (exit 75) naming the lock file."""
    _, path = holder
    with pytest.raises(LockHeldError) as caught:
        InstanceLock(path).acquire()
    assert str(path) in str(caught.value)
    assert str(caught.value) == f"another reconciler is running (lock file {path} is held)"
    assert caught.value.exit_code == EX_TEMPFAIL == 75


def test_lock_is_free_again_after_the_holder_releases(holder: tuple[subprocess.Popen[str], Path]) -> None:
    """Leaving the holder's with-block releases the lock for the next process."""
    proc, path = holder
    assert lock_is_held(path)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "released"
    assert not lock_is_held(path)
    with InstanceLock(path) as lock:
        assert lock.held


def test_lock_is_released_when_the_holder_is_killed(holder: tuple[subprocess.Popen[str], Path]) -> None:
    """kill -9 of the holder frees the lock (the kernel drops flocks); the stale file blocks nobody."""
    proc, path = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(HANG_GUARD)
    assert path.exists()
    assert not lock_is_held(path)
    with InstanceLock(path):
        pass


def test_probe_does_not_keep_or_create_the_lock(tmp_path: Path) -> None:
    """lock_is_held on a missing file is False and creates nothing; on a free file it leaves it free."""
    path = tmp_path / "reconciler.db.lock"
    assert not lock_is_held(path)
    assert not path.exists()
    with InstanceLock(path):
        pass
    assert not lock_is_held(path)
    with InstanceLock(path):
        pass


def test_context_manager_creates_parent_dir_writes_pid_and_releases_on_exception(tmp_path: Path) -> None:
    """The parent directory is created, the file names the holder's pid, and an exception still releases."""
    path = tmp_path / "a" / "b" / "reconciler.db.lock"
    with pytest.raises(ValueError), InstanceLock(path) as lock:
        assert lock.held
        assert path.read_text().strip() == str(os.getpid())
        raise ValueError("inside")
    assert not lock.held
    with InstanceLock(path):
        pass


def test_the_same_process_cannot_take_the_lock_twice(tmp_path: Path) -> None:
    """A second InstanceLock in the same process is refused too (flock is per open file)."""
    path = tmp_path / "reconciler.db.lock"
    with InstanceLock(path), pytest.raises(LockHeldError):
        InstanceLock(path).acquire()
    with pytest.raises(RuntimeError), InstanceLock(path) as lock:
        lock.acquire()


# ---- one lock per database, whatever it is called ------------------------------------------------------


def _settings(db: Path) -> Settings:
    return Settings(reconciler_db=db)


def test_a_symlink_to_the_same_database_takes_the_same_lock(tmp_path: Path) -> None:
    """The lock is keyed by the database's real path: a daemon on r.db blocks a run-once given a link."""
    real = tmp_path / "state" / "r.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    assert _settings(link).lock_path == _settings(real).lock_path == real.with_name("r.db.lock")
    with InstanceLock(_settings(real).lock_path), pytest.raises(LockHeldError) as caught:
        InstanceLock(_settings(link).lock_path).acquire()
    assert caught.value.exit_code == EX_TEMPFAIL


def test_a_symlinked_directory_also_resolves_to_one_lock(tmp_path: Path) -> None:
    """/srv/state -> /var/lib/reconciler: both spellings of a not-yet-created database share the lock."""
    (tmp_path / "var").mkdir()
    (tmp_path / "srv").symlink_to(tmp_path / "var")
    assert _settings(tmp_path / "srv" / "r.db").lock_path == tmp_path / "var" / "r.db.lock"


def test_a_lock_path_that_is_a_directory_is_one_exit_78_line(tmp_path: Path) -> None:
    """`<db>.lock` is a directory: a ConfigError naming it (exit 78), not an IsADirectoryError."""
    path = tmp_path / "reconciler.db.lock"
    path.mkdir()
    with pytest.raises(ConfigError) as caught:
        InstanceLock(path).acquire()
    assert caught.value.exit_code == EX_CONFIG
    (problem,) = caught.value.problems
    assert problem.startswith(f"RECONCILER_DB: the lock file {path} cannot be used (Is a directory)")


def test_the_lock_file_is_private_and_so_are_directories_it_creates(tmp_path: Path) -> None:
    """A new lock file is 0600 and each directory created for it 0700."""
    path = tmp_path / "a" / "b" / "reconciler.db.lock"
    with InstanceLock(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
