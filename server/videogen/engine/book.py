"""The task book: the ledger as the engine's parts use it. Saving a task here also wakes
everyone waiting on it (its watcher's waiters), in one call: nothing else publishes. A task
that stops occupying the provider also wakes the tasks of this process waiting in its queue
(``engine.queue``).

It sits underneath every other engine module and imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio

from videogen.ledger import Change, Ledger
from videogen.models import OCCUPYING_STATUSES, StatusEvent, Task, TaskError, TaskStatus
from videogen.providers.base import PollResult


@dataclass
class Watcher:
    """One task's poll loop, shared by every caller waiting for that task."""

    task: Task
    last_poll: PollResult | None = None
    #: When (``anyio.current_time()``) the watcher polls the provider next, while it waits.
    next_poll: float | None = None
    #: A new output folder asked for while the watcher runs (a 1-tuple: the folder may be None).
    retarget: tuple[str | None] | None = None
    #: True while nothing but this process can have written files for the task: it recorded
    #: the task itself and has held its lease since. A killed run's leftovers belong to a
    #: resumed task (``fresh`` False), so only those sweep the folder before saving.
    fresh: bool = False
    #: True once the loop has ended (``TaskBook.close``).
    finished: bool = False
    #: The events below are made when someone first waits on them (most wakes have no one
    #: waiting; a thousand watchers need not hold two thousand events).
    _changed: anyio.Event | None = None
    _done: anyio.Event | None = None

    @property
    def changed(self) -> anyio.Event:
        """Set at the task's next change."""
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    async def wait_done(self) -> None:
        """Return once the loop has ended."""
        if not self.finished:
            if self._done is None:
                self._done = anyio.Event()
            await self._done.wait()

    def _end(self) -> None:
        self.finished = True
        if self._done is not None:
            self._done.set()
        self._wake(self.task)

    def _wake(self, task: Task) -> None:
        self.task = task
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()


class TaskBook:
    """Reads and writes tasks, and keeps the watchers that wait on them."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self._clock = clock
        self._watchers: dict[str, Watcher] = {}
        #: Per bucket: set (and replaced) when a task of it stops occupying the provider.
        self._freed: dict[str, anyio.Event] = {}
        #: Set (and replaced) when the ledger's change feed tells of a write by any process.
        self._heard = anyio.Event()

    # -- tasks --------------------------------------------------------------------------------

    def get(self, task_id: str, *, owner: str | None = None) -> Task:
        """The task as the ledger has it (``TaskNotFound``)."""
        return self.ledger.get(task_id, owner=owner)

    def save(self, task: Task) -> Task:
        """Record ``task`` (stamped now) and wake whoever waits on it."""
        task.updated_at = self._clock()
        self.ledger.save(task)
        self._wake(task)
        return task

    def update(
        self,
        task: Task,
        status: TaskStatus,
        *,
        error: TaskError | None = None,
        note: str | None = None,
    ) -> Task:
        """Move ``task`` to ``status`` (its history says so), with ``error`` when given, and
        save it. ``note`` is added to the history even when the status stays."""
        if status != task.status or note is not None:
            task.history.append(StatusEvent(status=status, at=self._clock(), note=note))
        task.status = status
        if error is not None:
            task.error = error
        return self.save(task)

    def take_turn(self, task: Task, *, limit: int | None, learned_since: float) -> Task | None:
        """The ``waiting`` task moved to ``submitting`` if it is its turn in its queue
        (``Ledger.take_turn``: one atomic step), else None (nothing written)."""
        moved = self._moved(task, "submitting")
        if not self.ledger.take_turn(
            moved, limit=limit, learned_since=learned_since, now=self._clock()
        ):
            return None
        self._wake(moved)
        return moved

    def end_waiting(self, task: Task, status: TaskStatus, error: TaskError) -> Task | None:
        """The ``waiting`` task moved to ``status`` with ``error`` if it still waits (a cancel
        racing its turn), else None (nothing written)."""
        moved = self._moved(task, status)
        moved.error = error
        if not self.ledger.save_if_waiting(moved):
            return None
        self._wake(moved)
        return moved

    def _moved(self, task: Task, status: TaskStatus) -> Task:
        moved = task.model_copy(deep=True)
        moved.updated_at = self._clock()
        moved.history.append(StatusEvent(status=status, at=moved.updated_at))
        moved.status = status
        return moved

    def freed(self, bucket: str) -> anyio.Event:
        """Set when a task of ``bucket`` next stops occupying the provider (in this process)."""
        event = self._freed.get(bucket)
        if event is None:
            event = self._freed[bucket] = anyio.Event()
        return event

    def written(self) -> anyio.Event:
        """Set when the ledger next tells of a task written by any process (``heard``); never,
        on a ledger that does not notify: whoever waits on it re-reads on a timer as well."""
        return self._heard

    def heard(self, changes: Iterable[Change]) -> None:
        """The ledger's change feed told of these writes (by this process or another): wake
        whoever re-reads the ledger, and the queue of a bucket a task stopped occupying."""
        heard, self._heard = self._heard, anyio.Event()
        heard.set()
        for change in changes:
            if change.bucket is not None and change.status not in OCCUPYING_STATUSES:
                freed = self._freed.pop(change.bucket, None)
                if freed is not None:
                    freed.set()

    def refresh(self, task_id: str) -> Task:
        """Re-read a task another writer may have changed; its waiters hear of a change."""
        task = self.ledger.get(task_id)
        watcher = self._watchers.get(task_id)
        if watcher is not None and (watcher.task.updated_at, watcher.task.status) != (
            task.updated_at,
            task.status,
        ):
            watcher._wake(task)
        return task

    def wake_all(self) -> None:
        """Wake every waiter of every task (they look again at why they wait)."""
        for watcher in list(self._watchers.values()):
            watcher._wake(watcher.task)

    def _wake(self, task: Task) -> None:
        watcher = self._watchers.get(task.id)
        if watcher is not None:
            watcher._wake(task)
        if task.status not in OCCUPYING_STATUSES:
            freed = self._freed.pop(task.bucket, None)
            if freed is not None:
                freed.set()

    # -- watchers -----------------------------------------------------------------------------

    def watcher(self, task_id: str) -> Watcher | None:
        return self._watchers.get(task_id)

    def open(self, task: Task, *, fresh: bool = False) -> Watcher:
        """A new watcher for ``task`` (the caller starts its loop)."""
        watcher = self._watchers[task.id] = Watcher(task, fresh=fresh)
        return watcher

    def close(self, watcher: Watcher) -> None:
        """The watcher's loop ended: its waiters return with the task as it stands."""
        self._watchers.pop(watcher.task.id, None)
        watcher._end()

    @property
    def watching(self) -> int:
        return len(self._watchers)

    async def wait_idle(self) -> None:
        while self._watchers:
            await next(iter(self._watchers.values())).wait_done()
