"""Leases across processes: the ledger's lease (``Ledger.claim``) decides who works on a task.

The holder polls, downloads and writes; anyone else follows by re-reading the ledger and takes
over when the lease is released, runs out (``lease_seconds`` after its last renewal) or its
holder is a dead process of this host. A lease is renewed only while this engine is working on
the task (its submit is in flight, or its watcher is polling or finishing it): a lease nothing
here works on runs out, and another process takes the task over.

Leases are renewed, and a tracking engine looks for due tasks (``claim_due``: unfinished, of its
origins, lease free or run out), ``ROUNDS_PER_LEASE`` times per lease length: a task whose holder
died (SIGKILL, a lost host) is taken over at most ``lease_seconds * (1 + 1/ROUNDS_PER_LEASE)``
after its last renewal. An engine that stops hands every lease back (``release_all``) so the
others take its tasks at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Collection, Iterator
from typing import Final

import anyio

from videogen.errors import LedgerError
from videogen.ledger import Lease, TaskRows, holder_is_dead, new_holder
from videogen.models import Task, TaskStatus

from .book import TaskBook
from .context import Context
from .polling import FOLLOWER_READ_SECONDS

log = logging.getLogger(__name__)

#: Renewals, and rounds of looking for due tasks, per lease length.
ROUNDS_PER_LEASE: Final = 4
#: Most due tasks one round takes over (the next round takes more).
DUE_PER_ROUND: Final = 20


class Leases:
    """This engine's leases: taking, renewing, releasing, and following other holders."""

    def __init__(self, ctx: Context, book: TaskBook) -> None:
        self._ctx = ctx
        self._book = book
        #: This engine's name in the ledger's leases.
        self.holder = new_holder()
        #: Tasks this engine is working on (submitting, polling, finishing): the only leases
        #: it renews. A count: a submit and its task's watcher may overlap.
        self._working: Counter[str] = Counter()

    def new(self) -> Lease:
        """A lease for a task this engine is about to record."""
        return Lease(self.holder, self._ctx.clock() + self._ctx.lease_seconds)

    def take(self, task_id: str) -> bool:
        """Claim (or renew) the task's lease; also from a holder proven dead. True when held."""
        ledger, now = self._book.ledger, self._ctx.clock()
        until = now + self._ctx.lease_seconds
        if ledger.claim(task_id, self.holder, until=until, now=now):
            return True
        holder = ledger.lease(task_id).holder
        if holder is None or not holder_is_dead(holder):
            return False
        log.info("taking %s over from %s, a process that is gone", task_id, holder)
        return ledger.claim(task_id, self.holder, until=until, now=now, replacing=holder)

    def release(self, task_id: str) -> None:
        """Give the lease up; a ledger that cannot take it lets it run out instead (and must
        not hide the error being raised, e.g. the provider's id of an unrecorded task)."""
        try:
            self._book.ledger.release(task_id, self.holder)
        except LedgerError as exc:
            log.warning("could not release the lease on %s (it runs out instead): %s", task_id, exc)

    def release_all(self) -> None:
        """Hand back every lease this engine holds (it is stopping)."""
        try:
            released = self._book.ledger.release_all(self.holder)
        except LedgerError as exc:
            log.warning("could not hand the task leases back (they run out instead): %s", exc)
            return
        if released:
            log.info("handed %d task lease(s) back", released)

    def claim_due(self, statuses: Collection[TaskStatus], origin: str) -> TaskRows:
        """Lease the due tasks of ``origin``: unfinished, their lease free or run out."""
        now = self._ctx.clock()
        return self._book.ledger.claim_due(
            self.holder,
            until=now + self._ctx.lease_seconds,
            now=now,
            statuses=statuses,
            origin=origin,
            limit=DUE_PER_ROUND,
        )

    @property
    def round_seconds(self) -> float:
        """How often leases are renewed and due tasks looked for."""
        return self._ctx.lease_seconds / ROUNDS_PER_LEASE

    @contextlib.contextmanager
    def working_on(self, task_id: str) -> Iterator[None]:
        """Mark the task as one this engine works on (its lease is renewed) for the block."""
        self._working[task_id] += 1
        try:
            yield
        finally:
            self._working[task_id] -= 1
            if self._working[task_id] <= 0:
                del self._working[task_id]

    async def renew_forever(self) -> None:
        """Keep alive the leases of the tasks this engine is working on, ``ROUNDS_PER_LEASE``
        times per lease length. A lease it holds but does nothing with is left to run out."""
        while True:
            await anyio.sleep(self.round_seconds)
            try:
                until = self._ctx.clock() + self._ctx.lease_seconds
                self._book.ledger.renew(self.holder, list(self._working), until=until)
            except LedgerError:  # a busy or closing ledger: the next round tries again
                log.warning("could not renew task leases", exc_info=True)

    async def follow(self, task_id: str) -> Task:
        """Follow a task another process works on by re-reading the ledger (on a timer, and
        whenever the ledger tells of a write: PostgreSQL). Returns when it is
        done, or when its lease is free, ran out, belongs to a dead process or was given to this
        engine meanwhile (``claim_due``): take it then."""
        interval = min(FOLLOWER_READ_SECONDS, self._ctx.settings.poll_interval)
        while True:
            task = self._book.refresh(task_id)
            lease = self._book.ledger.lease(task_id)
            if task.terminal or lease.holder in (None, self.holder):
                return task
            if (lease.until or 0.0) < self._ctx.clock():
                return task
            if holder_is_dead(lease.holder):
                return task
            with anyio.move_on_after(interval):  # or at once when the ledger tells of a write
                await self._book.written().wait()
