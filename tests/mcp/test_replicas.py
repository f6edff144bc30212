"""Issue 19, serving many: ``serve --http`` as several replicas on one ledger, behind a load
balancer without sticky sessions.

The replicas are real server processes on one data folder (the SQLite ledger, shared between
processes through its leases); the provider is a sandbox in this test process, so its request
log shows every submit. A replica is stopped with SIGTERM (gracefully: its calls answer, its
leases are handed back) or SIGKILL (its tasks are taken over by a replica that keeps running).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import INITIALIZE, child_env, free_port, stop, text_of, wait_for_port
from mcp_types import CallToolResult
from starlette.requests import Request
from tasks_client import CreatedTask, TasksClientExtension, follow, submit

from buckets import Bucket
from videogen.ledger import Lease, Ledger
from videogen.mcp_serving import Replica
from videogen.models import Task
from videogen.sandbox import RunningSandbox, SandboxOptions, serve_in_thread

pytestmark = pytest.mark.anyio

PROMPT = {"prompt": "a lighthouse in the rain", "provider": "volcengine"}
TOK_A, TOK_B = "tok-replicas-a".ljust(40, "a"), "tok-replicas-b".ljust(40, "b")
LEGACY = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": "2025-11-25",
}


# -- replicas, a balancer, clients --------------------------------------------------------------


@dataclass
class Replicas:
    """Starts replica processes on one environment (one data folder); stops them at the end."""

    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]]

    def start(self, **extra_env: str) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "videogen", "serve", "--http", "--port", str(port)],
            env={**self.env, **extra_env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        wait_for_port(port, process)
        return port, process


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """The provider, outliving every replica of a test. Jobs take 3 s."""
    with serve_in_thread(SandboxOptions(job_seconds=3.0)) as running:
        yield running


@contextmanager
def replicas_on(env: dict[str, str]) -> Iterator[Replicas]:
    """Replicas on ``env``, each ended at the end (``mcp_helpers.stop``)."""
    started = Replicas(env, [])
    try:
        yield started
    finally:
        for process in started.processes:
            stop(process)


@pytest.fixture
def replicas(tmp_path: Path, sandbox: RunningSandbox) -> Iterator[Replicas]:
    with replicas_on(child_env(tmp_path, **sandbox.env(), JIMENG_VIDEO_POLL_INTERVAL="0.2")) as r:
        yield r


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


@asynccontextmanager
async def connected(
    url: str,
    *,
    token: str | None = None,
    mode: str = "auto",
    tasks: bool = False,
    one_request_per_connection: bool = False,
) -> AsyncIterator[Client]:
    """A client of ``url``; ``one_request_per_connection`` makes every request a new TCP
    connection, so a balancer that picks a replica per connection spreads them all."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx2.Limits(max_keepalive_connections=0 if one_request_per_connection else 20)
    extensions = [TasksClientExtension()] if tasks else []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60, limits=limits) as http,
        Client(
            streamable_http_client(url, http_client=http), mode=mode, extensions=extensions
        ) as client,
    ):
        yield client


@asynccontextmanager
async def round_robin(ports: list[int]) -> AsyncIterator[tuple[str, list[int]]]:
    """A load balancer without sticky sessions: each new TCP connection goes to the next
    replica. Yields its MCP URL and how many connections each replica got."""
    served = [0] * len(ports)
    turns = itertools.count()

    async def relay(downstream: SocketStream) -> None:
        index = next(turns) % len(ports)
        served[index] += 1
        async with (
            downstream,
            await anyio.connect_tcp("127.0.0.1", ports[index]) as upstream,
            anyio.create_task_group() as pipes,
        ):

            async def one_way(source: SocketStream, sink: SocketStream) -> None:
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    async for chunk in source:
                        await sink.send(chunk)
                pipes.cancel_scope.cancel()  # one side closed: the connection is over

            pipes.start_soon(one_way, downstream, upstream)
            pipes.start_soon(one_way, upstream, downstream)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, relay)
        try:
            yield url_of(port), served
        finally:
            group.cancel_scope.cancel()


async def until(condition: Callable[[], bool], what: str, within: float = 30) -> None:
    """Poll state held by another thread or process (the sandbox's log, the ledger): there is
    no event to wait on."""
    with anyio.fail_after(within):
        for _ in iter(condition, True):
            await anyio.sleep(0.05)
    assert condition(), what


def ledger_task(data_dir: Path, task_id: str) -> tuple[Task, Lease]:
    ledger = Ledger.in_dir(data_dir)
    try:
        return ledger.get(task_id), ledger.lease(task_id)
    finally:
        ledger.close()


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


# -- stateless: any replica answers any request -------------------------------------------------


async def test_no_session_is_handed_out_and_a_call_to_another_replica_needs_none(
    replicas: Replicas,
) -> None:
    """A 2025-11-25 client initializes on replica A and sends tools/call to replica B with the
    headers A gave it: B answers (the SDK's default, sessions, would answer 404)."""
    port_a, _ = replicas.start()
    port_b, _ = replicas.start()
    async with httpx2.AsyncClient(timeout=30) as http:
        opened = await http.post(url_of(port_a), json=INITIALIZE, headers=LEGACY)
        assert opened.status_code == 200
        assert "mcp-session-id" not in opened.headers
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(url_of(port_b), json=initialized, headers=LEGACY)).is_success
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "list_tasks", "arguments": {}}}  # fmt: skip
        answered = await http.post(url_of(port_b), json=call, headers=LEGACY)
    assert answered.status_code == 200, answered.text
    assert '"isError":false' in answered.text.replace(" ", "")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_behind_a_balancer_without_sticky_sessions_gets_its_video_and_progress(
    replicas: Replicas, sandbox: RunningSandbox, mode: str
) -> None:
    """Every request on a new connection, each connection to the next replica: initialize,
    tools/list and generate_video land on different replicas; progress still arrives."""
    ports = [replicas.start()[0] for _ in range(2)]
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with (
        round_robin(ports) as (url, served),
        connected(url, mode=mode, one_request_per_connection=True) as client,
    ):
        assert "generate_video" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool(
            "generate_video", {**PROMPT, "wait_seconds": 30}, progress_callback=on_progress
        )
        checked = await client.call_tool("check_task", {"task_id": structured(result)["task_id"]})
    assert structured(result)["status"] == "completed"
    assert structured(checked)["status"] == "completed"
    assert progress and all(count > 0 for count in served), served
    assert sandbox.log.count(operation="submit") == 1


async def test_the_tasks_extension_follows_a_task_across_replicas(
    replicas: Replicas, sandbox: RunningSandbox
) -> None:
    """tools/call answers with a task on one replica; tasks/get on the others follow it."""
    ports = [replicas.start()[0] for _ in range(2)]
    async with (
        round_robin(ports) as (url, served),
        connected(url, tasks=True, one_request_per_connection=True) as client,
    ):
        created = await submit(client, PROMPT)
        assert isinstance(created, CreatedTask), created
        states = await follow(client, created.task_id)
    assert states[-1].status == "completed"
    assert structured(states[-1].tool_result())["task_id"] == created.task_id
    assert all(count > 1 for count in served), served
    assert sandbox.log.count(operation="submit") == 1


# -- health ---------------------------------------------------------------------------------------


async def test_health_says_ok_with_the_version_and_needs_no_token(replicas: Replicas) -> None:
    port, _ = replicas.start(VIDEOGEN_HTTP_TOKEN=TOK_A)
    async with httpx2.AsyncClient(timeout=30) as http:
        health = await http.get(f"http://127.0.0.1:{port}/healthz")
        refused = await http.post(url_of(port), json=INITIALIZE, headers=LEGACY)
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "version": health.json()["version"], "ledger": True}
    assert health.headers["cache-control"] == "no-store"
    assert TOK_A not in health.text
    assert refused.status_code == 401  # the MCP endpoint still wants the token


async def test_health_is_503_when_the_ledger_cannot_be_opened(
    replicas: Replicas, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "data-is-a-file"
    not_a_folder.write_text("")
    port, _ = replicas.start(VIDEOGEN_DATA_DIR=str(not_a_folder))
    async with httpx2.AsyncClient(timeout=30) as http:
        health = await http.get(f"http://127.0.0.1:{port}/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable" and health.json()["ledger"] is False
    assert str(tmp_path) not in health.text  # the reason goes to the log, not to the caller


async def test_health_is_503_once_the_replica_is_stopping() -> None:
    replica = Replica()
    replica.drain()
    answer = await replica.health(Request({"type": "http", "method": "GET", "headers": []}))
    assert answer.status_code == 503
    assert json.loads(bytes(answer.body))["status"] == "stopping"


# -- stopping: SIGTERM hands the tasks over, SIGKILL has them taken over --------------------------


async def test_sigterm_answers_the_calls_in_flight_hands_the_leases_back_and_exits_0(
    replicas: Replicas, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Two calls wait on their tasks when SIGTERM comes: each answers with its pending task,
    the process exits 0 within seconds with no lease left, and a new replica finishes both
    (one submit each, one file each)."""
    port, process = replicas.start()
    answers: list[CallToolResult] = []

    async def generate(prompt: str) -> None:
        async with connected(url_of(port)) as client:
            await client.list_tools()  # as hosts do first (the SDK checks results against it)
            arguments = {**PROMPT, "prompt": prompt, "wait_seconds": 40}
            answers.append(await client.call_tool("generate_video", arguments))

    async with anyio.create_task_group() as group:
        for prompt in ("a boat at dawn", "a boat at dusk"):
            group.start_soon(generate, prompt)
        await until(lambda: sandbox.log.count(operation="poll") >= 2, "both tasks polled")
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
    code = await anyio.to_thread.run_sync(lambda: process.wait(timeout=15))
    assert code == 0, process.stderr.read() if process.stderr else ""
    assert time.monotonic() - signalled < 8

    pending = [structured(answer) for answer in answers]
    assert [p["status"] in ("queued", "running") for p in pending] == [True, True], pending
    for data in pending:
        task, lease = ledger_task(tmp_path / "data", data["task_id"])
        assert not task.terminal and lease == Lease(None, None)

    other, _ = replicas.start()
    async with connected(url_of(other)) as client:
        for data in pending:
            done = await client.call_tool(
                "check_task", {"task_id": data["task_id"], "wait_seconds": 40}
            )
            assert structured(done)["status"] == "completed"
    assert sandbox.log.count(operation="submit") == 2
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2


async def test_a_replica_killed_mid_task_has_it_finished_by_a_running_one(
    replicas: Replicas, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """Replica A takes a task and is SIGKILLed while polling; replica B, running all along and
    never asked about the task, finishes it within a lease length (2 s here) and a round: one
    submit, one file."""
    lease = {"VIDEOGEN_LEASE_SECONDS": "2"}
    port_a, process_a = replicas.start(**lease)
    port_b, _ = replicas.start(**lease)
    async with httpx2.AsyncClient(timeout=30) as http:  # B's engine runs from its first check
        assert (await http.get(f"http://127.0.0.1:{port_b}/healthz")).status_code == 200
    async with connected(url_of(port_a)) as client:
        made = await client.call_tool("generate_video", {**PROMPT, "wait_seconds": 0})
    task_id = structured(made)["task_id"]
    await until(lambda: sandbox.log.count(operation="poll") >= 1, "A polls the task")
    process_a.kill()
    process_a.wait()
    killed_at = time.monotonic()

    def finished() -> bool:
        return ledger_task(tmp_path / "data", task_id)[0].status == "completed"

    await until(finished, "B finishes the task", within=30)
    # the job's 3 s had mostly run: B took over after at most 2 s + 0.5 s, then polled and saved
    assert time.monotonic() - killed_at < 12
    assert sandbox.log.count(operation="submit") == 1
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 1


# -- many replicas, many callers (slow) ----------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """Where the replicas keep what they share. Today: one SQLite data folder and one output
    folder on this host; a PostgreSQL ledger and an S3 bucket are further parameters."""

    name: str
    env: Callable[[Path], dict[str, str]]


SQLITE = Backend(
    "sqlite",
    lambda root: {
        "VIDEOGEN_DATA_DIR": str(root / "data"),
        "VIDEOGEN_OUTPUT_DIR": str(root / "videos"),
    },
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", [SQLITE], ids=lambda b: b.name)
async def test_three_replicas_give_twenty_identical_calls_one_submit_and_answer_per_owner(
    tmp_path: Path, backend: Backend
) -> None:
    """3 replicas, one ledger, one sandbox allowing 2 jobs at once: 20 identical generate_video
    calls spread over the replicas make exactly one submit; check_task on any replica answers
    its owner and tells another token the task does not exist."""
    provider = SandboxOptions(job_seconds=2.0, faults=("concurrency:2",))
    with serve_in_thread(provider) as sandbox:
        tokens = {"VIDEOGEN_HTTP_TOKEN": f"{TOK_A},{TOK_B}"}
        env = child_env(tmp_path, **sandbox.env(), JIMENG_VIDEO_POLL_INTERVAL="0.2", **tokens)
        env.update(backend.env(tmp_path))
        with replicas_on(env) as replicas:
            ports = [replicas.start()[0] for _ in range(3)]
            task_ids = await twenty_identical_calls(ports)
            assert len(task_ids) == 20 and len(set(task_ids)) == 1, task_ids
            for index, port in enumerate(ports):
                wait = 40 if index == 0 else 0  # the first waits for the video
                async with connected(url_of(port), token=TOK_A) as owner:
                    mine = await owner.call_tool(
                        "check_task", {"task_id": task_ids[0], "wait_seconds": wait}
                    )
                assert structured(mine)["status"] == "completed"
                async with connected(url_of(port), token=TOK_B) as stranger:
                    theirs = await stranger.call_tool("check_task", {"task_id": task_ids[0]})
                assert theirs.is_error and "No task" in text_of(theirs), text_of(theirs)
        assert sandbox.log.count(operation="submit") == 1
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 1


async def twenty_identical_calls(ports: list[int]) -> list[str]:
    """The same generate_video from one token, 20 times at once, spread over ``ports``."""
    task_ids: list[str] = []

    async def generate(port: int) -> None:
        async with connected(url_of(port), token=TOK_A) as client:
            answer = await client.call_tool("generate_video", {**PROMPT, "wait_seconds": 0})
        task_ids.append(structured(answer)["task_id"])

    async with anyio.create_task_group() as group:
        for index in range(20):
            group.start_soon(generate, ports[index % len(ports)])
    return task_ids


# -- a team deployment: PostgreSQL, a bucket, three replicas (slow) ------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_team_deployment_on_postgres_and_a_bucket_bills_once_queues_and_survives_a_kill(
    tmp_path: Path, postgres_url: str, bucket: Bucket
) -> None:
    """Issue 19's team: one PostgreSQL, one bucket, three replicas that share no disk, a
    provider account allowing 2 jobs at once. 20 identical calls make one submit; 60 different
    calls spread over the replicas all end saved in the bucket with no 50430 reaching anyone
    (the account-wide queue holds the third job back); a replica SIGKILLed mid-download has its
    task finished by another, with one submit and one object; any replica answers check_task
    for its owner and nobody else."""
    from videogen.ledger.postgres import PostgresLedger

    provider = SandboxOptions(job_seconds=1.0, faults=("concurrency:2",))
    with (
        serve_in_thread(provider) as sandbox,
        contextlib.closing(PostgresLedger(postgres_url)) as ledger,
    ):
        env = child_env(
            tmp_path,
            **sandbox.env(),
            **bucket.env(),
            JIMENG_VIDEO_POLL_INTERVAL="0.2",
            VIDEOGEN_HTTP_TOKEN=f"{TOK_A},{TOK_B}",
            VIDEOGEN_DATABASE_URL=postgres_url,
            VIDEOGEN_MAX_CONCURRENT="2",
            VIDEOGEN_LEASE_SECONDS="3",
        )
        with replicas_on(env) as replicas:
            started = [
                replicas.start(
                    VIDEOGEN_DATA_DIR=str(tmp_path / f"replica{n}" / "data"),
                    VIDEOGEN_OUTPUT_DIR=str(tmp_path / f"replica{n}" / "videos"),
                )
                for n in range(3)
            ]
            ports = [port for port, _ in started]

            # 20 identical calls, one submit.
            same = await twenty_identical_calls(ports)
            assert len(same) == 20 and len(set(same)) == 1, same

            # 60 different calls spread over the replicas: all saved, none refused for the limit.
            different = await calls_at_once(ports, [f"a paper boat, take {n}" for n in range(60)])
            wanted = {same[0], *different}
            await until(lambda: completed(ledger, wanted), "all 61 tasks saved", within=240)
            assert sandbox.log.count(operation="submit", code=50430) == 0
            assert sandbox.log.count(operation="submit") == 61
            for task_id in wanted:
                assert len(bucket.keys(f"videos/{task_id}/")) == 1, task_id

            # A replica killed mid-download: another finishes its task, one submit, one object.
            sandbox.set_faults("concurrency:2", "slow_download:16384")
            (killed,) = await calls_at_once(ports[:1], ["a lantern at dusk"])
            await until(lambda: ledger.get(killed).status == "ready", "the task is downloading")
            started[0][1].kill()
            await until(lambda: completed(ledger, {killed}), "taken over and saved", within=120)
            assert sandbox.log.count(operation="submit") == 62  # the killed one's, once
            assert len(bucket.keys(f"videos/{killed}/")) == 1

            # Any live replica answers its owner, and nobody else.
            for port in ports[1:]:
                async with connected(url_of(port), token=TOK_A) as owner:
                    mine = await owner.call_tool("check_task", {"task_id": killed})
                assert structured(mine)["status"] == "completed"
                assert structured(mine)["object_key"] == bucket.keys(f"videos/{killed}/")[0]
                async with connected(url_of(port), token=TOK_B) as stranger:
                    theirs = await stranger.call_tool("check_task", {"task_id": killed})
                assert theirs.is_error and "No task" in text_of(theirs), text_of(theirs)


def completed(ledger: Ledger, task_ids: set[str]) -> bool:
    return all(ledger.get(task_id).status == "completed" for task_id in task_ids)


async def calls_at_once(ports: list[int], prompts: list[str]) -> list[str]:
    """One generate_video per prompt from one token, all at once, spread over ``ports``;
    returns the task ids in prompt order (each call answers at once with its pending task)."""
    task_ids: dict[int, str] = {}

    async def generate(index: int, prompt: str) -> None:
        async with connected(url_of(ports[index % len(ports)]), token=TOK_A) as client:
            arguments = {**PROMPT, "prompt": prompt, "wait_seconds": 0}
            answer = await client.call_tool("generate_video", arguments)
        assert not answer.is_error, text_of(answer)
        task_ids[index] = structured(answer)["task_id"]

    async with anyio.create_task_group() as group:
        for index, prompt in enumerate(prompts):
            group.start_soon(generate, index, prompt)
    return [task_ids[index] for index in range(len(prompts))]
