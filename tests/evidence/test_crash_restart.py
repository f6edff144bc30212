"""Issue 7, crash and restart: the MCP server (a stdio ``jimeng-videogen-mcp`` subprocess) is
SIGKILLed during a wait, during a download, and between a submit and the provider's answer; a new
server on the same data folder takes over. The provider (a sandbox in this test process) outlives
both.

Every task must end finished (one submit, one playable file, nothing partial left) or clearly
marked ``unknown`` with a message that tells the user what to check — never resent.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from videogen.models import Task
from videogen.sandbox import SandboxOptions, serve_in_thread

from .evidence_helpers import clean_env, ledger_tasks, probe_playable, readable, stray_files
from .stdio_server import StdioServer, text_of

PROMPT = {"prompt": "a lighthouse in the rain", "provider": "volcengine"}


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    """Poll a condition held by another thread or process (there is no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def only_task(root: Path) -> Task:
    tasks = ledger_tasks(root / "data")
    assert len(tasks) == 1, [t.status for t in tasks]
    return tasks[0]


def assert_finished_once(root: Path, result: dict[str, object], submits: int) -> None:
    """The restarted server's answer: completed, one submit, one playable file, no debris."""
    data = result["structuredContent"]
    assert isinstance(data, dict), text_of(result)
    assert data["status"] == "completed", text_of(result)
    assert submits == 1
    videos = root / "videos"
    saved = sorted(videos.glob("*.mp4"))
    assert [str(p) for p in saved] == [data["local_path"]]
    probe_playable(saved[0])
    assert only_task(root).status == "completed"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_killed_during_a_wait_is_finished_by_the_next_one(tmp_path: Path) -> None:
    with serve_in_thread(SandboxOptions(job_seconds=2.0)) as sandbox:
        env = clean_env(tmp_path, **sandbox.env())
        with StdioServer(env) as server:
            server.start_call("generate_video", {**PROMPT, "wait_seconds": 40})
            wait_until(lambda: sandbox.log.count(operation="poll") >= 1, what="a poll")
            server.kill()
        killed = only_task(tmp_path)
        assert killed.status in ("queued", "running") and killed.local_path is None

        with StdioServer(env) as server:
            result = server.call_tool("check_task", {"task_id": killed.id, "wait_seconds": 40})
        assert_finished_once(tmp_path, result, sandbox.log.count(operation="submit"))
        assert stray_files(tmp_path / "videos") == []


def _partial_download_started(root: Path) -> bool:
    videos = root / "videos"
    return videos.exists() and any(".part" in p.name for p in videos.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_killed_during_a_download_is_finished_by_the_next_one(tmp_path: Path) -> None:
    """``slow_download`` holds the download open; the kill lands while bytes are arriving."""
    options = SandboxOptions(job_seconds=1.0, faults=("slow_download:40000",))
    with serve_in_thread(options) as sandbox:
        env = clean_env(tmp_path, **sandbox.env())
        with StdioServer(env) as server:
            server.start_call("generate_video", {**PROMPT, "wait_seconds": 40})
            wait_until(lambda: _partial_download_started(tmp_path), what="a partial download")
            server.kill()
        killed = only_task(tmp_path)
        assert killed.status == "ready" and killed.local_path is None
        assert list((tmp_path / "videos").glob("*.mp4")) == []  # nothing half-written in place

        sandbox.set_faults()  # the network is healthy again
        with StdioServer(env) as server:
            result = server.call_tool("check_task", {"task_id": killed.id, "wait_seconds": 40})
        assert_finished_once(tmp_path, result, sandbox.log.count(operation="submit"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_download_killed_mid_way_leaves_no_partial_file_behind(tmp_path: Path) -> None:
    options = SandboxOptions(job_seconds=1.0, faults=("slow_download:40000",))
    with serve_in_thread(options) as sandbox:
        env = clean_env(tmp_path, **sandbox.env())
        with StdioServer(env) as server:
            server.start_call("generate_video", {**PROMPT, "wait_seconds": 40})
            wait_until(lambda: _partial_download_started(tmp_path), what="a partial download")
            server.kill()
        task_id = only_task(tmp_path).id
        sandbox.set_faults()
        with StdioServer(env) as server:
            server.call_tool("check_task", {"task_id": task_id, "wait_seconds": 40})
    assert stray_files(tmp_path / "videos") == []


@contextmanager
def silent_provider() -> Iterator[tuple[str, list[bytes]]]:
    """A 'provider' on loopback that reads each request and never answers (a submit in flight
    for as long as the client waits). Yields its URL and the first bytes of every request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    received: list[bytes] = []
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            conn.settimeout(5)
            try:
                received.append(conn.recv(65536))
            except OSError:
                received.append(b"")

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        listener.close()
        for conn in held:
            conn.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_killed_before_the_submit_is_answered_marks_the_task_unknown(
    tmp_path: Path,
) -> None:
    """The kill lands after the submit left and before any answer: it may be billed. The next
    server (given a short request timeout so it stops waiting for a live sibling's answer)
    marks the task ``unknown`` with a message, and never sends the submit again."""
    with (
        serve_in_thread(SandboxOptions(job_seconds=1.0)) as sandbox,
        silent_provider() as (
            url,
            received,
        ),
    ):
        env = clean_env(tmp_path, **{**sandbox.env(), "JIMENG_VIDEO_API_URL": url})
        with StdioServer(env) as server:
            server.start_call("generate_video", {**PROMPT, "wait_seconds": 40})
            wait_until(lambda: bool(received), what="the submit to arrive")
            server.kill()
        killed = only_task(tmp_path)
        assert killed.status == "submitting"
        assert received[0].startswith(b"POST /?Action=CVSync2AsyncSubmitTask")

        env["JIMENG_VIDEO_API_TIMEOUT"] = "1"
        with StdioServer(env) as server:
            result = server.call_tool("check_task", {"task_id": killed.id, "wait_seconds": 30})
            listed = server.call_tool("list_tasks", {})
        data = result["structuredContent"]
        assert data["status"] == "unknown", text_of(result)
        assert readable(data["error"]) and "billed" in data["error"]
        assert "new=true" in data["error"] or "new=true" in (data["next_step"] or "")
        assert killed.id in text_of(listed)
        assert len(received) == 1  # never resent, not even by the second server
        assert sandbox.log.count(operation="submit") == 0
        assert list((tmp_path / "videos").glob("*.mp4")) == []
