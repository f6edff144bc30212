"""The engine on the PostgreSQL ledger: a request through the sandbox ends as a saved video and a
row in the database, and nothing in the data dir's SQLite file."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from videogen.app import open_app
from videogen.ledger import LEDGER_FILENAME
from videogen.ledger.postgres import PostgresLedger

from .test_engine_sandbox import FAST, is_file, sandbox_settings, t2v

pytestmark = pytest.mark.anyio


async def test_the_engine_generates_and_saves_a_video_with_the_postgresql_ledger(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = sandbox_settings(tmp_path, VIDEOGEN_DATABASE_URL=postgres_url)
    async with open_app(settings, sandbox_options=FAST) as app:
        assert isinstance(app.ledger, PostgresLedger)
        with anyio.fail_after(60):
            task = await app.engine.generate(t2v(), wait_seconds=None)
            again = await app.engine.generate(t2v(), wait_seconds=None)
        assert app.sandbox is not None and app.sandbox.log.count(operation="submit") == 1
    assert task.status == "completed", task.error
    assert again.id == task.id  # an identical request: found in the database
    assert task.local_path is not None and is_file(task.local_path)
    stored = PostgresLedger(postgres_url)
    try:
        assert stored.get(task.id).status == "completed"
    finally:
        stored.close()
    assert not (settings.data_dir / LEDGER_FILENAME).exists()
    assert settings.data_dir.stat().st_mode & 0o777 == 0o700  # the sandbox's state: private
