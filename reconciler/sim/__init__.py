"""Stateful simulators of Zoho CRM v8 and the D-Tools SI queue, built from ``shared/reference``.

Each simulator is a plain function ``httpx.Request -> httpx.Response`` (its ``handle`` method), so it
serves in-process through ``httpx.MockTransport`` for fast tests, and over real sockets on 127.0.0.1
through :class:`reconciler.sim.server.SimServer` for the demo and the end-to-end tests.
"""
