"""systemd's EnvironmentFile= syntax, as reconciler.envcheck parses it, and what `check` flags in values."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.envcheck import parse_env, problems

NAMES = {"RECONCILER_HEALTHCHECK_URL": "RECONCILER_HEALTHCHECK_URL", "ZOHO_CLIENT_ID": "ZOHO_CLIENT_ID"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\n", {"A": "1"}),
        ("A=https://x # note\n", {"A": "https://x # note"}),  # no inline comments: the value keeps it
        ("# comment\n; also a comment\n  A = spaced  \n", {"A": "spaced"}),
        ('A="  kept  "\n', {"A": "  kept  "}),
        ("A='$literal \\\\n'\n", {"A": "$literal \\\\n"}),
        ('A="a \\"q\\" \\$x \\\\ \\n"\n', {"A": 'a "q" $x \\ \\n'}),
        ("A=one \\\ntwo\n", {"A": "one two"}),  # backslash-newline continues the value
        ("# a comment \\\nA=1\nB=2\n", {"A": "1", "B": "2"}),  # not a comment's (systemd >= 254)
        ("A=1\nA=2\n", {"A": "2"}),
        ("1BAD=x\nno equals sign\nGOOD=y", {"GOOD": "y"}),
        ("A=\n", {"A": ""}),
        ("A=x\r\nB=y\r\n", {"A": "x", "B": "y"}),
    ],
)
def test_parse_follows_systemds_rules(text: str, expected: dict[str, str]) -> None:
    """Comments only at the start of a line; quotes, escapes and continuations as systemd reads them."""
    assert {a.name: a.value for a in parse_env(text)} == expected


def test_assignments_know_their_line() -> None:
    assert [(a.name, a.line) for a in parse_env("# x\n\nA=1\nB=two \\\n  lines\nC=3\n")] == [
        ("A", 3),
        ("B", 4),
        ("C", 6),
    ]


@pytest.mark.parametrize(
    "value",
    ["change-me", "1000.XXXXXXXXXXXX", "https://hc-ping.com/<uuid>", "https://hooks.slack.com/services/..."],
)
def test_placeholders_are_flagged_without_showing_the_value(value: str) -> None:
    [line] = problems(NAMES, environ={"ZOHO_CLIENT_ID": value})
    assert line.startswith("ZOHO_CLIENT_ID: still holds the placeholder")


def test_real_values_pass(tmp_path: Path) -> None:
    """Real ids, URLs with fragments or query strings, and unrelated variables are not flagged."""
    env = {
        "ZOHO_CLIENT_ID": "1000.ABCD1234EFGH",
        "RECONCILER_HEALTHCHECK_URL": "https://hc-ping.com/6f1c#x?a=1",
    }
    (tmp_path / "e.env").write_text("OTHER=change-me # not ours\nZOHO_CLIENT_ID=1000.REAL\n")
    assert problems(NAMES, environ=env, files=[tmp_path / "e.env", tmp_path / "missing.env"]) == []
