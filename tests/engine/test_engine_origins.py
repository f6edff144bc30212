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


async def test_a_task_recorded_before_origins_that_is_not_found_is_kept_as_it_is(
    tmp_path: Path,
) -> None:
    """Schema 1 rows have no origin: the provider's 'not found' may mean another account."""
    settings = make_settings(tmp_path)
    ledger = Ledger.in_dir(settings.data_dir)
    now = time.time()
    ledger.insert(
        Task(
            id="vg_legacy",
            request=t2v(),
            status="running",
            created_at=now,
            updated_at=now,
            provider_task_id="p-old",
            req_key="jimeng_t2v_v30",
        )
    )
    ledger.close()
    provider = ScriptedProvider(script=FORGOTTEN)
    async with running_engine(settings, provider) as engine:
        checked = await engine.check("vg_legacy", wait_seconds=5)
    assert provider.polls == 1
    assert checked.status == "running"
    assert checked.error is not None and checked.error.kind == "not_found"
    assert "credentials it was submitted with" in checked.error.message


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
