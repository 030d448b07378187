"""Progress of long work: a bar on a terminal, a log line every ~10 s elsewhere, nothing for short work."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import pytest

from reconciler import logs
from reconciler.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def events() -> Iterator[Callable[[], list[dict[str, object]]]]:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logs.configure("text")


def test_log_lines_every_ten_seconds_with_done_total_rate_and_eta(
    events: Callable[[], list[dict[str, object]]],
) -> None:
    """3,000 records at 16 a second (187.5 s): one `progress` line per 10 s, plus one at the end."""
    clock = Clock()
    progress = Progress.for_stream(3000, "applying", io.StringIO(), clock=clock)
    for _ in range(3000):
        clock.now += 0.0625  # exact in binary: the reports fall on whole tens of seconds
        progress.advance()
    progress.close()
    lines = [e for e in events() if e["event"] == "progress"]
    assert len(lines) == 18 + 1
    first = lines[0]
    assert (first["label"], first["done"], first["total"], first["rate"]) == ("applying", 160, 3000, 16.0)
    assert first["eta_seconds"] == 178
    assert lines[-1]["done"] == 3000 and lines[-1]["eta_seconds"] is None
    assert all(e["level"] == "INFO" for e in lines)


def test_short_work_reports_nothing(events: Callable[[], list[dict[str, object]]]) -> None:
    """Work that ends within the first 10 s writes no progress at all."""
    clock = Clock()
    progress = Progress.for_stream(50, "applying", io.StringIO(), clock=clock)
    for _ in range(50):
        clock.now += 0.1
        progress.advance()
    progress.close()
    assert [e for e in events() if e["event"] == "progress"] == []


def test_a_terminal_gets_one_redrawn_bar_line(events: Callable[[], list[dict[str, object]]]) -> None:
    """On a TTY: carriage-return redraws of a bar with the same numbers, a newline at the end, no log."""
    clock, tty = Clock(), Terminal()
    progress = Progress.for_stream(100, "applying", tty, clock=clock)
    for _ in range(100):
        clock.now += 0.5
        progress.advance()
    progress.close()
    out = tty.getvalue()
    frames = out.split("\r")[1:]
    assert len(frames) == 5 + 1
    assert frames[0].startswith("[######.....") and "applying 20/100 (20%) 2.0/s ETA 40s" in frames[0]
    assert "applying 100/100 (100%) 2.0/s done" in frames[-1]
    assert out.endswith("\n")
    assert [e for e in events() if e["event"] == "progress"] == []


def test_the_none_variant_and_line_format() -> None:
    """`Progress.none()` counts but never writes; the line reads as a person would say it."""
    quiet = Progress.none()
    quiet.advance(5)
    quiet.close()
    clock = Clock()
    progress = Progress(3000, "applying", clock=clock)
    clock.now += 60
    progress.advance(1200)
    assert progress.line(clock.now) == "applying 1,200/3,000 (40%) 20.0/s ETA 1m30s"
