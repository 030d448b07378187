"""The Zoho simulator's state and the admin helpers tests and the demo use (no HTTP here).

Deals, the accounts, contacts and users their lookups point at (with the Accounts and Contacts field
catalogues), notes, grants and access tokens, the request log and queued faults live on
:class:`ZohoState`; every helper takes the one lock, so tests may call them while the simulator serves.
:class:`~reconciler.sim.zoho.routes.ZohoSim` adds the HTTP side on top.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.sim.zoho.coql import USER_FIELDS, BooleanLiterals, CoqlEngine

__all__ = [
    "ACCESS_DENIED",
    "NEEDED_SCOPES",
    "SIM_USER",
    "USER_FIELDS",
    "Fault",
    "ZohoState",
    "default_fields_meta",
    "iso_stamp",
    "scope_covers",
]

TOKEN_LIFETIME = timedelta(hours=1)
TOKEN_WINDOW = timedelta(minutes=10)
TOKENS_PER_WINDOW = 10
ACCESS_DENIED = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "status": "failure",
}
SIM_USER = {"name": "Sim Integration", "id": "5725767000000411001"}
# What the README tells an admin to grant: a grant with all of these can make every call we make.
NEEDED_SCOPES = frozenset({
    "ZohoCRM.modules.deals.ALL", "ZohoCRM.modules.notes.ALL", "ZohoCRM.coql.READ",
    "ZohoCRM.settings.fields.READ", "ZohoCRM.modules.accounts.READ", "ZohoCRM.modules.contacts.READ",
})  # fmt: skip
_JSON_TYPES = {"boolean": "boolean", "currency": "double", "double": "double", "integer": "integer"}
_JSON_TYPES |= {"lookup": "jsonobject", "ownerlookup": "jsonobject"}


def _lookup(module: str, module_id: str) -> dict[str, Any]:
    """A lookup field's ``lookup`` object, shaped as Zoho's getFields documents it."""
    return {"display_label": module[:-1], "api_name": None, "module": {"api_name": module, "id": module_id}}


_DEFAULT_FIELDS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("Owner", "ownerlookup", "Deal Owner", {}),
    ("Deal_Name", "text", "Deal Name", {"length": 120}),
    ("Account_Name", "lookup", "Account Name", {"lookup": _lookup("Accounts", "5725767000000002177")}),
    ("Contact_Name", "lookup", "Contact Name", {"lookup": _lookup("Contacts", "5725767000000002179")}),
    ("Amount", "currency", "Amount", {}),
    ("Closing_Date", "date", "Closing Date", {}),
    ("Stage", "picklist", "Stage", {}),
    ("Probability", "integer", "Probability (%)", {}),
    ("Type", "picklist", "Type", {}),
    ("Lead_Source", "picklist", "Lead Source", {}),
    ("Next_Step", "text", "Next Step", {"length": 100}),
    ("Pipeline", "picklist", "Pipeline", {}),
    ("Description", "textarea", "Description", {"length": 32000}),
    ("Created_Time", "datetime", "Created Time", {"read_only": True}),
    ("Modified_Time", "datetime", "Modified Time", {"read_only": True}),
    ("Send_to_SI", "boolean", "Send to SI", {"custom_field": True}),
    ("SI_Project_ID", "text", "SI Project ID", {"custom_field": True, "length": 255}),
    ("SI_Sync_Status", "text", "SI Sync Status", {"custom_field": True, "length": 255}),
    ("Labor_Hours", "double", "Labor Hours", {"custom_field": True}),
    ("Revision_Number", "text", "Revision Number", {"custom_field": True, "length": 255}),
    ("CO_Number", "text", "CO Number", {"custom_field": True, "length": 255}),
    ("Progress_Status", "picklist", "Progress Status", {"custom_field": True}),
    ("SI_Custom_1", "text", "SI Custom 1", {"custom_field": True, "length": 255}),
    ("SI_Project_Number", "text", "SI Project Number", {"custom_field": True, "length": 255}),
]
# The standard fields of Accounts and Contacts a mapping may read through a lookup (the SDK's Accounts and
# Contacts field classes; types as Zoho's getFields gives them).
_ADDRESS = [(f"{kind}_{part}", "text", f"{kind} {part}", {"length": 250}) for kind in ("Billing", "Shipping")
            for part in ("Street", "City", "State", "Code", "Country")]  # fmt: skip
_ACCOUNT_FIELDS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("Owner", "ownerlookup", "Account Owner", {}),
    ("Account_Name", "text", "Account Name", {"length": 200}),
    ("Account_Number", "text", "Account Number", {"length": 40}),
    ("Phone", "phone", "Phone", {"length": 30}),
    ("Website", "website", "Website", {"length": 255}),
    ("Industry", "picklist", "Industry", {}),
    ("Account_Type", "picklist", "Account Type", {}),
    ("Employees", "integer", "Employees", {}),
    *_ADDRESS,
    ("Description", "textarea", "Description", {"length": 32000}),
]
_CONTACT_FIELDS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("Owner", "ownerlookup", "Contact Owner", {}),
    ("First_Name", "text", "First Name", {"length": 40}),
    ("Last_Name", "text", "Last Name", {"length": 80}),
    ("Full_Name", "text", "Full Name", {"read_only": True}),
    ("Email", "email", "Email", {}),
    ("Phone", "phone", "Phone", {"length": 30}),
    ("Mobile", "phone", "Mobile", {"length": 30}),
    ("Title", "text", "Title", {"length": 100}),
    ("Account_Name", "lookup", "Account Name", {"lookup": _lookup("Accounts", "5725767000000002177")}),
    ("Email_Opt_Out", "boolean", "Email Opt Out", {}),
]


def default_fields_meta(module: str = "Deals") -> list[dict[str, Any]]:
    """The field catalogue the simulator starts with for ``module`` (Deals: standard fields plus our
    custom ones; Accounts and Contacts: the standard fields a lookup may read).

    Each entry carries the keys Zoho's getFields sample shows that clients read: ``api_name``,
    ``data_type``, ``json_type``, ``field_label``/``display_label``, ``read_only`` (for this user),
    ``field_read_only`` (for everyone), ``operation_type`` and, for lookups, ``lookup.module``.
    """
    table = {"Deals": _DEFAULT_FIELDS, "Accounts": _ACCOUNT_FIELDS, "Contacts": _CONTACT_FIELDS}[module]
    base = {"Deals": 5725767000000002000, "Accounts": 5725767000000003000, "Contacts": 5725767000000004000}
    meta = []
    for n, (api_name, data_type, label, extra) in enumerate(table):
        system = bool(extra.get("read_only"))
        entry: dict[str, Any] = {
            "api_name": api_name,
            "data_type": data_type,
            "json_type": _JSON_TYPES.get(data_type, "string"),
            "field_label": label,
            "display_label": label,
            "id": str(base[module] + n),
            "custom_field": False,
            "read_only": False,
            "field_read_only": system,
            "visible": True,
            "operation_type": {
                "web_update": not system,
                "api_create": not system,
                "web_create": not system,
                "api_update": not system,
            },
        }
        entry |= extra
        meta.append(entry)
    return meta


def _user(full_name: str, user_id: str, email: str | None = None) -> dict[str, Any]:
    first, _, last = full_name.rpartition(" ")
    address = email or f"{full_name.lower().replace(' ', '.')}@example.com"
    return {"id": user_id, "full_name": full_name, "first_name": first or None, "last_name": last,
            "email": address}  # fmt: skip


def iso_stamp(moment: datetime) -> str:
    """A time as Zoho writes it: UTC, whole seconds, a numeric offset (``2025-01-31T10:00:00+00:00``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class Fault:
    """A queued fault (see :meth:`ZohoState.inject`)."""

    method: str
    prefix: str
    kind: str
    status: int
    body: bytes | str | dict[str, Any] | None
    headers: dict[str, str]
    times: int
    before: bool
    skip: int = 0  # let this many matching requests through first


def scope_covers(granted: Iterable[str], needed: str) -> bool:
    """Whether a grant holds ``needed``: itself, or a wider scope (``ZohoCRM.modules.ALL``,
    ``ZohoCRM.modules.deals.ALL``, ``ZohoCRM.modules.READ`` all cover ``ZohoCRM.modules.deals.READ``).
    Scope names compare case-insensitively (Zoho's own pages write both ``Deals`` and ``deals``)."""
    *want, operation = needed.lower().split(".")
    for scope in granted:
        *have, allowed = scope.strip().lower().split(".")
        if want[: len(have)] == have and allowed in ("all", operation):
            return True
    return False


class ZohoState(CoqlEngine):
    """Zoho accounts + CRM v8 data in one object; every helper holds ``_lock``."""

    def __init__(
        self,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",
        refresh_token: str = "sim-refresh",
        *,
        clock: Callable[[], datetime] | None = None,
        boolean_literals: BooleanLiterals = "any",
        scopes: Iterable[str] = NEEDED_SCOPES,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.token_limit = True
        # COQL boolean literals taken: "any"; "quoted" (strict: a bare ``true`` is SYNTAX_ERROR, as only
        # ``'true'`` is documented); "bare" (``'true'`` is refused: a variant that disagrees with the docs).
        self.boolean_literals: BooleanLiterals = boolean_literals
        # The scopes of every refresh-token grant (and of a client-credentials grant that names none).
        self.grant_scopes = frozenset(scopes)
        self.tokens_issued = 0
        self.issued_access_tokens: list[str] = []  # every access token handed out, for secret-leak tests
        self.fields_meta: list[dict[str, Any]] = default_fields_meta()  # the Deals catalogue
        self.module_fields: dict[str, list[dict[str, Any]]] = {
            module: default_fields_meta(module) for module in ("Accounts", "Contacts")
        }
        # The records a deal's lookups point at, by id: accounts and contacts as their modules hold them
        # (API names as keys), users with the Users API's keys.
        self.accounts: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {SIM_USER["id"]: _user(SIM_USER["name"], SIM_USER["id"])}
        self.deals: dict[str, dict[str, Any]] = {}
        self.notes: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.token_requests: list[dict[str, str]] = []
        self.triggers: list[Any] = []
        self._refresh_tokens = {refresh_token}
        self._grant_codes: dict[str, str] = {}
        self._access: dict[str, datetime] = {}
        self._token_scopes: dict[str, frozenset[str]] = {}
        self._issued: dict[str, list[datetime]] = {}
        self._faults: list[Fault] = []
        self._ids = itertools.count(5725767000000420001)
        self._serial = itertools.count(1)
        self._lock = threading.RLock()

    def _now(self) -> datetime:
        now = self.clock()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)

    def _new_id(self) -> str:
        return str(next(self._ids))

    def issue_grant_code(self) -> str:
        """A one-use self-client grant code; exchanging it yields a new refresh token."""
        with self._lock:
            n = next(self._serial)
            code = f"1000.simcode{n:04d}"
            self._grant_codes[code] = f"1000.sim-refresh-{n:04d}"
            return code

    def expire_tokens(self) -> None:
        """Invalidate every access token issued so far (the next API call answers 401 INVALID_TOKEN)."""
        with self._lock:
            self._access.clear()

    def add_account(self, name: str, **fields: Any) -> str:
        """An account, with any of its fields (``Billing_City="Leeds"``, ``Account_Number``, ...)."""
        with self._lock:
            account_id = self._new_id()
            self.accounts[account_id] = {"id": account_id, "Account_Name": name, **fields}
            return account_id

    def edit_account(self, account_id: str, **fields: Any) -> None:
        """Someone edits an account (a rename included); its deals are not modified by it."""
        with self._lock:
            self.accounts[account_id] |= fields

    def add_contact(self, last_name: str, first_name: str | None = None, **fields: Any) -> str:
        """A contact (``Email``, ``Phone``, ``Mobile``, ``Title`` ...); ``Full_Name`` as Zoho builds it."""
        with self._lock:
            contact_id = self._new_id()
            full = " ".join(part for part in (first_name, last_name) if part)
            record = {"id": contact_id, "First_Name": first_name, "Last_Name": last_name, "Full_Name": full}
            self.contacts[contact_id] = record | fields
            return contact_id

    def add_user(self, full_name: str, email: str | None = None) -> str:
        """A Zoho user (a deal's ``Owner``)."""
        with self._lock:
            user_id = self._new_id()
            self.users[user_id] = _user(full_name, user_id, email)
            return user_id

    def _account_ref(self, value: Any) -> dict[str, Any] | None:
        if value is None or value == "":
            return None
        if isinstance(value, Mapping):
            value = value.get("id") or value.get("name")
        text = str(value)
        if text in self.accounts:
            return {"name": self.accounts[text]["Account_Name"], "id": text}
        for account_id, account in self.accounts.items():
            if account["Account_Name"] == text:
                return {"name": text, "id": account_id}
        return {"name": text, "id": self.add_account(text)}

    def _contact_ref(self, value: Any) -> dict[str, Any] | None:
        if value is None or value == "":
            return None
        if isinstance(value, Mapping):
            value = value.get("id") or value.get("name")
        text = str(value)
        if text not in self.contacts:
            named = (k for k, c in self.contacts.items() if c["Full_Name"] == text)
            text = next(named, "") or self.add_contact(text)
        return {"name": self.contacts[text]["Full_Name"], "id": text}

    def _user_ref(self, value: Any) -> dict[str, Any]:
        if isinstance(value, Mapping):
            value = value.get("id") or value.get("name")
        text = str(value)
        if text not in self.users:
            named = (k for k, u in self.users.items() if u["full_name"] == text)
            text = next(named, "") or self.add_user(text)
        user = self.users[text]
        return {"name": user["full_name"], "id": text, "email": user["email"]}

    def _references(self, record: dict[str, Any], fields: Mapping[str, Any]) -> None:
        """Lookups given as a name or an id become Zoho's ``{"name", "id"}`` (records made as needed)."""
        if "Account_Name" in fields:
            record["Account_Name"] = self._account_ref(fields["Account_Name"])
        if "Contact_Name" in fields:
            record["Contact_Name"] = self._contact_ref(fields["Contact_Name"])
        if "Owner" in fields:
            record["Owner"] = self._user_ref(fields["Owner"])

    def add_deal(self, **fields: Any) -> str:
        """Create a deal as a salesperson would; ``Account_Name``, ``Contact_Name`` and ``Owner`` may be a
        name or an id (the owner is the integration's user unless given)."""
        with self._lock:
            deal_id = self._new_id()
            stamp = iso_stamp(self._now())
            record: dict[str, Any] = {"id": deal_id, "Created_Time": stamp, "Modified_Time": stamp}
            record |= fields
            self._references(record, {"Owner": SIM_USER["id"], **fields})
            self.deals[deal_id] = record
            return deal_id

    def edit_deal(self, deal_id: str, **fields: Any) -> None:
        """A salesperson's edit: sets fields and bumps ``Modified_Time`` (unless given)."""
        with self._lock:
            record = self.deals[deal_id]
            record["Modified_Time"] = iso_stamp(self._now())
            record |= fields
            self._references(record, fields)

    def deal(self, deal_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.deals[deal_id])

    def add_note(self, deal_id: str, title: str, content: str) -> str:
        with self._lock:
            return self._store_note(deal_id, title, content)

    def notes_for(self, deal_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(n) for n in self.notes if n["Parent_Id"]["id"] == deal_id]

    def inject(
        self,
        method: str,
        path_prefix: str,
        *,
        status: int = 500,
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        times: int = 1,
        before: bool = True,
        kind: str = "status",
        skip: int = 0,
    ) -> None:
        """Queue a fault for the next ``times`` requests matching method and path prefix, after ``skip``
        matching requests that pass untouched.

        (Many keyword parameters on purpose: each is one property of the fault, set in one call.)

        ``kind``: ``status`` (answer ``status``/``body``/``headers``), ``timeout`` (raise httpx.ReadTimeout),
        ``reset`` (the connection drops without an answer: httpx.RemoteProtocolError in-process, a closed
        socket when served), ``malformed`` (200 with broken JSON), ``empty204``. With ``before=False`` the
        request is applied first and its answer replaced (a lost answer).
        """
        if kind not in ("status", "timeout", "reset", "malformed", "empty204"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.append(
                Fault(
                    method.upper(), path_prefix, kind, status, body, dict(headers or {}), times, before, skip
                )
            )

    def clear_faults(self) -> None:
        """Drop every fault still queued (the network is healthy again)."""
        with self._lock:
            self._faults.clear()

    def count(self, method: str, path_prefix: str) -> int:
        with self._lock:
            return sum(1 for m, p, _ in self.requests if m == method.upper() and p.startswith(path_prefix))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method.upper() and path.startswith(fault.prefix):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _store_note(self, deal_id: str, title: str, content: str) -> str:
        note_id = self._new_id()
        stamp = iso_stamp(self._now())
        parent: dict[str, Any] = {"module": {"api_name": "Deals", "id": "5725767000000002181"}, "id": deal_id}
        parent["name"] = self.deals[deal_id].get("Deal_Name")
        note: dict[str, Any] = {
            "id": note_id,
            "Note_Title": title,
            "Note_Content": content,
            "Parent_Id": parent,
        }
        note |= {
            "Created_Time": stamp,
            "Modified_Time": stamp,
            "Created_By": SIM_USER,
            "Modified_By": SIM_USER,
        }
        self.notes.append(note)
        return note_id
