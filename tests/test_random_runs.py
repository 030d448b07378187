"""Randomized, model-based runs over both simulators: whatever happens, once things settle, all is in step.

Each run is a seeded script of random steps: new deals (ticked or not, with or without an account), ticks,
unticks and re-ticks, accounts fixed later, Zoho edits of mapped and unmapped fields, SI edits, change
orders created and moved through states, SI imports, transient faults (some of them hitting *after* the
write took effect: the answer is lost), in-process cycles, and real ``reconciler run-once`` processes
killed with SIGKILL at a random request. Then the faults stop and cycles run until they write nothing, and:

* every deal has at most one SI project, and a deal never ticked has none;
* every ticked deal with an account is linked (carries its project's id);
* for each active pair, Zoho holds SI's latest value of every ``si_to_zoho`` field, SI holds Zoho's value
  of every ``zoho_to_si`` field, and the ``both`` field agrees;
* every change-order state a poll could see (exported while its deal stayed ticked) has exactly one note,
  with its real number, name and status; no state has two;
* a settled run writes nothing.

``make test`` runs a few short seeds; ``make proof`` runs ``RECONCILER_MODEL_RUNS`` (20) seeds of
``RECONCILER_MODEL_STEPS`` (30) steps; each test's id names its seed. Replay one with
``RECONCILER_MODEL_SEEDS=17 RECONCILER_MODEL_STEPS=30 pytest tests/test_random_runs.py``.
"""

from __future__ import annotations

import os
import random
import signal
import textwrap
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.clients.http import RetryPolicy
from reconciler.context import build_context
from reconciler.cycle import CycleOptions, run_cycle
from reconciler.mapping import load_mapping
from reconciler.sim.harness import IN_PROCESS_SI, IN_PROCESS_ZOHO, SimPair
from reconciler.store import Store
from tests.conftest import TWO_WAY_MAPPING
from tests.e2e.helpers import start_cli, wait_dead, write_counts

MAPPING = TWO_WAY_MAPPING.replace('on_conflict = "manual"', 'on_conflict = "zoho_wins"')
STAGES = {"Approved": "Closed Won", "On Hold": "Negotiation"}  # the mapping's value map (SI -> Zoho)
RUNS = int(os.environ.get("RECONCILER_MODEL_RUNS", "3"))
STEPS = int(os.environ.get("RECONCILER_MODEL_STEPS", "12"))
SEEDS = [int(s) for s in os.environ.get("RECONCILER_MODEL_SEEDS", "").split(",") if s.strip()] or list(
    range(1, RUNS + 1)
)
SETTLE_CYCLES = 12


@dataclass
class CoState:
    project: str
    number: str
    name: str
    status: str
    deal: str
    flagged_throughout: bool = True  # the deal stayed ticked from this export until now


@dataclass
class Run:
    """The simulators, a store, and what the script did (the model the invariants are checked against)."""

    seed: int
    workdir: Path
    rng: random.Random = field(init=False)
    sims: SimPair = field(default_factory=SimPair)
    ever_flagged: set[str] = field(default_factory=set)
    flagged: dict[str, bool] = field(default_factory=dict)
    si_set: dict[str, dict[str, Any]] = field(default_factory=dict)  # project -> fields an SI user set
    co_states: list[CoState] = field(default_factory=list)
    co_names: dict[tuple[str, str], str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    kill_at: tuple[int, str] | None = None
    pid: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.mapping_path = self.workdir / "mapping.toml"
        self.mapping_path.write_text(textwrap.dedent(MAPPING), encoding="utf-8")
        self.sims.start(observer=self._observe)
        self.db = self.workdir / "reconciler.db"
        self.env = self.sims.environment(self.db, self.mapping_path)
        settings = self.sims.settings(  # in-process cycles reach the same simulators without a socket
            self.db,
            self.mapping_path,
            zoho_api_url=IN_PROCESS_ZOHO,
            zoho_accounts_url=IN_PROCESS_ZOHO,
            si_base_url=IN_PROCESS_SI,
        )
        self.store = Store.open(self.db)
        self.ctx = build_context(
            settings,
            load_mapping(self.mapping_path),
            self.store,
            transport=self.sims.transport(),
            policy=RetryPolicy.no_waits(),
        )
        self.seen = 0

    def close(self) -> None:
        self.ctx.close()
        self.store.close()
        self.sims.stop()

    # ---- killing a real run-once ----------------------------------------------------------------------

    def _observe(self, phase: str, n: int, request: httpx.Request) -> None:
        with self._lock:
            if self.pid is None:
                return
            if phase == "received":
                self.seen += 1
            if self.kill_at != (self.seen, phase):
                return
            os.kill(self.pid, signal.SIGKILL)
            wait_dead(self.pid)
            self.kill_at = None
        if phase == "received":
            raise httpx.RemoteProtocolError("killed before the simulator applied it")

    def killed_run(self) -> str:
        """A real ``run-once`` process, SIGKILLed at a random request (if it makes that many)."""
        point = (self.rng.randint(1, 12), self.rng.choice(["received", "handled"]))
        self._cycle_started()
        with self._lock:
            self.seen, self.kill_at = 0, point
        proc = start_cli(["run-once"], self.env, self.workdir)
        self.pid = proc.pid
        try:
            proc.communicate(timeout=120)
        finally:
            with self._lock:
                self.kill_at, self.pid = None, None
        killed = proc.returncode == -signal.SIGKILL
        return f"run-once killed at request {point[0]} ({point[1]})" if killed else "run-once exited"

    def cycle(self) -> Any:
        self._cycle_started()
        return run_cycle(self.ctx, CycleOptions()).report

    def _cycle_started(self) -> None:
        for state in self.co_states:
            if not self.flagged.get(state.deal):
                state.flagged_throughout = False

    # ---- the random steps -------------------------------------------------------------------------------

    def deals(self) -> list[str]:
        return sorted(self.flagged)

    def linked_projects(self) -> list[tuple[str, str]]:
        out = []
        for deal in self.deals():
            project = self.sims.zoho.deal(deal).get("SI_Project_ID")
            if project and project in self.sims.si.projects:
                out.append((deal, str(project)))
        return out

    def begin(self) -> None:
        """Three ticked deals, created in SI and imported: most steps then have a pair to work on."""
        for n in range(3):
            deal = self.sims.zoho.add_deal(
                Deal_Name=f"Start {n}", Account_Name="Acme", Send_to_SI=True, Amount=100 * (n + 1)
            )
            self._flag(deal, True)
        self._cycle()
        self._import()
        self._cycle()

    def step(self) -> None:
        kinds = [
            "new_deal", "new_deal", "tick", "untick", "fix_account", "zoho_close", "zoho_name",
            "zoho_amount", "zoho_unmapped", "si_price", "si_hours", "si_progress", "si_name", "co_add",
            "co_add", "co_status", "co_status", "import", "import", "fault", "cycle", "cycle", "cycle",
            "kill",
        ]  # fmt: skip
        kind = self.rng.choice(kinds)
        getattr(self, f"_{kind}")()

    def _new_deal(self) -> None:
        flagged = self.rng.random() < 0.7
        fields: dict[str, Any] = {"Deal_Name": f"Deal {len(self.flagged) + 1}", "Send_to_SI": flagged}
        if self.rng.random() < 0.8:
            fields["Account_Name"] = self.rng.choice(["Acme", "Harbor", "Lakeside"])
        if self.rng.random() < 0.5:
            fields["Closing_Date"] = self.rng.choice(["2027-01-31", "2027-06-30"])
        deal = self.sims.zoho.add_deal(Amount=self.rng.choice([100, 250]), **fields)
        self._flag(deal, flagged)
        self.log.append(f"new deal {deal} {fields}")

    def _flag(self, deal: str, flagged: bool) -> None:
        self.flagged[deal] = flagged
        if flagged:
            self.ever_flagged.add(deal)

    def _pick(self, flagged: bool | None = None) -> str | None:
        choices = [d for d in self.deals() if flagged is None or self.flagged[d] == flagged]
        return self.rng.choice(choices) if choices else None

    def _edit(self, deal: str | None, **fields: Any) -> None:
        if deal is not None:
            self.sims.zoho.edit_deal(deal, **fields)
            self.log.append(f"zoho edit {deal} {fields}")

    def _tick(self) -> None:
        deal = self._pick(False)
        if deal is not None:
            self._edit(deal, Send_to_SI=True)
            self._flag(deal, True)

    def _untick(self) -> None:
        deal = self._pick(True)
        if deal is not None:
            self._edit(deal, Send_to_SI=False)
            self._flag(deal, False)

    def _fix_account(self) -> None:
        bare = [d for d in self.deals() if not self.sims.zoho.deal(d).get("Account_Name")]
        if bare:
            self._edit(self.rng.choice(bare), Account_Name="Fixed Account")

    def _zoho_close(self) -> None:
        self._edit(self._pick(), Closing_Date=self.rng.choice(["2027-02-28", "2027-09-30", "2028-02-29"]))

    def _zoho_name(self) -> None:
        self._edit(self._pick(), Deal_Name=self.rng.choice(["Alpha", "Bravo", "Charlie"]))

    def _zoho_amount(self) -> None:
        self._edit(self._pick(), Amount=self.rng.choice([1, 2, 3]))

    def _zoho_unmapped(self) -> None:
        self._edit(self._pick(), Description=self.rng.choice(["call back", "site visit"]))

    def _si_edit(self, **fields: Any) -> None:
        linked = self.linked_projects()
        if not linked:
            return
        _, project = self.rng.choice(linked)
        self.sims.si.edit_project(project, **fields)
        self.si_set.setdefault(project, {}).update(fields)
        self.log.append(f"si edit {project} {fields}")

    def _si_price(self) -> None:
        self._si_edit(Price=self.rng.choice([1500.0, 2250.5, 99999.99]))

    def _si_hours(self) -> None:
        self._si_edit(Hours=self.rng.choice([4.0, 12.5, 40.0]))

    def _si_progress(self) -> None:
        self._si_edit(Progress=self.rng.choice(["Approved", "On Hold", "Design"]))

    def _si_name(self) -> None:
        self._si_edit(Name=self.rng.choice(["Delta", "Echo"]))

    def _co_add(self) -> None:
        linked = self.linked_projects()
        if not linked:
            return
        deal, project = self.rng.choice(linked)
        number = str(self.rng.randint(1, 3))
        name = f"CO {number} of {project[:4]}"
        self.sims.si.add_change_order(project, number, name, status="Pending")
        self.co_names[(project, number)] = name
        self._co_state(deal, project, number, "Pending")

    def _co_status(self) -> None:
        known = [(p, n) for p, n in self.co_names if p in self.sims.si.change_orders]
        if not known:
            return
        project, number = self.rng.choice(sorted(known))
        status = self.rng.choice(["Approved", "Rejected", "Pending"])
        self.sims.si.set_change_order_status(project, number, status)
        deal = str(self.sims.si.projects[project].get("IntegrationProjectId"))
        self._co_state(deal, project, number, status)

    def _co_state(self, deal: str, project: str, number: str, status: str) -> None:
        name = self.co_names[(project, number)]
        self.co_states.append(CoState(project, number, name, status, deal, bool(self.flagged.get(deal))))
        self.log.append(f"co {project} {number} {status}")

    def _import(self) -> None:
        self.sims.si.import_pending()
        self.log.append("si import")

    def _fault(self) -> None:
        faults = [
            lambda: self.sims.zoho.inject("PUT", "/crm/v8/Deals", status=503, times=1),
            lambda: self.sims.zoho.inject("PUT", "/crm/v8/Deals", kind="timeout", before=False),
            lambda: self.sims.zoho.inject("POST", "/crm/v8/Notes", kind="reset", before=False),
            lambda: self.sims.zoho.inject("POST", "/crm/v8/coql", kind="timeout", times=5),
            lambda: self.sims.si.inject("POST", "/Publish/Projects", kind="timeout", times=1),
            lambda: self.sims.si.inject("GET", "/Subscribe/Projects", status=503, times=5),
            lambda: self.sims.si.inject("PUT", "/Subscribe/Projects/MarkAsImported", status=500, times=5),
        ]
        choice = self.rng.randrange(len(faults))
        faults[choice]()
        self.log.append(f"fault {choice}")

    def _cycle(self) -> None:
        report = self.cycle()
        self.log.append(f"cycle: {report.summary()}")

    def _kill(self) -> None:
        self.log.append(self.killed_run())

    # ---- settling and the invariants ---------------------------------------------------------------------

    def settle(self) -> None:
        self.sims.zoho.clear_faults()
        self.sims.si.clear_faults()
        for _ in range(SETTLE_CYCLES):
            self.sims.si.import_pending()
            before = write_counts(self.sims)
            report = self.cycle()
            self.log.append(f"settle: {report.summary()}")
            pending = any(m.status_id == 1 for m in self.sims.si.publish_messages)
            quiet = write_counts(self.sims) == before and not pending
            if quiet and report.outcome in ("ok", "parked"):
                return
        raise AssertionError(
            f"seed {self.seed}: did not settle in {SETTLE_CYCLES} cycles\nsteps:\n  " + "\n  ".join(self.log)
        )

    def check(self) -> list[str]:
        problems: list[str] = []
        zoho, si = self.sims.zoho, self.sims.si
        by_deal = Counter(str(p.get("IntegrationProjectId")) for p in si.projects.values())
        for deal in self.deals():
            if by_deal[deal] > 1:
                problems.append(f"deal {deal} has {by_deal[deal]} SI projects")
            if deal not in self.ever_flagged and by_deal[deal]:
                problems.append(f"deal {deal} was never ticked but has an SI project")
            record = zoho.deal(deal)
            if self.flagged[deal] and record.get("Account_Name") and not record.get("SI_Project_ID"):
                problems.append(f"ticked deal {deal} with an account is not linked")
        for deal, project in self.linked_projects():
            if self.flagged[deal]:
                problems += self._pair_problems(deal, project)
        problems += self._note_problems()
        return problems

    def _pair_problems(self, deal: str, project: str) -> list[str]:
        record, proj = self.sims.zoho.deal(deal), self.sims.si.projects[project]
        set_in_si = self.si_set.get(project, {})
        out = []

        def same(label: str, zoho_value: Any, si_value: Any) -> None:
            if zoho_value != si_value:
                out.append(f"deal {deal} / {project}: {label}: Zoho {zoho_value!r} vs SI {si_value!r}")

        if "Price" in set_in_si:
            same("Amount <- Price", _number(record.get("Amount")), _number(proj.get("Price")))
        if "Hours" in set_in_si:
            same("Labor_Hours <- Hours", _number(record.get("Labor_Hours")), _number(proj.get("Hours")))
        if "Progress" in set_in_si:
            progress = str(proj.get("Progress"))
            same("Stage <- Progress", record.get("Stage"), STAGES.get(progress, progress))
        if record.get("Closing_Date"):
            same(
                "Closing_Date -> CloseDate", record.get("Closing_Date"), str(proj.get("CloseDate") or "")[:10]
            )
        same("Deal_Name <-> Name", record.get("Deal_Name"), proj.get("Name"))
        states = [s for s in self.co_states if s.project == project]
        if states:
            newest = self.sims.si.export_messages
            numbers = [str(m.co_number) for m in newest if m.project_id == project and m.co_number]
            same("CO_Number <- CONumber", record.get("CO_Number"), numbers[-1] if numbers else None)
        return out

    def _note_problems(self) -> list[str]:
        out = []
        counted: Counter[tuple[str, str, str, str]] = Counter()
        for deal in self.deals():
            for note in self.sims.zoho.notes_for(deal):
                reference = str(note["Note_Content"]).rsplit("[zohosi-ref ", 1)[-1]
                counted[(deal, reference, note["Note_Title"], str(note["Note_Content"]).split("\n")[0])] += 1
        for key, count in counted.items():
            if count > 1:
                out.append(f"note written {count} times: {key}")
        for state in self.co_states:
            if not state.flagged_throughout or not self.flagged.get(state.deal):
                continue
            title = f"Change order {state.number}: {state.name}"
            body = f"Status: {state.status}."
            found = [k for k in counted if k[0] == state.deal and k[2] == title and k[3].startswith(body)]
            if len(found) != 1:
                out.append(f"change order {state.project} {state.number} {state.status}: {len(found)} notes")
        return out


def _number(value: Any) -> Any:
    return None if value is None else round(float(value), 2)


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])
def test_random_run_settles_in_step(seed: int, tmp_path: Path) -> None:
    run = Run(seed, tmp_path)
    try:
        run.begin()
        for _ in range(STEPS):
            run.step()
        run.settle()
        problems = run.check()
        before = write_counts(run.sims)
        final = run_cycle(run.ctx, CycleOptions(full=True)).report
        if write_counts(run.sims) != before:
            problems.append(f"a settled full run still wrote: {final.summary()}")
        replay = f"RECONCILER_MODEL_SEEDS={seed} RECONCILER_MODEL_STEPS={STEPS} pytest {__file__}"
        assert not problems, (
            f"seed {seed} ({replay}):\n  " + "\n  ".join(problems) + "\nsteps:\n  " + "\n  ".join(run.log)
        )
    finally:
        run.close()
