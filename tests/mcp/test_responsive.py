"""The MCP server keeps answering while the sandbox it embeds is busy (issue 14 item 15)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp_helpers import settings_env

from videogen.config import Settings
from videogen.mcp_server import create_server
from videogen.sandbox import SandboxOptions, serve

pytestmark = pytest.mark.anyio


async def test_list_tasks_answers_quickly_while_the_sandbox_draws_and_renders(
    tmp_path: Path,
) -> None:
    """Concurrent expensive sandbox requests (large test pictures) in the same process and event
    loop: list_tasks keeps answering within a small multiple of its idle time (relative, so a
    slow machine does not fail it; each picture drawn on the loop stalled it for most of a
    second)."""
    async with serve(SandboxOptions(job_seconds=1)) as sb:
        settings = Settings.from_env({**settings_env(tmp_path), **sb.env()})
        async with Client(create_server(settings, warm_up_after=None)) as client:

            async def list_tasks() -> float:
                started = time.perf_counter()
                result = await client.call_tool("list_tasks", {})
                assert not result.is_error
                return time.perf_counter() - started

            await list_tasks()
            idle = [await list_tasks() for _ in range(9)]
            done = anyio.Event()
            loaded: list[float] = []

            async def draw_many() -> None:
                async with httpx2.AsyncClient(timeout=120) as http, anyio.create_task_group() as tg:
                    for i in range(4):
                        url = sb.asset_url(f"/assets/image/1536x{1536 - 8 * i}.png")
                        tg.start_soon(http.get, url)
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(draw_many)
                while not done.is_set():
                    loaded.append(await list_tasks())
    assert len(loaded) >= 3, loaded
    # The mean counts every wait: one call stuck behind a picture drawn on the loop weighs in.
    assert statistics.mean(loaded) < 20 * statistics.median(idle) + 0.01, (idle, loaded)
