"""Where a video goes, and what happens when its link can no longer be renewed."""

from __future__ import annotations

from pathlib import Path

import pytest

from videogen.errors import ProviderError
from videogen.providers.base import PollResult

from .conftest import ScriptedProvider, cdn_client, make_settings, running_engine, t2v, tiny_mp4

pytestmark = pytest.mark.anyio

CLIP = tiny_mp4(seconds=121 / 24)


async def test_the_default_output_folder_is_created_with_its_parents(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, output_dir=tmp_path / "home" / "Videos" / "videogen")
    async with running_engine(settings, ScriptedProvider(), cdn_client(CLIP)) as engine:
        task = await engine.generate(t2v(), wait_seconds=20)
    assert task.status == "completed", task.error
    assert Path(task.local_path or "").parent == tmp_path / "home" / "Videos" / "videogen"


async def test_an_explicit_output_folder_that_is_missing_is_not_invented(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    settings = make_settings(tmp_path, output_dir=missing, output_dir_explicit=True)
    async with running_engine(settings, ScriptedProvider(), cdn_client(CLIP)) as engine:
        task = await engine.generate(t2v(), wait_seconds=20)
    assert task.status == "ready"
    assert task.error is not None and "VIDEOGEN_OUTPUT_DIR" in task.error.message
    assert not missing.parent.exists()


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
