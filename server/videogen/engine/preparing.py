"""A request's inputs made ready to send: checked before anything is recorded (local files to
upload staged, the object store proven usable: both before billing), read again from the stored
request for a waiting task a process that stopped had recorded, and uploaded at each send (a
presigned link outlives a short wait, not a long one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from videogen.errors import InputError, StorageError, VideogenError
from videogen.models import GenerationRequest, Task, abbreviated
from videogen.providers.base import PreparedInputs, Provider

from .book import TaskBook
from .context import Context, task_error
from .uploads import upload_inputs

if TYPE_CHECKING:
    from videogen.inputs import Checked

INLINE_INPUTS_MESSAGE: Final = (
    "This request's inputs were given inline (data URLs), which the task ledger does not keep, "
    "and it was still waiting its turn when the process that recorded it stopped: nothing was "
    "sent, so nothing was billed. Submit the request again."
)


@dataclass
class Prepared:
    """What sending a waiting task needs, kept while it waits in this engine."""

    provider: Provider
    request: GenerationRequest
    checked: Checked
    #: Concurrency refusals so far, and when (``anyio.current_time()``) it may go again.
    refusals: int = 0
    not_before: float = 0.0


class Preparer:
    """Checks, re-reads and uploads the inputs of the requests an engine sends."""

    def __init__(self, ctx: Context, book: TaskBook) -> None:
        self._ctx = ctx
        self._book = book

    async def prepare(self, request: GenerationRequest) -> Prepared:
        """The request's provider and its inputs checked (``InputError``, ``StorageError``)."""
        provider = self._ctx.providers(request.provider)
        return Prepared(provider, request, await self._check(request, provider))

    async def again(self, task: Task) -> Prepared | None:
        """The inputs of a waiting task recorded by a process that stopped, read again from
        the stored request; None (the task ended, nothing billed) when they cannot be."""
        request = task.request
        references = (*request.images, *request.masks, request.audio or "")
        try:
            if any(abbreviated(reference) for reference in references):
                raise InputError(INLINE_INPUTS_MESSAGE)
            provider = self._ctx.providers(request.provider)
            checked = await self._check(request, provider)
        except VideogenError as exc:
            self._book.end_waiting(task, "failed", task_error(exc))
            return None
        return Prepared(provider, request, checked)

    async def _check(self, request: GenerationRequest, provider: Provider) -> Checked:
        """The request's inputs checked (local files to upload staged, with object storage)."""
        from videogen.inputs import check_inputs  # the adapters' helper, loaded on first use

        storage = self._ctx.storage
        checked = await check_inputs(
            request,
            accepts_uploaded_images=provider.accepts_uploaded_images,
            folders=self._ctx.settings.path_folders(),
            staging=storage is not None,
        )
        if storage is not None:  # videos and uploads go there: proven usable before billing
            await storage.check()
        return checked

    async def upload(self, task: Task, checked: Checked) -> PreparedInputs:
        """The inputs with local files uploaded; a refusal fails the task (nothing billed)."""
        try:
            return await upload_inputs(self._ctx, self._book, task, checked)
        except StorageError as exc:
            self._book.update(task, "failed", error=task_error(exc))
            raise
