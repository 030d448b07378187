"""The benchmark results as Markdown: setup, one table per part, the targets and the notes."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Sequence

from benchmarks.idle import RECORDED_CPU, TARGET_RATIO, IdleRow
from benchmarks.scenario import SizeResult, total, writes, zoho_calls

__all__ = ["machine", "render"]

SETUP = [
    "Loopback = `SimPair().start()`: real sockets, both simulators in threads of the benchmark process. "
    "In-process = `SimPair().transport()` (an httpx `MockTransport`). `RECONCILER_SI_CONCURRENCY`: the "
    "default (4) over loopback; 1 in-process, where the simulators answer in the calling thread and there is "
    "no network wait for lanes to overlap (they would only take turns on the GIL). "
    "`RECONCILER_CYCLE_BUDGET` is lifted (36,000 s) so that no cycle stops at 80% of the interval.",
    "The simulators are the stock ones with indexes added (`benchmarks/sims.py`): same answers, without "
    "scanning every deal or message on each request. Calls are counted on the simulator side, token requests "
    "included; for our cycles they are cross-checked against the cycle report's `api_calls`.",
    "Mapping `config/mapping.toml`: Price, Hours, Revision and CONumber flow SI -> Zoho (Hours and Revision "
    "only come with the detail GET). `RetryPolicy.no_waits()`. State: SQLite in a temporary directory on "
    "the local disk. Cycles run with `--force` (these plans write more than `RECONCILER_MAX_WRITES`=500).",
    "Simulated time between cycles (the simulators and the reconciler share one clock): SI imports five "
    "minutes after the first cycle, cycles are five minutes apart, a quiet spell longer than the 10-minute "
    "look-back comes before (a3). Wall and CPU times include the simulators' own work (same process).",
    "Lower bound of a cycle: COQL 2,000 rows a call, `PUT /Deals` 100 records, SI lists 200 entries a page "
    "(an empty list is still one call), one detail GET per changed project (Hours is not in the list), one "
    "`MarkAsImported` per project/change-order group, publish outcomes read by listing; a re-read of our own "
    "write-back counts as needed (COQL cannot leave out our own edits).",
]

NAIVE_NOTES = [
    "per-record: a `COQL select ... where id = 'X'` stands in for `GET /crm/v8/Deals/{id}` (the "
    "simulator serves no single-deal GET; one call either way). It keeps one token; no change order moved "
    "in (c), so it posts no note. It runs on a second 10% change of the same projects (it needs "
    "unacknowledged exports).",
    "old webhook app: **the simulator's token limit was lifted for its run (`zoho.token_limit = False`)**: "
    "it asks for a token before every Zoho call, far past Zoho's 10 per 10 minutes. Tokens are counted as "
    "Zoho calls. Its project listing (`includeImported=true`, 200 a page) holds every export SI ever sent.",
]


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "arch": platform.machine(),
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _endpoints(calls: Counter[str]) -> str:
    return ", ".join(f"{label} {count:,}" for label, count in sorted(calls.items(), key=lambda kv: -kv[1]))


def _verdict(verdict: str, detail: str) -> str:
    if not verdict:
        return "-"
    return f"**{verdict}**" + (f" {detail}" if detail else "")


def render(
    results: Sequence[SizeResult],
    idle: Sequence[IdleRow] = (),
    *,
    date: str,
    seconds: float,
    command: str,
    load: str,
) -> str:
    info = machine()
    where = "; ".join(f"N={r.size:,} {r.where} ({r.seconds / 60:.1f} min)" for r in results)
    lines = [
        "# zohosi-reconciler benchmarks",
        "",
        f"- Date: {date}. Whole run: **{seconds / 60:.1f} min** ({seconds:.0f} s wall). `{command}`",
        f"- Machine: {info['arch']}, {info['cpu']}, {info['cores']} cores, {info['system']}, "
        f"Python {info['python']}; load average {load}",
        f"- Simulators: {where}. " + SETUP[0],
        *(f"- {text}" for text in SETUP[1:]),
        "",
        "## Cycles",
        "",
        "| N | case | calls | by endpoint | write calls | target | result | wall s | CPU s | outcome |",
        "|---:|---|---:|---|---:|---|---|---:|---:|---|",
    ]
    for r in results:
        lines += [
            f"| {r.size:,} | {row.case} | {total(row.calls):,} | {_endpoints(row.calls)} | "
            f"{writes(row.calls):,} | {row.target} | {_verdict(row.verdict, row.detail)} | {row.wall:.2f} | "
            f"{row.cpu:.2f} | {row.outcome} |"
            for row in r.cases
        ]
    lines += [
        "",
        "## Planner alone (d)",
        "",
        "`plan()` on Worlds captured with `read_world` just before cycle (c) ran: the incremental one "
        "cycle (c) planned, and the full one (every flagged deal plus the same SI changes, as the daily full "
        "cycle reads it). Best of 5: CPU (`time.process_time`) and wall. Peak: `tracemalloc`, in a separate "
        "run, of what `plan()` allocates (the World is already in memory).",
        "",
        "| N | World | deals | SI exports | actions (deal updates) | CPU s | wall s | peak MB | target "
        "| result |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        lines += [
            f"| {r.size:,} | {p.world} | {p.deals:,} | {p.exports:,} | {p.actions:,} ({p.updates:,}) | "
            f"{p.cpu:.3f} | {p.wall:.3f} | {p.peak_mb:.1f} | {p.target or '-'} | "
            f"{_verdict(p.verdict, p.detail)} |"
            for p in r.planner
        ]
    lines += [
        "",
        "## Case (c) against naive strategies",
        "",
        "Ours = cycle (c) above. Zoho calls include token requests (Zoho meters calls against a daily "
        "budget).",
        "",
        "| N | strategy | Zoho calls | all calls | by endpoint | ours: Zoho / all | fewer Zoho calls | "
        "fewer calls | target | result | how | wall s |",
        "|---:|---|---:|---:|---|---:|---:|---:|---|---|---|---:|",
    ]
    for r in results:
        lines += [
            f"| {r.size:,} | {c.strategy} | {zoho_calls(c.calls):,} | {total(c.calls):,} | "
            f"{_endpoints(c.calls)} | {zoho_calls(c.ours):,} / {total(c.ours):,} | {c.zoho_ratio:,.0f}x | "
            f"{c.total_ratio:,.1f}x | {c.target or '-'} | {_verdict(c.verdict, c.detail)} | {c.how} | "
            f"{'-' if c.wall is None else f'{c.wall:.1f}'} |"
            for c in r.compare
        ]
    lines += ["", *(f"- {text}" for text in NAIVE_NOTES)]
    lines += [f"- {note}" for r in results for note in r.notes]
    lines += _idle_section(idle)
    lines += ["", "## Targets", ""]
    for r in results:
        lines += [
            f"- N={r.size:,} {row.case}: {_target(row.verdict, row.target, row.detail)}" for row in r.cases
        ]
        lines += [
            f"- N={r.size:,} planner, {p.world} World: {_target(p.verdict, p.target, p.detail)}"
            for p in r.planner
            if p.verdict
        ]
        lines += [
            f"- N={r.size:,} against {c.strategy}: {_target(c.verdict, c.target, c.detail)}"
            for c in r.compare
            if c.verdict
        ]
    lines += [f"- {row.path}: {_idle_target(row, idle)}" for row in idle[:1]]
    lines.append("")
    return "\n".join(lines)


def _target(verdict: str, target: str, detail: str) -> str:
    return f"**{verdict}** ({target})" + (f": {detail}" if detail else "")


def _idle_verdict(row: IdleRow) -> str:
    ratio = RECORDED_CPU / row.cpu if row.cpu else float("inf")
    return "PASS" if ratio >= TARGET_RATIO else "MISS"


def _idle_target(row: IdleRow, idle: Sequence[IdleRow]) -> str:
    target = f">= {TARGET_RATIO:g}x less CPU than the recorded {RECORDED_CPU:g} s"
    detail = f"{row.cpu:.3f} s, {RECORDED_CPU / row.cpu:.1f}x less"
    return f"**{_idle_verdict(row)}** (idle cycle at {row.size:,} linked deals, {target}): {detail}"


def _idle_section(idle: Sequence[IdleRow]) -> list[str]:
    """The idle cycle over seeded pairs: today's loading path first, the old one measured after it."""
    if not idle:
        return []
    now, old = idle[0], idle[-1]
    lines = [
        "",
        f"## Idle cycle at {now.size:,} linked deals",
        "",
        f"{now.size:,} settled pairs seeded (`benchmarks/seed.py`: one pair created by the real cycles, then "
        "copied under fresh ids into the store and both simulators), simulators in-process. CPU "
        "(`time.process_time`) of one idle cycle, best of 3 after a warm-up, a `gc.collect()` before each; "
        "the simulators' own share is timed at the transport. The old loading path "
        "(`benchmarks/idle.py: OldLoadingStore`) is what the store read per cycle before schema version 3, "
        f"on the same data. Recorded figure: {RECORDED_CPU:g} s (README, `make bench` of 2026-11-26, row "
        '"100,000 | b. idle cycle", simulators included).',
        "",
        "| N | loading path | calls | CPU s | simulators s | ours s | wall s | vs recorded "
        f"{RECORDED_CPU:g} s | vs old path (CPU / ours) | target | result |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for row in idle:
        versus_old = (
            f"{old.cpu / row.cpu:.1f}x / {old.ours / row.ours:.1f}x"
            if row is not old and row.ours > 0
            else "-"
        )
        target = f">= {TARGET_RATIO:g}x less than {RECORDED_CPU:g} s" if row is now else "-"
        result = f"**{_idle_verdict(row)}**" if row is now else "-"
        lines.append(
            f"| {row.size:,} | {row.path} | {sum(row.calls.values())} | {row.cpu:.3f} | {row.sim_cpu:.3f} | "
            f"{row.ours:.3f} | {row.wall:.3f} | {RECORDED_CPU / row.cpu:.1f}x | {versus_old} | {target} | "
            f"{result} |"
        )
    return lines
