"""Vendor data shipped inside the package, copied unmodified from the vendors' published descriptions.

``si_project_schema.json``: SI's ``Project`` schema and every schema it references (``Address``,
``Contact``, ``Resource``, ...), from D-Tools' SI OpenAPI (its ``$comment`` names the source file, commit
and sha256). The mapping validates nested ``[create]`` keys (``BillingAddress.City``, ``Contacts[0].Email``)
against it at start, so nothing outside the package is read at run time (``../shared`` is for tests only).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["si_schemas"]


@cache
def si_schemas() -> dict[str, Any]:
    """``components.schemas`` of the vendored SI Project excerpt, by schema name (read once)."""
    text = files(__name__).joinpath("si_project_schema.json").read_text(encoding="utf-8")
    schemas: dict[str, Any] = json.loads(text)["components"]["schemas"]
    return schemas
