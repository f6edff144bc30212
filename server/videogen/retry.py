"""Retrying what is safe to repeat: capped, jittered exponential backoff that honours hints.

Only ``ProviderUnavailable`` and ``RateLimited`` are retried; every other error is re-raised at
once. The caller decides what is safe to repeat: polls, status checks, detection and
download-source lookups are; a submit is not (it is billed) unless the adapter proved nothing
was sent (``ProviderUnavailable.sent is False``) — that check is the caller's, not this module's.

Waits: attempt *n* (1-based) waits about ``wait_initial * 2 ** (n - 1)``, capped at
``wait_max``, jittered into ``[half, full]`` of that so many clients do not retry in step. A
``RateLimited.retry_after`` hint raises the wait to at least the hint. With a ``deadline``
(seconds from the first call) a wait that would end past it is not started: the last error is
raised instead, so a caller's time budget is never overrun by sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final, TypeVar

import anyio

from videogen.errors import ProviderUnavailable, RateLimited

T = TypeVar("T")

#: A provider's ``Retry-After`` above this is treated as this: a typo or a hostile value must
#: not park a task for a day when there is no deadline to stop it.
RETRY_AFTER_CAP: Final = 600.0

RETRYABLE: Final = (ProviderUnavailable, RateLimited)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    ``attempts`` counts calls, not retries (1 means no retry). ``wait_initial`` and ``wait_max``
    are seconds. ``deadline`` is a budget in seconds measured from the first call, or None.
    """

    attempts: int = 6
    wait_initial: float = 0.5
    wait_max: float = 30.0
    deadline: float | None = None

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The jittered wait after failed attempt ``attempt`` (1-based), before any hint."""
        full = min(self.wait_max, self.wait_initial * 2.0 ** (attempt - 1))
        jitter: float = (rng or random).uniform(0, full / 2)
        return full / 2 + jitter


def retry_after(headers: Mapping[str, str], clock: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if clock is None else clock))


def honouring(wait: float, hint: float | None) -> float:
    """``wait`` raised to a ``Retry-After`` hint (capped at ``RETRY_AFTER_CAP``): the one rule
    every retry loop (calls here, the download's resumes) applies to a hint."""
    return wait if hint is None else max(wait, min(hint, RETRY_AFTER_CAP))


def wait_for(error: BaseException, attempt: int, policy: RetryPolicy) -> float:
    """Seconds to wait after ``error`` on ``attempt``: the backoff, raised to any Retry-After."""
    hint = error.retry_after if isinstance(error, RateLimited) else None
    return honouring(policy.backoff(attempt), hint)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    on_retry: Callable[[BaseException, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Await ``call()`` until it succeeds, retrying ``ProviderUnavailable`` and ``RateLimited``.

    Raises the last retryable error when attempts or the deadline run out, and any other error
    at once. ``on_retry(error, wait_seconds)`` is told before each wait. ``sleep`` and ``clock``
    are injectable so tests neither sleep nor depend on wall time.
    """
    started = clock()
    attempt = 1
    while True:
        try:
            return await call()
        except RETRYABLE as error:
            if attempt >= policy.attempts:
                raise
            wait = wait_for(error, attempt, policy)
            if policy.deadline is not None and clock() - started + wait > policy.deadline:
                raise
            if on_retry is not None:
                on_retry(error, wait)
            await sleep(wait)
            attempt += 1
