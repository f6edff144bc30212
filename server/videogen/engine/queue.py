"""The account-wide queue: at most so many tasks of one kind at a provider at once, honoured by
every process and replica that shares the ledger.

**Buckets.** A task counts against ``Task.bucket``: where it is sent (its origin: provider,
endpoint and account) and its mode, because providers count tasks in flight per account and
model (each Jimeng mode is a model of its own). A task *occupies* its bucket while it is
``submitting``, ``queued`` or ``running`` (``models.OCCUPYING_STATUSES``), counted from the
ledger, so every process sees the same count; ``ready`` is done at the provider and does not.

**Limits.** A bucket's limit is the smaller of

- the configured one, ``VIDEOGEN_MAX_CONCURRENT`` or ``VIDEOGEN_MAX_CONCURRENT_<PROVIDER>``
  (``Settings.concurrency_limit``), and
- the learned one: when the provider refuses a submit with its concurrency error
  (``RateLimited.in_flight``: Volcengine's and TokenOps' 50430), the limit becomes the number
  of the bucket's tasks then at the provider (``queued``/``running``, at least 1), stored in the
  ledger (``Ledger.learn_limit``) so every process honours it. It never rises on a refusal, and
  it holds for ``LEARNED_LIMIT_SECONDS`` after the bucket's last refusal; then it is dropped
  (the configured limit, or none, applies) until the provider refuses again. An account whose
  limit was raised is so used fully again within the hour, at the cost of one refusal an hour
  when it was not.

With neither, nothing waits: a request is sent at once (and a refusal teaches a limit).

**Waiting.** A request in a limited bucket is recorded (before anything is sent, as always:
dedupe and the spending guard unchanged) as ``waiting``, and takes its turn in the order the
tasks were recorded. Taking a turn is one atomic ledger step (``Ledger.take_turn``: count the
bucket's occupying tasks, check this task is among the first waiting that fit, move it to
``submitting``), so processes racing for a place never overfill a bucket. A waiting task holds
its place only while its lease is live: a process that stopped does not block the line, and a
running tracker (``claim_due``), a restart or a ``check`` of the task puts it back in line.

**Waking.** The one wait is ``Queue.wait_for_room``: a task of the bucket that stops occupying the
provider in this process wakes that bucket's waiters here at once (``TaskBook.freed``); a
change made by another process is seen by re-reading the ledger every
``context.QUEUE_RECHECK_SECONDS``. The ledger's change feed (``Ledger.changes``, PostgreSQL's
``NOTIFY``) would plug in there, to wake other replicas' waiters at once.

**Refused anyway.** A concurrency refusal (another tool on the account, a limit lowered) puts
the task back to ``waiting`` — nothing was billed and no 50430 reaches the caller — and it
waits at least the retry back-off (``retry.wait_for``, honouring Retry-After) before its next
turn, so a bucket the provider keeps refusing is not hammered.
"""

from __future__ import annotations

from typing import Final

import anyio

from videogen.errors import RateLimited
from videogen.models import QueuePlace, Task, TaskError

from .book import TaskBook
from .context import Context

#: A learned limit holds this long after the bucket's last concurrency refusal (seconds).
LEARNED_LIMIT_SECONDS: Final = 3600.0

CANCELLED_WAITING_MESSAGE: Final = (
    "Cancelled while waiting its turn: nothing was sent, so nothing was billed. Submit the "
    "request again to make the video."
)
REFUSED_NOTE: Final = (
    "{provider} refused it: too many tasks in flight ({code}); it waits its turn again, "
    "{limit} at a time. Nothing was billed."
)


class Queue:
    """This engine's view of the buckets: their limits, turns, places and refusals."""

    def __init__(self, ctx: Context, book: TaskBook) -> None:
        self._ctx = ctx
        self._book = book

    def limit(self, task: Task) -> int | None:
        """The bucket's limit now (configured or learned, the smaller), or None."""
        learned = self._book.ledger.learned_limit(task.bucket, since=self._learned_since())
        limits = [n for n in (self._configured(task), learned) if n is not None]
        return min(limits) if limits else None

    def try_turn(self, task: Task) -> Task | None:
        """The waiting task moved to ``submitting`` if it is its turn now, else None."""
        return self._book.take_turn(
            task, limit=self._configured(task), learned_since=self._learned_since()
        )

    async def turn(self, task: Task) -> Task:
        """Wait for the waiting task's turn: returns it ``submitting`` (its place taken), or as
        it stands once it stopped waiting otherwise (cancelled)."""
        while True:
            freed = self._book.freed(task.bucket)  # before the check: no wake-up is missed
            moved = self.try_turn(task)
            if moved is not None:
                return moved
            task = self._book.refresh(task.id)
            if task.status != "waiting":
                return task
            await self.wait_for_room(freed)

    async def wait_for_room(self, freed: anyio.Event) -> None:
        """The queue's one wait: until a task of the bucket stops occupying the provider
        (``freed``: set by this process's writes, and by other processes' as the ledger's change
        feed tells of them), or ``queue_recheck`` seconds for what a feed cannot tell."""
        with anyio.move_on_after(self._ctx.queue_recheck):
            await freed.wait()

    def refused(self, task: Task, refusal: RateLimited) -> Task:
        """A concurrency refusal of the task's submit: learn the bucket's limit from the tasks
        at the provider and put the task back in line (nothing was billed)."""
        ledger, now = self._book.ledger, self._ctx.clock()
        learned = ledger.learn_limit(
            task.bucket, ledger.at_provider(task.bucket), now=now, since=self._learned_since()
        )
        configured = self._configured(task)
        limit = learned if configured is None else min(configured, learned)
        note = REFUSED_NOTE.format(provider=task.provider, code=refusal.code, limit=limit)
        return self._book.update(task, "waiting", note=note)

    def cancel(self, task: Task) -> Task | None:
        """End a waiting task (cancelled, nothing billed); None when it no longer waits."""
        task.cancelled_at = self._ctx.clock()
        error = TaskError(kind="cancelled", message=CANCELLED_WAITING_MESSAGE)
        return self._book.end_waiting(task, "failed", error)

    def placed(self, task: Task) -> Task:
        """``task`` with its place in line when it is waiting (for one answer)."""
        if task.status == "waiting":
            place = self._book.ledger.queue_place(task, now=self._ctx.clock())
            task.queue_place = QueuePlace(place=place, limit=self.limit(task))
        return task

    def _configured(self, task: Task) -> int | None:
        return self._ctx.settings.concurrency_limit(task.provider)

    def _learned_since(self) -> float:
        return self._ctx.clock() - LEARNED_LIMIT_SECONDS
