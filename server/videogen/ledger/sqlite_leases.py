"""The leases (``base.Ledger``'s contract) on the SQLite ledger: a lease is taken with one
conditional ``UPDATE``; ``claim_due`` selects and leases due tasks in one ``BEGIN IMMEDIATE``
transaction, so processes sharing the file never take the same task."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from videogen.ledger.base import TAKEABLE_LEASE, UNHELD_LEASE, Lease, TaskRows
from videogen.models import TaskStatus


class SQLiteLeases:
    """``SQLiteLedger``'s lease steps, on its connection."""

    if TYPE_CHECKING:  # given by SQLiteLedger and base.Ledger

        def _using(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _read_all(self, rows: Iterable[tuple[str, str]]) -> TaskRows: ...

    def claim(
        self, task_id: str, holder: str, *, until: float, now: float, replacing: str | None = None
    ) -> bool:
        with self._using() as db:
            cursor = db.execute(
                "UPDATE tasks SET lease_holder = ?, lease_until = ? WHERE id = ? AND "
                + TAKEABLE_LEASE,
                (holder, until, task_id, holder, now, replacing),
            )
            return cursor.rowcount == 1

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
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted)) or "''"
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT id, data FROM tasks WHERE status IN ({marks}) "
                f"AND (? IS NULL OR origin = ?) AND {UNHELD_LEASE} "
                "ORDER BY created_at LIMIT ?",
                (*wanted, origin, origin, now, limit),
            ).fetchall()
            due = self._read_all(rows)
            if due:
                taken = ", ".join("?" * len(due))
                db.execute(
                    f"UPDATE tasks SET lease_holder = ?, lease_until = ? WHERE id IN ({taken})",
                    (holder, until, *(t.id for t in due)),
                )
        return due

    def release_all(self, holder: str) -> int:
        with self._using() as db:
            cursor = db.execute("UPDATE tasks SET lease_holder = NULL, lease_until = NULL "
                                "WHERE lease_holder = ?", (holder,))  # fmt: skip
            return cursor.rowcount

    def lease(self, task_id: str) -> Lease:
        with self._using() as db:
            row = db.execute("SELECT lease_holder, lease_until FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()  # fmt: skip
        return Lease(None, None) if row is None else Lease(row[0], row[1])

    def renew(self, holder: str, task_ids: Iterable[str], *, until: float) -> int:
        ids = tuple(task_ids)
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        with self._using() as db:
            cursor = db.execute(f"UPDATE tasks SET lease_until = ? WHERE lease_holder = ? "
                                f"AND id IN ({marks})", (until, holder, *ids))  # fmt: skip
            return cursor.rowcount

    def release(self, task_id: str, holder: str) -> None:
        with self._using() as db:
            db.execute("UPDATE tasks SET lease_holder = NULL, lease_until = NULL "
                       "WHERE id = ? AND lease_holder = ?", (task_id, holder))  # fmt: skip
