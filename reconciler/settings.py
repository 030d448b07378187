"""Settings from the environment, ``$CREDENTIALS_DIRECTORY`` and ``.env`` (pydantic-settings).

Precedence: environment > credentials directory (systemd ``LoadCredential=``; one file per setting,
named by the lower-case variable, e.g. ``zoho_refresh_token``) > ``.env`` in the working directory. A
new name beats its old alias (``ZOHO_CLIENT_ID`` beats ``CRM_ID``).

Each command checks only what it uses (:data:`NEEDS`); every problem becomes one line naming the
variable, raised as one :class:`~reconciler.errors.ConfigError` (exit 78). Secret values never appear
in those lines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from reconciler.clients.zoho import DATA_CENTRES
from reconciler.errors import ConfigError

__all__ = ["DATA_CENTRE_URLS", "NEEDS", "Settings", "load_settings"]

# dc -> (API origin, accounts origin): one table, kept with the Zoho client.
DATA_CENTRE_URLS = DATA_CENTRES

SECRET_FIELDS = frozenset({"zoho_client_secret", "zoho_refresh_token", "si_api_key"})

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
    zoho_dc: Literal["com", "eu", "in", "com.au", "jp", "ca", "sa", "com.cn"] = Field(
        default="com", validation_alias=AliasChoices("ZOHO_DC")
    )
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
    reconciler_interval: int = Field(default=300, gt=0, validation_alias=AliasChoices("RECONCILER_INTERVAL"))
    reconciler_full_every: int = Field(
        default=86400, gt=0, validation_alias=AliasChoices("RECONCILER_FULL_EVERY")
    )
    reconciler_log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=AliasChoices("RECONCILER_LOG_FORMAT")
    )
    reconciler_max_writes: int = Field(
        default=500, ge=0, validation_alias=AliasChoices("RECONCILER_MAX_WRITES")
    )
    reconciler_healthcheck_url: str | None = _alias("RECONCILER_HEALTHCHECK_URL")
    reconciler_notify_url: str | None = _alias("RECONCILER_NOTIFY_URL")
    reconciler_metrics_file: Path | None = _alias("RECONCILER_METRICS_FILE")

    @field_validator(
        "zoho_client_id", "zoho_client_secret", "zoho_refresh_token", "zoho_soid", "si_api_key", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # `ZOHO_REFRESH_TOKEN=` left blank in .env means "not set", not "set to the empty string".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "zoho_api_url",
        "zoho_accounts_url",
        "si_base_url",
        "reconciler_healthcheck_url",
        "reconciler_notify_url",
    )
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        layered = _Layered(settings_cls, (env_settings, CredentialsDirSource(settings_cls), dotenv_settings))
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
            elif getattr(self, need) in (None, ""):
                problems.append(f"{need.upper()}: required setting is missing")
        if problems:
            raise ConfigError(*problems)


class CredentialsDirSource(PydanticBaseSettingsSource):
    """systemd credentials: ``$CREDENTIALS_DIRECTORY/<lowercase variable name>`` (new names only)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return None, field_name, False
        path = Path(directory) / field_name
        if path.is_file():
            return path.read_text(encoding="utf-8").strip(), field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(info, name)
            if value is not None:
                values[key] = value
        return values


class _Layered(PydanticBaseSettingsSource):
    """Environment > credentials directory > ``.env``, decided per setting.

    The first source that names a setting (by its new name, an old alias or, for the credentials
    directory, its lower-case name) supplies it; within one source the new name beats its alias. The
    value is handed on under the new name, so an old alias in the environment still beats a new name
    in ``.env`` and a credentials file beats anything in ``.env``.
    """

    def __init__(self, settings_cls: type[BaseSettings], sources: tuple[PydanticBaseSettingsSource, ...]):
        super().__init__(settings_cls)
        self.sources = sources

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        layers = [{str(k).lower(): v for k, v in source().items()} for source in self.sources]
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            alias = info.validation_alias
            choices = alias.choices if isinstance(alias, AliasChoices) else []
            names = [c for c in choices if isinstance(c, str)]
            names.append(name)
            for layer in layers:
                found = next((n for n in names if n.lower() in layer), None)
                if found is not None:
                    values[names[0]] = layer[found.lower()]
                    break
        return values


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
    used |= {"reconciler_db", "reconciler_log_format"}
    try:
        settings = Settings()
    except ValidationError as exc:
        problems: list[str] = []
        unused: dict[str, Any] = {}
        for error in exc.errors():
            field = _field_of(str(error["loc"][0])) if error["loc"] else "?"
            if field not in used and field in Settings.model_fields:
                unused[field] = Settings.model_fields[field].default
                continue
            shown = "" if field in SECRET_FIELDS else f" (got {error.get('input')!r})"
            problems.append(f"{_variable(field)}: {error['msg']}{shown}")
        if problems:
            raise ConfigError(*problems) from None
        settings = Settings(**unused)
    settings.require(command)
    return settings
