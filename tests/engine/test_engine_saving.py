"""Issue 14: every promise about paid work is kept once the video is made — a conform that
fails is visible, a rescue save happens, a repeat request delivers where it asks, a deleted
video is not reported as saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from videogen.cli import exit_code_for
from videogen.errors import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, OutputError
from videogen.models import MediaInfo
from videogen.report import render_markdown, result_of

from .conftest import ScriptedProvider, cdn_client, make_settings, running_engine, t2v, tiny_mp4

pytestmark = pytest.mark.anyio

#: The provider's "5 s" clip: 121 frames at 24 fps.
CLIP = tiny_mp4(seconds=121 / 24)


async def disk_full(path: Path, *, duration: float, fps: int) -> MediaInfo:
    """A conform whose output cannot be written (as media.conform reports ENOSPC)."""
    raise OutputError(
        f"The disk is full: the conform of {path.name!r} could not be written; the saved "
        "video itself is kept."
    )


async def test_a_conform_that_fails_is_reported_with_the_real_length_and_a_nonzero_exit(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with running_engine(
        settings, ScriptedProvider(), cdn_client(CLIP), conform=disk_full
    ) as engine:
        task = await engine.generate(t2v(duration=4, fps=30), wait_seconds=20)
        again = engine.get(task.id)
    assert task.status == "completed" and task.media is not None
    assert task.media.fps == 24 and abs(task.media.duration - 121 / 24) < 0.01
    assert task.error is not None and task.error.kind == "output"
    assert "4 s at 30 fps" in task.error.message and "disk is full" in task.error.message
    assert again.error == task.error  # kept in the ledger: a later check says it too
    text = render_markdown(result_of(task, notice=None, interface="cli"))
    assert "- Warning: The video could not be made 4 s at 30 fps" in text
    assert exit_code_for(task) == EXIT_CONFIG


async def test_a_conform_that_fails_for_another_reason_exits_1(tmp_path: Path) -> None:
    from videogen.errors import DownloadError

    async def broken(path: Path, *, duration: float, fps: int) -> MediaInfo:
        raise DownloadError("The conform of 'x.mp4' failed (codec error).", retryable=False)

    settings = make_settings(tmp_path)
    async with running_engine(settings, ScriptedProvider(), cdn_client(CLIP), conform=broken) as e:
        task = await e.generate(t2v(duration=8, fps=25), wait_seconds=20)
    assert task.status == "completed" and task.error is not None
    assert exit_code_for(task) == EXIT_ERROR


async def test_a_conform_that_works_is_still_a_clean_success(tmp_path: Path) -> None:
    async with running_engine(make_settings(tmp_path), ScriptedProvider(), cdn_client(CLIP)) as e:
        task = await e.generate(t2v(duration=4, fps=30), wait_seconds=30)
    assert task.status == "completed" and task.error is None and exit_code_for(task) == EXIT_OK
    assert task.media is not None and task.media.fps == 30
