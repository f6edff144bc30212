"""What goes to the object store (``VIDEOGEN_STORAGE_URL``), and when.

- Inputs: local files given where a provider only takes URLs are uploaded once the task is
  recorded and before its submit, sent as presigned links, and deleted once the provider is done
  with them (the task left the provider's hands, or its submit failed). Their keys are recorded
  on the task (``Task.uploads``) before anything is uploaded, so whichever process ends the task
  deletes them.
- Videos: a saved video is stored as its task's one object (``Storage.video_key``) before the
  task is recorded ``completed``; a store that refuses leaves a warning on the task, and
  checking the task again stores it. Answers carry a fresh presigned link to it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import anyio

from videogen.errors import StorageError
from videogen.models import Task, TaskStatus
from videogen.storage import VIDEO_LINK_SECONDS

from .book import TaskBook
from .context import Context, task_error

if TYPE_CHECKING:
    from pathlib import Path

    from videogen.inputs import Checked
    from videogen.providers.base import PreparedInputs

log = logging.getLogger(__name__)

#: While a task is in one of these the provider may still fetch its inputs.
FETCHING: Final[frozenset[TaskStatus]] = frozenset({"submitting", "queued", "running"})
#: Deleting a task's uploads may take this long, even when its caller is cancelled.
DELETE_SECONDS: Final = 30.0


async def upload_inputs(
    ctx: Context, book: TaskBook, task: Task, checked: Checked
) -> PreparedInputs:
    """The inputs to submit: each staged file uploaded under the task's keys and replaced by a
    presigned link. ``StorageError`` (nothing billed) when the store refuses."""
    if not checked.staged:
        return checked.inputs
    storage = ctx.storage
    assert storage is not None  # inputs are staged only when storage is configured
    keys = {s.name: storage.upload_key(task.id, s.name + s.suffix) for s in checked.staged}
    task.uploads = list(keys.values())
    book.save(task)
    links = {}
    for staged in checked.staged:
        links[staged.name] = await storage.upload(
            keys[staged.name], staged.data, staged.content_type
        )
    return checked.with_links(links)


async def release_uploads(ctx: Context, book: TaskBook, task: Task) -> Task:
    """Delete the task's uploaded inputs once the provider no longer needs them (shielded,
    bounded); a store that refuses leaves them listed on the task, and logged."""
    if not task.uploads or task.status in FETCHING or ctx.storage is None:
        return task
    with anyio.CancelScope(shield=True), anyio.move_on_after(DELETE_SECONDS):
        try:
            await ctx.storage.delete(task.uploads)
        except StorageError as exc:
            log.warning("the uploads of %s were not deleted: %s", task.id, exc)
            return task
        current = book.get(task.id)
        current.uploads = []
        return book.save(current)
    return task


async def store_video(ctx: Context, task: Task, path: Path) -> None:
    """Store the saved video ``path`` as the task's object and set ``task.object_key``; a store
    that refuses sets ``task.error`` (a warning: the file is saved) unless one is set."""
    if ctx.storage is None:
        return
    key = ctx.storage.video_key(task.id, path.name)
    try:
        await ctx.storage.put_file(key, path)
    except StorageError as exc:
        log.warning("the video of %s was not stored: %s", task.id, exc)
        task.error = task.error or task_error(exc)
        return
    task.object_key = key
    if task.error is not None and task.error.kind == "storage":
        task.error = None


def add_link(ctx: Context, task: Task) -> Task:
    """The task with a fresh presigned link to its stored video, when it has one."""
    if ctx.storage is None or task.object_key is None:
        return task
    try:
        task.video_link = ctx.storage.link(task.object_key, VIDEO_LINK_SECONDS)
    except StorageError as exc:
        log.warning("no link to the video of %s: %s", task.id, exc)
        return task
    task.video_link_expires_at = ctx.clock() + VIDEO_LINK_SECONDS
    return task
