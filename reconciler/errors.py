"""The exception tree. Everything this package raises on purpose is a ``ReconcilerError``.

::

    ReconcilerError
    ├── UserError                 printed by the CLI as one line per problem, no traceback
    │   ├── ConfigError           bad setting or mapping key                      exit 78 (EX_CONFIG)
    │   ├── CredentialsError      Zoho/SI rejected our credentials                exit 78
    │   ├── LockHeldError         another instance holds the lock file            exit 75 (EX_TEMPFAIL)
    │   └── StoreError            the database cannot be used (path, mode, damage)  exit 78
    │       └── StoreBusyError    locked by another process, disk full, I/O error   exit 1 (try again later)
    ├── ApiError                  an HTTP call failed after the choke point gave up
    │   ├── TransientApiError     timeouts, resets, 429, 5xx, token rate limit: worth retrying later
    │   ├── PermanentApiError     any other 4xx: retrying the same request will not help
    │   └── ProtocolError         the answer was not what the API documents (bad JSON, 204 for a body)
    └── StopRequested             a stop (SIGTERM) interrupted a retry wait

``ApiError`` carries the endpoint name (a stable label such as ``zoho.coql``), the HTTP status when there
was one, and a short message; it never carries headers, and its message is redacted when it is made (an
API may echo a secret or an access token it refused), so its text can be stored, shown and sent on.
"""

from __future__ import annotations

from reconciler.logs import redactor

EX_OK = 0
EX_FAIL = 1
EX_PENDING = 2
EX_INTERRUPTED = 130  # 128 + SIGINT; the CLI exits 128 + the signal it got (143 for SIGTERM)
EX_TEMPFAIL = 75
EX_CONFIG = 78


class ReconcilerError(Exception):
    """Base of every error this package raises on purpose."""


class UserError(ReconcilerError):
    """An error the operator must act on; the CLI prints ``problems`` and exits with ``exit_code``."""

    exit_code = EX_FAIL

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems: tuple[str, ...] = problems


class ConfigError(UserError):
    """A missing or invalid setting, or a bad mapping file. Each problem names the variable or key."""

    exit_code = EX_CONFIG


class CredentialsError(UserError):
    """Zoho answered ``invalid_code``/``invalid_client``, or SI answered 401: fix the credentials."""

    exit_code = EX_CONFIG


class LockHeldError(UserError):
    """Another reconciler process holds the lock file."""

    exit_code = EX_TEMPFAIL


class StoreError(UserError):
    """The SQLite database cannot be used: not a regular file, no permission, read-only, damaged.

    Each problem names the database path, the cause and the remedy. A restart cannot fix these (exit 78).
    """

    exit_code = EX_CONFIG


class StoreBusyError(StoreError):
    """A transient store fault: locked by another process past the busy timeout, disk full, I/O error.

    Nothing was half-written (SQLite rolled the transaction back); the next cycle tries again (exit 1).
    """

    exit_code = EX_FAIL


class ApiError(ReconcilerError):
    """An HTTP call failed. ``endpoint`` is a stable label, ``status`` the HTTP status (or None)."""

    def __init__(self, endpoint: str, message: str, status: int | None = None) -> None:
        message = redactor(message)
        prefix = f"{endpoint}: HTTP {status}: " if status is not None else f"{endpoint}: "
        super().__init__(prefix + message)
        self.endpoint = endpoint
        self.status = status
        self.detail = message


class TransientApiError(ApiError):
    """Worth retrying later: the network, a 429, a 5xx, or the token endpoint's rate limit."""


class PermanentApiError(ApiError):
    """A 4xx other than 429: the same request will fail again."""


class ProtocolError(ApiError):
    """The answer broke the documented contract (malformed JSON, an empty 204 where data was due)."""


class StopRequested(ReconcilerError):
    """A stop was requested while waiting to retry; the caller finishes up and exits."""
