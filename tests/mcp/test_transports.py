"""The server as hosts run it: a stdio subprocess, and streamable HTTP with its guards."""

from __future__ import annotations

import base64
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import INITIALIZE, child_env, free_port, text_of, write_png

from videogen.catalog import IMAGE_MAX_BYTES
from videogen.config import SANDBOX_NOTICE, Settings
from videogen.errors import ConfigError
from videogen.inputs import describe
from videogen.mcp_server import owner_of, plan_http

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
#: Two bearer tokens long enough to be accepted (32 characters or more).
TOK_A, TOK_B = "tok-a".ljust(32, "a"), "tok-b".ljust(32, "b")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_stdio_subprocess_generates_a_saved_video(tmp_path: Path, mode: str) -> None:
    """``python -m videogen.mcp_server`` with only PATH, HOME and VIDEOGEN_* in its env."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "videogen.mcp_server"], env=child_env(tmp_path)
    )
    async with Client(params, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "generate_video" in names
        result = await client.call_tool("generate_video", {"prompt": "stdio boat"})
    assert not result.is_error, text_of(result)
    assert text_of(result).splitlines()[0] == SANDBOX_NOTICE
    assert isinstance(result.structured_content, dict)
    saved = Path(result.structured_content["local_path"])
    assert await anyio.Path(saved).is_file() and saved.parent == tmp_path / "videos"


def test_closing_stdin_cancels_the_pending_warm_up_and_the_server_exits(tmp_path: Path) -> None:
    """A client that leaves right after ``tools/list`` does not wait for the engine's warm-up
    (2 s after start): the server cancels it (and says so at INFO) and exits at once."""
    import json

    env = child_env(tmp_path, VIDEOGEN_LOG_LEVEL="INFO")
    process = subprocess.Popen(
        [sys.executable, "-m", "videogen.mcp_server"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    tools_list = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    try:
        for message in (INITIALIZE, initialized, tools_list):
            process.stdin.write(json.dumps(message).encode() + b"\n")
        process.stdin.flush()
        while json.loads(process.stdout.readline() or b"{}").get("id") != 2:
            pass
        process.stdin.close()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    stderr = process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    assert process.returncode == 0, stderr.decode()
    assert b"engine warm-up cancelled" in stderr, stderr.decode()


def test_the_console_script_is_wired_to_main() -> None:
    from importlib.metadata import entry_points

    (script,) = [
        e for e in entry_points(group="console_scripts") if e.name == "jimeng-videogen-mcp"
    ]
    assert script.value == "videogen.mcp_server:main"


def test_http_off_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    """The plan refuses, and the process exits non-zero with the fix before binding."""
    settings = Settings.from_env({"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="VIDEOGEN_HTTP_TOKEN"):
        plan_http(settings, "0.0.0.0", 8000)
    assert plan_http(settings, "127.0.0.1", 8000).tokens == ()
    done = subprocess.run(
        [sys.executable, "-m", "videogen.mcp_server", "--http", "--host", "0.0.0.0",
         "--port", str(free_port())],
        env=child_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "VIDEOGEN_HTTP_TOKEN" in done.stderr
    assert done.stdout == ""


async def test_http_off_loopback_requires_the_bearer_token(spawn_http: Any) -> None:
    port, _ = spawn_http("0.0.0.0", VIDEOGEN_HTTP_TOKEN=f"{TOK_A},{TOK_B}")
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx2.AsyncClient() as http:
        bare = await http.post(url, json=INITIALIZE, headers=ACCEPT)
        wrong = await http.post(
            url, json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer x"}
        )
        right = await http.post(
            url, json=INITIALIZE, headers={**ACCEPT, "Authorization": f"Bearer {TOK_B}"}
        )
    assert bare.status_code == 401 and "bearer" in bare.headers["www-authenticate"].lower()
    assert wrong.status_code == 401
    assert right.status_code == 200


async def test_each_token_sees_only_its_own_tasks(spawn_http: Any) -> None:
    """Tasks belong to the caller's token identity (a hash): another token cannot see them."""
    port, _ = spawn_http("0.0.0.0", VIDEOGEN_HTTP_TOKEN=f"{TOK_A},{TOK_B}")
    url = f"http://127.0.0.1:{port}/mcp"

    @asynccontextmanager
    async def connect(token: str) -> AsyncIterator[Client]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            yield client

    async with connect(TOK_A) as alice:
        made = await alice.call_tool(
            "generate_video", {"prompt": "alice's boat", "wait_seconds": 0}
        )
        assert not made.is_error, text_of(made)
        assert isinstance(made.structured_content, dict)
        task_id = made.structured_content["task_id"]
        mine = await alice.call_tool("list_tasks", {})
        assert isinstance(mine.structured_content, dict)
        assert [t["task_id"] for t in mine.structured_content["tasks"]] == [task_id]
    async with connect(TOK_B) as bob:
        theirs = await bob.call_tool("check_task", {"task_id": task_id, "wait_seconds": 0})
        assert theirs.is_error and task_id in text_of(theirs)
        listed = await bob.call_tool("list_tasks", {})
        assert isinstance(listed.structured_content, dict)
        assert listed.structured_content["tasks"] == []
    assert owner_of(TOK_A) != owner_of(TOK_B) and TOK_A not in owner_of(TOK_A)


async def test_http_on_loopback_checks_host_and_origin(spawn_http: Any) -> None:
    """DNS-rebinding protection: a foreign Host gets 421, a foreign Origin 403."""
    port, _ = spawn_http("127.0.0.1")
    url = f"http://127.0.0.1:{port}/mcp"
    async with httpx2.AsyncClient() as http:
        good = await http.post(url, json=INITIALIZE, headers=ACCEPT)
        bad_host = await http.post(url, json=INITIALIZE, headers={**ACCEPT, "Host": "evil.example"})
        bad_origin = await http.post(
            url, json=INITIALIZE, headers={**ACCEPT, "Origin": "http://evil.example"}
        )
    assert good.status_code == 200
    assert bad_host.status_code == 421
    assert bad_origin.status_code == 403


async def test_a_loopback_http_server_runs_a_generation_with_progress(spawn_http: Any) -> None:
    port, _ = spawn_http("127.0.0.1")
    messages: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        result = await client.call_tool(
            "generate_video", {"prompt": "http boat"}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["status"] == "completed"
    assert messages


def test_importing_the_server_loads_no_engine_provider_or_media_module() -> None:
    """Start-up stays close to a bare SDK server: heavy modules load on first use."""
    heavy = ["av", "numpy", "sqlite3", "videogen.engine", "videogen.app"]  # (the SDK loads uvicorn)
    heavy += ["videogen.ledger", "videogen.sandbox", "videogen.providers.volcengine"]
    heavy += ["videogen.media", "videogen.download"]
    code = (
        "import sys, videogen.mcp_server as m; m.create_server(warm_up_after=None); "
        f"print(sorted(n for n in {heavy!r} if n in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_http_clients_cannot_make_the_server_read_its_own_files(
    spawn_http: Any, tmp_path: Path
) -> None:
    """Over HTTP a local path is refused (nothing read, nothing billed) unless it lies in a
    folder of VIDEOGEN_INPUT_DIRS; outside those, one neutral answer whatever is there."""
    private = write_png(tmp_path / "private.png")
    inside = tmp_path / "inputs"
    inside.mkdir()
    shared = write_png(inside / "shared.png")
    (inside / "escape.png").symlink_to(private)

    async def call(port: int, tool: str, image: str) -> tuple[bool, str, list[Any]]:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            args: dict[str, Any] = {"image": image}
            if tool == "generate_video":
                args |= {"prompt": "a boat", "wait_seconds": 0}
            result = await client.call_tool(tool, args)
            listed = await client.call_tool("list_tasks", {})
        assert isinstance(listed.structured_content, dict)
        return result.is_error, text_of(result), listed.structured_content["tasks"]

    closed, _ = spawn_http("127.0.0.1")
    for image in (private, shared):
        refused, text, tasks = await call(closed, "generate_video", str(image))
        assert refused and "does not read its own files" in text and "data: URL" in text, text
        assert tasks == []  # nothing submitted, nothing billed
    # A portrait is a URL on every transport: refused before any file is looked at.
    refused, text, tasks = await call(closed, "detect_subjects", str(private))
    assert refused and "must be a public http(s) URL" in text and tasks == [], text

    confined, _ = spawn_http("127.0.0.1", VIDEOGEN_INPUT_DIRS=str(inside))
    refusals = set()
    for ref in (str(private), str(inside / "escape.png"), str(tmp_path / "missing.png")):
        refused, text, tasks = await call(confined, "generate_video", ref)
        assert refused and tasks == [], text
        refusals.add(text.replace(describe(ref), "<ref>"))
    assert len(refusals) == 1 and "input folders" in refusals.pop()
    refused, text, tasks = await call(confined, "generate_video", str(shared))
    assert not refused and len(tasks) == 1, text


def test_an_input_folder_that_is_not_a_folder_stops_the_http_server(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"HOME": str(tmp_path), "VIDEOGEN_INPUT_DIRS": f"{tmp_path},{tmp_path / 'nope'}"}
    )
    with pytest.raises(ConfigError, match="VIDEOGEN_INPUT_DIRS"):
        plan_http(settings, "127.0.0.1", 8000)
    with pytest.raises(ConfigError, match="absolute"):
        Settings.from_env({"VIDEOGEN_INPUT_DIRS": "relative/folder"})


async def test_an_image_near_the_documented_limit_fits_in_an_http_request(
    spawn_http: Any,
) -> None:
    """A 4.6 MB PNG (the documented limit is 4.7 MB) as a data URL: about 6.1 MB of JSON-RPC,
    more than the transport's default 4 MiB body cap. It must reach the engine and be sent."""
    width = height = 1240
    row = b"\x00" + bytes(range(256)) * (width * 3 // 256) + bytes(width * 3 % 256)
    raw = zlib.compress(row * height, 0)  # stored, not compressed: the file is as big as its pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    assert 4_500_000 < len(png) < IMAGE_MAX_BYTES
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()

    port, _ = spawn_http("127.0.0.1")
    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        result = await client.call_tool(
            "generate_video", {"prompt": "a big frame", "image": data_url, "wait_seconds": 0}
        )
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    assert result.structured_content["mode"] == "i2v_first_720p"
