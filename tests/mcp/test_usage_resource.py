"""The spending guard over MCP (issue 20): per-token limits, and ``videogen://usage`` scoped to
the calling token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import TextResourceContents
from mcp_helpers import text_of

from videogen.mcp_server import owner_of

#: Two clients, each with its own token (tokens have at least 32 characters).
ALICE = "tok-a-0123456789abcdefghijklmnopqrstu"
BOB = "tok-b-0123456789abcdefghijklmnopqrstu"

pytestmark = pytest.mark.anyio


async def usage_of(client: Client, uri: str = "videogen://usage") -> dict[str, Any]:
    read = await client.read_resource(uri)
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    report: dict[str, Any] = json.loads(content.text)
    return report


async def test_each_token_has_its_own_limit_and_sees_only_its_own_usage(spawn_http: Any) -> None:
    port, _ = spawn_http(
        "0.0.0.0",
        VIDEOGEN_HTTP_TOKEN=f"{ALICE},{BOB}",
        VIDEOGEN_LIMIT_OWNER_VIDEOS_PER_DAY="1",
    )
    url = f"http://127.0.0.1:{port}/mcp"

    @asynccontextmanager
    async def connect(token: str) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            yield client

    async with connect(ALICE) as alice:
        made = await alice.call_tool(
            "generate_video", {"prompt": "alice's boat", "wait_seconds": 0}
        )
        refused = await alice.call_tool("generate_video", {"prompt": "another", "wait_seconds": 0})
        alices = await usage_of(alice, "videogen://usage?days=2")
    async with connect(BOB) as bob:
        allowed = await bob.call_tool("generate_video", {"prompt": "bob's boat", "wait_seconds": 0})
        bobs = await usage_of(bob)

    assert not made.is_error and not allowed.is_error, text_of(made)
    assert "- Usage: today: 1 video, 5 s; limits: 1 of 1 videos today (this token)" in text_of(made)
    assert refused.is_error
    assert "VIDEOGEN_LIMIT_OWNER_VIDEOS_PER_DAY=1" in text_of(refused)
    assert "for this token; 1 video already billed today" in text_of(refused)
    assert alices["days"] == 2 and alices["videos"] == 1
    assert [r["owner"] for r in alices["rows"]] == [owner_of(ALICE)]
    assert bobs["videos"] == 1 and [r["owner"] for r in bobs["rows"]] == [owner_of(BOB)]
    assert bobs["limits"] == {"VIDEOGEN_LIMIT_OWNER_VIDEOS_PER_DAY": 1}
