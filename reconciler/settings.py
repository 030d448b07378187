"""Settings from the environment, ``$CREDENTIALS_DIRECTORY`` and ``.env`` (pydantic-settings).

Precedence: environment > credentials directory (systemd ``LoadCredential=``; one file per setting,
named by the lower-case variable, e.g. ``zoho_refresh_token``) > ``.env`` in the working directory. A
new name beats its old alias (``ZOHO_CLIENT_ID`` beats ``CRM_ID``).

Each command checks only what it uses (:data:`NEEDS`); every problem becomes one line naming the
variable, raised as one :class:`~reconciler.errors.ConfigError` (exit 78). Secret values never appear
in those lines. Commands that need no secret (``status``, ``history``, ``retry``, ``backup``, ``demo``)
never open the credential files.

Every value the runtime uses is checked here, so a bad one stops the program before any call: URLs
(scheme, host, port, IPv6 literal; the API origins without a path), secrets (printable ASCII, as an
HTTP header or form value needs), intervals and budgets within what the scheduler and a cycle can use,
``RECONCILER_DB`` (a regular file or a new one; see :mod:`reconciler.dbfile`), and the ``.env`` and
credential files themselves (readable, UTF-8).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from reconciler.clients.http import RetryPolicy
from reconciler.clients.pool import DEFAULT_WIDTH, MAX_WIDTH
from reconciler.clients.zoho import DATA_CENTRES, DataCentre
from reconciler.dbfile import db_path_problem
from reconciler.errors import ConfigError
from reconciler.setting_sources import (
    PRINTABLE,
    CredentialsDirSource,
    Layered,
    Unreadable,
    check_url,
    dotenv_problem,
)

__all__ = ["DATA_CENTRE_URLS", "NEEDS", "Settings", "load_settings"]

# dc -> (API origin, accounts origin): one table, kept with the Zoho client.
DATA_CENTRE_URLS = DATA_CENTRES

SECRET_FIELDS = frozenset({"zoho_client_secret", "zoho_refresh_token", "si_api_key"})

MAX_INTERVAL = 7 * 86400  # a week: longer is not a schedule, and the scheduler's date arithmetic has limits
MAX_FULL_EVERY = 366 * 86400
MAX_BUDGET = 86400.0
DEFAULT_CALL_BUDGET = 120.0  # seconds for one call with all its retries (capped by the cycle budget)
CYCLE_BUDGET_SHARE = 0.8  # of the interval, when RECONCILER_CYCLE_BUDGET is not set

_CYCLE = ("zoho_client_id", "zoho_client_secret", "zoho_grant", "si_api_key", "mapping")
NEEDS: dict[str, tuple[str, ...]] = {
    "run-once": _CYCLE,
    "plan": _CYCLE,
    "daemon": _CYCLE,
    "check": _CYCLE,
    "auth": ("zoho_client_id", "zoho_client_secret"),
    "status": (),
    "history": (),
    "retry": (),
    "backup": (),
    "demo": (),
}


def _alias(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class Settings(BaseSettings):
    """Every variable of the operator contract; see the README's table for meanings and defaults."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    zoho_client_id: str | None = _alias("ZOHO_CLIENT_ID", "CRM_ID")
    zoho_client_secret: SecretStr | None = _alias("ZOHO_CLIENT_SECRET", "CRM_SECRET")
    zoho_refresh_token: SecretStr | None = _alias("ZOHO_REFRESH_TOKEN")
    zoho_soid: str | None = _alias("ZOHO_SOID", "CRM_SOID")
    zoho_dc: DataCentre = Field(default="com", validation_alias=AliasChoices("ZOHO_DC"))
    zoho_api_url: str | None = _alias("ZOHO_API_URL")
    zoho_accounts_url: str | None = _alias("ZOHO_ACCOUNTS_URL")
    si_api_key: SecretStr | None = _alias("SI_API_KEY", "SI_TOKEN")
    si_base_url: str = Field(
        default="https://api.d-tools.com/SI", validation_alias=AliasChoices("SI_BASE_URL", "SI_ENDPOINT")
    )
    reconciler_db: Path | None = _alias("RECONCILER_DB")
    reconciler_mapping: Path = Field(
        default=Path("config/mapping.toml"), validation_alias=AliasChoices("RECONCILER_MAPPING")
    )
    reconciler_interval: int = Field(
        default=300, gt=0, le=MAX_INTERVAL, validation_alias=AliasChoices("RECONCILER_INTERVAL")
    )
    reconciler_full_every: int = Field(
        default=86400, gt=0, le=MAX_FULL_EVERY, validation_alias=AliasChoices("RECONCILER_FULL_EVERY")
    )
    reconciler_log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=AliasChoices("RECONCILER_LOG_FORMAT")
    )
    reconciler_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=AliasChoices("RECONCILER_LOG_LEVEL")
    )
    reconciler_max_writes: int = Field(
        default=500, ge=0, validation_alias=AliasChoices("RECONCILER_MAX_WRITES")
    )
    reconciler_progress_every: float = Field(
        default=10.0, gt=0, le=3600, validation_alias=AliasChoices("RECONCILER_PROGRESS_EVERY")
    )
    reconciler_si_concurrency: int = Field(
        default=DEFAULT_WIDTH, ge=1, le=MAX_WIDTH, validation_alias=AliasChoices("RECONCILER_SI_CONCURRENCY")
    )
    reconciler_healthcheck_url: str | None = _alias("RECONCILER_HEALTHCHECK_URL")
    reconciler_notify_url: str | None = _alias("RECONCILER_NOTIFY_URL")
    reconciler_metrics_file: Path | None = _alias("RECONCILER_METRICS_FILE")
    reconciler_call_budget: float | None = Field(
        default=None, gt=0, le=MAX_BUDGET, validation_alias=AliasChoices("RECONCILER_CALL_BUDGET")
    )
    reconciler_cycle_budget: float | None = Field(
        default=None, gt=0, le=MAX_BUDGET, validation_alias=AliasChoices("RECONCILER_CYCLE_BUDGET")
    )

    @field_validator(
        "zoho_client_id", "zoho_client_secret", "zoho_refresh_token", "zoho_soid", "si_api_key", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `ZOHO_REFRESH_TOKEN=` left blank in .env means "not set", not "set to the empty string"; a
        # credential pasted with a trailing newline is the same credential.
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("zoho_client_id", "zoho_client_secret", "zoho_refresh_token", "zoho_soid", "si_api_key")
    @classmethod
    def _header_safe(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not PRINTABLE.fullmatch(text):
            raise ValueError(
                "must be printable ASCII without spaces or line breaks, as an HTTP header or form value "
                "needs (the value is not shown; copy it again from its source)"
            )
        return value

    @field_validator("reconciler_log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("zoho_api_url", "zoho_accounts_url")
    @classmethod
    def _origin_url(cls, value: str | None) -> str | None:
        return check_url(value, origin=True)

    @field_validator("si_base_url", "reconciler_healthcheck_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return check_url(value, origin=False)

    @field_validator("reconciler_notify_url")
    @classmethod
    def _notify_url(cls, value: str | None) -> str | None:
        # A plain http(s) URL is a Slack-compatible webhook (checked like every URL); anything else must
        # be an apprise URL.
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        if value.startswith(("http://", "https://")):
            return check_url(value, origin=False)
        from reconciler.monitoring import load_apprise

        with load_apprise() as apprise:
            known = apprise.Apprise.instantiate(value) is not None
        if not known:
            raise ValueError("not an http(s) webhook or a URL apprise knows (mailto://, msteams://, ...)")
        return value

    @field_validator("reconciler_db", mode="before")
    @classmethod
    def _db_named(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(
                "is empty; name the database file (e.g. /var/lib/reconciler/reconciler.db), or unset it "
                "for the default"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layered = Layered(settings_cls, (env_settings, CredentialsDirSource(settings_cls), dotenv_settings))
        return (init_settings, layered)

    # ---- derived values -------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        if self.reconciler_db is not None:
            return self.reconciler_db
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(state) / "reconciler.db" if state else Path("state") / "reconciler.db"

    @property
    def lock_path(self) -> Path:
        """``<db>.lock`` beside the database's real path: every name for one file takes one lock."""
        real = Path(os.path.realpath(self.db_path))
        return real.with_name(real.name + ".lock")

    @property
    def cycle_budget(self) -> float:
        """Seconds a cycle may run before it stops starting new actions (``RECONCILER_CYCLE_BUDGET``)."""
        if self.reconciler_cycle_budget is not None:
            return self.reconciler_cycle_budget
        return self.reconciler_interval * CYCLE_BUDGET_SHARE

    @property
    def call_budget(self) -> float:
        """Seconds one API call may take with all its retries (``RECONCILER_CALL_BUDGET``)."""
        if self.reconciler_call_budget is not None:
            return min(self.reconciler_call_budget, self.cycle_budget)
        return min(DEFAULT_CALL_BUDGET, self.cycle_budget / 2)

    def retry_policy(self) -> RetryPolicy:
        """The HTTP retry policy these settings ask for (the call budget; the rest are defaults)."""
        return RetryPolicy(call_budget=self.call_budget)

    @property
    def zoho_default_api_url(self) -> str:
        return DATA_CENTRE_URLS[self.zoho_dc][0]

    @property
    def accounts_url(self) -> str:
        return self.zoho_accounts_url or DATA_CENTRE_URLS[self.zoho_dc][1]

    def secret_values(self) -> list[str]:
        """Every secret value, for the log redactor."""
        return [
            s.get_secret_value()
            for s in (self.zoho_client_secret, self.zoho_refresh_token, self.si_api_key)
            if s is not None
        ]

    def require(self, command: str) -> None:
        """Raise one ConfigError listing every setting ``command`` needs and lacks."""
        problems: list[str] = []
        db_problem = None if command in ("auth", "demo") else db_path_problem(self.db_path)
        if db_problem is not None:
            problems.append(db_problem)
        for need in NEEDS.get(command, ()):
            if need == "zoho_grant":
                if self.zoho_refresh_token is None and not self.zoho_soid:
                    problems.append(
                        "ZOHO_REFRESH_TOKEN: required (or ZOHO_SOID for the client-credentials "
                        "grant); run `reconciler auth --code CODE` to get a refresh token"
                    )
            elif need == "mapping":
                if not self.reconciler_mapping.is_file():
                    problems.append(f"RECONCILER_MAPPING: file not found: {self.reconciler_mapping}")
                problems += self._metrics_file_problems()
            elif getattr(self, need) in (None, ""):
                problems.append(f"{need.upper()}: required setting is missing")
        if problems:
            raise ConfigError(*problems)

    def _metrics_file_problems(self) -> list[str]:
        """The metrics file is rewritten after every cycle: its directory must exist, and it is a file."""
        path = self.reconciler_metrics_file
        if path is None:
            return []
        if path.is_dir():
            example = path / "reconciler.prom"
            return [f"RECONCILER_METRICS_FILE: {path} is a directory; name a file in it, e.g. {example}"]
        if not path.parent.is_dir():
            return [f"RECONCILER_METRICS_FILE: the directory {path.parent} does not exist"]
        return []


class _WithoutCredentials(Settings):
    """The settings of a command that needs no secret: the credential files are never opened."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, Layered(settings_cls, (env_settings, dotenv_settings)))


def _field_of(loc: str) -> str:
    """The field name behind an error location, which pydantic reports by the alias it tried."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if loc == name or (isinstance(alias, AliasChoices) and loc in alias.choices):
            return name
    return loc


def _variable(field_name: str) -> str:
    return field_name.upper()


def load_settings(command: str) -> Settings:
    """Load and check the settings ``command`` uses; a problem anywhere it looks raises ConfigError."""
    used = set(NEEDS.get(command, ()))
    if used:  # commands that talk to an API; status, history, retry and demo use only the database
        used |= {"zoho_dc", "si_base_url", "zoho_api_url", "zoho_accounts_url"}
        used |= {"zoho_soid", "zoho_refresh_token"}
    if command in {"run-once", "plan", "daemon", "check"}:
        used |= set(Settings.model_fields)
    used |= {"reconciler_db", "reconciler_log_format", "reconciler_log_level"}
    env_file = Settings.model_config.get("env_file")
    if isinstance(env_file, str | Path):
        problem = dotenv_problem(Path(env_file))
        if problem is not None:
            raise ConfigError(problem)
    # A command that needs no secret never opens the credential files (a broken one cannot stop it).
    kind = Settings if used & SECRET_FIELDS else _WithoutCredentials
    try:
        settings: Settings = kind()
    except ValidationError as exc:
        problems: list[str] = []
        unused: dict[str, Any] = {}
        for error in exc.errors():
            field = _field_of(str(error["loc"][0])) if error["loc"] else "?"
            if field not in used and field in Settings.model_fields:
                unused[field] = Settings.model_fields[field].default
                continue
            problems.append(f"{_variable(field)}: {_message(field, error)}")
        if problems:
            raise ConfigError(*problems) from None
        settings = kind(**unused)
    settings.require(command)
    return settings


def _message(field: str, error: Any) -> str:
    """One problem's text: pydantic's message (without its "Value error, " prefix) and the value given."""
    given = error.get("input")
    if isinstance(given, Unreadable):
        return given.problem
    text = str(error["msg"]).removeprefix("Value error, ")
    return text if field in SECRET_FIELDS else f"{text} (got {given!r})"
