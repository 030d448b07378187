"""A stand-in for ``systemd-run --pipe --wait`` that sets up what a service would see, for the tests.

It understands the ``-p`` properties ``reconciler-admin`` passes and emulates them the way systemd does:
a clean environment (not the caller's); ``Environment=`` assignments; ``EnvironmentFile=`` parsed by
systemd's rules (``-`` prefix: optional), overriding ``Environment=``; ``StateDirectory=`` created 0700
under ``$FAKE_SYSTEMD_ROOT/var/lib`` and exported as ``$STATE_DIRECTORY``; each ``LoadCredential=ID:PATH``
copied into a private ``$CREDENTIALS_DIRECTORY``; ``WorkingDirectory=`` as the cwd; ``UMask=``. ``User=``
and ``Group=`` are recorded in ``$FAKE_SYSTEMD_USER`` (the tests run as one user). The command's exit code
is returned, as ``--wait`` does. Every invocation is appended to ``$FAKE_SYSTEMD_LOG`` as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from reconciler.envcheck import parse_env

FLAGS = {"--quiet", "--pipe", "--wait", "--collect", "--service-type=exec", "-q", "-P"}


def _parse(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    properties: list[tuple[str, str]] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            return properties, argv[index + 1 :]
        if arg == "-p":
            key, _, value = argv[index + 1].partition("=")
            properties.append((key, value))
            index += 2
        elif arg in FLAGS:
            index += 1
        else:
            return properties, argv[index:]
    raise SystemExit("fake systemd-run: no command")


def main(argv: list[str]) -> int:
    properties, command = _parse(argv)
    root = Path(os.environ["FAKE_SYSTEMD_ROOT"])
    with open(os.environ["FAKE_SYSTEMD_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"properties": properties, "command": command}) + "\n")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    files: list[str] = []
    cwd = "/"
    umask = 0o022
    credentials = Path(tempfile.mkdtemp(prefix="creds-"))
    try:
        for key, value in properties:
            if key == "Environment":
                for assignment in value.split():
                    name, _, val = assignment.partition("=")
                    env[name] = val
            elif key == "EnvironmentFile":
                files.append(value)
            elif key == "StateDirectory":
                state = root / "var" / "lib" / value
                state.mkdir(parents=True, exist_ok=True, mode=0o700)
                env["STATE_DIRECTORY"] = str(state)
            elif key in ("LoadCredential", "LoadCredentialEncrypted"):
                name, _, source = value.partition(":")
                shutil.copyfile(source, credentials / name)  # systemd refuses to start without it, too
                env["CREDENTIALS_DIRECTORY"] = str(credentials)
            elif key == "WorkingDirectory":
                cwd = value.lstrip("-")
            elif key == "UMask":
                umask = int(value, 8)
            elif key in ("User", "Group"):
                env.setdefault("FAKE_SYSTEMD_USER", value)
        for file in files:  # EnvironmentFile= is applied after Environment=, so it overrides it
            optional, path = file.startswith("-"), file.lstrip("-")
            try:
                text = Path(path).read_text(encoding="utf-8")
            except FileNotFoundError:
                if optional:
                    continue
                raise
            env.update({a.name: a.value for a in parse_env(text)})
        os.umask(umask)
        return subprocess.run(command, cwd=cwd, env=env, check=False).returncode
    finally:
        shutil.rmtree(credentials, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
