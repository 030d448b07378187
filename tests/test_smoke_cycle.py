"""A first end-to-end pin: three flagged deals become three SI projects, and a rerun writes nothing."""

from __future__ import annotations

from tests.conftest import cycle


def test_three_flagged_deals_give_three_publishes_and_an_idle_rerun(sims, make_ctx):
    """3 flagged deals -> exactly 3 publishes, 3 deals carrying their project id; rerun makes no write."""
    ids = [
        sims.zoho.add_deal(Deal_Name=f"Deal {n}", Account_Name="Acme", Send_to_SI=True, Amount=100 * n)
        for n in range(1, 4)
    ]
    ctx = make_ctx(sims)
    first = cycle(ctx)
    assert first.exit_code == 0, first.message
    assert sims.si.count("POST", "/Publish/Projects") == 3
    assert {sims.zoho.deal(i)["SI_Project_ID"] for i in ids} == set(sims.si.projects) | {
        m.project_id for m in sims.si.publish_messages
    }
    writes_before = sims.zoho.count("PUT", "/crm/v8/Deals") + sims.si.count("POST", "/Publish")
    again = cycle(ctx)
    assert again.exit_code == 0
    assert sims.zoho.count("PUT", "/crm/v8/Deals") + sims.si.count("POST", "/Publish") == writes_before
