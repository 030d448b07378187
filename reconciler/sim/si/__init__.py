"""A stateful fake of the D-Tools SI cloud *queue* (facts from ``shared/reference/dtools-si.md``).

Publishes (``POST /Publish/Projects[/Update]``) queue *publish messages* (pending); the test hook
:meth:`SiSim.import_pending` plays SI's desktop client importing them (imported or failed) and, like a
check-in with automatic export, *exports* the project. Exports are *export messages*: a ``ProjectInfo``
entry in ``GET /Subscribe/Projects`` plus a full snapshot for ``GetProjectByMessageId``, hidden once
acknowledged with ``MarkAsImported``. Test hooks edit projects and change orders as an SI user would.
A publish's nested properties (``BillingAddress``, ``Contacts`` ...) are bound by SI's ``Project`` schema and
kept; each project gets a client from :attr:`SiSim.clients`, keyed by ``IntegrationClientId``, falling back
to the client name.

Modules: :mod:`.fields` (field names, UpdateFields ids, value conversion), :mod:`.messages` (the
records kept), :mod:`.state` (queues, projects and the test hooks), :mod:`.routes` (HTTP handling).
"""

from __future__ import annotations

from reconciler.sim.si.fields import UPDATE_FIELDS
from reconciler.sim.si.messages import Ack, ExportMessage, PublishMessage, SimRequest
from reconciler.sim.si.routes import SiSim

__all__ = ["UPDATE_FIELDS", "Ack", "ExportMessage", "PublishMessage", "SiSim", "SimRequest"]
