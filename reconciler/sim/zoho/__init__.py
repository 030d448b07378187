"""A stateful fake of Zoho accounts (OAuth) and CRM v8, following ``shared/reference/zoho-crm-v8.md``.

One :class:`ZohoSim` serves ``POST /oauth/v2/token`` and ``/crm/v8/...`` on the same origin:

- tokens: refresh-token, authorization-code (codes from :meth:`ZohoSim.issue_grant_code`) and
  client-credentials (``soid=ZohoCRM.<org>``) grants; one-hour tokens; at most 10 per grant per 10 minutes
  (``Access Denied``) unless ``token_limit`` is off; a bad grant is HTTP 200 ``invalid_code``;
- ``POST /crm/v8/coql``: the subset of COQL the client sends, criteria grouped in pairs as Zoho demands,
  lookups joined to accounts, contacts and users (``Account_Name.Billing_City``, ``Contact_Name.Email``,
  ``Owner.full_name``; see :meth:`ZohoSim.add_account`, ``add_contact``, ``add_user``);
- ``PUT /crm/v8/Deals`` and ``POST /crm/v8/Notes`` with per-record results (200/201/207/400);
- ``GET /crm/v8/Deals/{id}/Notes`` paged, ``GET /crm/v8/settings/fields?module=Deals`` (and ``Accounts``,
  ``Contacts``);
- every error in Zoho's envelope ``{"code", "details", "message", "status": "error"}``.

Tests queue faults with :meth:`ZohoSim.inject` and read ``requests`` (method, path, JSON body or None).

Modules: :mod:`.coql` (the COQL parser and evaluator), :mod:`.state` (data and admin helpers),
:mod:`.routes` (HTTP handling).
"""

from __future__ import annotations

from reconciler.sim.zoho.coql import CoqlError
from reconciler.sim.zoho.routes import ZohoSim
from reconciler.sim.zoho.state import ACCESS_DENIED, SIM_USER, default_fields_meta

__all__ = ["ACCESS_DENIED", "SIM_USER", "CoqlError", "ZohoSim", "default_fields_meta"]
