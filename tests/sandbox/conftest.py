"""Fixtures for the sandbox tests: a running sandbox on a manual clock and small clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from sandbox_helpers import JOB_SECONDS, Volc

from videogen.sandbox import ManualClock, RunningSandbox, SandboxOptions, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sb(clock: ManualClock) -> AsyncIterator[RunningSandbox]:
    async with serve(SandboxOptions(job_seconds=JOB_SECONDS), clock=clock) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=60) as client:
        yield client


@pytest.fixture
def volc(sb: RunningSandbox, http: httpx2.AsyncClient, clock: ManualClock) -> Volc:
    return Volc(sb, http, clock)
