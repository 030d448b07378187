"""The hand-written sd_notify sender: right datagrams when $NOTIFY_SOCKET is set, silence otherwise."""

from __future__ import annotations

import io
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator

import pytest

from reconciler import logs
from reconciler.sdnotify import Notifier


class Inbox:
    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(2.0)

    def recv(self) -> str:
        return self.sock.recv(4096).decode()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with tempfile.TemporaryDirectory(prefix="rn-") as short:  # AF_UNIX paths must stay short
        box = Inbox(os.path.join(short, "notify"))
        yield box
        box.sock.close()


def test_sends_each_message_as_one_datagram(inbox: Inbox) -> None:
    """ready/status/watchdog/stopping/send arrive as READY=1, STATUS=..., WATCHDOG=1, STOPPING=1, raw."""
    notifier = Notifier(inbox.address)
    assert notifier.enabled
    notifier.ready()
    notifier.status("incremental cycle ok in 1.2s: no changes")
    notifier.watchdog()
    notifier.stopping()
    notifier.send("RELOADING=1\nMONOTONIC_USEC=1")
    assert [inbox.recv() for _ in range(5)] == [
        "READY=1",
        "STATUS=incremental cycle ok in 1.2s: no changes",
        "WATCHDOG=1",
        "STOPPING=1",
        "RELOADING=1\nMONOTONIC_USEC=1",
    ]


def test_status_is_kept_on_one_line(inbox: Inbox) -> None:
    """A newline in a status would start a new protocol assignment; it is folded into a space."""
    Notifier(inbox.address).status("failed:\nWATCHDOG=1")
    assert inbox.recv() == "STATUS=failed: WATCHDOG=1"


def test_abstract_namespace_address() -> None:
    """An address starting with @ is sent to the abstract namespace."""
    box = Inbox(f"@reconciler-notify-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        Notifier.from_env({"NOTIFY_SOCKET": box.address}).ready()
        assert box.recv() == "READY=1"
    finally:
        box.sock.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    """No $NOTIFY_SOCKET (terminal, tests, the timer's oneshot): nothing is sent and nothing raises."""
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    notifier.ready()
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    assert Notifier("").enabled is False


def test_unreachable_socket_is_logged_not_raised() -> None:
    """A socket nobody listens on makes send log notify.failed (once as a warning) and return normally."""
    stream = io.StringIO()
    logs.configure("json", stream=stream, level="DEBUG")
    try:
        notifier = Notifier("/nonexistent/dir/notify")
        notifier.ready()
        notifier.watchdog()
    finally:
        logs.configure("text")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    failed = [line for line in lines if line["event"] == "notify.failed"]
    assert [line["level"] for line in failed] == ["WARNING", "DEBUG"]
    assert failed[0]["what"] == "READY"


def test_watchdog_interval_from_env() -> None:
    """$WATCHDOG_USEC gives the ping period (a third of it), unless $WATCHDOG_PID names another process."""
    ours = Notifier.from_env(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert ours.watchdog_interval == pytest.approx(40.0)
    assert Notifier.from_env({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier.from_env({"WATCHDOG_USEC": "junk"}).watchdog_interval is None
    assert Notifier.from_env({}).watchdog_interval is None
