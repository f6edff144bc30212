"""Polls that learn: the engine spaces its polls by what earlier tasks of the same kind took."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from videogen.config import Settings
from videogen.engine import Engine, origin_of
from videogen.ledger import Ledger
from videogen.models import GenerationRequest, StatusEvent, Task, TaskStatus
from videogen.providers.base import PollResult, TaskRef

from .conftest import VIDEO_URL, ScriptedProvider, make_settings, running_engine, t2v

pytestmark = pytest.mark.anyio

JOB_SECONDS = 1.0
INTERVAL = 0.05


class TimedProvider(ScriptedProvider):
    """A provider whose jobs take ``JOB_SECONDS`` of wall time from the submit; with
    ``progress`` it reports the fraction done (linear in time)."""

    def __init__(self, *, progress: bool = False) -> None:
        super().__init__()
        self.submitted: dict[str, float] = {}
        self.progress = progress

    async def submit(self, request, inputs):  # type: ignore[no-untyped-def]
        submitted = await super().submit(request, inputs)
        self.submitted[submitted.ref.provider_task_id] = time.time()
        return submitted

    async def poll(self, ref: TaskRef) -> PollResult:
        self.polls += 1
        elapsed = time.time() - self.submitted[ref.provider_task_id]
        if elapsed >= JOB_SECONDS:
            return PollResult(status="succeeded", raw_status="done", video_url=VIDEO_URL)
        done = elapsed / JOB_SECONDS if self.progress else None
        return PollResult(status="running", raw_status="generating", progress=done)


def finished(
    settings: Settings,
    took: float,
    *,
    request: GenerationRequest | None = None,
    origin: str | None = None,
    status: TaskStatus = "completed",
) -> Task:
    request = request or t2v(f"earlier {took}")
    start = time.time() - 3600
    events = [("submitting", start), ("queued", start + 0.2), ("ready", start + 0.2 + took)]
    return Task(
        id=f"earlier-{took}-{request.mode}-{request.duration}-{status}",
        request=request,
        status=status,
        created_at=start,
        updated_at=start + took + 1,
        history=[StatusEvent(status=s, at=at) for s, at in events],  # type: ignore[arg-type]
        origin=origin or origin_of(settings, "volcengine")[0],
        dedupe_key=request.dedupe_key(),
    )


async def polls_and_latency(
    settings: Settings, *, progress: bool = False
) -> tuple[int, float, list[float]]:
    """One task through the engine: (polls, seconds from the job's end to ``ready``, the
    next-poll estimates seen while it ran)."""
    provider = TimedProvider(progress=progress)
    estimates: list[float] = []
    async with running_engine(settings, provider) as engine:
        task = await engine.submit(t2v("the one measured"))
        with anyio.move_on_after(5):
            while engine.get(task.id).status in ("queued", "running"):
                estimate = engine.next_poll_in(task.id)
                if estimate is not None:
                    estimates.append(estimate)
                await anyio.sleep(0.05)
        done = engine.get(task.id)
    assert task.provider_task_id is not None
    ready = next(e.at for e in done.history if e.status == "ready")
    return (
        provider.polls,
        ready - provider.submitted[task.provider_task_id] - JOB_SECONDS,
        estimates,
    )


def test_finish_times_count_only_finished_tasks_of_the_same_origin_mode_and_clip(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    ledger = Ledger.in_dir(settings.data_dir)
    origin = origin_of(settings, "volcengine")[0]
    for took in (10.0, 11.0, 12.0):
        ledger.insert(finished(settings, took))
    ledger.insert(finished(settings, 13.0, request=t2v("four seconds", duration=4)))
    ledger.insert(finished(settings, 50.0, request=t2v("ten seconds", duration=10)))
    ledger.insert(
        finished(
            settings,
            60.0,
            request=GenerationRequest(provider="volcengine", mode="t2v_1080p", prompt="x"),
        )
    )
    ledger.insert(finished(settings, 70.0, origin="another-account"))
    ledger.insert(finished(settings, 80.0, status="failed"))
    times = ledger.finish_times(origin, "t2v_720p", [4, 5], limit=20)
    assert sorted(round(t, 3) for t in times) == [10.0, 11.0, 12.0, 13.0]
    assert len(ledger.finish_times(origin, "t2v_720p", [4, 5], limit=2)) == 2
    assert [round(t, 3) for t in ledger.finish_times(origin, "t2v_720p", [10], limit=9)] == [50.0]


async def test_a_task_like_earlier_ones_costs_half_the_polls_at_no_worse_latency(
    tmp_path: Path,
) -> None:
    """Without history: the fixed interval (about 20 polls for a 1 s job at 0.05 s). With three
    earlier tasks of 0.95-1.05 s: long gaps first (at most 6 x the interval), close ones
    (0.8 x) from just before the expected end; and the engine says when it polls next."""
    fixed_polls, fixed_latency, _ = await polls_and_latency(make_settings(tmp_path / "cold"))
    settings = make_settings(tmp_path / "warm")
    ledger = Ledger.in_dir(settings.data_dir)
    for took in (0.95, 1.0, 1.05):
        ledger.insert(finished(settings, took))
    ledger.close()
    polls, latency, estimates = await polls_and_latency(settings)
    assert fixed_polls >= 15, fixed_polls
    assert polls <= fixed_polls / 2, (polls, fixed_polls)
    assert latency <= max(fixed_latency, INTERVAL) + 0.1, (latency, fixed_latency)
    assert estimates and max(estimates) <= 6 * INTERVAL + 1e-6
    assert max(estimates) > INTERVAL  # a long gap early on, not the fixed interval


async def test_the_providers_progress_spaces_the_polls_without_any_history(
    tmp_path: Path,
) -> None:
    fixed_polls, fixed_latency, _ = await polls_and_latency(make_settings(tmp_path / "plain"))
    polls, latency, _ = await polls_and_latency(make_settings(tmp_path / "p"), progress=True)
    assert polls <= fixed_polls / 2, (polls, fixed_polls)
    assert latency <= max(fixed_latency, INTERVAL) + 0.1, (latency, fixed_latency)


def test_the_engine_exposes_no_estimate_for_a_task_it_does_not_poll(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = Engine(
        settings,
        Ledger.in_dir(settings.data_dir),
        providers=lambda name: ScriptedProvider(),  # type: ignore[arg-type,return-value]
        clients=lambda name: None,  # type: ignore[arg-type,return-value]
    )
    assert engine.next_poll_in("no-such-task") is None
