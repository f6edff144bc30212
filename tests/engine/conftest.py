"""Fixtures for the engine tests: settings in a temp dir, and a scripted in-memory provider.

The scripted provider is a seam for the engine's own logic (who polls when, what is recorded);
the end-to-end behaviour is tested against the sandbox over real HTTP in test_engine_sandbox.py.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
import pytest

from videogen.catalog import MODES, Mode
from videogen.config import ProviderEndpoint, Settings
from videogen.engine import Conform, Engine
from videogen.errors import ProviderError, VideogenError
from videogen.ledger import Ledger
from videogen.models import GenerationRequest
from videogen.providers.base import (
    DownloadSource,
    PollResult,
    PreparedImage,
    PreparedInputs,
    RecognitionPoll,
    SubjectDetection,
    Submitted,
    TaskRef,
)

VIDEO_URL = "https://cdn.example/video.mp4"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    endpoint = ProviderEndpoint(base_url="https://provider.example", api_key="test-not-a-key")
    values: dict[str, object] = {
        "volcengine": ProviderEndpoint(
            base_url="https://provider.example", access_key="ak-test", secret_key="sk-test"
        ),
        "tokenops": endpoint,
        "jenius": endpoint,
        "provider": "volcengine",
        "sandbox": False,
        "poll_interval": 0.05,
        "output_dir": tmp_path / "out",
        "data_dir": tmp_path / "data",
        "dedupe_seconds": 600.0,
        "request_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def t2v(prompt: str = "a paper boat on a pond", **fields: object) -> GenerationRequest:
    return GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=prompt, **fields)  # type: ignore[arg-type]


Step = PollResult | VideogenError


@dataclass
class ScriptedProvider:
    """Answers polls from a script (the last step repeats); counts every call."""

    script: list[Step] = field(
        default_factory=lambda: [
            PollResult(status="queued", raw_status="in_queue"),
            PollResult(status="running", raw_status="generating", progress=0.5),
            PollResult(status="succeeded", raw_status="done", video_url=VIDEO_URL),
        ]
    )
    submit_error: ProviderError | None = None
    submit_errors_first: int = 0
    name: str = "volcengine"
    modes: frozenset[Mode] = frozenset(MODES)
    accepts_uploaded_images: bool = True
    submits: int = 0
    polls: int = 0
    polling_now: int = 0
    max_parallel_polls: int = 0
    steps: dict[str, int] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def submit(self, request: GenerationRequest, inputs: PreparedInputs) -> Submitted:
        self.submits += 1
        if self.submit_error is not None and self.submits <= self.submit_errors_first:
            raise self.submit_error
        provider_id = f"p{next(self.ids)}"
        return Submitted(TaskRef(provider_id, "jimeng_t2v_v30"), request_id="req-submit")

    async def poll(self, ref: TaskRef) -> PollResult:
        self.polls += 1
        self.polling_now += 1
        self.max_parallel_polls = max(self.max_parallel_polls, self.polling_now)
        try:
            await anyio.sleep(0.01)
            index = self.steps.get(ref.provider_task_id, 0)
            self.steps[ref.provider_task_id] = index + 1
            step = self.script[min(index, len(self.script) - 1)]
        finally:
            self.polling_now -= 1
        if isinstance(step, VideogenError):
            raise step
        return step

    async def download_source(self, ref: TaskRef, poll: PollResult) -> DownloadSource:
        assert poll.video_url is not None
        return DownloadSource(url=poll.video_url)

    async def cancel(self, ref: TaskRef) -> None:
        raise NotImplementedError

    async def detect_subjects(self, image: PreparedImage) -> SubjectDetection:
        raise NotImplementedError

    async def submit_recognition(self, image: PreparedImage) -> TaskRef:
        raise NotImplementedError

    async def poll_recognition(self, ref: TaskRef) -> RecognitionPoll:
        raise NotImplementedError


def tiny_mp4(seconds: float = 1.0, fps: int = 24) -> bytes:
    """A real H.264 MP4, small and quick to make."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for n in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(
                np.full((64, 64, 3), n % 255, dtype=np.uint8), format="rgb24"
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def cdn_client(body: bytes) -> httpx2.AsyncClient:
    def serve(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "video/mp4"})

    return httpx2.AsyncClient(transport=httpx2.MockTransport(serve))


@asynccontextmanager
async def running_engine(
    settings: Settings,
    provider: ScriptedProvider,
    client: httpx2.AsyncClient | None = None,
    *,
    resume: bool = True,
    configure: Callable[[Engine], None] | None = None,
    lease_seconds: float = 45.0,
    conform: Conform | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Engine]:
    ledger = Ledger.in_dir(settings.data_dir)
    client = client or cdn_client(b"")
    engine = Engine(
        settings,
        ledger,
        providers=lambda name: provider,  # type: ignore[arg-type,return-value]
        clients=lambda name: client,
        first_poll_seconds=0.02,
        heartbeat_seconds=0.2,
        lease_seconds=lease_seconds,
        conform=conform,
        **({} if clock is None else {"clock": clock}),
    )
    if configure is not None:
        configure(engine)
    try:
        async with anyio.create_task_group() as group:
            engine.attach(group, resume=resume)
            try:
                yield engine
            finally:
                group.cancel_scope.cancel()
    finally:
        await client.aclose()
        ledger.close()
