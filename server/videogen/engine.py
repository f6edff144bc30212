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

**Before billing.** ``submit`` checks the output folder first (created with its parents,
proven writable) so a bad ``--output`` fails before anything is sent. The submit itself is
retried only after a definitive refusal (429 / concurrency limit, a connection that was never
made), within the caller's budget (at most ``SUBMIT_RETRY_SECONDS``); each single send is
shielded from cancellation so an answer in flight is always recorded, but the waits between
sends are not. Refused every time, or cancelled while waiting to retry, the task is ``failed``
and nothing was billed. After an ambiguous failure (sent, then dropped or timed out) it is
``unknown`` and never resent.

**Where a task lives.** Each task records its *origin*: a hash of provider, endpoint (or "the
embedded sandbox") and credential identity (a hash of the access key / API key, never the key).
A session whose settings give another origin never polls or downloads the task — another
account or endpoint would answer "not found" and the billed task would be marked ``expired``
for good — it returns the task as it stands with a note. Only with a matching origin is a
provider's "not found" taken as final (a provider that was given the task really forgot it).
Tasks recorded before origins were kept are matched by their sandbox flag, and for them "not
found" stops the watcher without marking anything.

**Several processes.** The ledger's lease (``Ledger.claim``) decides who works on a task: the
holder polls, downloads and writes; anyone else follows by re-reading the ledger and takes over
when the lease is released, runs out (``lease_seconds`` after its last renewal) or its holder is
a dead process of this host. A lease is renewed only while this engine is working on the task
(its submit is in flight, or its watcher is polling or finishing it): a lease nothing here works
on runs out, and another process takes the task over. The holder sweeps the temp files a killed
run left for the task before it saves the video.

**One request, one bill.** Finding a duplicate and recording a new task are one atomic ledger
step (``Ledger.record_new``), after every await that reads the inputs and before the submit:
identical requests at once, from any number of processes, send one submit. A duplicate that
arrives while this engine's own submit is in flight waits for that submit, never for the
"another process may be submitting" grace period. The data dir's room is checked before
billing, and so are the spending limits (``videogen.spending``), inside the transaction that
records the task: a request past a limit is refused with nothing sent or recorded. An
accepted submit whose ledger write fails is retried (bounded) and otherwise reported with the
provider's task id (``LedgerError``), so nothing billed goes untraceable.

Errors: ``submit`` raises what refused the request (``InputError``, ``OutputError``,
``CredentialsError``, ``ProviderError``...) after recording it; everything later is recorded on
the task and returned with it (``failed``, ``expired``, ``unknown``, or ``ready`` with the
download error).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import anyio
from anyio.abc import TaskGroup

from videogen.catalog import DURATIONS, JIMENG_MODES, ProviderName, uploads_images
from videogen.config import Settings
from videogen.destination import FIX, posters_folder, prepare_folder
from videogen.errors import (
    CapabilityNotEnabled,
    CredentialsError,
    DownloadError,
    GenerationFailed,
    InputError,
    LedgerError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    SubmitUncertain,
    TaskExpired,
    VideogenError,
)
from videogen.files import (
    copy_into,
    is_numbered,
    open_saved,
    safe_filename,
    saved_file,
    sweep_temporaries,
)
from videogen.ledger import Lease, Ledger, holder_is_dead, new_holder
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
from videogen.retry import RetryPolicy, call_with_retries, wait_for
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
from videogen.spending import Guard

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger(__name__)

#: The first poll comes this soon after a submit, so fast failures surface fast.
FIRST_POLL_SECONDS: Final = 1.0
#: A waiting caller hears from the engine at least this often (MCP progress notifications).
HEARTBEAT_SECONDS: Final = 5.0
#: Downloads (and their media work) at once; the rest queue.
CONCURRENT_FINISHES: Final = 8
#: The watcher gives up after the providers' task retention (12–24 h): the task is kept as it
#: is. (When to poll until then: ``videogen.schedule``.)
GIVE_UP_AFTER_SECONDS: Final = 24 * 3600.0
#: What earlier tasks took is read from the ledger again after this long (sooner when one of
#: this engine's tasks gets ready).
HISTORY_FRESH_SECONDS: Final = 60.0
#: Provider request ids kept per task (the submit's first, then the latest polls').
REQUEST_IDS_KEPT: Final = 8
#: A download URL this close to its expiry is refreshed (polled again) before use.
URL_EXPIRY_MARGIN_SECONDS: Final = 60.0
#: Submit retries after definitive refusals stop after this long (or the caller's budget) ...
SUBMIT_RETRY_SECONDS: Final = 30.0
#: ... but a caller that asked for a shorter wait still gets this much (a 50430 often clears
#: in a second or two).
SUBMIT_RETRY_FLOOR_SECONDS: Final = 3.0
#: A lease runs this long past its last renewal: a holder that vanished without releasing it
#: (killed on another host) is replaced after this.
LEASE_SECONDS: Final = 45.0
#: A process that does not hold a task's lease re-reads the ledger at most this far apart.
FOLLOWER_READ_SECONDS: Final = 1.0
#: Recording an accepted (billed) submit is tried this often while the ledger refuses the
#: write (a full disk), waiting from the first delay, doubling (about 8 s in all).
RECORD_ATTEMPTS: Final = 6
RECORD_FIRST_DELAY_SECONDS: Final = 0.25

ACTIVE_STATUSES: Final[tuple[TaskStatus, ...]] = ("submitting", "queued", "running", "ready")
#: A duplicate request does not return a task in these states.
NOT_REUSED: Final[tuple[TaskStatus, ...]] = ("failed", "expired", "unknown")

UNRECORDED_MESSAGE: Final = (
    "{provider} accepted the request as its task {provider_task_id}, so it is billed, but the "
    "task ledger could not record that: {cause} videogen cannot track this task ({task_id}): "
    "look it up in {provider}'s console by the task id {provider_task_id}; do not submit the "
    "request again before checking there."
)
UNKNOWN_MESSAGE: Final = (
    "{cause}, so it is not known whether {provider} received it: it may or may not have been "
    "billed. Look for it in the provider's console or bill (around {when}); if it is not there, "
    "submit the request again (new=true, or --new on the command line). videogen never resends "
    "a submit by itself."
)
#: The cause when nothing more is known: the process died (or was stopped) mid-submit.
STOPPED_MID_SUBMIT: Final = "The process stopped while the submit request was in flight"
EXPIRED_MESSAGE: Final = (
    "The provider no longer knows this task (it expired or passed its retention): submit the "
    "request again."
)
FOREIGN_MESSAGE: Final = (
    "This task was submitted to {where} ({side}) with another endpoint or other credentials "
    "than this session has for {provider}, so it is not polled from here (that provider would "
    "not know it). It is left as it is: check it from a session with the same credentials and "
    "endpoint it was submitted with."
)
UNSURE_NOT_FOUND_MESSAGE: Final = (
    "{provider} does not know this task under the current endpoint and credentials. It was "
    "recorded before videogen kept where tasks were sent, so it may belong to other "
    "credentials: it is kept as it is. Check it with the credentials it was submitted with."
)
LOST_MESSAGE: Final = "The saved video {path} is gone (deleted, moved or replaced)."
UNRECOVERABLE_MESSAGE: Final = (
    "The saved video {path} is gone (deleted, moved or replaced) and the provider no longer "
    "has it, so it cannot be recovered: generate it again (billed again)."
)
CANCELLED_AT_PROVIDER_MESSAGE: Final = (
    "Cancelled at the provider while it was still queued: nothing was billed. Submit the "
    "request again to make the video."
)
CANCELLED_MESSAGE: Final = (
    "Cancelled while waiting to retry a submit the provider had refused: nothing was billed. "
    "Submit the request again."
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


class Conform(Protocol):
    """Makes a saved clip the asked duration and fps in place and returns the probe of the
    result, or raises ``VideogenError`` (``media.conform``; tests give a failing one)."""

    def __call__(self, path: Path, *, duration: float, fps: int) -> Awaitable[MediaInfo]: ...


@dataclass
class _Watcher:
    """One task's poll loop, shared by every caller waiting for that task."""

    task: Task
    changed: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)
    last_poll: PollResult | None = None
    #: When (``anyio.current_time()``) the watcher polls the provider next, while it waits.
    next_poll: float | None = None
    #: A new output folder asked for while the watcher runs (a 1-tuple: the folder may be None).
    retarget: tuple[str | None] | None = None

    def publish(self, task: Task) -> None:
        self.task = task
        changed, self.changed = self.changed, anyio.Event()
        changed.set()


def origin_of(settings: Settings, provider: ProviderName) -> tuple[str, str]:
    """Where a task for ``provider`` goes under ``settings``: (fingerprint, endpoint in words).

    The fingerprint hashes the provider, the sandbox flag, the base URL (the embedded sandbox's
    port changes every run, so it counts as one place) and a hash of the credential identity
    (Volcengine's access key id, the API key otherwise). It never holds a key.
    """
    endpoint = settings.endpoint(provider)
    where = "the embedded sandbox" if settings.sandbox else endpoint.base_url
    identity = endpoint.access_key or endpoint.api_key or ""
    blob = json.dumps(
        [provider, settings.sandbox, where, hashlib.sha256(identity.encode()).hexdigest()]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32], where


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
        lease_seconds: float = LEASE_SECONDS,
        conform: Conform | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self._providers = providers
        self._clients = clients
        self._clock = clock
        self._retry = retry_policy or RetryPolicy(wait_max=min(30.0, settings.poll_interval * 4))
        self._first_poll = min(first_poll_seconds, settings.poll_interval)
        self._heartbeat = heartbeat_seconds
        self._lease_seconds = lease_seconds
        #: This engine's name in the ledger's leases.
        self.holder = new_holder()
        self._watchers: dict[str, _Watcher] = {}
        #: Tasks whose submit this engine has in flight, set when the answer is recorded.
        self._sending: dict[str, anyio.Event] = {}
        #: Tasks this engine is working on (submitting, polling, finishing): the only leases
        #: it renews. A count: a submit and its task's watcher may overlap.
        self._working: Counter[str] = Counter()
        self._group: TaskGroup | None = None
        self._finishes = anyio.CapacityLimiter(CONCURRENT_FINISHES)
        #: None: ``media.conform`` (imported when first needed: it brings PyAV's helpers).
        self._conform = conform
        #: What earlier tasks took, per (origin, mode, clip): (expectation, read at).
        self._history: dict[tuple[str, str, int], tuple[Expected | None, float]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def attach(self, group: TaskGroup, *, resume: bool = True) -> int:
        """Run watchers in ``group``; with ``resume``, pick up every unfinished ledger task
        submitted from this origin (see the module docstring). Returns how many."""
        self._group = group
        group.start_soon(self._renew_leases, name="renew task leases")
        if not resume:
            return 0
        tasks = [t for t in self.ledger.with_status(ACTIVE_STATUSES) if self._foreign(t) is None]
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
        on_submitted: Callable[[Task], None] | None = None,
    ) -> Task:
        """Submit (or reuse a duplicate), then wait up to ``wait_seconds`` (None: until done).

        A duplicate delivers the video where this request asks (its folder and file name): a
        copy of the saved file, or a fresh download when that file is gone. ``on_submitted``
        hears of the task as soon as it is recorded and sent (an interrupted wait can name it).
        """
        task = await self.submit(request, new=new, owner=owner, wait_seconds=wait_seconds)
        if on_submitted is not None:
            on_submitted(task)
        if task.status == "completed":  # a duplicate of a finished task
            task = await self._reopen_if_lost(task, destination=request)
        if not task.terminal:
            waited = await self._wait(task, wait_seconds, on_progress)
            waited.notes = task.notes
            task = waited
        if task.status == "completed" and self._foreign(task) is None:
            task = await self._deliver(task, request)
        elif not task.terminal and self._destination_of(task) != self._destination_of(request):
            task.notes.append(
                "It is saved where the first request asked once it is ready; make this "
                "request again then to get a copy where this one asks (nothing is billed)."
            )
        return task

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
        await anyio.to_thread.run_sync(prepare_folder, self._folder(request.output_dir))
        provider = self._providers(request.provider)
        from videogen.inputs import prepare_inputs  # the adapters' helper, loaded on first use

        inputs = await prepare_inputs(
            request,
            accepts_uploaded_images=provider.accepts_uploaded_images,
            folders=self.settings.path_folders(),
        )
        # No await from here to the insert: finding a duplicate and recording this task are one
        # ledger transaction, so identical requests at once make one task (and one submit).
        self.ledger.check_room()
        task = self._new_task(request, owner)
        lease = Lease(self.holder, self._clock() + self._lease_seconds)
        # The spending limits are checked in the transaction that records the task.
        guard = Guard(self.settings.spending, now=task.created_at, owner=owner)
        if new:
            self.ledger.insert(task, lease=lease, guard=guard)
        else:
            since = self._clock() - self.settings.dedupe_seconds
            sandbox = self.settings.sandbox  # a sandbox task never answers a real request
            earlier = self.ledger.record_new(
                task, since=since, exclude=NOT_REUSED, sandbox=sandbox, lease=lease, guard=guard
            )
            if earlier is not None:
                return self._reuse(earlier, request)
        sent = self._sending[task.id] = anyio.Event()
        watched = False
        try:
            with self._working_on(task.id):
                task = await self._send(
                    task, provider, request, inputs, _retry_budget(wait_seconds)
                )
                watched = not task.terminal and self._watch(task) is not None
        finally:
            del self._sending[task.id]
            sent.set()
            if not watched:
                self._release(task.id)
        return task

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
        task = self.ledger.get(task_id, owner=owner)
        foreign = self._foreign(task)
        saved_before = task.status == "completed"
        if saved_before and foreign is None:
            task = await self._reopen_if_lost(task)
        if task.terminal:
            if output_dir is not None and task.status == "completed":
                task.notes = [f"The video is already saved at {task.local_path}; the output "
                              "folder given was not used."]  # fmt: skip
            return task
        if foreign is not None:
            task.notes = [foreign]
            return task
        save_now = task.status == "ready" and (output_dir is not None or saved_before)
        if output_dir is not None:
            folder = await anyio.to_thread.run_sync(prepare_folder, Path(output_dir))
            task = self._retarget(task, str(folder))
        notes = task.notes
        waited = await self._wait(task, None if save_now else wait_seconds, on_progress)
        waited.notes = notes
        return waited

    def next_poll_in(self, task_id: str) -> float | None:
        """Seconds until this engine next polls the provider for the task (0 when a poll is
        due or under way); None when it is not polling it (done, foreign, or another process
        holds it). A client asking for news more often than this learns nothing new."""
        watcher = self._watchers.get(task_id)
        if watcher is None or watcher.next_poll is None:
            return None
        return max(0.0, watcher.next_poll - anyio.current_time())

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
        prepared = await prepare_image(
            image,
            allow_upload=adapter.accepts_uploaded_images and uploads_images("omnihuman"),
            label="portrait image",
            folders=self.settings.path_folders(),
        )
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

    # -- origins ------------------------------------------------------------------------------

    def _origin(self, provider: ProviderName) -> tuple[str, str]:
        return origin_of(self.settings, provider)

    def _foreign(self, task: Task) -> str | None:
        """Why this session must not poll ``task`` (it was sent elsewhere), or None."""
        if task.origin is None:  # recorded before origins: the sandbox flag is all we know
            same = task.sandbox == self.settings.sandbox
        else:
            same = task.origin == self._origin(task.provider)[0]
        if same:
            return None
        where = task.endpoint or ("the embedded sandbox" if task.sandbox else "a real endpoint")
        side = "sandbox" if task.sandbox else "real provider"
        return FOREIGN_MESSAGE.format(where=where, side=side, provider=task.provider)

    # -- submit -------------------------------------------------------------------------------

    def _reuse(self, earlier: Task, request: GenerationRequest) -> Task:
        """An identical request's answer: the earlier task (``Ledger.record_new`` found it for
        this owner and origin), with a note, watched."""
        notes = [
            f"An identical request was made {self._clock() - earlier.created_at:.0f} s ago: this "
            f"is that task ({earlier.id}), not a new one. To generate again (billed again), "
            "set new / --new."
        ]
        if earlier.status == "ready" and earlier.error is not None:
            # Its save failed: the same request with another folder is how a user fixes that.
            earlier = self._retarget(earlier, request.output_dir)
        earlier.notes = [*notes, *earlier.notes]
        if not earlier.terminal:
            self._watch(earlier)
        return earlier

    def _new_task(self, request: GenerationRequest, owner: str | None) -> Task:
        now = self._clock()
        origin, endpoint = self._origin(request.provider)
        return Task(
            id=_new_task_id(),
            request=request.compact(),  # data URLs abbreviated: the bytes are sent, not kept
            status="submitting",
            created_at=now,
            updated_at=now,
            history=[StatusEvent(status="submitting", at=now)],
            sandbox=self.settings.sandbox,
            owner=owner,
            origin=origin,
            endpoint=endpoint,
            dedupe_key=request.dedupe_key(),
        )

    async def _send(
        self,
        task: Task,
        provider: Provider,
        request: GenerationRequest,
        inputs: PreparedInputs,
        budget: float,
    ) -> Task:
        """Send the submit; retry definitive refusals within ``budget`` seconds; record the
        outcome. Raises (after recording) what refused the request."""
        deadline = anyio.current_time() + budget
        attempt = 1
        while True:
            try:
                # Shielded: once the request may have left, its answer must be recorded even if
                # the caller is cancelled meanwhile (the adapter's request timeout bounds it).
                with anyio.CancelScope(shield=True):
                    outcome = await _send_once(provider, request, inputs)
            except BaseException:
                # KeyboardInterrupt and the like mid-send: the outcome is unknown, say so.
                self._update(task, "unknown", error=_uncertain(task))
                raise
            match outcome:
                case Submitted():
                    return await self._accepted(task, outcome)
                case SubmitUncertain():
                    return self._update(task, "unknown", error=_uncertain(task, outcome))
                case RateLimited() | ProviderUnavailable():  # refused, or never sent: not billed
                    wait = wait_for(outcome, attempt, self._retry)
                    last = attempt >= self._retry.attempts
                    if last or anyio.current_time() + wait > deadline:
                        refused = _refused(outcome, attempt)
                        self._update(task, "failed", error=_task_error(refused))
                        raise refused from outcome
                    await self._wait_to_resend(task, wait)
                    attempt += 1
                case VideogenError():
                    self._update(task, "failed", error=_task_error(outcome))
                    raise outcome
                case _:
                    # A bug or an unexpected library error: the outcome is unknown, say so.
                    self._update(task, "unknown", error=_uncertain(task))
                    raise outcome

    async def _wait_to_resend(self, task: Task, seconds: float) -> None:
        """Sleep before a resend; a cancelled caller leaves a ``failed`` task (nothing billed)."""
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            self._update(
                task, "failed", error=TaskError(kind="cancelled", message=CANCELLED_MESSAGE)
            )
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
                    return self._update(task, "queued")
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

    # -- output folders -----------------------------------------------------------------------

    def _folder(self, output_dir: str | None) -> Path:
        return Path(output_dir) if output_dir else self.settings.output_dir

    def _retarget(self, task: Task, output_dir: str | None) -> Task:
        """Send a not-yet-saved task's video to ``output_dir`` (None: the configured folder)."""
        if task.request.output_dir == output_dir:
            return task
        watcher = self._watchers.get(task.id)
        if watcher is not None:  # applied by the watcher before it saves
            watcher.retarget = (output_dir,)
            return task
        if not self._take(task.id):
            task.notes.append(
                "Another process is saving this task right now, so its folder was not changed; "
                "if that save fails, check it again with the folder."
            )
            return task
        # Leased to this engine now; the watcher the caller starts next keeps the lease.
        task.request = task.request.model_copy(update={"output_dir": output_dir})
        return self._save(task)

    async def _reopen_if_lost(
        self, task: Task, destination: GenerationRequest | None = None
    ) -> Task:
        """A completed task whose video is no longer where it was saved goes back to ``ready``
        (with a note saying so) to be downloaded again — into ``destination``'s folder and
        name when given; otherwise it is returned as it is."""
        if await anyio.to_thread.run_sync(saved_file, task.local_path) is not None:
            return task
        lost = LOST_MESSAGE.format(path=task.local_path)
        if not self._take(task.id):
            task.notes.append(f"{lost} Another process is working on this task; check it again "
                              "in a moment.")  # fmt: skip
            return task
        current = self.ledger.get(task.id)
        again = await anyio.to_thread.run_sync(saved_file, current.local_path)
        if current.status != "completed" or again is not None:
            self.ledger.release(task.id, self.holder)  # saved again meanwhile
            current.notes = task.notes
            return current
        if destination is not None:
            where = {"output_dir": destination.output_dir, "filename": destination.filename}
            current.request = current.request.model_copy(update=where)
        current.local_path = current.poster_path = current.media = current.error = None
        current.history.append(StatusEvent(status="ready", at=self._clock(), note=lost))
        current.status = "ready"
        current = self._save(current)
        current.notes = [*task.notes, f"{lost} It is downloaded again from the provider."]
        return current

    def _destination_of(self, asked: Task | GenerationRequest) -> tuple[Path, str | None]:
        """Where a task's or a request's video goes: its folder, and the name it asked for."""
        request = asked.request if isinstance(asked, Task) else asked
        return self._folder(request.output_dir), request.filename

    async def _deliver(self, task: Task, request: GenerationRequest) -> Task:
        """A repeated request gets the video where it asks: a copy of the saved file under the
        request's folder and name, unless the file already is there (nothing is billed)."""
        folder = self._folder(request.output_dir)
        name = safe_filename(task.request.prompt, task.id, request.filename)
        saved = Path(task.local_path or "")
        try:
            made = await anyio.to_thread.run_sync(_copy_saved, saved, folder, name)
        except OSError as exc:
            task.error = TaskError(
                kind="output",
                message=f"The video is saved at {saved}, but a copy could not be saved in "
                f"{str(folder)!r} as asked ({exc.strerror or exc}). Please {FIX}.",
            )
            return task
        if made is not None:
            task.local_path, task.poster_path = str(made), None  # its poster goes beside it
            task.notes.append(f"This request's copy of the video is saved at {made} (the task "
                              f"saved it first at {saved}); nothing was billed again.")  # fmt: skip
        return task

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
        """The task's watcher, started if needed; None for a task that is done or foreign."""
        existing = self._watchers.get(task.id)
        if existing is not None:
            return existing
        if task.terminal or self._foreign(task) is not None:
            return None
        if self._group is None:
            raise RuntimeError("Engine.attach(task_group) was not called (use app.open_app)")
        watcher = _Watcher(task)
        self._watchers[task.id] = watcher
        self._group.start_soon(self._follow, watcher, name=f"watch {task.id}")
        return watcher

    async def _follow(self, watcher: _Watcher) -> None:
        """Work on the task under its lease, or follow whoever holds it; never raises (it would
        end the app)."""
        task_id = watcher.task.id
        try:
            while not self._take(task_id):
                if (await self._observe(watcher)).terminal:
                    return
            try:
                with self._working_on(task_id):
                    await self._work(watcher, task_id)
            except Exception as exc:  # keep the app alive: record it on the task, stop watching
                if not isinstance(exc, VideogenError):
                    log.exception("watching %s failed", task_id)
                self._record_crash(task_id, exc)
            finally:
                self.ledger.release(task_id, self.holder)
        except Exception:
            log.exception("following %s failed", task_id)
        finally:
            self._watchers.pop(task_id, None)
            watcher.done.set()
            watcher.publish(watcher.task)

    async def _work(self, watcher: _Watcher, task_id: str) -> None:
        """Poll until the provider is done, then finish (this engine holds the lease)."""
        task = self.ledger.get(task_id)
        watcher.publish(task)
        sending = self._sending.get(task_id)
        if sending is not None:  # this engine's own submit: wait for it, not for the grace
            await sending.wait()
            task = self.ledger.get(task_id)
            watcher.publish(task)
            if task.status == "submitting":  # its answer could not be recorded
                task = self._update(task, "unknown", error=_uncertain(task))
        if task.status == "submitting":
            task = await self._orphaned(task)
        if task.status in ("queued", "running"):
            try:
                task = await self._poll_until_done(watcher, task)
            finally:
                watcher.next_poll = None
        while task.status == "ready":
            task = self._apply_retarget(watcher, task)
            task = await self._finish(watcher, task)
            if watcher.retarget is None:
                break

    def _apply_retarget(self, watcher: _Watcher, task: Task) -> Task:
        if watcher.retarget is None:
            return task
        (output_dir,), watcher.retarget = watcher.retarget, None
        task = self.ledger.get(task.id)
        task.request = task.request.model_copy(update={"output_dir": output_dir})
        return self._save(task)

    # -- leases -------------------------------------------------------------------------------

    def _take(self, task_id: str) -> bool:
        """Claim (or renew) the task's lease; also from a holder proven dead. True when held."""
        now = self._clock()
        until = now + self._lease_seconds
        if self.ledger.claim(task_id, self.holder, until=until, now=now):
            return True
        holder = self.ledger.lease(task_id).holder
        if holder is None or not holder_is_dead(holder):
            return False
        log.info("taking %s over from %s, a process that is gone", task_id, holder)
        return self.ledger.claim(task_id, self.holder, until=until, now=now, replacing=holder)

    async def _observe(self, watcher: _Watcher) -> Task:
        """Follow a task another process works on by re-reading the ledger. Returns when it is
        done, or when its lease is free, ran out or belongs to a dead process (take it then)."""
        interval = min(FOLLOWER_READ_SECONDS, self.settings.poll_interval)
        task_id = watcher.task.id
        seen: tuple[float, TaskStatus] | None = None
        while True:
            task = self.ledger.get(task_id)
            if seen != (task.updated_at, task.status):
                seen = (task.updated_at, task.status)
                watcher.publish(task)
            lease = self.ledger.lease(task_id)
            if task.terminal or lease.holder is None or (lease.until or 0.0) < self._clock():
                return task
            if holder_is_dead(lease.holder):
                return task
            await anyio.sleep(interval)

    @contextlib.contextmanager
    def _working_on(self, task_id: str) -> Iterator[None]:
        """Mark the task as one this engine works on (its lease is renewed) for the block."""
        self._working[task_id] += 1
        try:
            yield
        finally:
            self._working[task_id] -= 1
            if self._working[task_id] <= 0:
                del self._working[task_id]

    def _release(self, task_id: str) -> None:
        """Give the lease up; a ledger that cannot take it lets it run out instead (and must
        not hide the error being raised, e.g. the provider's id of an unrecorded task)."""
        try:
            self.ledger.release(task_id, self.holder)
        except LedgerError as exc:
            log.warning("could not release the lease on %s (it runs out instead): %s", task_id, exc)

    async def _renew_leases(self) -> None:
        """Keep alive the leases of the tasks this engine is working on, every quarter of their
        length. A lease it holds but does nothing with is left to run out."""
        while True:
            await anyio.sleep(self._lease_seconds / 4)
            try:
                self.ledger.renew(
                    self.holder, list(self._working), until=self._clock() + self._lease_seconds
                )
            except LedgerError:  # a busy or closing ledger: the next round tries again
                log.warning("could not renew task leases", exc_info=True)

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
        return self._update(task, "unknown", error=_uncertain(task))

    async def _poll_until_done(self, watcher: _Watcher, task: Task) -> Task:
        polls = 0
        delay = self._first_poll if self._clock() - task.updated_at < 5 else 0.0
        # The interval runs from one poll's start to the next one's, so the polls keep their
        # cadence instead of drifting later by a round trip each time.
        next_poll = watcher.next_poll = anyio.current_time() + delay
        while task.status in ("queued", "running"):
            if self._clock() - task.created_at > GIVE_UP_AFTER_SECONDS:
                return self._stop(watcher, task, "gave up: the task outlived provider retention")
            await anyio.sleep(max(0.0, next_poll - anyio.current_time()))
            sent = anyio.current_time()
            polls += 1
            try:
                result = await self._poll(task)
            except (CredentialsError, CapabilityNotEnabled) as exc:
                # Keep the task: fixing the keys and checking again picks it up where it is.
                return self._stop(watcher, task, error=exc)
            except TaskExpired as exc:
                return self._forgotten(watcher, task, exc.message)
            except ProviderError as exc:
                if not exc.retryable:
                    # The provider's definitive word on this task (a failure, a refusal, an
                    # error code that repeating will not change): re-polling cannot help.
                    task = self._update(task, "failed", error=_task_error(exc))
                    watcher.publish(task)
                    return task
                # Unavailable or rate limited after retries: keep polling, more slowly, and
                # show the error meanwhile.
                task.error = _task_error(exc)
                task = self._save(task)
                watcher.publish(task)
                delay = after_error(delay, self.settings.poll_interval)
                next_poll = watcher.next_poll = anyio.current_time() + delay
                continue
            if result.status == "expired":
                return self._forgotten(
                    watcher, task, result.error.message if result.error else EXPIRED_MESSAGE
                )
            watcher.last_poll = result
            task = self._apply_poll(task, result)
            watcher.publish(task)
            if task.status not in ("queued", "running"):
                self._history.pop(self._kind(task), None)  # learn from it next time
                break
            delay = self._next_delay(task, result, polls)
            # A provider's hint counts from its answer; the schedule's gap from the poll's start.
            next_poll = (anyio.current_time() if result.poll_after is not None else sent) + delay
            watcher.next_poll = next_poll
        return task

    def _forgotten(self, watcher: _Watcher, task: Task, message: str) -> Task:
        """The provider says it does not know the task. Final when the task was sent to this
        very origin (it was given the task and forgot it); for a task of unknown origin it may
        be another account's, so it is kept as it is."""
        recorded = self.ledger.get(task.id)
        if recorded.terminal:  # cancelled meanwhile (``cancel``): that is why it is not found
            watcher.publish(recorded)
            return recorded
        if task.origin is None:
            unsure = UNSURE_NOT_FOUND_MESSAGE.format(provider=task.provider)
            return self._stop(watcher, task, unsure, kind="not_found")
        task = self._update(task, "expired", error=TaskError(kind="expired", message=message))
        watcher.publish(task)
        return task

    async def _poll(self, task: Task) -> PollResult:
        provider = self._providers(task.provider)
        ref = _ref(task)
        return await call_with_retries(lambda: provider.poll(ref), policy=self._retry)

    def _next_delay(self, task: Task, result: PollResult, polls: int) -> float:
        """The gap to the next poll of an unfinished task (``videogen.schedule``), from what
        earlier tasks of its kind took and the provider's progress and hint."""
        return next_delay(
            elapsed=self._clock() - accepted_at(task),
            interval=self.settings.poll_interval,
            expected=self._expected(task),
            progress=result.progress,
            poll_after=result.poll_after,
            polls=polls,
            max_polls=self.settings.max_poll_attempts,
        )

    def _kind(self, task: Task) -> tuple[str, str, int]:
        return (task.origin or "", task.request.mode, task.request.provider_seconds)

    def _expected(self, task: Task) -> Expected | None:
        """What earlier finished tasks of the task's origin, mode and clip length took (read
        from the ledger at most every ``HISTORY_FRESH_SECONDS``); None without enough."""
        if task.origin is None:
            return None
        kind = self._kind(task)
        now = anyio.current_time()
        cached = self._history.get(kind)
        if cached is not None and now - cached[1] < HISTORY_FRESH_SECONDS:
            return cached[0]
        try:
            times = self.ledger.finish_times(
                task.origin,
                task.request.mode,
                same_clip(DURATIONS, task.request.duration),
                limit=HISTORY_KEPT,
            )
        except LedgerError:  # a busy ledger: the fixed schedule this time
            log.warning("could not read earlier tasks' durations", exc_info=True)
            return None
        expected = expect(times)
        self._history[kind] = (expected, now)
        return expected

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
        self,
        watcher: _Watcher,
        task: Task,
        why: str = "",
        *,
        error: VideogenError | None = None,
        kind: str = "stopped",
    ) -> Task:
        """Stop watching, keeping the task as it is with the reason recorded."""
        task.error = _task_error(error) if error else TaskError(kind=kind, message=why)
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
                    task = self._unrecoverable(task)
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

    def _unrecoverable(self, task: Task) -> Task:
        """A task reopened because its saved video was lost, that the provider no longer has:
        say plainly that the video cannot be recovered."""
        reopened = [e for e in task.history if e.status == "ready" and e.note]
        lost = reopened[-1].note if reopened else None
        if task.status not in ("expired", "failed") or lost is None or task.error is None:
            return task
        match = re.fullmatch(re.escape(LOST_MESSAGE).replace(r"\{path\}", "(.*)"), lost)
        if match is None:
            return task
        message = UNRECOVERABLE_MESSAGE.format(path=match.group(1))
        task.error = TaskError(kind=task.error.kind, message=f"{message} ({task.error.message})")
        return self._save(task)

    async def _save_video(self, watcher: _Watcher, task: Task) -> Path:
        from videogen.download import download

        filename = safe_filename(task.request.prompt, task.id, task.request.filename)
        dest_dir, adopted = await anyio.to_thread.run_sync(self._make_room, task, filename)
        if adopted is not None:
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

    def _make_room(self, task: Task, filename: str) -> tuple[Path, Path | None]:
        """The destination folder, tidied of what a killed run left for this task, and the
        file such a run saved but did not record (to adopt instead of downloading again)."""
        dest_dir = self._destination(task)
        unique = task.id in filename
        # Under the lease nobody else saves this task: what a killed run left can go. A name
        # not unique to the task (a requested filename) is swept only when long untouched.
        shared = None if unique else self._lease_seconds
        for path in sweep_temporaries(dest_dir, filename, shared_after=shared):
            log.info("removed %s, left by a run that stopped while saving %s", path, task.id)
        return dest_dir, _adoptable(dest_dir, filename) if unique else None

    def _destination(self, task: Task) -> Path:
        """Where a task's video goes: the folder it was asked for, else the configured one,
        created with its parents (``submit`` made it; it may have been removed since)."""
        folder = self._folder(task.request.output_dir)
        with contextlib.suppress(OSError):  # the download names the folder and the fix
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _url_stale(self, task: Task) -> bool:
        expires = task.video_url_expires_at
        return expires is not None and expires - self._clock() < URL_EXPIRY_MARGIN_SECONDS

    async def _fresh_poll(self, watcher: _Watcher, task: Task) -> PollResult:
        """Poll again for a fresh video URL (they expire after an hour)."""
        result = await self._poll(task)
        if result.status == "expired" and task.origin is None:
            # Maybe another account's task (see _forgotten): keep it, do not mark it expired.
            raise DownloadError(
                UNSURE_NOT_FOUND_MESSAGE.format(provider=task.provider), retryable=False
            )
        if result.status in ("failed", "expired"):
            gone = self._apply_poll(self.ledger.get(task.id), result)
            raise TaskExpired(gone.error.message if gone.error else EXPIRED_MESSAGE)
        if result.status != "succeeded":
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

    async def poster(self, task: Task) -> Task:
        """The task with a poster frame (a small JPEG beside the video, in ``.posters``), made now
        if it has none yet. Posters are made when an interface that shows them asks, not when a
        video is saved: a tracker finishing many tasks at once should not decode them all."""
        from videogen import media

        if task.status != "completed" or not task.local_path:
            return task
        if await anyio.to_thread.run_sync(saved_file, task.poster_path) is not None:
            return task
        # Only a plain file in its folder is decoded (a link planted in its place is not).
        path = await anyio.to_thread.run_sync(saved_file, task.local_path)
        if path is None:
            return task
        try:
            # Never through a planted .posters symlink: the poster would land outside.
            poster_dir = await anyio.to_thread.run_sync(posters_folder, path.parent)
            made = await media.poster(path, poster_dir / (path.stem + ".jpg"))
        except (VideogenError, OSError) as exc:
            log.warning("no poster for %s: %s", task.id, exc)
            return task
        task.poster_path = str(made)
        current = self.ledger.get(task.id)
        if current.local_path == task.local_path:  # not a copy delivered to a repeat request
            current.poster_path = task.poster_path
            self._save(current)
        return task

    async def _describe_file(self, watcher: _Watcher, task: Task, path: Path) -> Task:
        """Conform (Jimeng clips only) and probe: the file is what the task reports. A conform
        that fails leaves the provider's clip, and says so: the task is ``completed`` with the
        probed duration and fps and an error naming what was asked and why it was not made."""
        from videogen import media

        info: MediaInfo | None = None
        failure: VideogenError | None = None
        request = task.request
        if request.mode in JIMENG_MODES:  # OmniHuman and scenes last as long as they last
            conform = self._conform or media.conform
            try:
                info = await conform(path, duration=request.duration, fps=request.fps)
            except VideogenError as exc:
                failure = exc
        if info is None:
            info = await media.probe(path)
        task.media = info
        task.error = None if failure is None else _conform_error(failure, request, info)
        if task.error is not None:
            note = task.error.message
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

    # -- cancelling ---------------------------------------------------------------------------

    async def cancel(self, task_id: str, *, owner: str | None = None) -> Task:
        """Cancel a task for its caller (``TaskNotFound``); returns it as recorded.

        A task still queued at a provider that can cancel (Volcengine ``CVCancelTask``) is
        cancelled there and recorded ``failed`` with kind ``cancelled`` (nothing billed). Any
        other unfinished task only gets ``cancelled_at``: the provider may still bill it, and
        the engine still saves the video, so ``check`` shows it. A finished task is left as it
        is. The provider's refusal, if any, is in the returned task's notes.
        """
        task = self.ledger.get(task_id, owner=owner)
        if task.terminal or task.cancelled_at is not None:
            return task
        refusal: str | None = None
        if task.status == "queued" and self._foreign(task) is None:
            try:
                await self._providers(task.provider).cancel(_ref(task))
            except VideogenError as exc:
                refusal = exc.message
            else:
                task = self.ledger.get(task_id)
                if not task.terminal:
                    task.cancelled_at = self._clock()
                    error = TaskError(kind="cancelled", message=CANCELLED_AT_PROVIDER_MESSAGE)
                    task = self._update(task, "failed", error=error)
                return self._published(task)
        task = self.ledger.get(task_id)
        task.cancelled_at = self._clock()
        task = self._published(self._save(task))
        task.notes = [refusal or f"{task.provider} cannot stop a task that is {task.status}."]
        return task

    def poll_interval(self, task: Task) -> float:
        """How soon ``task`` may change (seconds), on the watcher's own schedule: the first poll
        after the submit, then the poll interval (slowed after ``max_poll_attempts``) while the
        provider works, and a ledger re-read while the video is being saved."""
        if task.status not in ("queued", "running"):
            return min(FOLLOWER_READ_SECONDS, self.settings.poll_interval)
        learned = self.next_poll_in(task.id)  # this engine's own (learned) schedule
        if learned is not None:
            return max(learned, FOLLOWER_READ_SECONDS)
        age = self._clock() - task.created_at
        if age < self._first_poll:
            return self._first_poll
        if age > self.settings.poll_interval * self.settings.max_poll_attempts:
            return SLOW_POLL_SECONDS
        return self.settings.poll_interval

    def _published(self, task: Task) -> Task:
        watcher = self._watchers.get(task.id)
        if watcher is not None:
            watcher.publish(task)
        return task


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
    data = {
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


def _uncertain(task: Task, what: SubmitUncertain | None = None) -> TaskError:
    """Why a submit's outcome is unknown: the failure seen, or a process that stopped mid-send."""
    cause = STOPPED_MID_SUBMIT if what is None else _first_clause(what.message)
    return TaskError(kind="uncertain", message=_unknown_message(task, cause))


def _first_clause(message: str) -> str:
    """ "X broke before an answer arrived; the request may ... Try again" -> "X broke ..." (the
    adapter's own advice would contradict the never-resend advice that follows)."""
    return re.split(r"[;:]\s|\.\s", message, maxsplit=1)[0].rstrip(". ")


def _unknown_message(task: Task, cause: str = STOPPED_MID_SUBMIT) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(task.created_at))
    return UNKNOWN_MESSAGE.format(cause=cause, provider=task.provider, when=when)


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


def _conform_error(exc: VideogenError, request: GenerationRequest, info: MediaInfo) -> TaskError:
    """What a failed conform leaves: the provider's clip, as probed, and why."""
    return TaskError(
        kind=exc.kind,
        message=f"The video could not be made {request.duration} s at {request.fps} fps as "
        f"asked, so it is saved as the provider made it ({info.duration:g} s at {info.fps:g} "
        f"fps): {exc.message}",
    )


def _copy_saved(saved: Path, folder: Path, name: str) -> Path | None:
    """Copy the saved video ``saved`` into ``folder`` as ``name`` (or ``stem-N``); None when
    it already is there (under that name or a numbered one)."""
    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    if saved.parent == root and is_numbered(saved.name, name):
        return None
    with open_saved(saved) as source:
        return copy_into(source, root, name)


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
