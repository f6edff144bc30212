"""Issue 7, HTTP transport: what tests/mcp/test_transports.py does not cover yet.

Covered there: 421 for a foreign Host, 403 for a foreign Origin, 401 without/with a wrong token,
and list_tasks/check_task isolation between two tokens. Added here: the *resources*
(``videogen://tasks/{id}``, ``videogen://videos/{id}``) are isolated too, a token's own resources
work, the token never appears in the task JSON, and a missing token is refused on every path.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .evidence_helpers import clean_env

pytestmark = pytest.mark.anyio

TOKENS = ("tok-alice-evidence".ljust(32, "a"), "tok-bob-evidence".ljust(32, "b"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``jimeng-videogen-mcp --http`` on 0.0.0.0, two tokens, its embedded sandbox (1 s jobs)."""
    port = _free_port()
    env = clean_env(
        tmp_path_factory.mktemp("http"),
        VIDEOGEN_HTTP_TOKEN=",".join(TOKENS),
        VIDEOGEN_SANDBOX_JOB_SECONDS="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "videogen.mcp_server", "--http", "--host", "0.0.0.0",
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the server exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server never listened"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def connect(url: str, token: str) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_one_token_cannot_read_another_tokens_task_or_video_resources(
    server_url: str,
) -> None:
    alice, bob = TOKENS
    async with connect(server_url, alice) as client:
        made = await client.call_tool("generate_video", {"prompt": "alice's private boat"})
        assert isinstance(made.structured_content, dict), made
        task_id = made.structured_content["task_id"]
        assert made.structured_content["status"] == "completed"
        own_task = await client.read_resource(f"videogen://tasks/{task_id}")
        own_video = await client.read_resource(f"videogen://videos/{task_id}")
    task_json = getattr(own_task.contents[0], "text", "")
    assert task_id in task_json and alice not in task_json and "token:" not in task_json
    assert getattr(own_video.contents[0], "blob", "")

    async with connect(server_url, bob) as client:
        for uri in (f"videogen://tasks/{task_id}", f"videogen://videos/{task_id}"):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert task_id in str(refused.value)  # "not found", the same as a made-up id
            assert "alice" not in str(refused.value)
        listed = await client.call_tool("list_tasks", {})
        assert isinstance(listed.structured_content, dict)
        assert listed.structured_content["tasks"] == []
        # the same request from bob is bob's own task, not alice's (no cross-token dedupe)
        again = await client.call_tool(
            "generate_video", {"prompt": "alice's private boat", "wait_seconds": 0}
        )
        assert isinstance(again.structured_content, dict)
        assert again.structured_content["task_id"] != task_id


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_every_method_without_a_token_is_refused(server_url: str, method: str) -> None:
    async with httpx2.AsyncClient() as http:
        answer = await http.request(
            method, server_url, headers={"Accept": "application/json, text/event-stream"}
        )
    assert answer.status_code == 401
