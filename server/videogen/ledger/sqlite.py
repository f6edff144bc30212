"""The embedded ledger: one SQLite file in WAL mode under ``settings.data_dir``.

What a ledger keeps and guarantees is in ``base``; this is how SQLite keeps it.

**Several processes, one file.** The CLI and the server may open the same file at once (the
CLI's ``check`` next to the MCP server's tracker, two hosts on one data dir): WAL lets readers
and one writer work together, ``busy_timeout`` makes a writer wait for the other instead of
failing, and every transaction is one short statement. ``record_new`` (find a duplicate or
insert, with the spending ``Guard``), ``insert`` with a guard and ``claim_due`` each run in one
``BEGIN IMMEDIATE`` transaction: every other writer waits until it ends. ``release_all`` hands
back every lease of a process that stops. Calls are synchronous
and fast (well under a millisecond for a row; see tests/engine/test_ledger.py), so the engine
calls them inline on the event loop. ``changes()`` never fires here: polling finds what other
processes wrote.

**Private, and plain about failures.** The data dir is created 0700 and the ledger 0600 (SQLite
gives its -wal and -shm files the ledger's mode): it holds prompts, local paths and signed URLs.
Every SQLite or file-system failure becomes a ``LedgerError`` that names the data dir, what is
wrong (damaged, read-only, full, busy) and the fix.

**The queue** (``engine.queue``): each task's ``bucket`` column (``Task.bucket``) and the
``concurrency_limits`` table (limits learned from providers' concurrency refusals) back
``take_turn``, the one atomic step that moves a ``waiting`` task to ``submitting`` within its
bucket's limit, in order. Those methods are grouped, their SQL in module constants, plain SQL.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[n]`` takes version ``n`` to
``n + 1``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final

from videogen.errors import ConfigError, LedgerError
from videogen.ledger.base import (
    COLUMNS,
    UNRECORDED_ORIGIN,
    Lease,
    Ledger,
    TaskRows,
    billed_row,
    row_values,
)
from videogen.ledger.sqlite_leases import SQLiteLeases
from videogen.ledger.sqlite_queue import SQLiteQueue
from videogen.models import Task, TaskStatus
from videogen.spending import BILLED_WHERE, Billed, Guard

LEDGER_FILENAME: Final = "tasks.sqlite3"
BUSY_TIMEOUT_MS: Final = 5000
#: The data dir is created with this mode, the ledger file (and so its -wal/-shm) with the next.
DATA_DIR_MODE: Final = 0o700
LEDGER_MODE: Final = 0o600
#: A submit is refused (nothing billed) when the data dir's disk has less room than this: the
#: ledger must be able to record the provider's task id once the provider accepts it.
MIN_FREE_BYTES: Final = 8 * 1024 * 1024

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
    """
    ALTER TABLE tasks ADD COLUMN origin TEXT;
    ALTER TABLE tasks ADD COLUMN lease_holder TEXT;
    ALTER TABLE tasks ADD COLUMN lease_until REAL;
    """,
    # 3: rows from version 1 have no origin: where they were sent is not known, so they are
    # marked as sent elsewhere (column and stored task alike).
    f"""
    UPDATE tasks SET origin = '{UNRECORDED_ORIGIN}',
        data = json_set(data, '$.origin', '{UNRECORDED_ORIGIN}')
        WHERE origin IS NULL;
    """,
    # 4: the account-wide queue (engine.queue): each task's bucket, and the limits learned from
    # the providers' concurrency refusals. Tasks recorded before have no bucket: not counted.
    """
    ALTER TABLE tasks ADD COLUMN bucket TEXT;
    CREATE INDEX tasks_bucket ON tasks (bucket, status, created_at);
    CREATE TABLE concurrency_limits (
        bucket TEXT PRIMARY KEY,
        max_tasks INTEGER NOT NULL,
        learned_at REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_COLUMNS: Final = ", ".join(COLUMNS)
_MARKS: Final = ", ".join("?" * len(COLUMNS))
#: A cancel request (``Task.cancelled_at``), once recorded, survives a save of a copy read
#: before it (by a watcher mid-poll, or by another process).
_KEEP_CANCELLED: Final = (
    "json_set(excluded.data, '$.cancelled_at', COALESCE("
    "json_extract(excluded.data, '$.cancelled_at'), json_extract(tasks.data, '$.cancelled_at')))"
)
#: ``save`` rewrites every column but the lease's.
_UPSERT: Final = (
    f"INSERT INTO tasks ({_COLUMNS}) VALUES ({_MARKS}) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = {_KEEP_CANCELLED if c == 'data' else 'excluded.' + c}" for c in COLUMNS[1:])
)


class SQLiteLedger(SQLiteQueue, SQLiteLeases, Ledger):
    """The ledger in one SQLite file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            _create_private(path)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ledger_error(path, exc) from exc
        # One connection shared by the loop thread and worker threads: serialise its use.
        self._lock = threading.Lock()
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def in_dir(cls, data_dir: Path) -> SQLiteLedger:
        return cls(data_dir / LEDGER_FILENAME)

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite3.Connection]:
        """The connection, to this thread alone; SQLite failures become ``LedgerError``."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise ledger_error(self.path, exc) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: other writers (any process) wait until it ends."""
        with self._using() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

    def _setup(self) -> None:
        with self._using() as db:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL is durable against process death (the case we design for); only an
            # OS crash can lose the last commits.
            db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._using() as db:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"The task ledger at {self.path} was written by a newer videogen (schema "
                f"{version}, this one knows {SCHEMA_VERSION}): upgrade videogen or point "
                "VIDEOGEN_DATA_DIR elsewhere."
            )
        for number in range(version, SCHEMA_VERSION):
            with self._transaction() as db:
                if db.execute("PRAGMA user_version").fetchone()[0] != number:
                    continue  # another process migrated it meanwhile
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        with self._using() as db:
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            return version

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def check_room(self) -> None:
        """``LedgerError`` naming the data dir when its disk is (nearly) full."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError as exc:
            raise ledger_error(self.path, exc) from exc
        if free < MIN_FREE_BYTES:
            full = OSError(errno.ENOSPC, f"{free} bytes free, {MIN_FREE_BYTES} needed")
            raise ledger_error(self.path, full, before_billing=True)

    # -- writes -------------------------------------------------------------------------------

    def insert(self, task: Task, *, lease: Lease | None = None, guard: Guard | None = None) -> None:
        with self._transaction() as db:
            _insert(db, self._guarded(task, guard, functools.partial(_billed_since, db)), lease)

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
        key = task.dedupe_key or task.request.dedupe_key()
        with self._transaction() as db:
            found = self._duplicate(
                db, key, task.owner, since, exclude, sandbox=sandbox, origin=task.origin
            )
            if found is None:
                _insert(db, self._guarded(task, guard, functools.partial(_billed_since, db)), lease)
        return found

    def save(self, task: Task) -> None:
        with self._using() as db:
            db.execute(_UPSERT, row_values(task))

    # -- reads --------------------------------------------------------------------------------

    def _row(self, task_id: str) -> tuple[str, str, str | None] | None:
        with self._using() as db:
            row: tuple[str, str, str | None] | None = db.execute(
                "SELECT id, data, owner FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        return row

    def recent(self, *, limit: int = 20, owner: str | None = None) -> TaskRows:
        where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        with self._using() as db:
            rows = db.execute(f"SELECT id, data FROM tasks {where} ORDER BY created_at DESC "
                              "LIMIT ?", (*args, limit)).fetchall()  # fmt: skip
        return self._read_all(rows)

    def with_status(self, statuses: Iterable[TaskStatus]) -> TaskRows:
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted))
        with self._using() as db:
            rows = db.execute(f"SELECT id, data FROM tasks WHERE status IN ({marks}) "
                              "ORDER BY created_at", wanted).fetchall()  # fmt: skip
        return self._read_all(rows)

    def finish_times(
        self, origin: str, mode: str, durations: Sequence[int], *, limit: int
    ) -> list[float]:
        marks = ", ".join("?" * len(durations))
        with self._using() as db:
            rows = db.execute(_FINISH_TIMES.format(marks=marks),
                              (origin, mode, *durations, limit)).fetchall()  # fmt: skip
        return [float(r[0]) for r in rows if r[0] is not None]

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
        with self._using() as db:
            return self._duplicate(
                db, dedupe_key, owner, since, exclude, sandbox=sandbox, origin=origin
            )

    def _duplicate(
        self,
        db: sqlite3.Connection,
        dedupe_key: str,
        owner: str | None,
        since: float,
        exclude: Iterable[TaskStatus],
        *,
        sandbox: bool | None,
        origin: str | None,
    ) -> Task | None:
        skipped = tuple(exclude)
        marks = ", ".join("?" * len(skipped)) or "''"
        # json_extract gives 1/0 for the Task JSON's true/false; NULL (no filter) matches all.
        wanted = None if sandbox is None else int(sandbox)
        rows = db.execute(
            "SELECT id, data FROM tasks WHERE dedupe_key = ? AND owner IS ? AND created_at >= ? "
            f"AND status NOT IN ({marks}) "
            "AND (? IS NULL OR json_extract(data, '$.sandbox') = ?) "
            "AND (? IS NULL OR origin = ?) "
            "ORDER BY created_at DESC",
            (dedupe_key, owner, since, *skipped, wanted, wanted, origin, origin),
        )
        return self._first_readable(rows)

    def billed_since(
        self, since: float, *, sandbox: bool, owner: str | None = None
    ) -> list[Billed]:
        with self._using() as db:
            billed = _billed_since(db, since, sandbox)
        return billed if owner is None else [b for b in billed if b.owner == owner]


def _billed_since(db: sqlite3.Connection, since: float, sandbox: bool) -> list[Billed]:
    rows = db.execute(
        "SELECT created_at, owner, provider, json_extract(data, '$.request.mode'), "
        "json_extract(data, '$.request.scene'), json_extract(data, '$.request.duration') "
        f"FROM tasks WHERE created_at >= ? AND {BILLED_WHERE} "
        "AND json_extract(data, '$.sandbox') = ? ORDER BY created_at",
        (since, int(sandbox)),
    )
    return [billed_row(*row) for row in rows]


#: ``finish_times``: first ``ready`` minus first ``queued`` from each task's history.
_FINISH_TIMES: Final = """
    SELECT
      (SELECT min(json_extract(e.value, '$.at')) FROM json_each(data, '$.history') AS e
        WHERE json_extract(e.value, '$.status') = 'ready')
      - (SELECT min(json_extract(e.value, '$.at')) FROM json_each(data, '$.history') AS e
        WHERE json_extract(e.value, '$.status') = 'queued')
    FROM tasks
    WHERE origin = ? AND status IN ('ready', 'completed')
      AND json_extract(data, '$.request.mode') = ?
      AND json_extract(data, '$.request.duration') IN ({marks})
    ORDER BY created_at DESC LIMIT ?
"""


def ledger_error(path: Path, exc: BaseException, *, before_billing: bool = False) -> LedgerError:
    """What a failure of the ledger at ``path`` means, in words: the data dir, the problem (the
    SQLite or OS error classified) and the fix."""
    problem, fix = _diagnosis(exc)
    data_dir = path.parent
    text = (
        f"The task ledger at {path} {problem} ({exc}): " + fix.format(dir=data_dir, file=path) + "."
    )
    if before_billing:
        text += " Nothing was sent, so nothing was billed."
    return LedgerError(text)


_SQLITE_PROBLEMS: Final[dict[int, str]] = {
    3: "read_only",  # SQLITE_PERM
    5: "busy",  # SQLITE_BUSY
    6: "busy",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY
    10: "io",  # SQLITE_IOERR
    11: "damaged",  # SQLITE_CORRUPT
    13: "full",  # SQLITE_FULL
    14: "read_only",  # SQLITE_CANTOPEN
    26: "damaged",  # SQLITE_NOTADB
}
_OS_PROBLEMS: Final[dict[int, str]] = {
    errno.ENOSPC: "full",
    errno.EDQUOT: "full",
    errno.EACCES: "read_only",
    errno.EPERM: "read_only",
    errno.EROFS: "read_only",
    errno.EIO: "io",
}
_PROBLEMS: Final[dict[str, tuple[str, str]]] = {
    "full": (
        "cannot be written: the disk holding the data dir is full",
        "free space on the disk holding {dir}, or set VIDEOGEN_DATA_DIR to a folder on a disk "
        "with room",
    ),
    "read_only": (
        "cannot be opened or written (read-only or not permitted)",
        "make {dir} and the files in it writable by this user, or set VIDEOGEN_DATA_DIR to a "
        "writable folder",
    ),
    "damaged": (
        "is damaged (not a readable SQLite database)",
        "move {file} aside (videogen then starts a new, empty ledger in {dir}), or set "
        "VIDEOGEN_DATA_DIR to another folder",
    ),
    "busy": (
        f"stayed locked by another videogen process for more than {BUSY_TIMEOUT_MS // 1000} s",
        "try again in a moment; if it persists, look for a stuck videogen process using {dir}",
    ),
    "io": (
        "could not be read or written (an I/O error)",
        "check the disk holding {dir}, or set VIDEOGEN_DATA_DIR to a folder on another disk",
    ),
    "other": (
        "cannot be used",
        "check {dir}, or set VIDEOGEN_DATA_DIR to a writable folder",
    ),
}


def _diagnosis(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        problem = _SQLITE_PROBLEMS.get(code & 0xFF, "other") if isinstance(code, int) else "other"
    elif isinstance(exc, OSError):
        problem = _OS_PROBLEMS.get(exc.errno or 0, "other")
    else:
        problem = "other"
    return _PROBLEMS[problem]


def private_dir(data_dir: Path) -> None:
    """Create the data dir (and its parents) if missing, the dir itself 0700; an existing one
    keeps its mode."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)


def _create_private(path: Path) -> None:
    """The data dir and an empty ledger file 0600 before SQLite opens it (SQLite gives the -wal
    and -shm files the ledger's mode); a ledger left group/world-readable by an older version
    is made private."""
    private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, LEDGER_MODE))
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):  # missing, or another user's: leave it
            mode = file.stat().st_mode & 0o777
            if mode & 0o077:
                os.chmod(file, mode & LEDGER_MODE)


def _insert(db: sqlite3.Connection, task: Task, lease: Lease | None) -> None:
    held = lease or Lease(None, None)
    sql = f"INSERT INTO tasks ({_COLUMNS}, lease_holder, lease_until) VALUES ({_MARKS}, ?, ?)"
    db.execute(sql, (*row_values(task), held.holder, held.until))


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite ends some on its own (a full disk),
    and a failed ROLLBACK must not hide the error that caused it."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (``executescript`` would commit our transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]
