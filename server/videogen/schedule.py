"""When to poll a task next: rarely while it cannot be done yet, closely near its expected end.

Providers say nothing about when a job will end (2-10 minutes is common), so the engine learns
it: ``Expected`` summarises what earlier tasks of the same origin, mode and clip length took
from the accepted submit to ``ready`` (``Ledger.finish_times``), and a provider's own progress,
where it gives one, gives a second estimate. ``next_delay`` then spaces the polls:

- no history and no progress: today's fixed schedule (``interval``, the configured
  ``JIMENG_VIDEO_POLL_INTERVAL``);
- before the *window* (where the task may end: from a little before the 5th percentile of the
  earlier tasks' times to their 95th) it sleeps until the window opens, but never more than
  ``MAX_GAP_FACTOR`` x ``interval`` (30 s at the default 5 s): a long job still shows life;
- inside the window it polls every ``CLOSE_FACTOR`` x ``interval`` (4 s at 5 s): the latency
  after done is at most that;
- past the window (longer than nearly every earlier task) the gap grows by ``OVERDUE_GROWTH`` of the
  overrun, up to the maximum gap.

A provider's ``poll_after`` hint wins (within ``POLL_HINT_BOUNDS``); after
``max_poll_attempts`` polls, and after a failed poll, the engine slows down (``after_error``).
The first poll (soon after submit, so fast failures surface fast) is the engine's.

Everything here is pure: no clock, no I/O. The engine keeps the answer per task
(``Engine.next_poll_in``) so other code can tell clients when to ask again.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from videogen.catalog import provider_clip_seconds
from videogen.models import Task

#: After this many polls without an end the watcher slows to one poll a minute.
SLOW_POLL_SECONDS: Final = 60.0
#: A provider's poll hint is honoured within these bounds.
POLL_HINT_BOUNDS: Final = (0.05, 600.0)
#: The longest gap between polls, as a multiple of the configured interval (30 s at 5 s).
MAX_GAP_FACTOR: Final = 6.0
#: The gap inside the window where the task may end, as a multiple of the interval.
CLOSE_FACTOR: Final = 0.8
#: The window spans these percentiles of the earlier tasks' times ...
WINDOW_PERCENTILES: Final = (5, 95)
#: ... and opens this much before its first one ...
EARLY_MARGIN: Final = 0.95
#: ... past its end the gap grows by this fraction of the overrun.
OVERDUE_GROWTH: Final = 0.1
#: Fewer earlier tasks than this is no history: the fixed schedule applies.
MIN_HISTORY: Final = 3
#: How many of the latest finished tasks of a kind are taken into account.
HISTORY_KEPT: Final = 20
#: A provider's progress is used from this fraction on (earlier it says too little) ...
MIN_PROGRESS: Final = 0.05
#: ... and the window opens at this fraction of the time it says is left (progress need not
#: be linear in time, so it is taken with a margin).
PROGRESS_MARGIN: Final = 0.7


@dataclass(frozen=True, slots=True)
class Expected:
    """What earlier tasks of one kind took from the accepted submit to ``ready`` (seconds):
    the ``WINDOW_PERCENTILES`` (``early``, ``late``) and the median."""

    early: float
    median: float
    late: float
    samples: int


def expect(durations: Iterable[float]) -> Expected | None:
    """A summary of earlier tasks' durations; None when there are fewer than ``MIN_HISTORY``."""
    kept = sorted(d for d in durations if d > 0)
    if len(kept) < MIN_HISTORY:
        return None
    cuts = statistics.quantiles(kept, n=100, method="inclusive")
    low, high = WINDOW_PERCENTILES
    return Expected(cuts[low - 1], statistics.median(kept), cuts[high - 1], len(kept))


def accepted_at(task: Task) -> float:
    """When the provider accepted the task (its first ``queued``), else when it was created."""
    return next((e.at for e in task.history if e.status == "queued"), task.created_at)


def took(task: Task) -> float | None:
    """Seconds from the accepted submit to ``ready``, for a task that got there."""
    ready = next((e.at for e in task.history if e.status == "ready"), None)
    return None if ready is None else ready - accepted_at(task)


def window(
    elapsed: float, expected: Expected | None, progress: float | None
) -> tuple[float, float] | None:
    """Where (seconds after the accepted submit) the task may end; None if nothing is known.

    History gives ``[EARLY_MARGIN x early, late]``. A provider's progress ``p`` at
    ``elapsed`` says about ``elapsed x (1 - p) / p`` is left; the window then opens no later than
    ``PROGRESS_MARGIN`` of that from now, and closes no earlier than the linear estimate.
    """
    spans: list[tuple[float, float]] = []
    if expected is not None:
        spans.append((EARLY_MARGIN * expected.early, expected.late))
    if progress is not None and MIN_PROGRESS <= progress < 1.0:
        left = elapsed * (1.0 - progress) / progress
        spans.append((elapsed + PROGRESS_MARGIN * left, elapsed + left))
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


def next_delay(
    *,
    elapsed: float,
    interval: float,
    expected: Expected | None = None,
    progress: float | None = None,
    poll_after: float | None = None,
    polls: int = 0,
    max_polls: int | None = None,
) -> float:
    """Seconds from this poll to the next one, for a task accepted ``elapsed`` s ago and still
    unfinished after ``polls`` polls (see the module docstring)."""
    if poll_after is not None:
        low, high = POLL_HINT_BOUNDS
        delay = min(max(poll_after, low), high)
    else:
        delay = _learned(elapsed, interval, window(elapsed, expected, progress))
    if max_polls is not None and polls >= max_polls:
        delay = max(delay, SLOW_POLL_SECONDS)
    return delay


def _learned(elapsed: float, interval: float, span: tuple[float, float] | None) -> float:
    if span is None:
        return interval
    start, end = span
    close = CLOSE_FACTOR * interval
    longest = max(MAX_GAP_FACTOR * interval, close)
    if elapsed < start:
        return min(max(start - elapsed, close), longest)
    if elapsed <= end:
        return close
    return min(close + OVERDUE_GROWTH * (elapsed - end), longest)


def after_error(previous: float, interval: float) -> float:
    """The gap after a poll that failed even after its retries (unavailable, rate limited):
    twice the last one (at least the interval), up to ``SLOW_POLL_SECONDS``."""
    return min(SLOW_POLL_SECONDS, max(interval, previous) * 2)


def same_clip(durations: Sequence[int], clip_of: int) -> list[int]:
    """The requested durations rendered as the same provider clip as ``clip_of``."""
    clip = provider_clip_seconds(clip_of)
    return [d for d in durations if provider_clip_seconds(d) == clip]
