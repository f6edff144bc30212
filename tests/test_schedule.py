"""The poll schedule (``videogen.schedule``): few polls early, close ones near the expected end."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from videogen.models import GenerationRequest, StatusEvent, Task
from videogen.schedule import (
    EDGE_FACTOR,
    MAX_GAP_FACTOR,
    NEAR_FACTOR,
    SLOW_POLL_SECONDS,
    Expected,
    Window,
    expect,
    next_delay,
    took,
    window,
)

INTERVAL = 5.0
HISTORY = expect([280.0, 300.0, 320.0])


def test_without_history_or_progress_polls_keep_seed_002s_grid_from_the_submit() -> None:
    """Every 5 s after the accepted submit; the early first poll (1 s) does not shift it, and a
    poll at a grid point (or a hair before it) waits for the next one."""
    assert next_delay(elapsed=1.0, interval=INTERVAL) == 4.0
    assert next_delay(elapsed=5.0, interval=INTERVAL) == INTERVAL
    assert math.isclose(next_delay(elapsed=4.999, interval=INTERVAL), 5.001)
    assert math.isclose(next_delay(elapsed=7.3, interval=INTERVAL), 2.7)
    assert next_delay(elapsed=400.0, interval=INTERVAL, expected=expect([300.0, 310.0])) == 5.0


def test_before_the_expected_end_the_gap_is_long_but_bounded() -> None:
    assert Expected(282.0, 300.0, 318.0, 3) == HISTORY  # 5th percentile, median, 95th
    assert next_delay(elapsed=1.0, interval=INTERVAL, expected=HISTORY) == MAX_GAP_FACTOR * 5
    # It never sleeps past the moment the window opens (0.95 x the 5th percentile: 267.9 s).
    delay = next_delay(elapsed=255.0, interval=INTERVAL, expected=HISTORY)
    assert math.isclose(delay, 12.9)


def test_polls_are_closest_at_the_expected_end_and_never_wider_than_the_interval_near_it() -> None:
    def delay(elapsed: float) -> float:
        return next_delay(elapsed=elapsed, interval=INTERVAL, expected=HISTORY)

    assert delay(300.0) == NEAR_FACTOR * INTERVAL == 3.0  # the median of earlier tasks
    assert math.isclose(delay(309.0), 4.0)  # halfway to the window's end
    assert math.isclose(delay(267.9), EDGE_FACTOR * INTERVAL)
    assert math.isclose(delay(318.0), EDGE_FACTOR * INTERVAL)


def test_past_the_longest_earlier_task_the_gap_grows_up_to_the_maximum() -> None:
    delay = next_delay(elapsed=338.0, interval=INTERVAL, expected=HISTORY)
    assert math.isclose(delay, EDGE_FACTOR * INTERVAL + 2.0)
    assert next_delay(elapsed=5000.0, interval=INTERVAL, expected=HISTORY) == 30.0


def test_a_provider_hint_wins_and_many_polls_slow_to_a_minute() -> None:
    assert next_delay(elapsed=1.0, interval=INTERVAL, expected=HISTORY, poll_after=2.0) == 2.0
    slow = next_delay(elapsed=300.0, interval=INTERVAL, expected=HISTORY, polls=9, max_polls=9)
    assert slow == SLOW_POLL_SECONDS


def test_provider_progress_centres_the_window_on_the_linear_estimate() -> None:
    # 25 % after 60 s: about 180 s left, plus or minus 30 % of it.
    assert window(60.0, None, 0.25) == Window(186.0, 240.0, 294.0)
    assert next_delay(elapsed=60.0, interval=INTERVAL, progress=0.25) == 30.0
    assert next_delay(elapsed=60.0, interval=INTERVAL, progress=0.01) == INTERVAL  # too early
    # History and progress together: the earlier opening wins (latency first).
    # Half done after 60 s: 60 +- 18 s left, long before the history's 267.9-318 s.
    assert window(60.0, HISTORY, 0.5) == Window(102.0, 120.0, 318.0)


def test_took_is_accepted_submit_to_ready() -> None:
    request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="p")
    events = [("submitting", 100.0), ("queued", 101.0), ("running", 150.0), ("ready", 401.0)]
    task = Task(
        id="t",
        request=request,
        status="completed",
        created_at=100.0,
        updated_at=402.0,
        history=[StatusEvent(status=s, at=at) for s, at in events],  # type: ignore[arg-type]
    )
    assert took(task) == 300.0


def simulate(job: float, expected: Expected | None, interval: float) -> tuple[int, float]:
    """(polls, latency after done) of one job under the schedule: first poll after 1 s."""
    at, polls = 1.0, 1
    while at < job:
        at += next_delay(elapsed=at, interval=interval, expected=expected)
        polls += 1
    return polls, at - job


@pytest.mark.parametrize("known", [10, 20])
def test_learned_polls_cost_at_most_half_of_a_fixed_5_s_loop_at_no_worse_latency(
    known: int,
) -> None:
    """Four kinds of job (150-540 s typical, each +-15 % log-normal), 10 or 20 earlier tasks of
    each kind known: at most 0.5x seed 002's polls (poll, sleep 5 s) at no worse median
    latency after done."""
    draw = random.Random(3)
    ours: list[tuple[int, float]] = []
    fixed: list[tuple[int, float]] = []
    for typical in (150.0, 270.0, 300.0, 540.0):
        jobs = [typical * math.exp(draw.gauss(0.0, 0.15)) for _ in range(known + 30)]
        expected = expect(jobs[:known])
        for job in jobs[known:]:
            ours.append(simulate(job, expected, INTERVAL))
            polls = math.ceil(job / INTERVAL) + 1
            fixed.append((polls, (polls - 1) * INTERVAL - job))
    ratio = statistics.mean(p for p, _ in ours) / statistics.mean(p for p, _ in fixed)
    assert ratio <= 0.5, ratio
    assert statistics.median(lat for _, lat in ours) <= statistics.median(lat for _, lat in fixed)
