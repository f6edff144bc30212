"""Helpers shared by the sandbox tests (importable: tests/sandbox is on sys.path)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2

from videogen.providers.signing import Credentials, sign
from videogen.sandbox import (
    SANDBOX_ACCESS_KEY,
    SANDBOX_JENIUS_KEY,
    SANDBOX_SECRET_KEY,
    SANDBOX_TOKENOPS_KEY,
    ManualClock,
    RunningSandbox,
)

JOB_SECONDS = 3.0
TOKENOPS_HEADERS = {"Authorization": f"Bearer {SANDBOX_TOKENOPS_KEY}"}
JENIUS_HEADERS = {"Authorization": f"Bearer {SANDBOX_JENIUS_KEY}"}


class Volc:
    """A minimal signed Volcengine client (the project's own signer, as the adapters use)."""

    def __init__(self, sb: RunningSandbox, http: httpx2.AsyncClient, clock: ManualClock) -> None:
        self.sb, self.http, self.clock = sb, http, clock
        self.credentials = Credentials(SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY)

    async def call(
        self,
        action: str,
        body: Any,
        *,
        version: str = "2022-08-31",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        content = raw if raw is not None else json.dumps(body).encode()
        query = {"Action": action, "Version": version}
        signed = sign(
            self.credentials,
            method="POST",
            host=urlsplit(self.sb.url).netloc,
            path="/",
            query=query,
            body=content,
            scheme="http",
            now=datetime.fromtimestamp(self.clock(), UTC),
        )
        signed.update(headers or {})
        return await self.http.post(
            self.sb.url + "/", params=query, content=content, headers=signed
        )

    async def submit(self, body: dict[str, Any]) -> httpx2.Response:
        return await self.call("CVSync2AsyncSubmitTask", body)

    async def poll(self, req_key: str, task_id: str) -> httpx2.Response:
        return await self.call("CVSync2AsyncGetResult", {"req_key": req_key, "task_id": task_id})


def png_b64(width: int, height: int, variant: str = "scene") -> str:
    """A test picture as plain base64 PNG (what ``binary_data_base64`` carries)."""
    import base64

    from videogen.sandbox.images import png, test_image

    return base64.b64encode(png(test_image(width, height, variant))).decode()


def probe(data: bytes) -> tuple[int, int, int, float, int, bool]:
    """(width, height, frames decoded, fps, codec is h264, has audio) of an MP4."""
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        width, height = stream.width, stream.height
        fps = float(stream.average_rate or 0)
        h264 = stream.codec_context.name == "h264"
        audio = bool(container.streams.audio)
        frames = sum(1 for _ in container.decode(video=0))
    return width, height, frames, fps, int(h264), audio
