"""Helpers for adapter tests: a recording MockTransport, a transport that must not be used."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2

Handler = Callable[[httpx2.Request], httpx2.Response]


@dataclass
class Recorder:
    """A MockTransport handler that answers from a queue and records every request."""

    answers: list[httpx2.Response | Exception] = field(default_factory=list)
    requests: list[httpx2.Request] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def refuse_all(request: httpx2.Request) -> httpx2.Response:
    """A handler for tests that must not send anything."""
    raise AssertionError(f"an HTTP request was sent: {request.method} {request.url}")


def no_http_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(refuse_all))


# -- sandbox flows -----------------------------------------------------------------------------

PNG_640x480 = "/assets/image/640x480.png"


async def fetch(client: httpx2.AsyncClient, source: Any) -> httpx2.Response:
    """GET a DownloadSource the way the downloader does: credentials only for their own origin."""
    headers = dict(source.headers) if source.trusts(source.url) else {}
    return await client.get(source.url, headers=headers)


def is_mp4(data: bytes) -> bool:
    return len(data) > 1000 and data[4:8] == b"ftyp"


class Sandboxed:
    """A running sandbox on a manual clock, an HTTP client, and adapters pointed at it."""

    def __init__(self, sb: Any, clock: Any, client: httpx2.AsyncClient) -> None:
        self.sb = sb
        self.clock = clock
        self.client = client
        self.waits: list[float] = []

    def adapter(self, name: str, **endpoint_changes: Any) -> Any:
        from dataclasses import replace

        from videogen.providers.jenius import JeniusProvider
        from videogen.providers.tokenops import TokenOpsProvider
        from videogen.providers.volcengine import VolcengineProvider

        classes = {
            "volcengine": VolcengineProvider,
            "tokenops": TokenOpsProvider,
            "jenius": JeniusProvider,
        }
        endpoint = replace(self.sb.endpoints()[name], **endpoint_changes)
        return classes[name](endpoint, self.client, clock=self.clock)

    def asset(self, path: str) -> str:
        return str(self.sb.asset_url(path))

    async def sleep(self, seconds: float) -> None:
        """call_with_retries' sleep: the sandbox clock moves, the test does not wait."""
        import anyio

        self.waits.append(seconds)
        self.clock.advance(seconds)
        await anyio.lowlevel.checkpoint()

    async def poll_until_finished(self, adapter: Any, ref: Any, *, step: float = 0.4) -> Any:
        """Poll (retrying what is safe) until the task is finished, moving the clock between."""
        from videogen.retry import RetryPolicy, call_with_retries

        for _ in range(20):
            result = await call_with_retries(
                lambda: adapter.poll(ref),
                policy=RetryPolicy(),
                sleep=self.sleep,
                clock=self.clock,
            )
            if result.status in ("succeeded", "failed", "expired"):
                return result
            self.clock.advance(step)
        raise AssertionError("the task never finished")

    async def generate(self, name: str, **kwargs: Any) -> tuple[Any, Any, Any]:
        """intake -> inputs -> submit -> polls: (adapter, submitted, final poll)."""
        from videogen.inputs import prepare_inputs
        from videogen.intake import build_request

        adapter = self.adapter(name)
        request = build_request(provider=name, **kwargs).request
        prepared = await prepare_inputs(
            request, accepts_uploaded_images=adapter.accepts_uploaded_images
        )
        submitted = await adapter.submit(request, prepared)
        return adapter, submitted, await self.poll_until_finished(adapter, submitted.ref)

    async def fetch_video(self, adapter: Any, submitted: Any, poll: Any) -> bytes:
        source = await adapter.download_source(submitted.ref, poll)
        response = await fetch(self.client, source)
        assert response.status_code == 200, (response.status_code, response.text[:200])
        return response.content


def open_sandbox(**options: Any) -> Any:
    """``async with open_sandbox(job_seconds=1) as env:`` -> a ``Sandboxed``."""
    from contextlib import asynccontextmanager

    from videogen.sandbox import ManualClock, SandboxOptions, serve

    @asynccontextmanager
    async def opened() -> Any:
        clock = ManualClock()
        options.setdefault("job_seconds", 1.0)
        # Renders of 1080p clips take seconds on a busy machine: be patient with downloads.
        async with (
            serve(SandboxOptions(**options), clock=clock) as sb,
            httpx2.AsyncClient(timeout=90) as client,
        ):
            yield Sandboxed(sb, clock, client)

    return opened()
