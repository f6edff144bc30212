"""The task ledger: durable, versioned, shared between processes, isolated per owner."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from videogen import ledger as ledger_module
from videogen.errors import ConfigError, TaskNotFound, VideogenError
from videogen.ledger import (
    SCHEMA_VERSION,
    UNRECORDED_ORIGIN,
    Lease,
    Ledger,
    holder_is_dead,
    new_holder,
)
from videogen.ledger import postgres as postgres_ledger
from videogen.ledger import sqlite as sqlite_ledger
from videogen.ledger.postgres import PostgresLedger
from videogen.models import GenerationRequest, Task, TaskStatus, abbreviate_data_url


def make_task(
    task_id: str,
    *,
    prompt: str = "a paper boat",
    status: TaskStatus = "queued",
    owner: str | None = None,
    created_at: float | None = None,
) -> Task:
    now = time.time() if created_at is None else created_at
    request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=prompt)
    return Task(
        id=task_id, request=request, status=status, created_at=now, updated_at=now, owner=owner
    )


def test_a_saved_task_reads_back_equal(ledger: Ledger) -> None:
    task = make_task("vg_1")
    task.provider_task_id, task.req_key = "7491596536074305586", "jimeng_t2v_v30"
    ledger.insert(task)
    assert ledger.get("vg_1") == task


def test_per_answer_notes_are_not_stored(ledger: Ledger) -> None:
    task = make_task("vg_1")
    task.notes = ["an identical request..."]
    ledger.insert(task)
    assert ledger.get("vg_1").notes == []


def test_an_unknown_id_raises_task_not_found_with_a_hint(ledger: Ledger) -> None:
    with pytest.raises(TaskNotFound, match="list_tasks"):
        ledger.get("vg_nope")


def test_another_owner_cannot_read_a_task(ledger: Ledger) -> None:
    ledger.insert(make_task("vg_1", owner="alice"))
    assert ledger.get("vg_1", owner="alice").owner == "alice"
    assert ledger.get("vg_1").owner == "alice"  # no owner: the local user sees everything
    with pytest.raises(TaskNotFound):
        ledger.get("vg_1", owner="bob")
    assert ledger.recent(owner="bob") == []


def test_recent_lists_newest_first_within_the_limit(ledger: Ledger) -> None:
    for n in range(5):
        ledger.insert(make_task(f"vg_{n}", created_at=1000.0 + n))
    assert [t.id for t in ledger.recent(limit=3)] == ["vg_4", "vg_3", "vg_2"]


def test_with_status_finds_unfinished_tasks_oldest_first(ledger: Ledger) -> None:
    ledger.insert(make_task("vg_a", status="running", created_at=2.0))
    ledger.insert(make_task("vg_b", status="completed", created_at=1.0))
    ledger.insert(make_task("vg_c", status="submitting", created_at=1.0))
    found = ledger.with_status(("submitting", "running"))
    assert [t.id for t in found] == ["vg_c", "vg_a"]


def test_find_duplicate_respects_window_owner_and_excluded_states(ledger: Ledger) -> None:
    old = make_task("vg_old", created_at=100.0)
    failed = make_task("vg_failed", status="failed", created_at=300.0)
    mine = make_task("vg_mine", created_at=200.0, owner="alice")
    for task in (old, failed, mine):
        ledger.insert(task)
    key = old.request.dedupe_key()
    assert ledger.find_duplicate(key, owner=None, since=50.0, exclude=("failed",)) == old
    assert ledger.find_duplicate(key, owner=None, since=150.0, exclude=("failed",)) is None
    assert ledger.find_duplicate(key, owner=None, since=150.0) == failed
    assert ledger.find_duplicate(key, owner="alice", since=0.0) == mine
    other = make_task("x").request.model_copy(update={"prompt": "other"}).dedupe_key()
    assert ledger.find_duplicate(other, owner=None, since=0.0) is None


def test_the_schema_is_versioned_and_reopening_keeps_the_data(
    open_ledger_here: Callable[[], Ledger], ledger_backend: str
) -> None:
    first = open_ledger_here()
    first.insert(make_task("vg_1"))
    first.close()
    again = open_ledger_here()
    known = SCHEMA_VERSION if ledger_backend == "sqlite" else postgres_ledger.SCHEMA_VERSION
    assert again.schema_version == known
    assert again.get("vg_1").id == "vg_1"


def test_a_ledger_from_a_newer_version_is_refused_with_the_fix(tmp_path: Path) -> None:
    Ledger.in_dir(tmp_path).close()
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="VIDEOGEN_DATA_DIR"):
        Ledger.in_dir(tmp_path)


def test_an_unusable_data_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="VIDEOGEN_DATA_DIR"):
        Ledger.in_dir(blocker / "data")


def test_the_ledger_is_in_wal_mode(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    with sqlite3.connect(ledger.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_processes_worth_of_connections_read_and_write_at_once(
    open_ledger_here: Callable[[], Ledger],
) -> None:
    """A CLI and a server sharing one store: writes from both land, no 'database is locked'."""
    server, cli = open_ledger_here(), open_ledger_here()
    errors: list[BaseException] = []

    def write(ledger: Ledger, prefix: str) -> None:
        try:
            for n in range(200):
                ledger.insert(make_task(f"vg_{prefix}{n}"))
                ledger.recent(limit=5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(lg, p)) for lg, p in ((server, "s"), (cli, "c"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(server.recent(limit=1000)) == 400


def test_a_ledger_write_is_one_statement_and_fast_enough_for_the_event_loop(
    tmp_path: Path,
) -> None:
    """The engine calls the ledger inline. A save is one short statement (counted, which load
    cannot disturb), and the median of many timed batches stays far under a blocking write (an
    fsync per save on a real disk is several milliseconds; a typical save is ~0.05 ms)."""
    ledger = Ledger.in_dir(tmp_path)
    task = make_task("vg_1")
    ledger.insert(task)
    statements: list[str] = []
    ledger._db.set_trace_callback(statements.append)
    try:
        ledger.save(task)
    finally:
        ledger._db.set_trace_callback(None)
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO tasks")
    batches: list[float] = []
    for batch in range(15):
        started = time.perf_counter()
        for n in range(20):
            task.progress = (batch * 20 + n) / 300
            ledger.save(task)
        batches.append((time.perf_counter() - started) / 20)
    per_save = statistics.median(batches)
    assert per_save < 0.005, f"{per_save * 1000:.2f} ms per save (median of 15 batches)"


def test_the_not_found_message_names_the_command_and_the_tool(ledger: Ledger) -> None:
    with pytest.raises(TaskNotFound) as caught:
        ledger.get("vg_nope")
    assert "`videogen tasks`" in caught.value.message and "list_tasks" in caught.value.message
    assert "videogen list" not in caught.value.message


# -- schema 2: origins and leases ----------------------------------------------------------------

SCHEMA_1 = """
CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, provider TEXT NOT NULL,
    dedupe_key TEXT NOT NULL, owner TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX tasks_dedupe ON tasks (dedupe_key, created_at);
CREATE INDEX tasks_status ON tasks (status);
CREATE INDEX tasks_owner_created ON tasks (owner, created_at);
PRAGMA user_version = 1;
"""


def test_a_schema_1_ledger_is_migrated_and_keeps_its_tasks(tmp_path: Path) -> None:
    old = make_task("vg_old", status="running")
    legacy = old.model_dump_json(exclude={"origin", "endpoint", "dedupe_key"})
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:
        db.executescript(SCHEMA_1)
        db.execute(
            "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (old.id, old.status, "volcengine", old.request.dedupe_key(), None, 1.0, 1.0, legacy),
        )
    ledger = Ledger.in_dir(tmp_path)
    assert ledger.schema_version == SCHEMA_VERSION == 4
    migrated = ledger.get("vg_old")
    assert migrated.origin == UNRECORDED_ORIGIN and migrated.status == "running"
    assert ledger.lease("vg_old") == Lease(None, None)
    assert [t.id for t in ledger.with_status(("running",))] == ["vg_old"]


def test_tasks_without_an_origin_are_marked_unrecorded_and_never_found_as_duplicates(
    tmp_path: Path,
) -> None:
    """Schema 2 kept schema 1's rows with a NULL origin; schema 3 marks them, so a dedupe
    lookup for any real origin passes them by."""
    old = make_task("vg_old", status="running")
    legacy = old.model_dump_json(exclude={"origin", "endpoint", "dedupe_key"})
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:
        db.executescript(SCHEMA_1)
        db.execute(
            "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (old.id, old.status, "volcengine", old.request.dedupe_key(), None, 1.0, 1.0, legacy),
        )
        db.executescript(ledger_module.MIGRATIONS[1] + "PRAGMA user_version = 2;")
        assert db.execute("SELECT origin FROM tasks").fetchall() == [(None,)]
    ledger = Ledger.in_dir(tmp_path)
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:
        assert db.execute("SELECT origin FROM tasks").fetchall() == [(UNRECORDED_ORIGIN,)]
    assert ledger.get("vg_old").origin == UNRECORDED_ORIGIN
    key = old.request.dedupe_key()
    assert ledger.find_duplicate(key, owner=None, since=0.0, origin="a" * 32) is None
    assert ledger.find_duplicate(key, owner=None, since=0.0) is not None


def test_only_one_holder_gets_a_lease_until_it_is_released_or_runs_out(ledger: Ledger) -> None:
    ledger.insert(make_task("vg_1"))
    assert ledger.claim("vg_1", "a", until=110.0, now=100.0)
    assert not ledger.claim("vg_1", "b", until=110.0, now=105.0)
    assert ledger.claim("vg_1", "a", until=120.0, now=105.0)  # renewed by its holder
    assert ledger.lease("vg_1") == Lease("a", 120.0)
    assert ledger.claim("vg_1", "b", until=130.0, now=121.0)  # ran out
    assert not ledger.claim("vg_1", "a", until=140.0, now=122.0)
    ledger.release("vg_1", "a")  # not a's any more: nothing happens
    assert ledger.lease("vg_1").holder == "b"
    ledger.release("vg_1", "b")
    assert ledger.claim("vg_1", "c", until=140.0, now=122.0)
    assert ledger.claim("vg_1", "d", until=140.0, now=122.0, replacing="c")  # c proven dead
    assert not ledger.claim("vg_missing", "a", until=1.0, now=0.0)


def test_saving_a_task_keeps_its_lease_and_renew_extends_only_the_named_ones(
    ledger: Ledger,
) -> None:
    for name in ("vg_1", "vg_2", "vg_3"):
        ledger.insert(make_task(name), lease=Lease("a", 50.0))
    task = ledger.get("vg_1")
    task.status = "running"
    ledger.save(task)
    assert ledger.lease("vg_1") == Lease("a", 50.0)
    assert ledger.renew("a", ["vg_2", "vg_3"], until=99.0) == 2
    assert ledger.renew("b", ["vg_1"], until=99.0) == 0
    assert ledger.lease("vg_2") == Lease("a", 99.0)
    assert ledger.lease("vg_1") == Lease("a", 50.0)


def test_release_all_hands_back_every_lease_of_one_holder(ledger: Ledger) -> None:
    for name, holder in (("vg_1", "me"), ("vg_2", "me"), ("vg_3", "you")):
        ledger.insert(make_task(name), lease=Lease(holder, 50.0))
    assert ledger.release_all("me") == 2
    assert ledger.lease("vg_1") == ledger.lease("vg_2") == Lease(None, None)
    assert ledger.lease("vg_3") == Lease("you", 50.0)


def test_a_holder_is_dead_only_when_provably_gone(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    host = socket.gethostname()
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert holder_is_dead(f"{host}:{process.pid}:x")
    assert not holder_is_dead(new_holder())  # this process
    assert not holder_is_dead(f"some-other-host:{process.pid}:x")  # cannot tell: expiry
    assert not holder_is_dead("garbage")


def test_the_dedupe_key_column_is_the_full_requests_key(ledger: Ledger) -> None:
    task = make_task("vg_1")
    full_key = task.request.dedupe_key()
    task.request = task.request.model_copy(update={"images": ("data:image/png;base64,… (x)",)})
    task.dedupe_key = full_key
    ledger.insert(task)
    assert ledger.find_duplicate(full_key, owner=None, since=0.0) == task


def test_long_data_urls_are_abbreviated_with_their_hash_and_size() -> None:
    payload = bytes(range(256)) * 40
    url = "data:image/png;base64," + base64.b64encode(payload).decode()
    short = abbreviate_data_url(url)
    digest = hashlib.sha256(payload).hexdigest()[:12]
    assert short == f"data:image/png;base64,… (sha256 {digest}…, {len(payload)} bytes)"
    assert abbreviate_data_url(short) == short
    for kept in ("https://example.com/a.png", "/tmp/a.png", "data:image/png;base64,AAAA"):
        assert abbreviate_data_url(kept) == kept
    request = GenerationRequest(provider="volcengine", mode="i2v_first_720p", images=(url,))
    assert request.compact().images == (short,)
    assert request.compact().dedupe_key() != request.dedupe_key()


# -- private files (issue 14 item 13) -------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_data_dir_and_the_ledger_files_are_private_under_the_default_umask(
    tmp_path: Path, umask_022: None
) -> None:
    data_dir = tmp_path / "state" / "videogen"
    ledger = Ledger.in_dir(data_dir)
    ledger.insert(make_task("vg_1", prompt="a private prompt"))
    assert mode(data_dir) == 0o700
    for name in ("tasks.sqlite3", "tasks.sqlite3-wal", "tasks.sqlite3-shm"):
        assert mode(data_dir / name) == 0o600, name
    assert mode(data_dir.parent) == 0o755  # parents are the user's business
    ledger.close()


def test_a_ledger_left_world_readable_is_made_private_when_opened(
    tmp_path: Path, umask_022: None
) -> None:
    Ledger.in_dir(tmp_path).close()
    (tmp_path / "tasks.sqlite3").chmod(0o644)
    Ledger.in_dir(tmp_path).close()
    assert mode(tmp_path / "tasks.sqlite3") == 0o600


# -- rows this version cannot read (issue 14 item 16) ---------------------------------------------


def write_raw(ledger: Ledger, task_id: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Store a task as a newer videogen might have written it."""
    ledger.insert(make_task(task_id))
    stored = json.loads(ledger.get(task_id).model_dump_json())
    change(stored)
    values = (json.dumps(stored), stored["status"], task_id)
    if isinstance(ledger, PostgresLedger):
        with psycopg.connect(ledger._url) as pg:
            pg.execute("UPDATE tasks SET data = %s::jsonb, status = %s WHERE id = %s", values)
    else:
        with sqlite3.connect(ledger.where) as db:
            db.execute("UPDATE tasks SET data = ?, status = ? WHERE id = ?", values)


def test_unknown_fields_a_newer_version_wrote_are_ignored(ledger: Ledger) -> None:
    write_raw(ledger, "vg_extra", lambda t: t["request"].update(motion_brush="gentle"))
    write_raw(ledger, "vg_field", lambda t: t.update(billing={"credits": 3}))
    assert ledger.get("vg_extra").request.prompt == "a paper boat"
    assert ledger.get("vg_field").id == "vg_field"
    assert [t.id for t in ledger.recent()] == ["vg_field", "vg_extra"]


def test_a_row_this_version_cannot_read_is_skipped_and_named_not_fatal(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.insert(make_task("vg_good", created_at=1.0))
    write_raw(ledger, "vg_status", lambda t: t.update(status="paused"))
    write_raw(ledger, "vg_mode", lambda t: t["request"].update(mode="t2v_4k"))
    with caplog.at_level(logging.WARNING):
        listed = ledger.recent()
        resumable = ledger.with_status(("queued", "paused"))  # type: ignore[arg-type]
    assert [t.id for t in listed] == ["vg_good"]
    assert sorted(listed.skipped) == ["vg_mode", "vg_status"]
    assert [t.id for t in resumable] == ["vg_good"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "vg_status" in warned and "vg_mode" in warned
    with pytest.raises(VideogenError, match="newer videogen"):
        ledger.get("vg_status")


def test_an_unreadable_duplicate_does_not_stop_a_new_request(ledger: Ledger) -> None:
    write_raw(ledger, "vg_newer", lambda t: t.update(status="paused"))
    key = make_task("x").request.dedupe_key()
    assert ledger.find_duplicate(key, owner=None, since=0.0) is None
    fresh = make_task("vg_fresh")
    assert ledger.record_new(fresh, since=0.0) is None
    assert ledger.get("vg_fresh") == fresh


# -- a damaged, read-only or full data dir (issue 14 item 17) -------------------------------------


def test_a_damaged_ledger_names_the_data_dir_the_problem_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "tasks.sqlite3").write_bytes(b"this is not a database, just bytes " * 200)
    with pytest.raises(VideogenError) as raised:
        Ledger.in_dir(tmp_path)
    message = raised.value.message
    assert str(tmp_path) in message and "damaged" in message
    assert "move" in message and "VIDEOGEN_DATA_DIR" in message


def test_a_full_disk_names_the_data_dir_the_problem_and_the_fix(tmp_path: Path) -> None:
    ledger = Ledger.in_dir(tmp_path)
    ledger.insert(make_task("vg_1"))
    # SQLite's own "database or disk is full": the file may not grow past its size now.
    ledger._db.execute("PRAGMA max_page_count = 1")  # it only shrinks to the current size
    with pytest.raises(VideogenError) as raised:
        for n in range(200):
            ledger.insert(make_task(f"vg_{n + 2}", prompt="x" * 2000))
    message = raised.value.message
    assert "database or disk is full" in message and "full" in message.split("(")[0]
    assert str(tmp_path) in message and "free space" in message


def test_a_read_only_ledger_names_the_data_dir_the_problem_and_the_fix(tmp_path: Path) -> None:
    """Tests run as root here, where permissions do not bite: the real SQLite error a
    read-only file gives is classified instead."""
    Ledger.in_dir(tmp_path).close()
    read_only = f"file:{tmp_path / 'tasks.sqlite3'}?mode=ro"
    with sqlite3.connect(read_only, uri=True) as db, pytest.raises(sqlite3.Error) as refused:
        db.execute("DELETE FROM tasks")
    message = ledger_module.ledger_error(tmp_path / "tasks.sqlite3", refused.value).message
    assert "read-only" in message and str(tmp_path) in message and "writable" in message


def test_a_failed_migration_reports_its_real_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement that ends the transaction itself (as a full disk can) used to be masked
    by "cannot rollback - no transaction is active"."""
    Ledger.in_dir(tmp_path).close()
    failing = "CREATE TABLE probe (x UNIQUE); INSERT INTO probe VALUES (1); " \
              "INSERT OR ROLLBACK INTO probe VALUES (1)"  # fmt: skip
    monkeypatch.setattr(sqlite_ledger, "MIGRATIONS", (*sqlite_ledger.MIGRATIONS, failing))
    monkeypatch.setattr(sqlite_ledger, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(VideogenError, match="UNIQUE constraint failed") as raised:
        Ledger.in_dir(tmp_path)
    assert str(tmp_path) in raised.value.message
    with sqlite3.connect(tmp_path / "tasks.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- replicas: claiming due work, waiting for changes --------------------------------------------


def test_claim_due_leases_free_and_expired_unfinished_tasks_oldest_first(ledger: Ledger) -> None:
    ledger.insert(make_task("vg_new", status="running", created_at=3.0))
    ledger.insert(make_task("vg_old", status="queued", created_at=1.0))
    ledger.insert(make_task("vg_expired", status="running", created_at=2.0), lease=Lease("x", 5.0))
    ledger.insert(make_task("vg_held", status="running", created_at=0.5), lease=Lease("y", 99.0))
    ledger.insert(make_task("vg_done", status="completed", created_at=0.1))
    due = ledger.claim_due("a", until=50.0, now=10.0, statuses=("queued", "running"), limit=10)
    assert [t.id for t in due] == ["vg_old", "vg_expired", "vg_new"]
    assert ledger.lease("vg_expired") == Lease("a", 50.0)
    assert ledger.lease("vg_held") == Lease("y", 99.0)
    again = ledger.claim_due("b", until=50.0, now=10.0, statuses=("queued", "running"))
    assert again == []  # all taken: nothing for a second holder


def test_claim_due_keeps_to_the_origin_and_the_limit(ledger: Ledger) -> None:
    for n in range(4):
        task = make_task(f"vg_{n}", status="queued", created_at=float(n))
        task.origin = "here" if n % 2 else "elsewhere"
        ledger.insert(task)
    due = ledger.claim_due("a", until=9.0, now=1.0, statuses=("queued",), origin="here", limit=1)
    assert [t.id for t in due] == ["vg_1"]
    rest = ledger.claim_due("a", until=9.0, now=1.0, statuses=("queued",), origin="here")
    assert [t.id for t in rest] == ["vg_3"]


def test_claim_due_never_leases_a_row_this_version_cannot_read(ledger: Ledger) -> None:
    write_raw(ledger, "vg_newer", lambda t: t.update(status="paused"))
    write_raw(ledger, "vg_mode", lambda t: t["request"].update(mode="t2v_4k"))
    due = ledger.claim_due("a", until=9.0, now=1.0, statuses=("queued", "paused"))  # type: ignore[arg-type]
    assert due == [] and sorted(due.skipped) == ["vg_mode", "vg_newer"]
    assert ledger.lease("vg_mode") == ledger.lease("vg_newer") == Lease(None, None)


def test_a_change_feed_times_out_when_nothing_changes(ledger: Ledger) -> None:
    with ledger.changes() as feed:
        started = time.monotonic()
        assert feed.wait(0.2) == set()
    assert time.monotonic() - started >= 0.19
