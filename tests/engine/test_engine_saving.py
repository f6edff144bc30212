"""Issue 14: every promise about paid work is kept once the video is made — a conform that
fails is visible, a rescue save happens, a repeat request delivers where it asks, a deleted
video is not reported as saved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from videogen.cli import exit_code_for
from videogen.errors import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, OutputError
from videogen.models import MediaInfo
from videogen.providers.base import PollResult
from videogen.report import render_markdown, result_of

from .conftest import ScriptedProvider, cdn_client, make_settings, running_engine, t2v, tiny_mp4

pytestmark = pytest.mark.anyio

#: The provider's "5 s" clip: 121 frames at 24 fps.
CLIP = tiny_mp4(seconds=121 / 24)


def disk_full(path: Path, *, duration: float, fps: int) -> MediaInfo:
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

    def broken(path: Path, *, duration: float, fps: int) -> MediaInfo:
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


def read(path: str | Path | None) -> bytes:
    """The bytes of a regular file (never through a link)."""
    assert path is not None and not Path(path).is_symlink()
    return Path(path).read_bytes()


def lose(path: str | Path | None, how: str = "deleted", moved_to: Path | None = None) -> None:
    """Make a saved video disappear from where the task recorded it."""
    saved = Path(path or "")
    if how == "moved":
        saved.rename(moved_to or saved.with_name("moved away.mp4"))
        return
    saved.unlink()
    if how == "replaced by a link":
        saved.symlink_to("/etc/passwd")


def block(folder: Path) -> None:
    """Turn a folder into a file: the save after a good preflight fails."""
    shutil.rmtree(folder)
    folder.write_text("a file, not a directory")


async def test_check_with_an_output_folder_saves_the_video_even_without_waiting(
    tmp_path: Path,
) -> None:
    """Issue 14 item 5: the documented rescue does the save, whatever the wait."""
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        task = await engine.submit(t2v())
        block(tmp_path / "out")
        stuck = await engine.check(task.id, wait_seconds=20)
        assert stuck.status == "ready" and stuck.error is not None
        rescue = tmp_path / "rescue"
        done = await engine.check(task.id, wait_seconds=0, output_dir=str(rescue))
    assert done.status == "completed", done.error
    assert Path(done.local_path or "").parent == rescue and read(done.local_path) == CLIP
    assert provider.submits == 1


async def test_a_repeated_request_delivers_the_video_where_it_asks_without_paying_again(
    tmp_path: Path,
) -> None:
    """Issue 14 item 6: the same prompt with another folder and name gets its own copy."""
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        first = await engine.generate(t2v(), wait_seconds=20)
        asked = tmp_path / "x"
        again = await engine.generate(
            t2v(output_dir=str(asked), filename="boat.mp4"), wait_seconds=20
        )
        once_more = await engine.generate(t2v(), wait_seconds=20)
    assert provider.submits == 1 and again.id == first.id == once_more.id
    assert again.status == "completed" and again.error is None
    assert again.local_path == str(asked / "boat.mp4")
    assert read(asked / "boat.mp4") == read(first.local_path) == CLIP
    assert any("nothing was billed again" in note for note in again.notes)
    # The first request's own place is where the video already is: no second copy there.
    assert once_more.local_path == first.local_path
    assert len(list((tmp_path / "out").glob("*.mp4"))) == 1


async def test_a_repeated_request_for_a_name_that_is_taken_gets_a_numbered_copy(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider()
    asked = tmp_path / "x"
    asked.mkdir()
    (asked / "boat.mp4").write_bytes(b"someone else's boat")
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        await engine.generate(t2v(), wait_seconds=20)
        again = await engine.generate(
            t2v(output_dir=str(asked), filename="boat.mp4"), wait_seconds=20
        )
    assert again.local_path == str(asked / "boat-1.mp4") and provider.submits == 1
    assert read(asked / "boat.mp4") == b"someone else's boat"


async def test_a_repeated_request_whose_video_was_deleted_downloads_it_where_it_asks(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        first = await engine.generate(t2v(), wait_seconds=20)
        lose(first.local_path)
        asked = tmp_path / "x"
        again = await engine.generate(
            t2v(output_dir=str(asked), filename="boat.mp4"), wait_seconds=20
        )
    assert provider.submits == 1 and again.status == "completed", again.error
    assert again.local_path == str(asked / "boat.mp4") and read(again.local_path) == CLIP
    assert any("is gone" in note for note in again.notes)


@pytest.mark.parametrize("how", ["deleted", "moved", "replaced by a link"])
async def test_check_finds_a_lost_video_says_so_and_downloads_it_again(
    tmp_path: Path, how: str
) -> None:
    """Issue 14 item 7: a Save Path that does not exist is never reported as saved."""
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        first = await engine.generate(t2v(), wait_seconds=20)
        saved = first.local_path
        lose(saved, how, moved_to=tmp_path / "moved.mp4")
        polls = provider.polls
        checked = await engine.check(first.id, wait_seconds=0)
    assert checked.status == "completed", checked.error
    assert read(checked.local_path) == CLIP
    assert any(f"{saved} is gone" in note for note in checked.notes)
    assert provider.submits == 1 and provider.polls == polls + 1  # a fresh URL: free


async def test_check_output_saves_a_lost_video_in_the_new_folder(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        first = await engine.generate(t2v(), wait_seconds=20)
        lose(first.local_path)
        rescue = tmp_path / "rescue"
        checked = await engine.check(first.id, output_dir=str(rescue))
    assert checked.status == "completed", checked.error
    assert Path(checked.local_path or "").parent == rescue and read(checked.local_path) == CLIP


async def test_a_lost_video_the_provider_no_longer_has_is_said_to_be_unrecoverable(
    tmp_path: Path,
) -> None:
    gone = PollResult(status="expired", raw_status="not_found")
    provider = ScriptedProvider()
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        first = await engine.generate(t2v(), wait_seconds=20)
        lose(first.local_path)
        provider.script = [gone]
        provider.steps.clear()
        checked = await engine.check(first.id, wait_seconds=0)
    assert checked.status == "expired" and checked.local_path is None
    assert checked.error is not None and "cannot be recovered" in checked.error.message
    assert str(first.local_path) in checked.error.message


async def test_a_repeat_of_an_unfinished_task_says_how_to_get_it_where_it_asks(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider()
    asked = t2v(output_dir=str(tmp_path / "x"), filename="boat.mp4")
    async with running_engine(make_settings(tmp_path), provider, cdn_client(CLIP)) as engine:
        first = await engine.generate(t2v(), wait_seconds=0)
        pending = await engine.generate(asked, wait_seconds=0)
        await engine.wait_idle()
        later = await engine.generate(asked, wait_seconds=0)
    assert pending.id == first.id and not pending.terminal
    assert any("make this request again then" in note for note in pending.notes)
    assert later.local_path == str(tmp_path / "x" / "boat.mp4") and provider.submits == 1
