"""The systemd units: the operator contract is in them, and systemd itself accepts them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
DAEMON, ONCE, TIMER = "reconciler.service", "reconciler-once.service", "reconciler-once.timer"
SECRETS = {"zoho_client_secret", "zoho_refresh_token", "si_api_key"}
# Settings both services must share, so they run as the same user on the same database and secrets.
SHARED = [
    "User",
    "Group",
    "StateDirectory",
    "WorkingDirectory",
    "Environment",
    "EnvironmentFile",
    "LoadCredential",
    "UMask",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectControlGroups",
    "RestrictAddressFamilies",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RestrictRealtime",
    "SystemCallArchitectures",
]

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """systemd's ini dialect: repeated keys accumulate, '#'/';' start comments, '\\' continues a line."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def load(name: str) -> Unit:
    return parse_unit((UNITS / name).read_text())


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"{section}.{key} missing"
    assert len(values) == 1, f"{section}.{key} set more than once"
    return values[0]


def test_daemon_unit_has_the_contract_keys() -> None:
    """Type=notify with a watchdog, restart except on 78, dedicated user, state and working directories."""
    unit = load(DAEMON)
    service = unit["Service"]
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "ExecStart") == "/opt/reconciler/venv/bin/reconciler daemon"
    assert int(one(unit, "Service", "WatchdogSec")) > 0
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec")
    assert "78" in one(unit, "Service", "RestartPreventExitStatus").split()
    assert one(unit, "Service", "TimeoutStopSec")
    assert one(unit, "Service", "User") == "reconciler"
    assert one(unit, "Service", "Group") == "reconciler"
    assert "DynamicUser" not in service
    assert one(unit, "Service", "StateDirectory") == "reconciler"
    assert one(unit, "Service", "WorkingDirectory") == "/var/lib/reconciler"
    assert one(unit, "Service", "Environment") == "RECONCILER_MAPPING=/etc/reconciler/mapping.toml"
    assert one(unit, "Service", "EnvironmentFile") == "-/etc/reconciler/reconciler.env"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    assert one(unit, "Service", "RestrictAddressFamilies").split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    for key in [
        "ProtectHome",
        "PrivateTmp",
        "NoNewPrivileges",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
    ]:
        assert one(unit, "Service", key) == "yes", key
    assert one(unit, "Service", "SystemCallArchitectures") == "native"
    assert one(unit, "Service", "UMask") == "0077"
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_secrets_come_only_from_credentials() -> None:
    """Each secret is a LoadCredential named after its lower-cased variable; none is in Environment=."""
    for name in (DAEMON, ONCE):
        unit = load(name)
        creds = dict(value.split(":", 1) for value in unit["Service"]["LoadCredential"])
        assert set(creds) == SECRETS, name
        for cred_id, source in creds.items():
            assert source == f"/etc/reconciler/credentials/{cred_id}"
        environment = " ".join(unit["Service"].get("Environment", []))
        for secret in ["ZOHO_CLIENT_SECRET", "ZOHO_REFRESH_TOKEN", "SI_API_KEY", "SI_TOKEN", "CRM_SECRET"]:
            assert secret not in environment


def test_oneshot_unit_runs_once_with_the_daemons_identity_and_hardening() -> None:
    """run-once: Type=oneshot, 143 (stopped) is success, and the daemon's user, state, secrets, sandbox."""
    daemon, once = load(DAEMON), load(ONCE)
    assert one(once, "Service", "Type") == "oneshot"
    assert one(once, "Service", "ExecStart") == "/opt/reconciler/venv/bin/reconciler run-once"
    # Only a deliberate stop (SIGTERM -> 143, cycle recorded as interrupted) counts as success.
    assert one(once, "Service", "SuccessExitStatus") == "143"
    assert "DynamicUser" not in once["Service"]
    assert "Install" not in once  # started by the timer, never enabled on its own
    for key in SHARED:
        assert sorted(once["Service"].get(key, [])) == sorted(daemon["Service"].get(key, [])), key


def test_timer_runs_the_oneshot_every_five_minutes() -> None:
    """The timer: after boot, every 5 minutes, persistent, randomized, bound to the oneshot service."""
    timer = load(TIMER)
    assert one(timer, "Timer", "OnBootSec")
    assert one(timer, "Timer", "OnUnitActiveSec") == "5min"
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Timer", "RandomizedDelaySec")
    assert one(timer, "Timer", "Unit") == ONCE
    assert one(timer, "Install", "WantedBy") == "timers.target"


def test_units_warn_to_use_daemon_or_timer_not_both() -> None:
    """Each unit says to run either the daemon or the timer (they share one lock)."""
    for name in (DAEMON, ONCE, TIMER):
        assert re.search(r"EITHER .* OR .*never both", (UNITS / name).read_text()), name


def test_exec_start_names_the_console_script() -> None:
    """ExecStart runs the `reconciler` console script that pyproject.toml installs."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "reconciler" in scripts
    for name in (DAEMON, ONCE):
        assert Path(one(load(name), "Service", "ExecStart").split()[0]).name == "reconciler"


def _executable() -> str:
    script = Path(sys.executable).parent / "reconciler"
    return str(script) if script.exists() else sys.executable


@pytest.fixture
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return tool


def _verify(tool: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify_accepts_the_units(analyze: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong (copies: ExecStart points at a binary that exists).

    verify rejects a missing ExecStart binary and nothing else here (an unknown User= and missing
    credential files are only checked at start), so ExecStart is the one thing rewritten.
    """
    probe = tmp_path / "probe" / "probe.service"
    probe.parent.mkdir()
    probe.write_text(f"[Service]\nType=oneshot\nExecStart={_executable()}\n")
    if _verify(analyze, probe).returncode != 0:
        pytest.skip("systemd-analyze verify does not work in this environment")
    copies = []
    for name in (DAEMON, ONCE, TIMER):
        text = (UNITS / name).read_text().replace("/opt/reconciler/venv/bin/reconciler", _executable())
        copy = tmp_path / name
        copy.write_text(text)
        copies.append(copy)
    result = _verify(analyze, *copies)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "reconciler" not in result.stderr, result.stderr  # no warnings about our units either


def test_systemd_analyze_security_rates_the_daemon_well(analyze: str, tmp_path: Path) -> None:
    """The hardening keeps `systemd-analyze security --offline` exposure low (where --offline exists)."""
    copy = tmp_path / DAEMON
    copy.write_text(
        (UNITS / DAEMON).read_text().replace("/opt/reconciler/venv/bin/reconciler", _executable())
    )
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    if match is None:
        pytest.skip("systemd-analyze security --offline is not available here")
    assert float(match.group(1)) <= 3.0, result.stdout
