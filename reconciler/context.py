"""Every object a cycle needs, wired from the settings in one place.

:func:`build_context` is the one place clients, the HTTP choke point and the clock are put together;
the CLI, the daemon, the demo and the tests call it (tests pass their own transport and retry policy).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from reconciler.clients.http import CallStats, HttpClient, RetryPolicy
from reconciler.clients.pool import Lanes
from reconciler.clients.si import SiClient
from reconciler.clients.zoho import TokenCache, ZohoAuth, ZohoClient
from reconciler.mapping import Mapping
from reconciler.settings import Settings
from reconciler.store import Store

__all__ = ["Context", "build_clients", "build_context"]


@dataclass
class Context:
    """Every object a cycle needs, built once (by the CLI, the daemon or a test) and passed in."""

    settings: Settings
    mapping: Mapping
    store: Store
    zoho: ZohoClient
    si: SiClient
    stats: CallStats = field(default_factory=CallStats)
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.time
    http: httpx.Client | None = None
    calls: HttpClient | None = None  # the choke point both clients share (it holds the cycle's deadline)
    lanes: Lanes = field(default_factory=Lanes)  # SI's per-project calls in flight at once (1 by default)

    def close(self) -> None:
        self.lanes.close()
        if self.http is not None:
            self.http.close()


def build_context(
    settings: Settings,
    mapping: Mapping,
    store: Store,
    *,
    transport: httpx.BaseTransport | None = None,
    policy: RetryPolicy | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
) -> Context:
    """Clients, HTTP choke point and clock for one set of settings. The keyword parameters (more than
    most functions take, on purpose) are the seams tests use: a transport to the simulators, a retry
    policy without waits, a stop event, a clock."""
    stats = CallStats()
    stop = stop or threading.Event()
    raw = httpx.Client(transport=transport, timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
    http = HttpClient(raw, policy=policy or settings.retry_policy(), stats=stats, stop=stop)
    _, zoho, si = build_clients(settings, mapping, http, cache=store, clock=clock)
    return Context(
        settings,
        mapping,
        store,
        zoho,
        si,
        stats=stats,
        stop=stop,
        clock=clock,
        http=raw,
        calls=http,
        lanes=Lanes(settings.reconciler_si_concurrency),
    )


def build_clients(
    settings: Settings, mapping: Mapping, http: HttpClient, *, cache: TokenCache, clock: Callable[[], float]
) -> tuple[ZohoAuth, ZohoClient, SiClient]:
    """Zoho's OAuth and both clients over one HTTP choke point; ``cache`` keeps Zoho's access tokens (the
    store for a cycle, a fresh one in memory for ``check``)."""
    secret = settings.zoho_client_secret.get_secret_value() if settings.zoho_client_secret else ""
    refresh = settings.zoho_refresh_token.get_secret_value() if settings.zoho_refresh_token else None
    auth = ZohoAuth(
        accounts_url=settings.accounts_url,
        client_id=settings.zoho_client_id or "",
        client_secret=secret,
        refresh_token=refresh,
        soid=settings.zoho_soid,
        cache=cache,
        clock=clock,
    )
    zoho = ZohoClient(
        http,
        api_url=settings.zoho_api_url,
        default_api_url=settings.zoho_default_api_url,
        auth=auth,
        module=mapping.module,
    )
    api_key = settings.si_api_key.get_secret_value() if settings.si_api_key else ""
    return auth, zoho, SiClient(http, settings.si_base_url, api_key)
