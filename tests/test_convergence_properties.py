"""Random sequences of edits on both sides, run through plan -> apply against the simulators, converge.

Each example scripts edits by sales (names, close dates, un-ticking and re-ticking), by SI users (price,
hours, progress, names, change orders and their statuses), edits of both sides to the same value, SI
imports, and cycles in between. After the script, cycles run until one applies nothing; then:

* a further dry run plans nothing (a converged state plans nothing);
* every pair that stayed ticked agrees field by field, in the mapping's directions;
* each SI project exists once per deal, and no note was written twice;
* every change-order state exported while its deal was ticked has exactly one note.
"""

from __future__ import annotations

import os
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.clients.http import RetryPolicy
from reconciler.context import build_context
from reconciler.cycle import run_cycle
from reconciler.mapping import parse_mapping
from reconciler.sim.harness import SimPair
from reconciler.store import Store
from tests.conftest import TWO_WAY_MAPPING

# The shared two-way mapping, with Deal_Name settled by "zoho_wins" so every script can converge.
MAPPING = TWO_WAY_MAPPING.replace('on_conflict = "manual"', 'on_conflict = "zoho_wins"')
STAGES = {"Approved": "Closed Won", "On Hold": "Negotiation", "Design": "Design"}
DEALS = 3
# `make test` keeps this small; `make proof` runs more (RECONCILER_PROPERTY_EXAMPLES=300).
EXAMPLES = int(os.environ.get("RECONCILER_PROPERTY_EXAMPLES", "25"))

deal_index = st.integers(min_value=0, max_value=DEALS - 1)
names = st.sampled_from(["Alpha", "Bravo", "Charlie", "Delta"])
steps = st.one_of(
    st.tuples(st.just("zoho_close"), deal_index, st.sampled_from(["2027-01-31", "2027-06-30", "2028-02-29"])),
    st.tuples(st.just("zoho_name"), deal_index, names),
    st.tuples(st.just("si_name"), deal_index, names),
    st.tuples(st.just("both_name"), deal_index, names),
    st.tuples(st.just("si_price"), deal_index, st.sampled_from([1500.0, 2250.5, 99999.99])),
    st.tuples(st.just("si_hours"), deal_index, st.sampled_from([4.0, 12.5, 40.0])),
    st.tuples(st.just("si_progress"), deal_index, st.sampled_from(sorted(STAGES))),
    st.tuples(st.just("co_add"), deal_index, st.integers(min_value=1, max_value=2)),
    st.tuples(st.just("co_status"), deal_index, st.sampled_from(["Approved", "Rejected", "Pending"])),
    st.tuples(st.just("untick"), deal_index, st.none()),
    st.tuples(st.just("retick"), deal_index, st.none()),
    st.tuples(st.just("import"), st.none(), st.none()),
    st.tuples(st.just("cycle"), st.none(), st.none()),
)


class Run:
    """The simulators, one store, and what the script expects to have happened."""

    def __init__(self, workdir: Path) -> None:
        self.sims = SimPair()
        self.deals = [
            self.sims.zoho.add_deal(
                Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True, Amount=100.0 * n
            )
            for n in range(1, DEALS + 1)
        ]
        mapping_path = workdir / "mapping.toml"
        mapping_path.write_text(MAPPING, encoding="utf-8")
        self.settings = self.sims.settings(workdir / "reconciler.db", mapping_path)
        self.store = Store.open(self.settings.db_path)
        mapping = parse_mapping(tomllib.loads(MAPPING))
        self.ctx = build_context(
            self.settings, mapping, self.store, transport=self.sims.transport(), policy=RetryPolicy.no_waits()
        )
        self.ever_unticked: set[str] = set()
        self.waiting_states: list[tuple[str, str, str]] = []  # CO states exported since the last cycle
        self.expected_notes: set[tuple[str, str, str]] = set()
        self.cos: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        self.ctx.close()
        self.store.close()

    def project(self, index: int) -> str | None:
        deal = self.deals[index]
        project = self.sims.zoho.deal(deal).get("SI_Project_ID")
        return project if project in self.sims.si.projects else None

    def cycle(self) -> int:
        for deal, co, status in self.waiting_states:
            if self.sims.zoho.deal(deal).get("Send_to_SI"):
                self.expected_notes.add((deal, co, status))
        self.waiting_states.clear()
        report = run_cycle(self.ctx).report
        return report.exit_code

    def step(self, kind: str, index: int | None, value: object) -> None:
        zoho, si = self.sims.zoho, self.sims.si
        if kind == "cycle":
            self.cycle()
            return
        if kind == "import":
            si.import_pending()
            return
        assert index is not None
        deal = self.deals[index]
        if kind == "zoho_close":
            zoho.edit_deal(deal, Closing_Date=value)
        elif kind == "zoho_name":
            zoho.edit_deal(deal, Deal_Name=value)
        elif kind == "untick":
            zoho.edit_deal(deal, Send_to_SI=False)
            self.ever_unticked.add(deal)
        elif kind == "retick":
            zoho.edit_deal(deal, Send_to_SI=True)
        project = self.project(index)
        if project is None:
            return
        if kind == "si_name":
            si.edit_project(project, Name=value)
        elif kind == "both_name":
            zoho.edit_deal(deal, Deal_Name=value)
            si.edit_project(project, Name=value)
        elif kind == "si_price":
            si.edit_project(project, Price=value)
        elif kind == "si_hours":
            si.edit_project(project, Hours=value)
        elif kind == "si_progress":
            si.edit_project(project, Progress=value)
        elif kind == "co_add":
            co = str(value)
            if co not in self.cos.setdefault(project, {}):
                si.add_change_order(project, int(co), f"CO {co}", status="Pending", price=10.0 * int(co))
                self.cos[project][co] = "Pending"
                self.waiting_states.append((deal, co, "Pending"))
        elif kind == "co_status":
            for co in sorted(self.cos.get(project, {})):
                si.set_change_order_status(project, int(co), str(value))
                self.cos[project][co] = str(value)
                self.waiting_states.append((deal, co, str(value)))
                break


def _converge(run: Run) -> None:
    """Let SI import and cycles run until one applies cleanly, SI has nothing queued, and nothing is left."""
    for _ in range(8):
        queued = run.sims.si.import_pending()
        if run.cycle() == 0 and queued == 0 and not run.sims.si.import_pending():
            result = run_cycle(run.ctx, dry_run=True)
            report, plan = result.report, result.plan
            if not plan.has_changes:
                return
    result = run_cycle(run.ctx, dry_run=True)
    report, plan = result.report, result.plan
    raise AssertionError(f"did not converge: {report.summary()} {plan.actions}")


def _check(run: Run) -> None:
    zoho, si = run.sims.zoho, run.sims.si
    projects_per_deal = Counter(str(p.get("IntegrationProjectId")) for p in si.projects.values())
    assert all(count == 1 for count in projects_per_deal.values()), projects_per_deal
    for deal_id in run.deals:
        notes = [(n["Note_Title"], n["Note_Content"]) for n in zoho.notes_for(deal_id)]
        assert len(notes) == len(set(notes)), f"duplicate note on deal {deal_id}"
    written = set()
    for deal_id in run.deals:
        for note in zoho.notes_for(deal_id):
            reference = note["Note_Content"].rsplit("[zohosi-ref note:", 1)[1].rstrip("]")
            _, co, status = reference.rsplit(":", 2)
            written.add((deal_id, co, status))
    assert run.expected_notes <= written, run.expected_notes - written
    for index, deal_id in enumerate(run.deals):
        deal = zoho.deal(deal_id)
        project_id = run.project(index)
        if deal_id in run.ever_unticked or project_id is None or not deal.get("Send_to_SI"):
            continue
        project = si.projects[project_id]
        assert deal["Deal_Name"] == project["Name"]
        if deal.get("Closing_Date"):
            assert str(project.get("CloseDate") or "")[:10] == deal["Closing_Date"]
        if project.get("Progress") in STAGES:
            assert deal.get("Stage") == STAGES[project["Progress"]]
        if project.get("Price"):
            assert float(deal["Amount"]) == pytest.approx(float(project["Price"]))
        if project.get("Hours"):
            assert float(deal["Labor_Hours"]) == pytest.approx(float(project["Hours"]))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(steps, min_size=1, max_size=14))
def test_random_edits_on_both_sides_converge_and_a_converged_state_plans_nothing(tmp_path_factory, script):
    """Any script of edits, imports and cycles converges; then nothing is planned and both sides agree."""
    run = Run(tmp_path_factory.mktemp("convergence"))
    try:
        run.cycle()  # the deals become projects
        run.sims.si.import_pending()
        run.cycle()
        for kind, index, value in script:
            run.step(kind, index, value)
        _converge(run)
        _check(run)
    finally:
        run.close()
