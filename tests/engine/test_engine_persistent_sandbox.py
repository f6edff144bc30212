"""The embedded sandbox keeps its tasks in the data dir, so they outlive the app that made them.

Also: the dedupe guard never answers a sandbox request with a real provider's task (or the other
way round), and an error leaving the app is not logged by the embedded sandbox's web server.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

from videogen.app import open_app
from videogen.config import Settings
from videogen.engine import origin_of
from videogen.ledger import Ledger
from videogen.models import GenerationRequest, Task

from .conftest import ScriptedProvider, make_settings, running_engine, t2v

pytestmark = pytest.mark.anyio


def embedded(tmp_path: Path) -> Settings:
    settings = Settings.from_env(
        {
            "HOME": str(tmp_path),
            "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "out"),
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
            "VIDEOGEN_SANDBOX_JOB_SECONDS": "1",
            "JIMENG_VIDEO_POLL_INTERVAL": "0.2",
        }
    )
    assert settings.sandbox
    return settings


def request(prompt: str) -> GenerationRequest:
    return GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=prompt)


async def test_a_task_submitted_before_a_restart_completes_after_it_with_one_submit(
    tmp_path: Path,
) -> None:
    settings = embedded(tmp_path)
    async with open_app(settings, track=False) as first:
        task = await first.engine.submit(request("a boat across a restart"))
        assert task.status == "queued"
        assert first.sandbox is not None and first.sandbox.state.store is not None
        first_port = first.sandbox.port

    async with open_app(settings) as second:
        assert second.resumed == 1
        with anyio.fail_after(60):
            await second.engine.wait_idle()
        done = second.engine.get(task.id)
        assert second.sandbox is not None
        history = second.sandbox.history()
        own = second.sandbox.log
    assert done.status == "completed", done.error
    assert done.local_path is not None and await anyio.Path(done.local_path).is_file()
    assert history.count(operation="submit") == 1 and own.count(operation="submit") == 0
    # Polled and downloaded from the new sandbox: the first one's port is gone.
    assert own.count("volcengine", "poll", task_id=task.provider_task_id) >= 1
    assert own.count(operation="download", task_id=task.provider_task_id) >= 1
    assert done.video_url is not None and urlsplit(done.video_url).port != first_port


async def test_a_ready_video_left_unsaved_is_saved_after_a_restart_through_a_fresh_link(
    tmp_path: Path,
) -> None:
    """The first app sees the job done but cannot download (faulted); its link dies with it.
    The next app polls again for a link of its own sandbox and saves the video."""
    settings = embedded(tmp_path)
    from videogen.sandbox import SandboxOptions

    broken = SandboxOptions(job_seconds=1.0, faults=("server_error:download",))
    async with open_app(settings, sandbox_options=broken) as first:
        task = await first.engine.generate(request("saved on the second try"), wait_seconds=60)
        assert first.sandbox is not None
    assert task.status == "ready" and task.error is not None and task.local_path is None
    dead_link = task.video_url
    assert dead_link is not None

    async with open_app(settings) as second:
        done = await second.engine.check(task.id, wait_seconds=60)
    assert done.status == "completed", done.error
    assert done.local_path is not None and await anyio.Path(done.local_path).is_file()
    assert done.video_url != dead_link


async def test_an_error_leaving_the_embedded_app_is_not_logged_by_the_sandbox_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caught: list[BaseException] = []
    try:
        async with open_app(embedded(tmp_path)) as app:
            await app.engine.submit(request("interrupted"))
            raise ValueError("the caller's own error")
    except* ValueError as group:  # open_app's task group may wrap it
        caught.extend(group.exceptions)
    assert [str(e) for e in caught] == ["the caller's own error"]
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [(r.name, r.getMessage()) for r in noisy]


async def test_a_cancelled_embedded_app_shuts_down_without_logging_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with anyio.move_on_after(1.5) as scope:
        async with open_app(embedded(tmp_path)) as app:
            await app.engine.generate(request("cancelled while waiting"), wait_seconds=None)
    assert scope.cancelled_caught
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == [], [(r.name, r.getMessage()) for r in noisy]


# -- dedupe never crosses the sandbox/real line -------------------------------------------------


def put(ledger: Ledger, task: Task) -> Task:
    ledger.insert(task)
    return task


def earlier_task(sandbox: bool, now: float) -> Task:
    return Task(
        id="vg_0123456789ab",
        request=t2v(),
        status="completed",
        created_at=now,
        updated_at=now,
        sandbox=sandbox,
        provider_task_id="p-earlier",
        req_key="jimeng_t2v_v30",
        origin=origin_of(make_settings(Path("unused"), sandbox=sandbox), "volcengine")[0],
    )


def test_the_ledger_finds_a_duplicate_only_on_the_same_side_when_asked(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    try:
        made = put(ledger, earlier_task(sandbox=True, now=100.0))
        key = made.request.dedupe_key()
        assert ledger.find_duplicate(key, owner=None, since=0.0, sandbox=True) == made
        assert ledger.find_duplicate(key, owner=None, since=0.0, sandbox=False) is None
        assert ledger.find_duplicate(key, owner=None, since=0.0) == made  # no filter
    finally:
        ledger.close()


@pytest.mark.parametrize("earlier_in_sandbox", [True, False])
async def test_an_identical_request_on_the_other_side_is_submitted_anew(
    tmp_path: Path, earlier_in_sandbox: bool
) -> None:
    """A sandbox task never answers a real request, nor a real task a sandbox request."""
    settings = make_settings(tmp_path, sandbox=not earlier_in_sandbox)
    ledger = Ledger.in_dir(settings.data_dir)
    put(ledger, earlier_task(sandbox=earlier_in_sandbox, now=time.time()))
    ledger.close()
    provider = ScriptedProvider()
    async with running_engine(settings, provider, resume=False) as engine:
        task = await engine.submit(t2v())
        same_side = make_settings(tmp_path, sandbox=earlier_in_sandbox)
    assert provider.submits == 1
    assert task.id != "vg_0123456789ab" and task.sandbox is (not earlier_in_sandbox)
    assert task.notes == []
    # On the same side, the earlier task is the answer (the guard still works).
    provider = ScriptedProvider()
    async with running_engine(same_side, provider, resume=False) as engine:
        reused = await engine.submit(t2v())
    assert reused.id == "vg_0123456789ab" and provider.submits == 0
