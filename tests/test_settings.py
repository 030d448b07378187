"""Settings: every contract variable, aliases, precedence, defaults, and per-command checks (exit 78)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.errors import EX_CONFIG, ConfigError
from reconciler.settings import Settings, load_settings

_PREFIXES = ("ZOHO_", "SI_", "RECONCILER_", "CRM_")
_SYSTEMD = ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")

CYCLE_ENV = {
    "ZOHO_CLIENT_ID": "1000.client",
    "ZOHO_CLIENT_SECRET": "client-secret-value",
    "ZOHO_REFRESH_TOKEN": "1000.refresh-token-value",
    "SI_API_KEY": "si-api-key-value",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment (no contract variable, no systemd dirs) in an empty working directory."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES) or name in _SYSTEMD:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


@pytest.fixture
def dotenv(tmp_path: Path) -> Callable[[dict[str, str]], None]:
    def write(values: dict[str, str]) -> None:
        text = "".join(f"{name}={value}\n" for name, value in values.items())
        (tmp_path / ".env").write_text(text, encoding="utf-8")

    return write


@pytest.fixture
def creds(env: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[dict[str, str]], None]:
    directory = tmp_path / "credentials"
    directory.mkdir()
    env.setenv("CREDENTIALS_DIRECTORY", str(directory))

    def write(values: dict[str, str]) -> None:
        for name, value in values.items():
            (directory / name).write_text(value + "\n", encoding="utf-8")

    return write


@pytest.fixture
def mapping_in_cwd(tmp_path: Path) -> Path:
    """The default mapping path (config/mapping.toml, relative to the working directory) exists."""
    path = tmp_path / "config" / "mapping.toml"
    path.parent.mkdir()
    path.write_text("# placeholder\n", encoding="utf-8")
    return path


def _problems(command: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_settings(command)
    assert caught.value.exit_code == EX_CONFIG
    return caught.value.problems


# ---- reading every variable ---------------------------------------------------------------------------


def test_every_contract_variable_is_read_from_the_environment(env: pytest.MonkeyPatch) -> None:
    """Each variable of the operator contract lands on its setting."""
    values = {
        "ZOHO_CLIENT_ID": "1000.id",
        "ZOHO_CLIENT_SECRET": "sec",
        "ZOHO_REFRESH_TOKEN": "ref",
        "ZOHO_SOID": "778899",
        "ZOHO_DC": "eu",
        "ZOHO_API_URL": "https://api.example.test",
        "ZOHO_ACCOUNTS_URL": "https://accounts.example.test",
        "SI_API_KEY": "key",
        "SI_BASE_URL": "https://si.example.test/SI",
        "RECONCILER_DB": "data/r.db",
        "RECONCILER_MAPPING": "m.toml",
        "RECONCILER_INTERVAL": "60",
        "RECONCILER_FULL_EVERY": "3600",
        "RECONCILER_LOG_FORMAT": "json",
        "RECONCILER_MAX_WRITES": "7",
        "RECONCILER_HEALTHCHECK_URL": "https://hc.example.test/ping",
        "RECONCILER_NOTIFY_URL": "https://hooks.example.test/x",
        "RECONCILER_METRICS_FILE": "metrics/reconciler.prom",
    }
    for name, value in values.items():
        env.setenv(name, value)
    s = Settings()
    assert s.zoho_client_id == "1000.id"
    assert s.zoho_client_secret is not None and s.zoho_client_secret.get_secret_value() == "sec"
    assert s.zoho_refresh_token is not None and s.zoho_refresh_token.get_secret_value() == "ref"
    assert s.zoho_soid == "778899"
    assert s.zoho_dc == "eu"
    assert s.zoho_api_url == "https://api.example.test"
    assert s.accounts_url == "https://accounts.example.test"
    assert s.si_api_key is not None and s.si_api_key.get_secret_value() == "key"
    assert s.si_base_url == "https://si.example.test/SI"
    assert s.db_path == Path("data/r.db")
    assert s.reconciler_mapping == Path("m.toml")
    assert s.reconciler_interval == 60
    assert s.reconciler_full_every == 3600
    assert s.reconciler_log_format == "json"
    assert s.reconciler_max_writes == 7
    assert s.reconciler_healthcheck_url == "https://hc.example.test/ping"
    assert s.reconciler_notify_url == "https://hooks.example.test/x"
    assert s.reconciler_metrics_file == Path("metrics/reconciler.prom")


def test_old_alias_names_are_accepted(env: pytest.MonkeyPatch) -> None:
    """CRM_ID, CRM_SECRET, CRM_SOID, SI_TOKEN and SI_ENDPOINT fill the new settings."""
    env.setenv("CRM_ID", "old-id")
    env.setenv("CRM_SECRET", "old-secret")
    env.setenv("CRM_SOID", "4455")
    env.setenv("SI_TOKEN", "old-key")
    env.setenv("SI_ENDPOINT", "https://old.example.test/SI/")
    s = Settings()
    assert s.zoho_client_id == "old-id"
    assert s.zoho_client_secret is not None and s.zoho_client_secret.get_secret_value() == "old-secret"
    assert s.zoho_soid == "4455"
    assert s.si_api_key is not None and s.si_api_key.get_secret_value() == "old-key"
    assert s.si_base_url == "https://old.example.test/SI"


@pytest.mark.parametrize(
    ("new", "old", "attribute"),
    [
        ("ZOHO_CLIENT_ID", "CRM_ID", "zoho_client_id"),
        ("ZOHO_CLIENT_SECRET", "CRM_SECRET", "zoho_client_secret"),
        ("ZOHO_SOID", "CRM_SOID", "zoho_soid"),
        ("SI_API_KEY", "SI_TOKEN", "si_api_key"),
        ("SI_BASE_URL", "SI_ENDPOINT", "si_base_url"),
    ],
)
def test_new_name_beats_its_old_alias(env: pytest.MonkeyPatch, new: str, old: str, attribute: str) -> None:
    """With both names set in the same place, the new name's value is used."""
    env.setenv(old, "https://old.example.test")
    env.setenv(new, "https://new.example.test")
    value = getattr(Settings(), attribute)
    value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    assert value == "https://new.example.test"


# ---- precedence -----------------------------------------------------------------------------------------


def test_environment_beats_credentials_directory_beats_dotenv(env, creds, dotenv) -> None:
    """Each source wins over the ones below it, setting by setting."""
    dotenv({"ZOHO_CLIENT_ID": "from-dotenv", "SI_API_KEY": "from-dotenv", "ZOHO_SOID": "from-dotenv"})
    creds({"zoho_client_id": "from-creds", "si_api_key": "from-creds"})
    env.setenv("ZOHO_CLIENT_ID", "from-env")
    s = Settings()
    assert s.zoho_client_id == "from-env"
    assert s.si_api_key is not None and s.si_api_key.get_secret_value() == "from-creds"
    assert s.zoho_soid == "from-dotenv"


def test_credentials_file_beats_dotenv_under_either_name(env, creds, dotenv) -> None:
    """A systemd credential wins over .env whether .env uses the new name or the old alias."""
    dotenv({"ZOHO_REFRESH_TOKEN": "dotenv-token", "CRM_SECRET": "dotenv-secret"})
    creds({"zoho_refresh_token": "creds-token", "zoho_client_secret": "creds-secret"})
    s = Settings()
    assert s.zoho_refresh_token is not None and s.zoho_refresh_token.get_secret_value() == "creds-token"
    assert s.zoho_client_secret is not None and s.zoho_client_secret.get_secret_value() == "creds-secret"


def test_old_alias_in_environment_beats_new_name_in_dotenv(env, dotenv) -> None:
    """Source precedence comes first: the environment's CRM_ID beats ZOHO_CLIENT_ID in .env."""
    dotenv({"ZOHO_CLIENT_ID": "dotenv-new"})
    env.setenv("CRM_ID", "env-old")
    assert Settings().zoho_client_id == "env-old"


def test_dotenv_is_read_from_the_working_directory(env, dotenv) -> None:
    """A .env in the working directory supplies settings (inline comments stripped)."""
    dotenv({"SI_API_KEY": "dotenv-key   # the SI key", "RECONCILER_INTERVAL": "42"})
    s = Settings()
    assert s.si_api_key is not None and s.si_api_key.get_secret_value() == "dotenv-key"
    assert s.reconciler_interval == 42


# ---- defaults -------------------------------------------------------------------------------------------


def test_defaults_match_the_contract(env) -> None:
    """Without any variable: com data centre, D-Tools URL, 300 s, 86400 s, 500 writes, text logs."""
    s = Settings()
    assert s.zoho_dc == "com"
    assert s.zoho_default_api_url == "https://www.zohoapis.com"
    assert s.accounts_url == "https://accounts.zoho.com"
    assert s.zoho_api_url is None
    assert s.si_base_url == "https://api.d-tools.com/SI"
    assert s.reconciler_interval == 300
    assert s.reconciler_full_every == 86400
    assert s.reconciler_max_writes == 500
    assert s.reconciler_log_format == "text"
    assert s.reconciler_mapping == Path("config/mapping.toml")
    assert s.reconciler_healthcheck_url is None
    assert s.reconciler_notify_url is None
    assert s.reconciler_metrics_file is None


def test_database_defaults_to_state_dir_relative_to_cwd(env) -> None:
    """No RECONCILER_DB and no STATE_DIRECTORY: ./state/reconciler.db."""
    assert Settings().db_path == Path("state") / "reconciler.db"


def test_database_defaults_into_systemd_state_directory(env, tmp_path: Path) -> None:
    """With STATE_DIRECTORY (the first of several) the database lives there."""
    env.setenv("STATE_DIRECTORY", f"{tmp_path}/state-a:{tmp_path}/state-b")
    s = Settings()
    assert s.db_path == tmp_path / "state-a" / "reconciler.db"
    assert s.lock_path == tmp_path / "state-a" / "reconciler.db.lock"


def test_data_centre_picks_both_origins(env) -> None:
    """ZOHO_DC=eu selects the EU API and accounts origins; ZOHO_ACCOUNTS_URL still wins when set."""
    env.setenv("ZOHO_DC", "eu")
    s = Settings()
    assert (s.zoho_default_api_url, s.accounts_url) == ("https://www.zohoapis.eu", "https://accounts.zoho.eu")
    env.setenv("ZOHO_ACCOUNTS_URL", "http://127.0.0.1:9/")
    assert Settings().accounts_url == "http://127.0.0.1:9"


# ---- load_settings: per-command checks ------------------------------------------------------------------


def test_run_once_reports_every_missing_setting_at_once(env) -> None:
    """Missing id, secret, SI key, grant and mapping file: five lines, each naming its variable."""
    problems = _problems("run-once")
    assert len(problems) == 5
    joined = "\n".join(problems)
    for name in (
        "ZOHO_CLIENT_ID",
        "ZOHO_CLIENT_SECRET",
        "SI_API_KEY",
        "ZOHO_REFRESH_TOKEN",
        "ZOHO_SOID",
        "RECONCILER_MAPPING",
    ):
        assert name in joined
    assert all(line.split(":")[0].isupper() for line in problems)


def test_run_once_accepts_soid_instead_of_refresh_token(env, mapping_in_cwd) -> None:
    """ZOHO_SOID (client-credentials grant) satisfies the Zoho grant requirement."""
    for name, value in CYCLE_ENV.items():
        if name != "ZOHO_REFRESH_TOKEN":
            env.setenv(name, value)
    env.setenv("ZOHO_SOID", "123456")
    assert load_settings("run-once").zoho_soid == "123456"


def test_run_once_loads_with_everything_present(env, mapping_in_cwd) -> None:
    """All credentials and the default mapping file present: settings load."""
    for name, value in CYCLE_ENV.items():
        env.setenv(name, value)
    assert load_settings("run-once").reconciler_mapping == Path("config/mapping.toml")


def test_blank_secrets_in_dotenv_count_as_missing(env, dotenv, mapping_in_cwd) -> None:
    """`ZOHO_REFRESH_TOKEN=` left blank (as when copying .env.example) is reported, not used."""
    dotenv({"ZOHO_CLIENT_ID": "id", "ZOHO_CLIENT_SECRET": "", "ZOHO_REFRESH_TOKEN": "", "SI_API_KEY": " "})
    joined = "\n".join(_problems("run-once"))
    assert "ZOHO_CLIENT_SECRET" in joined
    assert "ZOHO_REFRESH_TOKEN" in joined
    assert "SI_API_KEY" in joined


@pytest.mark.parametrize("command", ["status", "history", "retry", "demo"])
def test_database_commands_ignore_cycle_settings(env, command: str) -> None:
    """status/history/retry/demo need no credentials and ignore a broken interval, DC or URL."""
    env.setenv("RECONCILER_INTERVAL", "every five minutes")
    env.setenv("RECONCILER_MAX_WRITES", "-1")
    env.setenv("ZOHO_DC", "mars")
    env.setenv("SI_BASE_URL", "not-a-url")
    s = load_settings(command)
    assert s.reconciler_interval == 300
    assert s.db_path == Path("state") / "reconciler.db"


def test_status_still_rejects_a_bad_log_format(env) -> None:
    """Every command logs, so a bad RECONCILER_LOG_FORMAT is reported even by status."""
    env.setenv("RECONCILER_LOG_FORMAT", "xml")
    (problem,) = _problems("status")
    assert problem.startswith("RECONCILER_LOG_FORMAT:")


def test_auth_needs_only_the_client_id_and_secret(env) -> None:
    """auth lists the client id and secret as missing, nothing else; with them it loads."""
    env.setenv("RECONCILER_INTERVAL", "soon")
    problems = _problems("auth")
    assert [p.split(":")[0] for p in problems] == ["ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET"]
    env.setenv("CRM_ID", "id")
    env.setenv("ZOHO_CLIENT_SECRET", "secret")
    assert load_settings("auth").zoho_client_id == "id"


def test_bad_data_centre_is_a_config_error_naming_zoho_dc(env, mapping_in_cwd) -> None:
    """ZOHO_DC outside the documented list: exit 78, one line naming ZOHO_DC."""
    for name, value in CYCLE_ENV.items():
        env.setenv(name, value)
    env.setenv("ZOHO_DC", "mars")
    (problem,) = _problems("run-once")
    assert problem.startswith("ZOHO_DC:")
    assert "mars" in problem


@pytest.mark.parametrize(
    "variable",
    [
        "SI_BASE_URL",
        "ZOHO_API_URL",
        "ZOHO_ACCOUNTS_URL",
        "RECONCILER_HEALTHCHECK_URL",
        "RECONCILER_NOTIFY_URL",
    ],
)
def test_non_http_url_is_a_config_error_naming_it(env, mapping_in_cwd, variable: str) -> None:
    """A URL without http:// or https:// is refused with a line naming the variable."""
    for name, value in CYCLE_ENV.items():
        env.setenv(name, value)
    env.setenv(variable, "ftp://files.example.test")
    (problem,) = _problems("run-once")
    assert problem.startswith(f"{variable}:")


def test_old_alias_error_is_reported_under_the_new_name(env, mapping_in_cwd) -> None:
    """A bad SI_ENDPOINT is reported as SI_BASE_URL, the documented name."""
    for name, value in CYCLE_ENV.items():
        env.setenv(name, value)
    env.setenv("SI_ENDPOINT", "si.example.test")
    (problem,) = _problems("run-once")
    assert problem.startswith("SI_BASE_URL:")


def test_several_bad_values_are_reported_together(env, mapping_in_cwd) -> None:
    """Bad interval, max writes and log format: one line each, all in one error."""
    for name, value in CYCLE_ENV.items():
        env.setenv(name, value)
    env.setenv("RECONCILER_INTERVAL", "0")
    env.setenv("RECONCILER_MAX_WRITES", "lots")
    env.setenv("RECONCILER_LOG_FORMAT", "xml")
    problems = _problems("daemon")
    assert sorted(p.split(":")[0] for p in problems) == [
        "RECONCILER_INTERVAL",
        "RECONCILER_LOG_FORMAT",
        "RECONCILER_MAX_WRITES",
    ]


def test_config_errors_never_contain_a_secret_value(env) -> None:
    """Problem lines name variables; the secrets set alongside never appear in them."""
    env.setenv("ZOHO_CLIENT_SECRET", "client-secret-value")
    env.setenv("SI_API_KEY", "si-api-key-value")
    env.setenv("ZOHO_DC", "mars")
    env.setenv("RECONCILER_INTERVAL", "x")
    with pytest.raises(ConfigError) as caught:
        load_settings("run-once")
    text = str(caught.value)
    assert "ZOHO_DC" in text
    for secret in ("client-secret-value", "si-api-key-value"):
        assert secret not in text
    env.delenv("ZOHO_DC")
    env.delenv("RECONCILER_INTERVAL")
    assert "client-secret-value" not in repr(Settings())


# ---- every value the runtime uses is checked -------------------------------------------------------------


def _cycle_env(env: pytest.MonkeyPatch) -> None:
    for name, value in CYCLE_ENV.items():
        env.setenv(name, value)


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("ZOHO_API_URL", "http://[::1", "is not a usable URL: Invalid IPv6 URL"),
        ("ZOHO_API_URL", "http://[::zz]:8080", "is not a usable URL: '::zz' does not appear to be an IPv4"),
        ("SI_BASE_URL", "https://", "has no host name"),
        ("SI_BASE_URL", "https:///SI", "has no host name"),
        ("SI_BASE_URL", "https://api.d-tools .com/SI", "must not contain spaces or control characters"),
        (
            "ZOHO_ACCOUNTS_URL",
            "https://accounts.zoho.com:99999",
            "is not a usable URL: bad port (use 1-65535)",
        ),
        (
            "ZOHO_ACCOUNTS_URL",
            "https://accounts.zoho.com:https",
            "is not a usable URL: bad port (use 1-65535)",
        ),
        ("ZOHO_ACCOUNTS_URL", "https://accounts.zoho.com:0", "is not a usable URL: bad port (use 1-65535)"),
        ("RECONCILER_HEALTHCHECK_URL", "https://hc_-.example..com/x", "is not a usable URL: bad host name"),
        (
            "ZOHO_API_URL",
            "https://www.zohoapis.com/crm/v8",
            "must be an origin (scheme://host[:port]) without a path; the client adds its own",
        ),
    ],
)
def test_a_url_the_client_cannot_use_is_one_line_naming_it(
    env, mapping_in_cwd, variable: str, value: str, problem: str
) -> None:
    """No host, a space, a bad port or IPv6 literal, a path on an origin: one line, before any call."""
    _cycle_env(env)
    env.setenv(variable, value)
    (line,) = _problems("run-once")
    assert line.startswith(f"{variable}: {problem}")
    assert line.endswith(f"(got {value!r})")


@pytest.mark.parametrize(
    "value",
    ["https://[::1]:8443", "http://127.0.0.1:8080", "https://www.zohoapis.com.au/", "http://sim_host:9"],
)
def test_usable_origins_are_accepted(env, value: str) -> None:
    """An IPv6 literal with a port, an IPv4 address, a trailing slash (dropped), an underscore in a name."""
    env.setenv("ZOHO_API_URL", value)
    assert Settings().zoho_api_url == value.rstrip("/")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SI_API_KEY", "clé-secrète"),
        ("SI_API_KEY", "abc\r\nX-Injected: 1"),
        ("ZOHO_CLIENT_SECRET", "two words"),
        ("ZOHO_REFRESH_TOKEN", "1000.abc\x07def"),
    ],
    ids=["non-ascii", "crlf", "space", "control"],
)
def test_a_secret_that_cannot_go_into_a_header_is_refused_without_showing_it(
    env, mapping_in_cwd, variable: str, value: str
) -> None:
    """Non-ASCII or CR/LF in a secret: exit 78 naming the variable; the value itself is never printed."""
    _cycle_env(env)
    env.setenv(variable, value)
    (line,) = _problems("run-once")
    assert line.startswith(f"{variable}: must be printable ASCII without spaces or line breaks")
    assert value not in line and "got" not in line


def test_a_secret_with_a_trailing_newline_is_the_same_secret(env) -> None:
    """`SI_API_KEY=$(cat key)` keeps the newline some editors add; it is trimmed, not refused."""
    env.setenv("SI_API_KEY", "abc123\n")
    key = Settings().si_api_key
    assert key is not None and key.get_secret_value() == "abc123"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("RECONCILER_INTERVAL", "1000000000000", "Input should be less than or equal to 604800"),
        ("RECONCILER_FULL_EVERY", "99999999999", "Input should be less than or equal to 31622400"),
        ("RECONCILER_CALL_BUDGET", "0", "Input should be greater than 0"),
        ("RECONCILER_CYCLE_BUDGET", "soon", "Input should be a valid number"),
    ],
)
def test_intervals_and_budgets_are_bounded(
    env, mapping_in_cwd, variable: str, value: str, problem: str
) -> None:
    """An interval the scheduler cannot hold, or a budget of nothing: one line naming the variable."""
    _cycle_env(env)
    env.setenv(variable, value)
    (line,) = _problems("daemon")
    assert line.startswith(f"{variable}: {problem}")


def test_budgets_default_to_fractions_of_the_interval(env) -> None:
    """Cycle budget 80% of the interval; call budget 120 s, or half the cycle budget when that is less."""
    s = Settings()
    assert (s.cycle_budget, s.call_budget) == (240.0, 120.0)
    assert s.retry_policy().call_budget == 120.0
    env.setenv("RECONCILER_INTERVAL", "60")
    s = Settings()
    assert (s.cycle_budget, s.call_budget) == (48.0, 24.0)
    env.setenv("RECONCILER_CALL_BUDGET", "500")
    env.setenv("RECONCILER_CYCLE_BUDGET", "100")
    s = Settings()
    assert (s.cycle_budget, s.call_budget) == (100.0, 100.0)


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_database_setting_is_refused_not_taken_as_the_working_directory(env, value: str) -> None:
    """RECONCILER_DB= (empty) is exit 78 for every command, status included; nothing is touched."""
    env.setenv("RECONCILER_DB", value)
    (line,) = _problems("status")
    assert line.startswith("RECONCILER_DB: is empty; name the database file")


def test_a_database_setting_naming_a_directory_stops_every_command(env, tmp_path: Path) -> None:
    """RECONCILER_DB naming a directory: one line for status as for run-once, before the lock or store."""
    env.setenv("RECONCILER_DB", str(tmp_path))
    (line,) = _problems("status")
    assert line.startswith(f"RECONCILER_DB: {tmp_path} is a directory")


def test_a_dotenv_that_is_not_utf8_names_the_file_and_the_line(env, tmp_path: Path) -> None:
    """A Latin-1 byte in .env: one line naming the file, the line and its variable, not the value."""
    (tmp_path / ".env").write_bytes(b"ZOHO_DC=eu\nSI_API_KEY=cl\xe9\n")
    (line,) = _problems("status")
    assert (
        line == ".env: line 2 (SI_API_KEY) is not UTF-8 text; save the file as UTF-8 (the value is not shown)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file; tests/faults runs this as another user")
def test_an_unreadable_dotenv_is_one_line_naming_it(env, tmp_path: Path) -> None:
    """.env without read permission: one line naming the file."""
    (tmp_path / ".env").write_text("ZOHO_DC=eu\n", encoding="utf-8")
    (tmp_path / ".env").chmod(0)
    (line,) = _problems("status")
    assert line.startswith(".env: cannot read the settings file: Permission denied")


def test_a_credential_file_that_is_not_utf8_names_the_setting_and_the_file(
    env, creds, mapping_in_cwd
) -> None:
    """A systemd credential in another encoding: exit 78 naming the variable and the file."""
    _cycle_env(env)
    env.delenv("SI_API_KEY")
    creds({})
    directory = Path(os.environ["CREDENTIALS_DIRECTORY"])
    (directory / "si_api_key").write_bytes(b"\xff\xfek\x00e\x00y\x00")
    (line,) = _problems("run-once")
    path = directory / "si_api_key"
    assert line == f"SI_API_KEY: the credential file {path} is not UTF-8 text; write it again as UTF-8"


@pytest.mark.parametrize("command", ["status", "history", "retry", "backup", "demo"])
def test_commands_that_need_no_secret_never_open_the_credential_files(env, creds, command: str) -> None:
    """Broken credential files (not UTF-8, unreadable) cannot stop status/history/retry/backup/demo."""
    creds({})
    directory = Path(os.environ["CREDENTIALS_DIRECTORY"])
    (directory / "si_api_key").write_bytes(b"\xff\xfe")
    (directory / "zoho_client_secret").write_text("x", encoding="utf-8")
    (directory / "zoho_client_secret").chmod(0)
    s = load_settings(command)
    assert s.si_api_key is None and s.zoho_client_secret is None


def test_a_command_reports_only_the_credential_files_it_uses(env, creds) -> None:
    """auth needs the client id and secret: a broken SI key file does not stop it."""
    creds({"zoho_client_id": "1000.id", "zoho_client_secret": "s3cret"})
    (Path(os.environ["CREDENTIALS_DIRECTORY"]) / "si_api_key").write_bytes(b"\xff\xfe")
    assert load_settings("auth").zoho_client_id == "1000.id"


def test_a_metrics_file_that_cannot_be_written_stops_the_cycle_commands(
    env, mapping_in_cwd, tmp_path
) -> None:
    """RECONCILER_METRICS_FILE naming a directory, or in a missing one: one line, exit 78, before a cycle."""
    _cycle_env(env)
    env.setenv("RECONCILER_METRICS_FILE", str(tmp_path))
    example = tmp_path / "reconciler.prom"
    assert _problems("daemon") == (
        f"RECONCILER_METRICS_FILE: {tmp_path} is a directory; name a file in it, e.g. {example}",
    )
    env.setenv("RECONCILER_METRICS_FILE", str(tmp_path / "nowhere" / "r.prom"))
    assert _problems("run-once") == (
        f"RECONCILER_METRICS_FILE: the directory {tmp_path / 'nowhere'} does not exist",
    )
