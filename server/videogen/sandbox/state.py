"""The sandbox's memory: options, clock, request log, tasks and the URLs it has handed out.

Everything here is plain data guarded by the event loop the sandbox runs in; the only I/O is
the optional ``TaskStore`` (``SandboxOptions.state_dir``), which persists tasks and the request
log so that later sandboxes (other processes) answer for them. Time always comes from the
injected clock, so tests can move a task from ``in_queue`` to ``done`` (or a URL past its
expiry) without sleeping.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from videogen.catalog import ProviderName
from videogen.sandbox.faults import FaultBook, parse_faults

Clock = Callable[[], float]
Operation = Literal[
    "submit",
    "poll",
    "download",
    "detect",
    "recognize_submit",
    "recognize_poll",
    "cancel",
    "asset",
    "other",
]
TaskKind = Literal["jimeng", "omnihuman", "recognition", "scene"]


@dataclass
class SandboxOptions:
    """How the sandbox behaves. Mutable while it runs (``sb.options.job_seconds = 0.5``).

    ``faults`` holds fault specs (grammar in ``videogen.sandbox.faults``); changing the tuple
    (or calling ``RunningSandbox.set_faults``) restarts every fault's hit counter.

    ``state_dir``: None keeps everything in memory (tasks die with the sandbox). A directory
    persists every task and the request log there (``videogen.sandbox.store``): a sandbox
    started later, or running at the same time in another process, on the same directory
    answers for them; the render cache then lives in ``state_dir / "renders"``. Read at start.
    """

    job_seconds: float = 8.0
    url_ttl_seconds: float = 3600.0
    concurrency_limit: int | None = None
    tokenops_vocabulary: Literal["seed", "openai"] = "seed"
    tokenops_content: Literal["bytes", "redirect", "json"] = "bytes"
    faults: tuple[str, ...] = ()
    state_dir: Path | None = None

    def __post_init__(self) -> None:
        parse_faults(self.faults)  # refuse a bad spec at once, naming the grammar
        if self.job_seconds < 0 or self.url_ttl_seconds < 0:
            raise ValueError("job_seconds and url_ttl_seconds must not be negative")


class ManualClock:
    """A clock that moves only when told to. Starts at the wall time so signatures still verify.

    Pass one to ``serve(clock=...)`` (and to the code under test) and call ``advance``.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def set(self, now: float) -> None:
        self.now = now


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One request the sandbox answered (or dropped: ``http_status`` 0)."""

    provider: ProviderName | None
    operation: Operation
    method: str
    path: str
    http_status: int
    task_id: str | None
    at: float
    code: int | str | None = None
    fault: str | None = None


class RequestLog:
    """Every request, in arrival order. ``count(provider="volcengine", operation="poll")``.

    ``sink`` also receives each entry (the persistent store's log, when there is one).
    """

    def __init__(
        self,
        entries: list[LogEntry] | None = None,
        *,
        sink: Callable[[LogEntry], None] | None = None,
    ) -> None:
        self.entries: list[LogEntry] = entries if entries is not None else []
        self._sink = sink

    def append(self, entry: LogEntry) -> None:
        self.entries.append(entry)
        if self._sink is not None:
            self._sink(entry)

    def select(
        self, provider: str | None = None, operation: str | None = None, **filters: Any
    ) -> list[LogEntry]:
        """Entries matching every given field (``None`` for provider/operation: any)."""
        return [
            e
            for e in self.entries
            if (provider is None or e.provider == provider)
            and (operation is None or e.operation == operation)
            and all(getattr(e, k) == v for k, v in filters.items())
        ]

    def count(
        self, provider: str | None = None, operation: str | None = None, **filters: Any
    ) -> int:
        return len(self.select(provider, operation, **filters))

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class SandboxTask:
    """One task on any provider. Its status is a function of the clock (``phase``)."""

    provider: ProviderName
    kind: TaskKind
    task_id: str
    req_key: str | None
    owner: str  # access key / API key: concurrency is counted per owner
    submitted_at: float
    job_seconds: float
    render: Any  # a RenderSpec, or None for recognition tasks
    failure: tuple[int, str] | None = None  # (code, message) shown once the job has run
    fail_early: bool = False  # show the failure after the first phase (OmniHuman audio)
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def progress(self, now: float) -> float:
        """0..1, how far along the job is."""
        if self.job_seconds <= 0:
            return 1.0
        return max(0.0, min(1.0, (now - self.submitted_at) / self.job_seconds))

    def finished(self, now: float) -> bool:
        return self.progress(now) >= 1.0

    def in_flight(self, now: float) -> bool:
        return not self.cancelled and not self.finished(now)


@dataclass
class FileGrant:
    """A URL handed out for a file: ``/files/{token}.{ext}`` until ``expires_at``."""

    token: str
    expires_at: float
    content_type: str
    render: Any = None  # RenderSpec for a video
    data: bytes | None = None  # small files (masks)
    provider: ProviderName | None = None
    task_id: str | None = None


class TaskStore(Protocol):
    """Where a persistent sandbox keeps its tasks and request log (``sandbox.store.TaskStore``
    is the one implementation); this module does not import it, so the two stay acyclic."""

    def save(self, task: SandboxTask, *, now: float) -> None: ...
    def load(self, provider: ProviderName, task_id: str) -> SandboxTask | None: ...
    def in_flight(self, owner: str, now: float) -> int: ...
    def log(self, entry: LogEntry) -> None: ...
    def log_entries(self) -> list[LogEntry]: ...


class SandboxState:
    """Tasks, grants, faults and the log of one running sandbox.

    With a ``store`` the store is the truth for tasks: ``find`` reads it every time (another
    process may have changed a task), and whoever changes a task calls ``update``. ``tasks``
    then holds only the tasks this sandbox created (for inspection).
    """

    def __init__(
        self, options: SandboxOptions, clock: Clock, store: TaskStore | None = None
    ) -> None:
        self.options = options
        self.clock = clock
        self.store = store
        self.log = RequestLog(sink=store.log if store is not None else None)
        self.faults = FaultBook()
        self.tasks: dict[tuple[ProviderName, str], SandboxTask] = {}
        self.grants: dict[str, FileGrant] = {}
        self.base_url = ""
        self._serial = 0

    # -- options with faults applied ------------------------------------------------------
    def job_seconds(self) -> float:
        override = self.book().job_seconds
        return self.options.job_seconds if override is None else override

    def concurrency_limit(self) -> int | None:
        override = self.book().concurrency
        return self.options.concurrency_limit if override is None else override

    def set_faults(self, specs: tuple[str, ...]) -> None:
        """Replace the faults and restart every counter (even for an identical list)."""
        book = FaultBook(specs)  # parses first: a bad spec changes nothing
        self.options.faults = specs
        self.faults = book

    def book(self) -> FaultBook:
        """The fault book, re-parsed (counters reset) whenever ``options.faults`` changed."""
        if self.faults.specs != self.options.faults:
            self.faults = FaultBook(self.options.faults)
        return self.faults

    # -- tasks ---------------------------------------------------------------------------
    def add_task(self, task: SandboxTask) -> SandboxTask:
        self.tasks[(task.provider, task.task_id)] = task
        self.update(task)
        return task

    def update(self, task: SandboxTask) -> None:
        """Record a change to a task (a no-op in memory: the object is the record)."""
        if self.store is not None:
            self.store.save(task, now=self.clock())

    def find(self, provider: ProviderName, task_id: str) -> SandboxTask | None:
        if self.store is not None:
            return self.store.load(provider, task_id)
        return self.tasks.get((provider, task_id))

    def history(self) -> RequestLog:
        """Every request every sandbox on this state directory answered (this one's log when
        nothing is persisted)."""
        if self.store is None:
            return self.log
        return RequestLog(self.store.log_entries())

    def in_flight(self, owner: str) -> int:
        now = self.clock()
        if self.store is not None:
            return self.store.in_flight(owner, now)
        return sum(
            1
            for t in self.tasks.values()
            if t.owner == owner and t.kind != "recognition" and t.in_flight(now)
        )

    def over_concurrency(self, owner: str) -> bool:
        limit = self.concurrency_limit()
        return limit is not None and self.in_flight(owner) >= limit

    # -- ids -----------------------------------------------------------------------------
    def numeric_id(self, digits: int) -> str:
        """A task id like the providers' (a 19- or 20-digit decimal string), never repeated."""
        self._serial += 1
        head = str(7 if digits == 19 else 1)
        body = str(secrets.randbelow(10 ** (digits - 7))).zfill(digits - 7)
        return head + body + str(self._serial % 1_000_000).zfill(6)

    @staticmethod
    def uuid() -> str:
        return str(uuid.uuid4())

    def request_id(self) -> str:
        """14-digit UTC timestamp plus 20 upper-case hex characters (contracts.md §1.1)."""
        stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%d%H%M%S")
        return stamp + secrets.token_hex(10).upper()

    # -- file URLs -----------------------------------------------------------------------
    def grant(
        self,
        *,
        ext: str,
        content_type: str,
        render: Any = None,
        data: bytes | None = None,
        provider: ProviderName | None = None,
        task_id: str | None = None,
    ) -> tuple[str, FileGrant]:
        """A fresh URL for a file, expiring after ``url_ttl_seconds`` (at once if faulted)."""
        now = self.clock()
        ttl = -1.0 if self.book().expired_urls else self.options.url_ttl_seconds
        g = FileGrant(
            token=secrets.token_hex(16),
            expires_at=now + ttl,
            content_type=content_type,
            render=render,
            data=data,
            provider=provider,
            task_id=task_id,
        )
        self.grants[g.token] = g
        return f"{self.base_url}/files/{g.token}.{ext}", g
