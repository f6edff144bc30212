"""A task is only polled from where it was sent: same provider endpoint, same credentials.

A session with other keys, another endpoint or the sandbox switch flipped must never poll a
billed task (the provider there would say "not found" and the task would be marked expired for
good): it returns the task as it stands with a note naming where it was sent.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from videogen.config import ProviderEndpoint, Settings
from videogen.engine import origin_of
from videogen.ledger import Ledger
from videogen.models import Task
from videogen.providers.base import PollResult

from .conftest import ScriptedProvider, make_settings, running_engine, t2v

pytestmark = pytest.mark.anyio

FORGOTTEN = [PollResult(status="expired", raw_status="not_found")]


def other_key(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        volcengine=ProviderEndpoint(
            base_url="https://provider.example", access_key="ak-other", secret_key="sk-other"
        ),
    )


def other_endpoint(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        volcengine=ProviderEndpoint(
            base_url="https://elsewhere.example", access_key="ak-test", secret_key="sk-test"
        ),
    )


def stored(data_dir: Path, task_id: str) -> Task:
    ledger = Ledger.in_dir(data_dir)
    try:
        return ledger.get(task_id)
    finally:
        ledger.close()


async def submitted_task(settings: Settings) -> Task:
    """A real task, accepted and still running, made with ``settings`` (no watcher left)."""
    provider = ScriptedProvider(script=[PollResult(status="running", raw_status="generating")])
    async with running_engine(settings, provider) as engine:
        task = await engine.submit(t2v())
    assert task.status == "queued" and task.origin is not None
    return task


@pytest.mark.parametrize(
    "session",
    [
        pytest.param(lambda p: make_settings(p, sandbox=True), id="sandbox session"),
        pytest.param(other_key, id="other credentials"),
        pytest.param(other_endpoint, id="other endpoint"),
    ],
)
async def test_a_task_from_another_origin_is_not_polled_and_not_marked_expired(
    tmp_path: Path, session: object
) -> None:
    task = await submitted_task(make_settings(tmp_path))
    provider = ScriptedProvider(script=FORGOTTEN)
    settings = session(tmp_path)  # type: ignore[operator]
    async with running_engine(settings, provider) as engine:
        checked = await engine.check(task.id, wait_seconds=1)
        assert engine.watching == 0
    assert provider.polls == 0
    assert checked.status == "queued"
    assert stored(settings.data_dir, task.id).status == "queued"
    (note,) = checked.notes
    assert "https://provider.example (real provider)" in note
    assert "same credentials" in note


async def test_unfinished_tasks_of_another_origin_are_not_resumed(tmp_path: Path) -> None:
    task = await submitted_task(make_settings(tmp_path))
    provider = ScriptedProvider(script=FORGOTTEN)
    async with running_engine(other_key(tmp_path), provider) as engine:
        assert engine.watching == 0
    assert provider.polls == 0
    assert stored(tmp_path / "data", task.id).status == "queued"


async def test_the_same_origin_polls_and_a_not_found_there_is_final(tmp_path: Path) -> None:
    task = await submitted_task(make_settings(tmp_path))
    provider = ScriptedProvider(script=FORGOTTEN)
    async with running_engine(make_settings(tmp_path), provider) as engine:
        checked = await engine.check(task.id, wait_seconds=5)
    assert provider.polls == 1
    assert checked.status == "expired"


async def test_an_identical_request_from_another_account_is_not_answered_with_its_task(
    tmp_path: Path,
) -> None:
    first = await submitted_task(make_settings(tmp_path))
    provider = ScriptedProvider(script=[PollResult(status="running", raw_status="generating")])
    async with running_engine(other_key(tmp_path), provider, resume=False) as engine:
        second = await engine.submit(t2v())
    assert second.id != first.id and provider.submits == 1


SCHEMA_1 = """
CREATE TABLE tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, provider TEXT NOT NULL,
    dedupe_key TEXT NOT NULL, owner TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    data TEXT NOT NULL);
PRAGMA user_version = 1;
"""


def schema_1_ledger(settings: Settings, task: Task) -> None:
    """A ledger as a version that kept no origins wrote it, holding ``task``."""
    settings.data_dir.mkdir(parents=True)
    legacy = task.model_dump_json(exclude={"origin", "endpoint", "dedupe_key"})
    with sqlite3.connect(settings.data_dir / "tasks.sqlite3") as db:
        db.executescript(SCHEMA_1)
        row = (
            task.id,
            task.status,
            "volcengine",
            task.request.dedupe_key(),
            None,
            1.0,
            1.0,
            legacy,
        )
        db.execute("INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)


async def test_a_task_recorded_before_origins_is_neither_polled_nor_resumed_nor_reused(
    tmp_path: Path,
) -> None:
    """Where a schema 1 task was sent is not known: the provider's 'not found' might mean
    another account, so it is never polled (never marked expired) and never answers a request."""
    settings = make_settings(tmp_path)
    now = time.time()
    legacy = Task(id="vg_legacy", request=t2v(), status="running", created_at=now,
                  updated_at=now, provider_task_id="p-old", req_key="jimeng_t2v_v30")  # fmt: skip
    schema_1_ledger(settings, legacy)
    provider = ScriptedProvider(script=FORGOTTEN)
    async with running_engine(settings, provider) as engine:
        resumed = engine.watching
        checked = await engine.check("vg_legacy", wait_seconds=5)
        again = await engine.submit(t2v())
    assert resumed == 0 and provider.polls == 0
    assert checked.status == "running" and checked.error is None
    assert "before videogen recorded where tasks were sent" in checked.notes[0]
    assert again.id != "vg_legacy" and provider.submits == 1


def test_the_origin_names_endpoint_and_account_but_holds_no_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    fingerprint, where = origin_of(settings, "volcengine")
    assert where == "https://provider.example"
    assert origin_of(other_key(tmp_path), "volcengine")[0] != fingerprint
    assert origin_of(other_endpoint(tmp_path), "volcengine")[0] != fingerprint
    assert origin_of(make_settings(tmp_path, sandbox=True), "volcengine")[0] != fingerprint
    # The embedded sandbox moves port every run: still one place.
    moved = make_settings(
        tmp_path,
        sandbox=True,
        volcengine=ProviderEndpoint(
            base_url="http://127.0.0.1:1234", access_key="ak-test", secret_key="sk-test"
        ),
    )
    assert origin_of(moved, "volcengine") == origin_of(
        make_settings(tmp_path, sandbox=True), "volcengine"
    )


async def test_no_credential_reaches_the_ledger_file(tmp_path: Path) -> None:
    await submitted_task(make_settings(tmp_path))
    with sqlite3.connect(tmp_path / "data" / "tasks.sqlite3") as db:
        rows = db.execute("SELECT * FROM tasks").fetchall()
    dumped = repr(rows)
    assert rows and all(secret not in dumped for secret in ("ak-test", "sk-test"))
