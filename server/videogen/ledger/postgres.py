"""The shared ledger: one PostgreSQL database that every replica writes (``VIDEOGEN_DATABASE_URL``).

What a ledger keeps and guarantees is in ``base``; this is how PostgreSQL keeps it. One table
``tasks`` with the SQLite ledger's columns (``data`` is JSONB), read and written through a small
``psycopg_pool.ConnectionPool``; each call is one transaction on one pooled connection.

**Why psycopg 3, synchronous.** The ledger interface is synchronous (the engine calls it inline,
as it calls SQLite) and a call is one or two statements: well under a millisecond on loopback or
a LAN. psycopg 3 has one API for sync and async (the change feed could move to its
``AsyncConnection`` without a second driver), a maintained pool, and ``LISTEN``/``NOTIFY``;
asyncpg is async only, so it would need a second interface or a thread hop on every call. The
price, said plainly: a slow or stalled database blocks the event loop for that call, bounded by
the pool's wait (``POOL_WAIT_SECONDS``), the connect timeout and the statement timeout
(``STATEMENT_TIMEOUT_SECONDS``).

**Across replicas.** ``record_new`` takes ``pg_advisory_xact_lock`` on the request's dedupe key
(and, with a spending ``Guard``, one lock for all guarded writes) before it looks for a duplicate
and inserts, in one transaction: identical requests from any number of replicas leave one row,
and limits are checked one request after another. ``claim`` is one conditional ``UPDATE``;
``claim_due`` selects due tasks ``FOR UPDATE SKIP LOCKED`` and leases them in the same
transaction, so racing replicas never take the same task. Every write of a task (``insert``,
``record_new`` when it inserts, ``save``, ``release``) sends ``NOTIFY videogen_tasks, '<id>'``
in its transaction; ``changes()`` listens on one dedicated connection (a thread, started on first
use) and hands the ids to each feed. ``check_room`` is a cheap connectivity check (``SELECT 1``):
a database that cannot be reached is found before anything is billed; a full disk on the server
is not predicted, it is reported when a write fails.

**Migrations** are numbered like SQLite's, applied in one transaction under
``pg_advisory_xact_lock`` with the version kept in ``videogen_schema``: replicas starting at
once migrate once. A database written by a newer schema is refused with a ``ConfigError``.

**Plain about failures.** Every psycopg error becomes a ``LedgerError`` that names the database
(``postgresql://user@host:port/dbname``, never the password), the problem (unreachable, password
refused, no such database, read-only, not permitted, disk full, busy) and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from videogen.errors import ConfigError, LedgerError
from videogen.ledger.base import (
    COLUMNS,
    ChangeFeed,
    Lease,
    Ledger,
    TaskRows,
    billed_row,
    row_values,
)
from videogen.ledger.postgres_changes import NOTIFY, Listener
from videogen.ledger.postgres_leases import PostgresLeases
from videogen.ledger.postgres_queue import PostgresQueue
from videogen.models import Task, TaskStatus
from videogen.spending import Billed, Guard, billed_where

CONNECT_TIMEOUT_SECONDS: Final = 5
#: How long a call waits for a pooled connection before it fails (the database is unreachable).
POOL_WAIT_SECONDS: Final = 5.0
#: The longest one statement may run (a lock wait included) before it fails as busy: what
#: bounds how long a stalled database can hold the event loop.
STATEMENT_TIMEOUT_SECONDS: Final = 10
POOL_SIZE: Final = 4
#: ``pg_advisory_xact_lock(class, key)`` classes: one per kind of lock this module takes.
_MIGRATION_LOCK: Final = 0x56470001
_SPENDING_LOCK: Final = 0x56470002
_DEDUPE_LOCK: Final = 0x56470003

MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE tasks (
        id text PRIMARY KEY,
        status text NOT NULL,
        provider text NOT NULL,
        dedupe_key text NOT NULL,
        owner text,
        created_at double precision NOT NULL,
        updated_at double precision NOT NULL,
        data jsonb NOT NULL,
        origin text,
        lease_holder text,
        lease_until double precision
    );
    CREATE INDEX tasks_dedupe ON tasks (dedupe_key, created_at);
    CREATE INDEX tasks_status ON tasks (status, created_at);
    CREATE INDEX tasks_owner_created ON tasks (owner, created_at);
    CREATE INDEX tasks_created ON tasks (created_at);
    """,
    # 2: the account-wide queue (engine.queue): each task's bucket, and the limits learned from
    # the providers' concurrency refusals. Tasks recorded before have no bucket: not counted.
    """
    ALTER TABLE tasks ADD COLUMN bucket text;
    CREATE INDEX tasks_bucket ON tasks (bucket, status, created_at);
    CREATE TABLE concurrency_limits (
        bucket text PRIMARY KEY,
        max_tasks integer NOT NULL,
        learned_at double precision NOT NULL
    );
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_COLUMNS: Final = ", ".join(COLUMNS)
_MARKS: Final = ", ".join("%s::jsonb" if c == "data" else "%s" for c in COLUMNS)
#: A cancel request (``Task.cancelled_at``), once recorded, survives a save of a copy read
#: before it (by a watcher mid-poll, or by another replica).
_KEEP_CANCELLED: Final = (
    "jsonb_set(excluded.data, '{cancelled_at}', COALESCE(NULLIF(excluded.data->'cancelled_at', "
    "'null'::jsonb), tasks.data->'cancelled_at', 'null'::jsonb))"
)
#: ``save`` rewrites every column but the lease's, and notifies: one statement.
_UPSERT: Final = (
    f"WITH written AS (INSERT INTO tasks ({_COLUMNS}) VALUES ({_MARKS}) ON CONFLICT (id) DO "
    "UPDATE SET "
    + ", ".join(f"{c} = {_KEEP_CANCELLED if c == 'data' else 'excluded.' + c}" for c in COLUMNS[1:])
    + f" RETURNING id, status, bucket) {NOTIFY}"
)
_INSERT: Final = (
    f"WITH written AS (INSERT INTO tasks ({_COLUMNS}, lease_holder, lease_until) "
    f"VALUES ({_MARKS}, %s, %s) RETURNING id, status, bucket) {NOTIFY}"
)
_SANDBOX: Final = "(data->>'sandbox')::boolean"
_IS_BILLED: Final = billed_where("data->>'provider_task_id'")
_BILLED: Final = (
    "SELECT created_at, owner, provider, data->'request'->>'mode', data->'request'->>'scene', "
    "(data->'request'->>'duration')::int FROM tasks WHERE created_at >= %s AND "
    f"{_IS_BILLED} AND {_SANDBOX} = %s ORDER BY created_at"
)
#: ``finish_times``: first ``ready`` minus first ``queued`` from each task's history.
_FINISH_TIMES: Final = """
    SELECT
      (SELECT min((e->>'at')::float8) FROM jsonb_array_elements(data->'history') AS e
        WHERE e->>'status' = 'ready')
      - (SELECT min((e->>'at')::float8) FROM jsonb_array_elements(data->'history') AS e
        WHERE e->>'status' = 'queued')
    FROM tasks
    WHERE origin = %s AND status IN ('ready', 'completed')
      AND data->'request'->>'mode' = %s
      AND data->'request'->>'duration' = ANY(%s)
    ORDER BY created_at DESC LIMIT %s
"""


class PostgresLedger(PostgresQueue, PostgresLeases, Ledger):
    """The ledger in a PostgreSQL database (see the module docstring)."""

    notifies = True

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
    ) -> None:
        self._url = url
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError(
                "VIDEOGEN_DATABASE_URL cannot be read as a PostgreSQL URL: give it as "
                "postgresql://user:password@host:5432/dbname."
            ) from exc
        self._password = str(params.get("password") or "")
        self.where = describe(params)
        try:
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                self._migrate(conn)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        self._pool = ConnectionPool(
            url,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
            min_size=1,
            max_size=pool_size,
            open=True,
            check=_check_if_idle,
            configure=functools.partial(_configure, statement_timeout=statement_timeout),
            timeout=POOL_WAIT_SECONDS,
            num_workers=1,
            name="videogen-ledger",
        )
        self._listener = Listener(url, self.where, connect_timeout=CONNECT_TIMEOUT_SECONDS)

    def __repr__(self) -> str:
        return f"PostgresLedger({self.where})"

    @contextlib.contextmanager
    def _using(
        self, *, atomic: bool = False, before_billing: bool = False
    ) -> Iterator[psycopg.Connection]:
        """A pooled connection; psycopg failures become ``LedgerError``. Each statement is its
        own transaction (one round trip: most calls are one statement) unless ``atomic``: then
        the block is one transaction, committed when it ends and rolled back when it raises
        (what several statements that must hold together, or a transaction lock, need)."""
        try:
            with self._pool.connection() as conn:
                if atomic:
                    with conn.transaction():
                        yield conn
                else:
                    yield conn
                _LAST_USED[conn] = time.monotonic()
        except psycopg.Error as exc:
            raise self._error(exc, before_billing=before_billing) from exc

    def _error(self, exc: psycopg.Error, *, before_billing: bool = False) -> LedgerError:
        return postgres_error(self.where, exc, self._password, before_billing=before_billing)

    def _migrate(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_MIGRATION_LOCK,))
            version = _stored_version(conn)
            if version is None:
                conn.execute("CREATE TABLE videogen_schema (version integer NOT NULL)")
                conn.execute("INSERT INTO videogen_schema VALUES (0)")
                version = 0
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"The task ledger in {self.where} was written by a newer videogen (schema "
                    f"{version}, this one knows {SCHEMA_VERSION}): upgrade videogen or point "
                    "VIDEOGEN_DATABASE_URL at another database."
                )
            for number in range(version, SCHEMA_VERSION):
                conn.execute(MIGRATIONS[number])  # several statements: so no parameters
                conn.execute("UPDATE videogen_schema SET version = %s", (number + 1,))

    @property
    def schema_version(self) -> int:
        with self._using() as conn:
            return _stored_version(conn) or 0

    def close(self) -> None:
        self._listener.stop()
        self._pool.close()

    def check_room(self) -> None:
        """A round trip to the database (``SELECT 1``): ``LedgerError`` saying nothing was billed
        when it cannot be reached. A full disk on the server is reported when a write fails."""
        with self._using(before_billing=True) as conn:
            conn.execute("SELECT 1")

    # -- writes -------------------------------------------------------------------------------

    def insert(self, task: Task, *, lease: Lease | None = None, guard: Guard | None = None) -> None:
        with self._using(atomic=True) as conn:
            self._insert(conn, task, lease, guard)

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
        with self._using(atomic=True) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_DEDUPE_LOCK, key))
            found = self._duplicate(
                conn, key, task.owner, since, exclude, sandbox=sandbox, origin=task.origin
            )
            if found is None:
                self._insert(conn, task, lease, guard)
        return found

    def _insert(
        self, conn: psycopg.Connection, task: Task, lease: Lease | None, guard: Guard | None
    ) -> None:
        if guard is not None and guard.policy.active:
            # Every guarded write, one after another: the limits see each other's tasks.
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_SPENDING_LOCK,))

        def billed(since: float, sandbox: bool) -> list[Billed]:
            return [billed_row(*r) for r in conn.execute(_BILLED, (since, sandbox))]

        held = lease or Lease(None, None)
        checked = self._guarded(task, guard, billed)
        conn.execute(_INSERT, (*row_values(checked), held.holder, held.until))

    def save(self, task: Task) -> None:
        with self._using() as conn:
            conn.execute(_UPSERT, row_values(task))

    # -- reads --------------------------------------------------------------------------------

    def _row(self, task_id: str) -> tuple[str, str, str | None] | None:
        with self._using() as conn:
            return conn.execute(
                "SELECT id, data::text, owner FROM tasks WHERE id = %s", (task_id,)
            ).fetchone()

    def recent(self, *, limit: int = 20, owner: str | None = None) -> TaskRows:
        where, args = ("WHERE owner = %s", (owner,)) if owner is not None else ("", ())
        with self._using() as conn:
            rows = conn.execute(
                f"SELECT id, data::text FROM tasks {where} ORDER BY created_at DESC LIMIT %s",
                (*args, limit),
            ).fetchall()
        return self._read_all(rows)

    def with_status(self, statuses: Iterable[TaskStatus]) -> TaskRows:
        with self._using() as conn:
            rows = conn.execute(
                "SELECT id, data::text FROM tasks WHERE status = ANY(%s) ORDER BY created_at",
                (list(statuses),),
            ).fetchall()
        return self._read_all(rows)

    def finish_times(
        self, origin: str, mode: str, durations: Sequence[int], *, limit: int
    ) -> list[float]:
        wanted = [str(d) for d in durations]
        with self._using() as conn:
            rows = conn.execute(_FINISH_TIMES, (origin, mode, wanted, limit)).fetchall()
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
        with self._using() as conn:
            return self._duplicate(
                conn, dedupe_key, owner, since, exclude, sandbox=sandbox, origin=origin
            )

    def _duplicate(
        self,
        conn: psycopg.Connection,
        dedupe_key: str,
        owner: str | None,
        since: float,
        exclude: Iterable[TaskStatus],
        *,
        sandbox: bool | None,
        origin: str | None,
    ) -> Task | None:
        rows = conn.execute(
            "SELECT id, data::text FROM tasks WHERE dedupe_key = %s "
            "AND owner IS NOT DISTINCT FROM %s AND created_at >= %s "
            "AND NOT (status = ANY(%s)) "
            f"AND (%s::boolean IS NULL OR {_SANDBOX} = %s) "
            "AND (%s::text IS NULL OR origin = %s) "
            "ORDER BY created_at DESC",
            (dedupe_key, owner, since, list(exclude), sandbox, sandbox, origin, origin),
        )
        return self._first_readable(rows)

    def billed_since(
        self, since: float, *, sandbox: bool, owner: str | None = None
    ) -> list[Billed]:
        with self._using() as conn:
            billed = [billed_row(*r) for r in conn.execute(_BILLED, (since, sandbox))]
        return billed if owner is None else [b for b in billed if b.owner == owner]

    def changes(self) -> ChangeFeed:
        """A feed of the ids of tasks written by any replica (this one included) from now on:
        the listener is ``LISTEN``ing before this returns."""
        return self._listener.subscribe()


def _configure(conn: psycopg.Connection, *, statement_timeout: float) -> None:
    """Every pooled connection: statements bounded in time, each its own transaction unless
    the caller opens one (``PostgresLedger._using(atomic=True)``)."""
    conn.autocommit = True
    conn.execute(f"SET statement_timeout = {round(statement_timeout * 1000)}")


#: When each pooled connection was last used successfully (``_check_if_idle``).
_LAST_USED: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()
#: A pooled connection idle this long is checked (one round trip) before it is handed out.
IDLE_CHECK_SECONDS: Final = 5.0


def _check_if_idle(conn: psycopg.Connection) -> None:
    """The pool's check when handing a connection out: one that served a call moments ago is
    alive; one idle for a while is probed (a restarted server or a dropped link shows here, and
    the pool replaces it, rather than failing the caller's call)."""
    last = _LAST_USED.get(conn)
    if last is None or time.monotonic() - last >= IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)


def _stored_version(conn: psycopg.Connection) -> int | None:
    """The schema version kept in the database, or None before the first migration."""
    exists = conn.execute("SELECT to_regclass('videogen_schema') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT version FROM videogen_schema").fetchone()
    return 0 if row is None else int(row[0])


# -- errors ------------------------------------------------------------------------------------


def describe(params: Mapping[str, object]) -> str:
    """The database as messages name it: ``postgresql://user@host:port/dbname`` (no password)."""
    host = params.get("host") or "localhost"
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"


_SQLSTATES: Final[dict[str, str]] = {
    "28P01": "auth",  # invalid_password
    "28000": "auth",  # invalid_authorization_specification
    "3D000": "missing",  # invalid_catalog_name
    "25006": "read_only",  # read_only_sql_transaction
    "42501": "not_permitted",  # insufficient_privilege
    "53100": "full",  # disk_full
    "57P01": "unreachable",  # admin_shutdown
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now
    "53300": "busy",  # too_many_connections
    "55P03": "busy",  # lock_not_available
    "40P01": "busy",  # deadlock_detected
    "57014": "busy",  # query_canceled (a statement timeout)
}
#: Connection failures carry no SQLSTATE: libpq's words say what happened.
_WORDS: Final[tuple[tuple[str, str], ...]] = (
    ("password authentication failed", "auth"),
    ("no password supplied", "auth"),
    ("no pg_hba.conf entry", "auth"),
    ("does not exist", "missing"),
    ("read-only", "read_only"),
    ("No space left on device", "full"),
    ("couldn't get a connection", "unreachable"),
    ("Connection refused", "unreachable"),
    ("could not connect", "unreachable"),
    ("could not translate host name", "unreachable"),
    ("timeout expired", "unreachable"),
    ("No such file or directory", "unreachable"),
    ("server closed the connection", "unreachable"),
    ("connection is closed", "unreachable"),
    ("the connection is lost", "unreachable"),
)
_PROBLEMS: Final[dict[str, tuple[str, str]]] = {
    "unreachable": (
        "cannot be reached",
        "start PostgreSQL there (or wait until it is back), or correct the host and port in "
        "VIDEOGEN_DATABASE_URL",
    ),
    "auth": (
        "refused the user name or password",
        "correct the user and password in VIDEOGEN_DATABASE_URL, or allow this user in the "
        "server's pg_hba.conf",
    ),
    "missing": (
        "does not exist (no such database or role)",
        "create it (createdb {dbname}) or correct the database name in VIDEOGEN_DATABASE_URL",
    ),
    "read_only": (
        "is read-only (a standby, or default_transaction_read_only is on)",
        "point VIDEOGEN_DATABASE_URL at the primary server",
    ),
    "not_permitted": (
        "refused this user the ledger's tables",
        "grant the user rights on the database and its public schema, or use the user that "
        "owns them",
    ),
    "full": (
        "cannot be written: the database server's disk is full",
        "free space on the database server",
    ),
    "busy": (
        "is overloaded or busy (too many connections, or a lock held too long)",
        "try again in a moment; if it persists, check the server's connections and locks",
    ),
    "other": (
        "cannot be used",
        "check the database server's log and VIDEOGEN_DATABASE_URL",
    ),
}


def postgres_error(
    where: str, exc: BaseException, password: str = "", *, before_billing: bool = False
) -> LedgerError:
    """What a failure of the ledger in ``where`` means, in words: the database, the problem
    (the SQLSTATE or libpq's words classified) and the fix. ``password`` never appears."""
    problem, fix = _PROBLEMS[_classify(exc)]
    said = " ".join(str(exc).split())[:300]
    if password:
        said = said.replace(password, "***")
    dbname = where.rpartition("/")[2] or "videogen"
    text = f"The task ledger in {where} {problem} ({said}): {fix.format(dbname=dbname)}."
    if before_billing:
        text += " Nothing was sent, so nothing was billed."
    return LedgerError(text)


def _classify(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and state in _SQLSTATES:
        return _SQLSTATES[state]
    if isinstance(state, str) and state.startswith("08"):  # connection_exception
        return "unreachable"
    said = str(exc)
    return next((kind for words, kind in _WORDS if words in said), "other")
