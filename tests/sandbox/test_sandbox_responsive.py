"""The sandbox shares a process and an event loop with the program that embeds it (the MCP server,
the CLI): its work must not slow that program down (issue 14 item 15)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx2
import pytest

from videogen.sandbox import SandboxOptions, serve
from videogen.sandbox.render import RENDER_WORKERS, Renderer, RenderSpec

pytestmark = pytest.mark.anyio


async def test_renders_run_in_a_bounded_pool_of_their_own_and_share_identical_requests(
    tmp_path: Path,
) -> None:
    """With the program's own thread pool full, renders still finish (they never borrow it); at
    most RENDER_WORKERS encode at once; identical requests share one encode."""
    renderer = Renderer(tmp_path)
    limiter = anyio.to_thread.current_default_thread_limiter()
    saved, limiter.total_tokens = limiter.total_tokens, 1
    release = threading.Event()
    occupied = anyio.Event()

    def occupy() -> None:
        anyio.from_thread.run_sync(occupied.set)
        release.wait()

    try:
        async with anyio.create_task_group() as program:
            program.start_soon(anyio.to_thread.run_sync, occupy)
            try:
                await occupied.wait()  # the program's thread pool is now full
                with anyio.fail_after(20):
                    async with anyio.create_task_group() as downloads:
                        for i in range(6):
                            spec = RenderSpec("text", 320, 180, 24, text=f"task {i}")
                            downloads.start_soon(renderer.render, spec)
                        for _ in range(6):
                            same = RenderSpec("text", 320, 180, 24, text="the same task")
                            downloads.start_soon(renderer.render, same)
            finally:
                release.set()  # lets the program's thread, and so its task group, finish
    finally:
        limiter.total_tokens = saved
    assert renderer.renders == 7
    assert 1 <= renderer.peak_encoding <= RENDER_WORKERS


async def test_an_asset_request_without_the_process_key_is_refused() -> None:
    async with serve(SandboxOptions(job_seconds=1)) as sb, httpx2.AsyncClient() as http:
        bare = await http.get(f"{sb.url}/assets/image/640x480.png")
        wrong = await http.get(f"{sb.url}/assets/image/640x480.png?key=guess")
        keyed = await http.get(sb.asset_url("/assets/image/640x480.png"))
    assert bare.status_code == 403 and wrong.status_code == 403
    assert keyed.status_code == 200 and keyed.content.startswith(b"\x89PNG")
