"""Spending limits (issue 20): checked before anything is sent, in the transaction that records
the task, across processes; reset at the UTC day/month boundary; nothing counted for refused or
deduplicated requests; every result says what was used."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from videogen.config import Settings
from videogen.errors import ConfigError, SpendingLimitReached, SubmitUncertain
from videogen.ledger import open_ledger
from videogen.providers.base import PollResult
from videogen.report import render_markdown, result_of
from videogen.spending import Limit, Policy, parse_prices

from .conftest import ScriptedProvider, make_settings, running_engine, t2v
from .processes import submit_at_once
from .test_engine_submit import refused, sandbox_submits

pytestmark = pytest.mark.anyio

#: 2026-12-03 22:30 UTC: an hour and a half before the day's limits reset.
LATE: float = datetime(2026, 12, 3, 22, 30, tzinfo=UTC).timestamp()


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limited(tmp_path: Path, *limits: Limit, prices: str | None = None) -> Settings:
    policy = Policy(limits, None if prices is None else parse_prices(prices))
    return make_settings(tmp_path, spending=policy)


def waiting() -> ScriptedProvider:
    """A provider whose tasks stay queued (nothing is downloaded while a test runs)."""
    return ScriptedProvider(script=[PollResult(status="queued", raw_status="in_queue")])


def videos_per_day(n: float, *, per_owner: bool = False) -> Limit:
    return Limit("videos", "day", per_owner, n)


def test_twenty_requests_from_two_processes_at_once_never_pass_the_daily_video_limit(
    tmp_path: Path, ledger_backend: str, request: pytest.FixtureRequest
) -> None:
    """Two apps on one ledger (a data dir, or a database), each sending 10 different requests
    at the same moment, with a limit of 7 videos a day: exactly 7 submits reach the provider,
    13 are refused."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results: Any = context.Queue()
    env = {"VIDEOGEN_LIMIT_VIDEOS_PER_DAY": "7"}
    if ledger_backend == "postgres":
        env["VIDEOGEN_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    home = {"HOME": str(tmp_path), "VIDEOGEN_DATA_DIR": str(tmp_path / "data")}
    open_ledger(Settings.from_env({**home, **env})).close()  # created (migrated) before the race
    workers = [
        context.Process(target=submit_at_once, args=(str(tmp_path), env, 10, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        answers = [a for _ in workers for a in results.get(timeout=60)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    assert answers.count("spending_limit") == 13
    assert len([a for a in answers if a.startswith("vg_")]) == 7
    assert sandbox_submits(tmp_path / "data") == 7


async def test_a_refusal_names_the_limit_the_spend_and_the_reset_and_sends_nothing(
    tmp_path: Path,
) -> None:
    provider = waiting()
    settings = limited(tmp_path, videos_per_day(2))
    async with running_engine(settings, provider, clock=Clock(LATE)) as engine:
        await engine.submit(t2v("one"))
        await engine.submit(t2v("two"))
        with pytest.raises(SpendingLimitReached) as caught:
            await engine.submit(t2v("three"))
        recorded = engine.list_tasks()
    message = caught.value.message
    assert "VIDEOGEN_LIMIT_VIDEOS_PER_DAY=2" in message
    assert "2 videos already billed today" in message
    assert "resets at 2026-12-04 00:00 UTC (in 1 h 30 min)" in message
    assert "nothing was billed" in message
    assert caught.value.exit_code == 2
    assert provider.submits == 2
    assert len(recorded) == 2  # the refused request left no task


async def test_the_daily_limit_resets_at_midnight_utc_and_the_monthly_one_at_the_month_end(
    tmp_path: Path,
) -> None:
    clock = Clock(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC).timestamp())
    settings = limited(tmp_path, videos_per_day(1), Limit("videos", "month", False, 2))
    provider = waiting()
    async with running_engine(settings, provider, clock=clock) as engine:
        await engine.submit(t2v("november"))
        with pytest.raises(SpendingLimitReached, match="VIDEOGEN_LIMIT_VIDEOS_PER_DAY"):
            await engine.submit(t2v("still november"))
        clock.now = datetime(2026, 12, 1, tzinfo=UTC).timestamp()  # a new day and month
        await engine.submit(t2v("december 1st"))
        clock.now = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
        await engine.submit(t2v("december 2nd"))
        clock.now = datetime(2026, 12, 3, tzinfo=UTC).timestamp()
        with pytest.raises(SpendingLimitReached) as caught:
            await engine.submit(t2v("december 3rd"))
    assert "VIDEOGEN_LIMIT_VIDEOS_PER_MONTH=2" in caught.value.message
    assert "2026-12-31" not in caught.value.message
    assert "resets at 2027-01-01 00:00 UTC (in 29 d)" in caught.value.message
    assert provider.submits == 3


async def test_duplicates_and_requests_the_provider_refused_count_nothing(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        script=[PollResult(status="queued", raw_status="in_queue")],
        submit_error=refused(0.0),
        submit_errors_first=1,
    )
    settings = limited(tmp_path, videos_per_day(2))
    async with running_engine(settings, provider, clock=Clock(LATE)) as engine:
        engine._retry = engine._retry.__class__(attempts=1)  # a refusal is final at once
        with pytest.raises(Exception, match="nothing was billed"):
            await engine.submit(t2v("refused by the provider"))
        first = await engine.submit(t2v("kept"))
        again = await engine.submit(t2v("kept"))  # a duplicate: the same task, no new bill
        second = await engine.submit(t2v("another"))
        with pytest.raises(SpendingLimitReached, match="2 videos already billed"):
            await engine.submit(t2v("one too many"))
    assert again.id == first.id
    assert second.usage is not None and second.usage.videos_today == 2
    assert provider.submits == 3  # the refused one, "kept", "another"


async def test_a_request_forced_new_is_checked_and_counted_like_any_other(tmp_path: Path) -> None:
    provider = waiting()
    settings = limited(tmp_path, videos_per_day(2))
    async with running_engine(settings, provider, clock=Clock(LATE)) as engine:
        first = await engine.submit(t2v("again"))
        second = await engine.submit(t2v("again"), new=True)
        with pytest.raises(SpendingLimitReached, match="2 videos already billed"):
            await engine.submit(t2v("again"), new=True)
    assert second.id != first.id
    assert provider.submits == 2


async def test_an_unknown_outcome_counts_as_billed(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        submit_error=SubmitUncertain("The connection dropped."),  # type: ignore[arg-type]
        submit_errors_first=1,
    )
    settings = limited(tmp_path, videos_per_day(1))
    async with running_engine(settings, provider, clock=Clock(LATE)) as engine:
        task = await engine.submit(t2v("maybe billed"))
        with pytest.raises(SpendingLimitReached):
            await engine.submit(t2v("next"))
    assert task.status == "unknown"
    assert provider.submits == 1


async def test_seconds_count_the_provider_clip_and_each_owner_has_its_own_limit(
    tmp_path: Path,
) -> None:
    settings = limited(tmp_path, Limit("seconds", "day", True, 15))
    provider = waiting()
    async with running_engine(settings, provider, clock=Clock(LATE)) as engine:
        await engine.submit(t2v("ten", duration=8), owner="alice")  # an 8 s request is a 10 s clip
        await engine.submit(t2v("five"), owner="alice")
        with pytest.raises(SpendingLimitReached) as caught:
            await engine.submit(t2v("five more"), owner="alice")
        bob = await engine.submit(t2v("five more"), owner="bob")
    assert "VIDEOGEN_LIMIT_OWNER_SECONDS_PER_DAY=15" in caught.value.message
    assert "for this token; 15 s already billed today" in caught.value.message
    assert bob.usage is not None and bob.usage.seconds_today == 5
    assert provider.submits == 3


async def test_a_spend_limit_uses_the_prices_and_refuses_an_unpriced_mode(tmp_path: Path) -> None:
    settings = limited(
        tmp_path, Limit("spend", "month", False, 1.0), prices="volcengine:t2v_720p=0.07"
    )
    provider = waiting()
    async with running_engine(settings, provider, clock=Clock(LATE)) as engine:
        first = await engine.submit(t2v("a"))  # 5 s x 0.07 = 0.35
        await engine.submit(t2v("b"))  # 0.70
        with pytest.raises(SpendingLimitReached, match=r"0\.7 spend already billed"):
            await engine.submit(t2v("c"))
        with pytest.raises(SpendingLimitReached, match="No price for volcengine:t2v_1080p"):
            await engine.submit(t2v("d").model_copy(update={"mode": "t2v_1080p"}))
    assert first.usage is not None and first.usage.spend_today == 0.35
    assert provider.submits == 2


async def test_every_result_says_what_this_generation_used(tmp_path: Path) -> None:
    settings = limited(tmp_path, videos_per_day(20), Limit("seconds", "day", False, 300))
    async with running_engine(settings, waiting(), clock=Clock(LATE)) as engine:
        await engine.submit(t2v("one"))
        await engine.submit(t2v("two"))
        task = await engine.submit(t2v("three"))
        stored = engine.get(task.id)
    result = result_of(task, notice=None)
    assert result.videos_today == 3 and result.seconds_today == 15
    assert task.usage is not None and task.usage.limits[0].resets_at == LATE + 90 * 60
    assert (
        "- Usage: today: 3 videos, 15 s; limits: 3 of 20 videos today, 15 of 300 s today"
        in render_markdown(result)
    )
    assert '"usage"' in result.model_dump_json()
    assert stored.usage == task.usage  # kept in the ledger: `check` says it again


async def test_without_limits_or_prices_results_carry_no_usage_line(tmp_path: Path) -> None:
    async with running_engine(make_settings(tmp_path), waiting()) as engine:
        task = await engine.submit(t2v())
    assert task.usage is None
    assert "Usage" not in render_markdown(result_of(task, notice=None))


def test_limits_and_prices_are_read_from_the_environment_and_bad_values_stop_start_up() -> None:
    env = {"HOME": "/tmp", "VIDEOGEN_LIMIT_VIDEOS_PER_DAY": "20",
           "VIDEOGEN_LIMIT_OWNER_SECONDS_PER_MONTH": "600",
           "VIDEOGEN_PRICES": "volcengine:t2v_720p=0.07, tokenops:*=0.1"}  # fmt: skip
    policy = Settings.from_env(env).spending
    assert {lim.variable: lim.value for lim in policy.limits} == {
        "VIDEOGEN_LIMIT_VIDEOS_PER_DAY": 20,
        "VIDEOGEN_LIMIT_OWNER_SECONDS_PER_MONTH": 600,
    }
    assert policy.prices is not None and policy.prices.per_second("tokenops", "omnihuman") == 0.1
    assert Settings.from_env({"HOME": "/tmp"}).spending == Policy()
    with pytest.raises(ConfigError, match="VIDEOGEN_LIMIT_VIDEOS_PER_DAY='lots'"):
        Settings.from_env({"HOME": "/tmp", "VIDEOGEN_LIMIT_VIDEOS_PER_DAY": "lots"})
    with pytest.raises(ConfigError, match="VIDEOGEN_PRICES: 'volcengine=1'"):
        Settings.from_env({"HOME": "/tmp", "VIDEOGEN_PRICES": "volcengine=1"})
    with pytest.raises(ConfigError, match="VIDEOGEN_LIMIT_SPEND_PER_DAY is set but"):
        Settings.from_env({"HOME": "/tmp", "VIDEOGEN_LIMIT_SPEND_PER_DAY": "5"})
