"""When to poll a task next: rarely while it cannot be done yet, closely near its expected end.

Providers say nothing about when a job will end (2-10 minutes is common), so the engine learns
it: ``Expected`` summarises what earlier tasks of the same origin, mode and clip length took
from the accepted submit to ``ready`` (``Ledger.finish_times``), and a provider's own progress,
where it gives one, gives a second estimate. ``next_delay`` then spaces the polls:

- no history and no progress: seed 002's fixed schedule, a poll every ``interval`` (the
  configured ``JIMENG_VIDEO_POLL_INTERVAL``) counted from the accepted submit; the engine's
  early first poll is one more, and does not shift that grid (``on_grid``);
- before the *window* (where the task may end: from a little before the 5th percentile of the
  earlier tasks' times to their 95th) it sleeps until the window opens, but never more than
  ``MAX_GAP_FACTOR`` x ``interval`` (30 s at the default 5 s): a long job still shows life;
- inside the window the gap runs from ``NEAR_FACTOR`` x ``interval`` at the expected end (the
  earlier tasks' median: 3 s at 5 s) to ``EDGE_FACTOR`` x ``interval`` at the window's edges
  (5 s): where most tasks end, the latency after done is least;
- past the window (longer than nearly every earlier task) the gap grows by ``OVERDUE_GROWTH``
  of the overrun, up to the maximum gap.

A provider's ``poll_after`` hint wins (within ``POLL_HINT_BOUNDS``); after
``max_poll_attempts`` polls the gap is a minute; after a poll that failed even after its
retries (which honour ``Retry-After``, ``videogen.retry``) it doubles (``after_error``). The
first poll (soon after submit, so fast failures surface fast) is the engine's.

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
#: Inside the window the gap is this multiple of the interval at the expected end ...
NEAR_FACTOR: Final = 0.6
#: ... growing linearly to this one at the window's edges.
EDGE_FACTOR: Final = 1.0
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
#: ... and the window spans the time it says is left, plus or minus this fraction of it
#: (progress need not be linear in time).
PROGRESS_MARGIN: Final = 0.3


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


@dataclass(frozen=True, slots=True)
class Window:
    """Where the task may end, in seconds after the accepted submit; ``centre`` is where it
    most likely does."""

    start: float
    centre: float
    end: float


def window(elapsed: float, expected: Expected | None, progress: float | None) -> Window | None:
    """Where the task may end; None if nothing is known.

    History gives ``EARLY_MARGIN x early``, the median and ``late``. A provider's progress
    ``p`` at ``elapsed`` says about ``left = elapsed x (1 - p) / p`` is left: ``elapsed + left``
    plus or minus ``PROGRESS_MARGIN x left``. Both known: the earlier start and centre, the later
    end (latency first).
    """
    spans: list[Window] = []
    if expected is not None:
        spans.append(Window(EARLY_MARGIN * expected.early, expected.median, expected.late))
    if progress is not None and MIN_PROGRESS <= progress < 1.0:
        left = elapsed * (1.0 - progress) / progress
        margin = PROGRESS_MARGIN * left
        spans.append(Window(elapsed + left - margin, elapsed + left, elapsed + left + margin))
    if not spans:
        return None
    return Window(
        min(w.start for w in spans), min(w.centre for w in spans), max(w.end for w in spans)
    )


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
    """Seconds from this poll to the next one, for a task accepted ``elapsed`` s before this
    poll started and still unfinished after ``polls`` polls (see the module docstring)."""
    if poll_after is not None:
        low, high = POLL_HINT_BOUNDS
        delay = min(max(poll_after, low), high)
    else:
        delay = _learned(elapsed, interval, window(elapsed, expected, progress))
    if max_polls is not None and polls >= max_polls:
        delay = max(delay, SLOW_POLL_SECONDS)
    return delay


#: A grid point closer than this fraction of the interval is skipped for the one after it.
GRID_SLACK: Final = 0.1


def on_grid(elapsed: float, interval: float) -> float:
    """Seconds to the next multiple of ``interval`` after ``elapsed`` (the fixed schedule's
    grid), skipping one closer than ``GRID_SLACK`` x ``interval``: a poll made at a grid point
    (or a hair before it, clocks being clocks) waits for the next one."""
    gap = interval - elapsed % interval
    return gap + interval if gap < GRID_SLACK * interval else gap


def _learned(elapsed: float, interval: float, span: Window | None) -> float:
    if span is None:
        return on_grid(elapsed, interval)
    near, edge = NEAR_FACTOR * interval, EDGE_FACTOR * interval
    longest = max(MAX_GAP_FACTOR * interval, edge)
    if elapsed < span.start:
        return min(max(span.start - elapsed, near), longest)
    if elapsed <= span.end:
        side = span.centre - span.start if elapsed < span.centre else span.end - span.centre
        far = min(1.0, abs(elapsed - span.centre) / side) if side > 0 else 0.0
        return near + (edge - near) * far
    return min(edge + OVERDUE_GROWTH * (elapsed - span.end), longest)


def after_error(previous: float, interval: float) -> float:
    """The gap after a poll that failed even after its retries (unavailable, rate limited):
    twice the last one (at least the interval), up to ``SLOW_POLL_SECONDS``."""
    return min(SLOW_POLL_SECONDS, max(interval, previous) * 2)


def same_clip(durations: Sequence[int], clip_of: int) -> list[int]:
    """The requested durations rendered as the same provider clip as ``clip_of``."""
    clip = provider_clip_seconds(clip_of)
    return [d for d in durations if provider_clip_seconds(d) == clip]
