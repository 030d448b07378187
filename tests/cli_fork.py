"""Run ``reconciler ARGS`` in a real child process forked from an interpreter that already imported it.

``python -m reconciler`` spends about 0.6 s of its 0.8 s of CPU importing (pydantic, httpx, loguru, ...),
and the end-to-end tests start hundreds of them. Here a multiprocessing *forkserver* (one per pytest
worker, started on first use) imports the whole package once; every run is a fresh ``fork()`` of it that
takes the operator's environment (the given one only) and working directory, reads /dev/null, writes
stdout and stderr to files, calls ``reconciler.cli.main(args)`` and exits with its code, or prints the
traceback and exits 1, as ``python -m reconciler`` does. Each run is still its own OS process with its
own pid, environment, signal handlers, lock, store connections and sockets, and starts from a package
that never ran a command, so a SIGKILL kills it mid-request exactly as it kills ``python -m reconciler``.

What it does not cover, so those tests start ``python -m reconciler`` themselves (``start_cli`` in
``tests/e2e/helpers.py``, or their own ``subprocess``): the console script and ``python -m`` entry
points, packaging and installs, imports in a clean interpreter, another user or namespace (the
bad-input table's wrapped rows), and signals delivered to a process that is still starting.

Run without xdist, each child also re-imports pytest's script as multiprocessing's ``__mp_main__``
(about 0.1 s); under ``make test``'s workers there is no script to re-import.
"""

from __future__ import annotations

import multiprocessing
import os
import pkgutil
import subprocess
import sys
import tempfile
import threading
import traceback
from multiprocessing.context import ForkServerContext
from pathlib import Path

import reconciler

__all__ = ["ForkedCli", "fork_cli"]

_MAIN = "reconciler.__main__"  # importing it runs the command
# Every module of the package (commands import some lazily) and what the clients load on first use.
_PRELOAD = [
    *(m.name for m in pkgutil.walk_packages(reconciler.__path__, "reconciler.") if m.name != _MAIN),
    "apprise",
    "certifi",
    "h11",
    "httpcore",
    "anyio",
]
_CONTEXT: ForkServerContext | None = None
_CONTEXT_LOCK = threading.Lock()


def _context() -> ForkServerContext:
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            context = multiprocessing.get_context("forkserver")
            assert isinstance(context, ForkServerContext)
            context.set_forkserver_preload([*_PRELOAD, __name__])
            _CONTEXT = context
        return _CONTEXT


def _child(args: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked child: become the operator's process, run the command, exit with its code."""
    # The inherited sys.stdout and sys.stderr (loguru's sink holds the latter) now write to the files.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    for path, fd in ((out, 1), (err, 2)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from reconciler.cli import main

    try:
        code = main(args)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        code = 1
    # multiprocessing's bootstrap turns this into the exit code after joining threads and flushing
    # stdout and stderr, as the interpreter does at exit.
    sys.exit(code)


class ForkedCli:
    """The small part of :class:`subprocess.Popen` the tests use: ``pid``, ``communicate``, ``returncode``."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self._dir = tempfile.TemporaryDirectory(prefix="reconciler-cli-")
        self._out = Path(self._dir.name) / "stdout"
        self._err = Path(self._dir.name) / "stderr"
        self._process = _context().Process(
            target=_child, args=(list(args), dict(env), str(cwd), str(self._out), str(self._err))
        )
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["reconciler", *self.args], timeout or 0)
        self.returncode = self._process.exitcode
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        out = self._out.read_text(encoding="utf-8", errors="replace")
        err = self._err.read_text(encoding="utf-8", errors="replace")
        self._process.close()
        self._dir.cleanup()
        return out, err

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()


def fork_cli(args: list[str], env: dict[str, str], cwd: Path) -> ForkedCli:
    """Start ``reconciler ARGS`` (``env`` is the child's whole environment) without waiting."""
    return ForkedCli(args, env, cwd)
