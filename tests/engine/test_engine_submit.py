"""The submit: retried only after definitive refusals, within the caller's budget, cancellable
between sends; never resent after an ambiguous failure; data URLs not kept in the ledger."""

from __future__ import annotations

import base64
import logging
import multiprocessing
import shutil
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from videogen.app import open_app
from videogen.config import Settings
from videogen.engine import Engine
from videogen.engine import submitting as engine_module
from videogen.errors import ProviderUnavailable, RateLimited, VideogenError
from videogen.ledger import Ledger
from videogen.models import GenerationRequest
from videogen.retry import RetryPolicy
from videogen.sandbox import SandboxOptions

from .conftest import ScriptedProvider, make_settings, running_engine, t2v
from .processes import submit_rounds

pytestmark = pytest.mark.anyio


def refused(retry_after: float) -> RateLimited:
    return RateLimited("Too many requests.", provider="volcengine", code=50429,
                       http_status=429, retry_after=retry_after)  # fmt: skip


def patient(engine: Engine) -> None:
    """Many attempts, tiny backoff: only the budget and the hints bound the retries."""
    engine._retry = RetryPolicy(attempts=100, wait_initial=0.01, wait_max=0.02)


async def test_a_long_retry_after_ends_a_short_wait_at_once_and_nothing_is_billed(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(submit_error=refused(20.0), submit_errors_first=1000)
    async with running_engine(make_settings(tmp_path), provider) as engine:
        started = time.monotonic()
        with pytest.raises(RateLimited) as caught:
            await engine.generate(t2v(), wait_seconds=1)
        elapsed = time.monotonic() - started
        (task,) = engine.list_tasks()
    assert elapsed < 2
    assert provider.submits == 1
    assert task.status == "failed" and task.error is not None
    assert task.error.kind == "rate_limited"
    assert "nothing was billed" in task.error.message and "20 s" in task.error.message
    assert "may have been billed" not in task.error.message
    assert caught.value.retry_after == 20.0


async def test_submit_retries_stop_at_the_callers_budget(tmp_path: Path) -> None:
    provider = ScriptedProvider(submit_error=refused(0.4), submit_errors_first=1000)
    async with running_engine(make_settings(tmp_path), provider, configure=patient) as engine:
        started = time.monotonic()
        with pytest.raises(RateLimited):
            await engine.submit(t2v(), wait_seconds=0)  # the floor: 3 s
        elapsed = time.monotonic() - started
    assert 2.0 < elapsed < 3.5
    assert 6 <= provider.submits <= 9


async def test_a_caller_cancelled_while_waiting_to_resend_leaves_a_failed_unbilled_task(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(submit_error=refused(5.0), submit_errors_first=1000)
    async with running_engine(make_settings(tmp_path), provider, configure=patient) as engine:
        started = time.monotonic()
        with anyio.move_on_after(0.3):
            await engine.submit(t2v(), wait_seconds=30)
        elapsed = time.monotonic() - started
        (task,) = engine.list_tasks()
    assert elapsed < 1.5
    assert provider.submits == 1
    assert task.status == "failed" and task.error is not None
    assert task.error.kind == "cancelled" and "nothing was billed" in task.error.message


async def test_a_connection_that_never_opened_is_retried_then_reported_unbilled(
    tmp_path: Path,
) -> None:
    never = ProviderUnavailable("Connection refused.", provider="volcengine", sent=False)
    provider = ScriptedProvider(submit_error=never, submit_errors_first=1000)
    async with running_engine(make_settings(tmp_path), provider) as engine:
        engine._retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02)
        with pytest.raises(ProviderUnavailable, match="nothing was billed"):
            await engine.submit(t2v())
        (task,) = engine.list_tasks()
    assert provider.submits == 3
    assert task.status == "failed"


async def test_a_dropped_submit_is_never_resent_even_with_budget_left(tmp_path: Path) -> None:
    lost = ProviderUnavailable("Read timed out.", provider="volcengine", sent=True)
    provider = ScriptedProvider(submit_error=lost, submit_errors_first=1000)
    async with running_engine(make_settings(tmp_path), provider, configure=patient) as engine:
        task = await engine.submit(t2v(), wait_seconds=30)
    assert provider.submits == 1
    assert task.status == "unknown"


# -- data URLs ---------------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    """A valid grey PNG (noise rows, so it is not tiny)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes((x * 7 + y) % 256 for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_a_data_url_image_is_sent_whole_but_kept_abbreviated(tmp_path: Path) -> None:
    image = png(640, 640)
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    seen: list[GenerationRequest] = []

    class Spy(ScriptedProvider):
        async def submit(self, request, inputs):  # type: ignore[no-untyped-def]
            seen.append(request)
            assert inputs.images[0].base64 == data_url.split(",", 1)[1]
            return await super().submit(request, inputs)

    request = GenerationRequest(provider="volcengine", mode="i2v_first_720p",
                                prompt="the photo comes alive", images=(data_url,))  # fmt: skip
    provider = Spy()
    settings = make_settings(tmp_path)
    async with running_engine(settings, provider) as engine:
        task = await engine.submit(request)
        again = await engine.submit(request)  # the dedupe key is the full request's
    assert seen[0].images == (data_url,)
    assert again.id == task.id and provider.submits == 1
    (kept,) = task.request.images
    assert kept.startswith("data:image/png;base64,… (sha256 ")
    assert kept.endswith(f", {len(image)} bytes)")
    assert task.dedupe_key == request.dedupe_key()
    with sqlite3.connect(settings.data_dir / "tasks.sqlite3") as db:
        ((data, key),) = db.execute("SELECT data, dedupe_key FROM tasks").fetchall()
    assert len(data) < 4000 and data_url[22:200] not in data
    assert key == request.dedupe_key()


# -- one request, one bill (issue 14 item 1) --------------------------------------------------


def sandbox_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "HOME": str(tmp_path),
            "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "out"),
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        }
    )


def sandbox_submits(data_dir: Path) -> int:
    """Submits in the request log every sandbox on ``data_dir`` shares."""
    with sqlite3.connect(data_dir / "sandbox" / "sandbox.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM requests WHERE operation = 'submit'").fetchone()
    return int(count)


async def test_concurrent_identical_requests_with_a_local_image_are_billed_once(
    tmp_path: Path,
) -> None:
    """Reading the image is an await between the duplicate check and the insert: 20 rounds of
    5 identical requests at once give 20 submits, and each round's callers share one task."""
    image = tmp_path / "frame.png"
    image.write_bytes(png(640, 640))
    rounds, callers = 20, 5
    options = SandboxOptions(job_seconds=60)  # nothing finishes while the rounds run
    async with open_app(sandbox_settings(tmp_path), track=False, sandbox_options=options) as app:
        for round_ in range(rounds):
            request = GenerationRequest(provider="volcengine", mode="i2v_first_720p",
                                        prompt=f"round {round_}", images=(str(image),))  # fmt: skip
            ids: list[str] = []

            async def call(request: GenerationRequest = request, ids: list[str] = ids) -> None:
                ids.append((await app.engine.submit(request)).id)

            async with anyio.create_task_group() as group:
                for _ in range(callers):
                    group.start_soon(call)
            assert len(set(ids)) == 1, f"round {round_}: {ids}"
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == rounds
        assert len(app.engine.list_tasks(limit=100)) == rounds


def test_two_processes_sending_the_same_request_at_once_are_billed_once(tmp_path: Path) -> None:
    """Two apps (each with its own embedded sandbox, one shared data dir and request log), the
    same text-only request released in both at the same moment, 20 times: 20 submits."""
    rounds = 20
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results: Any = context.Queue()
    # One start first, so both do not race to create the ledger and sandbox files.
    Ledger.in_dir(tmp_path / "data").close()
    workers = [
        context.Process(target=submit_rounds, args=(str(tmp_path), rounds, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        answers = [results.get(timeout=60) for _ in workers]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert answers[0] == answers[1]  # both callers got the same task, every round
    assert len(set(answers[0])) == rounds
    assert sandbox_submits(tmp_path / "data") == rounds


# -- a full data disk (issue 14 item 3) ---------------------------------------------------------


FULL = "database or disk is full"


class FullDisk:
    """A ledger connection whose task writes fail like SQLite's on a full disk, ``failures``
    times (-1: always); everything else goes to the real connection."""

    def __init__(self, db: sqlite3.Connection, failures: int) -> None:
        self._db = db
        self.failures = failures

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("INSERT INTO tasks") and "ON CONFLICT" in sql and self.failures:
            self.failures -= 1
            error = sqlite3.OperationalError(FULL)
            error.sqlite_errorcode = 13  # SQLITE_FULL
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.fixture
def quick_record_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(engine_module, "RECORD_FIRST_DELAY_SECONDS", 0.01, raising=False)
    yield


async def test_a_nearly_full_data_disk_refuses_a_submit_before_billing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    provider = ScriptedProvider()
    real = shutil.disk_usage

    def usage(path: Any) -> Any:
        total, used, _ = real(path)
        return type(real(path))(total, used, 4096)

    async with running_engine(settings, provider) as engine:
        monkeypatch.setattr(shutil, "disk_usage", usage)
        with pytest.raises(VideogenError) as refused:
            await engine.submit(t2v())
        assert engine.list_tasks() == []
    assert provider.submits == 0
    assert str(settings.data_dir) in refused.value.message
    assert "full" in refused.value.message and "nothing was billed" in refused.value.message


async def test_an_accepted_submit_is_recorded_once_the_full_disk_takes_the_write(
    tmp_path: Path, quick_record_retries: None
) -> None:
    """The provider's id is not dropped when the write after the submit fails: it is retried."""
    settings = make_settings(tmp_path)
    provider = ScriptedProvider()
    async with running_engine(settings, provider) as engine:
        ledger: Any = engine.ledger
        ledger._db = FullDisk(ledger._db, failures=3)
        task = await engine.submit(t2v())
        assert task.status == "queued" and task.provider_task_id == "p0"
        stored = engine.get(task.id)
    assert provider.submits == 1
    assert stored.provider_task_id == "p0" and stored.status in ("queued", "running", "ready",
                                                                 "completed")  # fmt: skip


async def test_an_accepted_submit_the_ledger_never_takes_is_reported_with_the_providers_id(
    tmp_path: Path, quick_record_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    provider = ScriptedProvider()
    async with running_engine(settings, provider) as engine:
        ledger: Any = engine.ledger
        ledger._db = FullDisk(ledger._db, failures=-1)
        with caplog.at_level(logging.ERROR), pytest.raises(VideogenError) as unrecorded:
            await engine.submit(t2v())
    assert provider.submits == 1
    message = unrecorded.value.message
    assert "p0" in message and "billed" in message and str(settings.data_dir) in message
    assert any("p0" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


async def test_an_app_creates_its_data_dir_private_before_the_sandbox_writes_there(
    tmp_path: Path,
) -> None:
    import os

    old = os.umask(0o022)
    try:
        async with open_app(sandbox_settings(tmp_path), track=False) as app:
            await app.engine.submit(t2v())
    finally:
        os.umask(old)
    data_dir = tmp_path / "data"
    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert (data_dir / "tasks.sqlite3").stat().st_mode & 0o777 == 0o600
