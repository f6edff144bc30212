"""The ledger's queue steps: a turn is taken atomically, in order, within the bucket's limit
(on both backends: the ``ledger`` fixture of tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from videogen.ledger import Lease, Ledger

from .test_ledger import make_task

NOW = time.time()
LIVE = Lease("host:1:a", NOW + 60)


def waiting(ledger: Ledger, task_id: str, at: float, lease: Lease | None = LIVE) -> None:
    ledger.insert(make_task(task_id, status="waiting", created_at=at), lease=lease)


def moved(ledger: Ledger, task_id: str, *, limit: int | None) -> bool:
    task = ledger.get(task_id)
    task.status = "submitting"
    return ledger.take_turn(task, limit=limit, learned_since=0, now=NOW)


def test_turns_go_oldest_first_and_never_past_the_limit(ledger: Ledger) -> None:
    for n in range(4):
        waiting(ledger, f"vg_{n}", NOW + n)
    assert not moved(ledger, "vg_2", limit=2)  # two are ahead of it
    assert moved(ledger, "vg_1", limit=2) and moved(ledger, "vg_0", limit=2)
    assert not moved(ledger, "vg_2", limit=2)  # the bucket is full
    assert ledger.get("vg_0").status == "submitting"
    assert ledger.queue_place(ledger.get("vg_3"), now=NOW) == 2


def test_a_waiting_task_nobody_works_on_holds_no_place(ledger: Ledger) -> None:
    waiting(ledger, "vg_gone", NOW, lease=Lease("host:2:b", NOW - 1))
    waiting(ledger, "vg_here", NOW + 1)
    assert ledger.queue_place(ledger.get("vg_here"), now=NOW) == 1
    assert moved(ledger, "vg_here", limit=1)


def test_a_learned_limit_applies_under_a_larger_configured_one_until_it_expires(
    ledger: Ledger,
) -> None:
    bucket = make_task("vg_x").bucket
    assert ledger.learn_limit(bucket, 3, now=NOW, since=NOW - 10) == 3
    assert ledger.learn_limit(bucket, 0, now=NOW, since=NOW - 10) == 1  # at least one
    assert ledger.learn_limit(bucket, 5, now=NOW, since=NOW - 10) == 1  # never up on a refusal
    assert ledger.learned_limit(bucket, since=NOW + 1) is None  # expired: forgotten
    ledger.insert(make_task("vg_running", status="running"))
    waiting(ledger, "vg_next", NOW + 1)
    assert not moved(ledger, "vg_next", limit=4)


def test_racing_ledgers_never_fill_a_bucket_past_its_limit(
    open_ledger_here: Callable[[], Ledger],
) -> None:
    """Eight ledgers (as eight processes would) race for two places: two win."""
    first = open_ledger_here()
    others = [open_ledger_here() for _ in range(8)]
    for n in range(8):
        waiting(first, f"vg_{n}", NOW)
    wins: list[str] = []
    start = threading.Barrier(8)

    def race(own: Ledger, task_id: str) -> None:
        start.wait()
        if moved(own, task_id, limit=2):
            wins.append(task_id)

    threads = [threading.Thread(target=race, args=(o, f"vg_{n}")) for n, o in enumerate(others)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 2
    assert sorted(t.id for t in first.with_status(["submitting"])) == sorted(wins)


def test_a_cancel_racing_a_turn_writes_only_if_the_task_still_waits(ledger: Ledger) -> None:
    waiting(ledger, "vg_1", NOW)
    assert moved(ledger, "vg_1", limit=1)
    late = ledger.get("vg_1")
    late.status = "failed"
    assert not ledger.save_if_waiting(late)
    assert ledger.get("vg_1").status == "submitting"
