"""Issue 7, the fault matrix: every sandbox fault × every provider × {MCP tools, CLI}.

CI runs the core (one fault of each family, every provider, both interfaces); the whole matrix
is ``@pytest.mark.slow``: ``uv run --group dev pytest -m slow tests/evidence`` (about 2 minutes
on 2 cores).
``bench/run_all.py`` runs the whole matrix and puts its table on the results page.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .evidence_helpers import Cell, table, write_table
from .fault_matrix import PROVIDERS, cells_for, run_matrix

pytestmark = pytest.mark.anyio

#: CLI cells in CI: one per provider (a subprocess each), faults of different families.
CLI_CORE = {"volcengine": "drop:submit:1", "tokenops": "truncate_download:1",
            "jenius": "fail_after_generating:1"}  # fmt: skip


def _assert_all_pass(cells: list[Cell], expected_count: int) -> None:
    assert len(cells) == expected_count
    failed = [c for c in cells if not c.ok]
    assert not failed, "cells that failed:\n" + table(failed)


async def test_core_faults_through_the_mcp_tools_end_in_a_file_or_a_readable_error(
    tmp_path: Path,
) -> None:
    work = cells_for(core=True)
    cells = await run_matrix("mcp", tmp_path, work)
    _assert_all_pass(cells, len(work))


async def test_one_fault_per_provider_through_the_cli_ends_in_a_file_or_a_readable_error(
    tmp_path: Path,
) -> None:
    work = [(p, f) for p, f in cells_for(core=False) if CLI_CORE.get(p) == f.spec]
    assert len(work) == len(PROVIDERS)
    cells = await run_matrix("cli", tmp_path, work)
    _assert_all_pass(cells, len(work))


@pytest.mark.slow
@pytest.mark.timeout(900)  # sixty cells in one test; about 2 minutes on a quiet machine
@pytest.mark.parametrize("interface", ["mcp", "cli"])
async def test_every_fault_on_every_provider_ends_in_a_file_or_a_readable_error(
    tmp_path: Path, interface: str
) -> None:
    work = cells_for(core=False)
    cells = await run_matrix(interface, tmp_path, work)
    write_table(f"fault_matrix_{interface}", cells)
    _assert_all_pass(cells, len(work))
