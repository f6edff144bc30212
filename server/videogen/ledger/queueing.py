"""The account-wide queue's steps (``engine.queue``) every ledger backend implements.

A bucket is ``Task.bucket``. Its limit is the smaller of the configured one (passed in)
and one learned from a concurrency refusal at or after ``learned_since``; neither: no
limit. A waiting task holds its place in line only while its lease is live (a process
works on it), so a process that died or stopped does not block the line.
"""

from __future__ import annotations

import abc

from videogen.models import Task


class QueueSteps(abc.ABC):
    """The queue's atomic steps on the ledger; ``Ledger`` has them, each backend its own
    (``sqlite_queue``, ``postgres_queue``)."""

    @abc.abstractmethod
    def take_turn(self, task: Task, *, limit: int | None, learned_since: float, now: float) -> bool:
        """Write ``task`` (a ``waiting`` task moved on, e.g. to ``submitting``) if it is its
        turn, as one atomic step that excludes every other on its bucket; True when written.

        Its turn: fewer tasks of its bucket occupy the provider (``OCCUPYING_STATUSES``) than the
        bucket's limit, and it is among the first waiting tasks of the bucket (oldest first,
        with a lease live at ``now``, or ``task`` itself) that fit in the free places. False
        (nothing written) when it is not its turn, or the stored task no longer waits.
        """

    @abc.abstractmethod
    def save_if_waiting(self, task: Task) -> bool:
        """Write ``task`` only if the stored one is still ``waiting`` (a cancel racing its
        turn); True when written."""

    @abc.abstractmethod
    def queue_place(self, task: Task, *, now: float) -> int:
        """The waiting ``task``'s place in its bucket's line: 1 + the waiting tasks with a live
        lease recorded before it."""

    @abc.abstractmethod
    def at_provider(self, bucket: str) -> int:
        """How many tasks of ``bucket`` the provider has accepted and not finished (``queued``,
        ``running``): what a concurrency refusal says the provider's limit is."""

    @abc.abstractmethod
    def learned_limit(self, bucket: str, *, since: float) -> int | None:
        """The limit learned for ``bucket`` at or after ``since``, if any."""

    @abc.abstractmethod
    def learn_limit(self, bucket: str, at_provider: int, *, now: float, since: float) -> int:
        """Record a concurrency refusal with ``at_provider`` tasks of ``bucket`` at the
        provider: the learned limit becomes that (at least 1), or stays at a lower one learned
        at or after ``since``; either way it holds from ``now``. Returns it."""
