"""A cancel request (``Task.cancelled_at``, issue 17) is a fact the ledger keeps: a watcher or
another process that saves a copy read before the cancel must not erase it."""

from __future__ import annotations

from videogen.ledger import Ledger

from .test_ledger import make_task


def test_a_cancel_request_survives_a_save_of_a_copy_read_before_it(ledger: Ledger) -> None:
    ledger.insert(make_task("vg_1"))
    stale = ledger.get("vg_1")  # what a watcher mid-poll holds
    cancelled = ledger.get("vg_1")
    cancelled.cancelled_at = 1234.5
    ledger.save(cancelled)

    stale.status = "running"
    ledger.save(stale)

    kept = ledger.get("vg_1")
    assert (kept.status, kept.cancelled_at) == ("running", 1234.5)
    assert ledger.get("vg_1") == kept  # the row still reads back as a valid task


def test_tasks_never_cancelled_read_back_unchanged(ledger: Ledger) -> None:
    task = make_task("vg_1")
    ledger.insert(task)
    task.status = "running"
    ledger.save(task)
    assert ledger.get("vg_1") == task
