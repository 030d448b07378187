"""What a plain (non-editable) install gives an operator, and the lock file the server install uses.

The fast test installs the package with ``pip install --no-deps --target`` into a temporary folder and
runs it there with this venv's dependencies, from a folder that is not the checkout: whatever the
package needs at run time must be inside it. The slow one (``make proof``) builds a fresh venv from
``requirements.lock`` alone, as the README's server install does.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

SOURCES = ("pyproject.toml", "README.md", "reconciler")
LOCK = ROOT / "requirements.lock"


def _copy_sources(destination: Path) -> Path:
    """The files a build reads, without caches or the editable install's metadata."""
    source = destination / "src"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    return source


def _clean_env(**extra: str) -> dict[str, str]:
    prefixes = ("ZOHO_", "SI_", "RECONCILER_", "CRM_", "PYTHONPATH", "CREDENTIALS_DIRECTORY", "STATE_DIR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


def _run(python: str, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def _demo_and_init_config(python: str, work: Path, env: dict[str, str]) -> None:
    where = _run(python, ["-c", "import reconciler; print(reconciler.__file__)"], work, env)
    assert where.returncode == 0, where.stderr
    assert not where.stdout.strip().startswith(str(ROOT)), "the checkout's package was imported"

    demo = _run(python, ["-m", "reconciler", "demo"], work, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Demo finished" in demo.stdout

    config = work / "etc-reconciler"
    init = _run(python, ["-m", "reconciler", "init-config", str(config)], work, env)
    assert init.returncode == 0, init.stderr
    assert (config / "mapping.toml").read_text() == (ROOT / "config" / "mapping.toml").read_text()
    assert (config / "reconciler.env").is_file() and (config / "mapping.example.toml").is_file()
    assert not (work / "state").exists()


def test_a_plain_install_runs_demo_and_init_config_without_the_checkout(tmp_path: Path) -> None:
    """`pip install` (not editable) ships the mapping, its example and the env file inside the package."""
    source = _copy_sources(tmp_path)
    target = tmp_path / "installed"
    built = _run(
        sys.executable,
        [
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(source),
        ],
        tmp_path,
        _clean_env(),
    )
    assert built.returncode == 0, built.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    _demo_and_init_config(sys.executable, work, _clean_env(PYTHONPATH=str(target)))


@pytest.mark.slow
def test_a_fresh_venv_from_the_lock_file_runs_demo_and_init_config(tmp_path: Path) -> None:
    """The README's server install: a new venv, `pip install --require-hashes -r requirements.lock`,
    then the package without dependencies; demo and init-config work from anywhere."""
    source = _copy_sources(tmp_path)
    venv = tmp_path / "venv"
    assert _run(sys.executable, ["-m", "venv", str(venv)], tmp_path, _clean_env()).returncode == 0
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet"]
    locked = _run(pip[0], [*pip[1:], "--require-hashes", "-r", str(LOCK)], tmp_path, _clean_env())
    assert locked.returncode == 0, locked.stderr
    package = _run(pip[0], [*pip[1:], "--no-deps", str(source)], tmp_path, _clean_env())
    assert package.returncode == 0, package.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    _demo_and_init_config(python, work, _clean_env())


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", LOCK.read_text(), flags=re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_lock_pins_every_dependency_with_hashes_within_pyproject_bounds() -> None:
    """requirements.lock covers each runtime dependency at a version pyproject allows, every pin hashed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, f"{name} is missing from requirements.lock: run `make lock`"
        assert requirement.specifier.contains(locked[name]), f"{name}=={locked[name]} violates {spec}"
    hashed, current = set(), None
    for line in LOCK.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9._-]+)==", line)
        current = pin.group(1).lower().replace("_", "-") if pin else current
        if current is not None and "--hash=sha256:" in line:
            hashed.add(current)
    assert set(locked) == hashed, f"pins without a hash: {sorted(set(locked) - hashed)}"


def test_every_third_party_import_is_a_declared_dependency() -> None:
    """Each top-level package `reconciler/` imports is the standard library, ours, or declared."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(spec).name.lower().replace("_", "-") for spec in project["dependencies"]}
    importable = {name.replace("-", "_") for name in declared}
    if "peewee" in declared:
        importable.add("playhouse")  # peewee's extensions ship in its distribution
    imported: set[str] = set()
    for path in (ROOT / "reconciler").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "reconciler"}
    third_party.discard("__future__")
    assert third_party <= importable, f"imported but not declared: {sorted(third_party - importable)}"
