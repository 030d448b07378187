"""The SI simulator's records: requests received, publish and export messages, acknowledgements, faults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Ack", "ExportMessage", "Fault", "PublishMessage", "SimRequest"]


class SimRequest(NamedTuple):
    """One received request: path relative to the API root (``/Publish/Projects``), query, parsed body."""

    method: str
    path: str
    query: dict[str, str | list[str]]
    body: Any


@dataclass
class PublishMessage:
    """A queued write: TypeId 11 (project) or 12 (update); StatusId 1 pending, 2 imported, 3 failed."""

    id: str
    type_id: int
    project_id: str
    payload: dict[str, Any]
    status_id: int = 1
    imported_on: str | None = None
    error_message: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "TypeId": self.type_id,
            "StatusId": self.status_id,
            "ImportedOn": self.imported_on,
            "ErrorMessage": self.error_message,
        }


@dataclass
class ExportMessage:
    """What SI sent out: the ``ProjectInfo`` list entry and the full Project as of this message."""

    info: dict[str, Any]
    snapshot: dict[str, Any]
    imported: bool = False

    @property
    def message_id(self) -> str:
        return str(self.info["MessageId"])

    @property
    def project_id(self) -> str:
        return str(self.info["Id"])

    @property
    def co_number(self) -> str | None:
        value = self.info["CONumber"]
        return None if value is None else str(value)

    @property
    def published_ms(self) -> int:
        return int(self.info["PublishedOnUnixTimeMs"])


class Ack(NamedTuple):
    """One MarkAsImported call: what it named and how many messages it marked."""

    project_id: str | None
    co_number: str | None
    published_ms: int | None
    message_id: str | None
    marked: int


@dataclass
class Fault:
    method: str
    prefix: str
    status: int | None
    body: Any
    headers: dict[str, str]
    times: int
    kind: str | None
