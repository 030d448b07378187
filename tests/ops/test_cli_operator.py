"""Operator-facing CLI behaviour: log levels, --env-file/--db, env-file linting, SIGPIPE, init-config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler import defaults
from reconciler.envcheck import parse_env
from reconciler.sim.harness import SimPair
from reconciler.store import Store
from tests.conftest import DEFAULT_MAPPING, ROOT, run_cli
from tests.e2e.helpers import cli_env


def _levels(stderr: str) -> set[str]:
    return {line.split()[1] for line in stderr.splitlines() if len(line.split()) > 1}


# ---- log levels ---------------------------------------------------------------------------------------


def test_per_record_lines_are_debug_and_the_level_is_chosen_by_setting_or_flag(
    served_sims: SimPair, tmp_path: Path
) -> None:
    """INFO by default without per-record lines; -v adds them (DEBUG); RECONCILER_LOG_LEVEL=WARNING and
    -q keep INFO out."""
    for n in range(3):
        served_sims.zoho.add_deal(Deal_Name=f"D{n}", Account_Name="Acme", Send_to_SI=True)
    env = served_sims.environment(tmp_path / "a.db", DEFAULT_MAPPING)

    default = run_cli(["run-once"], env, tmp_path).stderr
    assert "INFO" in _levels(default) and "action.applied" not in default
    for n in range(3, 6):
        served_sims.zoho.add_deal(Deal_Name=f"D{n}", Account_Name="Acme", Send_to_SI=True)
    verbose = run_cli(["-v", "run-once"], env, tmp_path).stderr
    assert verbose.count("action.applied") >= 3 and "DEBUG" in _levels(verbose)

    quiet_env = {**env, "RECONCILER_LOG_LEVEL": "warning"}
    assert _levels(run_cli(["plan"], quiet_env, tmp_path).stderr) <= {"WARNING", "ERROR"}
    assert _levels(run_cli(["plan", "-q"], env, tmp_path).stderr) <= {"WARNING", "ERROR"}


def test_a_bad_log_level_is_one_line_naming_it(tmp_path: Path) -> None:
    result = run_cli(["status"], {"RECONCILER_LOG_LEVEL": "LOUD", "RECONCILER_DB": "x.db"}, tmp_path)
    assert result.returncode == 78
    [line] = result.stderr.splitlines()
    assert line.startswith("reconciler: RECONCILER_LOG_LEVEL: ")


# ---- --env-file and --db ------------------------------------------------------------------------------


def _env_file(sims: SimPair, path: Path, **extra: str) -> Path:
    lines = ["# the unit's settings, in systemd's syntax", ""]
    lines += [f"{name}={value}" for name, value in sims.environment(Path("unused"), DEFAULT_MAPPING).items()]
    lines = [line for line in lines if not line.startswith("RECONCILER_DB=")]
    lines += [f"{name}={value}" for name, value in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_env_file_and_db_flags_before_or_after_the_command(served_sims: SimPair, tmp_path: Path) -> None:
    """`--env-file` reads a systemd env file, `--db` picks the database; both work on either side."""
    served_sims.zoho.add_deal(Deal_Name="D", Account_Name="Acme", Send_to_SI=True)
    env_file = _env_file(served_sims, tmp_path / "reconciler.env")
    db = tmp_path / "elsewhere" / "r.db"
    db.parent.mkdir()

    ran = run_cli(["--env-file", str(env_file), "--db", str(db), "run-once"], {}, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert db.exists() and not (tmp_path / "state").exists()
    status = run_cli(["status", "--db", str(db)], {}, tmp_path)
    assert status.returncode == 0 and f"Database: {db}" in status.stdout


def test_the_environment_beats_the_env_file(served_sims: SimPair, tmp_path: Path) -> None:
    """A variable set in the environment wins over the same one in --env-file (as systemd's Environment=
    under a drop-in would be overridden only by the operator)."""
    env_file = _env_file(served_sims, tmp_path / "reconciler.env", RECONCILER_LOG_LEVEL="DEBUG")
    result = run_cli(
        ["--env-file", str(env_file), "plan"],
        {"RECONCILER_DB": str(tmp_path / "r.db"), "RECONCILER_LOG_LEVEL": "ERROR"},
        tmp_path,
    )
    assert result.returncode in (0, 2), result.stderr
    assert result.stderr == ""


def test_a_missing_env_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli(["--env-file", str(tmp_path / "nope.env"), "status"], {}, tmp_path)
    assert result.returncode == 78
    assert result.stderr.strip() == f"reconciler: --env-file: {tmp_path / 'nope.env'}: no such file"


# ---- check: inline comments and placeholders ----------------------------------------------------------


def test_check_rejects_inline_comments_and_placeholders_naming_each_variable(
    served_sims: SimPair, tmp_path: Path
) -> None:
    """Values systemd would keep verbatim (`... # note`) and example placeholders: one line each, 78."""
    env_file = _env_file(
        served_sims,
        tmp_path / "reconciler.env",
        RECONCILER_HEALTHCHECK_URL="https://hc-ping.com/abc # the office check",
        RECONCILER_INTERVAL="300 # five minutes",
    )
    (tmp_path / ".env").write_text("ZOHO_CLIENT_SECRET=change-me\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "si_api_key").write_text("<your key>")
    env = {"CREDENTIALS_DIRECTORY": str(credentials), "RECONCILER_NOTIFY_URL": "https://hooks.slack.com/..."}

    result = run_cli(["--env-file", str(env_file), "check", "--offline"], env, tmp_path)

    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    comment = 'the value has an inline comment (" #"): systemd keeps everything after "=" as the value'
    count = len(parse_env(env_file.read_text()))
    assert lines == [
        'reconciler: RECONCILER_NOTIFY_URL: still holds the placeholder "..." from the example; set the '
        "real value (environment)",
        'reconciler: ZOHO_CLIENT_SECRET: still holds the placeholder "change-me" from the example; set the '
        "real value (.env line 1)",
        f"reconciler: RECONCILER_HEALTHCHECK_URL: {comment}; put the comment on its own line "
        f"({env_file} line {count + 1})",
        f"reconciler: RECONCILER_INTERVAL: {comment}; put the comment on its own line "
        f"({env_file} line {count + 2})",
        f'reconciler: SI_API_KEY: still holds the placeholder "<your key>" from the example; set the real '
        f"value (credential {credentials / 'si_api_key'})",
    ]


def test_check_passes_the_shipped_env_example_once_filled_in(served_sims: SimPair, tmp_path: Path) -> None:
    """The shipped reconciler.env with its placeholder replaced passes `check --offline`."""
    shipped = defaults.text("reconciler.env.example")
    assert "ZOHO_CLIENT_ID=1000.XXXX" in shipped
    filled = shipped.replace("1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", served_sims.zoho.client_id).replace(
        "/etc/reconciler/mapping.toml", str(DEFAULT_MAPPING)
    )
    env_file = tmp_path / "reconciler.env"
    env_file.write_text(filled)
    secrets = {
        k: v for k, v in served_sims.environment(tmp_path / "r.db").items() if "SECRET" in k or "KEY" in k
    }
    secrets["ZOHO_REFRESH_TOKEN"] = served_sims.zoho.refresh_token
    result = run_cli(["--env-file", str(env_file), "check", "--offline"], secrets, tmp_path)
    assert result.returncode == 0, result.stderr


def test_every_example_keeps_comments_on_their_own_lines() -> None:
    """No example env file has a value that systemd would read with a comment in it."""
    for path in (ROOT / ".env.example", ROOT / "reconciler" / "defaults" / "reconciler.env.example"):
        for assignment in parse_env(path.read_text()):
            assert " #" not in assignment.value and "\t#" not in assignment.value, (path, assignment)


# ---- SIGPIPE ------------------------------------------------------------------------------------------


def test_a_closed_stdout_ends_the_command_quietly(tmp_path: Path) -> None:
    """`status | head -2` where head is gone: no BrokenPipeError traceback, exit 141."""
    Store.open(tmp_path / "r.db").close()
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", "status"],
            env=cli_env({"RECONCILER_DB": str(tmp_path / "r.db")}),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert result.stderr == ""
    assert result.returncode == 141


# ---- init-config and the shipped files ----------------------------------------------------------------


def test_shipped_defaults_are_the_checkout_files() -> None:
    """The package's copies of the mapping and its example are the ones in config/ (keep them identical)."""
    for name in ("mapping.toml", "mapping.example.toml"):
        assert defaults.text(name) == (ROOT / "config" / name).read_text(), name


def test_init_config_writes_the_files_to_edit_and_refuses_to_overwrite(tmp_path: Path) -> None:
    """init-config DIR: mapping.toml, mapping.example.toml and reconciler.env; again: refused, exit 1,
    nothing changed; with --force: replaced."""
    target = tmp_path / "etc" / "reconciler"
    first = run_cli(["init-config", str(target)], {}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in target.iterdir()) == [
        "mapping.example.toml",
        "mapping.toml",
        "reconciler.env",
    ]
    assert (target / "mapping.toml").read_text() == (ROOT / "config" / "mapping.toml").read_text()
    assert (target / "reconciler.env").read_text() == defaults.text("reconciler.env.example")

    (target / "mapping.toml").write_text("# mine\n")
    again = run_cli(["init-config", str(target)], {}, tmp_path)
    assert again.returncode == 1
    assert "would overwrite" in again.stderr and "--force" in again.stderr
    assert (target / "mapping.toml").read_text() == "# mine\n"
    forced = run_cli(["init-config", "--force", str(target)], {}, tmp_path)
    assert forced.returncode == 0
    assert (target / "mapping.toml").read_text() != "# mine\n"


@pytest.mark.parametrize("name", ["mapping.toml", "mapping.example.toml"])
def test_shipped_mappings_pass_check(tmp_path: Path, name: str, served_sims: SimPair) -> None:
    """Both shipped mappings load (the example too: it documents only valid options)."""
    path = tmp_path / name
    path.write_text(defaults.text(name))
    env = served_sims.environment(tmp_path / "r.db", path)
    result = run_cli(["check", "--offline"], env, tmp_path)
    assert result.returncode == 0, result.stderr
