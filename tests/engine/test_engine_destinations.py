"""Where a video goes, and what happens when its link can no longer be renewed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from videogen.errors import OutputError, ProviderError
from videogen.providers.base import PollResult

from .conftest import ScriptedProvider, cdn_client, make_settings, running_engine, t2v, tiny_mp4

pytestmark = pytest.mark.anyio

CLIP = tiny_mp4(seconds=121 / 24)


def block(folder: Path) -> None:
    """Turn a folder into a file: the save after a good preflight fails."""
    shutil.rmtree(folder)
    folder.write_text("a file, not a directory")


async def test_the_default_output_folder_is_created_with_its_parents(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, output_dir=tmp_path / "home" / "Videos" / "videogen")
    async with running_engine(settings, ScriptedProvider(), cdn_client(CLIP)) as engine:
        task = await engine.generate(t2v(), wait_seconds=20)
    assert task.status == "completed", task.error
    assert Path(task.local_path or "").parent == tmp_path / "home" / "Videos" / "videogen"


async def test_an_explicit_output_folder_that_is_missing_is_created(tmp_path: Path) -> None:
    """A user who names a folder wants it: it is made (with parents) before the submit."""
    missing = tmp_path / "no" / "such" / "folder"
    settings = make_settings(tmp_path, output_dir=missing)
    async with running_engine(settings, ScriptedProvider(), cdn_client(CLIP)) as engine:
        task = await engine.generate(t2v(), wait_seconds=20)
    assert task.status == "completed", task.error
    assert Path(task.local_path or "").parent == missing


@pytest.mark.parametrize("where", ["/dev/null", "file/sub", "file"])
async def test_an_unusable_output_folder_is_refused_before_anything_is_billed(
    tmp_path: Path, where: str
) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    folder = where if where.startswith("/") else str(tmp_path / where)
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider) as engine:
        with pytest.raises(OutputError) as caught:
            await engine.generate(t2v(output_dir=folder), wait_seconds=20)
        assert engine.list_tasks() == []
    assert provider.submits == 0
    assert folder in caught.value.message and "--output" in caught.value.message
    assert caught.value.exit_code == 3


async def test_a_ready_task_whose_save_failed_is_saved_into_a_new_folder_by_check(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        task = await engine.submit(t2v())
        block(tmp_path / "out")  # no checkpoint since the submit: the save will fail
        stuck = await engine.check(task.id, wait_seconds=20)
        assert stuck.status == "ready" and stuck.error is not None
        fixed = tmp_path / "fixed"
        done = await engine.check(task.id, wait_seconds=20, output_dir=str(fixed))
    assert done.status == "completed", done.error
    assert Path(done.local_path or "").parent == fixed
    assert done.request.output_dir == str(fixed)
    assert provider.submits == 1


async def test_the_same_request_with_a_good_folder_saves_a_stuck_duplicate_there(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        task = await engine.submit(t2v())
        block(tmp_path / "out")
        assert (await engine.check(task.id, wait_seconds=20)).status == "ready"
        fixed = tmp_path / "fixed"
        again = await engine.generate(t2v(output_dir=str(fixed)), wait_seconds=20)
    assert again.id == task.id and provider.submits == 1
    assert again.status == "completed", again.error
    assert Path(again.local_path or "").parent == fixed
    assert "identical request" in again.notes[0]


async def test_a_planted_posters_symlink_is_not_followed_and_the_video_is_kept(
    tmp_path: Path,
) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "boat.jpg").write_bytes(b"precious")
    (out / ".posters").symlink_to(elsewhere, target_is_directory=True)
    async with running_engine(make_settings(tmp_path), ScriptedProvider(), cdn_client(CLIP)) as e:
        task = await e.generate(t2v(filename="boat.mp4"), wait_seconds=20)
        task = await e.poster(task)
    assert task.status == "completed", task.error
    assert Path(task.local_path or "") == out / "boat.mp4"
    assert task.poster_path is None
    assert (elsewhere / "boat.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["boat.jpg"]


async def test_a_task_saves_into_the_folder_it_was_asked_for(tmp_path: Path) -> None:
    asked = tmp_path / "asked"
    asked.mkdir()
    request = t2v(output_dir=str(asked))
    async with running_engine(make_settings(tmp_path), ScriptedProvider(), cdn_client(CLIP)) as e:
        task = await e.generate(request, wait_seconds=20)
    assert task.status == "completed", task.error
    assert Path(task.local_path or "").parent == asked


async def test_a_ready_task_whose_provider_forgot_it_is_marked_expired(tmp_path: Path) -> None:
    gone = ProviderError("Volcengine no longer knows this task: submit the request again.",
                         provider="volcengine")  # fmt: skip
    provider = ScriptedProvider(
        script=[
            # The link is already past its expiry, so the engine polls again for a fresh one...
            PollResult(
                "succeeded", "done", video_url="https://cdn.example/v.mp4", url_expires_at=1.0
            ),
            # ...and learns the task is gone.
            PollResult("expired", "not_found", error=gone),
        ]
    )
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        task = await engine.generate(t2v(), wait_seconds=20)
        stored = engine.get(task.id)
    assert task.status == stored.status == "expired"
    assert stored.error is not None
    assert stored.error.message.count("submit the request again") == 1
