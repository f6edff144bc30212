"""The engine: the only place that submits, polls, waits and finishes a task.

``submit`` writes the task to the ledger *before* the request leaves, sends it once and records
the answer. From then on one **watcher** per task (an anyio task in the tracker's task group,
owned by ``app.open_app``) polls it until it is done and then finishes it: download, conform,
probe, poster. Callers never poll: ``generate`` and ``check`` wait on the task's watcher with
their own budget and return the task as it stands when the budget ends. So a tool call and the
background tracker share one poll loop, and a caller that is cancelled or runs out of time
abandons nothing — the watcher carries on and downloads the video as soon as it is ready.

On start the tracker resumes every unfinished task in the ledger. A ``submitting`` row found then
means a process died between writing the row and reading the provider's answer: the task becomes
``unknown`` (it may or may not be billed) and is never resent.

Errors: ``submit`` raises what refused the request (``InputError``, ``CredentialsError``,
``ProviderError``...) after recording it; everything later is recorded on the task and returned
with it (``failed``, ``expired``, ``unknown``, or ``ready`` with the download error).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
from anyio.abc import TaskGroup

from videogen.catalog import JIMENG_MODES, ProviderName
from videogen.config import Settings
from videogen.errors import (
    CapabilityNotEnabled,
    CredentialsError,
    GenerationFailed,
    InputError,
    ProviderError,
    ProviderUnavailable,
    SubmitUncertain,
    TaskExpired,
    VideogenError,
)
from videogen.ledger import Ledger
from videogen.models import GenerationRequest, MediaInfo, StatusEvent, Task, TaskError, TaskStatus
from videogen.models import new_task_id as _new_task_id
from videogen.providers.base import (
    DownloadSource,
    PollResult,
    PreparedImage,
    PreparedInputs,
    Provider,
    Submitted,
    TaskRef,
)
from videogen.report import SubjectReport, describe
from videogen.retry import RetryPolicy, call_with_retries

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger(__name__)

#: The first poll comes this soon after a submit, so fast failures surface fast.
FIRST_POLL_SECONDS: Final = 1.0
#: A waiting caller hears from the engine at least this often (MCP progress notifications).
HEARTBEAT_SECONDS: Final = 5.0
#: Downloads (and their media work) at once; the rest queue.
CONCURRENT_FINISHES: Final = 8
#: After this many polls without an end the watcher slows to one poll a minute ...
SLOW_POLL_SECONDS: Final = 60.0
#: ... and gives up after the providers' task retention (12–24 h): the task is kept as it is.
GIVE_UP_AFTER_SECONDS: Final = 24 * 3600.0
#: A provider's poll hint is honoured within these bounds.
POLL_HINT_BOUNDS: Final = (0.05, 600.0)
#: Provider request ids kept per task (the submit's first, then the latest polls').
REQUEST_IDS_KEPT: Final = 8
#: A download URL this close to its expiry is refreshed (polled again) before use.
URL_EXPIRY_MARGIN_SECONDS: Final = 60.0

ACTIVE_STATUSES: Final[tuple[TaskStatus, ...]] = ("submitting", "queued", "running", "ready")
#: A duplicate request does not return a task in these states.
NOT_REUSED: Final[tuple[TaskStatus, ...]] = ("failed", "expired", "unknown")

UNKNOWN_MESSAGE: Final = (
    "The process stopped while the submit request was in flight, so it is not known whether "
    "{provider} received it: it may or may not have been billed. Look for it in the provider's "
    "console or bill (around {when}); if it is not there, submit the request again (new=true). "
    "videogen never resends a submit by itself."
)
EXPIRED_MESSAGE: Final = (
    "The provider no longer knows this task (it expired or passed its retention): submit the "
    "request again."
)


@dataclass(frozen=True)
class Progress:
    """What a waiting caller is told, at every state change and at least every few seconds."""

    task_id: str
    status: TaskStatus
    elapsed: float
    message: str
    fraction: float | None


ProgressCallback = Callable[[Progress], Awaitable[None]]
ProviderFactory = Callable[[ProviderName], Provider]
ClientFactory = Callable[[ProviderName], "httpx2.AsyncClient"]


@dataclass
class _Watcher:
    """One task's poll loop, shared by every caller waiting for that task."""

    task: Task
    changed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    last_poll: PollResult | None = None

    def publish(self, task: Task) -> None:
        self.task = task
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


class Engine:
    """Submits, tracks and finishes tasks; see the module docstring for the contract.

    ``providers(name)`` and ``clients(name)`` give the adapter and the HTTP client of a provider
    (built lazily by the app). ``attach(task_group)`` must be called before anything is
    submitted: watchers run there, outliving the callers that started them.
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
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self._providers = providers
        self._clients = clients
        self._clock = clock
        self._retry = retry_policy or RetryPolicy(wait_max=min(30.0, settings.poll_interval * 4))
        self._first_poll = min(first_poll_seconds, settings.poll_interval)
        self._heartbeat = heartbeat_seconds
        self._watchers: dict[str, _Watcher] = {}
        self._group: TaskGroup | None = None
        self._finishes = anyio.CapacityLimiter(CONCURRENT_FINISHES)

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, group: TaskGroup, *, resume: bool = True) -> int:
        """Run watchers in ``group``; with ``resume``, pick up every unfinished ledger task.

        Returns how many tasks were resumed.
        """
        self._group = group
        if not resume:
            return 0
        # Tasks made by the sandbox are not the real provider's, and the other way round.
        tasks = [
            t
            for t in self.ledger.with_status(ACTIVE_STATUSES)
            if t.sandbox == self.settings.sandbox
        ]
        for task in tasks:
            self._watch(task)
        return len(tasks)

    @property
    def watching(self) -> int:
        """How many tasks are being polled or finished right now."""
        return len(self._watchers)

    async def wait_idle(self) -> None:
        """Return when no task is being watched (graceful shutdown, tests, benchmarks)."""
        while self._watchers:
            await next(iter(self._watchers.values())).done.wait()

    # -- the interface ------------------------------------------------------------------------

    async def generate(
        self,
        request: GenerationRequest,
        *,
        wait_seconds: float | None,
        on_progress: ProgressCallback | None = None,
        new: bool = False,
        owner: str | None = None,
    ) -> Task:
        """Submit (or reuse a duplicate), then wait up to ``wait_seconds`` (None: until done)."""
        task = await self.submit(request, new=new, owner=owner)
        if task.terminal:
            return task
        waited = await self._wait(task, wait_seconds, on_progress)
        waited.notes = task.notes
        return waited

    async def submit(
        self, request: GenerationRequest, *, new: bool = False, owner: str | None = None
    ) -> Task:
        """Send the request once and start tracking it; returns at once with the task.

        An identical request (same ``dedupe_key`` and owner) within ``settings.dedupe_seconds``
        returns the earlier task with a note, unless it failed/expired/unknown or ``new``.
        """
        if not new:
            earlier = self._duplicate_of(request, owner)
            if earlier is not None:
                return earlier
        provider = self._providers(request.provider)
        from videogen.inputs import prepare_inputs  # the adapters' helper, loaded on first use

        inputs = await prepare_inputs(
            request, accepts_uploaded_images=provider.accepts_uploaded_images
        )
        task = self._new_task(request, owner)
        self.ledger.insert(task)
        # Shielded: once the request may have left, its answer must be recorded even if the
        # caller is cancelled meanwhile (the adapter's request timeout bounds the wait).
        with anyio.CancelScope(shield=True):
            task = await self._send(task, provider, request, inputs)
        if not task.terminal:
            self._watch(task)
        return task

    async def check(
        self,
        task_id: str,
        *,
        wait_seconds: float = 0,
        on_progress: ProgressCallback | None = None,
        owner: str | None = None,
    ) -> Task:
        """The task as it stands after waiting up to ``wait_seconds`` for it to finish.

        A task that is not done and not watched (a watcher gave up, a download failed, the
        tracker is off) gets a watcher again, so checking is also how a user retries.
        """
        task = self.ledger.get(task_id, owner=owner)
        if task.terminal:
            return task
        return await self._wait(task, wait_seconds, on_progress)

    def get(self, task_id: str, *, owner: str | None = None) -> Task:
        """The task as the ledger has it (``TaskNotFound``)."""
        return self.ledger.get(task_id, owner=owner)

    def list_tasks(self, *, limit: int = 20, owner: str | None = None) -> list[Task]:
        """The most recent tasks, newest first."""
        return self.ledger.recent(limit=limit, owner=owner)

    async def detect_subjects(
        self, image: str, *, provider: ProviderName | None = None, wait_seconds: float = 30
    ) -> SubjectReport:
        """OmniHuman subject detection (masks, largest first) and recognition (polled within
        ``wait_seconds``), for choosing who speaks before a billed video is submitted."""
        from videogen.inputs import prepare_image

        name = provider or self.settings.provider
        adapter = self._providers(name)
        prepared = await prepare_image(image, allow_upload=adapter.accepts_uploaded_images)
        detection = await call_with_retries(
            lambda: adapter.detect_subjects(prepared), policy=self._retry
        )
        report = SubjectReport(
            provider=name,
            contains_subject=detection.contains_subject,
            mask_urls=list(detection.mask_urls),
            request_ids=[r for r in (detection.request_id,) if r],
        )
        return await self._recognise(adapter, prepared, report, wait_seconds)

    # -- submit -------------------------------------------------------------------------------

    def _duplicate_of(self, request: GenerationRequest, owner: str | None) -> Task | None:
        since = self._clock() - self.settings.dedupe_seconds
        earlier = self.ledger.find_duplicate(
            request.dedupe_key(),
            owner=owner,
            since=since,
            exclude=NOT_REUSED,
            sandbox=self.settings.sandbox,  # a sandbox task never answers a real request
        )
        if earlier is None:
            return None
        earlier.notes = [
            f"An identical request was made {self._clock() - earlier.created_at:.0f} s ago: this "
            f"is that task ({earlier.id}), not a new one. Pass new=true to generate again "
            "(billed again)."
        ]
        if not earlier.terminal:
            self._watch(earlier)
        return earlier

    def _new_task(self, request: GenerationRequest, owner: str | None) -> Task:
        now = self._clock()
        return Task(
            id=_new_task_id(),
            request=request,
            status="submitting",
            created_at=now,
            updated_at=now,
            history=[StatusEvent(status="submitting", at=now)],
            sandbox=self.settings.sandbox,
            owner=owner,
        )

    async def _send(
        self, task: Task, provider: Provider, request: GenerationRequest, inputs: PreparedInputs
    ) -> Task:
        async def once() -> Submitted:
            try:
                return await provider.submit(request, inputs)
            except ProviderUnavailable as exc:
                if exc.sent:  # it may have reached the provider: never resend a billed call
                    raise SubmitUncertain(exc.message) from exc
                raise

        try:
            submitted = await call_with_retries(once, policy=self._retry)
        except SubmitUncertain as exc:
            message = f"{_unknown_message(task)} (What happened: {exc.message})"
            return self._update(task, "unknown", error=TaskError(kind="uncertain", message=message))
        except VideogenError as exc:
            self._update(task, "failed", error=_task_error(exc))
            raise
        except BaseException as exc:
            # A bug or an unexpected library error: the outcome is unknown, say so, then raise.
            error = TaskError(kind="uncertain", message=_unknown_message(task))
            self._update(task, "unknown", error=error)
            raise exc
        task.provider_task_id = submitted.ref.provider_task_id
        task.req_key = submitted.ref.req_key
        if submitted.request_id:
            task.request_ids.append(submitted.request_id)
        return self._update(task, "queued")

    # -- waiting ------------------------------------------------------------------------------

    async def _wait(
        self, task: Task, budget: float | None, on_progress: ProgressCallback | None
    ) -> Task:
        watcher = self._watch(task)
        if watcher is None:
            return self.ledger.get(task.id)
        with anyio.move_on_after(math.inf if budget is None else max(budget, 0.0)):
            while not watcher.done.is_set():
                changed = watcher.changed
                with anyio.move_on_after(self._heartbeat):
                    await changed.wait()
                if on_progress is not None:
                    await on_progress(self._progress(watcher.task))
        return self.ledger.get(task.id)

    def _progress(self, task: Task) -> Progress:
        return Progress(
            task_id=task.id,
            status=task.status,
            elapsed=max(0.0, self._clock() - task.created_at),
            message=describe(task),
            fraction=1.0 if task.status == "completed" else task.progress,
        )

    # -- tracking -----------------------------------------------------------------------------

    def _watch(self, task: Task) -> _Watcher | None:
        """The task's watcher, started if needed; None for a task that is done."""
        existing = self._watchers.get(task.id)
        if existing is not None:
            return existing
        if task.terminal:
            return None
        if self._group is None:
            raise RuntimeError("Engine.attach(task_group) was not called (use app.open_app)")
        watcher = _Watcher(task)
        self._watchers[task.id] = watcher
        self._group.start_soon(self._follow, watcher, name=f"watch {task.id}")
        return watcher

    async def _follow(self, watcher: _Watcher) -> None:
        """Poll until the provider is done, then finish; never raises (it would end the app)."""
        task_id = watcher.task.id
        try:
            task = self.ledger.get(task_id)
            if task.status == "submitting":
                task = await self._orphaned(task)
            if task.status in ("queued", "running"):
                task = await self._poll_until_done(watcher, task)
            if task.status == "ready":
                task = await self._finish(watcher, task)
        except Exception as exc:  # keep the app alive: record it on the task, stop watching
            if not isinstance(exc, VideogenError):
                log.exception("watching %s failed", task_id)
            self._record_crash(task_id, exc)
        finally:
            self._watchers.pop(task_id, None)
            watcher.done.set()
            watcher.publish(watcher.task)

    def _record_crash(self, task_id: str, exc: Exception) -> None:
        try:
            task = self.ledger.get(task_id)
            if isinstance(exc, VideogenError):
                task.error = _task_error(exc)
            else:
                task.error = TaskError(kind="internal", message=f"Internal error: {exc!r}")
            self._save(task)
        except Exception:
            log.exception("could not record the failure of %s", task_id)

    async def _orphaned(self, task: Task) -> Task:
        """A ``submitting`` row at start: wait out a submit another live process may still be
        making, then (if still unanswered) mark the task ``unknown``. Never resend it."""
        settle_at = task.updated_at + self.settings.request_timeout + 5
        if self._clock() < settle_at:
            await anyio.sleep(settle_at - self._clock())
            task = self.ledger.get(task.id)
            if task.status != "submitting":
                return task
        error = TaskError(kind="uncertain", message=_unknown_message(task))
        return self._update(task, "unknown", error=error)

    async def _poll_until_done(self, watcher: _Watcher, task: Task) -> Task:
        polls = 0
        delay = self._first_poll if self._clock() - task.updated_at < 5 else 0.0
        while task.status in ("queued", "running"):
            if self._clock() - task.created_at > GIVE_UP_AFTER_SECONDS:
                return self._stop(watcher, task, "gave up: the task outlived provider retention")
            await anyio.sleep(delay)
            polls += 1
            try:
                result = await self._poll(task)
            except (CredentialsError, CapabilityNotEnabled) as exc:
                # Keep the task: fixing the keys and checking again picks it up where it is.
                return self._stop(watcher, task, error=exc)
            except (GenerationFailed, TaskExpired) as exc:
                status: TaskStatus = "expired" if isinstance(exc, TaskExpired) else "failed"
                task = self._update(task, status, error=_task_error(exc))
                watcher.publish(task)
                return task
            except ProviderError as exc:
                # Unavailable after retries, or an error about the poll itself: keep polling,
                # more slowly, and show the error meanwhile.
                task.error = _task_error(exc)
                task = self._save(task)
                watcher.publish(task)
                delay = min(SLOW_POLL_SECONDS, max(self.settings.poll_interval, delay) * 2)
                continue
            watcher.last_poll = result
            task = self._apply_poll(task, result)
            watcher.publish(task)
            delay = self._next_delay(result, polls)
        return task

    async def _poll(self, task: Task) -> PollResult:
        provider = self._providers(task.provider)
        ref = _ref(task)
        return await call_with_retries(lambda: provider.poll(ref), policy=self._retry)

    def _next_delay(self, result: PollResult, polls: int) -> float:
        delay = self.settings.poll_interval
        if result.poll_after is not None:
            low, high = POLL_HINT_BOUNDS
            delay = min(max(result.poll_after, low), high)
        if polls >= self.settings.max_poll_attempts:
            delay = max(delay, SLOW_POLL_SECONDS)
        return delay

    def _apply_poll(self, task: Task, result: PollResult) -> Task:
        """Record one poll's answer; writes the ledger only when something changed."""
        if result.request_id:
            task.request_ids = _keep_ids(task.request_ids, result.request_id)
        match result.status:
            case "queued" | "running":
                changed = task.status != result.status or task.progress != result.progress
                if not changed and task.error is None:
                    return task
                task.progress = result.progress
                task.error = None
                return self._update(task, result.status)
            case "succeeded":
                task.video_url = result.video_url
                task.video_url_expires_at = result.url_expires_at
                task.progress = 1.0
                task.error = None
                return self._update(task, "ready")
            case "failed":
                error = result.error or GenerationFailed(
                    f"The provider reports the task failed (status {result.raw_status!r}): "
                    "submit it again, perhaps with a different prompt or inputs.",
                    provider=task.provider,
                )
                return self._update(task, "failed", error=_task_error(error))
            case "expired":
                # The adapter's message already says what happened and to submit again.
                message = result.error.message if result.error else EXPIRED_MESSAGE
                return self._update(
                    task, "expired", error=TaskError(kind="expired", message=message)
                )

    def _stop(
        self, watcher: _Watcher, task: Task, why: str = "", *, error: VideogenError | None = None
    ) -> Task:
        """Stop watching, keeping the task as it is with the reason recorded."""
        task.error = _task_error(error) if error else TaskError(kind="stopped", message=why)
        task = self._save(task)
        watcher.publish(task)
        return task

    # -- finishing ----------------------------------------------------------------------------

    async def _finish(self, watcher: _Watcher, task: Task) -> Task:
        """Download, conform, probe and poster a ready task. A download failure keeps the task
        ``ready`` with its URL and the error; the next check (or start) tries again."""
        async with self._finishes:
            try:
                path = await self._save_video(watcher, task)
            except VideogenError as exc:
                task = self.ledger.get(task.id)
                if task.terminal:  # the refresh learned the task is gone: already recorded
                    watcher.publish(task)
                    return task
                task.error = _task_error(exc)
                task = self._save(task)
                watcher.publish(task)
                return task
            task = self.ledger.get(task.id)
            task.local_path = str(path)
            task = self._save(task)
            return await self._describe_file(watcher, task, path)

    async def _save_video(self, watcher: _Watcher, task: Task) -> Path:
        from videogen.download import download, safe_filename

        filename = safe_filename(task.request.prompt, task.id, task.request.filename)
        dest_dir = await anyio.to_thread.run_sync(self._destination, task)
        adopted = await anyio.to_thread.run_sync(_adoptable, dest_dir, filename)
        if adopted is not None and task.id in filename:
            return adopted
        provider = self._providers(task.provider)
        poll = watcher.last_poll
        if poll is None or self._url_stale(task):
            poll = await self._fresh_poll(watcher, task)
        source = await self._source(provider, task, poll)

        async def refresh() -> DownloadSource:
            return await self._source(provider, task, await self._fresh_poll(watcher, task))

        return await download(
            self._clients(task.provider),
            source,
            dest_dir,
            filename,
            max_bytes=self.settings.max_download_bytes,
            deadline_seconds=self.settings.download_timeout,
            refresh=refresh,
        )

    def _destination(self, task: Task) -> Path:
        """Where a task's video goes: the folder it was asked for, else the configured one. The
        default folder is created with its parents (a fresh machine has no ~/Videos); a folder
        that was named explicitly must exist, or the download says so."""
        if task.request.output_dir:
            return Path(task.request.output_dir)
        if not self.settings.output_dir_explicit:
            with contextlib.suppress(OSError):  # the download names the folder and the fix
                self.settings.output_dir.mkdir(parents=True, exist_ok=True)
        return self.settings.output_dir

    def _url_stale(self, task: Task) -> bool:
        expires = task.video_url_expires_at
        return expires is not None and expires - self._clock() < URL_EXPIRY_MARGIN_SECONDS

    async def _fresh_poll(self, watcher: _Watcher, task: Task) -> PollResult:
        """Poll again for a fresh video URL (they expire after an hour)."""
        result = await self._poll(task)
        if result.status in ("failed", "expired"):
            gone = self._apply_poll(self.ledger.get(task.id), result)
            raise TaskExpired(gone.error.message if gone.error else EXPIRED_MESSAGE)
        if result.status != "succeeded":
            from videogen.errors import DownloadError

            raise DownloadError(
                f"Asked for a fresh video link, the provider answered {result.raw_status!r}.",
                retryable=False,
            )
        watcher.last_poll = result
        current = self.ledger.get(task.id)
        current.video_url = result.video_url
        current.video_url_expires_at = result.url_expires_at
        if result.request_id:
            current.request_ids = _keep_ids(current.request_ids, result.request_id)
        self._save(current)
        return result

    async def _source(self, provider: Provider, task: Task, poll: PollResult) -> DownloadSource:
        ref = _ref(task)
        return await call_with_retries(
            lambda: provider.download_source(ref, poll), policy=self._retry
        )

    async def _describe_file(self, watcher: _Watcher, task: Task, path: Path) -> Task:
        """Conform (Jimeng clips only), probe and poster; the file is what the task reports."""
        from videogen import media

        notes: list[str] = []
        info: MediaInfo | None = None
        if task.request.mode in JIMENG_MODES:  # OmniHuman and scenes last as long as they last
            try:
                info = await media.conform(
                    path, duration=task.request.duration, fps=task.request.fps
                )
            except VideogenError as exc:
                notes.append(f"conform failed: {exc.message}")
        if info is None:
            info = await media.probe(path)
        poster_dir = path.parent / ".posters"
        try:
            await anyio.Path(poster_dir).mkdir(exist_ok=True)
            poster = await media.poster(path, poster_dir / (path.stem + ".jpg"))
            task.poster_path = str(poster)
        except (VideogenError, OSError) as exc:
            notes.append(f"no poster: {exc}")
        task.media = info
        task.error = None
        for note in notes:
            task.history.append(StatusEvent(status=task.status, at=self._clock(), note=note))
        task = self._update(task, "completed")
        watcher.publish(task)
        return task

    # -- recognition --------------------------------------------------------------------------

    async def _recognise(
        self, adapter: Provider, image: PreparedImage, report: SubjectReport, budget: float
    ) -> SubjectReport:
        deadline = anyio.current_time() + budget
        ref = await call_with_retries(lambda: adapter.submit_recognition(image), policy=self._retry)
        delay = self._first_poll
        while anyio.current_time() + delay < deadline:
            await anyio.sleep(delay)
            poll = await call_with_retries(
                lambda: adapter.poll_recognition(ref), policy=self._retry
            )
            if poll.request_id:
                report.request_ids.append(poll.request_id)
            if poll.status == "succeeded":
                report.recognised = poll.contains_subject
                report.contains_subject = bool(poll.contains_subject)
                report.recognition = "succeeded"
                return report
            if poll.status in ("failed", "expired"):
                report.recognition = "failed"
                report.message = poll.error.message if poll.error else "recognition failed"
                return report
            delay = self.settings.poll_interval
        report.recognition = "pending"
        report.message = (
            f"Recognition was still running after {budget:g} s; detection's answer is shown."
        )
        return report

    # -- ledger helpers -----------------------------------------------------------------------

    def _update(self, task: Task, status: TaskStatus, *, error: TaskError | None = None) -> Task:
        now = self._clock()
        if status != task.status:
            task.history.append(StatusEvent(status=status, at=now))
        task.status = status
        if error is not None:
            task.error = error
        return self._save(task)

    def _save(self, task: Task) -> Task:
        task.updated_at = self._clock()
        self.ledger.save(task)
        watcher = self._watchers.get(task.id)
        if watcher is not None:
            watcher.task = task
        return task


def _unknown_message(task: Task) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(task.created_at))
    return UNKNOWN_MESSAGE.format(provider=task.provider, when=when)


def _ref(task: Task) -> TaskRef:
    if task.provider_task_id is None:
        raise InputError(f"Task {task.id} has no provider id (it was never accepted).")
    return TaskRef(task.provider_task_id, task.req_key)


def _keep_ids(ids: list[str], new: str) -> list[str]:
    if new in ids:
        return ids
    kept = [*ids, new]
    return kept if len(kept) <= REQUEST_IDS_KEPT else [kept[0], *kept[-(REQUEST_IDS_KEPT - 1) :]]


def _task_error(exc: VideogenError) -> TaskError:
    if isinstance(exc, ProviderError):
        code = None if exc.code is None else str(exc.code)
        return TaskError(kind=exc.kind, message=exc.message, code=code, request_id=exc.request_id)
    return TaskError(kind=exc.kind, message=exc.message)


def _adoptable(output_dir: Path, filename: str) -> Path | None:
    """A regular file already at the target: left by a run that died after saving the video
    but before recording it. Symlinks and anything not a plausible MP4 are never adopted."""
    from videogen.download import check_mp4

    target = output_dir / filename
    if target.is_symlink() or not target.is_file():
        return None
    try:
        check_mp4(target)
    except VideogenError:
        return None
    return target.resolve()
