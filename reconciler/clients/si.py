"""D-Tools SI client: the cloud *queue* in front of SI (see ``shared/reference/dtools-si.md``).

Writes are queued: :meth:`SiClient.publish_project` and :meth:`SiClient.update_project` return message ids
whose fate (1 pending, 2 imported, 3 failed) is read with :meth:`SiClient.iter_message_statuses`. Reads come
from SI's *exports*: :meth:`SiClient.iter_exports` lists unacknowledged export messages (``ProjectInfo``,
several per project, change orders carry a ``CONumber``), the detail GETs return a full ``Project``, and
:meth:`SiClient.mark_imported` acknowledges what was processed.

Requests are sent in PascalCase; every answer is returned *folded* (all keys lower-case, see
:func:`reconciler.model.fold`), because SI answers in PascalCase while its published spec says camelCase.
A 401/403 is a :class:`~reconciler.errors.CredentialsError`; any other 4xx a ``PermanentApiError``; an
answer that is not the documented JSON a ``ProtocolError``. Retries happen below, in ``HttpClient``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from reconciler.clients.http import HttpClient, json_body, raise_for_status
from reconciler.errors import CredentialsError, ProtocolError
from reconciler.logs import redactor
from reconciler.model import fold

__all__ = [
    "MESSAGE_FAILED",
    "MESSAGE_IMPORTED",
    "MESSAGE_PENDING",
    "TYPE_PROJECT",
    "TYPE_UPDATE_PROJECT",
    "MessageStatus",
    "PublishResult",
    "SiClient",
    "co_number",
]

MESSAGE_PENDING = 1
MESSAGE_IMPORTED = 2
MESSAGE_FAILED = 3
TYPE_PROJECT = 11
TYPE_UPDATE_PROJECT = 12

Params = list[tuple[str, str | int]]


def co_number(value: object) -> str | None:
    """Normalise a ``CONumber`` (typed both string and int by SI): None for the base project, else a str.

    ``None``, ``""``, ``0`` and ``"0"`` mean "base project"; integral numbers lose leading zeros and any
    ``.0`` (``2``, ``"2"``, ``"02"`` and ``2.0`` are all ``"2"``); any other text is returned stripped.
    """
    if value is None:
        return None
    if isinstance(value, int):
        return str(value) if value else None
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value)) if value else None
        return str(value)
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        return str(int(text)) if int(text) else None
    return text


_normalise_co = co_number  # the methods below take a parameter called ``co_number``


@dataclass(frozen=True)
class PublishResult:
    """The answer to a publish: the project's Guid and the queue message that carries it."""

    project_id: str
    message_id: str


@dataclass(frozen=True)
class MessageStatus:
    """One queued message's fate: ``status_id`` 1 pending, 2 imported, 3 failed (see ``error_message``)."""

    id: str
    type_id: int
    status_id: int
    imported_on: str | None
    error_message: str | None

    @property
    def pending(self) -> bool:
        return self.status_id == MESSAGE_PENDING

    @property
    def imported(self) -> bool:
        return self.status_id == MESSAGE_IMPORTED

    @property
    def failed(self) -> bool:
        return self.status_id == MESSAGE_FAILED


def _text(record: Mapping[str, Any], key: str, endpoint: str) -> str:
    value = record.get(key)
    if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
        raise ProtocolError(endpoint, f"answer lacks {key!r}")
    return str(value)


def _optional_text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return None if value is None or value == "" else str(value)


def _int(record: Mapping[str, Any], key: str, endpoint: str) -> int:
    value = record.get(key)
    if isinstance(value, bool):
        raise ProtocolError(endpoint, f"{key!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ProtocolError(endpoint, f"{key!r} is not an integer")


def _redacted(text: str | None) -> str | None:
    return None if text is None else redactor(text)


def _message_status(record: object, endpoint: str) -> MessageStatus:
    if not isinstance(record, dict):
        raise ProtocolError(endpoint, "a message status is not a JSON object")
    return MessageStatus(
        id=_text(record, "id", endpoint),
        type_id=_int(record, "typeid", endpoint),
        status_id=_int(record, "statusid", endpoint),
        imported_on=_optional_text(record, "importedon"),
        # Redacted here: it becomes the deal's SI_Sync_Status, which every CRM user reads.
        error_message=_redacted(_optional_text(record, "errormessage")),
    )


class SiClient:
    """Talks to ``base_url`` (e.g. ``https://api.d-tools.com/SI``) through the shared ``HttpClient``."""

    def __init__(self, http: HttpClient, base_url: str, api_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"X-DTSI-ApiKey": api_key, "Accept": "application/json"}
        redactor.add(api_key)

    # -- plumbing ------------------------------------------------------------------------------------

    def _send(
        self, endpoint: str, method: str, path: str, *, params: Params | None = None, body: Any = None
    ) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": self._headers}
        if params is not None:
            kwargs["params"] = params
        if body is not None:
            kwargs["json"] = body
        response = self._http.request(endpoint, method, self._base + path, **kwargs)
        if response.status_code in (401, 403):
            raise CredentialsError(f"D-Tools SI rejected SI_API_KEY (HTTP {response.status_code})")
        raise_for_status(response, endpoint)
        return response

    def _object(
        self, endpoint: str, method: str, path: str, *, params: Params | None = None, body: Any = None
    ) -> dict[str, Any]:
        data = fold(json_body(self._send(endpoint, method, path, params=params, body=body), endpoint))
        if not isinstance(data, dict):
            raise ProtocolError(endpoint, "the answer is not a JSON object")
        return data

    def _pages(
        self, endpoint: str, path: str, params: Params, list_key: str, page_size: int
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list; stops when ``TotalCount`` items came or a page is empty."""
        collected = 0
        page = 1
        while True:
            query: Params = [*params, ("pageNumber", page), ("pageSize", page_size)]
            data = self._object(endpoint, "GET", path, params=query)
            items = data.get(list_key)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ProtocolError(endpoint, f"{list_key!r} is not a list")
            total = data.get("totalcount")
            for item in items:
                if not isinstance(item, dict):
                    raise ProtocolError(endpoint, f"an entry of {list_key!r} is not a JSON object")
                yield item
            collected += len(items)
            if not items:
                return
            if isinstance(total, int | str) and not isinstance(total, bool) and str(total).isdigit():
                if collected >= int(total):
                    return
            elif len(items) < page_size:  # no usable TotalCount: a short page is the last one
                return
            page += 1

    # -- publish -------------------------------------------------------------------------------------

    def publish_project(self, project: Mapping[str, Any]) -> PublishResult:
        """Queue a project (body as given: our Guid ``Id``, ``IntegrationProjectId``, Client, Name ...)."""
        endpoint = "si.publish"
        data = self._object(endpoint, "POST", "/Publish/Projects", body=dict(project))
        return PublishResult(
            project_id=_text(data, "projectid", endpoint), message_id=_text(data, "messageid", endpoint)
        )

    def update_project(
        self, project_id: str, fields: Sequence[tuple[int, str]], message_id: str | None = None
    ) -> str:
        """Queue field updates (``(ProjectFieldId, invariant string value)`` pairs); returns the MessageId."""
        endpoint = "si.update"
        body: dict[str, Any] = {"ProjectId": project_id}
        if message_id is not None:
            body["MessageId"] = message_id
        body["UpdateFields"] = [{"ProjectFieldId": field_id, "Value": value} for field_id, value in fields]
        data = self._object(endpoint, "POST", "/Publish/Projects/Update", body=body)
        return _text(data, "messageid", endpoint)

    # -- message status ------------------------------------------------------------------------------

    def message_status(self, message_id: str) -> MessageStatus:
        """The status of one queued message."""
        endpoint = "si.message_status"
        data = self._object(
            endpoint, "GET", "/Message/PublishedMessageStatus", params=[("messageId", message_id)]
        )
        return _message_status(data, endpoint)

    def iter_message_statuses(
        self,
        status_ids: Sequence[int] = (MESSAGE_PENDING,),
        type_ids: Sequence[int] = (TYPE_PROJECT, TYPE_UPDATE_PROJECT),
        page_size: int = 200,
    ) -> Iterator[MessageStatus]:
        """Every message with one of ``status_ids`` and ``type_ids``, all pages."""
        endpoint = "si.message_statuses"
        params: Params = [("messageStatusIds", s) for s in status_ids]
        params += [("messageTypeIds", t) for t in type_ids]
        for item in self._pages(
            endpoint, "/Message/PublishedMessagesStatus", params, "messagestatuses", page_size
        ):
            yield _message_status(item, endpoint)

    # -- subscribe -----------------------------------------------------------------------------------

    def iter_exports(self, page_size: int = 200) -> Iterator[dict[str, Any]]:
        """Unacknowledged export messages (folded ``ProjectInfo`` dicts), oldest first, all pages.

        Acknowledge only after the iteration is done: marking messages while paging shifts the pages.
        """
        params: Params = [("includeImported", "false")]
        yield from self._pages("si.subscribe.list", "/Subscribe/Projects", params, "projects", page_size)

    def get_project(self, project_id: str, co_number: str | None = None) -> dict[str, Any]:
        """The full current ``Project`` (folded); with ``co_number`` that change order's view of it."""
        co = _normalise_co(co_number)
        params: Params = [] if co is None else [("coNumber", co)]
        path = "/Subscribe/Projects/" + quote(project_id, safe="")
        return self._object("si.subscribe.get", "GET", path, params=params)

    def get_project_by_message(self, message_id: str) -> dict[str, Any]:
        """The full ``Project`` (folded) as exported in the message ``message_id``."""
        return self._object(
            "si.subscribe.by_message",
            "GET",
            "/Subscribe/Projects/GetProjectByMessageId",
            params=[("messageId", message_id)],
        )

    def mark_imported(self, project_id: str, co_number: str | None, published_ms: int) -> None:
        """Acknowledge that project's (or change order's) export messages up to ``published_ms``."""
        params: Params = [("id", project_id)]
        co = _normalise_co(co_number)
        if co is not None:  # omitted for a base-project message
            params.append(("coNumber", co))
        params.append(("publishedOnUnixTimeMs", published_ms))
        self._send("si.mark_imported", "PUT", "/Subscribe/Projects/MarkAsImported", params=params)
