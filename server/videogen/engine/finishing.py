"""Finishing: a ``ready`` task's video downloaded (under the task's lease), conformed (Jimeng
clips: the asked duration and fps), probed, stored in the object store when one is configured,
and — when an interface asks — given a poster.

A download failure keeps the task ``ready`` with its URL and the error; the next check (or
start) tries again. The holder sweeps the temp files a killed run left for the task before it
saves the video, and adopts a finished file such a run saved but did not record.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio

from videogen.catalog import JIMENG_MODES
from videogen.destination import open_folder, posters_folder
from videogen.errors import DownloadError, OutputError, TaskExpired, VideogenError
from videogen.files import safe_filename, saved_file, sweep_temporaries
from videogen.models import GenerationRequest, MediaInfo, StatusEvent, Task, TaskError
from videogen.providers.base import DownloadSource, PollResult, Provider
from videogen.retry import call_with_retries

from .book import TaskBook, Watcher
from .context import Context, keep_ids, task_error, task_ref
from .polling import EXPIRED_MESSAGE, Poller
from .uploads import store_video

log = logging.getLogger(__name__)

#: Downloads (and their media work) at once; the rest queue.
CONCURRENT_FINISHES: Final = 8
#: A download URL this close to its expiry is refreshed (polled again) before use.
URL_EXPIRY_MARGIN_SECONDS: Final = 60.0

LOST_MESSAGE: Final = "The saved video {path} is gone (deleted, moved or replaced)."
UNRECOVERABLE_MESSAGE: Final = (
    "The saved video {path} is gone (deleted, moved or replaced) and the provider no longer "
    "has it, so it cannot be recovered: generate it again (billed again)."
)


class Finisher:
    """Saves ready tasks' videos and describes the saved files."""

    def __init__(self, ctx: Context, book: TaskBook, poller: Poller) -> None:
        self._ctx = ctx
        self._book = book
        self._poller = poller
        self._finishes = anyio.Semaphore(CONCURRENT_FINISHES)  # its waiters cost a future each

    async def finish(self, watcher: Watcher, task: Task) -> Task:
        """Download, conform and probe a ready task (this engine holds its lease)."""
        async with self._finishes:
            measured: list[_Facts | VideogenError] = []  # by the thread that saved the file
            try:
                path = await self._save_video(watcher, task, measured.append)
            except VideogenError as exc:
                task = self._book.refresh(task.id)
                if task.terminal:  # the refresh learned the task is gone: already recorded
                    return self._unrecoverable(task)
                task.error = task_error(exc)
                return self._book.save(task)
            task = self._book.get(task.id)  # as it stands now (a retarget, a fresh link)
            task.local_path = str(path)  # recorded with the probed facts, in one write
            if not measured:  # an adopted file
                measured.append(await anyio.to_thread.run_sync(self._measure, task, path))
            return await self._describe_file(task, path, measured[0])

    def _unrecoverable(self, task: Task) -> Task:
        """A task reopened because its saved video was lost, that the provider no longer has:
        say plainly that the video cannot be recovered."""
        reopened = [e for e in task.history if e.status == "ready" and e.note]
        lost = reopened[-1].note if reopened else None
        if task.status not in ("expired", "failed") or lost is None or task.error is None:
            return task
        match = re.fullmatch(re.escape(LOST_MESSAGE).replace(r"\{path\}", "(.*)"), lost)
        if match is None:
            return task
        message = UNRECOVERABLE_MESSAGE.format(path=match.group(1))
        task.error = TaskError(kind=task.error.kind, message=f"{message} ({task.error.message})")
        return self._book.save(task)

    async def _save_video(
        self, watcher: Watcher, task: Task, measured: Callable[[_Facts | VideogenError], None]
    ) -> Path:
        """The video saved (or adopted); a downloaded one is measured (``_measure``) by the
        thread that saved it, and the facts handed to ``measured``."""
        from videogen.download import download

        filename = safe_filename(task.request.prompt, task.id, task.request.filename)
        fresh, watcher.fresh = watcher.fresh, False  # a retry tidies what this attempt left
        if fresh:  # nothing to tidy or adopt: the download makes the folder (no thread hop)
            dest_dir = self._ctx.folder(task.request.output_dir)
        else:
            dest_dir, adopted = await anyio.to_thread.run_sync(self._make_room, task, filename)
            if adopted is not None:
                return adopted
        provider = self._ctx.providers(task.provider)
        poll = watcher.last_poll
        if poll is None or self._url_stale(task):
            poll = await self._fresh_poll(watcher, task)
        source = await self._source(provider, task, poll)

        async def refresh() -> DownloadSource:
            return await self._source(provider, task, await self._fresh_poll(watcher, task))

        settings = self._ctx.settings
        return await download(
            self._ctx.clients(task.provider),
            source,
            dest_dir,
            filename,
            max_bytes=settings.max_download_bytes,
            deadline_seconds=settings.download_timeout,
            refresh=refresh,
            after=lambda path: measured(self._measure(task, path)),
        )

    def _make_room(self, task: Task, filename: str) -> tuple[Path, Path | None]:
        """The destination folder, tidied of what a killed run left for this task, and the
        file such a run saved but did not record (to adopt instead of downloading again).
        Not for a fresh task (recorded by this process, leased since): it has no such run, so
        nothing is listed and a save costs the same whatever the folder holds."""
        dest_dir = self._destination(task)
        unique = task.id in filename
        # Under the lease nobody else saves this task: what a killed run left can go. A name
        # not unique to the task (a requested filename) is swept only when long untouched.
        shared = None if unique else self._ctx.lease_seconds
        for path in sweep_temporaries(dest_dir, filename, shared_after=shared):
            log.info("removed %s, left by a run that stopped while saving %s", path, task.id)
        return dest_dir, _adoptable(dest_dir, filename) if unique else None

    def _destination(self, task: Task) -> Path:
        """Where a task's video goes: the folder it was asked for, else the configured one,
        created with its parents (``submit`` made it; it may have been removed since)."""
        folder = self._ctx.folder(task.request.output_dir)
        with contextlib.suppress(OutputError):  # the download names the folder and the fix
            open_folder(folder)
        return folder

    def _url_stale(self, task: Task) -> bool:
        expires = task.video_url_expires_at
        return expires is not None and expires - self._ctx.clock() < URL_EXPIRY_MARGIN_SECONDS

    async def _fresh_poll(self, watcher: Watcher, task: Task) -> PollResult:
        """Poll again for a fresh video URL (they expire after an hour)."""
        result = await self._poller.poll(task)
        if result.status in ("failed", "expired"):
            gone = self._poller.apply(self._book.get(task.id), result)
            raise TaskExpired(gone.error.message if gone.error else EXPIRED_MESSAGE)
        if result.status != "succeeded":
            raise DownloadError(
                f"Asked for a fresh video link, the provider answered {result.raw_status!r}.",
                retryable=False,
            )
        watcher.last_poll = result
        current = self._book.get(task.id)
        current.video_url = result.video_url
        current.video_url_expires_at = result.url_expires_at
        if result.request_id:
            current.request_ids = keep_ids(current.request_ids, result.request_id)
        self._book.save(current)
        return result

    async def _source(self, provider: Provider, task: Task, poll: PollResult) -> DownloadSource:
        ref = task_ref(task)
        return await call_with_retries(
            lambda: provider.download_source(ref, poll), policy=self._ctx.policy
        )

    def _measure(self, task: Task, path: Path) -> _Facts | VideogenError:
        """Conform (Jimeng clips only) and probe, in a worker thread: what the file is (or why
        it cannot be read as a video). A conform that fails leaves the provider's clip, probed."""
        from videogen import media

        request = task.request
        failure: VideogenError | None = None
        try:
            if request.mode in JIMENG_MODES:  # OmniHuman and scenes last as long as they last
                conform = self._ctx.conform or media.conform_sync
                try:
                    return _Facts(conform(path, duration=request.duration, fps=request.fps))
                except VideogenError as exc:
                    failure = exc
            return _Facts(media.probe_sync(path), failure)
        except VideogenError as exc:
            return exc

    async def _describe_file(self, task: Task, path: Path, facts: _Facts | VideogenError) -> Task:
        """The file is what the task reports: the probed facts and, when the conform failed,
        an error naming what was asked and why it was not made (the task is ``completed``)."""
        if isinstance(facts, VideogenError):
            raise facts
        info, failure = facts.info, facts.failure
        task.media = info
        task.error = None if failure is None else _conform_error(failure, task.request, info)
        await store_video(self._ctx, task, path)
        if task.error is not None:
            note = task.error.message
            task.history.append(StatusEvent(status=task.status, at=self._ctx.clock(), note=note))
        return self._book.update(task, "completed")

    async def poster(self, task: Task) -> Task:
        """The task with a poster frame (a small JPEG beside the video, in ``.posters``), made
        now if it has none yet."""
        from videogen import media

        if task.status != "completed" or not task.local_path:
            return task
        if await anyio.to_thread.run_sync(saved_file, task.poster_path) is not None:
            return task
        # Only a plain file in its folder is decoded (a link planted in its place is not).
        path = await anyio.to_thread.run_sync(saved_file, task.local_path)
        if path is None:
            return task
        try:
            # Never through a planted .posters symlink: the poster would land outside.
            poster_dir = await anyio.to_thread.run_sync(posters_folder, path.parent)
            made = await media.poster(path, poster_dir / (path.stem + ".jpg"))
        except (VideogenError, OSError) as exc:
            log.warning("no poster for %s: %s", task.id, exc)
            return task
        task.poster_path = str(made)
        current = self._book.get(task.id)
        if current.local_path == task.local_path:  # not a copy delivered to a repeat request
            current.poster_path = task.poster_path
            self._book.save(current)
        return task


@dataclass
class _Facts:
    """A saved file measured: its probe, and why the conform failed when it did."""

    info: MediaInfo
    failure: VideogenError | None = None


def _conform_error(exc: VideogenError, request: GenerationRequest, info: MediaInfo) -> TaskError:
    """What a failed conform leaves: the provider's clip, as probed, and why."""
    return TaskError(
        kind=exc.kind,
        message=f"The video could not be made {request.duration} s at {request.fps} fps as "
        f"asked, so it is saved as the provider made it ({info.duration:g} s at {info.fps:g} "
        f"fps): {exc.message}",
    )


def _adoptable(output_dir: Path, filename: str) -> Path | None:
    """A regular file already at the target: left by a run that died after saving the video
    but before recording it. Symlinks and anything not a plausible MP4 are never adopted."""
    from videogen.download import check_mp4

    target = output_dir / filename
    if target.is_symlink() or not target.is_file():
        return None
    try:
        check_mp4(target)
    except VideogenError:
        return None
    return target.resolve()
