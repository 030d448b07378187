"""Note templates: ``{Field}`` placeholders and nothing else, so what ``check`` accepts always renders.

A template is literal text with ``{Field}`` placeholders (``Field`` an API name, ``[A-Za-z][A-Za-z0-9_]*``)
and ``{{`` / ``}}`` for literal braces. Format specs (``{Price:.2f}``), conversions (``{COName!r}``),
attribute or index access (``{Price.real}``, ``{Price[0]}``), positional fields (``{}``, ``{0}``) and
stray braces are rejected when the mapping is loaded (:func:`template_problems`), because Python's
``str.format`` would raise on them at run time, in the middle of a cycle, for one value or another.

:func:`render` never raises, for any template and any values: a placeholder is replaced by the value's
text (``None`` and missing values by nothing); a value that has no single text form (an object or a
list) is shown empty and named in ``Rendered.blanked``, so the caller can count it in a warning; and
anything a template should not contain is copied literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Rendered", "placeholders", "render", "render_template", "template_problems"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True)
class Rendered:
    """A rendered template and the placeholders whose value could not be shown (rendered empty)."""

    text: str
    blanked: tuple[str, ...] = ()


def _tokens(template: str) -> Iterator[tuple[str, str | None, str]]:
    """(literal text before, placeholder name or None, the raw token) for each brace token, then the tail."""
    position = 0
    for match in _TOKEN.finditer(template):
        yield template[position : match.start()], match.group(1), match.group(0)
        position = match.end()
    yield template[position:], None, ""


def template_problems(template: str) -> list[str]:
    """Why ``template`` is not plain text with ``{Field}`` placeholders; empty when it is."""
    problems: list[str] = []
    for _, inner, raw in _tokens(template):
        if raw in ("", "{{", "}}"):
            continue
        if inner is None:
            problems.append(f"a lone {raw!r}: write {raw * 2} for a literal brace")
        elif not _NAME.fullmatch(inner):
            problems.append(
                f"{raw}: only {{Field}} placeholders are allowed (no format spec, conversion, "
                f"attribute or index); write {{{{ and }}}} for literal braces"
            )
    return problems


def placeholders(template: str) -> list[str]:
    """The field names of the valid ``{Field}`` placeholders, in order."""
    return [inner for _, inner, _ in _tokens(template) if inner is not None and _NAME.fullmatch(inner)]


def _text(value: Any) -> str | None:
    """The text a value renders as, or None when it has no single text form."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return None


def render(template: str, values: AbcMapping[str, Any]) -> Rendered:
    """Fill ``{Field}`` placeholders from ``values`` (names matched case-insensitively). Never raises."""
    folded = {str(key).lower(): value for key, value in values.items()}
    parts: list[str] = []
    blanked: list[str] = []
    for literal, inner, raw in _tokens(template):
        parts.append(literal)
        if raw in ("{{", "}}"):
            parts.append(raw[0])
        elif inner is not None and _NAME.fullmatch(inner):
            text = _text(folded.get(inner.lower()))
            if text is None:
                blanked.append(inner)
                text = ""
            parts.append(text)
        else:
            parts.append(raw)
    return Rendered("".join(parts), tuple(blanked))


def render_template(template: str, values: AbcMapping[str, Any]) -> str:
    """The text of :func:`render` (missing, null or unshowable values render empty)."""
    return render(template, values).text
