"""Where settings come from, and the checks on their text (helpers of :mod:`reconciler.settings`).

Sources: the environment > ``$CREDENTIALS_DIRECTORY/<lower-case name>`` (systemd ``LoadCredential=``) >
``.env``, decided per setting by :class:`Layered`. A credential file that cannot be read, or is not
UTF-8, becomes an :class:`Unreadable` value that only a command using that setting reports; a ``.env``
that cannot be read is one line naming the file (and, for a bad byte, the line and its variable).

Checks: :func:`check_url` (scheme, host, port, IPv6 literal, no path on an origin) and
:data:`PRINTABLE` (a secret must fit in an HTTP header or form value).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["PRINTABLE", "CredentialsDirSource", "Layered", "Unreadable", "check_url", "dotenv_problem"]

PRINTABLE = re.compile(r"[\x21-\x7e]+")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def check_url(value: str | None, *, origin: bool) -> str | None:
    """``value`` as a usable http(s) URL without a trailing ``/``; ValueError says what is wrong."""
    if value is None or value == "":
        return None
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for http://[::1
        raise ValueError(f"is not a usable URL: {exc}") from None
    try:
        port = parts.port
    except ValueError:
        raise ValueError("is not a usable URL: bad port (use 1-65535)") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError("has no host name")
    if port == 0:
        raise ValueError("is not a usable URL: bad port (use 1-65535)")
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"is not a usable URL: bad IPv6 address [{host}]") from None
    elif not _valid_host(host):
        raise ValueError(f"is not a usable URL: bad host name {host!r}")
    if origin and (parts.path.strip("/") or parts.query or parts.fragment):
        raise ValueError("must be an origin (scheme://host[:port]) without a path; the client adds its own")
    return value.rstrip("/")


def _valid_host(host: str) -> bool:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.rstrip(".").split(".")
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a setting whose file could not be read; :func:`load_settings` reports it."""

    problem: str


def _read_setting_file(path: Path) -> str | Unreadable:
    try:
        return path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        return Unreadable(f"the credential file {path} is not UTF-8 text; write it again as UTF-8")
    except OSError as exc:
        return Unreadable(
            f"cannot read the credential file {path}: {exc.strerror}; the reconciler's user must be able "
            f"to read it (systemd LoadCredential= does that)"
        )


class CredentialsDirSource(PydanticBaseSettingsSource):
    """systemd credentials: ``$CREDENTIALS_DIRECTORY/<lowercase variable name>`` (new names only).

    A file that cannot be read or is not UTF-8 becomes an :class:`Unreadable` value, reported (naming
    the setting and the file) only by a command that uses that setting.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return None, field_name, False
        path = Path(directory) / field_name
        if path.is_file():
            return _read_setting_file(path), field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(info, name)
            if value is not None:
                values[key] = value
        return values


class Layered(PydanticBaseSettingsSource):
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


def dotenv_problem(path: Path) -> str | None:
    """What keeps ``path`` (the ``.env`` file) from being read as UTF-8 settings, or None."""
    try:
        if not path.is_file():
            return None
        data = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot read the settings file: {exc.strerror}; make it readable for this user"
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            name = line.split(b"=", 1)[0].decode("utf-8", "replace").strip() or "?"
            return (
                f"{path}: line {number} ({name}) is not UTF-8 text; save the file as UTF-8 "
                f"(the value is not shown)"
            )
    return None
