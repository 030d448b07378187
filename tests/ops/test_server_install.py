"""The README's server install, followed step by step, with systemd emulated in a temporary root.

``reconciler init-config`` writes /etc/reconciler; the operator fills in reconciler.env (systemd's
syntax) and the credential files; the commands then run through ``systemd/reconciler-admin``, which
reads the unit and hands its identity, files and credentials to ``systemd-run``. Here ``systemd-run`` is
``fake_systemd_run.py``: a clean environment, ``EnvironmentFile=`` parsed by systemd's rules,
``STATE_DIRECTORY``, ``CREDENTIALS_DIRECTORY`` and ``WorkingDirectory=`` as systemd sets them up.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.plan import project_guid
from reconciler.sim.harness import SimPair
from tests.conftest import ROOT

ADMIN = ROOT / "systemd" / "reconciler-admin"


def _console_script() -> str:
    script = Path(sys.executable).parent / "reconciler"
    if not script.exists():
        pytest.skip("the reconciler console script is not installed next to this Python")
    return str(script)


class Server:
    """A temporary root holding /etc/reconciler, /var/lib and the units, with paths rewritten into it."""

    def __init__(self, tmp_path: Path, sims: SimPair) -> None:
        if shutil.which("bash") is None:
            pytest.skip("bash is needed for reconciler-admin")
        self.root = tmp_path / "root"
        self.etc = self.root / "etc" / "reconciler"
        self.state = self.root / "var" / "lib" / "reconciler"
        self.sims = sims
        self.log = tmp_path / "systemd-run.log"
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        shim = self.bin / "systemd-run"
        shim.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" '
            f'"{ROOT}/tests/ops/fake_systemd_run.py" "$@"\n'
        )
        shim.chmod(0o755)
        self.units = tmp_path / "units"
        self.units.mkdir()
        for name in ("reconciler.service", "reconciler-once.service"):
            text = (ROOT / "systemd" / name).read_text()
            text = text.replace("/opt/reconciler/venv/bin/reconciler", _console_script())
            text = text.replace("/etc/reconciler", str(self.etc)).replace(
                "/var/lib/reconciler", str(self.state)
            )
            (self.units / name).write_text(text)
        self.state.mkdir(parents=True)  # the README's `install -d` of the state directory

    def admin(self, *args: str, unit: str = "reconciler.service") -> tuple[int, str, str]:
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "RECONCILER_UNIT_FILE": str(self.units / unit),
            "FAKE_SYSTEMD_ROOT": str(self.root),
            "FAKE_SYSTEMD_LOG": str(self.log),
            # What the operator's shell happens to hold must not reach the service:
            "RECONCILER_DB": "/nonexistent/should-not-be-used.db",
            "SI_API_KEY": "the-wrong-key",
        }
        result = subprocess.run(
            ["bash", str(ADMIN), *args],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        return result.returncode, result.stdout, result.stderr

    def configure(self) -> None:
        """The README steps: init-config, fill in reconciler.env, write the credential files."""
        subprocess.run(
            [_console_script(), "init-config", str(self.etc)], check=True, capture_output=True, timeout=60
        )
        env_file = self.etc / "reconciler.env"
        text = env_file.read_text().replace("1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", self.sims.zoho.client_id)
        text = text.replace("/etc/reconciler", str(self.etc))
        text += (
            "\n# Simulators instead of Zoho and SI (comments stay on their own lines):\n"
            f"ZOHO_API_URL={self.sims.zoho_url}\n"
            f'ZOHO_ACCOUNTS_URL="{self.sims.zoho_url}"\n'
            f"SI_BASE_URL = {self.sims.si_url}\n"
            "RECONCILER_LOG_FORMAT='json'\n"
        )
        env_file.write_text(text)
        credentials = self.etc / "credentials"
        credentials.mkdir(mode=0o700)
        for name, value in {
            "zoho_client_secret": self.sims.zoho.client_secret,
            "zoho_refresh_token": self.sims.zoho.refresh_token,
            "si_api_key": self.sims.si.api_key,
        }.items():
            (credentials / name).write_text(value)
            (credentials / name).chmod(0o600)


@pytest.fixture
def server(tmp_path: Path, served_sims: SimPair) -> Server:
    made = Server(tmp_path, served_sims)
    made.configure()
    return made


def test_the_documented_server_commands_work_under_the_units_environment(
    server: Server, served_sims: SimPair, tmp_path: Path
) -> None:
    """check --offline, plan, run-once (as the timer's unit runs it), status and backup through
    reconciler-admin: the database lands in the state directory, secrets come from the credentials."""
    deals = [
        served_sims.zoho.add_deal(Deal_Name=f"Site {n}", Account_Name="Acme", Send_to_SI=True)
        for n in range(2)
    ]

    code, out, err = server.admin("check", "--offline")
    assert code == 0, err
    assert f"mapping {server.etc / 'mapping.toml'} OK" in out

    code, out, err = server.admin("plan")
    assert code == 2, err
    assert "2 record(s) to write" in out

    code, out, err = server.admin("run-once", unit="reconciler-once.service")
    assert code == 0, err
    assert all(json.loads(line)["level"] for line in err.splitlines())  # RECONCILER_LOG_FORMAT='json'
    assert [served_sims.zoho.deal(d)["SI_Project_ID"] for d in deals] == [project_guid(d) for d in deals]

    code, out, err = server.admin("status")
    assert code == 0, err
    assert f"Database: {server.state / 'reconciler.db'}" in out
    assert "(daemon lock free)" in out

    backup = server.state / "backup.db"
    code, out, err = server.admin("backup", str(backup))
    assert code == 0, err
    with sqlite3.connect(backup) as con:
        assert con.execute("select count(*) from link").fetchone() == (2,)
    con.close()

    assert sorted(p.name for p in server.state.iterdir() if not p.name.startswith("reconciler.db")) == [
        "backup.db"
    ]
    assert not (server.root / "state").exists() and not Path("/nonexistent").exists()
    calls = [json.loads(line) for line in server.log.read_text().splitlines()]
    properties = dict((k, v) for k, v in calls[0]["properties"] if k != "LoadCredential")
    assert properties["User"] == "reconciler" and properties["StateDirectory"] == "reconciler"
    assert properties["Environment"] == f"RECONCILER_MAPPING={server.etc / 'mapping.toml'}"
    loaded = sorted(v.split(":")[0] for k, v in calls[0]["properties"] if k == "LoadCredential")
    assert loaded == ["si_api_key", "zoho_client_secret", "zoho_refresh_token"]


def test_an_inline_comment_in_the_env_file_is_caught_by_check(server: Server) -> None:
    """The trap the issue found: `URL=... # note` in reconciler.env. `check` names it (exit 78)."""
    env_file = server.etc / "reconciler.env"
    env_file.write_text(
        env_file.read_text() + "RECONCILER_HEALTHCHECK_URL=https://hc-ping.com/abc # office check\n"
    )
    code, _, err = server.admin("check", "--offline")
    assert code == 78
    [line] = [line for line in err.splitlines() if line.startswith("reconciler: ")]
    assert line.startswith("reconciler: RECONCILER_HEALTHCHECK_URL: the value has an inline comment")
    assert "(environment)" in line  # systemd handed it over verbatim, as the emulation does
