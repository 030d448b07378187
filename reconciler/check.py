"""``reconciler check``: probe every read the daemon makes, in its production form, at the smallest size.

One probe per read, in this order, each printed as one line (``ok``, ``warn``, ``FAIL`` or ``skip``):

- ``zoho.token``: the token grant, asked for afresh (a cached token would prove nothing);
- ``zoho.fields``: ``GET /settings/fields?module=Deals``; every mapped field exists, its type fits, and the
  fields the reconciler writes are writable (not read-only, not a formula), text fields included; every
  field read through a lookup exists on the looked-up module (``GET /settings/fields?module=Accounts``,
  once per module joined) with a type that fits the SI property it fills;
- ``zoho.coql``: the deals query of a full cycle, word for word (:mod:`reconciler.queries`: the quoted
  boolean, the account join), ``LIMIT 1``; on ``OAUTH_SCOPE_MISMATCH`` the same query without its joins
  tells which scope is missing;
- ``zoho.coql.since``: the same with the ``Modified_Time >= '...'`` criterion of an incremental cycle;
- ``si.subscribe.list``: ``GET /Subscribe/Projects`` as a cycle sends it, page size 1;
- ``si.message_statuses``: the pending-publish listing with its indexed filters, page size 1; an entry
  that does not match the filter is a ``warn`` (SI ignored it; the daemon copes, at a cost).

A failure prints the vendor's own error code and the fix; a network failure names the host and endpoint.
Requests get 2 attempts (the daemon makes 5). Nothing is written: not to Zoho, not to SI, not to the
database (the token lives in memory). Exit 0 when every probe passes (``warn`` included), 78 when a failure
is fixed in the settings or the mapping (credentials, a missing or unfit field), else 1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from reconciler.check_fields import field_problems, join_problems, joined_reads, lookup_scopes
from reconciler.clients.http import HttpClient, RetryPolicy
from reconciler.clients.si import MESSAGE_PENDING, TYPE_PROJECT, TYPE_UPDATE_PROJECT, SiClient
from reconciler.clients.zoho import SCOPE_MISMATCH, MemoryTokenCache, ZohoAuth, ZohoClient
from reconciler.errors import (
    EX_CONFIG,
    EX_FAIL,
    EX_OK,
    ApiError,
    ConfigError,
    CredentialsError,
    TransientApiError,
)
from reconciler.mapping import Mapping
from reconciler.queries import deal_columns, deal_where, joined_modules, select
from reconciler.recording import RecordingTransport
from reconciler.settings import Settings

__all__ = ["CHECK_POLICY", "CheckReport", "Probe", "field_problems", "run_check"]

# Fewer and shorter retries than a cycle's (5 attempts, up to 60 s): a person is waiting.
CHECK_POLICY = RetryPolicy(attempts=2, initial_wait=1.0, max_wait=4.0, jitter=0.5, max_retry_after=10.0)
LOOKBACK_SECONDS = 600  # as the cycle: an incremental read starts 10 minutes before its cursor

Status = Literal["ok", "warn", "FAIL", "skip"]


@dataclass(frozen=True)
class Probe:
    """One probe's outcome. ``config`` marks a failure fixed in the settings or mapping (exit 78)."""

    name: str
    status: Status
    detail: str
    problems: tuple[str, ...] = ()
    config: bool = False
    blocks: bool = False  # the vendor refused our credentials: its later probes cannot run

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<19} {self.detail}"


@dataclass
class CheckReport:
    """Every probe, and the recording of what was sent and answered."""

    probes: list[Probe] = field(default_factory=list)
    recording: RecordingTransport | None = None

    @property
    def exit_code(self) -> int:
        failed = [p for p in self.probes if p.status == "FAIL"]
        if any(p.config for p in failed):
            return EX_CONFIG
        return EX_FAIL if failed else EX_OK

    @property
    def problems(self) -> list[str]:
        return [problem for p in self.probes if p.status == "FAIL" for problem in (p.problems or (p.detail,))]


@dataclass
class _Rig:
    """The clients a check uses, all on one recording transport."""

    settings: Settings
    mapping: Mapping
    recorder: RecordingTransport
    http: HttpClient
    auth: ZohoAuth
    zoho: ZohoClient
    si: SiClient
    catalogue: list[dict[str, Any]] | None = None


def run_check(
    settings: Settings,
    mapping: Mapping,
    *,
    transport: httpx.BaseTransport | None = None,
    policy: RetryPolicy = CHECK_POLICY,
    clock: Callable[[], float] = time.time,
) -> CheckReport:
    """Run every probe against the configured APIs (or ``transport``); never raises for an API failure."""
    recorder = RecordingTransport(transport or httpx.HTTPTransport())
    raw = httpx.Client(transport=recorder, timeout=httpx.Timeout(15.0, connect=5.0), follow_redirects=False)
    report = CheckReport(recording=recorder)
    try:
        rig = _rig(settings, mapping, recorder, HttpClient(raw, policy=policy), clock)
        zoho = [("zoho.fields", _fields), ("zoho.coql", _deals), ("zoho.coql.since", _since)]
        _run_vendor(report, rig, [("zoho.token", _token), *zoho])
        _run_vendor(report, rig, [("si.subscribe.list", _exports), ("si.message_statuses", _statuses)])
    finally:
        raw.close()
    return report


def _rig(
    settings: Settings,
    mapping: Mapping,
    recorder: RecordingTransport,
    http: HttpClient,
    clock: Callable[[], float],
) -> _Rig:
    from reconciler.context import build_clients

    # A fresh grant every check (a token cache in memory): the daemon's cached token is left alone.
    auth, zoho, si = build_clients(settings, mapping, http, cache=MemoryTokenCache(), clock=clock)
    return _Rig(settings, mapping, recorder, http, auth, zoho, si)


ProbeFn = Callable[["_Rig"], Probe]


def _run_vendor(report: CheckReport, rig: _Rig, probes: Sequence[tuple[str, ProbeFn]]) -> None:
    """One vendor's probes in order; after a failure that blocks the rest (refused credentials, mapped
    fields Zoho lacks), the rest are skipped: they would fail for the same reason."""
    blocker: Probe | None = None
    for name, probe in probes:
        if blocker is not None:
            report.probes.append(Probe(name, "skip", f"skipped until {blocker.name} passes"))
            continue
        result = _run(rig, name, probe)
        report.probes.append(result)
        blocker = result if result.blocks else None


def _run(rig: _Rig, name: str, probe: ProbeFn) -> Probe:
    """Run one probe, turning any API failure into its line."""
    with rig.recorder.labelled(name):
        try:
            return probe(rig)
        except CredentialsError as exc:
            last = rig.recorder.last(name)
            if last is not None and last.response is not None and _code(last) == SCOPE_MISMATCH:
                return _scope_refused(name)
            return _failed(rig, name, str(exc), config=True, blocks=True)
        except ConfigError as exc:
            return Probe(name, "FAIL", "; ".join(exc.problems), exc.problems, config=True, blocks=True)
        except TransientApiError as exc:
            return _unreachable(rig, name, exc)
        except ApiError as exc:
            return _vendor_refusal(rig, name, exc)


# ---- the probes ------------------------------------------------------------------------------------------


def _token(rig: _Rig) -> Probe:
    rig.auth.grant(rig.http)
    host = httpx.URL(rig.auth.token_url).host
    kind = "refresh-token" if rig.auth.grant_type == "refresh_token" else "client-credentials"
    return Probe("zoho.token", "ok", f"Zoho: credentials OK ({kind} grant at {host})")


def _fields(rig: _Rig) -> Probe:
    rig.catalogue = rig.zoho.fields()
    catalogues: dict[str, list[dict[str, Any]]] = {}

    def catalogue_of(module: str) -> list[dict[str, Any]]:  # each joined module's fields, read once
        if module not in catalogues:
            catalogues[module] = rig.zoho.fields(module)
        return catalogues[module]

    problems = field_problems(rig.mapping, rig.catalogue)
    problems += join_problems(rig.mapping, rig.catalogue, catalogue_of)
    if problems:
        summary = f"{len(problems)} mapping problem(s) against Zoho's {rig.mapping.module} fields"
        return Probe("zoho.fields", "FAIL", summary, tuple(problems), config=True, blocks=True)
    reads = len(joined_reads(rig.mapping))
    joined = f" ({reads} read through lookups)" if reads else ""
    modules = f" (fields of {', '.join(catalogues)} read too)" if catalogues else ""
    return Probe(
        "zoho.fields",
        "ok",
        f"{len(rig.catalogue)} fields on {rig.mapping.module}; every mapped field{joined} exists, fits and,"
        f" where written, is writable{modules}",
    )


def _deals(rig: _Rig) -> Probe:
    return _coql_probe(rig, "zoho.coql", deal_where(rig.mapping, None), "full read")


def _since(rig: _Rig) -> Probe:
    moment = datetime.fromtimestamp(time.time(), UTC) - timedelta(seconds=LOOKBACK_SECONDS)
    since = moment.replace(microsecond=0).isoformat()  # the form the cycle sends (an ISO time, UTC offset)
    return _coql_probe(rig, "zoho.coql.since", deal_where(rig.mapping, since), "incremental read")


def _coql_probe(rig: _Rig, name: str, where: str, label: str) -> Probe:
    columns = deal_columns(rig.mapping)
    query = select(rig.mapping.module, columns, where, limit=1)
    try:
        rows, _ = rig.zoho.coql(query)
    except CredentialsError:
        last = rig.recorder.last(name)
        if last is not None and last.response is not None and _code(last) == SCOPE_MISMATCH:
            return _scope_probe(rig, name, columns, where)
        raise
    if not rows:
        return Probe(name, "ok", f"the deals query ({label}, LIMIT 1) answered: no rows (HTTP 204)")
    missing = [c for c in ("id", *columns) if c not in rows[0]]
    if missing:  # the daemon reads each column under its own name (a join as "Account_Name.Account_Name")
        return Probe(
            name,
            "warn",
            f"the deals query ({label}) answered, but its row lacks {', '.join(missing)}: the daemon reads"
            " those columns under exactly these keys; keep the answer (`check --record FILE`) for support",
        )
    return Probe(name, "ok", f"the deals query ({label}, LIMIT 1) answered: 1 row with every column")


def _scope_probe(rig: _Rig, name: str, columns: Sequence[str], where: str) -> Probe:
    """OAUTH_SCOPE_MISMATCH on the deals query: the same query without joins tells whose scope is missing."""
    joins = joined_modules(columns)
    plain = [c for c in columns if c.split(".", 1)[0] not in joins or "." not in c]
    try:
        rig.zoho.coql(select(rig.mapping.module, plain, where, limit=1))
    except (CredentialsError, ApiError):
        missing = [f"ZohoCRM.modules.{rig.mapping.module.lower()}.READ", "ZohoCRM.coql.READ"]
        why = "even without its joins the query is refused"
    else:
        refused = [join for join in joins if not _join_allowed(rig, plain, columns, join, where)]
        refused = refused or joins  # each join alone passes: name them all
        missing = lookup_scopes(refused, rig.catalogue)
        why = f"the deals query joins {', '.join(refused)}"
    scopes = " and ".join(missing)
    problem = (
        f"{name}: Zoho answered {SCOPE_MISMATCH} (HTTP 401): the grant lacks {scopes} ({why}); make a new"
        " grant code with the README's scopes and run `reconciler auth --code CODE`"
    )
    return Probe(name, "FAIL", f"{SCOPE_MISMATCH}: add {scopes} to the grant ({why})", (problem,))


def _join_allowed(rig: _Rig, plain: list[str], columns: Sequence[str], join: str, where: str) -> bool:
    """Whether the deals query with only ``join``'s columns (besides the plain ones) passes the grant."""
    with_join = [*plain, *(c for c in columns if c.startswith(f"{join}."))]
    try:
        rig.zoho.coql(select(rig.mapping.module, with_join, where, limit=1))
    except CredentialsError:
        return False
    except ApiError:
        return True  # refused for another reason: not this join's scope
    return True


def _exports(rig: _Rig) -> Probe:
    page = rig.si.exports_page(page_size=1)
    waiting = "unknown" if page.total is None else str(page.total)
    return Probe(
        "si.subscribe.list",
        "ok",
        f"D-Tools SI: SI_API_KEY accepted. Unacknowledged export messages waiting: {waiting}",
    )


def _statuses(rig: _Rig) -> Probe:
    wanted_status, wanted_type = (MESSAGE_PENDING,), (TYPE_PROJECT, TYPE_UPDATE_PROJECT)
    statuses, total = rig.si.message_statuses_page(wanted_status, wanted_type, page_size=1)
    pending = "unknown" if total is None else str(total)
    odd = [s for s in statuses if s.status_id not in wanted_status or s.type_id not in wanted_type]
    if odd:
        return Probe(
            "si.message_statuses",
            "warn",
            f"SI ignored the filter (asked for StatusId 1, TypeId 11/12; got StatusId {odd[0].status_id},"
            f" TypeId {odd[0].type_id}): the daemon skips such entries, but reads every page; tell D-Tools",
        )
    return Probe("si.message_statuses", "ok", f"the pending-publish listing answered; pending: {pending}")


_PROBE_SCOPES = {"zoho.fields": "ZohoCRM.settings.fields.READ"}


# ---- failures ----------------------------------------------------------------------------------------------


def _code(exchange: Any) -> str | None:
    body = exchange.body()
    if isinstance(body, dict):
        for key in ("code", "error", "Message", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _vendor_refusal(rig: _Rig, name: str, exc: ApiError) -> Probe:
    """The vendor refused (or garbled) a read in the form the daemon sends: its own words, and who to ask."""
    last = rig.recorder.last(name)
    body = last.body() if last is not None else None
    said = exc.detail
    if isinstance(body, dict) and isinstance(body.get("details"), dict) and body["details"]:
        said += f" {json.dumps(body['details'], sort_keys=True)}"  # Zoho: near, clause, column_name ...
    if isinstance(body, dict) and isinstance(body.get("ModelState"), dict):
        said += f" (ModelState: {', '.join(map(str, body['ModelState']))})"  # ASP.NET: the refused keys
    status = f"HTTP {exc.status} " if exc.status is not None else ""
    vendor = "Zoho" if name.startswith("zoho") else "D-Tools SI"
    message = (
        f"{status}{said}; {vendor} refused the request in the form the daemon sends it: keep the answer"
        f" (`reconciler check --record FILE`) for {vendor} support and see the README's vendor assumptions"
    )
    return Probe(name, "FAIL", message, (f"{name}: {message}",))


def _failed(rig: _Rig, name: str, message: str, *, config: bool = False, blocks: bool = False) -> Probe:
    """Refused credentials: the vendor's status and code (from the recorded answer) before our explanation."""
    last = rig.recorder.last(name)
    answered = last is not None and last.response is not None
    code = _code(last) if answered else None
    status = f"HTTP {last.response.status_code} " if last is not None and last.response is not None else ""
    detail = f"{status}{code}: {message}" if code and code not in message else message
    return Probe(name, "FAIL", detail, (message,), config=config, blocks=blocks)


def _scope_refused(name: str) -> Probe:
    """OAUTH_SCOPE_MISMATCH on a probe other than the deals query (whose own handler names the scope)."""
    scope = _PROBE_SCOPES.get(name, "the scopes the README lists")
    problem = (
        f"{name}: Zoho answered {SCOPE_MISMATCH} (HTTP 401): the grant lacks {scope}; make a new grant code"
        " with the README's scopes and run `reconciler auth --code CODE`"
    )
    return Probe(name, "FAIL", f"{SCOPE_MISMATCH}: add {scope} to the grant", (problem,))


def _unreachable(rig: _Rig, name: str, exc: TransientApiError) -> Probe:
    last = rig.recorder.last(name)
    where = last.endpoint if last is not None else exc.endpoint
    host = httpx.URL(where.split(" ", 1)[1]).host if last is not None else "?"
    message = (
        f"{name}: cannot reach {host} ({where}): {exc.detail} after {rig.http.policy.attempts} attempts;"
        " check the network, proxy and firewall, and the URL settings (ZOHO_DC, ZOHO_API_URL,"
        " ZOHO_ACCOUNTS_URL, SI_BASE_URL)"
    )
    if last is not None and last.response is not None:  # a 429/5xx that outlasted the retries
        message = f"{name}: {where} kept answering {exc.detail}; try again later"
    return Probe(name, "FAIL", message.removeprefix(f"{name}: "), (message,), blocks=True)
