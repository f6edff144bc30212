"""Tracking: one **watcher** per task (an anyio task in the tracker's task group, owned by
``app.open_app``) polls it until it is done and then finishes it. Callers never poll: they wait
on the task's watcher with their own budget and get the task as it stands when it ends, so a
caller that is cancelled or runs out of time abandons nothing.

A ``waiting`` task's watcher first waits for its turn in the queue and sends it (``Sender``,
the submitter). On start the tracker resumes every unfinished task of this origin (waiting ones
take their turn again), and while it runs it takes over
the ones whose lease is free or ran out (``claim_due``, a few times per lease length): their
holder died or stopped, so another replica finishes them without being restarted. A
``submitting`` row found then means a process died between writing the row and reading the
provider's answer: the task becomes ``unknown`` (it may or may not be billed) and is never
resent. ``stop_waiting`` (graceful shutdown) ends every caller's wait at once with the task as
it stands.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from videogen.catalog import PROVIDERS
from videogen.errors import LedgerError, VideogenError
from videogen.models import Task, TaskError, TaskStatus
from videogen.report import describe

from .book import TaskBook, Watcher
from .context import Context, Progress, ProgressCallback, task_error, uncertain
from .finishing import Finisher
from .leases import Leases
from .origins import foreign, origin_of
from .polling import Poller
from .queue import Queue
from .uploads import release_uploads

log = logging.getLogger(__name__)

ACTIVE_STATUSES: tuple[TaskStatus, ...] = ("waiting", "submitting", "queued", "running", "ready")

#: How long one wait for the ledger's change feed lasts before it is renewed.
HEAR_SECONDS = 5.0

BUSY_ELSEWHERE_NOTE = (
    "Another process is saving this task right now, so its folder was not changed; if that "
    "save fails, check it again with the folder."
)


class Sender(Protocol):
    """Sends a waiting task when its turn comes (``Submitter``)."""

    async def send_waiting(self, task: Task) -> Task: ...


class Tracker:
    """Starts, runs and waits on the tasks' watchers."""

    def __init__(
        self,
        ctx: Context,
        book: TaskBook,
        leases: Leases,
        poller: Poller,
        finisher: Finisher,
        queue: Queue,
    ) -> None:
        self._ctx = ctx
        self._queue = queue
        self._book = book
        self._leases = leases
        self._poller = poller
        self._finisher = finisher
        self._group: TaskGroup | None = None
        #: Tasks whose submit this engine has in flight, set when the answer is recorded.
        self.sending: dict[str, anyio.Event] = {}
        #: Sends waiting tasks (set by the facade: the submitter is built after the tracker).
        self.sender: Sender | None = None
        #: Set by ``stop_waiting``: every wait returns at once.
        self._stopping = False

    def attach(self, group: TaskGroup, *, resume: bool) -> int:
        """Run watchers in ``group``; with ``resume``, pick up every unfinished task submitted
        from this origin. Returns how many."""
        self._group = group
        group.start_soon(self._leases.renew_forever, name="renew task leases")
        if self._book.ledger.notifies:
            group.start_soon(self._listen_forever, name="hear task changes")
        if not resume:
            return 0
        active = self._book.ledger.with_status(ACTIVE_STATUSES)
        tasks = [t for t in active if foreign(self._ctx.settings, t) is None]
        for task in tasks:
            self.watch(task)
        group.start_soon(self._take_over_forever, name="take over due tasks")
        return len(tasks)

    async def _listen_forever(self) -> None:
        """Hear every task write of every process (PostgreSQL's NOTIFY) and wake whoever waits
        on the ledger: a caller following a task another replica works on, the queue when a
        task of its bucket ends. Their timers stay the safety net for what a feed misses."""
        with self._book.ledger.changes() as feed:
            while True:
                try:
                    heard = await anyio.to_thread.run_sync(
                        feed.wait, HEAR_SECONDS, abandon_on_cancel=True
                    )
                except LedgerError:  # the feed reconnects; the timers cover the gap
                    log.warning("could not hear task changes", exc_info=True)
                    await anyio.sleep(HEAR_SECONDS)
                    continue
                if heard:
                    self._book.heard(heard)

    async def _take_over_forever(self) -> None:
        """Every lease round, take over the due tasks of this session's origins."""
        origins = sorted({origin_of(self._ctx.settings, p)[0] for p in PROVIDERS})
        while True:
            await anyio.sleep(self._leases.round_seconds)
            try:
                self.take_over_due(origins)
            except LedgerError:  # a busy or closing ledger: the next round tries again
                log.warning("could not look for due tasks", exc_info=True)

    def take_over_due(self, origins: list[str]) -> int:
        """Lease and watch the unfinished tasks of ``origins`` nobody works on (lease free or
        run out); returns how many. A video whose save failed and stopped is not retried here
        (``check`` retries it): its lease is left to run out."""
        taken = 0
        for origin in origins:
            for task in self._leases.claim_due(ACTIVE_STATUSES, origin):
                if task.status == "ready" and task.error is not None:
                    continue
                log.info("taking %s over: nobody was working on it", task.id)
                self.watch(task)
                taken += 1
        return taken

    def stop_waiting(self) -> None:
        """End every wait now, and every later one at once, with the task as it stands (the
        app is stopping); the watchers keep working until they are cancelled."""
        self._stopping = True
        self._book.wake_all()

    def watch(self, task: Task, *, fresh: bool = False) -> Watcher | None:
        """The task's watcher, started if needed; None for a task that is done or foreign.
        ``fresh``: this process recorded the task and has held its lease since."""
        existing = self._book.watcher(task.id)
        if existing is not None:
            return existing
        if task.terminal or foreign(self._ctx.settings, task) is not None:
            return None
        if self._group is None:
            raise RuntimeError("Engine.attach(task_group) was not called (use app.open_app)")
        watcher = self._book.open(task, fresh=fresh)
        self._group.start_soon(self._follow, watcher, name=f"watch {task.id}")
        return watcher

    async def wait(
        self, task: Task, budget: float | None, on_progress: ProgressCallback | None
    ) -> Task:
        """The task after waiting up to ``budget`` seconds (None: until done) for its watcher."""
        watcher = self.watch(task)
        if watcher is None:
            return self._book.get(task.id)
        task_id = task.id
        del task  # the watcher holds the task while it is followed: one copy, not two
        bounded = nullcontext() if budget is None else anyio.move_on_after(max(budget, 0.0))
        with bounded:
            while not watcher.finished and not self._stopping:
                changed = watcher.changed
                if on_progress is None:  # woken by a change (``stop_waiting`` wakes them all)
                    await changed.wait()
                    continue
                with anyio.move_on_after(self._ctx.heartbeat):
                    await changed.wait()
                await on_progress(self._progress(watcher.task))
        return self._book.get(task_id)

    def _progress(self, task: Task) -> Progress:
        task = self._queue.placed(task.model_copy())
        return Progress(
            task_id=task.id,
            status=task.status,
            elapsed=max(0.0, self._ctx.clock() - task.created_at),
            message=describe(task),
            fraction=1.0 if task.status == "completed" else task.progress,
        )

    def retarget(self, task: Task, output_dir: str | None, notes: list[str]) -> Task:
        """Send a not-yet-saved task's video to ``output_dir`` (None: the configured folder)."""
        if task.request.output_dir == output_dir:
            return task
        watcher = self._book.watcher(task.id)
        if watcher is not None:  # applied by the watcher before it saves
            watcher.retarget = (output_dir,)
            return task
        if not self._leases.take(task.id):
            notes.append(BUSY_ELSEWHERE_NOTE)
            return task
        # Leased to this engine now; the watcher the caller starts next keeps the lease.
        task.request = task.request.model_copy(update={"output_dir": output_dir})
        return self._book.save(task)

    async def _follow(self, watcher: Watcher) -> None:
        """Work on the task under its lease, or follow whoever holds it; never raises (it would
        end the app)."""
        task_id = watcher.task.id
        try:
            while not self._leases.take(task_id):
                if (await self._leases.follow(task_id)).terminal:
                    return
            try:
                with self._leases.working_on(task_id):
                    await self._work(watcher, task_id)
            except Exception as exc:  # keep the app alive: record it on the task, stop watching
                if not isinstance(exc, VideogenError):
                    log.exception("watching %s failed", task_id)
                self._record_crash(task_id, exc)
            finally:
                self._book.ledger.release(task_id, self._leases.holder)
        except Exception:
            log.exception("following %s failed", task_id)
        finally:
            self._book.close(watcher)

    async def _work(self, watcher: Watcher, task_id: str) -> None:
        """Poll until the provider is done, then finish (this engine holds the lease)."""
        # A fresh watcher's task is as this engine recorded it: nobody else can have written it
        # since (and one copy of it is held, not two, while it is polled).
        task = watcher.task if watcher.fresh else self._book.refresh(task_id)
        sending = self.sending.get(task_id)
        if sending is not None:  # this engine's own submit: wait for it, not for the grace
            await sending.wait()
            task = self._book.refresh(task_id)
            if task.status == "submitting":  # its answer could not be recorded
                task = self._book.update(task, "unknown", error=uncertain(task))
        if task.status == "waiting":
            assert self.sender is not None, "the facade sets the sender"
            task = await self.sender.send_waiting(task)
        if task.status == "submitting":
            task = await self._orphaned(task)
        if task.status in ("queued", "running"):
            try:
                task = await self._poller.until_done(watcher, task)
            finally:
                watcher.next_poll = None
        task = await release_uploads(self._ctx, self._book, task)  # the provider is done
        while task.status == "ready":
            task = self._apply_retarget(watcher, task)
            task = await self._finisher.finish(watcher, task)
            if watcher.retarget is None:
                break

    def _apply_retarget(self, watcher: Watcher, task: Task) -> Task:
        if watcher.retarget is None:
            return task
        (output_dir,), watcher.retarget = watcher.retarget, None
        task = self._book.get(task.id)
        task.request = task.request.model_copy(update={"output_dir": output_dir})
        return self._book.save(task)

    async def _orphaned(self, task: Task) -> Task:
        """A ``submitting`` row at start: wait out a submit another live process may still be
        making, then (if still unanswered) mark the task ``unknown``. Never resend it."""
        settle_at = task.updated_at + self._ctx.settings.request_timeout + 5
        if self._ctx.clock() < settle_at:
            await anyio.sleep(settle_at - self._ctx.clock())
            task = self._book.get(task.id)
            if task.status != "submitting":
                return task
        return self._book.update(task, "unknown", error=uncertain(task))

    def _record_crash(self, task_id: str, exc: Exception) -> None:
        try:
            task = self._book.get(task_id)
            if isinstance(exc, VideogenError):
                task.error = task_error(exc)
            else:
                task.error = TaskError(kind="internal", message=f"Internal error: {exc!r}")
            self._book.save(task)
        except Exception:
            log.exception("could not record the failure of %s", task_id)
