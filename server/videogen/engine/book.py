"""The task book: the ledger as the engine's parts use it. Saving a task here also wakes
everyone waiting on it (its watcher's waiters), in one call: nothing else publishes.

It sits underneath every other engine module and imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from videogen.ledger import Ledger
from videogen.models import StatusEvent, Task, TaskError, TaskStatus
from videogen.providers.base import PollResult


@dataclass
class Watcher:
    """One task's poll loop, shared by every caller waiting for that task."""

    task: Task
    changed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    last_poll: PollResult | None = None
    #: When (``anyio.current_time()``) the watcher polls the provider next, while it waits.
    next_poll: float | None = None
    #: A new output folder asked for while the watcher runs (a 1-tuple: the folder may be None).
    retarget: tuple[str | None] | None = None
    #: True while nothing but this process can have written files for the task: it recorded
    #: the task itself and has held its lease since. A killed run's leftovers belong to a
    #: resumed task (``fresh`` False), so only those sweep the folder before saving.
    fresh: bool = False

    def _wake(self, task: Task) -> None:
        self.task = task
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


class TaskBook:
    """Reads and writes tasks, and keeps the watchers that wait on them."""

    def __init__(self, ledger: Ledger, clock: Callable[[], float]) -> None:
        self.ledger = ledger
        self._clock = clock
        self._watchers: dict[str, Watcher] = {}

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
        watcher.done.set()
        watcher._wake(watcher.task)

    @property
    def watching(self) -> int:
        return len(self._watchers)

    async def wait_idle(self) -> None:
        while self._watchers:
            await next(iter(self._watchers.values())).done.wait()
