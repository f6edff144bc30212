"""The PostgreSQL ledger: atomic across connections (as replicas are), woken by NOTIFY, plain
about a database it cannot use. (The behaviour both backends share is in test_ledger.py.)"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import psycopg
import pytest

from postgres import PASSWORD, Cluster
from videogen.errors import ConfigError, LedgerError, SpendingLimitReached
from videogen.ledger import Change, Ledger
from videogen.ledger.postgres import SCHEMA_VERSION, PostgresLedger
from videogen.spending import Guard, Limit, Policy

from .test_ledger import make_task

T = TypeVar("T")


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[Callable[[], PostgresLedger]]:
    """Opens ledgers on one database, each with its own connections (as replicas have)."""
    opened: list[PostgresLedger] = []

    def open_one() -> PostgresLedger:
        opened.append(PostgresLedger(postgres_url))
        return opened[-1]

    yield open_one
    for ledger in opened:
        ledger.close()


def at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(0..count-1)`` in threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(n: int) -> T:
        barrier.wait(timeout=30)
        return work(n)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_identical_requests_from_eight_replicas_at_once_record_one_task(
    replicas: Callable[[], PostgresLedger],
) -> None:
    ledgers = [replicas() for _ in range(8)]

    def record(n: int) -> str:
        found = ledgers[n].record_new(make_task(f"vg_{n}", created_at=100.0), since=0.0)
        return f"vg_{n}" if found is None else found.id

    answers = at_once(8, record)
    assert len(set(answers)) == 1
    assert [t.id for t in ledgers[0].recent(limit=20)] == answers[:1]


def test_a_daily_limit_holds_across_replicas_racing_with_different_requests(
    replicas: Callable[[], PostgresLedger],
) -> None:
    ledgers = [replicas() for _ in range(6)]
    policy = Policy((Limit("videos", "day", False, 4),))
    now = time.time()

    def record(n: int) -> str:
        guard = Guard(policy, now=now, owner=None)
        task = make_task(f"vg_{n}", prompt=f"kite {n}", created_at=now)
        try:
            ledgers[n].record_new(task, since=0.0, guard=guard)
        except SpendingLimitReached:
            return "refused"
        return "recorded"

    assert sorted(at_once(6, record)) == ["recorded"] * 4 + ["refused"] * 2
    assert len(ledgers[0].recent(limit=20)) == 4


def test_two_replicas_claiming_due_work_at_once_never_take_the_same_task(
    replicas: Callable[[], PostgresLedger],
) -> None:
    first, second = replicas(), replicas()
    for n in range(60):
        first.insert(make_task(f"vg_{n:02}", status="running", created_at=float(n)))
    ledgers = {"a": first, "b": second}

    def drain(n: int) -> list[str]:
        holder = "ab"[n]
        taken: list[str] = []
        while due := ledgers[holder].claim_due(
            holder, until=100.0, now=10.0, statuses=("running",), limit=3
        ):
            taken += [t.id for t in due]
        return taken

    a, b = at_once(2, drain)
    assert not set(a) & set(b)
    assert sorted(a + b) == [f"vg_{n:02}" for n in range(60)]
    assert {first.lease(i).holder for i in a} == {"a"} and {first.lease(i).holder for i in b} <= {
        "b"
    }


def test_a_write_on_one_replica_wakes_a_waiter_on_another(
    replicas: Callable[[], PostgresLedger],
) -> None:
    waiter, writer = replicas(), replicas()
    with waiter.changes() as feed:
        task = make_task("vg_1")
        writer.insert(task)
        started = time.monotonic()
        assert feed.wait(10.0) == {Change("vg_1", "queued", task.bucket)}
        task.status = "running"
        writer.save(task)
        writer.claim("vg_1", "a", until=9.0, now=1.0)  # a lease alone is not a change
        writer.release("vg_1", "a")
        assert feed.wait(10.0) == {Change("vg_1", "running", task.bucket)}
    assert time.monotonic() - started < 5.0
    assert feed.wait(0.0) == set()  # closed: nothing more arrives


def test_a_save_is_one_round_trip_fast_enough_for_the_event_loop(ledger_pg: Ledger) -> None:
    """The engine calls the ledger inline: the median save on loopback stays far under a
    blocking call (a typical one is ~0.2 ms)."""
    task = make_task("vg_1")
    ledger_pg.insert(task)
    batches: list[float] = []
    for batch in range(10):
        started = time.perf_counter()
        for n in range(20):
            task.progress = (batch * 20 + n) / 200
            ledger_pg.save(task)
        batches.append((time.perf_counter() - started) / 20)
    per_save = statistics.median(batches)
    assert per_save < 0.005, f"{per_save * 1000:.2f} ms per save (median of 10 batches)"


@pytest.fixture
def ledger_pg(replicas: Callable[[], PostgresLedger]) -> PostgresLedger:
    return replicas()


def test_replicas_starting_at_once_migrate_the_database_once(postgres_url: str) -> None:
    ledgers = at_once(4, lambda n: PostgresLedger(postgres_url))
    try:
        assert {lg.schema_version for lg in ledgers} == {SCHEMA_VERSION}
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_database_written_by_a_newer_schema_is_refused_with_the_fix(postgres_url: str) -> None:
    PostgresLedger(postgres_url).close()
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE videogen_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError) as refused:
        PostgresLedger(postgres_url)
    assert "newer videogen" in refused.value.message
    assert "VIDEOGEN_DATABASE_URL" in refused.value.message


def test_an_unreachable_database_names_the_server_and_the_fix_never_the_password(
    postgres_cluster: Cluster,
) -> None:
    with psycopg.connect(postgres_cluster.url(), autocommit=True):
        pass  # the cluster is up: only the port below is wrong
    url = f"postgresql://videogen:{PASSWORD}@127.0.0.1:1/ledger"
    with pytest.raises(LedgerError) as raised:
        PostgresLedger(url)
    message = raised.value.message
    assert "postgresql://videogen@127.0.0.1:1/ledger" in message
    assert "cannot be reached" in message and "VIDEOGEN_DATABASE_URL" in message
    assert PASSWORD not in message and "Traceback" not in message


def test_a_wrong_password_is_named_as_such_and_never_shown(postgres_cluster: Cluster) -> None:
    wrong = "wrong-pass-9c1e"
    with pytest.raises(LedgerError) as raised:
        PostgresLedger(postgres_cluster.url(password=wrong))
    message = raised.value.message
    assert "refused the user name or password" in message
    assert f"127.0.0.1:{postgres_cluster.port}/postgres" in message
    assert wrong not in message and PASSWORD not in message


def test_a_missing_database_says_how_to_create_it(postgres_cluster: Cluster) -> None:
    with pytest.raises(LedgerError, match=r"does not exist .*createdb nowhere"):
        PostgresLedger(postgres_cluster.url("nowhere"))


def test_a_read_only_database_is_named_as_such(postgres_url: str) -> None:
    PostgresLedger(postgres_url).close()
    dbname = postgres_url.rpartition("/")[2]
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"ALTER DATABASE {dbname} SET default_transaction_read_only = on")
    ledger = PostgresLedger(postgres_url)
    try:
        with pytest.raises(LedgerError) as raised:
            ledger.insert(make_task("vg_1"))
    finally:
        ledger.close()
    assert "is read-only" in raised.value.message and "primary" in raised.value.message


def test_a_statement_held_up_past_its_timeout_fails_as_busy_instead_of_hanging(
    postgres_url: str,
) -> None:
    """Another session holds the task's row: a claim waits, then gives up with a clear error
    (after 0.2 s here; 10 s by default)."""
    ledger = PostgresLedger(postgres_url, statement_timeout=0.2)
    try:
        ledger.insert(make_task("vg_1"))
        with psycopg.connect(postgres_url) as other:
            other.execute("SELECT 1 FROM tasks WHERE id = 'vg_1' FOR UPDATE")
            with pytest.raises(LedgerError) as raised:
                ledger.claim("vg_1", "a", until=9.0, now=1.0)
    finally:
        ledger.close()
    assert "busy" in raised.value.message and "try again" in raised.value.message
