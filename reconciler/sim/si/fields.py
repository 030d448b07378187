"""SI's project fields as the simulator knows them: names, the UpdateFields id table, value conversion.

Facts from ``shared/reference/dtools-si.md`` (the SI OpenAPI ``Project`` and ``UpdateProjectField``).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from reconciler.vendor import si_schemas

__all__ = [
    "CANONICAL",
    "INFO_FIELDS",
    "PROJECT_FIELDS",
    "PROJECT_LISTS",
    "UPDATE_FIELDS",
    "Reject",
    "bind_nested",
    "co_key",
    "co_out",
    "convert",
    "guid",
]

_BASE_FIELDS = (  # noqa: SIM905 - a word list reads better than seventy quoted names
    "Id IntegrationProjectId TemplateName Client ClientId IntegrationClientId ClientNumber Name Number"
    " Progress AssignedTo SalesRep ProjectManager Designer Revision CurrencyCode CurrencyRate Cost Tax"
    " Margin Markup PriceWithoutTax Price Hours Budget ClientPONumber StartDate EndDate EstimatedCloseDate"
    " CloseDate ScopeOfWork Notes SiteAddress BillingAddress Contacts Resources Items Packages Locations"
    " Systems Taxes PaymentTerms MiscItems CreatedOn UpdatedOn UpdatedBy UpdatedByEmail CreatedBy"
    " PublishedBy PublishedOn PublishedOnUnixTimeMs ImportedOn Approved ApprovedOn Deleted Archived"
    " IsChangeOrder CONumber COId COName COStatus COType CONotes COAcceptedOn CORejectedOn COCreatedOn"
).split()
# The Project's collections (empty lists when there is nothing in them); every other property is a scalar
# or an object (SiteAddress, BillingAddress), null when unset.
PROJECT_LISTS = frozenset(
    {
        "Contacts",
        "Resources",
        "Items",
        "Packages",
        "Locations",
        "Systems",
        "Taxes",
        "PaymentTerms",
        "MiscItems",
    }
)
PROJECT_FIELDS = [
    *(name for name in _BASE_FIELDS if name not in PROJECT_LISTS),
    "QuantityBased",
    *(f"CustomField{n}" for n in range(1, 76)),
]
CANONICAL = {name.lower(): name for name in [*_BASE_FIELDS, *(f"CustomField{n}" for n in range(1, 76))]}

# The ProjectInfo entry of GET /Subscribe/Projects: no Hours, Revision or change-order name/status.
INFO_FIELDS = (  # noqa: SIM905 - as above
    "Id IntegrationProjectId MessageId ClientId Client ClientNumber Name Number Progress Approved CONumber"
    " CurrencyCode Price ImportedOn PublishedOn PublishedOnUnixTimeMs Deleted Archived"
).split()

# ProjectFieldId -> Project property, as D-Tools publishes it (SI OpenAPI, UpdateProjectField.projectFieldId):
# 1..15 in this order; CustomField1..54 = 101..154; CustomField65..75 = 155..165; CustomField55..64 have none.
_UPDATE_NAMES = (  # noqa: SIM905 - as above
    "Name Progress StartDate EndDate EstimatedCloseDate CloseDate Budget ScopeOfWork AssignedTo SalesRep"
    " ProjectManager Designer Client ClientNumber ClientPONumber"
).split()
UPDATE_FIELDS = {
    **dict(enumerate(_UPDATE_NAMES, start=1)),
    **{100 + n: f"CustomField{n}" for n in range(1, 55)},
    **{90 + n: f"CustomField{n}" for n in range(65, 76)},
}
_DATE_FIELDS = {"StartDate", "EndDate", "EstimatedCloseDate", "CloseDate"}
_DECIMAL_CUSTOM = {*range(15, 19), *range(55, 65)}
_DATE_CUSTOM = set(range(19, 23))
_BOOL_CUSTOM = {*range(23, 27), *range(65, 76)}


def bind_nested(prop: str, value: Any) -> Any:
    """A nested publish property (``BillingAddress``, ``Contacts`` ...) bound as ASP.NET binds it: keys in
    any case stored under SI's names (the vendored OpenAPI ``Project`` schema), unknown keys dropped, a
    boolean property given anything but a JSON boolean refused (Reject 400); other properties as given."""
    schemas = si_schemas()
    spec = next((v for k, v in schemas["Project"]["properties"].items() if k.lower() == prop.lower()), None)
    if spec is None or value is None:
        return value
    listed = "array" in (spec.get("type") or [])
    ref = (spec.get("items", {}) if listed else spec).get("$ref", "")
    target = schemas.get(str(ref).rsplit("/", 1)[-1])
    if target is None:
        return value
    if listed and not isinstance(value, list):
        raise Reject(400, f"The request is invalid. ({prop}: expected a list)")
    elements = value if listed else [value]
    bound: list[dict[str, Any]] = []
    for element in elements:
        if not isinstance(element, dict):
            raise Reject(400, f"The request is invalid. ({prop}: expected an object)")
        names = {name.lower(): name for name in target["properties"]}
        item: dict[str, Any] = {}
        for key, given in element.items():
            name = names.get(str(key).lower())
            if name is None:
                continue
            if target["properties"][name].get("type") == "boolean" and not isinstance(given, bool):
                raise Reject(400, f"The request is invalid. ({prop}.{name[:1].upper()}{name[1:]})")
            item[name[:1].upper() + name[1:]] = given
        bound.append(item)
    return bound if listed else bound[0]


class Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def guid(value: object, name: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise Reject(400, f"The value '{value}' is not valid for {name}.") from None


def co_key(value: object) -> str | None:
    """A CONumber as the sim keys it: None for the base project ("", 0, None), digits without zeros."""
    text = "" if value is None else str(value).strip()
    if text.isdigit():
        return str(int(text)) if int(text) else None
    return text or None


def co_out(co: str) -> int | str:
    return int(co) if co.isdigit() else co


def convert(prop: str, value: str | None) -> Any:
    """An UpdateFields value (an invariant string) as the Project stores it; ValueError when bad."""
    if value is None or value == "":
        return None
    custom = int(prop[11:]) if prop.startswith("CustomField") else 0
    if prop == "Budget" or custom in _DECIMAL_CUSTOM:
        if not re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
            raise ValueError(f"'{value}' is not a valid decimal for {prop}")
        return float(Decimal(value.strip()))
    if prop in _DATE_FIELDS or custom in _DATE_CUSTOM:
        try:
            if len(value) == 10:
                return date.fromisoformat(value).isoformat()
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").isoformat()
        except ValueError:
            raise ValueError(f"'{value}' is not a valid date for {prop}") from None
    if custom in _BOOL_CUSTOM:
        if value.lower() not in {"true", "false"}:
            raise ValueError(f"'{value}' is not a valid boolean for {prop}")
        return value.lower() == "true"
    return value
