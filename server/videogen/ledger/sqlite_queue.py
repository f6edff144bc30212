"""The queue's steps (``queueing.QueueSteps``) on the SQLite ledger: each atomic step is one
``BEGIN IMMEDIATE`` transaction, so processes sharing the file never overfill a bucket.

A bucket is ``Task.bucket``. Its limit is the smaller of the configured one (passed in)
and one learned from a concurrency refusal at or after ``learned_since`` (stored in
``concurrency_limits``); neither: no limit. A waiting task holds its place in line only
while its lease is live (a process works on it), so a process that died or stopped does
not block the line.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Final

from videogen.ledger.queueing import QueueSteps
from videogen.models import OCCUPYING_STATUSES, Task


class SQLiteQueue(QueueSteps):
    """``SQLiteLedger``'s queue steps, on its connection."""

    if TYPE_CHECKING:  # given by SQLiteLedger

        def _using(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def take_turn(self, task: Task, *, limit: int | None, learned_since: float, now: float) -> bool:
        """Write ``task`` (a ``waiting`` task moved on, e.g. to ``submitting``) if it is its
        turn, as one atomic step; True when written.

        Its turn: fewer tasks of its bucket occupy the provider (``OCCUPYING_STATUSES``) than the
        bucket's limit, and it is among the first waiting tasks of the bucket (oldest first) that
        fit in the free places. One ``BEGIN IMMEDIATE`` transaction: processes racing for the
        last place cannot both take it. False (nothing written) when it is not its turn, or the
        stored task no longer waits (cancelled meanwhile).
        """
        with self._transaction() as db:
            free = _free_places(db, task.bucket, limit, learned_since)
            if free is not None:
                if free <= 0:
                    return False
                first = db.execute(_FIRST_WAITING, (task.bucket, task.id, now, free)).fetchall()
                if task.id not in {row[0] for row in first}:
                    return False
            return _save_if_waiting(db, task)

    def save_if_waiting(self, task: Task) -> bool:
        """Write ``task`` only if the stored one is still ``waiting`` (a cancel racing its
        turn); True when written."""
        with self._using() as db:
            return _save_if_waiting(db, task)

    def queue_place(self, task: Task, *, now: float) -> int:
        """The waiting ``task``'s place in its bucket's line: 1 + the live waiting tasks
        recorded before it."""
        with self._using() as db:
            args = (task.bucket, now, task.created_at, task.created_at, task.id)
            ahead: int = db.execute(_WAITING_AHEAD, args).fetchone()[0]
        return ahead + 1

    def at_provider(self, bucket: str) -> int:
        """How many tasks of ``bucket`` the provider has accepted and not finished (``queued``,
        ``running``): what a concurrency refusal says the provider's limit is."""
        with self._using() as db:
            count: int = db.execute(_AT_PROVIDER, (bucket,)).fetchone()[0]
        return count

    def learned_limit(self, bucket: str, *, since: float) -> int | None:
        """The limit learned for ``bucket`` at or after ``since``, if any."""
        with self._using() as db:
            return _learned(db, bucket, since)

    def learn_limit(self, bucket: str, at_provider: int, *, now: float, since: float) -> int:
        """Record a concurrency refusal with ``at_provider`` tasks of ``bucket`` at the
        provider: the learned limit becomes that (at least 1), or stays at a lower one learned
        at or after ``since``; either way it holds from ``now``. Returns it."""
        seen = max(1, at_provider)
        with self._transaction() as db:
            current = _learned(db, bucket, since)
            learned = seen if current is None else min(current, seen)
            db.execute(_LEARN, (bucket, learned, now))
        return learned


_OCCUPYING: Final = ", ".join(f"'{status}'" for status in OCCUPYING_STATUSES)
#: The queue's statements (``Ledger.take_turn`` and its neighbours): plain SQL, no JSON.
_COUNT_OCCUPYING: Final = (
    f"SELECT COUNT(*) FROM tasks WHERE bucket = ? AND status IN ({_OCCUPYING})"
)
_AT_PROVIDER: Final = (
    "SELECT COUNT(*) FROM tasks WHERE bucket = ? AND status IN ('queued', 'running')"
)
_FIRST_WAITING: Final = (
    "SELECT id FROM tasks WHERE bucket = ? AND status = 'waiting' "
    "AND (id = ? OR lease_until >= ?) ORDER BY created_at, id LIMIT ?"
)
_WAITING_AHEAD: Final = (
    "SELECT COUNT(*) FROM tasks WHERE bucket = ? AND status = 'waiting' AND lease_until >= ? "
    "AND (created_at < ? OR (created_at = ? AND id < ?))"
)
_SAVE_IF_WAITING: Final = (
    "UPDATE tasks SET status = ?, updated_at = ?, data = ? WHERE id = ? AND status = 'waiting'"
)
_LEARNED: Final = "SELECT max_tasks FROM concurrency_limits WHERE bucket = ? AND learned_at >= ?"
_LEARN: Final = (
    "INSERT INTO concurrency_limits (bucket, max_tasks, learned_at) VALUES (?, ?, ?) "
    "ON CONFLICT (bucket) DO UPDATE SET max_tasks = excluded.max_tasks, "
    "learned_at = excluded.learned_at"
)


def _learned(db: sqlite3.Connection, bucket: str, since: float) -> int | None:
    row = db.execute(_LEARNED, (bucket, since)).fetchone()
    return None if row is None else int(row[0])


def _free_places(
    db: sqlite3.Connection, bucket: str, limit: int | None, learned_since: float
) -> int | None:
    """How many more tasks of ``bucket`` may go to the provider now; None: no limit."""
    learned = _learned(db, bucket, learned_since)
    limits = [n for n in (limit, learned) if n is not None]
    if not limits:
        return None
    occupying: int = db.execute(_COUNT_OCCUPYING, (bucket,)).fetchone()[0]
    return min(limits) - occupying


def _save_if_waiting(db: sqlite3.Connection, task: Task) -> bool:
    cursor = db.execute(
        _SAVE_IF_WAITING, (task.status, task.updated_at, task.model_dump_json(), task.id)
    )
    return cursor.rowcount == 1
