"""The account-wide queue against the sandbox over loopback HTTP: at most so many tasks of one
bucket at the provider, across engines sharing a ledger; the rest wait their turn, visibly.
Every test runs on both ledger backends (SQLite, and a PostgreSQL the tests start)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from videogen.app import App, open_app
from videogen.config import Settings
from videogen.mcp_tasks import status_message
from videogen.models import GenerationRequest, Task
from videogen.report import render_markdown, result_of, task_line
from videogen.sandbox import LogEntry, SandboxOptions

pytestmark = pytest.mark.anyio


@pytest.fixture
def ledger_env(ledger_backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings that choose this run's ledger backend."""
    if ledger_backend == "sqlite":
        return {}
    return {"VIDEOGEN_DATABASE_URL": request.getfixturevalue("postgres_url")}


#: Jobs that finish fast, two at a time per key (more answer 50430).
TWO_AT_A_TIME = SandboxOptions(job_seconds=0.5, faults=("concurrency:2",))
#: Jobs that outlast a test: the first task holds its place throughout.
LONG = SandboxOptions(job_seconds=600)


def settings_for(home: Path, ledger_env: dict[str, str], **env: str) -> Settings:
    settings = Settings.from_env(
        {
            **ledger_env,
            "HOME": str(home),
            "VIDEOGEN_OUTPUT_DIR": str(home / "out"),
            "VIDEOGEN_DATA_DIR": str(home / "data"),
            "JIMENG_VIDEO_POLL_INTERVAL": "0.2",
            **env,
        }
    )
    assert settings.sandbox
    return settings


def t2v(prompt: str) -> GenerationRequest:
    return GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=prompt)


def submits(app: App) -> list[LogEntry]:
    """Every submit any sandbox on this data dir answered."""
    assert app.sandbox is not None
    return app.sandbox.history().select(operation="submit")


def most_in_flight(accepted: list[LogEntry], job_seconds: float) -> int:
    """The most sandbox jobs running at one moment (each runs ``job_seconds`` from its submit)."""
    starts = [e.at for e in accepted]
    return max(sum(1 for s in starts if s <= t < s + job_seconds) for t in starts)


async def generate_all(app: App, prompts: list[str]) -> list[Task]:
    done: list[Task] = []

    async def one(prompt: str) -> None:
        done.append(await app.engine.generate(t2v(prompt), wait_seconds=None))

    with anyio.fail_after(90):
        async with anyio.create_task_group() as group:
            for prompt in prompts:
                group.start_soon(one, prompt)
    return done


async def test_ten_requests_with_a_limit_of_two_all_save_and_never_overfill_the_provider(
    tmp_path: Path,
    ledger_env: dict[str, str],
) -> None:
    """With VIDEOGEN_MAX_CONCURRENT=2 the provider never has more than 2 and never refuses."""
    settings = settings_for(tmp_path, ledger_env, VIDEOGEN_MAX_CONCURRENT="2")
    async with open_app(settings, sandbox_options=TWO_AT_A_TIME) as app:
        done = await generate_all(app, [f"boat {n}" for n in range(10)])
        log = submits(app)
    assert [t.status for t in done] == ["completed"] * 10, [t.error for t in done]
    assert [e.code for e in log if e.code == 50430] == []
    assert len(log) == 10
    assert most_in_flight(log, TWO_AT_A_TIME.job_seconds) <= 2
    assert sum("waiting" in [h.status for h in t.history] for t in done) >= 8


async def test_with_no_limit_set_the_limit_is_learned_from_the_providers_refusals(
    tmp_path: Path,
    ledger_env: dict[str, str],
) -> None:
    """Six at once against a provider taking two: it refuses some (50430), the limit is learned
    as 2, and every task still ends saved with no refusal reaching the caller."""
    async with open_app(settings_for(tmp_path, ledger_env), sandbox_options=TWO_AT_A_TIME) as app:
        done = await generate_all(app, [f"kite {n}" for n in range(6)])
        learned = app.ledger.learned_limit(done[0].bucket, since=0)
        log = submits(app)
    assert [t.status for t in done] == ["completed"] * 6
    assert all(t.error is None for t in done)
    assert any(e.code == 50430 for e in log)  # the provider did refuse, and nobody saw it
    assert learned == 2
    refused = [t for t in done if any(h.note and "50430" in h.note for h in t.history)]
    assert refused and all(t.provider_task_id is not None for t in refused)


async def test_two_engines_on_one_data_dir_share_the_limit(
    tmp_path: Path, ledger_env: dict[str, str]
) -> None:
    """Two apps (two engines, two sandboxes sharing their state) take two at a time between
    them: other engines' room is seen by re-reading the ledger."""
    settings = settings_for(tmp_path, ledger_env, VIDEOGEN_MAX_CONCURRENT="2")
    done: list[Task] = []
    async with (
        open_app(settings, sandbox_options=TWO_AT_A_TIME) as first,
        open_app(settings, sandbox_options=TWO_AT_A_TIME) as second,
    ):

        async def one(app: App, prompt: str) -> None:
            done.append(await app.engine.generate(t2v(prompt), wait_seconds=None))

        with anyio.fail_after(90):
            async with anyio.create_task_group() as group:
                for n in range(3):
                    group.start_soon(one, first, f"first {n}")
                    group.start_soon(one, second, f"second {n}")
        log = submits(first)
    assert [t.status for t in done] == ["completed"] * 6, [t.error for t in done]
    assert len(log) == 6 and not any(e.code == 50430 for e in log)
    assert most_in_flight(log, TWO_AT_A_TIME.job_seconds) <= 2


async def test_a_waiting_task_shows_its_place_in_line_everywhere(
    tmp_path: Path, ledger_env: dict[str, str]
) -> None:
    settings = settings_for(tmp_path, ledger_env, VIDEOGEN_MAX_CONCURRENT_VOLCENGINE="1")
    async with open_app(settings, sandbox_options=LONG) as app:
        first = await app.engine.generate(t2v("first"), wait_seconds=0)
        second = await app.engine.generate(t2v("second"), wait_seconds=0)
        third = await app.engine.generate(t2v("third"), wait_seconds=0.2)
        checked = await app.engine.check(third.id)
        listed = {t.id: t for t in app.engine.list_tasks()}
        assert len(submits(app)) == 1
    assert first.status == "queued"
    assert (second.status, third.status, checked.status) == ("waiting",) * 3
    assert second.queue_place is not None and second.queue_place.place == 1
    words = "Waiting: 2nd in line for volcengine; 1 at a time."
    result = result_of(checked, notice=None, interface="cli")
    assert (result.place_in_line, result.message, result.done) == (2, words, False)
    assert result.next_step is not None and f"videogen check {third.id}" in result.next_step
    assert words in render_markdown(result)
    assert words in task_line(listed[third.id])
    assert status_message(checked) == words


async def test_an_identical_request_to_a_waiting_one_returns_that_task(
    tmp_path: Path, ledger_env: dict[str, str]
) -> None:
    settings = settings_for(tmp_path, ledger_env, VIDEOGEN_MAX_CONCURRENT="1")
    async with open_app(settings, sandbox_options=LONG) as app:
        await app.engine.generate(t2v("first"), wait_seconds=0)
        waiting = await app.engine.generate(t2v("second"), wait_seconds=0)
        again = await app.engine.generate(t2v("second"), wait_seconds=0)
        assert len(app.engine.list_tasks()) == 2
    assert (again.id, again.status) == (waiting.id, "waiting")
    assert any("identical request" in note for note in again.notes)


async def test_cancelling_a_waiting_task_ends_it_at_once_with_nothing_billed(
    tmp_path: Path,
    ledger_env: dict[str, str],
) -> None:
    settings = settings_for(tmp_path, ledger_env, VIDEOGEN_MAX_CONCURRENT="1")
    async with open_app(settings, sandbox_options=LONG) as app:
        await app.engine.generate(t2v("first"), wait_seconds=0)
        second = await app.engine.generate(t2v("second"), wait_seconds=0)
        third = await app.engine.generate(t2v("third"), wait_seconds=0)
        cancelled = await app.engine.cancel(second.id)
        moved_up = app.engine.get(third.id)
        assert len(submits(app)) == 1
    assert (cancelled.status, cancelled.provider_task_id) == ("failed", None)
    assert cancelled.error is not None and cancelled.error.kind == "cancelled"
    assert "nothing was billed" in cancelled.error.message
    assert status_message(cancelled).startswith("Cancelled before it was sent")
    assert moved_up.queue_place is not None and moved_up.queue_place.place == 1


async def test_a_restart_resumes_a_waiting_task_which_still_waits_its_turn(
    tmp_path: Path,
    ledger_env: dict[str, str],
) -> None:
    settings = settings_for(tmp_path, ledger_env, VIDEOGEN_MAX_CONCURRENT="1")
    options = SandboxOptions(job_seconds=1.0)
    async with open_app(settings, sandbox_options=options) as first_run:
        first = await first_run.engine.generate(t2v("first"), wait_seconds=0)
        second = await first_run.engine.generate(t2v("second"), wait_seconds=0)
    assert (first.status, second.status) == ("queued", "waiting")

    async with open_app(settings, sandbox_options=options) as second_run:
        assert second_run.resumed == 2
        with anyio.fail_after(60):
            await second_run.engine.wait_idle()
        finished = [second_run.engine.get(t.id) for t in (first, second)]
        log = submits(second_run)
    assert [t.status for t in finished] == ["completed", "completed"]
    assert len(log) == 2 and log[1].at >= log[0].at + options.job_seconds
    statuses = [h.status for h in finished[1].history]
    assert statuses[:2] == ["waiting", "submitting"]


async def test_on_postgres_a_turn_freed_by_another_engine_is_heard_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """The other engine's room is heard through the ledger's change feed (NOTIFY), not found by
    re-reading: with the re-read timer set past the test's deadline, the second task still gets
    its turn as soon as the first ends."""
    env = {"VIDEOGEN_DATABASE_URL": postgres_url}
    settings = settings_for(tmp_path, env, VIDEOGEN_MAX_CONCURRENT="1")
    async with (
        open_app(settings, sandbox_options=TWO_AT_A_TIME) as first,
        open_app(settings, sandbox_options=TWO_AT_A_TIME) as second,
    ):
        second.engine._ctx.queue_recheck = 3600.0  # only the change feed can wake it in time
        ahead = await first.engine.generate(t2v("ahead"), wait_seconds=0)
        behind = await second.engine.generate(t2v("behind"), wait_seconds=0)
        assert behind.status == "waiting"
        with anyio.fail_after(30):
            done = await second.engine.generate(t2v("behind"), wait_seconds=None)
        assert (await first.engine.check(ahead.id)).status == "completed"
    assert done.id == behind.id and done.status == "completed"


async def test_a_refusal_with_none_of_ours_at_the_provider_is_reported_not_queued(
    tmp_path: Path, ledger_env: dict[str, str]
) -> None:
    """An account that takes no job at all (another client holds every slot): none of our
    tasks is at the provider, so waiting in line cannot help. The refusal is retried within the
    caller's budget and then reported, nothing billed, and no task is left waiting."""
    from videogen.errors import RateLimited

    refusing = SandboxOptions(job_seconds=0.5, faults=("concurrency:0",))
    async with open_app(settings_for(tmp_path, ledger_env), sandbox_options=refusing) as app:
        with anyio.fail_after(30), pytest.raises(RateLimited) as refused:
            await app.engine.generate(t2v("nobody gets in"), wait_seconds=1)
        (task,) = app.engine.list_tasks()
        sent = submits(app)
    assert "50430" in str(refused.value) or "concurren" in str(refused.value).lower()
    assert task.status == "failed" and task.provider_task_id is None
    assert 1 <= len(sent) <= 6 and all(e.code == 50430 for e in sent)
