"""The leases (``base.Ledger``'s contract) on the PostgreSQL ledger: ``claim`` is one
conditional ``UPDATE``; ``claim_due`` selects due tasks ``FOR UPDATE SKIP LOCKED`` and leases
them in the same transaction, so racing replicas never take the same task. A released lease
notifies (``postgres_changes``): another replica may take the task over at once."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import psycopg

from videogen.ledger.base import TAKEABLE_LEASE, UNHELD_LEASE, Lease, TaskRows
from videogen.ledger.postgres_changes import NOTIFY
from videogen.models import TaskStatus


class PostgresLeases:
    """``PostgresLedger``'s lease steps, on its pooled connections."""

    if TYPE_CHECKING:  # given by PostgresLedger and base.Ledger

        def _using(self, *, atomic: bool = False) -> AbstractContextManager[psycopg.Connection]: ...
        def _read_all(self, rows: Iterable[tuple[str, str]]) -> TaskRows: ...

    def claim(
        self, task_id: str, holder: str, *, until: float, now: float, replacing: str | None = None
    ) -> bool:
        with self._using() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET lease_holder = %s, lease_until = %s WHERE id = %s AND "
                + TAKEABLE_LEASE.replace("?", "%s"),
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
        with self._using(atomic=True) as conn:
            rows = conn.execute(
                "SELECT id, data::text FROM tasks WHERE status = ANY(%s) "
                "AND (%s::text IS NULL OR origin = %s) "
                f"AND {UNHELD_LEASE.replace('?', '%s')} "
                "ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (list(statuses), origin, origin, now, limit),
            ).fetchall()
            due = self._read_all(rows)
            if due:
                conn.execute(
                    "UPDATE tasks SET lease_holder = %s, lease_until = %s WHERE id = ANY(%s)",
                    (holder, until, [t.id for t in due]),
                )
        return due

    def lease(self, task_id: str) -> Lease:
        with self._using() as conn:
            row = conn.execute(
                "SELECT lease_holder, lease_until FROM tasks WHERE id = %s", (task_id,)
            ).fetchone()
        return Lease(None, None) if row is None else Lease(row[0], row[1])

    def renew(self, holder: str, task_ids: Iterable[str], *, until: float) -> int:
        ids = list(task_ids)
        if not ids:
            return 0
        with self._using() as conn:
            cursor = conn.execute(
                "UPDATE tasks SET lease_until = %s WHERE lease_holder = %s AND id = ANY(%s)",
                (until, holder, ids),
            )
            return cursor.rowcount

    def release(self, task_id: str, holder: str) -> None:
        with self._using() as conn:
            conn.execute(
                "WITH written AS (UPDATE tasks SET lease_holder = NULL, lease_until = NULL "
                f"WHERE id = %s AND lease_holder = %s RETURNING id, status, bucket) {NOTIFY}",
                (task_id, holder),
            )

    def release_all(self, holder: str) -> int:
        with self._using() as conn:
            rows = conn.execute(
                "WITH written AS (UPDATE tasks SET lease_holder = NULL, lease_until = NULL "
                f"WHERE lease_holder = %s RETURNING id, status, bucket) {NOTIFY}",
                (holder,),
            ).fetchall()
            return len(rows)
