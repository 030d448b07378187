"""Environment files as systemd reads them, and the mistakes ``check`` rejects in settings values.

systemd's ``EnvironmentFile=`` is not a shell and not python-dotenv: a ``#`` starts a comment only at the
start of a line, so ``URL=https://x # note`` sets ``URL`` to ``https://x # note``. :func:`parse_env`
follows systemd's own parser (``src/basic/env-file.c``): leading whitespace and blank lines skipped;
``#``/``;`` lines are comments (since systemd 254 a trailing backslash does not continue one);
whitespace around ``=`` and at the end of an unquoted value dropped; ``'...'`` literal; ``"..."``
with ``\\"``, ``\\\\``, ``\\$`` and ``\\``` escapes; a backslash before a newline continues
the value; invalid names are ignored. ``--env-file`` and the unit-emulation tests use it, so a value
means the same in both places.

:func:`problems` lints the values a setting can come from (the environment, env files, credential
files): an inline `` #`` comment, or a placeholder left from the example (``change-me``, ``1000.XXXX``,
``<uuid>``, ``...``). Each problem is one line naming the variable and where it was set; values are
never shown, since some are secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices

from reconciler.errors import ConfigError

__all__ = ["Assignment", "load_env_file", "parse_env", "problems", "setting_names"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOUBLE_QUOTE_ESCAPES = '"\\`$'
_NEWLINES = "\n\r"
_BLANKS = " \t"

# What the examples ship as "fill me in". Matched case-insensitively against the whole value.
PLACEHOLDERS = (
    re.compile(r"change[-_ ]?me", re.IGNORECASE),
    re.compile(r"XXXX"),
    re.compile(r"<[^<>]*>"),  # <uuid>, <your key>
    re.compile(r"\.\.\.|…"),  # https://hooks.slack.com/services/...
)
_INLINE_COMMENT = re.compile(r"\s#")


@dataclass(frozen=True)
class Assignment:
    name: str
    value: str
    line: int  # where the assignment starts, 1-based


def parse_env(text: str) -> list[Assignment]:
    """Parse ``text`` exactly as systemd parses an ``EnvironmentFile=`` (later duplicates win on load).

    One function past the usual size because it is one state machine, transcribed state by state from
    systemd's; split up, its transitions would be harder to check against the original.
    """
    out: list[Assignment] = []
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    key_blanks = value_blanks = 0
    line = start = 1

    def emit() -> None:
        name = "".join(key[: len(key) - key_blanks])
        if _NAME.fullmatch(name):
            out.append(Assignment(name, "".join(value[: len(value) - value_blanks]), start))

    for char in text:
        if state == "pre_key":
            if char in "#;":
                state = "comment"
            elif char not in _BLANKS + _NEWLINES:
                state, key, value, key_blanks, value_blanks, start = "key", [char], [], 0, 0, line
        elif state == "key":
            if char in _NEWLINES:
                state = "pre_key"  # a line without "=": ignored, as systemd does
            elif char == "=":
                state = "pre_value"
            else:
                key.append(char)
                key_blanks = key_blanks + 1 if char in _BLANKS else 0
        elif state in ("pre_value", "value"):
            if char in _NEWLINES:
                emit()
                state = "pre_key"
            elif char == "\\":
                state, value_blanks = "escape", 0
            elif state == "pre_value" and char == "'":
                state = "single"
            elif state == "pre_value" and char == '"':
                state = "double"
            elif state == "pre_value" and char in _BLANKS:
                pass
            else:
                value.append(char)
                value_blanks = value_blanks + 1 if char in _BLANKS else 0
                state = "value"
        elif state == "escape":
            state = "value"
            if char not in _NEWLINES:  # backslash-newline continues the value
                value.append(char)
        elif state == "single":
            if char == "'":
                state = "pre_value"
            else:
                value.append(char)
        elif state == "double":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_escape"
            else:
                value.append(char)
        elif state == "double_escape":
            state = "double"
            if char in _DOUBLE_QUOTE_ESCAPES:
                value.append(char)
            elif char not in _NEWLINES:
                value += ["\\", char]
        elif state == "comment":
            if char == "\\":
                state = "comment_escape"
            elif char in _NEWLINES:
                state = "pre_key"
        elif state == "comment_escape":
            state = "pre_key" if char in _NEWLINES else "comment"
        if char == "\n":
            line += 1
    if state in ("pre_value", "value", "escape"):
        emit()
    return out


def load_env_file(path: Path) -> dict[str, str]:
    """The variables ``path`` sets (the last assignment of a name wins), or one ConfigError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--env-file: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"--env-file: {path}: cannot be read ({reason})") from None
    return {a.name: a.value for a in parse_env(text)}


def setting_names(fields: Mapping[str, object]) -> dict[str, str]:
    """Every variable name a setting answers to (new names and old aliases) -> its new name.

    ``fields`` is ``Settings.model_fields``; passed in so this module does not import the settings.
    """
    names: dict[str, str] = {}
    for field_name, info in fields.items():
        alias = getattr(info, "validation_alias", None)
        choices = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
        primary = choices[0] if choices else field_name.upper()
        for name in [*choices, field_name.upper()]:
            names[name.upper()] = primary
    return names


def _value_problem(value: str) -> str | None:
    if _INLINE_COMMENT.search(value):
        return (
            'the value has an inline comment (" #"): systemd keeps everything after "=" as the value; '
            "put the comment on its own line"
        )
    for pattern in PLACEHOLDERS:
        found = pattern.search(value)
        if found:
            return f'still holds the placeholder "{found.group(0)}" from the example; set the real value'
    return None


def problems(
    names: Mapping[str, str],
    *,
    environ: Mapping[str, str] | None = None,
    files: Iterable[Path] = (),
    credentials: Path | None = None,
) -> list[str]:
    """One line per suspicious value of a setting in ``names`` (see the module docstring).

    Looks at ``environ`` (default: the process environment), each env file in ``files`` that exists
    (parsed by systemd's rules), and the credential files in ``credentials`` named after a setting.
    """
    environ = os.environ if environ is None else environ
    found: list[str] = []
    seen: set[tuple[str, str]] = set()

    def add(name: str, where: str, value: str) -> None:
        problem = _value_problem(value)
        if problem is not None and (name, where) not in seen:
            seen.add((name, where))
            found.append(f"{name}: {problem} ({where})")

    for name in sorted(names):
        if name in environ:
            add(name, "environment", environ[name])
    for path in files:
        try:
            assignments = parse_env(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue  # reading it is the settings' job, which reports it
        for a in assignments:
            if a.name.upper() in names:
                add(a.name, f"{path} line {a.line}", a.value)
    if credentials is not None:
        for name in sorted({n.lower() for n in names.values()}):
            path = credentials / name
            try:
                add(name.upper(), f"credential {path}", path.read_text(encoding="utf-8").strip())
            except (OSError, UnicodeDecodeError):
                continue
    return found
