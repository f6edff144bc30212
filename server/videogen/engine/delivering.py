"""Delivering a finished video where an answer promises it: a completed task whose saved file
is gone is reopened (downloaded again while the provider still has it), and a repeated request
gets a copy under its own folder and name (nothing is billed again)."""

from __future__ import annotations

from pathlib import Path

import anyio

from videogen.destination import FIX, open_folder
from videogen.errors import OutputError
from videogen.files import copy_into, is_numbered, open_saved, safe_filename, saved_file
from videogen.models import GenerationRequest, Task, TaskError

from .book import TaskBook
from .context import Context
from .finishing import LOST_MESSAGE
from .leases import Leases
from .uploads import store_video


class Delivery:
    """Checks saved videos and copies them where repeated requests ask."""

    def __init__(self, ctx: Context, book: TaskBook, leases: Leases) -> None:
        self._ctx = ctx
        self._book = book
        self._leases = leases

    async def reopen_if_lost(
        self, task: Task, notes: list[str], destination: GenerationRequest | None = None
    ) -> Task:
        """A completed task whose video is no longer where it was saved goes back to ``ready``
        (with a note saying so) to be downloaded again — into ``destination``'s folder and
        name when given; otherwise it is returned as it is. A video in the object store is not
        lost (another replica saved it; the bucket serves it); one saved here but not stored
        yet (the store refused) is stored now."""
        here = await anyio.to_thread.run_sync(saved_file, task.local_path)
        if self._ctx.storage is not None:
            if here is not None and task.object_key is None:
                return await self._store(task, here)
            if here is None and task.object_key is not None:
                return task
        if here is not None:
            return task
        lost = LOST_MESSAGE.format(path=task.local_path)
        if not self._leases.take(task.id):
            notes.append(f"{lost} Another process is working on this task; check it again in "
                         "a moment.")  # fmt: skip
            return task
        current = self._book.get(task.id)
        again = await anyio.to_thread.run_sync(saved_file, current.local_path)
        if current.status != "completed" or again is not None:
            self._book.ledger.release(task.id, self._leases.holder)  # saved again meanwhile
            return current
        if destination is not None:
            where = {"output_dir": destination.output_dir, "filename": destination.filename}
            current.request = current.request.model_copy(update=where)
        current.local_path = current.poster_path = current.media = current.error = None
        notes.append(f"{lost} It is downloaded again from the provider.")
        return self._book.update(current, "ready", note=lost)

    async def _store(self, task: Task, path: Path) -> Task:
        """Store a saved video the store refused before (under the task's lease)."""
        if not self._leases.take(task.id):
            return task
        try:
            current = self._book.get(task.id)
            await store_video(self._ctx, current, path)
            return self._book.save(current)
        finally:
            self._book.ledger.release(task.id, self._leases.holder)

    def destination_of(self, asked: Task | GenerationRequest) -> tuple[Path, str | None]:
        """Where a task's or a request's video goes: its folder, and the name it asked for."""
        request = asked.request if isinstance(asked, Task) else asked
        return self._ctx.folder(request.output_dir), request.filename

    async def deliver(self, task: Task, request: GenerationRequest, notes: list[str]) -> Task:
        """A repeated request gets the video where it asks: a copy of the saved file under the
        request's folder and name, unless the file already is there (nothing is billed)."""
        if self.destination_of(task) == self.destination_of(request):
            return task  # the task's own request, or one asking for the same place: it is there
        folder = self._ctx.folder(request.output_dir)
        name = safe_filename(task.request.prompt, task.id, request.filename)
        saved = Path(task.local_path or "")
        here = await anyio.to_thread.run_sync(saved_file, task.local_path)
        if task.object_key is not None and here is None:
            return task  # saved on another replica: the bucket's link is the delivery
        try:
            made = await anyio.to_thread.run_sync(_copy_saved, saved, folder, name)
        except (OSError, OutputError) as exc:
            why = (
                exc.message
                if isinstance(exc, OutputError)
                else f"Cannot write in {str(folder)!r} ({exc.strerror or exc}). Please {FIX}."
            )
            task.error = TaskError(
                kind="output",
                message=f"The video is saved at {saved}, but a copy could not be saved as asked: "
                f"{why}",
            )
            return task
        if made is not None:
            task.local_path, task.poster_path = str(made), None  # its poster goes beside it
            notes.append(f"This request's copy of the video is saved at {made} (the task saved "
                         f"it first at {saved}); nothing was billed again.")  # fmt: skip
        return task


def _copy_saved(saved: Path, folder: Path, name: str) -> Path | None:
    """Copy the saved video ``saved`` into ``folder`` as ``name`` (or ``stem-N``); None when
    it already is there (under that name or a numbered one)."""
    root = open_folder(folder).resolve()
    if saved.parent == root and is_numbered(saved.name, name):
        return None
    with open_saved(saved) as source:
        return copy_into(source, root, name)
