"""Helpers for the end-to-end tests: ``reconciler`` subprocesses on served simulators, write counts, state."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from reconciler.sim.harness import SimPair
from tests.conftest import ROOT

# What the design calls a write: PUT/POST to Deals or Notes, SI publishes, and SI acknowledgements.
ZOHO_WRITES = (("PUT", "/crm/v8/Deals"), ("POST", "/crm/v8/Notes"))
SI_WRITES = (("POST", "/Publish"), ("PUT", "/Subscribe/Projects/MarkAsImported"))


def write_counts(sims: SimPair) -> dict[str, int]:
    """How many write requests each simulator has received so far, by kind."""
    counts = {f"zoho {m} {p}": sims.zoho.count(m, p) for m, p in ZOHO_WRITES}
    counts |= {f"si {m} {p}": sims.si.count(m, p) for m, p in SI_WRITES}
    return counts


def cli_env(env: dict[str, str]) -> dict[str, str]:
    """A clean operator environment (nothing inherited from ours that the reconciler reads) plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "SI_", "RECONCILER_", "CRM_"))}
    base.update(env)
    base.setdefault("PYTHONPATH", str(ROOT))
    return base


def start_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start ``python -m reconciler ARGS`` without waiting (so a test can kill it by pid)."""
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        env=cli_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def project_for(sims: SimPair, deal_id: str) -> str:
    """The id of the one SI project created for ``deal_id``."""
    found = [pid for pid, p in sims.si.projects.items() if p.get("IntegrationProjectId") == deal_id]
    assert len(found) == 1, f"deal {deal_id} has {len(found)} SI projects"
    return found[0]


SI_STATE_FIELDS = ("Name", "Client", "Price", "Hours", "Progress", "CloseDate")
ZOHO_STATE_FIELDS = ("Amount", "Labor_Hours", "Stage", "Closing_Date", "SI_Sync_Status", "CO_Number")


def canonical_state(sims: SimPair, deal_ids: list[str]) -> dict[str, Any]:
    """Both sides with generated ids and timestamps left out, comparable between two runs of one flow."""
    projects = sorted(
        (str(p.get("IntegrationProjectId")), tuple((f, p.get(f)) for f in SI_STATE_FIELDS))
        for p in sims.si.projects.values()
    )
    deals = {}
    for deal_id in deal_ids:
        deal = sims.zoho.deal(deal_id)
        deals[deal_id] = {f: deal.get(f) for f in ZOHO_STATE_FIELDS} | {
            "SI_Project_ID present": bool(deal.get("SI_Project_ID"))
        }
    notes: Counter[tuple[str, str, str]] = Counter()
    for deal_id in deal_ids:
        project_id = str(sims.zoho.deal(deal_id).get("SI_Project_ID") or "<none>")
        for note in sims.zoho.notes_for(deal_id):
            content = str(note["Note_Content"]).replace(project_id, "<project id>")
            notes[(deal_id, note["Note_Title"], content)] += 1
    return {"projects": projects, "deals": deals, "notes": sorted(notes.items())}


def state_diff(got: dict[str, Any], expected: dict[str, Any]) -> str:
    """The parts of two :func:`canonical_state` results that differ, one line each."""
    lines = []
    for part in ("projects", "notes"):
        if got[part] != expected[part]:
            extra = [x for x in got[part] if x not in expected[part]]
            missing = [x for x in expected[part] if x not in got[part]]
            lines.append(f"{part}: unexpected {extra}, missing {missing}")
    for deal_id, fields in expected["deals"].items():
        have = got["deals"].get(deal_id, {})
        changed = {k: (have.get(k), v) for k, v in fields.items() if have.get(k) != v}
        if changed:
            lines.append(f"deal {deal_id} (got, expected): {changed}")
    return "\n    ".join(lines)


def flag_three(sims: SimPair, **extra: Any) -> list[str]:
    """Three deals sales flagged for SI, with distinct accounts and amounts (plus ``extra`` fields)."""
    return [
        sims.zoho.add_deal(
            Deal_Name=f"Project {n}",
            Account_Name=f"Customer {n}",
            Send_to_SI=True,
            Amount=100 * n,
            Stage="Qualification",
            **extra,
        )
        for n in range(1, 4)
    ]


def linked_three(sims: SimPair, run: Any, **extra: Any) -> tuple[list[str], list[str]]:
    """Three flagged deals created in SI and imported there (``run()`` runs one cycle); deals, projects."""
    deals = flag_three(sims, **extra)
    run()
    sims.si.import_pending()
    run()
    return deals, [project_for(sims, deal) for deal in deals]


def zoho_puts(sims: SimPair) -> list[Any]:
    """The bodies of every ``PUT /crm/v8/Deals`` Zoho received, in order."""
    return [body for method, path, body in sims.zoho.requests if method == "PUT" and path == "/crm/v8/Deals"]


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    """Until ``pid`` is a zombie (or gone): SIGKILL is asynchronous, and an answer must find it dead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not die")
