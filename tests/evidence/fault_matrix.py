"""The fault matrix: every sandbox fault × every provider, through the MCP tools and the CLI.

One cell = one fresh sandbox (outside the program, as a real provider would be) with one fault
spec, one program run (an in-memory MCP client, or a ``videogen generate`` subprocess), then the
checks: the task is in the ledger, the provider saw no billed resend, and the outcome is what the
fault calls for — a complete, playable file (decoded with PyAV) or a readable error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from videogen.sandbox import SandboxOptions, serve

from .evidence_helpers import (
    CLI_ARGS,
    JOB_SECONDS,
    REQUESTS,
    Cell,
    clean_env,
    ledger_tasks,
    probe_playable,
    readable,
    settings_env,
    stray_files,
    submit_problems,
)

PROVIDERS = ("volcengine", "tokenops", "jenius")


@dataclass(frozen=True)
class Fault:
    spec: str  # "" for none
    expected: str  # "file" | "error"
    #: providers for which the fault cannot fire (their API has no such check): a file then
    not_applicable: tuple[str, ...] = ()

    def expected_for(self, provider: str) -> str:
        return "file" if provider in self.not_applicable else self.expected


#: Every fault of the grammar, with a count that lets a well-behaved client get through when the
#: fault is transient. Submit faults that make the submit ambiguous (5xx, drop) must end in a
#: clearly marked ``unknown`` task, never in a resend.
FAULTS: tuple[Fault, ...] = (
    Fault("", "file"),
    Fault("rate_limit:submit:1", "file"),
    Fault("rate_limit:poll:2", "file"),
    Fault("rate_limit:download:1", "file"),
    Fault("rate_limit:any:3", "file"),
    Fault("server_error:submit:1", "error"),
    Fault("server_error:poll:2", "file"),
    Fault("server_error:download:1", "file"),
    Fault("drop:submit:1", "error"),
    Fault("drop:poll:2", "file"),
    Fault("drop:download:1", "file"),
    Fault("truncate_download:1", "file"),
    Fault("slow_download:2000000", "file"),
    Fault("reject_text:1", "error", not_applicable=("jenius",)),
    Fault("reject_image:1", "error"),
    Fault("reject_copyright:1", "error", not_applicable=("jenius",)),
    Fault("fail_after_generating:1", "error"),
    # TokenOps serves the bytes from its authenticated content endpoint: no URL to expire.
    Fault("expired_urls", "error", not_applicable=("tokenops",)),
    Fault("concurrency:0", "error"),
    Fault("job_seconds:2", "file"),
)


#: The part of the matrix CI runs on every push: one fault of each family, every provider.
CORE_SPECS: tuple[str, ...] = (
    "drop:submit:1",
    "truncate_download:1",
    "reject_image:1",
    "fail_after_generating:1",
)


def cells_for(*, core: bool) -> list[tuple[str, Fault]]:
    faults = [f for f in FAULTS if f.spec in CORE_SPECS] if core else list(FAULTS)
    return [(p, f) for f in faults for p in PROVIDERS]


def _options(fault: Fault) -> SandboxOptions:
    return SandboxOptions(job_seconds=JOB_SECONDS, faults=(fault.spec,) if fault.spec else ())


def _finish_cell(
    cell: Cell, root: Path, reported: dict[str, Any] | None, error: str | None
) -> None:
    """Shared checks once the program has answered: ledger, file, message."""
    tasks = ledger_tasks(root / "data")
    if len(tasks) != 1:
        cell.problems.append(f"{len(tasks)} tasks in the ledger, expected 1")
    task = tasks[0] if tasks else None
    if reported is not None and task is not None:
        if reported.get("task_id") != task.id:
            cell.problems.append("reported task id is not the ledger's")
        elif reported.get("error") is not True and reported.get("status") != task.status:
            # (an error object -- ``--json`` on a failure -- names the task, not its status)
            cell.problems.append(f"reported {reported.get('status')}, ledger {task.status}")
    cell.status = task.status if task else (reported or {}).get("status", "-")
    videos = root / "videos"
    saved = sorted(videos.glob("*.mp4")) if videos.exists() else []
    if stray_files(videos):
        cell.problems.append(f"partial files left: {stray_files(videos)}")
    if task is not None and task.status == "completed":
        if len(saved) != 1 or task.local_path is None or Path(task.local_path) != saved[0]:
            cell.problems.append(f"saved files {[p.name for p in saved]} vs {task.local_path}")
        else:
            try:
                cell.detail = str(probe_playable(saved[0]))
                cell.outcome = "file"
            except Exception as exc:  # a broken file is a failed cell, shown in the table
                cell.problems.append(f"unplayable file: {exc}")
        return
    if saved:
        cell.problems.append(f"files saved without a completed task: {[p.name for p in saved]}")
    message = error or (task.error.message if task and task.error else None)
    if message is None and reported is not None:
        # ``--json`` on a failure prints an error object: {"error": true, "message": ...}
        said = reported.get("message") if reported.get("error") is True else reported.get("error")
        message = said or None
    cell.detail = message or ""
    if readable(message) and (task is None or task.status != "completed"):
        cell.outcome = "error"
        done = task is not None and (task.terminal or task.error is not None)
        if task is not None and not done:
            cell.problems.append(f"task left {task.status} without an error recorded")
    else:
        cell.problems.append(f"no readable error ({message!r})")


async def run_mcp_cell(provider: str, fault: Fault, root: Path) -> Cell:
    """One cell through ``generate_video`` (and ``check_task`` if the first wait ends early)."""
    from mcp import Client
    from mcp_types import TextContent

    from videogen.config import Settings
    from videogen.mcp_server import create_server

    cell = Cell("mcp", provider, fault.spec or "none", fault.expected_for(provider))
    started = time.monotonic()
    async with serve(_options(fault)) as sandbox:
        settings = Settings.from_env({**settings_env(root), **sandbox.env()})
        async with Client(create_server(settings, warm_up_after=None)) as client:
            args = {**REQUESTS[provider], "wait_seconds": 40}
            result = await client.call_tool("generate_video", args)
            data = result.structured_content if not result.is_error else None
            if data and not data["done"] and not data.get("error"):
                result = await client.call_tool(
                    "check_task", {"task_id": data["task_id"], "wait_seconds": 40}
                )
                data = result.structured_content if not result.is_error else None
        text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
        error = None
        if result.is_error:
            error = text.removeprefix("Error executing tool generate_video: ")
            if "failed inside videogen" in text or len(error) < 20:
                cell.problems.append(f"internal error: {text[:120]}")
        entries = list(sandbox.log.entries)
    cell.seconds = time.monotonic() - started
    _count_submits(cell, entries)
    _finish_cell(cell, root, data, error)
    cell.problems += submit_problems(entries, completed=cell.outcome == "file")
    return cell


async def run_cli_cell(provider: str, fault: Fault, root: Path) -> Cell:
    """One cell through ``videogen generate --json`` in a subprocess (exit code checked too)."""
    import sys

    cell = Cell("cli", provider, fault.spec or "none", fault.expected_for(provider))
    started = time.monotonic()
    async with serve(_options(fault)) as sandbox:
        env = clean_env(root, **sandbox.env())
        done = await anyio.run_process(
            [sys.executable, "-m", "videogen", "generate", *CLI_ARGS[provider], "--json"],
            env=env,
            check=False,
        )
        entries = list(sandbox.log.entries)
    cell.seconds = time.monotonic() - started
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    data: dict[str, Any] | None = None
    try:
        data = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        cell.problems.append("stdout is not the JSON result")
    if "Traceback" in stderr:
        cell.problems.append("a traceback on stderr")
    error = None if data else stderr.strip()
    _count_submits(cell, entries)
    _finish_cell(cell, root, data, error)
    expect_zero = cell.outcome == "file"
    if expect_zero != (done.returncode == 0):
        cell.problems.append(f"exit code {done.returncode} for outcome {cell.outcome}")
    cell.problems += submit_problems(entries, completed=cell.outcome == "file")
    return cell


def _count_submits(cell: Cell, entries: list[Any]) -> None:
    submits = [e for e in entries if e.operation == "submit"]
    cell.submits = len(submits)
    cell.accepted = sum(1 for e in submits if e.http_status == 200)


async def run_matrix(
    interface: str, root: Path, work: list[tuple[str, Fault]], *, parallel: int = 4
) -> list[Cell]:
    """The cells of one interface, ``parallel`` at a time, in the order given."""
    runner = run_mcp_cell if interface == "mcp" else run_cli_cell
    cells: list[Cell | None] = [None] * len(work)
    limiter = anyio.CapacityLimiter(parallel)

    async def one(index: int, provider: str, fault: Fault) -> None:
        async with limiter:
            folder = root / f"{interface}-{index:02d}"
            folder.mkdir()
            try:
                cells[index] = await runner(provider, fault, folder)
            except Exception as exc:  # a crash is a failed cell, not a lost table
                cell = Cell(interface, provider, fault.spec or "none", fault.expected_for(provider))
                cell.problems.append(f"the run raised {exc!r}"[:200])
                cells[index] = cell

    async with anyio.create_task_group() as group:
        for index, (provider, fault) in enumerate(work):
            group.start_soon(one, index, provider, fault)
    return [c for c in cells if c is not None]
