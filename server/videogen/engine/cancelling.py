"""Cancelling a task for its caller: at once while it waits its turn, at the provider while it
is queued there (when the provider can), else only marked (``Engine.cancel`` has the contract)."""

from __future__ import annotations

from typing import Final

from videogen.errors import VideogenError
from videogen.models import Task, TaskError

from .book import TaskBook
from .context import Context, task_ref
from .origins import foreign
from .queue import Queue

CANCELLED_AT_PROVIDER_MESSAGE: Final = (
    "Cancelled at the provider while it was still queued: nothing was billed. Submit the "
    "request again to make the video."
)


async def cancel_task(
    ctx: Context, book: TaskBook, queue: Queue, task_id: str, owner: str | None
) -> tuple[Task, str | None]:
    """The task as recorded after cancelling, and what the answer must say (None: nothing)."""
    task = book.get(task_id, owner=owner)
    if task.terminal or task.cancelled_at is not None:
        return task, None
    if task.status == "waiting":  # nothing sent yet: it ends here, nothing billed
        ended = queue.cancel(task)
        if ended is not None:
            return ended, None
        task = book.get(task_id)  # it took its turn meanwhile
    refusal: str | None = None
    if task.status == "queued" and foreign(ctx.settings, task) is None:
        try:
            await ctx.providers(task.provider).cancel(task_ref(task))
        except VideogenError as exc:
            refusal = exc.message
        else:
            task = book.refresh(task_id)
            if task.terminal:
                return task, None
            task.cancelled_at = ctx.clock()
            error = TaskError(kind="cancelled", message=CANCELLED_AT_PROVIDER_MESSAGE)
            return book.update(task, "failed", error=error), None
    task = book.get(task_id)
    task.cancelled_at = ctx.clock()
    task = book.save(task)
    return task, refusal or f"{task.provider} cannot stop a task that is {task.status}."
