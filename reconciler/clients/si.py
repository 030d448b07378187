"""D-Tools SI client: the cloud *queue* in front of SI (see ``shared/reference/dtools-si.md``).

Writes are queued: :meth:`SiClient.publish_project` and :meth:`SiClient.update_project` return message ids
whose fate (1 pending, 2 imported, 3 failed) is read with :meth:`SiClient.iter_message_statuses`. Reads come
from SI's *exports*: :meth:`SiClient.iter_exports` lists unacknowledged export messages (``ProjectInfo``,
several per project, change orders carry a ``CONumber``), the detail GETs return a full ``Project``, and
:meth:`SiClient.mark_imported` / :meth:`SiClient.mark_imported_by_message` acknowledge what was processed.

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
from reconciler.logs import event, redactor
from reconciler.model import fold

__all__ = [
    "MESSAGE_FAILED",
    "MESSAGE_IMPORTED",
    "MESSAGE_PENDING",
    "TYPE_PROJECT",
    "TYPE_UPDATE_PROJECT",
    "MessageStatus",
    "Page",
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


def _indexed(name: str, values: Sequence[int]) -> Params:
    """An array query parameter in the indexed form SI documents: ``name[0]=a&name[1]=b``."""
    return [(f"{name}[{index}]", value) for index, value in enumerate(values)]


def _export_filters(imported: bool, archived: bool, deleted: bool) -> Params:
    return [
        ("includeImported", "true" if imported else "false"),
        ("includeArchived", "true" if archived else "false"),
        ("includeDeleted", "true" if deleted else "false"),
    ]


@dataclass(frozen=True)
class Page:
    """One page of an SI list as sent: the (folded) entries and ``TotalCount`` when it is a number."""

    items: list[dict[str, Any]]
    total: int | None


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

    def _page(self, endpoint: str, path: str, params: Params, list_key: str, number: int, size: int) -> Page:
        """One page of a paged list, as SI sent it (nothing filtered)."""
        query: Params = [*params, ("pageNumber", number), ("pageSize", size)]
        data = self._object(endpoint, "GET", path, params=query)
        items = data.get(list_key)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ProtocolError(endpoint, f"{list_key!r} is not a list")
        if not all(isinstance(item, dict) for item in items):
            raise ProtocolError(endpoint, f"an entry of {list_key!r} is not a JSON object")
        total = data.get("totalcount")
        usable = isinstance(total, int | str) and not isinstance(total, bool) and str(total).isdigit()
        return Page(items, int(str(total)) if usable else None)

    def _pages(
        self, endpoint: str, path: str, params: Params, list_key: str, page_size: int
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list; stops when ``TotalCount`` items came or a page is empty."""
        collected = 0
        number = 1
        while True:
            page = self._page(endpoint, path, params, list_key, number, page_size)
            yield from page.items
            collected += len(page.items)
            if page.total is not None and collected >= page.total:
                return
            if not page.items or len(page.items) < page_size:
                if page.total is not None:
                    # Ended early: never take a listing that stopped short of its TotalCount as complete.
                    raise ProtocolError(
                        endpoint,
                        f"the listing ended after {collected} of the {page.total} entries it announced",
                    )
                return  # no usable TotalCount: a short or empty page is the last one
            number += 1

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
        """Every message with one of ``status_ids`` and ``type_ids``, all pages.

        The filters go out in the indexed form SI's help page documents
        (``messageStatusIds[0]=1&messageTypeIds[0]=11&messageTypeIds[1]=12``), and are never trusted: a
        returned message whose ``StatusId`` or ``TypeId`` is not one asked for is skipped (and logged), so a
        filter SI ignored cannot make a pending publish look settled, or a settled one pending.
        """
        endpoint = "si.message_statuses"
        params = _indexed("messageStatusIds", status_ids) + _indexed("messageTypeIds", type_ids)
        wanted_status, wanted_type = set(status_ids), set(type_ids)
        for item in self._pages(
            endpoint, "/Message/PublishedMessagesStatus", params, "messagestatuses", page_size
        ):
            status = _message_status(item, endpoint)
            if status.status_id in wanted_status and status.type_id in wanted_type:
                yield status
            else:
                event(
                    "si.filter_ignored",
                    "WARNING",
                    endpoint=endpoint,
                    message_id=status.id,
                    status_id=status.status_id,
                    type_id=status.type_id,
                )

    def message_statuses_page(
        self,
        status_ids: Sequence[int] = (MESSAGE_PENDING,),
        type_ids: Sequence[int] = (TYPE_PROJECT, TYPE_UPDATE_PROJECT),
        page_size: int = 200,
    ) -> tuple[list[MessageStatus], int | None]:
        """The first page of :meth:`iter_message_statuses`, unfiltered, and ``TotalCount`` (for ``check``)."""
        endpoint = "si.message_statuses"
        params = _indexed("messageStatusIds", status_ids) + _indexed("messageTypeIds", type_ids)
        page = self._page(
            endpoint, "/Message/PublishedMessagesStatus", params, "messagestatuses", 1, page_size
        )
        return [_message_status(item, endpoint) for item in page.items], page.total

    # -- subscribe -----------------------------------------------------------------------------------

    def iter_exports(
        self,
        page_size: int = 200,
        *,
        include_imported: bool = False,
        include_archived: bool = False,
        include_deleted: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Export messages (folded ``ProjectInfo`` dicts), oldest first, all pages.

        By default only unacknowledged messages of projects neither archived nor deleted (SI's defaults);
        an entry flagged ``Archived``/``Deleted`` that was not asked for is skipped, whatever SI sent.
        Acknowledge only after the iteration is done: marking messages while paging shifts the pages.
        """
        params = _export_filters(include_imported, include_archived, include_deleted)
        for item in self._pages("si.subscribe.list", "/Subscribe/Projects", params, "projects", page_size):
            if (item.get("archived") is True and not include_archived) or (
                item.get("deleted") is True and not include_deleted
            ):
                continue
            yield item

    def exports_page(self, page_size: int = 200) -> Page:
        """The first page of :meth:`iter_exports`, unfiltered, with ``TotalCount`` (for ``check``)."""
        params = _export_filters(False, False, False)
        return self._page("si.subscribe.list", "/Subscribe/Projects", params, "projects", 1, page_size)

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

    def mark_imported_by_message(self, message_id: str, published_ms: int) -> None:
        """Acknowledge exactly one export message (``MarkAsImportedByMessageId``).

        ``publishedOnUnixTimeMs`` is SI's optimistic guard ("will make sure no one has updated this project
        since you last read it"): pass the message's own ``PublishedOnUnixTimeMs``.
        """
        params: Params = [("messageId", message_id), ("publishedOnUnixTimeMs", published_ms)]
        self._send("si.mark_imported", "PUT", "/Subscribe/Projects/MarkAsImportedByMessageId", params=params)

    def mark_imported(self, project_id: str, co_number: str | None, published_ms: int) -> None:
        """Acknowledge that project's (or change order's) export messages up to ``published_ms``."""
        params: Params = [("id", project_id)]
        co = _normalise_co(co_number)
        if co is not None:  # omitted for a base-project message
            params.append(("coNumber", co))
        params.append(("publishedOnUnixTimeMs", published_ms))
        self._send("si.mark_imported", "PUT", "/Subscribe/Projects/MarkAsImported", params=params)
