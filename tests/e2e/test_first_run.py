"""The first big run, reviewable: 3,000 flagged deals through `plan --out` and `apply` (issue 10).

The operator saves the plan, reads it, and applies exactly that plan: `apply` writes the planned records
and nothing else, reports progress while it works, and keeps the log short (per-record lines are DEBUG).
"""

from __future__ import annotations

import json
from pathlib import Path

from reconciler.sim.harness import SimPair
from tests.conftest import DEFAULT_MAPPING, run_cli

DEALS = 3000


def test_a_3000_deal_first_run_through_plan_out_and_apply(served_sims: SimPair, tmp_path: Path) -> None:
    sims = served_sims
    deals = [
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name=f"Client {n % 40}", Send_to_SI=True)
        for n in range(DEALS)
    ]
    env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING, RECONCILER_PROGRESS_EVERY="2")

    refused = run_cli(["run-once"], env, tmp_path, timeout=120)
    assert refused.returncode == 1 and f"reconciler run-once --expect {DEALS}" in refused.stdout
    assert sims.si.count("POST", "/Publish/Projects") == 0

    planned = run_cli(["plan", "--out", "first-run.json"], env, tmp_path, timeout=120)
    assert planned.returncode == 2, planned.stderr
    saved = json.loads((tmp_path / "first-run.json").read_text(encoding="utf-8"))
    assert [a["kind"] for a in saved["actions"]] == ["create"] * DEALS

    applied = run_cli(["apply", "first-run.json"], env, tmp_path, timeout=600)

    assert applied.returncode == 0, applied.stderr[-2000:]
    assert sims.si.count("POST", "/Publish/Projects") == DEALS  # exactly the planned records
    assert sims.zoho.count("PUT", "/crm/v8/Deals") == DEALS // 100
    assert sims.zoho.count("POST", "/crm/v8/Notes") == 0
    assert all(sims.zoho.deal(d).get("SI_Project_ID") for d in deals)
    lines = applied.stderr.splitlines()
    info = [line for line in lines if " INFO " in line]
    progress = [line for line in info if "progress" in line]
    assert progress, "no progress line while 3,000 records were applied"
    assert any(f"/{DEALS:,}" in line or f"total={DEALS}" in line for line in progress), progress[:3]
    assert len(info) <= 50, f"{len(info)} INFO lines:\n" + "\n".join(info[:60])
    assert run_cli(["plan"], env, tmp_path, timeout=120).returncode == 0  # nothing left to do
