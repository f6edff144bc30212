"""Submitting: one request, one bill.

``submit`` checks the output folder first (created with its parents, proven writable) so a bad
``--output`` fails before anything is sent. Finding a duplicate and recording a new task are one
atomic ledger step (``Ledger.record_new``), after every await that reads the inputs and before
the submit: identical requests at once, from any number of processes, send one submit. The
data dir's room is checked before billing, and so are the spending limits
(``videogen.spending``), inside the transaction that records the task: a request past a limit
is refused with nothing sent or recorded.

A request in a bucket with a concurrency limit (``engine.queue``) is recorded ``waiting``; it is
sent at once when it is its turn, else its watcher waits for its turn and sends it
(``send_waiting``), and the caller waits for the watcher like for any pending task. A
concurrency refusal (50430) puts the task back in line (nothing billed, the limit learned)
instead of failing it: the refusal is learned once every submit of the bucket this engine has in
flight is answered, so the count of tasks at the provider is right.

The submit itself is retried only after a definitive refusal (429, a connection that was never
made), within the caller's budget (at most ``SUBMIT_RETRY_SECONDS``);
each single send is shielded from cancellation so an answer in flight is always recorded, but
the waits between sends are not. Refused every time, or cancelled while waiting to retry, the
task is ``failed`` and nothing was billed. After an ambiguous failure (sent, then dropped or
timed out) it is ``unknown`` and never resent. An accepted submit whose ledger write fails is
retried (bounded) and otherwise reported with the provider's task id (``LedgerError``), so
nothing billed goes untraceable.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, Final

import anyio

from videogen.errors import (
    LedgerError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SubmitUncertain,
    VideogenError,
)
from videogen.models import (
    GenerationRequest,
    StatusEvent,
    Task,
    TaskError,
    TaskStatus,
)
from videogen.models import new_task_id as _new_task_id
from videogen.providers.base import PreparedInputs, Provider, Submitted
from videogen.retry import wait_for
from videogen.spending import Guard

from .book import TaskBook
from .context import Context, task_error, uncertain
from .leases import Leases
from .origins import origin_of
from .preparing import Prepared, Preparer
from .queue import Queue
from .tracking import Tracker
from .uploads import release_uploads

log = logging.getLogger(__name__)

#: Submit retries after definitive refusals stop after this long (or the caller's budget) ...
SUBMIT_RETRY_SECONDS: Final = 30.0
#: ... but a caller that asked for a shorter wait still gets this much (a 50430 often clears
#: in a second or two).
SUBMIT_RETRY_FLOOR_SECONDS: Final = 3.0
#: Recording an accepted (billed) submit is tried this often while the ledger refuses the
#: write (a full disk), waiting from the first delay, doubling (about 8 s in all).
RECORD_ATTEMPTS: Final = 6
RECORD_FIRST_DELAY_SECONDS: Final = 0.25
#: A duplicate request does not return a task in these states.
NOT_REUSED: Final[tuple[TaskStatus, ...]] = ("failed", "expired", "unknown")

UNRECORDED_MESSAGE: Final = (
    "{provider} accepted the request as its task {provider_task_id}, so it is billed, but the "
    "task ledger could not record that: {cause} videogen cannot track this task ({task_id}): "
    "look it up in {provider}'s console by the task id {provider_task_id}; do not submit the "
    "request again before checking there."
)
CANCELLED_MESSAGE: Final = (
    "Cancelled while waiting to retry a submit the provider had refused: nothing was billed. "
    "Submit the request again."
)


class Submitter:
    """Records a request, sends it once and hands the task to the tracker."""

    def __init__(
        self, ctx: Context, book: TaskBook, leases: Leases, tracker: Tracker, queue: Queue
    ) -> None:
        self._ctx = ctx
        self._book = book
        self._leases = leases
        self._tracker = tracker
        self._queue = queue
        self._inputs = Preparer(ctx, book)
        #: Waiting tasks of this engine, with their checked inputs.
        self._waiting: dict[str, Prepared] = {}
        #: Per bucket: one event per submit in flight, set once its answer is recorded.
        self._answering: defaultdict[str, set[anyio.Event]] = defaultdict(set)

    async def submit(
        self,
        request: GenerationRequest,
        notes: list[str],
        *,
        new: bool,
        owner: str | None,
        wait_seconds: float | None,
    ) -> Task:
        """See ``Engine.submit``; a duplicate's note goes to ``notes``."""
        await self._ctx.folders.prepare(self._ctx.folder(request.output_dir))
        prepared = await self._inputs.prepare(request)
        # No await from here to the insert: finding a duplicate and recording this task are one
        # ledger transaction, so identical requests at once make one task (and one submit).
        task, earlier = self._record(request, owner, new=new)
        if earlier is not None:
            return self._reuse(earlier, request, notes)
        if task.status == "waiting":
            moved = self._queue.try_turn(task)
            if moved is None:  # not its turn: its watcher sends it when it is
                self._waiting[task.id] = prepared
                self._tracker.watch(task, fresh=True)
                return task
            task = moved
        sent = self._tracker.sending[task.id] = anyio.Event()
        watched = False
        try:
            with self._leases.working_on(task.id):
                budget = _retry_budget(wait_seconds)
                task = await self._send(task, prepared, budget)
                if task.status == "waiting":  # refused for concurrency: its watcher sends it
                    self._waiting[task.id] = prepared
                watched = not task.terminal and self._tracker.watch(task, fresh=True) is not None
        finally:
            del self._tracker.sending[task.id]
            sent.set()
            if not watched:
                if prepared.checked.staged:  # the submit failed: the provider needs no uploads
                    await release_uploads(self._ctx, self._book, self._book.get(task.id))
                self._leases.release(task.id)
        return task

    async def send_waiting(self, task: Task) -> Task:
        """Wait for a ``waiting`` task's turn and send it (its watcher's part; this engine holds
        its lease). Returns the task as it then stands; a refusal is recorded on it."""
        prepared = self._waiting.pop(task.id, None) or await self._inputs.again(task)
        while prepared is not None and task.status == "waiting":
            await anyio.sleep_until(prepared.not_before)  # the back-off after a refusal
            task = await self._queue.turn(task)
            if task.status != "submitting":
                return task  # cancelled while waiting
            try:
                task = await self._send(task, prepared, SUBMIT_RETRY_SECONDS)
            except VideogenError:
                return self._book.get(task.id)  # recorded on the task
        return task

    def _record(
        self, request: GenerationRequest, owner: str | None, *, new: bool
    ) -> tuple[Task, Task | None]:
        """The new task, recorded (``submitting``, or ``waiting`` in a bucket with a limit;
        leased here) unless an earlier duplicate (returned second) was found instead."""
        ledger = self._book.ledger
        ledger.check_room()
        task = self._new_task(request, owner)
        if self._queue.limit(task) is not None:
            task.status = "waiting"
            task.history = [StatusEvent(status="waiting", at=task.created_at)]
        lease = self._leases.new()
        # The spending limits are checked in the transaction that records the task.
        guard = Guard(self._ctx.settings.spending, now=task.created_at, owner=owner)
        if new:
            ledger.insert(task, lease=lease, guard=guard)
            return task, None
        since = self._ctx.clock() - self._ctx.settings.dedupe_seconds
        sandbox = self._ctx.settings.sandbox  # a sandbox task never answers a real request
        earlier = ledger.record_new(
            task, since=since, exclude=NOT_REUSED, sandbox=sandbox, lease=lease, guard=guard
        )
        return task, earlier

    def _reuse(self, earlier: Task, request: GenerationRequest, notes: list[str]) -> Task:
        """An identical request's answer: the earlier task (``Ledger.record_new`` found it for
        this owner and origin), with a note, watched."""
        notes.append(
            f"An identical request was made {self._ctx.clock() - earlier.created_at:.0f} s ago: "
            f"this is that task ({earlier.id}), not a new one. To generate again (billed "
            "again), set new / --new."
        )
        if earlier.status == "ready" and earlier.error is not None:
            # Its save failed: the same request with another folder is how a user fixes that.
            earlier = self._tracker.retarget(earlier, request.output_dir, notes)
        if not earlier.terminal:
            self._tracker.watch(earlier)
        return earlier

    def _new_task(self, request: GenerationRequest, owner: str | None) -> Task:
        now = self._ctx.clock()
        origin, endpoint = origin_of(self._ctx.settings, request.provider)
        return Task(
            id=_new_task_id(),
            request=request.compact(),  # data URLs abbreviated: the bytes are sent, not kept
            status="submitting",
            created_at=now,
            updated_at=now,
            history=[StatusEvent(status="submitting", at=now)],
            sandbox=self._ctx.settings.sandbox,
            owner=owner,
            origin=origin,
            endpoint=endpoint,
            dedupe_key=request.dedupe_key(),
        )

    async def _send(self, task: Task, prepared: Prepared, budget: float) -> Task:
        """Send the submit; retry definitive refusals within ``budget`` seconds; record the
        outcome (a concurrency refusal: back in line, ``waiting``). Raises (after recording)
        what refused the request."""
        # Uploaded at each send: a presigned link outlives a short wait, not a long one.
        inputs = await self._inputs.upload(task, prepared.checked)
        deadline = anyio.current_time() + budget
        attempt, policy, book = 1, self._ctx.policy, self._book
        while True:
            with self._in_flight(task.bucket):
                try:
                    # Shielded: once the request may have left, its answer must be recorded even
                    # if the caller is cancelled meanwhile (the adapter's timeout bounds it).
                    with anyio.CancelScope(shield=True):
                        outcome = await _send_once(prepared.provider, prepared.request,
                                                   inputs)  # fmt: skip
                except BaseException:
                    # KeyboardInterrupt and the like mid-send: the outcome is unknown, say so.
                    book.update(task, "unknown", error=uncertain(task))
                    raise
                if isinstance(outcome, Submitted):
                    return await self._accepted(task, outcome)
            if (
                isinstance(outcome, RateLimited)
                and outcome.in_flight
                and await self._ours_at_provider(task.bucket)
            ):
                return self._back_in_line(task, prepared, outcome)
            match outcome:
                case SubmitUncertain():
                    return book.update(task, "unknown", error=uncertain(task, outcome))
                case RateLimited() | ProviderUnavailable():  # refused, or never sent: not billed
                    wait = wait_for(outcome, attempt, policy)
                    if attempt >= policy.attempts or anyio.current_time() + wait > deadline:
                        refused = _refused(outcome, attempt)
                        book.update(task, "failed", error=task_error(refused))
                        raise refused from outcome
                    await self._wait_to_resend(task, wait)
                    attempt += 1
                case VideogenError():
                    book.update(task, "failed", error=task_error(outcome))
                    raise outcome
                case _:
                    # A bug or an unexpected library error: the outcome is unknown, say so.
                    book.update(task, "unknown", error=uncertain(task))
                    raise outcome

    @contextlib.contextmanager
    def _in_flight(self, bucket: str) -> Iterator[None]:
        """Mark a submit of ``bucket`` in flight until its answer is recorded."""
        answered = anyio.Event()
        self._answering[bucket].add(answered)
        try:
            yield
        finally:
            answered.set()
            self._answering[bucket].discard(answered)
            if not self._answering[bucket]:
                del self._answering[bucket]

    async def _ours_at_provider(self, bucket: str) -> bool:
        """After a concurrency refusal: whether tasks of ours occupy the bucket at the provider,
        counted once this engine's other submits of it are answered. Only then does waiting in
        line help; with none of ours there (another client on the account, or an account allowed
        none at all) the refusal is retried like any other and then reported."""
        with anyio.CancelScope(shield=True):
            for answered in list(self._answering.get(bucket, ())):
                await answered.wait()
        return self._book.ledger.at_provider(bucket) > 0

    def _back_in_line(self, task: Task, prepared: Prepared, refusal: RateLimited) -> Task:
        """A concurrency refusal with tasks of ours at the provider: learn the limit and put
        the task back in line, to go again no sooner than the retry back-off (no await: a
        cancelled caller leaves a waiting task, never a ``submitting`` one)."""
        task = self._queue.refused(task, refusal)
        prepared.refusals += 1
        wait = wait_for(refusal, prepared.refusals, self._ctx.policy)
        prepared.not_before = anyio.current_time() + wait
        return task

    async def _wait_to_resend(self, task: Task, seconds: float) -> None:
        """Sleep before a resend; a cancelled caller leaves a ``failed`` task (nothing billed)."""
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            error = TaskError(kind="cancelled", message=CANCELLED_MESSAGE)
            self._book.update(task, "failed", error=error)
            raise

    async def _accepted(self, task: Task, submitted: Submitted) -> Task:
        """Record an accepted (billed) submit. A ledger that refuses the write (a full disk) is
        retried with backoff; if it never takes it, ``LedgerError`` naming the provider's task
        id (logged too): nothing billed is ever untraceable. Shielded: a cancelled caller
        cannot stop it."""
        task.provider_task_id = submitted.ref.provider_task_id
        task.req_key = submitted.ref.req_key
        if submitted.request_id:
            task.request_ids.append(submitted.request_id)
        delay = RECORD_FIRST_DELAY_SECONDS
        with anyio.CancelScope(shield=True):
            for attempt in range(1, RECORD_ATTEMPTS + 1):
                try:
                    return self._book.update(task, "queued")
                except LedgerError as exc:
                    failure = exc
                log.warning("recording %s (provider task %s) failed, attempt %d: %s",
                            task.id, task.provider_task_id, attempt, failure)  # fmt: skip
                if attempt < RECORD_ATTEMPTS:
                    await anyio.sleep(delay)
                    delay *= 2
        message = UNRECORDED_MESSAGE.format(
            provider=task.provider,
            provider_task_id=task.provider_task_id,
            task_id=task.id,
            cause=failure.message,
        )
        log.error("%s", message)
        raise LedgerError(message, provider_task_id=task.provider_task_id) from failure


async def _send_once(
    provider: Provider, request: GenerationRequest, inputs: PreparedInputs
) -> Submitted | Exception:
    """One submit; its error returned, not raised. A ``ProviderUnavailable`` after the request
    may have left becomes ``SubmitUncertain``: it must never be resent."""
    try:
        return await provider.submit(request, inputs)
    except ProviderUnavailable as exc:
        return SubmitUncertain(exc.message) if exc.sent else exc
    except Exception as exc:
        return exc


def _retry_budget(wait_seconds: float | None) -> float:
    if wait_seconds is None:
        return SUBMIT_RETRY_SECONDS
    return min(SUBMIT_RETRY_SECONDS, max(wait_seconds, SUBMIT_RETRY_FLOOR_SECONDS))


def _refused(error: RateLimited | ProviderUnavailable, attempts: int) -> ProviderError:
    """The error a submit refused ``attempts`` times ends with: nothing billed, when to retry."""
    times = "once" if attempts == 1 else f"{attempts} times"
    data: dict[str, Any] = {
        "provider": error.provider,
        "code": error.code,
        "http_status": error.http_status,
        "request_id": error.request_id,
        "provider_message": error.provider_message,
    }
    if isinstance(error, RateLimited):
        after = error.retry_after
        when = f"in about {after:.0f} s" if after else "in a minute"
        return RateLimited(
            f"{error.provider} refused the request {times} (rate or concurrency limit), so "
            f"nothing was billed. Try again {when}, or after other tasks finish.",
            retry_after=after,
            **data,
        )
    return ProviderUnavailable(
        f"{error.provider} could not be reached ({times}); the request never left, so nothing "
        "was billed. Check the network or the endpoint URL and try again.",
        sent=False,
        **data,
    )
