"""call_with_retries retries only what is safe, with capped jittered backoff and hints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from videogen.errors import ContentRejected, InputError, ProviderUnavailable, RateLimited
from videogen.retry import RETRY_AFTER_CAP, RetryPolicy, call_with_retries, honouring, retry_after


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: str = "ok") -> Callable[[], Awaitable[str]]:
    calls = iter(errors)

    async def call() -> str:
        error = next(calls, None)
        if error is not None:
            raise error
        return result

    return call


def unavailable() -> ProviderUnavailable:
    return ProviderUnavailable("down", provider="volcengine")


def limited(retry_after: float | None) -> RateLimited:
    return RateLimited("slow down", provider="volcengine", retry_after=retry_after)


@pytest.mark.anyio
async def test_unavailable_and_rate_limited_are_retried_until_success() -> None:
    time = FakeTime()
    call = failing([unavailable(), limited(None), unavailable()])
    result = await call_with_retries(call, policy=RetryPolicy(), sleep=time.sleep, clock=time.clock)
    assert result == "ok"
    assert len(time.sleeps) == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [InputError("bad"), ContentRejected("no", provider="volcengine"), ValueError("bug")],
)
async def test_other_errors_are_raised_at_once(error: Exception) -> None:
    time = FakeTime()
    with pytest.raises(type(error)):
        await call_with_retries(failing([error]), policy=RetryPolicy(), sleep=time.sleep)
    assert time.sleeps == []


@pytest.mark.anyio
async def test_the_last_error_is_raised_when_attempts_run_out() -> None:
    time = FakeTime()
    errors: list[BaseException] = [unavailable() for _ in range(3)]
    with pytest.raises(ProviderUnavailable):
        await call_with_retries(failing(errors), policy=RetryPolicy(attempts=3), sleep=time.sleep)
    assert len(time.sleeps) == 2


@pytest.mark.anyio
async def test_waits_grow_exponentially_within_jitter_and_stop_at_the_cap() -> None:
    time = FakeTime()
    policy = RetryPolicy(attempts=8, wait_initial=1.0, wait_max=8.0)
    errors: list[BaseException] = [unavailable() for _ in range(7)]
    await call_with_retries(failing(errors), policy=policy, sleep=time.sleep, clock=time.clock)
    for attempt, wait in enumerate(time.sleeps, 1):
        full = min(8.0, 2.0 ** (attempt - 1))
        assert full / 2 <= wait <= full
    assert max(time.sleeps) <= 8.0


@pytest.mark.anyio
async def test_retry_after_is_honoured_even_above_the_backoff() -> None:
    time = FakeTime()
    policy = RetryPolicy(wait_initial=0.1, wait_max=1.0)
    await call_with_retries(failing([limited(7.0)]), policy=policy, sleep=time.sleep)
    assert time.sleeps == [7.0]


@pytest.mark.anyio
async def test_a_wait_that_would_pass_the_deadline_is_not_started() -> None:
    time = FakeTime()
    policy = RetryPolicy(deadline=5.0)
    with pytest.raises(RateLimited):
        await call_with_retries(
            failing([limited(2.0), limited(4.0)]), policy=policy, sleep=time.sleep, clock=time.clock
        )
    assert time.sleeps == [2.0]


@pytest.mark.anyio
async def test_on_retry_hears_each_error_and_its_wait() -> None:
    time = FakeTime()
    heard: list[tuple[str, float]] = []
    first = limited(3.0)
    await call_with_retries(
        failing([first]),
        policy=RetryPolicy(),
        sleep=time.sleep,
        on_retry=lambda error, wait: heard.append((type(error).__name__, wait)),
    )
    assert heard == [("RateLimited", 3.0)]


@pytest.mark.anyio
async def test_the_default_sleep_really_waits_briefly() -> None:
    policy = RetryPolicy(wait_initial=0.01, wait_max=0.01)
    assert await call_with_retries(failing([unavailable()]), policy=policy) == "ok"


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    assert retry_after({"retry-after": "7"}) == 7.0
    assert retry_after({"retry-after": "-3"}) == 0.0
    assert retry_after({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, clock=40.0) == 60.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_a_hint_raises_a_wait_but_never_past_the_one_cap() -> None:
    assert honouring(2.0, None) == 2.0
    assert honouring(2.0, 1.0) == 2.0
    assert honouring(2.0, 9.0) == 9.0
    assert honouring(2.0, 86_400.0) == RETRY_AFTER_CAP
