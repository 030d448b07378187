"""Both simulators together, in-process (one routing transport) or on loopback sockets.

Used by ``reconciler demo``, the end-to-end tests and the benchmarks; it builds the same
:class:`~reconciler.settings.Settings` an operator would write, pointed at the simulators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from reconciler.settings import Settings
from reconciler.sim.server import Observer, RequestCounter, SimServer
from reconciler.sim.si import SiSim
from reconciler.sim.wire import Wire
from reconciler.sim.zoho import ZohoSim

__all__ = ["IN_PROCESS_SI", "IN_PROCESS_ZOHO", "SimPair"]

IN_PROCESS_ZOHO = "http://zoho.sim"
IN_PROCESS_SI = "http://si.sim/SI"


@dataclass
class SimPair:
    zoho: ZohoSim = field(default_factory=ZohoSim)
    si: SiSim = field(default_factory=SiSim)
    servers: list[SimServer] = field(default_factory=list)
    counter: RequestCounter = field(default_factory=RequestCounter)
    si_wire: Wire = field(default_factory=Wire)  # the network to each: latency, requests in flight
    zoho_wire: Wire = field(default_factory=Wire)

    # ---- in-process -------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "zoho.sim":
            return self.zoho_wire.carry(self.zoho.handle, request)
        return self.si_wire.carry(self.si.handle, request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ---- loopback servers -------------------------------------------------------------------------

    def start(self, observer: Observer | None = None) -> SimPair:
        self.servers = [
            SimServer(self.zoho.handle, observer=observer, counter=self.counter, wire=self.zoho_wire).start(),
            SimServer(self.si.handle, observer=observer, counter=self.counter, wire=self.si_wire).start(),
        ]
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers = []

    def __enter__(self) -> SimPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def zoho_url(self) -> str:
        return self.servers[0].url if self.servers else IN_PROCESS_ZOHO

    @property
    def si_url(self) -> str:
        return self.servers[1].url + "/SI" if self.servers else IN_PROCESS_SI

    def environment(self, db: Path, mapping: Path | None = None, **extra: str) -> dict[str, str]:
        """Environment variables for a ``reconciler`` process talking to these simulators."""
        env = {
            "ZOHO_CLIENT_ID": self.zoho.client_id,
            "ZOHO_CLIENT_SECRET": self.zoho.client_secret,
            "ZOHO_REFRESH_TOKEN": self.zoho.refresh_token,
            "ZOHO_API_URL": self.zoho_url,
            "ZOHO_ACCOUNTS_URL": self.zoho_url,
            "SI_API_KEY": self.si.api_key,
            "SI_BASE_URL": self.si_url,
            "RECONCILER_DB": str(db),
        }
        if mapping is not None:
            env["RECONCILER_MAPPING"] = str(mapping)
        env.update(extra)
        return env

    def settings(self, db: Path, mapping: Path | None = None, **overrides: Any) -> Settings:
        """Settings pointed at these simulators (environment and .env are ignored for these keys)."""
        values: dict[str, Any] = {
            "zoho_client_id": self.zoho.client_id,
            "zoho_client_secret": self.zoho.client_secret,
            "zoho_refresh_token": self.zoho.refresh_token,
            "zoho_api_url": self.zoho_url,
            "zoho_accounts_url": self.zoho_url,
            "si_api_key": self.si.api_key,
            "si_base_url": self.si_url,
            "reconciler_db": db,
        }
        if mapping is not None:
            values["reconciler_mapping"] = mapping
        values.update(overrides)
        return Settings(**values)
