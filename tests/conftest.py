"""Shared fixtures: both simulators (in-process or on loopback), a store, a cycle context, the CLI.

Tests talk only to loopback. Retry waits are zero (``RetryPolicy.no_waits``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from reconciler.clients.http import RetryPolicy
from reconciler.context import Context, build_context
from reconciler.cycle import run_cycle
from reconciler.mapping import Mapping, load_mapping
from reconciler.sim.harness import SimPair
from reconciler.store import Store
from tests.cli_fork import fork_cli

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAPPING = ROOT / "config" / "mapping.toml"

# A mapping exercising every direction; tests that need it write it with `mapping_file(TWO_WAY_MAPPING)`.
TWO_WAY_MAPPING = textwrap.dedent(
    """
    [zoho]
    module = "Deals"
    flag_field = "Send_to_SI"
    link_field = "SI_Project_ID"
    status_field = "SI_Sync_Status"

    [create]
    Name = "Deal_Name"
    Client = "Account_Name.name"

    [[fields]]
    zoho = "Amount"
    si = "Price"
    direction = "si_to_zoho"

    [[fields]]
    zoho = "Labor_Hours"
    si = "Hours"
    direction = "si_to_zoho"

    [[fields]]
    zoho = "Stage"
    si = "Progress"
    direction = "si_to_zoho"
    [fields.values]
    "Approved" = "Closed Won"
    "On Hold" = "Negotiation"

    [[fields]]
    zoho = "Closing_Date"
    si = "CloseDate"
    direction = "zoho_to_si"

    [[fields]]
    zoho = "Deal_Name"
    si = "Name"
    direction = "both"
    on_conflict = "manual"

    [[fields]]
    zoho = "CO_Number"
    si = "CONumber"
    direction = "si_to_zoho"

    [notes]
    change_order_title = "Change order {CONumber}: {COName}"
    change_order_body = "Status: {COStatus}. Type: {COType}. Price: {Price}."
    """
)


@pytest.fixture
def sims() -> SimPair:
    """Both simulators, in-process (route with ``sims.transport()``)."""
    return SimPair()


@pytest.fixture
def served_sims() -> Iterator[SimPair]:
    """Both simulators on real loopback sockets."""
    with SimPair() as pair:
        yield pair


@pytest.fixture
def mapping_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "mapping.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[..., Context]]:
    """Build a cycle context on ``sims`` (in-process unless the pair is serving) with its own store."""
    made: list[tuple[Context, Store]] = []

    def build(pair: SimPair, mapping: Path | Mapping | None = None, **overrides: Any) -> Context:
        mapping_path = mapping if isinstance(mapping, Path) else DEFAULT_MAPPING
        loaded = mapping if isinstance(mapping, Mapping) else load_mapping(mapping_path)
        settings = pair.settings(tmp_path / "reconciler.db", mapping_path, **overrides)
        store = Store.open(settings.db_path)
        transport = None if pair.servers else pair.transport()
        ctx = build_context(settings, loaded, store, transport=transport, policy=RetryPolicy.no_waits())
        made.append((ctx, store))
        return ctx

    yield build
    for ctx, store in made:
        ctx.close()
        store.close()


def cycle(ctx: Context, **kwargs: Any) -> Any:
    """Run one cycle and return its report."""
    return run_cycle(ctx, **kwargs).report


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, *, timeout: float = 60, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``reconciler ARGS`` in a clean environment (plus ``env``), like an operator would.

    The command runs in its own process, forked from an interpreter that already imported the package
    (:mod:`tests.cli_fork`); tests about the entry points, packaging or signals start ``python -m
    reconciler`` themselves (``tests.e2e.helpers.start_cli``).
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "SI_", "RECONCILER_", "CRM_"))}
    base.update(env)
    base.setdefault("PYTHONPATH", str(ROOT))
    proc = fork_cli(args, base, cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode is not None
    result = subprocess.CompletedProcess(["reconciler", *args], proc.returncode, out, err)
    if check and result.returncode != 0:
        raise AssertionError(f"reconciler {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture
def vendor_specs() -> ModuleType:
    """The vendors' ``validate.py`` from ``$RECONCILER_SPECS_DIR`` or ``../shared/specs``; skip without it."""
    candidates = [Path(os.environ["RECONCILER_SPECS_DIR"])] if os.environ.get("RECONCILER_SPECS_DIR") else []
    candidates.append(ROOT.parent / "shared" / "specs")
    folder = next((path for path in candidates if (path / "validate.py").is_file()), None)
    if folder is None:
        pytest.skip("vendor specs not found: set RECONCILER_SPECS_DIR or provide ../shared/specs")
    spec = importlib.util.spec_from_file_location("vendor_specs_validate", folder / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
