"""What every part of the engine shares: settings, factories, clock, timings, and the small
conversions between provider answers and recorded tasks."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from videogen.catalog import ProviderName
from videogen.config import LEASE_SECONDS, Settings
from videogen.destination import ProvenFolders
from videogen.errors import InputError, ProviderError, SubmitUncertain, VideogenError
from videogen.models import MediaInfo, Task, TaskError, TaskStatus
from videogen.providers.base import Provider, TaskRef
from videogen.retry import RetryPolicy

if TYPE_CHECKING:
    import httpx2

    from videogen.storage import Storage

#: The first poll comes this soon after a submit, so fast failures surface fast.
FIRST_POLL_SECONDS: Final = 1.0
#: A waiting caller hears from the engine at least this often (MCP progress notifications).
HEARTBEAT_SECONDS: Final = 5.0
#: Tasks waiting their turn re-read the ledger this often for room other processes made.
QUEUE_RECHECK_SECONDS: Final = 1.5
#: Provider request ids kept per task (the submit's first, then the latest polls').
REQUEST_IDS_KEPT: Final = 8

UNKNOWN_MESSAGE: Final = (
    "{cause}, so it is not known whether {provider} received it: it may or may not have been "
    "billed. Look for it in the provider's console or bill (around {when}); if it is not there, "
    "submit the request again (new=true, or --new on the command line). videogen never resends "
    "a submit by itself."
)
#: The cause when nothing more is known: the process died (or was stopped) mid-submit.
STOPPED_MID_SUBMIT: Final = "The process stopped while the submit request was in flight"


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
    result, or raises ``VideogenError`` (``media.conform_sync``; tests give a failing one).
    Called in a worker thread."""

    def __call__(self, path: Path, *, duration: float, fps: int) -> MediaInfo: ...


@dataclass
class Context:
    """The engine's configuration, shared (by reference) by all of its parts."""

    settings: Settings
    providers: ProviderFactory
    clients: ClientFactory
    clock: Callable[[], float] = time.time
    retry: RetryPolicy | None = None
    first_poll: float = FIRST_POLL_SECONDS
    heartbeat: float = HEARTBEAT_SECONDS
    lease_seconds: float = LEASE_SECONDS
    queue_recheck: float = QUEUE_RECHECK_SECONDS
    #: None: ``media.conform_sync`` (imported when first needed: it brings PyAV's helpers).
    conform: Conform | None = None
    #: The object store (``VIDEOGEN_STORAGE_URL``); None when not configured.
    storage: Storage | None = None
    #: Output folders proven writable before billing (``destination.prepare_folder``).
    folders: ProvenFolders = field(default_factory=ProvenFolders)

    def __post_init__(self) -> None:
        settings = self.settings
        if self.retry is None:
            self.retry = RetryPolicy(wait_max=min(30.0, settings.poll_interval * 4))
        self.first_poll = min(self.first_poll, settings.poll_interval)

    @property
    def policy(self) -> RetryPolicy:
        assert self.retry is not None  # set in __post_init__
        return self.retry

    def folder(self, output_dir: str | None) -> Path:
        """A request's output folder: the one it asked for, else the configured one."""
        return Path(output_dir) if output_dir else self.settings.output_dir


def task_ref(task: Task) -> TaskRef:
    if task.provider_task_id is None:
        raise InputError(f"Task {task.id} has no provider id (it was never accepted).")
    return TaskRef(task.provider_task_id, task.req_key)


def keep_ids(ids: list[str], new: str) -> list[str]:
    if new in ids:
        return ids
    kept = [*ids, new]
    return kept if len(kept) <= REQUEST_IDS_KEPT else [kept[0], *kept[-(REQUEST_IDS_KEPT - 1) :]]


def task_error(exc: VideogenError) -> TaskError:
    if isinstance(exc, ProviderError):
        code = None if exc.code is None else str(exc.code)
        return TaskError(kind=exc.kind, message=exc.message, code=code, request_id=exc.request_id)
    return TaskError(kind=exc.kind, message=exc.message)


def uncertain(task: Task, what: SubmitUncertain | None = None) -> TaskError:
    """Why a submit's outcome is unknown: the failure seen, or a process that stopped mid-send."""
    cause = STOPPED_MID_SUBMIT if what is None else _first_clause(what.message)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(task.created_at))
    message = UNKNOWN_MESSAGE.format(cause=cause, provider=task.provider, when=when)
    return TaskError(kind="uncertain", message=message)


def _first_clause(message: str) -> str:
    """ "X broke before an answer arrived; the request may ... Try again" -> "X broke ..." (the
    adapter's own advice would contradict the never-resend advice that follows)."""
    return re.split(r"[;:]\s|\.\s", message, maxsplit=1)[0].rstrip(". ")
