"""The files an installation starts from, shipped inside the package so a plain ``pip install`` has them.

``mapping.toml`` (the default mapping, identical to ``config/mapping.toml``), ``mapping.example.toml``
(every option explained) and ``reconciler.env.example`` (the unit's settings file, in the syntax systemd's
``EnvironmentFile=`` reads). ``reconciler init-config DIR`` writes them; ``demo`` runs on the mapping.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file, files
from pathlib import Path

__all__ = ["FILES", "mapping_file", "text"]

#: Shipped file -> the name ``init-config`` writes it under (the env file is the one to edit).
FILES = {
    "mapping.toml": "mapping.toml",
    "mapping.example.toml": "mapping.example.toml",
    "reconciler.env.example": "reconciler.env",
}


def text(name: str) -> str:
    """The shipped file ``name`` (one of :data:`FILES`)."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


@contextmanager
def mapping_file() -> Iterator[Path]:
    """A filesystem path to the shipped default mapping, for as long as the context lasts."""
    with as_file(files(__name__).joinpath("mapping.toml")) as path:
        yield path
