"""The ledger interface the engine types against, and what both backends share.

A ledger keeps every task as its ``Task`` JSON plus a few indexed columns (id, status, provider,
dedupe_key, owner, created_at, updated_at, origin, and the lease: lease_holder, lease_until).
The engine writes a row *before* the submit request leaves and rewrites it on every state
change, so a process that dies at any point leaves a row the next start (or another replica)
can act on. Credentials never reach the ledger: ``GenerationRequest`` holds none, and a task's
``origin`` is a hash of where it was sent, never a key.

Two backends give the same guarantees: ``sqlite.SQLiteLedger`` (one file in the data dir, the
embedded default) and ``postgres.PostgresLedger`` (one database shared by replicas,
``VIDEOGEN_DATABASE_URL``). ``open_ledger`` (in the package) picks one from the settings.

**Leases.** Several processes may follow one task. Only the process holding the task's lease
(``lease_holder``, ``lease_until``) polls, downloads and writes it; the others read. A lease is
taken with one conditional ``UPDATE`` (free, already ours, expired, or replacing a holder the
caller proved dead), renewed while the holder works and released when it stops. ``save`` never
touches the lease columns. ``claim_due`` takes the leases of unfinished tasks nobody holds (or
whose holder's lease ran out) in one transaction: replicas share out a dead replica's tasks
without two taking the same.

**One request, one row.** ``record_new`` looks for a duplicate and inserts the new task in one
transaction that excludes every other ``record_new`` of the same request: N identical requests
at once, from any number of processes, leave one row (and so one submit). With a spending
``Guard`` (``videogen.spending``), the limits are checked in that same transaction, against
every billed task of the month: racing requests cannot overshoot a limit.

**Changes.** ``changes()`` subscribes to the task ids other processes write (PostgreSQL:
``LISTEN/NOTIFY``); on SQLite the feed never fires and polling the ledger stays the way to
learn of them. Polling is the safety net on both.

**Migrations** are a numbered list per backend: ``MIGRATIONS[n]`` takes version ``n`` to
``n + 1``; never edit a released one, append one. A ledger written by a newer schema is refused
with a ``ConfigError``. Rows are read one at a time: a row this version cannot read (a status,
mode or value a newer videogen wrote) is skipped with a warning naming its task, never an error
for the whole ledger; unknown fields in a row are ignored (the ``Task`` model drops them; the
request's are dropped before it is validated). So a change to the stored shape that an older
version would misread bumps the schema with a migration; adding an optional field does not.

Calls are synchronous and fast (well under a millisecond for a row), so the engine calls them
inline on the event loop. Every failure is a ``LedgerError`` naming the ledger, the problem and
the fix.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Final

from videogen.catalog import provider_clip_seconds
from videogen.errors import LedgerError, TaskNotFound
from videogen.ledger.queueing import QueueSteps
from videogen.models import GenerationRequest, Task, TaskStatus, mode_label
from videogen.spending import Billed, Guard

log = logging.getLogger(__name__)

#: The origin of tasks recorded before origins were kept (schema 1): no session's origin, so
#: such a task is never polled, resumed or reused, only shown as it stands.
UNRECORDED_ORIGIN: Final = "unrecorded"

#: The indexed columns every write sets, in the order ``row_values`` gives them.
COLUMNS: Final = (
    "id",
    "status",
    "provider",
    "dedupe_key",
    "owner",
    "created_at",
    "updated_at",
    "data",
    "origin",
    "bucket",
)


@dataclass(frozen=True)
class Lease:
    """Who is working on a task and until when (unix time); both None when nobody is."""

    holder: str | None
    until: float | None


#: When ``claim`` may take a task's lease, as SQL (parameters: the claimer, now, the holder the
#: claimer proved dead): nobody holds it, the claimer already does, it ran out, or its holder is
#: the dead one. Both backends use this text (PostgreSQL's driver writes ``%s`` for ``?``).
TAKEABLE_LEASE: Final = (
    "(lease_holder IS NULL OR lease_holder = ? OR lease_until < ? OR lease_holder = ?)"
)
#: A task nobody works on, for ``claim_due`` (parameter: now): no holder, or its lease ran out.
UNHELD_LEASE: Final = "(lease_holder IS NULL OR lease_until < ?)"


def new_holder() -> str:
    """A lease holder name for this process: ``host:pid:random`` (unique per engine)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def holder_is_dead(holder: str) -> bool:
    """True only when ``holder`` is provably gone: a process of this host that no longer runs
    (or is a zombie). A holder on another host is never declared dead: its lease expires."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # killed but not yet reaped by its parent: dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


class TaskRows(list[Task]):
    """Tasks read from the ledger, and the ids of the rows that were skipped (unreadable)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[str] = []


@dataclass(frozen=True)
class Change:
    """A task written by some process: its id, and the status and queue bucket it was written
    with (what a waiter needs to tell whether the change concerns it)."""

    task_id: str
    status: str
    bucket: str | None = None

    @property
    def payload(self) -> str:
        """The change as one notification's text: ``id status [bucket]`` (none has a space)."""
        return " ".join(p for p in (self.task_id, self.status, self.bucket) if p)

    @classmethod
    def from_payload(cls, payload: str) -> Change:
        task_id, _, rest = payload.partition(" ")
        status, _, bucket = rest.partition(" ")
        return cls(task_id, status, bucket or None)


class ChangeFeed(abc.ABC):
    """Tasks written by any process since the feed was opened, for a waiter to wake on.

    ``wait`` blocks (call it from a worker thread, e.g. ``anyio.to_thread.run_sync``): it returns
    the changes that arrived since the last ``wait`` as soon as there is one, or an empty set
    after ``timeout`` seconds. A feed may miss changes (its connection dropped): poll as well.
    """

    @abc.abstractmethod
    def wait(self, timeout: float) -> set[Change]: ...

    def close(self) -> None:  # noqa: B027 - a feed with nothing to release keeps this
        """Stop receiving (idempotent)."""

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Ledger(QueueSteps, abc.ABC):
    """Tasks by id, with the queries the engine and the interfaces need.

    ``owner`` filters: ``None`` means "no isolation" (stdio server, CLI: one local user sees every
    task); a string restricts reads to that owner's tasks (HTTP transport, one owner per token).
    Every method raises ``LedgerError`` (never a driver's own error) when the store fails.
    The queue's steps are declared in ``queueing.QueueSteps``.
    """

    #: How messages name this ledger: its file, or its database (never a password).
    where: str

    @classmethod
    def in_dir(cls, data_dir: Path) -> Ledger:
        """The embedded SQLite ledger in ``data_dir`` (``open_ledger`` chooses by settings)."""
        from videogen.ledger.sqlite import SQLiteLedger

        return SQLiteLedger.in_dir(data_dir)

    # -- life ---------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def check_room(self) -> None:
        """``LedgerError`` (saying nothing was billed) when a new task's provider answer could
        not be recorded now: checked before anything is sent."""

    # -- writes -------------------------------------------------------------------------------

    @abc.abstractmethod
    def insert(self, task: Task, *, lease: Lease | None = None, guard: Guard | None = None) -> None:
        """Write a new task, optionally leased at once (an existing id is an error: ids are
        random, never reused); ``guard`` checks the spending limits in the same transaction."""

    @abc.abstractmethod
    def record_new(
        self,
        task: Task,
        *,
        since: float,
        exclude: Iterable[TaskStatus] = (),
        sandbox: bool | None = None,
        lease: Lease | None = None,
        guard: Guard | None = None,
    ) -> Task | None:
        """Find a duplicate of ``task`` or record it, as one atomic step.

        Returns the newest task with ``task``'s dedupe key, owner and origin (see
        ``find_duplicate``) created at or after ``since``; when there is none, inserts ``task``
        (leased to ``lease``) and returns None. Identical requests racing from any number of
        processes record one task between them. ``guard`` (when given) checks a new task
        against the spending limits in that transaction: it raises (nothing recorded) or gives
        the task to insert. A duplicate is never checked.
        """

    @abc.abstractmethod
    def save(self, task: Task) -> None:
        """Write the task as it now stands (insert or update); the lease is left as it is. A
        recorded ``cancelled_at`` survives a save of a copy read before it."""

    # -- leases -------------------------------------------------------------------------------

    @abc.abstractmethod
    def claim(
        self, task_id: str, holder: str, *, until: float, now: float, replacing: str | None = None
    ) -> bool:
        """Take (or renew) the task's lease for ``holder`` until ``until``; True when taken.

        Taken when nobody holds it, ``holder`` already does, it ran out before ``now``, or its
        holder is ``replacing`` (one the caller proved dead). One statement: two processes
        racing for it cannot both win.
        """

    @abc.abstractmethod
    def claim_due(
        self,
        holder: str,
        *,
        until: float,
        now: float,
        statuses: Collection[TaskStatus],
        origin: str | None = None,
        limit: int = 20,
    ) -> TaskRows:
        """Lease to ``holder`` (until ``until``) up to ``limit`` tasks in one of ``statuses``
        (sent to ``origin``, when given) whose lease is free or ran out before ``now``, oldest
        first, and return them. One transaction: holders racing never take the same task. A
        row this version cannot read is not leased (``.skipped`` names it)."""

    @abc.abstractmethod
    def lease(self, task_id: str) -> Lease:
        """The task's lease as stored (it may have run out)."""

    @abc.abstractmethod
    def renew(self, holder: str, task_ids: Iterable[str], *, until: float) -> int:
        """Extend ``holder``'s leases on ``task_ids`` (the tasks it is working on right now) to
        ``until``; returns how many. A lease on any other task is left to run out."""

    @abc.abstractmethod
    def release(self, task_id: str, holder: str) -> None:
        """Give the lease up (no-op when ``holder`` does not hold it)."""

    @abc.abstractmethod
    def release_all(self, holder: str) -> int:
        """Give up every lease ``holder`` has (a process that stops hands its tasks to the
        others at once, instead of after their leases run out); returns how many."""

    # -- reads --------------------------------------------------------------------------------

    def get(self, task_id: str, *, owner: str | None = None) -> Task:
        """The task, or ``TaskNotFound`` (also when it belongs to another owner); a row this
        version cannot read is a ``LedgerError`` saying so."""
        row = self._row(task_id)
        if row is None or (owner is not None and row[2] != owner):
            raise TaskNotFound(
                f"No task {task_id!r} in the ledger: check the id (it starts with 'vg_'), or "
                "list recent tasks (the list_tasks tool, or `videogen tasks` on the command "
                "line)."
            )
        task = self._read(row[0], row[1])
        if task is None:
            raise LedgerError(
                f"Task {task_id} in the task ledger at {self.where} was recorded by a newer "
                "videogen and this version cannot read it: check it with that version, or "
                "upgrade videogen."
            )
        return task

    @abc.abstractmethod
    def _row(self, task_id: str) -> tuple[str, str, str | None] | None:
        """The row's id, stored JSON and owner, or None."""

    @abc.abstractmethod
    def recent(self, *, limit: int = 20, owner: str | None = None) -> TaskRows:
        """Most recent first; rows this version cannot read are skipped (``.skipped``)."""

    @abc.abstractmethod
    def with_status(self, statuses: Iterable[TaskStatus]) -> TaskRows:
        """Every task in one of ``statuses``, oldest first (what a restart resumes)."""

    @abc.abstractmethod
    def finish_times(
        self, origin: str, mode: str, durations: Sequence[int], *, limit: int
    ) -> list[float]:
        """Seconds from accepted submit (first ``queued``) to ``ready`` of the latest ``limit``
        tasks sent to ``origin`` in ``mode`` with one of the requested ``durations`` that got
        to ``ready`` (what the poll schedule learns from, ``videogen.schedule``)."""

    @abc.abstractmethod
    def find_duplicate(
        self,
        dedupe_key: str,
        *,
        owner: str | None,
        since: float,
        exclude: Iterable[TaskStatus] = (),
        sandbox: bool | None = None,
        origin: str | None = None,
    ) -> Task | None:
        """The newest task with this key and owner created at or after ``since``, if any.

        ``sandbox`` (when given) keeps only tasks made by the sandbox (True) or by a real
        provider (False): the same request must not be answered with the other's task.
        ``origin`` (when given) keeps only tasks sent to that endpoint and account.
        """

    @abc.abstractmethod
    def billed_since(
        self, since: float, *, sandbox: bool, owner: str | None = None
    ) -> list[Billed]:
        """Every billed task (``spending.billed_where``) created at or after ``since`` with this
        sandbox flag, oldest first; ``owner`` (when given) keeps that owner's alone."""

    #: True when ``changes`` hears what other processes write (PostgreSQL's NOTIFY); False
    #: when it never fires and waiters rely on re-reading alone.
    notifies: ClassVar[bool] = False

    def changes(self) -> ChangeFeed:
        """A feed of the tasks written from now on (see ``ChangeFeed``). This default never
        fires: its ``wait`` just times out, and polling finds the changes."""
        return _SilentFeed()

    # -- shared by the backends ---------------------------------------------------------------

    def _read_all(self, rows: Iterable[tuple[str, str]]) -> TaskRows:
        tasks = TaskRows()
        for task_id, data in rows:
            task = self._read(task_id, data)
            if task is None:
                tasks.skipped.append(task_id)
            else:
                tasks.append(task)
        return tasks

    def _first_readable(self, rows: Iterable[tuple[str, str]]) -> Task | None:
        """The first row's task this version can read (rows it cannot are passed by)."""
        for task_id, data in rows:
            task = self._read(task_id, data)
            if task is not None:
                return task
        return None

    def _read(self, task_id: str, data: str) -> Task | None:
        """The row's task, or None (with a warning naming it) when this version cannot read it."""
        try:
            return parse_task(data)
        except ValueError as exc:  # pydantic's ValidationError, or JSON that is not JSON
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning(
                "task %s in %s cannot be read by this videogen version (a newer one may have "
                "written it); skipped: %s",
                task_id,
                self.where,
                first,
            )
            return None

    @staticmethod
    def _guarded(
        task: Task, guard: Guard | None, billed_since: Callable[[float, bool], list[Billed]]
    ) -> Task:
        """``task`` as ``guard`` passes it, checked against ``billed_since(since, sandbox)`` in
        the caller's transaction (read only when a limit or price applies)."""
        if guard is None or not guard.policy.active:
            return task
        return guard(task, billed_since(guard.since, task.sandbox))


class _SilentFeed(ChangeFeed):
    def wait(self, timeout: float) -> set[Change]:
        threading.Event().wait(max(timeout, 0.0))
        return set()


def row_values(task: Task) -> tuple[object, ...]:
    """The values of ``COLUMNS`` for ``task``."""
    return (
        task.id,
        task.status,
        task.provider,
        task.dedupe_key or task.request.dedupe_key(),
        task.owner,
        task.created_at,
        task.updated_at,
        task.model_dump_json(),
        task.origin,
        task.bucket,
    )


def billed_row(
    at: float, who: str | None, provider: str, mode: str, scene: str | None, length: int
) -> Billed:
    """One billed task from the columns ``billed_since`` selects (created_at, owner, provider,
    the request's mode, scene and duration)."""
    return Billed(at, who, provider, mode_label(str(mode), scene), provider_clip_seconds(length))


def parse_task(data: str) -> Task:
    """A stored task. Unknown fields are ignored (``Task`` drops its own; the request's are
    dropped here, the request model refusing them from callers); unknown values are errors."""
    try:
        return Task.model_validate_json(data)
    except ValueError:
        stored: Any = json.loads(data)
        request = stored.get("request") if isinstance(stored, dict) else None
        if not isinstance(request, dict):
            raise
        known = GenerationRequest.model_fields
        stored["request"] = {k: v for k, v in request.items() if k in known}
        return Task.model_validate(stored)
