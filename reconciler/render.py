"""Turn plans, status and history into text for people and JSON for scripts (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.model import (
    AddNote,
    AuditEntry,
    Conflict,
    CreateProject,
    CycleReport,
    Defer,
    Park,
    Plan,
    UpdateDeal,
    UpdateProject,
)

__all__ = ["history_text", "plan_json", "plan_text", "status_json", "status_text", "when"]


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value: Any) -> str:
    return "(empty)" if value is None else json.dumps(value, ensure_ascii=False, default=str)


def action_line(action: Any) -> str:
    if isinstance(action, CreateProject):
        if action.published:
            return f"create   deal {action.deal_id}: finish (write back SI project {action.project_id})"
        return (
            f"create   deal {action.deal_id} -> new SI project {action.guid} "
            f"(Name {_value(action.body.get('Name'))}, Client {_value(action.body.get('Client'))})"
        )
    if isinstance(action, UpdateDeal):
        changes = ", ".join(f"{c.field}: {_value(c.old)} -> {_value(c.new)}" for c in action.changes)
        return f"zoho     deal {action.deal_id}: {changes}"
    if isinstance(action, UpdateProject):
        changes = ", ".join(f"{c.field}: {_value(c.old)} -> {_value(c.new)}" for c in action.changes)
        ids = ", ".join(f"ProjectFieldId {fid}={value!r}" for fid, value in action.fields)
        return f"si       project {action.project_id} (deal {action.deal_id}): {changes} [{ids}]"
    if isinstance(action, AddNote):
        return (
            f"note     deal {action.deal_id}: {action.title!r} "
            f"(change order {action.co_number}, {action.co_status})"
        )
    if isinstance(action, Conflict):
        return (
            f"conflict deal {action.deal_id}: {action.field} is {_value(action.zoho_value)} in Zoho, "
            f"{_value(action.si_value)} in SI (manual: parked, nothing overwritten)"
        )
    if isinstance(action, Park):
        return f"park     {action.key}: {action.message}"
    if isinstance(action, Defer):
        return f"retry    {action.key}: {action.message} (tried again next cycle)"
    return repr(action)


def plan_text(plan: Plan, report: CycleReport) -> str:
    lines = [f"Plan ({report.mode} read, nothing written):"]
    if plan.refused:
        lines.append(f"  {plan.refused}")
    for action in plan.actions:
        lines.append("  " + action_line(action))
    acks = plan.acks()
    if acks:
        lines.append(f"  ack      {len(acks)} SI export message(s) would be marked as imported")
    if plan.held:
        lines.append(
            f"  held     {len(plan.held)} linked deal(s) the full read did not return and no direct read "
            f"confirmed gone: {', '.join(plan.held[:10])}{' ...' if len(plan.held) > 10 else ''}"
        )
    for key in plan.resolved:
        lines.append(f"  close    {key}: re-queued, nothing left to do")
    for export in plan.unknown:
        lines.append(
            f"  unknown  SI project {export.project_id} (IntegrationProjectId {export.integration_id}) "
            "matches no linked deal: reported, not synced"
        )
    if len(lines) == 1:
        lines.append("  nothing to do")
    lines.append(f"{plan.writes()} record(s) to write.")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def plan_json(plan: Plan, report: CycleReport) -> str:
    actions = []
    for action in plan.actions:
        item = {k: _plain(v) for k, v in asdict(action).items()}
        item["summary"] = action_line(action)
        actions.append(item)
    document = {
        "mode": report.mode,
        "exit_code": report.exit_code,
        "refused": plan.refused,
        "writes": plan.writes(),
        "actions": actions,
        "acks": [asdict(ack) for ack in plan.acks()],
        "unknown_projects": [
            {"project_id": e.project_id, "integration_project_id": e.integration_id} for e in plan.unknown
        ],
        "api_calls": dict(report.api_calls),
    }
    return json.dumps(document, indent=2, default=str, ensure_ascii=False)


def status_text(status: dict[str, Any]) -> str:
    lines = [f"Database: {status['db']}  (daemon lock {'HELD' if status['lock_held'] else 'free'})"]
    lines.append(f"Zoho cursor: {status['cursor'] or '-'}   last full cycle: {when(status['last_full_at'])}")
    lines.append(f"Access token expires: {when(status['token_expires_at'])}")
    skew = status.get("zoho_clock_skew_seconds")
    if skew is not None:
        side = "ahead of" if skew >= 0 else "behind"
        lines.append(f"Clock: ours is {abs(skew):.0f} s {side} Zoho's (at the last cycle)")
    lines.append(f"Links: {status['links']['active']} active, {status['links']['inactive']} stopped")
    lines.append("")
    lines.append("Last cycles:")
    if not status["cycles"]:
        lines.append("  (none yet)")
    for cycle in status["cycles"]:
        duration = "-" if cycle["ended_at"] is None else f"{cycle['ended_at'] - cycle['started_at']:.1f}s"
        counts = ", ".join(f"{k}={v}" for k, v in sorted(cycle["counts"].items())) or "no changes"
        calls = sum(cycle["api_calls"].values())
        lines.append(
            f"  #{cycle['id']} {when(cycle['started_at'])} {cycle['mode']:<11} {cycle['outcome']:<8} "
            f"{duration:>7} "
            f"{calls} API calls; {counts}" + (f" - {cycle['message']}" if cycle["message"] else "")
        )
    lines.append("")
    lines.append(f"Parked items ({len(status['parked'])}): retry with `reconciler retry KEY` or `--all`")
    for item in status["parked"]:
        lines.append(
            f"  {item['key']}  (attempts {item['attempts']}, since {when(item['updated_at'])}; "
            f"next retry {item['next_retry']})"
        )
        lines.append(f"      {item['error']}")
    if status["conflicts"]:
        lines.append("")
        lines.append("Conflicts (on_conflict = manual; nothing was overwritten):")
        for item in status["conflicts"]:
            both = f"Zoho {_value(item['zoho'])} / SI {_value(item['si'])}"
            lines.append(f"  deal {item['deal_id']} field {item['field']}: {both}")
    if status["pending"]:
        lines.append("")
        lines.append(f"Waiting for a retry ({len(status['pending'])}):")
        for item in status["pending"]:
            lines.append(
                f"  {item['key']}  attempts {item['attempts']}, retried by the next cycle "
                f"(about {when(item['next_retry_at'])} under the daemon), parked after 5"
            )
            lines.append(f"      {item['error']}")
    if status["stopped"]:
        lines.append("")
        lines.append("Not syncing (nothing was deleted in SI):")
        for item in status["stopped"]:
            lines.append(f"  deal {item['deal_id']} / SI project {item['project_id']}: {item['reason']}")
    if status["unknown_projects"]:
        lines.append("")
        lines.append("SI projects that match no deal (reported, not synced):")
        for item in status["unknown_projects"]:
            lines.append(
                f"  {item['project_id']} {item['name'] or ''} (IntegrationProjectId {item['integration_id']})"
            )
    return "\n".join(lines)


def status_json(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, default=str, ensure_ascii=False)


def history_text(entries: list[AuditEntry]) -> str:
    if not entries:
        return "No applied changes recorded yet."
    lines = []
    for entry in entries:
        lines.append(
            f"{when(entry.at)}  cycle {entry.cycle_id}  deal {entry.deal_id}  {entry.action}  "
            f"{entry.field}: {_value(entry.old)} -> {_value(entry.new)}"
        )
    return "\n".join(lines)
