"""``reconciler check`` online: credentials work, and every mapped Zoho field exists with a fitting type."""

from __future__ import annotations

from reconciler.errors import ApiError, UserError
from reconciler.mapping import Mapping
from reconciler.settings import Settings
from reconciler.store import Store

__all__ = ["COMPATIBLE", "field_problems", "run_check"]

# Our value kind -> Zoho data_type values that can hold it (Zoho's /settings/fields ``data_type``).
COMPATIBLE: dict[str, set[str]] = {
    "number": {"currency", "double", "decimal", "integer", "bigint", "percent", "formula"},
    "integer": {"integer", "bigint", "double", "decimal", "currency"},
    "text": {"text", "textarea", "picklist", "email", "phone", "website", "autonumber"},
    "date": {"date"},
    "datetime": {"datetime"},
    "boolean": {"boolean"},
    "lookup": {"lookup", "ownerlookup", "userlookup"},
}


def field_problems(mapping: Mapping, catalogue: list[dict[str, object]]) -> list[str]:
    """Pure: compare the mapping with Zoho's field catalogue of the module."""
    types = {str(f.get("api_name")): str(f.get("data_type") or "") for f in catalogue}
    wanted: list[tuple[str, str, str]] = [
        ("zoho.flag_field", mapping.flag_field, "boolean"),
        ("zoho.link_field", mapping.link_field, "text"),
    ]
    if mapping.status_field:
        wanted.append(("zoho.status_field", mapping.status_field, "text"))
    for si_name, path in mapping.create:
        kind = "lookup" if "." in path else "text"
        wanted.append((f"create.{si_name}", path.split(".", 1)[0], kind))
    for index, f in enumerate(mapping.fields):
        wanted.append((f"fields[{index}].zoho", f.zoho, f.zoho_type))
    problems: list[str] = []
    for key, name, kind in wanted:
        if name not in types:
            missing = f"Zoho {mapping.module} has no field {name}"
            problems.append(f"mapping {key}: {missing}; create it (see README) or fix the key")
        elif kind in COMPATIBLE and types[name] not in COMPATIBLE[kind] and kind != "text":
            problems.append(
                f"mapping {key}: Zoho field {name} is {types[name]}, which cannot hold a {kind} value"
            )
    return problems


def run_check(settings: Settings, mapping: Mapping, store: Store) -> tuple[list[str], list[str]]:
    """Refresh a token, read Zoho's field catalogue, make one SI GET. Returns (problems, notes)."""
    from reconciler.context import build_context

    ctx = build_context(settings, mapping, store)
    problems: list[str] = []
    notes: list[str] = []
    try:
        try:
            catalogue = ctx.zoho.fields()
            notes.append(f"Zoho: credentials OK; {len(catalogue)} fields on {mapping.module}.")
            problems += field_problems(mapping, catalogue)
        except UserError as exc:
            problems += list(exc.problems)
        except ApiError as exc:
            problems.append(f"Zoho: {exc}")
        try:
            next(iter(ctx.si.iter_exports(page_size=1)), None)
            notes.append("D-Tools SI: SI_API_KEY accepted.")
        except UserError as exc:
            problems += list(exc.problems)
        except ApiError as exc:
            problems.append(f"D-Tools SI: {exc}")
    finally:
        ctx.close()
    return problems, notes
