"""N settled pairs in seconds: one real pair, copied N-1 times into the store and both simulators.

Creating 100,000 pairs through the real cycles takes about nine minutes (publishes, SI's import, the
confirming cycle). What an idle cycle costs depends only on what those cycles leave behind, so
:func:`seed_settled` runs the real flow for one template deal (create, SI imports and exports, the cycle
that confirms it, the one that re-reads our write-back) and then copies that pair under fresh ids, row for
row: its deal (Zoho), its project, publish message and acknowledged export message (SI), and its link,
snapshot, intents and audit rows (the store, copied by SQL inside SQLite). Every copy is the template with
its deal id, project id and message ids replaced, so the store and the simulators agree on every pair.

One thing the copy does not redo: each snapshot keeps the template's ``zoho_hash``, a hash over the deal's
mapped values that include its own project id. An incremental cycle (what the idle measurement runs) never
compares it; a *full* read would see every copy as changed once (and settle it, writing nothing to either
side). Run one full cycle after seeding before measuring anything that reads every deal.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.sims import SimClock
from reconciler.context import Context
from reconciler.cycle import run_cycle
from reconciler.sim.harness import SimPair
from reconciler.sim.si import ExportMessage, PublishMessage

__all__ = ["PAIR_TABLES", "SettledPair", "seed_settled"]

# The store's tables that hold rows of one pair, and the column naming the pair's deal.
PAIR_TABLES = ("link", "snapshot", "intent", "audit")
_QUIET = 660.0  # longer than the read's 10-minute look-back


@dataclass(frozen=True)
class SettledPair:
    """The ids that tie one pair together on all three sides."""

    deal_id: str
    project_id: str
    publish_id: str  # our publish's message id (SI's queue)
    export_id: str  # SI's export message id (acknowledged)

    def swap(self, text: str, other: SettledPair) -> str:
        for mine, theirs in zip(self.ids(), other.ids(), strict=True):
            text = text.replace(mine, theirs)
        return text

    def ids(self) -> tuple[str, str, str, str]:
        return (self.deal_id, self.project_id, self.publish_id, self.export_id)


def seed_settled(ctx: Context, pair: SimPair, clock: SimClock, db_path: Path, n: int) -> list[str]:
    """``n`` settled, linked pairs (nothing left to do on either side); returns their deal ids.

    ``ctx`` is a cycle context on ``pair`` and the store at ``db_path``; the simulated ``clock`` moves
    forward as the daemon's would between the template's cycles.
    """
    account = pair.zoho.add_account("Account 00000")
    deal_id = pair.zoho.add_deal(Deal_Name="Deal 000000", Account_Name=account, Amount=1000, Send_to_SI=True)
    run_cycle(ctx, force=True)
    pair.si.import_pending()
    clock.advance(300.0)
    run_cycle(ctx, force=True)
    clock.advance(_QUIET)
    run_cycle(ctx, force=True)
    template = _template(pair, deal_id)
    copies = list(_copies(template, n - 1))
    _copy_sims(pair, template, copies)
    _copy_rows(db_path, template, copies)
    return [deal_id, *(c.deal_id for c in copies)]


def _template(pair: SimPair, deal_id: str) -> SettledPair:
    project_id = str(pair.zoho.deals[deal_id]["SI_Project_ID"])
    publish = next(m for m in pair.si.publish_messages if m.project_id == project_id)
    export = next(m for m in pair.si.export_messages if m.project_id == project_id)
    assert export.imported, "the template's export was not acknowledged"
    return SettledPair(deal_id, project_id, publish.id, export.message_id)


def _copies(template: SettledPair, count: int) -> Iterator[SettledPair]:
    """Fresh ids: deal ids above the template's (Zoho's are numbers), deterministic UUIDs for SI."""
    base = int(template.deal_id) + 10_000_000
    for i in range(1, count + 1):
        yield SettledPair(
            str(base + i),
            str(uuid.UUID(int=(1 << 96) | i)),
            str(uuid.UUID(int=(2 << 96) | i)),
            str(uuid.UUID(int=(3 << 96) | i)),
        )


def _copy_sims(pair: SimPair, template: SettledPair, copies: list[SettledPair]) -> None:
    zoho, si = pair.zoho, pair.si
    deal = json.dumps(zoho.deals[template.deal_id])
    project = json.dumps(si.projects[template.project_id])
    publish = next(m for m in si.publish_messages if m.id == template.publish_id)
    export = next(m for m in si.export_messages if m.message_id == template.export_id)
    publish_text = json.dumps(publish.__dict__)
    export_text = json.dumps({"info": export.info, "snapshot": export.snapshot})
    for copy in copies:
        zoho.deals[copy.deal_id] = json.loads(template.swap(deal, copy))
        si.projects[copy.project_id] = json.loads(template.swap(project, copy))
        si.publish_messages.append(PublishMessage(**json.loads(template.swap(publish_text, copy))))
        message = json.loads(template.swap(export_text, copy))
        si.export_messages.append(ExportMessage(message["info"], message["snapshot"], imported=True))


def _copy_rows(db_path: Path, template: SettledPair, copies: list[SettledPair]) -> None:
    """Each pair table's template rows copied once per pair, ids replaced in every text column."""
    with sqlite3.connect(db_path) as db:
        for table in PAIR_TABLES:
            columns = [(row[1], row[2].upper()) for row in db.execute(f"PRAGMA table_info({table})")]
            names = [name for name, _ in columns if name != "id"]  # audit's own id is the database's
            exprs = [_swapped(name) if kind in ("TEXT", "VARCHAR(255)") else name for name, kind in columns]
            exprs = [e for (name, _), e in zip(columns, exprs, strict=True) if name != "id"]
            sql = (
                f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(exprs)} FROM {table} "
                "WHERE deal_id = :t0"
            )
            db.executemany(sql, (_params(template, c) for c in copies))
    db.close()


def _swapped(column: str) -> str:
    expr = column
    for k in range(4):
        expr = f"replace({expr}, :t{k}, :c{k})"
    return expr


def _params(template: SettledPair, copy: SettledPair) -> dict[str, str]:
    return {
        **{f"t{k}": v for k, v in enumerate(template.ids())},
        **{f"c{k}": v for k, v in enumerate(copy.ids())},
    }
