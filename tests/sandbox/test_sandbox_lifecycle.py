"""serve() starts at once, stops promptly, and lets the caller's errors through unchanged."""

from __future__ import annotations

import time

import anyio
import httpx2
import pytest

from videogen.sandbox import RunningSandbox, serve

pytestmark = pytest.mark.anyio


async def test_an_error_in_the_block_comes_out_as_itself_and_the_port_is_closed() -> None:
    """A ValueError raised inside `async with serve()` is a ValueError outside (no group)."""
    url = ""
    with pytest.raises(ValueError, match="boom"):
        async with serve() as sb:
            url = sb.url
            async with httpx2.AsyncClient() as client:
                assert (await client.get(f"{url}/files/bench-3.bin")).content
            raise ValueError("boom")
    async with httpx2.AsyncClient() as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(f"{url}/files/bench-3.bin")


async def test_a_cancelled_caller_stops_the_sandbox_without_hanging() -> None:
    """Cancelling the scope around serve() ends it within a second."""
    started = time.monotonic()
    with anyio.move_on_after(0.3):
        async with serve():
            await anyio.sleep_forever()
    assert time.monotonic() - started < 2


async def test_start_and_stop_are_quick_and_the_endpoints_point_at_the_sandbox() -> None:
    """Well under a second each way; endpoints()/env() carry the base URLs and fake keys."""
    started = time.monotonic()
    async with serve() as sb:
        assert isinstance(sb, RunningSandbox)
        assert time.monotonic() - started < 1
        endpoints = sb.endpoints()
        assert endpoints["volcengine"].base_url == sb.url == sb.volcengine_url
        assert endpoints["tokenops"].base_url == f"{sb.url}/tokenops/v1"
        assert endpoints["jenius"].base_url == f"{sb.url}/jenius/api"
        assert all(e.configured for e in endpoints.values())
        assert sb.env()["JIMENG_VIDEO_API_URL"] == sb.url
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 1
