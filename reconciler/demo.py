"""``reconciler demo``: the whole flow against both simulators on loopback, with no credentials.

It starts the Zoho and SI simulators on 127.0.0.1, adds sample deals, and walks through what an
office sees: the dry-run plan, the first run creating SI projects, SI importing them, an SI user editing
a price and adding a change order, the sync back to Zoho, the change order's approval, and an idle rerun.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from reconciler import defaults
from reconciler.clients.http import RetryPolicy
from reconciler.context import Context, build_context
from reconciler.cycle import CycleOptions, run_cycle
from reconciler.mapping import load_mapping
from reconciler.render import plan_text, status_text
from reconciler.sim.harness import SimPair
from reconciler.status import collect_status
from reconciler.store import Store

__all__ = ["run_demo"]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(number: int, title: str) -> None:
    _say()
    _say(f"== {number}. {title}")


def _deals(sims: SimPair, ids: list[str]) -> None:
    for deal_id in ids:
        deal = sims.zoho.deal(deal_id)
        _say(
            f"   deal {deal_id} {deal.get('Deal_Name')!r:<26} Amount={deal.get('Amount')!s:<9} "
            f"Labor_Hours={deal.get('Labor_Hours')!s:<5} SI_Project_ID={deal.get('SI_Project_ID') or '-'} "
            f"SI_Sync_Status={deal.get('SI_Sync_Status') or '-'!r}"
        )


def _cycle(ctx: Context, label: str) -> int:
    report = run_cycle(ctx).report
    calls = ", ".join(f"{k}={v}" for k, v in sorted(report.api_calls.items()))
    _say(f"   run-once: {report.summary()}")
    _say(f"   API calls: {calls or 'none'} (exit code {report.exit_code}) [{label}]")
    return report.exit_code


def run_demo(keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="reconciler-demo-"))
    try:
        # The shipped default mapping (the same as config/mapping.toml): `pip install` alone runs the demo.
        with SimPair() as sims, defaults.mapping_file() as mapping:
            return _run(sims, workdir, mapping)
    finally:
        if keep:
            _say(f"\n(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(sims: SimPair, workdir: Path, mapping_path: Path) -> int:
    _say("zohosi-reconciler demo: Zoho CRM and D-Tools SI simulators on loopback, no credentials needed.")
    _say(f"   Zoho simulator: {sims.zoho_url}   SI simulator: {sims.si_url}   state: {workdir}")
    ids = [
        sims.zoho.add_deal(
            Deal_Name="Smith Residence AV", Account_Name="Smith Family", Amount=18000, Send_to_SI=True
        ),
        sims.zoho.add_deal(
            Deal_Name="Harbor Office Network", Account_Name="Harbor LLC", Amount=42000, Send_to_SI=True
        ),
        sims.zoho.add_deal(
            Deal_Name="Lakeside Theater", Account_Name="Lakeside Inc", Amount=9500, Send_to_SI=True
        ),
    ]
    orphan = sims.zoho.add_deal(Deal_Name="Walk-in quote (no account)", Amount=1200, Send_to_SI=True)
    sims.zoho.add_deal(Deal_Name="Not ready yet", Account_Name="Harbor LLC", Amount=500, Send_to_SI=False)
    settings = sims.settings(workdir / "reconciler.db", mapping_path)
    mapping = load_mapping(mapping_path)
    store = Store.open(settings.db_path)
    ctx = build_context(
        settings, mapping, store, policy=RetryPolicy(attempts=3, initial_wait=0.2, max_wait=1)
    )
    try:
        _step(1, "Sales ticked 'Send to SI' on four deals (one has no account). `reconciler plan` (dry run):")
        result = run_cycle(ctx, CycleOptions(dry_run=True))
        report, the_plan = result.report, result.plan
        assert the_plan is not None, report.message
        for line in plan_text(the_plan, report).splitlines():
            _say("   " + line)
        _say(f"   plan exit code: {report.exit_code} (2 = changes pending)")

        _step(2, "`reconciler run-once`: projects are published to SI's queue, ids written back to Zoho")
        _cycle(ctx, "first run")
        _deals(sims, ids)
        _say(f"   deal {orphan} was parked: it has no account, and SI requires a Client.")

        _step(3, "Rerun at once: nothing to write")
        _cycle(ctx, "idle")

        _step(4, "SI's desktop client imports the queue and exports the new projects")
        _say(f"   SI imported {sims.si.import_pending()} message(s)")
        _cycle(ctx, "import confirmed")
        _deals(sims, ids)

        project = str(sims.zoho.deal(ids[0])["SI_Project_ID"])
        _step(5, "In SI, a designer prices the Smith project and adds change order 1 (pending)")
        sims.si.edit_project(project, Price=19850.75, Hours=36.5, Revision=2)
        sims.si.add_change_order(project, 1, "Add outdoor speakers", status="Pending", price=1450.0)
        _cycle(ctx, "SI -> Zoho")
        _deals(sims, ids[:1])
        for note in sims.zoho.notes_for(ids[0]):
            _say(f"   note: {note['Note_Title']!r}")

        _step(6, "The client approves change order 1")
        sims.si.set_change_order_status(project, 1, "Approved")
        _cycle(ctx, "change-order note")
        _say(f"   the deal now has {len(sims.zoho.notes_for(ids[0]))} notes (one per change-order state)")

        _step(7, "Rerun: nothing changed, so nothing is written")
        code = _cycle(ctx, "idle")

        _step(8, "`reconciler status`")
        status = collect_status(store, db=str(settings.db_path), lock_held=False, cycles=5)
        for line in status_text(status).splitlines():
            _say("   " + line)
        _say()
        _say("Demo finished. The same commands run against the real APIs once .env holds your credentials.")
        return 0 if code == 0 else code
    finally:
        ctx.close()
        store.close()
