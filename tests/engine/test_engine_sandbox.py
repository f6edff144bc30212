"""The engine end to end against the sandbox over real loopback HTTP (jobs take about 1 s)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import httpx2
import pytest

from videogen.app import open_app
from videogen.config import SANDBOX_NOTICE, Settings
from videogen.errors import OutputError
from videogen.models import GenerationRequest
from videogen.report import render_markdown, result_of
from videogen.sandbox import SandboxOptions

pytestmark = pytest.mark.anyio

FAST = SandboxOptions(job_seconds=1.0)


def sandbox_settings(tmp_path: Path, **env: str) -> Settings:
    values = {
        "HOME": str(tmp_path),
        "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "out"),
        "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        "JIMENG_VIDEO_POLL_INTERVAL": "0.25",
        **env,
    }
    settings = Settings.from_env(values)
    assert settings.sandbox
    return settings


def t2v(prompt: str = "a paper boat on a pond", **fields: object) -> GenerationRequest:
    return GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=prompt, **fields)  # type: ignore[arg-type]


def is_file(path: str) -> bool:
    """A regular file, not a symlink."""
    return Path(path).is_file() and not Path(path).is_symlink()


def file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def entries(directory: Path) -> list[str]:
    """Every name in a directory, hidden ones included (a partial file would show here)."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_a_task_abandoned_by_its_caller_is_saved_in_the_background(tmp_path: Path) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        task = await app.engine.generate(t2v(), wait_seconds=0)
        assert task.status == "queued"
        with anyio.fail_after(60):
            await app.engine.wait_idle()
        done = app.engine.get(task.id)
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 1
    assert done.status == "completed", done.error
    assert done.sandbox is True
    assert done.local_path is not None and is_file(done.local_path)
    text = render_markdown(result_of(done, notice=app.notice))
    assert text.splitlines()[0] == SANDBOX_NOTICE
    assert f"- Save Path: {done.local_path}" in text


async def test_a_cancelled_caller_leaves_the_task_to_the_tracker(tmp_path: Path) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        with anyio.move_on_after(0.3):
            await app.engine.generate(t2v(), wait_seconds=None)
        (task,) = app.engine.list_tasks()
        assert task.status in ("queued", "running")
        with anyio.fail_after(60):
            await app.engine.wait_idle()
        assert app.engine.get(task.id).status == "completed"


async def test_a_waiting_caller_gets_the_saved_video_and_its_probed_facts(tmp_path: Path) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        task = await app.engine.generate(t2v(), wait_seconds=60)
        task = await app.engine.poster(task)
    assert task.status == "completed", task.error
    assert task.media is not None
    assert (task.media.width, task.media.height) == (1280, 720)
    assert task.media.fps == 24 and task.media.frames in (120, 121)
    assert task.poster_path is not None and is_file(task.poster_path)
    assert task.req_key == "jimeng_t2v_v30"


async def test_a_duplicate_request_within_the_window_returns_the_first_task(
    tmp_path: Path,
) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        first = await app.engine.generate(t2v(), wait_seconds=0)
        again = await app.engine.generate(t2v(), wait_seconds=60)
        assert app.sandbox is not None
        submits = app.sandbox.log.count(operation="submit")
    assert again.id == first.id
    assert again.status == "completed"
    assert any("identical request" in note for note in again.notes)
    assert submits == 1


async def test_a_truncated_download_resumes_to_a_byte_identical_file(tmp_path: Path) -> None:
    options = SandboxOptions(job_seconds=1.0, faults=("truncate_download:1",))
    async with open_app(sandbox_settings(tmp_path), sandbox_options=options) as app:
        task = await app.engine.generate(t2v(), wait_seconds=60)
        assert task.status == "completed", task.error
        assert task.video_url is not None and task.local_path is not None
        async with httpx2.AsyncClient() as client:
            whole = (await client.get(task.video_url)).content
        assert app.sandbox is not None
        downloads = app.sandbox.log.count(operation="download")
    assert downloads >= 3  # truncated, resumed, and the reference fetch above
    assert file_bytes(task.local_path) == whole


async def test_an_expired_link_is_refreshed_by_polling_again(tmp_path: Path) -> None:
    options = SandboxOptions(job_seconds=1.0, faults=("expired_urls",))
    async with open_app(sandbox_settings(tmp_path), sandbox_options=options) as app:
        task = await app.engine.generate(t2v(), wait_seconds=60)
        # Every link the sandbox hands out is dead: the engine asked for fresh ones, then
        # kept the task ready with its link and the error.
        assert task.status == "ready"
        assert task.error is not None and task.error.kind == "download"
        assert app.sandbox is not None
        polls_after_ready = [
            e
            for e in app.sandbox.log.entries
            if e.operation == "poll"
            and e.at >= next(h.at for h in task.history if h.status == "ready") - 1
        ]
        assert len(polls_after_ready) >= 2
        app.sandbox.set_faults()
        task = await app.engine.check(task.id, wait_seconds=60)
    assert task.status == "completed", task.error


async def test_a_clip_is_conformed_to_the_requested_duration_and_fps(tmp_path: Path) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        task = await app.engine.generate(t2v(duration=4, fps=30), wait_seconds=90)
    assert task.status == "completed", task.error
    assert task.media is not None
    assert task.media.fps == 30
    assert abs(task.media.duration - 4.0) <= 1 / 30 + 1e-6


async def test_an_output_directory_that_cannot_be_made_is_refused_before_the_submit(
    tmp_path: Path,
) -> None:
    (tmp_path / "no").write_text("a file where a folder should be")
    out = tmp_path / "no" / "such" / "dir"
    settings = sandbox_settings(tmp_path, VIDEOGEN_OUTPUT_DIR=str(out))
    async with open_app(settings, sandbox_options=FAST) as app:
        with pytest.raises(OutputError, match="VIDEOGEN_OUTPUT_DIR") as caught:
            await app.engine.generate(t2v(), wait_seconds=60)
        assert app.sandbox is not None and app.sandbox.log.count(operation="submit") == 0
        assert app.engine.list_tasks() == []
    assert str(out) in caught.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
async def test_an_unwritable_output_directory_is_refused_before_the_submit(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
            with pytest.raises(OutputError, match="Cannot write"):
                await app.engine.generate(t2v(), wait_seconds=60)
            assert app.sandbox is not None and app.sandbox.log.count(operation="submit") == 0
    finally:
        out.chmod(0o700)
    assert entries(out) == []


async def test_a_symlink_planted_at_the_target_is_neither_followed_nor_replaced(
    tmp_path: Path,
) -> None:
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / "boat.mp4").symlink_to(victim)
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        task = await app.engine.generate(t2v(filename="boat.mp4"), wait_seconds=60)
    assert victim.read_text() == "keep me"
    assert (out / "boat.mp4").is_symlink()
    assert task.video_url is not None
    if task.status == "completed":  # saved beside it under the next free name
        assert task.local_path is not None and Path(task.local_path).name != "boat.mp4"
        assert is_file(task.local_path)
    else:
        assert task.status == "ready" and task.error is not None
    assert [n for n in entries(out) if n.startswith(".") and n != ".posters"] == []


async def test_subject_detection_reports_masks_and_the_recognition_verdict(
    tmp_path: Path,
) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        assert app.sandbox is not None
        people = await app.engine.detect_subjects(
            app.sandbox.url + "/assets/image/640x480-people.png", wait_seconds=30
        )
        nobody = await app.engine.detect_subjects(
            app.sandbox.url + "/assets/image/640x480-uniform.png", wait_seconds=30
        )
    assert people.contains_subject is True and people.mask_urls
    assert people.recognition == "succeeded" and people.recognised is True
    assert nobody.contains_subject is False and nobody.mask_urls == []
    assert people.provider == "volcengine" and people.request_ids


async def test_omnihuman_videos_are_saved_without_being_trimmed(tmp_path: Path) -> None:
    async with open_app(sandbox_settings(tmp_path), sandbox_options=FAST) as app:
        assert app.sandbox is not None
        request = GenerationRequest(
            provider="volcengine",
            mode="omnihuman",
            images=(app.sandbox.url + "/assets/image/640x480-people.png",),
            audio=app.sandbox.url + "/assets/audio/2s.wav",
            resolution=720,
        )
        task = await app.engine.generate(request, wait_seconds=60)
    assert task.status == "completed", task.error
    assert task.media is not None
    assert abs(task.media.duration - 2.0) < 0.5  # as long as the audio, not the 5 s default
