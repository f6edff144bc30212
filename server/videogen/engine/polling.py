"""Polling: one task's provider status, asked on a schedule until the provider is done.

The first poll comes ``first_poll`` after the submit; when the next ones come is
``videogen.schedule``'s call (what earlier tasks of the same origin, mode and clip took, the
provider's progress and hint, slowing after ``max_poll_attempts``), until
``GIVE_UP_AFTER_SECONDS`` (the task is kept as it is). A transient error is shown on the task and
polled through, more slowly; a provider's definitive word (failure, refusal, "not found" at the
task's own origin) is final.
"""

from __future__ import annotations

import logging
from typing import Final

import anyio

from videogen.catalog import DURATIONS
from videogen.errors import (
    CapabilityNotEnabled,
    CredentialsError,
    GenerationFailed,
    LedgerError,
    ProviderError,
    TaskExpired,
    VideogenError,
)
from videogen.models import Task, TaskError
from videogen.providers.base import PollResult
from videogen.retry import call_with_retries
from videogen.schedule import (
    HISTORY_KEPT,
    SLOW_POLL_SECONDS,
    Expected,
    accepted_at,
    after_error,
    expect,
    next_delay,
    same_clip,
)

from .book import TaskBook, Watcher
from .context import Context, keep_ids, task_error, task_ref

log = logging.getLogger(__name__)

#: The watcher gives up after the providers' task retention (12–24 h): the task is kept as it
#: is. (When to poll until then: ``videogen.schedule``.)
GIVE_UP_AFTER_SECONDS: Final = 24 * 3600.0
#: What earlier tasks took is read from the ledger again after this long (sooner when one of
#: this engine's tasks gets ready).
HISTORY_FRESH_SECONDS: Final = 60.0
#: A process that does not hold a task's lease re-reads the ledger at most this far apart.
FOLLOWER_READ_SECONDS: Final = 1.0

EXPIRED_MESSAGE: Final = (
    "The provider no longer knows this task (it expired or passed its retention): submit the "
    "request again."
)


class History:
    """What earlier finished tasks took, per (origin, mode, clip), read from the ledger at most
    every ``HISTORY_FRESH_SECONDS`` (what the poll schedule learns from)."""

    def __init__(self, ctx: Context, book: TaskBook) -> None:
        self._ctx = ctx
        self._book = book
        #: (expectation, read at ``anyio.current_time()``) per kind.
        self._cache: dict[tuple[str, str, int], tuple[Expected | None, float]] = {}

    def expected(self, task: Task) -> Expected | None:
        """What earlier finished tasks of the task's origin, mode and clip length took; None
        without enough (or without an origin)."""
        if task.origin is None:
            return None
        kind = _kind(task)
        now = anyio.current_time()
        cached = self._cache.get(kind)
        if cached is not None and now - cached[1] < HISTORY_FRESH_SECONDS:
            return cached[0]
        try:
            times = self._book.ledger.finish_times(
                task.origin,
                task.request.mode,
                same_clip(DURATIONS, task.request.duration),
                limit=HISTORY_KEPT,
            )
        except LedgerError:  # a busy ledger: the fixed schedule this time
            log.warning("could not read earlier tasks' durations", exc_info=True)
            return None
        expected = expect(times)
        self._cache[kind] = (expected, now)
        return expected

    def forget(self, task: Task) -> None:
        """A task of this kind finished: learn from it next time."""
        self._cache.pop(_kind(task), None)


def _kind(task: Task) -> tuple[str, str, int]:
    return (task.origin or "", task.request.mode, task.request.provider_seconds)


class Poller:
    """Polls tasks and records what the provider says."""

    def __init__(self, ctx: Context, book: TaskBook) -> None:
        self._ctx = ctx
        self._book = book
        self._history = History(ctx, book)

    async def poll(self, task: Task) -> PollResult:
        """Ask the provider once (with the retry policy for transient errors)."""
        provider = self._ctx.providers(task.provider)
        ref = task_ref(task)
        return await call_with_retries(lambda: provider.poll(ref), policy=self._ctx.policy)

    async def until_done(self, watcher: Watcher, task: Task) -> Task:
        """Poll a queued or running task until it is ready, failed, expired or stopped."""
        clock, polls = self._ctx.clock, 0
        delay = self._ctx.first_poll if clock() - task.updated_at < 5 else 0.0
        # The interval runs from one poll's start to the next one's, so the polls keep their
        # cadence instead of drifting later by a round trip each time.
        next_poll = watcher.next_poll = anyio.current_time() + delay
        while task.status in ("queued", "running"):
            if clock() - task.created_at > GIVE_UP_AFTER_SECONDS:
                return self.stop(task, "gave up: the task outlived provider retention")
            await anyio.sleep(max(0.0, next_poll - anyio.current_time()))
            sent = anyio.current_time()
            polls += 1
            try:
                result = await self.poll(task)
            except VideogenError as exc:
                task, ended = self._poll_failed(task, exc)
                if ended:
                    return task
                delay = after_error(delay, self._ctx.settings.poll_interval)
                next_poll = watcher.next_poll = anyio.current_time() + delay
                continue
            if result.status == "expired":
                return self.forgotten(task, result.error.message if result.error else None)
            watcher.last_poll = result
            task = self.apply(task, result)
            if task.status not in ("queued", "running"):
                self._history.forget(task)
                break
            delay = self.next_delay(task, result, polls, anyio.current_time() - sent)
            # A provider's hint counts from its answer; the schedule's gap from the poll's start.
            next_poll = (anyio.current_time() if result.poll_after is not None else sent) + delay
            watcher.next_poll = next_poll
        return task

    def _poll_failed(self, task: Task, exc: VideogenError) -> tuple[Task, bool]:
        """Record a poll that raised; True when watching ends with it."""
        if isinstance(exc, (CredentialsError, CapabilityNotEnabled)):
            # Keep the task: fixing the keys and checking again picks it up where it is.
            return self.stop(task, error=exc), True
        if isinstance(exc, TaskExpired):
            return self.forgotten(task, exc.message), True
        if not isinstance(exc, ProviderError):
            raise exc
        if not exc.retryable:
            # The provider's definitive word on this task (a failure, a refusal, an error code
            # that repeating will not change): re-polling cannot help.
            return self._book.update(task, "failed", error=task_error(exc)), True
        # Unavailable or rate limited after retries: keep polling, more slowly, and show the
        # error meanwhile.
        task.error = task_error(exc)
        return self._book.save(task), False

    def forgotten(self, task: Task, message: str | None) -> Task:
        """The provider says it does not know the task: final (it was sent to this very
        origin, the only kind polled), unless it was cancelled meanwhile."""
        recorded = self._book.refresh(task.id)
        if recorded.terminal:  # cancelled meanwhile (``cancel``): that is why it is not found
            return recorded
        error = TaskError(kind="expired", message=message or EXPIRED_MESSAGE)
        return self._book.update(task, "expired", error=error)

    def next_delay(
        self, task: Task, result: PollResult, polls: int, since_sent: float = 0.0
    ) -> float:
        """The gap to the next poll of an unfinished task (``videogen.schedule``), from what
        earlier tasks of its kind took and the provider's progress and hint; ``since_sent``: how
        long ago the poll that answered ``result`` started (the gap counts from there)."""
        settings = self._ctx.settings
        return next_delay(
            elapsed=self._ctx.clock() - since_sent - accepted_at(task),
            interval=settings.poll_interval,
            expected=self._history.expected(task),
            progress=result.progress,
            poll_after=result.poll_after,
            polls=polls,
            max_polls=settings.max_poll_attempts,
        )

    def apply(self, task: Task, result: PollResult) -> Task:
        """Record one poll's answer; writes the ledger only when something changed."""
        if result.request_id:
            task.request_ids = keep_ids(task.request_ids, result.request_id)
        match result.status:
            case "queued" | "running":
                changed = task.status != result.status or task.progress != result.progress
                if not changed and task.error is None:
                    return task
                task.progress = result.progress
                task.error = None
                return self._book.update(task, result.status)
            case "succeeded":
                task.video_url = result.video_url
                task.video_url_expires_at = result.url_expires_at
                task.progress = 1.0
                task.error = None
                return self._book.update(task, "ready")
            case "failed":
                error = result.error or GenerationFailed(
                    f"The provider reports the task failed (status {result.raw_status!r}): "
                    "submit it again, perhaps with a different prompt or inputs.",
                    provider=task.provider,
                )
                return self._book.update(task, "failed", error=task_error(error))
            case "expired":
                # The adapter's message already says what happened and to submit again.
                message = result.error.message if result.error else EXPIRED_MESSAGE
                expired = TaskError(kind="expired", message=message)
                return self._book.update(task, "expired", error=expired)

    def stop(self, task: Task, why: str = "", *, error: VideogenError | None = None) -> Task:
        """Stop watching, keeping the task as it is with the reason recorded."""
        task.error = task_error(error) if error else TaskError(kind="stopped", message=why)
        return self._book.save(task)

    def next_poll_in(self, task_id: str) -> float | None:
        """Seconds until this engine next polls the provider for the task (0 when a poll is
        due or under way); None when it is not polling it."""
        watcher = self._book.watcher(task_id)
        if watcher is None or watcher.next_poll is None:
            return None
        return max(0.0, watcher.next_poll - anyio.current_time())

    def interval(self, task: Task) -> float:
        """How soon ``task`` may change (seconds), on the watcher's own schedule: the first poll
        after the submit, then the poll interval (slowed after ``max_poll_attempts``) while the
        provider works, and a ledger re-read while the video is being saved."""
        settings = self._ctx.settings
        if task.status not in ("queued", "running"):
            return min(FOLLOWER_READ_SECONDS, settings.poll_interval)
        learned = self.next_poll_in(task.id)  # this engine's own (learned) schedule
        if learned is not None and learned > settings.poll_interval:
            return learned  # nothing new until then
        age = self._ctx.clock() - task.created_at
        if age < self._ctx.first_poll:
            return self._ctx.first_poll
        if age > settings.poll_interval * settings.max_poll_attempts:
            return SLOW_POLL_SECONDS
        return settings.poll_interval
