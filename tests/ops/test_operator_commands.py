"""What an operator runs besides the cycle: status, retry, history, check, and the monitoring hooks.

Cycles run in-process (or as `run-once`) against the simulators; the commands under test always run as
`python -m reconciler ...` subprocesses reading the same database, exactly as an operator would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.context import Context
from reconciler.lock import InstanceLock
from reconciler.plan import QUEUED, project_guid
from reconciler.sim.harness import SimPair
from reconciler.sim.server import SimServer
from tests.conftest import DEFAULT_MAPPING, TWO_WAY_MAPPING, cycle, run_cli


def _db_env(tmp_path: Path) -> dict[str, str]:
    """All that status, history and retry need: the database."""
    return {"RECONCILER_DB": str(tmp_path / "reconciler.db")}


@dataclass
class Story:
    """A store with some history: one synced deal, one parked, one conflict (TWO_WAY mapping)."""

    ctx: Context
    good: str
    parked: str

    @property
    def project(self) -> str:
        return project_guid(self.good)


@pytest.fixture
def story(sims: SimPair, make_ctx: Callable[..., Context], mapping_file: Callable[[str], Path]) -> Story:
    good = sims.zoho.add_deal(Deal_Name="Kitchen AV", Account_Name="Acme", Send_to_SI=True, Amount=100)
    parked = sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    ctx = make_ctx(sims, mapping_file(TWO_WAY_MAPPING))
    assert cycle(ctx).outcome == "parked"
    sims.si.import_pending()
    sims.si.edit_project(project_guid(good), Price=1234.5)
    assert cycle(ctx).exit_code == 0
    sims.zoho.edit_deal(good, Deal_Name="Kitchen AV (Zoho)")
    sims.si.edit_project(project_guid(good), Name="Kitchen AV (SI)")
    report = cycle(ctx)
    assert report.outcome == "parked", report.summary()
    return Story(ctx, good, parked)


# ---- status -------------------------------------------------------------------------------------------


def test_status_shows_cycles_parked_items_conflicts_cursor_token_and_a_held_lock(
    story: Story, tmp_path: Path
) -> None:
    """`status`: cycles with duration and counts, parked errors, both conflict values, cursor, token, lock."""
    env = _db_env(tmp_path)
    with InstanceLock(tmp_path / "reconciler.db.lock"):
        held = run_cli(["status"], env, tmp_path, check=True).stdout
        held_json = json.loads(run_cli(["status", "--json"], env, tmp_path, check=True).stdout)
    free = run_cli(["status"], env, tmp_path, check=True).stdout
    assert "(daemon lock HELD)" in held and held_json["lock_held"] is True
    assert "(daemon lock free)" in free

    data = held_json
    cycles = sorted(data["cycles"], key=lambda c: c["id"])
    assert [c["outcome"] for c in cycles] == ["parked", "ok", "parked"]
    assert cycles[0]["counts"] == {"create.applied": 1, "park.parked": 1}
    assert all(c["ended_at"] >= c["started_at"] for c in cycles)
    parked = {p["key"]: p["error"] for p in data["parked"]}
    assert parked[f"create:deal:{story.parked}"] == (
        f"deal {story.parked}: field Account_Name.name is empty (SI requires Client)"
    )
    assert data["conflicts"] == [
        {
            "key": f"conflict:{story.good}:Deal_Name",
            "deal_id": story.good,
            "field": "Deal_Name",
            "zoho": "Kitchen AV (Zoho)",
            "si": "Kitchen AV (SI)",
        }
    ]
    assert data["cursor"] and data["token_expires_at"] > cycles[-1]["ended_at"]

    lines = held.splitlines()
    cycle_lines = [line for line in lines if line.startswith("  #")]
    assert len(cycle_lines) == 3
    assert any("full" in line and "create.applied=1, park.parked=1" in line for line in cycle_lines)
    assert all(line.split()[6].endswith("s") for line in cycle_lines)  # #id, date, time, UTC, mode, outcome
    assert f"deal {story.parked}: field Account_Name.name is empty (SI requires Client)" in held
    assert f'deal {story.good} field Deal_Name: Zoho "Kitchen AV (Zoho)" / SI "Kitchen AV (SI)"' in held
    assert f"Zoho cursor: {data['cursor']}" in held
    assert "Access token expires: 20" in held


@pytest.mark.parametrize("command", [["status"], ["retry", "--all"], ["history"], ["backup", "copy.db"]])
def test_a_missing_database_is_an_error_naming_its_path(tmp_path: Path, command: list[str]) -> None:
    """status/retry/history/backup on a database that does not exist: one line naming it, exit 78,
    and nothing created (no ./state, no empty database)."""
    result = run_cli(command, _db_env(tmp_path), tmp_path)
    assert result.returncode == 78, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"reconciler: RECONCILER_DB: no database at {tmp_path / 'reconciler.db'}: nothing has run yet with "
        "this database, or the path is wrong (set RECONCILER_DB or pass --db)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_status_never_creates_the_default_state_directory(tmp_path: Path) -> None:
    """No RECONCILER_DB nor STATE_DIRECTORY: `status` names ./state/reconciler.db and creates nothing."""
    result = run_cli(["status"], {}, tmp_path)
    assert result.returncode == 78
    assert str(tmp_path / "state" / "reconciler.db") in result.stderr
    assert not (tmp_path / "state").exists()


# ---- retry --------------------------------------------------------------------------------------------


def test_retry_key_requeues_one_parked_item_and_retry_all_the_rest(
    sims: SimPair, make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    """Publishes SI refused (400) stay parked; `retry KEY` re-queues one, `retry --all` the rest; all land."""
    deals = [sims.zoho.add_deal(Deal_Name=f"D{n}", Account_Name="Acme", Send_to_SI=True) for n in range(3)]
    ctx = make_ctx(sims)
    refused = {"Message": "The template 'Residential' does not exist."}
    sims.si.inject("POST", "/Publish/Projects", status=400, body=refused, times=3)
    assert cycle(ctx).outcome == "parked"
    assert cycle(ctx).exit_code == 0  # a parked item is not retried by itself
    assert sims.si.publish_messages == []
    keys = [f"create:deal:{d}" for d in deals]
    assert sorted(i.key for i in ctx.store.parked()) == sorted(keys)
    assert {i.last_error for i in ctx.store.parked()} == {
        "si.publish: HTTP 400: The template 'Residential' does not exist."
    }
    env = _db_env(tmp_path)

    one = run_cli(["retry", keys[0]], env, tmp_path, check=True)
    assert one.stdout.strip() == "Re-queued 1 item(s); the next cycle tries them again."
    assert cycle(ctx).exit_code == 0
    assert sims.zoho.deal(deals[0])["SI_Project_ID"] == project_guid(deals[0])
    assert sorted(i.key for i in ctx.store.parked()) == sorted(keys[1:])

    unknown = run_cli(["retry", "create:deal:nope"], env, tmp_path)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "reconciler: retry: no parked item has the key 'create:deal:nope' (see `reconciler status`)"
    )
    every = run_cli(["retry", "--all"], env, tmp_path, check=True)
    assert every.stdout.strip() == "Re-queued 2 item(s); the next cycle tries them again."
    assert cycle(ctx).exit_code == 0
    assert ctx.store.parked() == []
    assert [sims.zoho.deal(d)["SI_Project_ID"] for d in deals] == [project_guid(d) for d in deals]
    assert len(sims.si.publish_messages) == 3
    assert run_cli(["retry", "--all"], env, tmp_path, check=True).stdout.strip() == "No parked items."


def test_retry_without_a_key_is_a_usage_error(tmp_path: Path) -> None:
    """`retry` with neither KEY nor --all: one line saying what to pass, exit 78."""
    result = run_cli(["retry"], _db_env(tmp_path), tmp_path)
    assert result.returncode == 78
    assert result.stderr.strip() == (
        "reconciler: retry: name a parked item's KEY (see `reconciler status`) or pass --all"
    )


# ---- history ------------------------------------------------------------------------------------------


def test_history_shows_every_field_change_of_a_deal_with_old_and_new_values(
    story: Story, tmp_path: Path
) -> None:
    """`history DEAL_ID`: the write-back, the status and the SI price, each old -> new; only that deal."""
    env = _db_env(tmp_path)
    lines = run_cli(["history", story.good], env, tmp_path, check=True).stdout.splitlines()
    changes = [line.split(f"deal {story.good}  ", 1)[1] for line in lines]
    assert changes == [
        f'create:deal:{story.good}  SI_Project_ID: (empty) -> "{story.project}"',
        f'create:deal:{story.good}  SI_Sync_Status: (empty) -> "{QUEUED}"',
        f'update:deal:{story.good}  SI_Sync_Status: "{QUEUED}" -> "In SI"',
        f'update:deal:{story.good}  Amount: "100" -> "1234.5"',
    ]
    assert all(" cycle " in line for line in lines)
    everything = run_cli(["history"], env, tmp_path, check=True).stdout
    assert everything.count(f"deal {story.good} ") == 4
    assert story.parked not in everything  # nothing was applied to the parked deal
    other = run_cli(["history", story.parked], env, tmp_path, check=True).stdout
    assert other.strip() == "No applied changes recorded yet."


# ---- check --------------------------------------------------------------------------------------------


def _check(sims: SimPair, tmp_path: Path, **extra: str) -> Any:
    env = sims.environment(tmp_path / "reconciler.db", DEFAULT_MAPPING, **extra)
    return run_cli(["check"], env, tmp_path)


def _problems(stderr: str) -> list[str]:
    """The problem lines (stderr also carries the log)."""
    return [line for line in stderr.splitlines() if line.startswith("reconciler: ")]


def test_check_passes_against_working_apis(served_sims: SimPair, tmp_path: Path) -> None:
    """`check`: settings, mapping, Zoho credentials and fields, SI key all fine -> exit 0."""
    result = _check(served_sims, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Zoho: credentials OK" in result.stdout
    assert "D-Tools SI: SI_API_KEY accepted." in result.stdout


def test_check_names_a_mapped_field_zoho_lacks(served_sims: SimPair, tmp_path: Path) -> None:
    """A mapped field missing from Zoho's Deals catalogue is named with its mapping key; exit 78."""
    served_sims.zoho.fields_meta = [f for f in served_sims.zoho.fields_meta if f["api_name"] != "Labor_Hours"]
    result = _check(served_sims, tmp_path)
    assert result.returncode == 78
    assert _problems(result.stderr) == [
        "reconciler: mapping fields[1].zoho: Zoho Deals has no field Labor_Hours; create it (see README) "
        "or fix the key"
    ]


def test_check_rejects_a_bad_si_key(served_sims: SimPair, tmp_path: Path) -> None:
    """A wrong SI_API_KEY: `check` says SI rejected it (never the key itself), exit 78."""
    result = _check(served_sims, tmp_path, SI_API_KEY="not-the-key")
    assert result.returncode == 78
    assert _problems(result.stderr) == ["reconciler: D-Tools SI rejected SI_API_KEY (HTTP 401)"]
    assert "not-the-key" not in result.stdout + result.stderr


# ---- monitoring hooks ---------------------------------------------------------------------------------


class Collector:
    """A tiny loopback HTTP server standing in for healthchecks.io and a Slack webhook."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, Any]] = []
        self.server = SimServer(self.handle).start()

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.received.append((request.method, request.url.path, body))
        return httpx.Response(200, text="OK")

    def url(self, path: str) -> str:
        return self.server.url + path


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.server.stop()


def test_a_parked_item_is_announced_to_the_notify_url_and_metrics_are_written(
    served_sims: SimPair, collector: Collector, tmp_path: Path
) -> None:
    """A parked deal: one Slack-style {"text"} POST naming it; the metrics file counts cycles and parks."""
    served_sims.zoho.add_deal(Deal_Name="Good", Account_Name="Acme", Send_to_SI=True)
    metrics = tmp_path / "reconciler.prom"
    env = served_sims.environment(
        tmp_path / "reconciler.db",
        DEFAULT_MAPPING,
        RECONCILER_NOTIFY_URL=collector.url("/hooks/T000/B000"),
        RECONCILER_METRICS_FILE=str(metrics),
    )
    assert run_cli(["run-once"], env, tmp_path).returncode == 0
    assert collector.received == []  # nothing parked, nothing failing: no alert
    assert 'reconciler_cycles_total{outcome="ok"} 1' in metrics.read_text()

    bad = served_sims.zoho.add_deal(Deal_Name="No account", Send_to_SI=True)
    assert run_cli(["run-once"], env, tmp_path).returncode == 1
    [(method, path, body)] = collector.received
    assert (method, path) == ("POST", "/hooks/T000/B000")
    assert list(body) == ["text"]
    assert "1 item parked" in body["text"]
    assert (
        f"create:deal:{bad}: deal {bad}: field Account_Name.name is empty (SI requires Client)"
        in body["text"]
    )
    text = metrics.read_text()
    for line in (
        'reconciler_cycles_total{outcome="ok"} 1',
        'reconciler_cycles_total{outcome="parked"} 1',
        "reconciler_parked_items 1",
        'reconciler_actions{kind="park",result="parked"} 1',
        "# TYPE reconciler_cycles_total counter",
        "reconciler_last_success_timestamp_seconds ",
    ):
        assert line in text, line
    assert run_cli(["run-once"], env, tmp_path).returncode == 0
    assert len(collector.received) == 1  # the same parked item is not announced again
