"""The engine's facade: what the interfaces call. Each job lives in its own module (see the
package docstring); this class wires them together and is the one place an answer's notes are
put on the task it returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import TaskGroup

from videogen.catalog import ProviderName
from videogen.config import Settings
from videogen.destination import prepare_folder
from videogen.intake import Intake, build_request, choose_provider
from videogen.ledger import Ledger
from videogen.models import GenerationRequest, Task
from videogen.report import SubjectReport
from videogen.request import VideoAsk
from videogen.retry import RetryPolicy

from .book import TaskBook
from .cancelling import cancel_task
from .context import (
    FIRST_POLL_SECONDS,
    HEARTBEAT_SECONDS,
    ClientFactory,
    Conform,
    Context,
    ProgressCallback,
    ProviderFactory,
)
from .delivering import Delivery
from .finishing import Finisher
from .leases import Leases
from .origins import foreign
from .polling import Poller
from .queue import Queue
from .saved import read_video
from .subjects import detect_subjects
from .submitting import Submitter
from .tracking import Tracker
from .uploads import add_link

if TYPE_CHECKING:
    from videogen.storage import Storage

ELSEWHERE_NOTE: Final = (
    "It is saved where the first request asked once it is ready; make this request again then "
    "to get a copy where this one asks (nothing is billed)."
)


def request_from(asked: VideoAsk, settings: Settings) -> Intake:
    """The checked request for what the caller asked (``InputError`` naming the fix), its
    provider chosen: the one asked for, else the one its mode or scene needs, else the
    configured one. Needs no running engine: interfaces refuse bad input before starting one."""
    provider = choose_provider(
        explicit=asked.provider, mode=asked.mode, scene=asked.scene, default=settings.provider
    )
    return build_request(asked, provider=provider)


class Engine:
    """Submits, tracks and finishes tasks; see the package docstring for the contract.

    ``providers(name)`` and ``clients(name)`` give the adapter and the HTTP client of a provider
    (built lazily by the app); ``storage`` is the object store, when configured.
    ``attach(task_group)`` must be called before anything is submitted: watchers run there,
    outliving the callers that started them.
    """

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        providers: ProviderFactory,
        clients: ClientFactory,
        clock: Callable[[], float] = time.time,
        retry_policy: RetryPolicy | None = None,
        first_poll_seconds: float = FIRST_POLL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        lease_seconds: float | None = None,
        conform: Conform | None = None,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        #: The object store (``VIDEOGEN_STORAGE_URL``), None when not configured.
        self.storage = storage
        ctx = self._ctx = Context(
            settings,
            providers,
            clients,
            clock=clock,
            retry=retry_policy,
            first_poll=first_poll_seconds,
            heartbeat=heartbeat_seconds,
            lease_seconds=settings.lease_seconds if lease_seconds is None else lease_seconds,
            conform=conform,
            storage=storage,
        )
        book = self._book = TaskBook(ledger, clock)
        leases = self._leases = Leases(ctx, book)
        #: This engine's name in the ledger's leases.
        self.holder = leases.holder
        self._poller = Poller(ctx, book)
        self._finisher = Finisher(ctx, book, self._poller)
        self._queue = Queue(ctx, book)
        self._tracker = Tracker(ctx, book, leases, self._poller, self._finisher, self._queue)
        self._submitter = Submitter(ctx, book, leases, self._tracker, self._queue)
        self._tracker.sender = self._submitter
        self._delivery = Delivery(ctx, book, leases)

    @property
    def _retry(self) -> RetryPolicy:
        return self._ctx.policy

    @_retry.setter
    def _retry(self, policy: RetryPolicy) -> None:
        self._ctx.retry = policy

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, group: TaskGroup, *, resume: bool = True) -> int:
        """Run watchers in ``group``; with ``resume``, pick up every unfinished ledger task
        submitted from this origin (see the package docstring). Returns how many."""
        return self._tracker.attach(group, resume=resume)

    @property
    def watching(self) -> int:
        """How many tasks are being polled or finished right now."""
        return self._book.watching

    def stop_waiting(self) -> None:
        """Graceful shutdown, first step: every caller waiting on a task gets it now as it
        stands (a pending task to check later), and later waits return at once."""
        self._tracker.stop_waiting()

    def hand_back(self) -> None:
        """Graceful shutdown, last step (the watchers are cancelled): release every lease this
        engine holds, so other processes take its tasks over at once."""
        self._leases.release_all()

    async def wait_idle(self) -> None:
        """Return when no task is being watched (graceful shutdown, tests, benchmarks)."""
        await self._book.wait_idle()

    # -- the interface ------------------------------------------------------------------------

    async def generate(
        self,
        request: GenerationRequest,
        *,
        wait_seconds: float | None,
        on_progress: ProgressCallback | None = None,
        new: bool = False,
        owner: str | None = None,
        on_submitted: Callable[[Task], None] | None = None,
    ) -> Task:
        """Submit (or reuse a duplicate), then wait up to ``wait_seconds`` (None: until done).

        A duplicate delivers the video where this request asks (its folder and file name): a
        copy of the saved file, or a fresh download when that file is gone. ``on_submitted``
        hears of the task as soon as it is recorded and sent (an interrupted wait can name it).
        """
        notes: list[str] = []
        task = await self._submitter.submit(
            request, notes, new=new, owner=owner, wait_seconds=wait_seconds
        )
        if on_submitted is not None:
            on_submitted(self._answer(task.model_copy(), notes))
        if task.status == "completed":  # a duplicate of a finished task
            task = await self._delivery.reopen_if_lost(task, notes, destination=request)
        if not task.terminal:
            task = await self._tracker.wait(task, wait_seconds, on_progress)
        delivery = self._delivery
        if task.status == "completed" and foreign(self.settings, task) is None:
            task = await delivery.deliver(task, request, notes)
        elif not task.terminal and delivery.destination_of(task) != delivery.destination_of(
            request
        ):
            notes.append(ELSEWHERE_NOTE)
        return self._answer(task, notes)

    async def submit(
        self,
        request: GenerationRequest,
        *,
        new: bool = False,
        owner: str | None = None,
        wait_seconds: float | None = None,
    ) -> Task:
        """Check the output folder, send the request once and start tracking it.

        ``OutputError`` before anything is recorded or sent when the folder cannot be made or
        written. Refusals (rate limits) are retried for at most ``wait_seconds`` (None: the
        default ``SUBMIT_RETRY_SECONDS``; never under ``SUBMIT_RETRY_FLOOR_SECONDS``).
        An identical request (same ``dedupe_key``, owner and origin) within
        ``settings.dedupe_seconds`` returns the earlier task with a note, unless it
        failed/expired/unknown or ``new``; a duplicate whose save failed is moved to this
        request's output folder and saved again.
        """
        notes: list[str] = []
        task = await self._submitter.submit(
            request, notes, new=new, owner=owner, wait_seconds=wait_seconds
        )
        return self._answer(task, notes)

    async def check(
        self,
        task_id: str,
        *,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
        owner: str | None = None,
        output_dir: str | None = None,
    ) -> Task:
        """The task as it stands after waiting up to ``wait_seconds`` for it to finish.

        A task that is not done and not watched (a watcher gave up, a download failed, the
        tracker is off) gets a watcher again, so checking is also how a user retries.
        ``output_dir`` moves a task whose video is not saved yet (e.g. ``ready`` after a failed
        save) to that folder (checked like ``submit`` checks it: ``OutputError``). A completed
        task whose file is gone (deleted, moved, replaced by a link) is said so and downloaded
        again while the provider still has it. A save this call asked for (an ``output_dir``
        for a made video, or a lost file) is waited for whatever ``wait_seconds`` says: the
        answer says how it went. A task from another origin is returned as it stands, with a
        note.
        """
        notes: list[str] = []
        task = self._book.get(task_id, owner=owner)
        elsewhere = foreign(self.settings, task)
        saved_before = task.status == "completed"
        if saved_before and elsewhere is None:
            task = await self._delivery.reopen_if_lost(task, notes)
        if task.terminal:
            if output_dir is not None and task.status == "completed":
                notes.append(f"The video is already saved at {task.local_path}; the output "
                             "folder given was not used.")  # fmt: skip
            return self._answer(task, notes)
        if elsewhere is not None:
            return self._answer(task, [elsewhere])
        save_now = task.status == "ready" and (output_dir is not None or saved_before)
        if output_dir is not None:
            folder = await anyio.to_thread.run_sync(prepare_folder, Path(output_dir))
            task = self._tracker.retarget(task, str(folder), notes)
        task = await self._tracker.wait(task, None if save_now else wait_seconds, on_progress)
        return self._answer(task, notes)

    def next_poll_in(self, task_id: str) -> float | None:
        """Seconds until this engine next polls the provider for the task (0 when a poll is
        due or under way); None when it is not polling it (done, foreign, or another process
        holds it). A client asking for news more often than this learns nothing new."""
        return self._poller.next_poll_in(task_id)

    def get(self, task_id: str, *, owner: str | None = None) -> Task:
        """The task as the ledger has it (``TaskNotFound``), waiting: with its place in line."""
        return self._queue.placed(self._book.get(task_id, owner=owner))

    def list_tasks(self, *, limit: int = 20, owner: str | None = None) -> list[Task]:
        """The most recent tasks, newest first (waiting ones with their place in line)."""
        return [self._queue.placed(t) for t in self.ledger.recent(limit=limit, owner=owner)]

    async def detect_subjects(
        self, image: str, *, provider: ProviderName | None = None, wait_seconds: float = 30
    ) -> SubjectReport:
        """OmniHuman subject detection (masks, largest first) and recognition (polled within
        ``wait_seconds``), for choosing who speaks before a billed video is submitted."""
        return await detect_subjects(self._ctx, image, provider, wait_seconds)

    async def poster(self, task: Task) -> Task:
        """The task with a poster frame (a small JPEG beside the video, in ``.posters``), made now
        if it has none yet. Posters are made when an interface that shows them asks, not when a
        video is saved: a tracker finishing many tasks at once should not decode them all."""
        return await self._finisher.poster(task)

    async def cancel(self, task_id: str, *, owner: str | None = None) -> Task:
        """Cancel a task for its caller (``TaskNotFound``); returns it as recorded.

        A task still waiting its turn (``engine.queue``) ends at once, ``failed`` with kind
        ``cancelled`` (nothing was sent, nothing billed). A task still queued at a provider that
        can cancel (Volcengine ``CVCancelTask``) is cancelled there and recorded ``failed`` with
        kind ``cancelled`` (nothing billed). Any other unfinished task only gets
        ``cancelled_at``: the provider may still bill it, and the engine still saves the video,
        so ``check`` shows it. A finished task is left as it is. The provider's refusal, if any,
        is in the returned task's notes.
        """
        task, why = await cancel_task(self._ctx, self._book, self._queue, task_id, owner)
        return task if why is None else self._answer(task, [why])

    async def saved_video(self, task: Task, limit: int) -> bytes | int | None:
        """A completed task's saved MP4 for serving (``saved.read_video``: the file, else the
        stored object; its size when over ``limit``; None when neither is there)."""
        return await read_video(task, self.storage, limit)

    def _answer(self, task: Task, notes: list[str]) -> Task:
        """The task as one answer gives it: with what this answer has to say, a fresh link to
        its stored video and, waiting, its place in line (never stored)."""
        task.notes = notes
        return self._queue.placed(add_link(self._ctx, task))

    def poll_interval(self, task: Task) -> float:
        """How soon ``task`` may change (seconds), on the watcher's own schedule: the first poll
        after the submit, then the poll interval (slowed after ``max_poll_attempts``) while the
        provider works, and a ledger re-read while the video is being saved."""
        return self._poller.interval(task)
