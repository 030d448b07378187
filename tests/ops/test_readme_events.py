"""The README's event table lists every event name the code logs (`journalctl -g` needs the names)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT


def _logged_events() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "reconciler").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            called = node.func if isinstance(node, ast.Call) else None
            if (
                getattr(called, "id", None) == "event"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(str(node.args[0].value))
    return names


def test_every_event_name_is_in_the_readme() -> None:
    """Each `event("name", ...)` in reconciler/ appears in the README as `name`."""
    readme = (ROOT / "README.md").read_text()
    events = _logged_events()
    assert len(events) > 20
    missing = sorted(name for name in events if f"`{name}`" not in readme)
    assert missing == [], f"add these events to the README's Logs table: {missing}"
