"""Zoho's answer shapes: JSON bodies, the error envelope ``{"code", "details", "message", "status"}``,
and the HTTP status of a per-record write (200/201 all ok, 207 mixed, 400 none)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["envelope", "error", "json_answer", "per_record_status"]


def json_answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    content = json.dumps(body).encode()
    return httpx.Response(
        status, content=content, headers={"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
    )


def envelope(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "details": dict(details or {}), "message": message, "status": "error"}


def error(status: int, code: str, message: str, details: Mapping[str, Any] | None = None) -> httpx.Response:
    return json_answer(status, envelope(code, message, details))


def per_record_status(items: list[dict[str, Any]], all_ok: int) -> int:
    ok = sum(1 for item in items if item["status"] == "success")
    return all_ok if ok == len(items) else 400 if ok == 0 else 207
