# ruff: noqa: E501  (the rows below keep each message whole on its lines, so it can be found by grep)
"""The bad-input table: every row of the README's "Bad input" section, as data.

A :class:`Row` says what is wrong, what the user sees and what happens. Rows with a ``setup`` are run
through the real ``reconciler`` command (a subprocess) by ``test_bad_input.py``: the setup prepares a
:class:`Sandbox` (files, environment, a held lock, another user, a read-only or full file system), the
command must exit with ``exit_code`` and print exactly one line on stderr, ``reconciler: <message>``.
Rows without a setup (bad records in Zoho or SI data) are pinned by the test named in ``pinned_by``.
``render_readme`` turns the table into the README's markdown, and a test keeps the two identical.

In messages, ``<db>``, ``<file>``, ``<dir>``, ``<tmp>`` stand for the sandbox's paths; ``<...>`` names
anything else that depends on the machine (a user, a mode, SQLite's wording) and matches any text.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.lock import InstanceLock
from reconciler.sim.harness import SimPair
from reconciler.store import Store
from tests.cli_fork import fork_cli

__all__ = ["ROWS", "RUNNABLE", "Row", "Sandbox", "modes", "pattern", "render_readme", "run", "sandbox"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MAPPING = ROOT / "config" / "mapping.toml"
NOBODY = 65534
PRIVILEGED = os.geteuid() == 0


@dataclass
class Sandbox:
    """A world-traversable temporary directory, the reconciler's environment in it, and what to undo."""

    root: Path
    env: dict[str, str]
    subs: dict[str, str] = field(default_factory=dict)
    other_user: bool = False  # run as another (unprivileged) user
    wrap: list[str] = field(default_factory=list)  # a command prefix (unshare ...)
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def db(self) -> Path:
        return self.root / "reconciler.db"

    @property
    def mapping(self) -> Path:
        return self.root / "mapping.toml"

    def write_mapping(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.mapping.write_bytes(data)
        self.env["RECONCILER_MAPPING"] = str(self.mapping)


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    """A fresh sandbox; the directory is 0755 so another user can reach it, and is removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="reconciler-bad-input-"))
    root.chmod(0o755)
    env = SimPair().environment(root / "reconciler.db", DEFAULT_MAPPING)
    box = Sandbox(root, env)
    box.subs.update({"<db>": str(box.db), "<file>": str(box.mapping), "<tmp>": str(root)})
    try:
        with box.stack:
            yield box
    finally:
        _make_removable(root)
        shutil.rmtree(root, ignore_errors=True)


def _make_removable(root: Path) -> None:
    for folder, dirs, _ in os.walk(root):
        for name in dirs:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(0o755)
    root.chmod(0o755)


# ---- running the real command ---------------------------------------------------------------------------


def _clean_environment(extra: dict[str, str]) -> dict[str, str]:
    prefixes = ("ZOHO_", "SI_", "RECONCILER_", "CRM_", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    base.update(extra)
    return base


_UNPRIVILEGED_PYTHON: list[str | None] = []


def unprivileged_python() -> str | None:
    """A Python another user can run with this package and its dependencies importable (None: none)."""
    if not _UNPRIVILEGED_PYTHON:
        found = None
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        candidates = [sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}", "/usr/bin/python3"]
        for candidate in filter(None, candidates):
            probe = _run_as_nobody(
                [candidate, "-c", "import reconciler.cli"], _python_path_env({}), Path("/")
            )
            if probe is not None and probe.returncode == 0:
                found = candidate
                break
        _UNPRIVILEGED_PYTHON.append(found)
    return _UNPRIVILEGED_PYTHON[0]


def _python_path_env(env: dict[str, str]) -> dict[str, str]:
    site = [p for p in sys.path if p.endswith("site-packages")]
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *site])}


def _run_as_nobody(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            args,
            env=_clean_environment(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            user=NOBODY,
            group=NOBODY,
            extra_groups=[],
        )
    except OSError:
        return None


_UNSHARE: list[list[str] | None] = []


def unshare_prefix() -> list[str] | None:
    """``unshare`` arguments giving the command its own mount namespace (None: not possible here)."""
    if not _UNSHARE:
        args = ["unshare", "--mount", "--propagation", "private"]
        if not PRIVILEGED:
            args[1:1] = ["--user", "--map-root-user"]
        try:
            ok = subprocess.run([*args, "true"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        _UNSHARE.append(args if ok else None)
    return _UNSHARE[0]


def run(box: Sandbox, command: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Run ``reconciler COMMAND`` in the sandbox, as its user and inside its wrapper."""
    if box.other_user:
        python = unprivileged_python()
        assert python is not None
        result = _run_as_nobody([python, "-m", "reconciler", *command], _python_path_env(box.env), box.root)
        assert result is not None
        return result
    env = _clean_environment({"PYTHONPATH": str(ROOT), **box.env})
    if not box.wrap:  # no namespace or limit to enter: a child of the warm interpreter (tests.cli_fork)
        proc = fork_cli(list(command), env, box.root)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode is not None
        return subprocess.CompletedProcess(["reconciler", *command], proc.returncode, out, err)
    args = [*box.wrap, sys.executable, "-m", "reconciler", *command]
    return subprocess.run(
        args, env=env, cwd=box.root, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def pattern(message: str, subs: dict[str, str]) -> re.Pattern[str]:
    """The expected line as a regex: known placeholders replaced, any other ``<...>`` matching anything."""
    for key, value in subs.items():
        message = message.replace(key, value)
    parts = re.split(r"(<[a-z][a-z ]*>)", message)
    return re.compile("".join(".+?" if re.fullmatch(r"<[a-z][a-z ]*>", p) else re.escape(p) for p in parts))


# ---- the rows ------------------------------------------------------------------------------------------

Setup = Callable[[Sandbox], str | None]  # returns a reason to skip the row on this machine, or None


@dataclass(frozen=True)
class Row:
    section: str
    what: str
    where: str
    message: str | None  # the stderr line after "reconciler: ", or None for "no line"
    outcome: str
    exit_code: int | None = None
    setup: Setup | None = None
    command: tuple[str, ...] = ("run-once",)
    cell: str | None = None  # a documented row's message cell, verbatim
    pinned_by: str | None = None  # a documented row's test in test_bad_input.py
    unchanged: tuple[str, ...] = ()  # paths (with placeholders) whose mode must not change

    @property
    def id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.what.lower()).strip("-")[:60]


def _env(**values: str | None) -> Setup:
    def setup(box: Sandbox) -> None:
        for name, value in values.items():
            if value is None:
                box.env.pop(name, None)
            else:
                box.env[name] = value.replace("<tmp>", str(box.root))

    return setup


def _steps(*steps: Setup) -> Setup:
    def setup(box: Sandbox) -> str | None:
        for step in steps:
            skip = step(box)
            if skip:
                return skip
        return None

    return setup


def _mapping(text: str | bytes) -> Setup:
    def setup(box: Sandbox) -> None:
        box.write_mapping(text)

    return setup


def _other_user(box: Sandbox) -> str | None:
    """Run as another user when we are root (root's access ignores modes); skip when that is impossible."""
    if not PRIVILEGED:
        return None
    if unprivileged_python() is None:
        return "no Python that an unprivileged user can run with this package (install it outside /root)"
    box.other_user = True
    box.root.chmod(0o777)  # the other user creates its lock file here, as the service user would
    return None


def _seed_db(box: Sandbox) -> None:
    Store.open(box.db).close()


def _damaged(kind: str) -> Setup:
    def setup(box: Sandbox) -> None:
        store = Store.open(box.root / "good.db")
        for n in range(300):
            store.audit(None, "update_deal", [("Amount", n, n + 1)], deal_id=str(n), project_id=None)
        store.close()
        good = (box.root / "good.db").read_bytes()
        data = {
            "garbage": bytes(range(256)) * 64,
            "text": b"deal,amount\n123,4500\n" * 200,
            "truncated": good[: len(good) // 2],
        }[kind]
        box.db.write_bytes(data)

    return setup


def _seed_db_for_runner(box: Sandbox) -> None:
    """A database the user who runs the command owns (another user's, when the row runs as one)."""
    _seed_db(box)
    if box.other_user:
        os.chown(box.db, NOBODY, NOBODY)


def _schema_banana(box: Sandbox) -> None:
    _seed_db(box)
    with closing(sqlite3.connect(box.db)) as raw, raw:
        raw.execute("UPDATE state SET value = 'banana' WHERE key = 'schema_version'")


def _foreign_db(box: Sandbox) -> str | None:
    """A database its owner keeps to itself: root's 0600 file seen by another user, or our own at 0000."""
    _seed_db(box)
    if PRIVILEGED:
        return _other_user(box)
    box.db.chmod(0)
    return None


def _read_only_db(box: Sandbox) -> str | None:
    """A database made 0400 by its owner (who is the user running the reconciler)."""
    _seed_db(box)
    skip = _other_user(box)
    if skip:
        return skip
    if PRIVILEGED:
        os.chown(box.db, NOBODY, NOBODY)
    box.db.chmod(0o400)
    return None


def _device(box: Sandbox) -> None:
    """Stands for /dev/null: a character device (1, 3) inside the sandbox (a FIFO when not root)."""
    path = box.root / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        os.mkfifo(path, 0o666)
        box.subs["a character device"] = "a named pipe"
    path.chmod(0o666)
    box.env["RECONCILER_DB"] = str(path)
    box.subs["<db>"] = str(path)


def _db_is(name: str) -> Setup:
    def setup(box: Sandbox) -> None:
        path = box.root / name
        path.mkdir(mode=0o755)
        path.chmod(0o755)
        box.env["RECONCILER_DB"] = str(path)
        box.subs["<db>"] = str(path)

    return setup


def _in_cwd_empty(box: Sandbox) -> None:
    box.env["RECONCILER_DB"] = ""


def _file_in_the_way(box: Sandbox) -> None:
    (box.root / "state").write_text("a file, not a directory\n", encoding="utf-8")
    path = box.root / "state" / "new" / "reconciler.db"
    box.env["RECONCILER_DB"] = str(path)
    box.subs["<db>"] = str(path)


def _dir_not_creatable(box: Sandbox) -> str | None:
    """The database's directory is missing and its parent is not writable for the reconciler's user."""
    parent = box.root / "srv"
    parent.mkdir()
    path = parent / "state" / "reconciler.db"
    box.env["RECONCILER_DB"] = str(path)
    box.subs["<dir>"] = str(parent / "state")
    if PRIVILEGED:
        skip = _other_user(box)
        if skip:
            return skip
        box.root.chmod(0o755)
        parent.chmod(0o755)
    else:
        parent.chmod(0o555)
    return None


def _locked_by_sqlite(box: Sandbox) -> None:
    """Another process (a sqlite3 shell, a backup) holds a write lock for as long as the run lasts."""
    _seed_db(box)
    other = box.stack.enter_context(closing(sqlite3.connect(box.db, isolation_level=None)))
    other.execute("BEGIN EXCLUSIVE")
    box.stack.callback(other.execute, "ROLLBACK")


def _lock_held(box: Sandbox) -> None:
    box.stack.enter_context(InstanceLock(box.root / "reconciler.db.lock"))


def _lock_held_through_symlink(box: Sandbox) -> None:
    _seed_db(box)
    link = box.root / "link.db"
    link.symlink_to(box.db)
    box.env["RECONCILER_DB"] = str(link)
    box.stack.enter_context(InstanceLock(box.root / "reconciler.db.lock"))


def _lock_path_is_a_directory(box: Sandbox) -> None:
    (box.root / "reconciler.db.lock").mkdir()


def _mounted(script: str) -> Setup:
    """Run the command in its own mount namespace after ``script`` (``$D`` is the database's directory)."""

    def setup(box: Sandbox) -> str | None:
        prefix = unshare_prefix()
        if prefix is None:
            return "cannot create a mount namespace here (unshare)"
        folder = box.root / "mnt"
        folder.mkdir()
        _seed_db(box)
        shutil.copy(box.db, box.root / "seed.db")
        box.db.unlink()
        db = folder / "reconciler.db"
        box.env["RECONCILER_DB"] = str(db)
        box.subs["<db>"] = str(db)
        shell = f'D={folder}; S={box.root / "seed.db"}; {script} && exec "$@"'
        box.wrap = [*prefix, "sh", "-c", shell, "sh"]
        return None

    return setup


_READ_ONLY_FS = 'cp "$S" "$D/reconciler.db" && mount --bind "$D" "$D" && mount -o remount,bind,ro "$D"'
_FULL_DISK = (
    'mount -t tmpfs -o size=1m tmpfs "$D" && cp "$S" "$D/reconciler.db" && '
    '{ dd if=/dev/zero of="$D/filler" bs=4k 2>/dev/null; true; }'
)


def _credentials(files: dict[str, bytes | None]) -> Setup:
    """A credentials directory; ``None`` makes a file its reader cannot read."""

    def setup(box: Sandbox) -> str | None:
        directory = box.root / "credentials"
        directory.mkdir()
        box.env["CREDENTIALS_DIRECTORY"] = str(directory)
        unreadable = False
        for name, data in files.items():
            path = directory / name
            path.write_bytes(data if data is not None else b"secret")
            if data is None:
                path.chmod(0)
                unreadable = True
            box.env.pop(name.upper(), None)
        if unreadable and PRIVILEGED:
            return _other_user(box)
        return None

    return setup


def _dotenv(data: bytes | None) -> Setup:
    def setup(box: Sandbox) -> str | None:
        path = box.root / ".env"
        path.write_bytes(data if data is not None else b"ZOHO_DC=eu\n")
        if data is None:
            path.chmod(0)
            if PRIVILEGED:
                return _other_user(box)
        return None

    return setup


_ZOHO = """
[zoho]
module = "Deals"
flag_field = "Send_to_SI"
link_field = "SI_Project_ID"
"""
_CREATE = """
[create]
Name = "Deal_Name"
Client = "Account_Name.name"
"""


def _fields(direction: str = "si_to_zoho", si: str = "Price", extra: str = "", zoho: str = "Amount") -> str:
    return f'\n[[fields]]\nzoho = "{zoho}"\nsi = "{si}"\ndirection = "{direction}"\n{extra}'


def _notes(title: str) -> str:
    return f"\n[notes]\nchange_order_title = {title}\n"


def _wide(n: int) -> str:
    return "".join(f'\n[[fields]]\nzoho = "Custom_{i}"\nsi = "CustomField{1 + i % 75}"\n' for i in range(n))


SETTINGS = "Settings (environment, `.env`, `$CREDENTIALS_DIRECTORY`)"
MAPPING = "Mapping file (`config/mapping.toml`)"
STORE = "The database and its lock (`RECONCILER_DB`)"
ZOHO_DATA = "Zoho data (a deal)"
SI_DATA = "SI data (an export message)"

EXIT_78 = "exit 78"
SECRET_SHAPE = (
    "must be printable ASCII without spaces or line breaks, as an HTTP header or form value needs "
    "(the value is not shown; copy it again from its source)"
)
RESTORE = (
    "restore a backup: stop the service, then copy the file written by `reconciler backup FILE` over <db> "
    "(or move <db> aside to start afresh)"
)

ROWS: list[Row] = [
    # ---- settings
    Row(SETTINGS, "`ZOHO_CLIENT_ID` not set", "setting", "ZOHO_CLIENT_ID: required setting is missing",
        EXIT_78, 78, _env(ZOHO_CLIENT_ID=None)),
    Row(SETTINGS, "`RECONCILER_INTERVAL=soon`", "setting",
        "RECONCILER_INTERVAL: Input should be a valid integer, unable to parse string as an integer (got 'soon')",
        EXIT_78, 78, _env(RECONCILER_INTERVAL="soon")),
    Row(SETTINGS, "`RECONCILER_INTERVAL=0`", "setting",
        "RECONCILER_INTERVAL: Input should be greater than 0 (got '0')", EXIT_78, 78, _env(RECONCILER_INTERVAL="0")),
    Row(SETTINGS, "an interval too large for the scheduler, `RECONCILER_INTERVAL=1000000000000`", "setting",
        "RECONCILER_INTERVAL: Input should be less than or equal to 604800 (got '1000000000000')", EXIT_78, 78,
        _env(RECONCILER_INTERVAL="1000000000000"), command=("daemon",)),
    Row(SETTINGS, "`ZOHO_DC=mars`", "setting",
        "ZOHO_DC: Input should be 'com', 'eu', 'in', 'com.au', 'jp', 'ca', 'sa', 'uk' or 'com.cn' (got 'mars')",
        EXIT_78, 78, _env(ZOHO_DC="mars")),
    Row(SETTINGS, "a URL without scheme, e.g. `SI_BASE_URL=api.d-tools.com/SI`", "setting",
        "SI_BASE_URL: must start with http:// or https:// (got 'api.d-tools.com/SI')", EXIT_78, 78,
        _env(SI_BASE_URL="api.d-tools.com/SI")),
    Row(SETTINGS, "a URL without a host, `SI_BASE_URL=https:///SI`", "setting",
        "SI_BASE_URL: has no host name (got 'https:///SI')", EXIT_78, 78, _env(SI_BASE_URL="https:///SI")),
    Row(SETTINGS, "a space in the host, `ZOHO_API_URL=https://www.zoho apis.com`", "setting",
        "ZOHO_API_URL: must not contain spaces or control characters (got 'https://www.zoho apis.com')",
        EXIT_78, 78, _env(ZOHO_API_URL="https://www.zoho apis.com")),
    Row(SETTINGS, "a bad port, `ZOHO_ACCOUNTS_URL=https://accounts.zoho.com:99999`", "setting",
        "ZOHO_ACCOUNTS_URL: is not a usable URL: bad port (use 1-65535) (got 'https://accounts.zoho.com:99999')",
        EXIT_78, 78, _env(ZOHO_ACCOUNTS_URL="https://accounts.zoho.com:99999")),
    Row(SETTINGS, "a broken IPv6 literal, `ZOHO_API_URL=http://[::1`", "setting",
        "ZOHO_API_URL: is not a usable URL: Invalid IPv6 URL (got 'http://[::1')", EXIT_78, 78,
        _env(ZOHO_API_URL="http://[::1")),
    Row(SETTINGS, "a path on an origin, `ZOHO_API_URL=https://www.zohoapis.com/crm/v8`", "setting",
        "ZOHO_API_URL: must be an origin (scheme://host[:port]) without a path; the client adds its own "
        "(got 'https://www.zohoapis.com/crm/v8')", EXIT_78, 78, _env(ZOHO_API_URL="https://www.zohoapis.com/crm/v8")),
    Row(SETTINGS, "an SI key with non-ASCII characters", "setting", f"SI_API_KEY: {SECRET_SHAPE}", EXIT_78, 78,
        _env(SI_API_KEY="clé-secrète")),
    Row(SETTINGS, "an SI key with CR/LF inside", "setting", f"SI_API_KEY: {SECRET_SHAPE}", EXIT_78, 78,
        _env(SI_API_KEY="abc\r\nX-Injected: 1")),
    Row(SETTINGS, "`RECONCILER_CALL_BUDGET=0`", "setting",
        "RECONCILER_CALL_BUDGET: Input should be greater than 0 (got '0')", EXIT_78, 78,
        _env(RECONCILER_CALL_BUDGET="0")),
    Row(SETTINGS, "`RECONCILER_SI_CONCURRENCY=0`", "setting",
        "RECONCILER_SI_CONCURRENCY: Input should be greater than or equal to 1 (got '0')", EXIT_78, 78,
        _env(RECONCILER_SI_CONCURRENCY="0")),
    Row(SETTINGS, "`RECONCILER_SI_CONCURRENCY=64` (more lanes than SI is asked to bear)", "setting",
        "RECONCILER_SI_CONCURRENCY: Input should be less than or equal to 16 (got '64')", EXIT_78, 78,
        _env(RECONCILER_SI_CONCURRENCY="64")),
    Row(SETTINGS, "`RECONCILER_MAPPING` names a file that does not exist", "setting",
        "RECONCILER_MAPPING: file not found: <tmp>/missing.toml", EXIT_78, 78,
        _env(RECONCILER_MAPPING="<tmp>/missing.toml")),
    Row(SETTINGS, "neither `ZOHO_REFRESH_TOKEN` nor `ZOHO_SOID`", "setting",
        "ZOHO_REFRESH_TOKEN: required (or ZOHO_SOID for the client-credentials grant); run "
        "`reconciler auth --code CODE` to get a refresh token", EXIT_78, 78, _env(ZOHO_REFRESH_TOKEN=None)),
    Row(SETTINGS, "`RECONCILER_DB=` (empty; it used to mean the working directory, which was chmodded)",
        "setting", "RECONCILER_DB: is empty; name the database file (e.g. /var/lib/reconciler/reconciler.db), "
        "or unset it for the default (got '')", "exit 78; nothing is created or chmodded", 78, _in_cwd_empty,
        unchanged=("<tmp>",)),
    Row(SETTINGS, "`RECONCILER_DB=/dev/null` (a character device)", "setting",
        "RECONCILER_DB: <db> is a character device; name a database file, e.g. /var/lib/reconciler/reconciler.db",
        "exit 78; its mode is unchanged, no `.lock` file is made beside it", 78, _device, unchanged=("<db>",)),
    Row(SETTINGS, "`RECONCILER_DB` names an existing directory", "setting",
        "RECONCILER_DB: <db> is a directory; name the database file in it, e.g. <db>/reconciler.db",
        "exit 78; its mode is unchanged", 78, _db_is("state"), unchanged=("<db>",)),
    Row(SETTINGS, "`.env` is not UTF-8", "`.env`",
        ".env: line 2 (SI_API_KEY) is not UTF-8 text; save the file as UTF-8 (the value is not shown)",
        EXIT_78, 78, _dotenv(b"ZOHO_DC=eu\nSI_API_KEY=cl\xe9\n"), command=("status",)),
    Row(SETTINGS, "`.env` cannot be read", "`.env`",
        ".env: cannot read the settings file: Permission denied; make it readable for this user",
        EXIT_78, 78, _dotenv(None), command=("status",)),
    Row(SETTINGS, "a credential file that is not UTF-8", "credential",
        "SI_API_KEY: the credential file <tmp>/credentials/si_api_key is not UTF-8 text; write it again as UTF-8",
        EXIT_78, 78, _credentials({"si_api_key": b"\xff\xfek\x00e\x00y\x00"})),
    Row(SETTINGS, "a credential file that cannot be read", "credential",
        "ZOHO_CLIENT_SECRET: cannot read the credential file <tmp>/credentials/zoho_client_secret: Permission "
        "denied; the reconciler's user must be able to read it (systemd LoadCredential= does that)",
        EXIT_78, 78, _credentials({"zoho_client_secret": None})),
    Row(SETTINGS, "broken credential files, for `reconciler status`", "credential", None,
        "exit 0: `status`, `history`, `retry` and `backup` never open the credential files", 0,
        _steps(_credentials({"si_api_key": b"\xff\xfe", "zoho_client_secret": None}), _seed_db_for_runner),
        command=("status",)),
    # ---- mapping
    Row(MAPPING, "an unknown section `[extras]`", "mapping",
        "mapping <file>: [extras]: unknown section (known: create, fields, notes, zoho)", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + _fields() + '\n[extras]\ncolour = "blue"\n')),
    Row(MAPPING, '`direction = "sideways"`', "mapping",
        "mapping <file>: fields[0].direction: unknown direction 'sideways' (use si_to_zoho | zoho_to_si | both)",
        EXIT_78, 78, _mapping(_ZOHO + _CREATE + _fields(direction="sideways"))),
    Row(MAPPING, "a note placeholder that is not an SI field, `{Colour}`", "mapping",
        "mapping <file>: notes.change_order_title: {Colour} is not an SI field", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + _fields() + _notes('"CO {CONumber}: {Colour}"'))),
    Row(MAPPING, "a format spec or conversion in a template, `{Price:.2f}` (`{Price:d}`, `{COName!x}`, ...)",
        "mapping", "mapping <file>: notes.change_order_title: {Price:.2f}: only {Field} placeholders are allowed "
        "(no format spec, conversion, attribute or index); write {{ and }} for literal braces", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + _fields() + _notes('"CO {CONumber}: {Price:.2f}"'))),
    Row(MAPPING, "a stray brace in a template", "mapping",
        "mapping <file>: notes.change_order_title: a lone '{': write {{ for a literal brace", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + _fields() + _notes('"CO {CONumber"'))),
    Row(MAPPING, '`direction = "zoho_to_si"` on `si = "Price"` (SI cannot receive it)', "mapping",
        'mapping <file>: fields[0].si: SI cannot receive Price (it has no ProjectFieldId); use direction = '
        '"si_to_zoho"', EXIT_78, 78, _mapping(_ZOHO + _CREATE + _fields(direction="zoho_to_si"))),
    Row(MAPPING, "invalid TOML (e.g. `[zoho` without `]`)", "mapping",
        "mapping <file>: invalid TOML: Expected ']' at the end of a table declaration (at line 2, column 6)",
        EXIT_78, 78, _mapping(_ZOHO.replace("[zoho]", "[zoho") + _CREATE)),
    Row(MAPPING, 'an unknown key, `colour = "blue"` in a `[[fields]]` entry', "mapping",
        "mapping <file>: fields[0].colour: unknown key", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + _fields(extra='colour = "blue"\n'))),
    Row(MAPPING, "the link field is also the flag field", "mapping",
        "mapping <file>: zoho.link_field: Send_to_SI is also zoho.flag_field; the flag, link and status fields "
        "must differ", EXIT_78, 78,
        _mapping(_ZOHO.replace('"SI_Project_ID"', '"Send_to_SI"') + _CREATE + _fields())),
    Row(MAPPING, "a synced field is the link field (`si_to_zoho` Name -> `SI_Project_ID`)", "mapping",
        "mapping <file>: fields[0].zoho: SI_Project_ID is zoho.link_field, which the reconciler manages; it "
        "cannot be synced", EXIT_78, 78, _mapping(_ZOHO + _CREATE + _fields(zoho="SI_Project_ID", si="Name"))),
    Row(MAPPING, "two Zoho fields send one SI field to SI", "mapping",
        "mapping <file>: fields[1].si: Deal_Name already sends Name to SI; one Zoho field per SI field",
        EXIT_78, 78, _mapping(_ZOHO + _CREATE + _fields("both", "Name", zoho="Deal_Name")
                              + _fields("zoho_to_si", "Name", zoho="Project_Title"))),
    Row(MAPPING, "a `[create]` path with spaces or COQL text", "mapping",
        "mapping <file>: create.Client: \"Account_Name.name from Deals where id = '1'\" is not a Zoho field path "
        "(API names joined by dots, e.g. Account_Name.name)", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE.replace('"Account_Name.name"', "\"Account_Name.name from Deals where id = '1'\""))),
    Row(MAPPING, "a value map entry that is not of the field's `zoho_type`", "mapping",
        "mapping <file>: fields[0].values.Approved: expected a number, got 'Closed Won' (zoho_type = number)",
        EXIT_78, 78, _mapping(_ZOHO + _CREATE + _fields(extra='zoho_type = "number"\n[fields.values]\n'
                                                               '"Approved" = "Closed Won"\n'))),
    Row(MAPPING, "a nested `[create]` key SI's `Project` schema does not have, `BillingAddress.Town`", "mapping",
        "mapping <file>: create.BillingAddress.Town: SI's BillingAddress (Address) has no property Town", EXIT_78,
        78, _mapping(_ZOHO + _CREATE + 'BillingAddress.Town = "Account_Name.Billing_City"\n')),
    Row(MAPPING, 'a list without its index, `"Contacts.Email" = "Contact_Name.Email"`', "mapping",
        "mapping <file>: create.Contacts.Email: Contacts is a list in SI's Project: give an index, Contacts[0]",
        EXIT_78, 78, _mapping(_ZOHO + _CREATE + '"Contacts.Email" = "Contact_Name.Email"\n')),
    Row(MAPPING, "a third lookup in the deals query (`SalesRep = \"Owner.name\"` besides the account and the contact)",
        "mapping", "mapping <file>: create.SalesRep: Owner.name would join Owner besides Account_Name, Contact_Name: "
        "Zoho's COQL joins at most 2 lookups in one query; read fewer lookups", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + '"Contacts[0].Name" = "Contact_Name.name"\nSalesRep = "Owner.name"\n')),
    Row(MAPPING, "more columns than COQL's 500 (494 synced fields)", "mapping",
        "mapping <file>: [[fields]]: the deal read would select 501 columns, more than Zoho's COQL limit of 500; "
        "map fewer fields", EXIT_78, 78, _mapping(_ZOHO + _CREATE + _wide(494))),
    Row(MAPPING, "a mapping file that is not UTF-8", "mapping",
        "mapping <file>: not UTF-8 text (byte 0xb0 on line 12); save it as UTF-8", EXIT_78, 78,
        _mapping((_ZOHO + _CREATE).encode() + b'\n[notes]\nchange_order_title = "N\xb0 {CONumber}"\n')),
    Row(MAPPING, "a mapping file nested thousands deep", "mapping",
        "mapping <file>: nested too deeply to read (a mapping is a few tables deep)", EXIT_78, 78,
        _mapping(_ZOHO + _CREATE + "\n[notes]\nx = " + "[" * 5000 + "1" + "]" * 5000 + "\n")),
    # ---- the database and its lock
    Row(STORE, "a damaged database: random bytes", "database",
        f"RECONCILER_DB: <db> is damaged or not a reconciler database (file is not a database); it was left as "
        f"it is: {RESTORE}", "exit 78; the file is not touched", 78, _damaged("garbage")),
    Row(STORE, "a damaged database: a text file", "database",
        f"RECONCILER_DB: <db> is damaged or not a reconciler database (file is not a database); it was left as "
        f"it is: {RESTORE}", "exit 78; the file is not touched", 78, _damaged("text")),
    Row(STORE, "a damaged database: truncated to half", "database",
        f"RECONCILER_DB: <db> is damaged or not a reconciler database (database disk image is malformed); it "
        f"was left as it is: {RESTORE}", "exit 78; the file is not touched", 78, _damaged("truncated")),
    Row(STORE, "`schema_version` is not a number", "database",
        f"RECONCILER_DB: <db>: its schema_version is 'banana', not a number: the file is damaged or not a "
        f"reconciler database; it was left as it is: {RESTORE}", "exit 78; the file is not touched", 78,
        _schema_banana),
    Row(STORE, "a database owned by another user (mode 0600)", "database",
        "RECONCILER_DB: cannot open <db>: Permission denied (owner <owner>, mode <mode>; this process runs as "
        "<user>): run the reconciler as the file's owner, or fix its owner and mode (chown, chmod 600)",
        EXIT_78, 78, _foreign_db),
    Row(STORE, "a database its owner made read-only (0400)", "database",
        "RECONCILER_DB: <db> is read-only for <user> (owner <owner>, mode 0400): the reconciler writes to its "
        "database; make it writable for that user (chmod 600) or run as its owner",
        "exit 78; the mode stays 0400 (it is never chmodded back)", 78, _read_only_db, unchanged=("<db>",)),
    Row(STORE, "the database is on a read-only file system", "database",
        "RECONCILER_DB: the lock file <db>.lock cannot be used (read-only file system); it must be a file the "
        "reconciler's user can create and write, next to the database", EXIT_78, 78, _mounted(_READ_ONLY_FS)),
    Row(STORE, "a file where the database's directory should be", "database",
        "RECONCILER_DB: <db>: a part of the path is a file, not a directory", EXIT_78, 78, _file_in_the_way),
    Row(STORE, "a directory that cannot be created", "database",
        "RECONCILER_DB: cannot create the directory <dir>: Permission denied; create it (install -d -m 0700 -o "
        "<service user> <dir>) or point RECONCILER_DB elsewhere", EXIT_78, 78, _dir_not_creatable),
    Row(STORE, "the database is locked by another process for longer than the busy timeout (10 s)", "database",
        "RECONCILER_DB: <db> is locked by another process for more than 10 s (database is locked); the step in "
        "progress was rolled back and the next run resumes (see what holds it with `fuser <db>`)",
        "exit 1; the next run resumes", 1, _locked_by_sqlite),
    Row(STORE, "the disk is full", "database",
        "RECONCILER_DB: <db>: the disk is full (<cause>); the transaction was rolled back: free space on its "
        "file system and the next run resumes", "exit 1; nothing half-written; the next run resumes", 1,
        _mounted(_FULL_DISK)),
    Row(STORE, "the lock file `<db>.lock` is a directory", "lock",
        "RECONCILER_DB: the lock file <db>.lock cannot be used (Is a directory); it must be a file the "
        "reconciler's user can create and write, next to the database", EXIT_78, 78, _lock_path_is_a_directory),
    Row(STORE, "another reconciler holds the lock", "lock",
        "another reconciler is running (lock file <db>.lock is held)", "exit 75", 75, _lock_held),
    Row(STORE, "another reconciler holds the lock, and this one is given a symlink to the same database",
        "lock", "another reconciler is running (lock file <db>.lock is held)", "exit 75 (the lock is keyed by "
        "the database's real path)", 75, _lock_held_through_symlink),
    # ---- records (pinned by their own tests)
    Row(ZOHO_DATA, "a flagged deal without Account (SI requires `Client`)", "Zoho data", None,
        "create parked as `create:deal:<deal>`; other deals are created; exit 1",
        cell="`deal <deal>: field Account_Name.name is empty (SI requires Client)`",
        pinned_by="test_a_deal_without_account_parks_its_create_and_the_other_deal_is_created"),
    Row(ZOHO_DATA, '`Amount` is `"12x"` under a `direction = "both"` field', "Zoho data", None,
        "deal parked as `deal:<deal>` (nothing written for it); other deals proceed; exit 1",
        cell="`deal <deal>: field Amount: expected a number, got '12x'`",
        pinned_by="test_a_non_number_in_a_both_direction_field_parks_the_deal"),
    Row(ZOHO_DATA, "a lookup of unexpected shape: COQL gives `Account_Name.Account_Name` as an object (or a list)",
        "Zoho data", None, "create parked, nothing published for it; other deals are created; exit 1",
        cell="`deal <deal>: field Account_Name.name: expected a single value, got an object with keys id, name` "
        "(`... got a list of 2`)", pinned_by="test_a_lookup_of_unexpected_shape_is_parked_not_sent_to_si"),
    Row(ZOHO_DATA, "a deal whose `Type` has no entry in the `TemplateName` value map, which has no default",
        "Zoho data", None, "create parked as `create:deal:<deal>`; other deals are created; exit 1; planned again "
        "once the deal's `Type` or the map's `values` change", cell="`deal <deal>: field Type: no TemplateName for "
        "'Industrial' (add it under create.TemplateName.values in the mapping, or give a default)`",
        pinned_by="test_a_type_without_a_template_parks_its_create_and_the_others_are_created"),
    Row(SI_DATA, '`Price` is `"12x"`', "SI data", None,
        "parked as `si:project:<project>`, the deal keeps its value; other projects sync; exit 1",
        cell="`SI project <project> (deal <deal>): field Price: expected a number, got '12x'` (status)",
        pinned_by="test_a_bad_si_value_parks_the_project_and_the_other_project_syncs"),
    Row(SI_DATA, '`CloseDate` is `"next week"`', "SI data", None, "parked; other projects sync; exit 1",
        cell="`SI project <project> (deal <deal>): field CloseDate: expected a date (YYYY-MM-DD), got 'next "
        "week'` (status)", pinned_by="test_a_bad_si_value_parks_the_project_and_the_other_project_syncs"),
    Row(SI_DATA, 'an object where a number belongs (`Price: {"Amount": 5}`)', "SI data", None,
        "parked; other projects sync; exit 1",
        cell="`SI project <project> (deal <deal>): field Price: expected a single value, got an object with keys "
        "amount` (status)", pinned_by="test_a_bad_si_value_parks_the_project_and_the_other_project_syncs"),
    Row(SI_DATA, "an export message without `PublishedOnUnixTimeMs`", "SI data", None,
        "neither used nor acknowledged; the cycle exits 1 naming the message and the project; retried each "
        "cycle, parked after 5 (as `read:message:…`); other messages processed",
        cell='log warning `si.bad_export project_id=<project> problem="PublishedOnUnixTimeMs is None, not a '
        'whole number"`', pinned_by="test_an_export_without_published_time_is_held_and_reported"),
    Row(SI_DATA, '`CONumber` typed `2.0`, `"02"` or `" 2 "`', "SI data", None,
        "accepted; the same state under another spelling adds no second note and no write",
        cell="none: it is change order `2` (note `Change order 2: …`, `CO_Number` = `2`)",
        pinned_by="test_an_odd_conumber_is_the_same_change_order"),
    Row(SI_DATA, "malformed JSON for the whole export list", "SI data", None,
        "cycle fails before writing or acknowledging anything; exit 1; the next cycle proceeds",
        cell="`… failed … (could not read: si.subscribe.list: HTTP 200: malformed JSON in the answer)` "
        "(run-once stdout)", pinned_by="test_a_malformed_export_list_fails_the_cycle_cleanly_and_the_next_proceeds"),
    Row(SI_DATA, "malformed JSON for one project's details", "SI data", None,
        "that project's messages wait (not acknowledged), retried each cycle (exit 1), then parked as "
        "`read:project:<project>` after 5 (exit 0 after that); other projects sync in every cycle",
        cell='log warning `si.bad_detail project_id=<project> error="si.subscribe.get: HTTP 200: malformed JSON '
        'in the answer"`', pinned_by="test_one_projects_malformed_details_do_not_hold_up_the_others"),
]  # fmt: skip

RUNNABLE = [row for row in ROWS if row.setup is not None]

HEADERS = {
    SETTINGS: "message the user sees (stderr)",
    MAPPING: "message the user sees (stderr)",
    STORE: "message the user sees (stderr)",
    ZOHO_DATA: "message the user sees (`reconciler status`)",
    SI_DATA: "message the user sees",
}


def _cell(row: Row) -> str:
    if row.cell is not None:
        return row.cell
    if row.message is None:
        return "none"
    text = "reconciler: " + row.message.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_readme() -> dict[str, list[str]]:
    """Each section's markdown table (header, rule, rows), as the README shows it."""
    tables: dict[str, list[str]] = {}
    for row in ROWS:
        lines = tables.setdefault(
            row.section,
            [f"| what is wrong | where | {HEADERS[row.section]} | outcome |", "|---|---|---|---|"],
        )
        lines.append(f"| {row.what} | {row.where} | {_cell(row)} | {row.outcome} |")
    return tables


def modes(box: Sandbox, paths: tuple[str, ...]) -> dict[str, int]:
    """The modes of the row's ``unchanged`` paths (placeholders resolved), without following links."""
    found = {}
    for path in paths:
        for key, value in box.subs.items():
            path = path.replace(key, value)
        found[path] = os.lstat(path).st_mode
    return found


def write_readme(path: Path = ROOT / "README.md") -> None:
    """Replace each section's table in the README with the rendered one (``python -m tests.faults.table``)."""
    text = path.read_text(encoding="utf-8")
    for section, lines in render_readme().items():
        heading = f"### {section}\n\n"
        before, found, after = text.partition(heading)
        if not found:
            raise SystemExit(f"README has no heading '### {section}': add it where the table belongs")
        _table, rule, rest = after.partition("\n\n")
        text = before + heading + "\n".join(lines) + rule + rest
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_readme()
