"""The queue's steps (``queueing.QueueSteps``) on the PostgreSQL ledger.

One bucket's steps are serialised by ``pg_advisory_xact_lock`` on the bucket: replicas
racing for its last place cannot both take it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Final

import psycopg

from videogen.ledger.postgres_changes import NOTIFY
from videogen.ledger.queueing import QueueSteps
from videogen.models import OCCUPYING_STATUSES, Task

#: ``pg_advisory_xact_lock(class, key)`` class of the queue's locks (one key per bucket).
_QUEUE_LOCK: Final = 0x56470004


class PostgresQueue(QueueSteps):
    """``PostgresLedger``'s queue steps, on its pooled connections."""

    if TYPE_CHECKING:  # given by PostgresLedger

        def _using(self, *, atomic: bool = False) -> AbstractContextManager[psycopg.Connection]: ...

    def take_turn(self, task: Task, *, limit: int | None, learned_since: float, now: float) -> bool:
        with self._using(atomic=True) as conn:
            conn.execute(_LOCK_BUCKET, (_QUEUE_LOCK, task.bucket))
            learned = _learned(conn, task.bucket, learned_since)
            limits = [n for n in (limit, learned) if n is not None]
            if limits:
                row = conn.execute(_COUNT_OCCUPYING, (task.bucket, list(OCCUPYING_STATUSES)))
                free = min(limits) - _count(row.fetchone())
                if free <= 0:
                    return False
                first = conn.execute(_FIRST_WAITING, (task.bucket, task.id, now, free))
                if task.id not in {r[0] for r in first.fetchall()}:
                    return False
            return _save_if_waiting(conn, task)

    def save_if_waiting(self, task: Task) -> bool:
        with self._using() as conn:
            return _save_if_waiting(conn, task)

    def queue_place(self, task: Task, *, now: float) -> int:
        args = (task.bucket, now, task.created_at, task.created_at, task.id)
        with self._using() as conn:
            return _count(conn.execute(_WAITING_AHEAD, args).fetchone()) + 1

    def at_provider(self, bucket: str) -> int:
        with self._using() as conn:
            return _count(conn.execute(_AT_PROVIDER, (bucket,)).fetchone())

    def learned_limit(self, bucket: str, *, since: float) -> int | None:
        with self._using() as conn:
            return _learned(conn, bucket, since)

    def learn_limit(self, bucket: str, at_provider: int, *, now: float, since: float) -> int:
        seen = max(1, at_provider)
        with self._using(atomic=True) as conn:
            conn.execute(_LOCK_BUCKET, (_QUEUE_LOCK, bucket))
            current = _learned(conn, bucket, since)
            learned = seen if current is None else min(current, seen)
            conn.execute(_LEARN, (bucket, learned, now))
        return learned


#: The queue's statements (``PostgresQueue.take_turn`` and its neighbours).
_LOCK_BUCKET: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
_COUNT_OCCUPYING: Final = "SELECT count(*) FROM tasks WHERE bucket = %s AND status = ANY(%s)"
_AT_PROVIDER: Final = (
    "SELECT count(*) FROM tasks WHERE bucket = %s AND status IN ('queued', 'running')"
)
_FIRST_WAITING: Final = (
    "SELECT id FROM tasks WHERE bucket = %s AND status = 'waiting' "
    "AND (id = %s OR lease_until >= %s) ORDER BY created_at, id LIMIT %s"
)
_WAITING_AHEAD: Final = (
    "SELECT count(*) FROM tasks WHERE bucket = %s AND status = 'waiting' AND lease_until >= %s "
    "AND (created_at < %s OR (created_at = %s AND id < %s))"
)
_SAVE_IF_WAITING: Final = (
    "WITH written AS (UPDATE tasks SET status = %s, updated_at = %s, data = %s::jsonb "
    f"WHERE id = %s AND status = 'waiting' RETURNING id, status, bucket) {NOTIFY}"
)
_LEARNED: Final = "SELECT max_tasks FROM concurrency_limits WHERE bucket = %s AND learned_at >= %s"
_LEARN: Final = (
    "INSERT INTO concurrency_limits (bucket, max_tasks, learned_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (bucket) DO UPDATE SET max_tasks = excluded.max_tasks, "
    "learned_at = excluded.learned_at"
)


def _count(row: tuple[object, ...] | None) -> int:
    return 0 if row is None else int(row[0])  # type: ignore[call-overload]


def _learned(conn: psycopg.Connection, bucket: str, since: float) -> int | None:
    row = conn.execute(_LEARNED, (bucket, since)).fetchone()
    return None if row is None else int(row[0])


def _save_if_waiting(conn: psycopg.Connection, task: Task) -> bool:
    written = conn.execute(
        _SAVE_IF_WAITING, (task.status, task.updated_at, task.model_dump_json(), task.id)
    ).fetchall()
    return len(written) == 1
