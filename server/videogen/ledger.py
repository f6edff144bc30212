"""The durable task ledger: one SQLite file in WAL mode under ``settings.data_dir``.

Each task is stored as its ``Task`` JSON plus a few indexed columns (id, status, provider,
dedupe_key, owner, created_at, updated_at, origin). The engine writes a row *before* the submit
request leaves and rewrites it on every state change, so a process that dies at any point leaves
a row the next start can act on. Credentials never reach the ledger: ``GenerationRequest`` holds
none, and a task's ``origin`` is a hash of where it was sent, never a key.

**Leases.** Several processes may follow one task (the CLI's ``check`` next to the MCP server's
tracker, two hosts on one data dir). Only the process holding the task's lease
(``lease_holder``, ``lease_until``) polls, downloads and writes it; the others read. A lease is
taken with one conditional ``UPDATE`` (free, already ours, expired, or replacing a holder the
caller proved dead), renewed while the holder works and released when it stops. ``save`` never
touches the lease columns.

The CLI and the server may open the same file at once: WAL lets readers and one writer work
together, ``busy_timeout`` makes a writer wait for the other instead of failing, and every
transaction is one short statement. Calls are synchronous and fast (well under a millisecond
for a row; see tests/engine/test_ledger.py), so the engine calls them inline on the event loop.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes version ``n`` to
``n + 1``. Never edit a released migration: append one.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from videogen.errors import ConfigError, TaskNotFound
from videogen.models import Task, TaskStatus

LEDGER_FILENAME: Final = "tasks.sqlite3"
BUSY_TIMEOUT_MS: Final = 5000

MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        provider TEXT NOT NULL,
        dedupe_key TEXT NOT NULL,
        owner TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX tasks_dedupe ON tasks (dedupe_key, created_at);
    CREATE INDEX tasks_status ON tasks (status);
    CREATE INDEX tasks_owner_created ON tasks (owner, created_at);
    """,
    # 2: where a task was sent (a fingerprint, see engine.origin_of) and who is working on it.
    # Rows from version 1 keep origin NULL: the engine treats them by their sandbox flag.
    """
    ALTER TABLE tasks ADD COLUMN origin TEXT;
    ALTER TABLE tasks ADD COLUMN lease_holder TEXT;
    ALTER TABLE tasks ADD COLUMN lease_until REAL;
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_COLUMNS: Final = "id, status, provider, dedupe_key, owner, created_at, updated_at, data, origin"
_MARKS: Final = ", ".join("?" * len(_COLUMNS.split(",")))
#: A cancel request (``Task.cancelled_at``), once recorded, survives a save of a copy read
#: before it (by a watcher mid-poll, or by another process).
_KEEP_CANCELLED: Final = (
    "json_set(excluded.data, '$.cancelled_at', COALESCE("
    "json_extract(excluded.data, '$.cancelled_at'), json_extract(tasks.data, '$.cancelled_at')))"
)
#: ``save`` rewrites every column but the lease's.
_UPSERT: Final = (
    f"INSERT INTO tasks ({_COLUMNS}) VALUES ({_MARKS}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(
        f"{c} = {_KEEP_CANCELLED if c == 'data' else 'excluded.' + c}"
        for c in (c.strip() for c in _COLUMNS.split(",")[1:])
    )
)


@dataclass(frozen=True)
class Lease:
    """Who is working on a task and until when (unix time); both None when nobody is."""

    holder: str | None
    until: float | None


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


class Ledger:
    """Tasks by id, with the queries the engine and the interfaces need.

    ``owner`` filters: ``None`` means "no isolation" (stdio server, CLI: one local user sees every
    task); a string restricts reads to that owner's tasks (HTTP transport, one owner per token).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"Cannot open the task ledger at {path}: {exc}. Set VIDEOGEN_DATA_DIR to a "
                "writable directory."
            ) from exc
        # One connection shared by the loop thread and worker threads: serialise its use.
        self._lock = threading.Lock()
        self._setup()

    @classmethod
    def in_dir(cls, data_dir: Path) -> Ledger:
        return cls(data_dir / LEDGER_FILENAME)

    def _setup(self) -> None:
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL is durable against process death (the case we design for); only an
            # OS crash can lose the last commits.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()

    def _migrate(self) -> None:
        version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"The task ledger at {self.path} was written by a newer videogen (schema "
                f"{version}, this one knows {SCHEMA_VERSION}): upgrade videogen or point "
                "VIDEOGEN_DATA_DIR elsewhere."
            )
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[number]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            version: int = self._db.execute("PRAGMA user_version").fetchone()[0]
            return version

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writes -------------------------------------------------------------------------------

    def insert(self, task: Task, *, lease: Lease | None = None) -> None:
        """Write a new task, optionally leased at once (an existing id is an error: ids are
        random, never reused)."""
        held = lease or Lease(None, None)
        sql = f"INSERT INTO tasks ({_COLUMNS}, lease_holder, lease_until) VALUES ({_MARKS}, ?, ?)"
        with self._lock:
            self._db.execute(sql, (*_row(task), held.holder, held.until))

    def save(self, task: Task) -> None:
        """Write the task as it now stands (insert or update); the lease is left as it is."""
        with self._lock:
            self._db.execute(_UPSERT, _row(task))

    # -- leases -------------------------------------------------------------------------------

    def claim(
        self, task_id: str, holder: str, *, until: float, now: float, replacing: str | None = None
    ) -> bool:
        """Take (or renew) the task's lease for ``holder`` until ``until``; True when taken.

        Taken when nobody holds it, ``holder`` already does, it ran out before ``now``, or its
        holder is ``replacing`` (one the caller proved dead). One statement: two processes
        racing for it cannot both win.
        """
        with self._lock:
            cursor = self._db.execute(
                "UPDATE tasks SET lease_holder = ?, lease_until = ? WHERE id = ? AND ("
                "lease_holder IS NULL OR lease_holder = ? OR lease_until < ? OR lease_holder = ?)",
                (holder, until, task_id, holder, now, replacing),
            )
            return cursor.rowcount == 1

    def lease(self, task_id: str) -> Lease:
        """The task's lease as stored (it may have run out)."""
        with self._lock:
            row = self._db.execute("SELECT lease_holder, lease_until FROM tasks WHERE id = ?",
                                   (task_id,)).fetchone()  # fmt: skip
        return Lease(None, None) if row is None else Lease(row[0], row[1])

    def renew(self, holder: str, *, until: float) -> int:
        """Extend every lease ``holder`` has to ``until``; returns how many."""
        with self._lock:
            cursor = self._db.execute("UPDATE tasks SET lease_until = ? WHERE lease_holder = ?",
                                      (until, holder))  # fmt: skip
            return cursor.rowcount

    def release(self, task_id: str, holder: str) -> None:
        """Give the lease up (no-op when ``holder`` does not hold it)."""
        with self._lock:
            self._db.execute("UPDATE tasks SET lease_holder = NULL, lease_until = NULL "
                             "WHERE id = ? AND lease_holder = ?", (task_id, holder))  # fmt: skip

    # -- reads --------------------------------------------------------------------------------

    def get(self, task_id: str, *, owner: str | None = None) -> Task:
        """The task, or ``TaskNotFound`` (also when it belongs to another owner)."""
        with self._lock:
            row = self._db.execute("SELECT data, owner FROM tasks WHERE id = ?",
                                   (task_id,)).fetchone()  # fmt: skip
        if row is None or (owner is not None and row[1] != owner):
            raise TaskNotFound(
                f"No task {task_id!r} in the ledger: check the id (it starts with 'vg_'), or "
                "list recent tasks (the list_tasks tool, or `videogen tasks` on the command "
                "line)."
            )
        return _task(row[0])

    def recent(self, *, limit: int = 20, owner: str | None = None) -> list[Task]:
        """Most recent first."""
        where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        with self._lock:
            rows = self._db.execute(f"SELECT data FROM tasks {where} ORDER BY created_at DESC "
                                    "LIMIT ?", (*args, limit)).fetchall()  # fmt: skip
        return [_task(r[0]) for r in rows]

    def with_status(self, statuses: Iterable[TaskStatus]) -> list[Task]:
        """Every task in one of ``statuses``, oldest first (what a restart resumes)."""
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted))
        with self._lock:
            rows = self._db.execute(f"SELECT data FROM tasks WHERE status IN ({marks}) "
                                    "ORDER BY created_at", wanted).fetchall()  # fmt: skip
        return [_task(r[0]) for r in rows]

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
        ``origin`` (when given) keeps only tasks sent to that endpoint and account; rows older
        than origins (NULL) are kept and left to the ``sandbox`` filter.
        """
        skipped = tuple(exclude)
        marks = ", ".join("?" * len(skipped)) or "''"
        # json_extract gives 1/0 for the Task JSON's true/false; NULL (no filter) matches all.
        wanted = None if sandbox is None else int(sandbox)
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM tasks WHERE dedupe_key = ? AND owner IS ? AND created_at >= ? "
                f"AND status NOT IN ({marks}) "
                "AND (? IS NULL OR json_extract(data, '$.sandbox') = ?) "
                "AND (? IS NULL OR origin IS NULL OR origin = ?) "
                "ORDER BY created_at DESC LIMIT 1",
                (dedupe_key, owner, since, *skipped, wanted, wanted, origin, origin),
            ).fetchone()
        return None if row is None else _task(row[0])


def _row(task: Task) -> tuple[object, ...]:
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
    )


def _task(data: str) -> Task:
    return Task.model_validate_json(data)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]
