"""The CRM record endpoints of the Zoho simulator: ``PUT /Deals``, ``POST /Notes``, a deal's notes, fields.

Writes check every value against the field's ``data_type`` from the field catalogue as Zoho does and
answer per record, in input order (``INVALID_DATA`` naming the field and its ``json_path``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import httpx

from reconciler.sim.zoho.answers import envelope, error, json_answer, per_record_status
from reconciler.sim.zoho.state import SIM_USER, ZohoState, iso_stamp

__all__ = ["RecordRoutes"]

_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")
_TEXT_TYPES = frozenset({"text", "textarea", "picklist", "email", "phone", "website", "autonumber"})


class RecordRoutes(ZohoState):
    """The record endpoints, on top of the state they read and change."""

    def _bad_value(self, entry: dict[str, Any], value: Any) -> dict[str, Any] | None:
        """The INVALID_DATA details for a value of the wrong type for its field, or None."""
        dtype = entry["data_type"]
        if value is None:
            return None
        wrong = {"expected_data_type": dtype}
        if dtype in ("currency", "double", "percent"):
            return None if isinstance(value, int | float) and not isinstance(value, bool) else wrong
        if dtype in ("integer", "bigint"):
            return None if isinstance(value, int) and not isinstance(value, bool) else wrong
        if dtype == "boolean":
            return None if isinstance(value, bool) else wrong
        if dtype == "date":
            try:
                date.fromisoformat(value)
            except (TypeError, ValueError):
                return wrong
            return None if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else wrong
        if dtype == "datetime":  # yyyy-MM-ddTHH:mm:ss±HH:mm; without an offset it is invalid
            if not isinstance(value, str) or not _DATETIME.fullmatch(value):
                return wrong
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return wrong
            return None
        if dtype in _TEXT_TYPES:
            if not isinstance(value, str):
                return wrong
            length = entry.get("length")
            return {"maximum_length": length} if isinstance(length, int) and len(value) > length else None
        if dtype == "lookup":
            ok = isinstance(value, Mapping) and isinstance(value.get("id"), str)
            if ok and entry["api_name"] == "Account_Name" and value["id"] not in self.accounts:
                return {"id": value["id"]}
            return None if ok else wrong
        return None

    def _update_one(self, index: int, record: Any, meta: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if not isinstance(record, dict) or not record.get("id"):
            missing = {"api_name": "id", "json_path": f"$.data[{index}].id"}
            return envelope("MANDATORY_NOT_FOUND", "required field not found", missing)
        deal_id = str(record["id"])
        deal = self.deals.get(deal_id)
        if deal is None:
            return envelope("INVALID_DATA", "the related id given seems to be invalid", {"id": deal_id})
        for name, value in record.items():
            if name == "id":
                continue
            where = {"api_name": name, "json_path": f"$.data[{index}].{name}"}
            entry = meta.get(name)
            if entry is None:
                return envelope("INVALID_DATA", "the field api name given seems to be invalid", where)
            operations = entry.get("operation_type")
            closed = isinstance(operations, Mapping) and operations.get("api_update") is False
            if entry.get("read_only") or entry.get("field_read_only") or closed:
                return envelope("INVALID_DATA", "the field is read only", where)
            bad = self._bad_value(entry, value)
            if bad is not None:
                return envelope("INVALID_DATA", "invalid data", bad | where)
        for name, value in record.items():
            if name == "Account_Name":
                deal[name] = self._account_ref(value)
            elif name != "id":
                deal[name] = copy.deepcopy(value)
        deal["Modified_Time"] = iso_stamp(self._now())
        details: dict[str, Any] = {"Modified_Time": deal["Modified_Time"], "Modified_By": SIM_USER}
        details |= {"Created_Time": deal["Created_Time"], "id": deal_id, "Created_By": SIM_USER}
        return {"code": "SUCCESS", "details": details, "message": "record updated", "status": "success"}

    def _update_deals(self, body: Any) -> httpx.Response:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data"})
        if len(data) > 100:
            return error(400, "LIMIT_EXCEEDED", "the given data exceeds the limit", {"limit": 100})
        self.triggers.append(body.get("trigger"))
        meta = self._meta()
        items = [self._update_one(i, record, meta) for i, record in enumerate(data)]
        return json_answer(per_record_status(items, 200), {"data": items})

    def _create_one(self, index: int, note: Any) -> dict[str, Any]:
        path = f"$.data[{index}]"
        if not isinstance(note, dict):
            return envelope("INVALID_DATA", "invalid data", {"json_path": path})
        title, content = note.get("Note_Title"), note.get("Note_Content")
        if title is None and content is None:
            expected = [{"api_name": n, "json_path": f"{path}.{n}"} for n in ("Note_Title", "Note_Content")]
            return envelope("EXPECTED_FIELD_MISSING", "expected field missing", {"expected_fields": expected})
        for name, value, limit in (("Note_Title", title, 120), ("Note_Content", content, 65535)):
            where = {"api_name": name, "json_path": f"{path}.{name}"}
            if value is not None and not isinstance(value, str):
                return envelope("INVALID_DATA", "invalid data", {"expected_data_type": "text"} | where)
            if isinstance(value, str) and len(value) > limit:
                return envelope("INVALID_DATA", "invalid data", {"maximum_length": limit} | where)
        parent = note.get("Parent_Id")
        module = parent.get("module") if isinstance(parent, dict) else None
        deal_id = str(parent.get("id")) if isinstance(parent, dict) else ""
        module_ok = isinstance(module, dict) and (module.get("api_name") == "Deals" or "id" in module)
        if not module_ok or deal_id not in self.deals:
            where = {"api_name": "Parent_Id", "json_path": f"{path}.Parent_Id"}
            return envelope("INVALID_DATA", "the related id given seems to be invalid", where)
        note_id = self._store_note(deal_id, title or "", content or "")
        stored = self.notes[-1]
        details: dict[str, Any] = {"Modified_Time": stored["Modified_Time"], "Modified_By": SIM_USER}
        details |= {"Created_Time": stored["Created_Time"], "id": note_id, "Created_By": SIM_USER}
        return {"code": "SUCCESS", "details": details, "message": "record added", "status": "success"}

    def _create_notes(self, body: Any) -> httpx.Response:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return error(400, "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data"})
        if len(data) > 200:
            return error(400, "LIMIT_EXCEEDED", "the given data exceeds the limit", {"limit": 200})
        items = [self._create_one(i, note) for i, note in enumerate(data)]
        return json_answer(per_record_status(items, 201), {"data": items})

    # -- other reads ----------------------------------------------------------------------------------

    def _list_notes(self, deal_id: str, params: httpx.QueryParams) -> httpx.Response:
        fields = params.get("fields")
        if not fields:
            return error(400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": "fields"})
        try:
            page, per_page = int(params.get("page", "1")), int(params.get("per_page", "200"))
        except ValueError:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "page"})
        if not 1 <= per_page <= 200 or page < 1:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "per_page", "maximum": 200})
        if deal_id not in self.deals:
            return error(
                400, "INVALID_DATA", "the related id given seems to be invalid", {"resource_path_index": 2}
            )
        mine = [n for n in self.notes if n["Parent_Id"]["id"] == deal_id]
        chunk = mine[(page - 1) * per_page : page * per_page]
        if not chunk:
            return httpx.Response(204)
        names = [name.strip() for name in fields.split(",") if name.strip()]
        data = [{"id": n["id"]} | {name: copy.deepcopy(n.get(name)) for name in names} for n in chunk]
        info = {  # the keys of Zoho's getNotes 200 example
            "page": page,
            "per_page": per_page,
            "count": len(data),
            "more_records": len(mine) > page * per_page,
            "next_page_token": None,
            "previous_page_token": None,
            "page_token_expiry": None,
        }
        return json_answer(200, {"data": data, "info": info})

    def _fields(self, module: str | None) -> httpx.Response:
        if not module:
            return error(400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": "module"})
        catalogue = self.fields_meta if module == "Deals" else self.module_fields.get(module)
        if catalogue is None:
            return error(
                400, "INVALID_MODULE", "the module name given seems to be invalid", {"param_name": "module"}
            )
        return json_answer(200, {"fields": copy.deepcopy(catalogue)})
