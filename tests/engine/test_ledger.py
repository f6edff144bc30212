"""The task ledger: durable, versioned, shared between processes, isolated per owner."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from videogen.errors import ConfigError, TaskNotFound
from videogen.ledger import SCHEMA_VERSION, Ledger
from videogen.models import GenerationRequest, Task, TaskStatus


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


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.in_dir(tmp_path)


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


def test_the_schema_is_versioned_and_reopening_keeps_the_data(tmp_path: Path) -> None:
    first = Ledger.in_dir(tmp_path)
    first.insert(make_task("vg_1"))
    first.close()
    again = Ledger.in_dir(tmp_path)
    assert again.schema_version == SCHEMA_VERSION
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


def test_the_ledger_is_in_wal_mode(ledger: Ledger) -> None:
    with sqlite3.connect(ledger.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_processes_worth_of_connections_read_and_write_at_once(tmp_path: Path) -> None:
    """A CLI and a server sharing one file: writes from both land, no 'database is locked'."""
    server, cli = Ledger.in_dir(tmp_path), Ledger.in_dir(tmp_path)
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


def test_a_ledger_write_is_fast_enough_to_call_on_the_event_loop(ledger: Ledger) -> None:
    """The engine calls the ledger inline; a save must stay well under a millisecond or two."""
    task = make_task("vg_1")
    ledger.insert(task)
    started = time.perf_counter()
    for n in range(500):
        task.progress = n / 500
        ledger.save(task)
    per_save = (time.perf_counter() - started) / 500
    assert per_save < 0.002, f"{per_save * 1000:.2f} ms per save"
