"""The submit: retried only after definitive refusals, within the caller's budget, cancellable
between sends; never resent after an ambiguous failure; data URLs not kept in the ledger."""

from __future__ import annotations

import base64
import sqlite3
import struct
import time
import zlib
from pathlib import Path

import anyio
import pytest

from videogen.engine import Engine
from videogen.errors import ProviderUnavailable, RateLimited
from videogen.models import GenerationRequest
from videogen.retry import RetryPolicy

from .conftest import ScriptedProvider, make_settings, running_engine, t2v

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
