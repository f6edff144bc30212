"""Issue 17: the MCP Tasks extension (``io.modelcontextprotocol/tasks``) on protocol 2026-07-28.

The server runs as a real process (the MCP server over stdio, or ``--http``); the provider is
a sandbox in this test process, so its request log shows every submit, poll and cancel. The
client declares the extension (``tasks_client.TasksClientExtension``) and reads the raw answers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import check_output, child_env, free_port, stop, text_of, wait_for_port
from mcp_types import CallToolResult, ImageContent, ResourceLink
from tasks_client import (
    CreatedTask,
    ListRequest,
    ResultRequest,
    TaskIdParams,
    TasksClientExtension,
    cancel_task,
    follow,
    get_task,
    submit,
    update_task,
)

from videogen.ledger import Ledger
from videogen.sandbox import RunningSandbox, SandboxOptions, serve_in_thread

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "a paper boat on a pond", "provider": "volcengine"}
TOKENS = ("tok-tasks-alice-" + "a" * 32, "tok-tasks-bob-" + "b" * 32)
UNKNOWN_TASK = -32602
MISSING_CAPABILITY = -32021
METHOD_NOT_FOUND = -32601

Connect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """The provider, outliving every server process of a test. Jobs take 3 s by default."""
    with serve_in_thread(SandboxOptions(job_seconds=3.0)) as running:
        yield running


@pytest.fixture
def env(tmp_path: Path, sandbox: RunningSandbox) -> dict[str, str]:
    """One data folder for every server process of a test; polls every 0.2 s."""
    return child_env(
        tmp_path,
        **sandbox.env(),
        JIMENG_VIDEO_POLL_INTERVAL="0.2",
        VIDEOGEN_HTTP_TOKEN=",".join(TOKENS),
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        stop(process)


@pytest.fixture
def connect(env: dict[str, str], processes: list[subprocess.Popen[bytes]]) -> Connect:
    """``connect(transport, token=..., tasks=True, mode="auto")``: a client of a new server
    process on the test's data folder (stdio: one process per client; HTTP: one per call)."""

    @asynccontextmanager
    async def open_client(
        transport: str, *, token: str = TOKENS[0], tasks: bool = True, mode: str = "auto"
    ) -> AsyncIterator[Client]:
        extensions = [TasksClientExtension()] if tasks else []
        if transport == "stdio":
            params = StdioServerParameters(
                command=sys.executable, args=["-m", "videogen.mcp_server"], env=env
            )
            async with Client(params, extensions=extensions, mode=mode) as client:
                yield client
            return
        url = _spawn_http(env, processes)
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(
                streamable_http_client(url, http_client=http),
                extensions=extensions,
                mode=mode,
            ) as client,
        ):
            yield client

    return open_client


def _spawn_http(env: dict[str, str], processes: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "videogen.mcp_server", "--http", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    processes.append(process)
    wait_for_port(port, process)
    return f"http://127.0.0.1:{port}/mcp"


async def _created(client: Client, **arguments: Any) -> CreatedTask:
    answer = await submit(client, {**PROMPT, **arguments})
    assert isinstance(answer, CreatedTask), text_of(answer)
    return answer


async def _refusal(call: Any) -> MCPError:
    with pytest.raises(MCPError) as raised:
        await call
    return raised.value


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Poll state held by another thread or process (the sandbox's log, the ledger): there is
    no event to wait on."""
    with anyio.fail_after(20):
        for _ in iter(condition, True):
            await anyio.sleep(0.05)
    assert condition(), what


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_tasks_client_gets_a_task_at_once_and_the_saved_video_block_when_done(
    connect: Connect, sandbox: RunningSandbox, transport: str
) -> None:
    async with connect(transport) as client:
        assert client.server_capabilities.extensions["io.modelcontextprotocol/tasks"] == {}
        created = await _created(client)
        received = time.time()
        [submitted] = [e for e in sandbox.log.entries if e.operation == "submit"]
        assert received - submitted.at < 1.0, "the task came later than 1 s after the submit"
        assert created.status == "working" and created.task_id.startswith("vg_")
        assert created.ttl_ms is None
        assert created.poll_interval_ms == 200  # the engine polls every 0.2 s here

        states = await follow(client, created.task_id)
        messages = [s.status_message or "" for s in states]
        assert [s.status for s in states[:-1]] == ["working"] * (len(states) - 1), messages
        assert any(m.startswith("Queued at volcengine") for m in messages), messages
        assert any(m.startswith("Rendering at volcengine") for m in messages), messages
        done = states[-1]
        assert done.status == "completed" and (done.status_message or "").startswith("Saved to")

        result = done.tool_result()
        text = text_of(result)
        for line in ("**Generated Video:**", "**Generation Info:**", "- Prompt: a paper boat"):
            assert line in text, text
        assert any(isinstance(c, ImageContent) for c in result.content), "no poster"
        [link] = [c for c in result.content if isinstance(c, ResourceLink)]
        assert str(link.uri) == f"videogen://videos/{created.task_id}"
        structured = await check_output(client, "generate_video", result)
        assert structured["status"] == "completed"
        assert await anyio.Path(structured["local_path"]).is_file()

        assert await update_task(client, created.task_id) is not None  # an empty ack
        for request in (ResultRequest(params=TaskIdParams(task_id=created.task_id)),
                        ListRequest(params=TaskIdParams(task_id=""))):  # fmt: skip
            refused = await _refusal(client.session.send_request(request, CreatedTask))
            assert refused.code == METHOD_NOT_FOUND
    assert sandbox.log.count(operation="submit") == 1


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_bad_input_is_refused_at_once_without_a_task_or_a_bill(
    connect: Connect, sandbox: RunningSandbox, transport: str
) -> None:
    async with connect(transport) as client:
        answer = await submit(client, {**PROMPT, "image": "/no/such/photo.png"})
        assert isinstance(answer, CallToolResult) and answer.is_error
        assert "/no/such/photo.png" in text_of(answer)
    assert sandbox.log.count(operation="submit") == 0


async def test_a_new_server_process_answers_for_a_task_of_one_that_stopped(
    connect: Connect, sandbox: RunningSandbox, processes: list[subprocess.Popen[bytes]]
) -> None:
    async with connect("http") as first:
        created = await _created(first)
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
    # That server is gone; a new one, over the other transport, takes it from the ledger.
    async with connect("stdio") as second:
        states = await follow(second, created.task_id)
        assert states[-1].status == "completed", states[-1]
        assert "**Generated Video:**" in text_of(states[-1].tool_result())
    assert sandbox.log.count(operation="submit") == 1


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_cancelling_a_queued_task_cancels_it_at_the_provider_and_it_stays_cancelled(
    connect: Connect, sandbox: RunningSandbox, env: dict[str, str], transport: str
) -> None:
    sandbox.state.options.job_seconds = 60.0  # queued for its first 20 s
    async with connect(transport) as client:
        created = await _created(client)
        assert await cancel_task(client, created.task_id) is not None  # an empty ack
        [cancel] = [e for e in sandbox.log.entries if e.operation == "cancel"]
        assert cancel.http_status == 200 and cancel.code in (10000, "10000")
        state = await get_task(client, created.task_id)
        assert state.status == "cancelled" and state.result is None
        assert "nothing was billed" in (state.status_message or "")

        # The next poll finds the task gone at the provider ("not found"): it must stay
        # cancelled, not become expired. The watcher releases the task's lease when it stops.
        def polled_after_cancel() -> bool:
            return any(e.operation == "poll" and e.at > cancel.at for e in sandbox.log.entries)

        await _until(polled_after_cancel, "a poll after the cancel")
        ledger = Ledger.in_dir(Path(env["VIDEOGEN_DATA_DIR"]))
        await _until(lambda: ledger.lease(created.task_id).holder is None, "the watcher stops")
        assert (await get_task(client, created.task_id)).status == "cancelled"
        checked = await client.call_tool("check_task", {"task_id": created.task_id})
        facts = checked.structured_content or {}
        assert (facts["status"], facts["error_kind"]) == ("failed", "cancelled"), text_of(checked)
        assert await cancel_task(client, created.task_id) is not None  # again: still an ack
    assert sandbox.log.count(operation="cancel") == 1


async def test_cancelling_a_task_the_provider_is_rendering_says_it_may_be_billed_and_saves_it(
    connect: Connect, sandbox: RunningSandbox
) -> None:
    async with connect("stdio") as client:
        created = await _created(client)
        states = await follow_until(client, created.task_id, "Rendering")
        assert states.status == "working"
        await cancel_task(client, created.task_id)
        state = await get_task(client, created.task_id)
        assert state.status == "cancelled"
        assert "may still be billed" in (state.status_message or "")
        checked = await client.call_tool(
            "check_task", {"task_id": created.task_id, "wait_seconds": 20}
        )
        assert (checked.structured_content or {})["status"] == "completed", text_of(checked)
        assert (await get_task(client, created.task_id)).status == "cancelled"
    assert sandbox.log.count(operation="cancel") == 0  # Volcengine cancels queued tasks only


async def follow_until(client: Client, task_id: str, message: str) -> Any:
    with anyio.fail_after(20):
        while True:
            state = await get_task(client, task_id)
            if (state.status_message or "").startswith(message) or state.status != "working":
                return state
            await anyio.sleep(0.1)


async def test_another_token_cannot_see_or_cancel_a_task(
    connect: Connect, sandbox: RunningSandbox
) -> None:
    sandbox.state.options.job_seconds = 60.0
    async with connect("http", token=TOKENS[0]) as alice:
        created = await _created(alice)
        async with connect("http", token=TOKENS[1]) as bob:
            unknown = await _refusal(get_task(bob, "vg_000000000000"))
            for call in (get_task, cancel_task, update_task):
                refused = await _refusal(call(bob, created.task_id))
                assert refused.code == UNKNOWN_TASK == unknown.code
                assert refused.message.replace(created.task_id, "?") == unknown.message.replace(
                    "vg_000000000000", "?"
                )
        assert (await get_task(alice, created.task_id)).status == "working"
    assert sandbox.log.count(operation="cancel") == 0


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_without_the_extension_keeps_the_bounded_wait(
    connect: Connect, sandbox: RunningSandbox, transport: str, mode: str
) -> None:
    sandbox.state.options.job_seconds = 1.0
    tasks = mode == "legacy"  # a legacy client may carry the extension: 2025-11-25 has no tasks
    async with connect(transport, tasks=tasks, mode=mode) as client:
        result = await client.call_tool("generate_video", PROMPT)
        assert (result.structured_content or {})["status"] == "completed", text_of(result)
        assert "**Generated Video:**" in text_of(result)
        task_id = (result.structured_content or {})["task_id"]
        refused = await _refusal(get_task(client, task_id))
        assert refused.code == (MISSING_CAPABILITY if mode == "auto" else METHOD_NOT_FOUND)


async def test_a_generation_that_fails_is_a_completed_task_whose_result_is_an_error(
    connect: Connect, sandbox: RunningSandbox
) -> None:
    sandbox.set_faults("fail_after_generating:1")
    async with connect("stdio") as client:
        created = await _created(client)
        done = (await follow(client, created.task_id))[-1]
        assert done.status == "completed" and done.error is None
        result = done.tool_result()
        assert result.is_error, text_of(result)
        assert (result.structured_content or {})["status"] == "failed"
        assert "failed" in (done.status_message or "")
