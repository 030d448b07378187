"""Two naive strategies for the same work, run against the same simulators so their calls can be counted.

* **per-record**: the reconciler's reads, but every Zoho call is per record: for each changed project one
  Zoho read of the deal (``COQL ... where id = 'X'`` stands in for ``GET /Deals/{id}``, which the
  simulator does not serve; one call either way), one ``PUT /Deals`` per deal and one ``POST /Notes`` per
  note. It keeps its token. Built from our own clients.
* **old webhook app**: what the integration being replaced did, in raw httpx: per changed project a new
  Zoho token before every Zoho call, the whole SI project listing (every page of
  ``GET /Subscribe/Projects?includeImported=true``) to find the project, a detail GET, a one-deal Zoho
  update and a note per update. It needs more tokens than Zoho allows (10 per 10 minutes), so the
  simulator's token limit is lifted while it runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import ceil
from typing import Any

import httpx

from benchmarks.bounds import SI_PAGE
from benchmarks.sims import SimClock
from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.si import SiClient, co_number
from reconciler.clients.zoho import MemoryTokenCache, NoteDraft, ZohoAuth, ZohoClient
from reconciler.sim.harness import SimPair

__all__ = ["LISTING_PAGE", "WebhookCost", "old_webhook", "per_record", "per_record_cost", "webhook_cost"]

LISTING_PAGE = SI_PAGE  # the old app's page size for the project listing (the largest the API gives)


def per_record(pair: SimPair, transport: httpx.BaseTransport | None, clock: SimClock) -> int:
    """Process every unacknowledged SI export one record at a time; returns the messages handled."""
    raw = httpx.Client(transport=transport, timeout=httpx.Timeout(30.0))
    try:
        http = HttpClient(raw, policy=RetryPolicy.no_waits())
        auth = ZohoAuth(
            accounts_url=pair.zoho_url,
            client_id=pair.zoho.client_id,
            client_secret=pair.zoho.client_secret,
            refresh_token=pair.zoho.refresh_token,
            cache=MemoryTokenCache(),
            clock=clock.now,
        )
        zoho = ZohoClient(http, api_url=pair.zoho_url, default_api_url=pair.zoho_url, auth=auth)
        si = SiClient(http, pair.si_url, pair.si.api_key)
        messages = list(si.iter_exports())
        for message in messages:
            project_id = str(message["id"])
            deal_id = str(message["integrationprojectid"])
            co = co_number(message.get("conumber"))
            detail = si.get_project(project_id, co)
            rows, _ = zoho.coql(f"select id, Amount, Labor_Hours from Deals where id = '{deal_id}'")
            wanted = {"Amount": detail.get("price"), "Labor_Hours": detail.get("hours")}
            current = rows[0] if rows else {}
            if any(current.get(k) != v for k, v in wanted.items()):
                zoho.update_records([{"id": deal_id, **wanted}])
            if co is not None:
                title = f"Change order {co}: {detail.get('coname')}"
                zoho.create_notes([NoteDraft(deal_id, title, f"Status: {detail.get('costatus')}")])
            si.mark_imported(project_id, co, int(message["publishedonunixtimems"]))
        return len(messages)
    finally:
        raw.close()


def per_record_cost(changed: int, messages: int, notes: int = 0) -> dict[str, int]:
    """Calls the per-record strategy makes for ``changed`` projects (the formula checked against a run)."""
    return {
        "zoho.token": 1,
        "zoho.coql": changed,
        "zoho.deals.update": changed,
        "zoho.notes.create": notes,
        "si.subscribe.list": max(1, ceil(messages / SI_PAGE)),
        "si.subscribe.get": changed,
        "si.mark_imported": changed,
    }


@dataclass(frozen=True)
class WebhookCost:
    """Per changed project: the listing's pages plus five fixed calls."""

    listing_entries: int

    @property
    def per_project(self) -> dict[str, int]:
        return {
            "zoho.token": 2,
            "si.subscribe.list": max(1, ceil(self.listing_entries / LISTING_PAGE)),
            "si.subscribe.get": 1,
            "zoho.deals.update": 1,
            "zoho.notes.create": 1,
        }

    def total(self, changed: int) -> dict[str, int]:
        return {label: calls * changed for label, calls in self.per_project.items()}


def webhook_cost(listing_entries: int, changed: int) -> dict[str, int]:
    return WebhookCost(listing_entries).total(changed)


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}"
        )
    return response.json()


def old_webhook(pair: SimPair, transport: httpx.BaseTransport | None, project_ids: Iterable[str]) -> int:
    """The old app, once per changed project (as its SI webhook fired); returns the projects handled."""
    si_headers = {"X-DTSI-ApiKey": pair.si.api_key, "Accept": "application/json"}
    token_form = {
        "grant_type": "refresh_token",
        "client_id": pair.zoho.client_id,
        "client_secret": pair.zoho.client_secret,
        "refresh_token": pair.zoho.refresh_token,
    }
    handled = 0
    with httpx.Client(transport=transport, timeout=httpx.Timeout(30.0)) as client:

        def zoho_headers() -> dict[str, str]:
            token = _ok(client.post(f"{pair.zoho_url}/oauth/v2/token", data=token_form))["access_token"]
            return {"Authorization": f"Zoho-oauthtoken {token}"}

        for project_id in project_ids:
            newest: dict[str, Any] | None = None
            seen, page = 0, 1
            while True:  # the whole listing, every time
                params: dict[str, str | int] = {
                    "includeImported": "true",
                    "pageNumber": page,
                    "pageSize": LISTING_PAGE,
                }
                body = _ok(client.get(f"{pair.si_url}/Subscribe/Projects", params=params, headers=si_headers))
                items = body.get("Projects") or []
                for item in items:
                    if item["Id"] == project_id and (
                        newest is None or item["PublishedOnUnixTimeMs"] > newest["PublishedOnUnixTimeMs"]
                    ):
                        newest = item
                seen += len(items)
                if not items or seen >= int(body.get("TotalCount") or 0):
                    break
                page += 1
            if newest is None:
                raise RuntimeError(f"project {project_id} is not in SI's listing")
            deal_id = newest["IntegrationProjectId"]
            detail = _ok(client.get(f"{pair.si_url}/Subscribe/Projects/{project_id}", headers=si_headers))
            record = {"id": deal_id, "Amount": detail["Price"], "Labor_Hours": detail["Hours"]}
            _ok(
                client.put(
                    f"{pair.zoho_url}/crm/v8/Deals",
                    json={"data": [record], "trigger": []},
                    headers=zoho_headers(),
                )
            )
            note = {
                "Note_Title": "Updated from D-Tools SI",
                "Note_Content": f"Price {detail['Price']}, hours {detail['Hours']}",
                "Parent_Id": {"module": {"api_name": "Deals"}, "id": deal_id},
            }
            _ok(client.post(f"{pair.zoho_url}/crm/v8/Notes", json={"data": [note]}, headers=zoho_headers()))
            handled += 1
    return handled
