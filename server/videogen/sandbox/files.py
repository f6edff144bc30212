"""File URLs: videos and masks behind expiring tokens, a synthetic large file, test assets.

- ``GET /files/<token>.mp4`` (or ``.png``): a file handed out by a poll/detection. 403 once
  expired (a new poll hands out a fresh URL), 404 for an unknown token. No credentials needed
  (like a presigned CDN URL).
- ``GET /files/bench-<N>.bin``: N bytes of deterministic content (byte i is
  ``PATTERN[i % len(PATTERN)]``), streamed, never stored; for the download benchmark. No expiry.
- ``GET /assets/...?key=<ASSET_KEY>``: see ``videogen.sandbox.assets``; drawn in the bounded
  render pool, never on the event loop. Without the process's key: 403.

Every file answer has ``Content-Length``, ``Accept-Ranges: bytes`` and honours one
``Range: bytes=a-b`` / ``a-`` / ``-n`` (206 + ``Content-Range``; 416 when unsatisfiable).
Download faults apply here: ``drop:download``, ``server_error:download``,
``rate_limit:download``, ``truncate_download`` and ``slow_download``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from videogen.catalog import ProviderName
from videogen.sandbox.assets import ASSET_KEY, asset
from videogen.sandbox.core import JSONResponse, Sandbox
from videogen.sandbox.render import off_loop
from videogen.sandbox.state import FileGrant

CHUNK: Final = 256 * 1024
PATTERN: Final = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(32768))
_BENCH: Final = re.compile(r"bench-(\d{1,13})\.bin")
_TOKEN: Final = re.compile(r"([0-9a-f]{32})\.(mp4|png)")

Reader = Callable[[int, int], AsyncIterator[bytes]]


def bench_bytes(start: int, end: int) -> bytes:
    """Bytes ``start..end-1`` of a synthetic bench file (for tests that check content)."""
    out = bytearray()
    position = start
    while position < end:
        offset = position % len(PATTERN)
        piece = PATTERN[offset : offset + (end - position)]
        out += piece
        position += len(piece)
    return bytes(out)


async def _bench_reader(start: int, end: int) -> AsyncIterator[bytes]:
    position = start
    view = memoryview(PATTERN)
    while position < end:
        offset = position % len(PATTERN)
        size = min(CHUNK, end - position, len(PATTERN) - offset)
        yield bytes(view[offset : offset + size])
        position += size


def _file_reader(path: Path) -> Reader:
    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as handle:
            await handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = await handle.read(min(CHUNK, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

    return read


def _bytes_reader(data: bytes) -> Reader:
    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        for position in range(start, end, CHUNK):
            yield data[position : min(end, position + CHUNK)]

    return read


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end_exclusive)`` for a single byte range, None for no/ignored header, or
    ``"unsatisfiable"``."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # malformed or multi-range: serve the whole file (RFC 9110 allows it)
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end


class Files:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.state = sandbox.state

    async def file(self, request: Request) -> Response:
        """``/files/{name}``."""
        name = request.path_params["name"]
        if (bench := _BENCH.fullmatch(name)) is not None:
            self.sb.note(request, operation="download")
            size = int(bench.group(1))
            return await self.send(request, size, _bench_reader, "application/octet-stream")
        match = _TOKEN.fullmatch(name)
        grant = self.state.grants.get(match.group(1)) if match else None
        if grant is not None:
            self.sb.note(request, provider=grant.provider, task_id=grant.task_id)
        self.sb.note(
            request, operation="download" if grant is None or grant.data is None else "asset"
        )
        if grant is None:
            return JSONResponse({"Code": "NoSuchKey", "Message": "no such file"}, status_code=404)
        if grant.expires_at <= self.state.clock():
            return JSONResponse(
                {
                    "Code": "AccessDenied",
                    "Message": "Request has expired: poll again for a fresh URL",
                },
                status_code=403,
            )
        return await self.grant_response(request, grant)

    async def grant_response(
        self, request: Request, grant: FileGrant, provider: ProviderName | None = None
    ) -> Response:
        if grant.data is not None:
            data = grant.data
            return await self.send(request, len(data), _bytes_reader(data), grant.content_type)
        path = await self.sb.renderer.render(grant.render)
        size = path.stat().st_size
        return await self.send(request, size, _file_reader(path), grant.content_type)

    async def asset(self, request: Request) -> Response:
        self.sb.note(request, operation="asset")
        if not hmac.compare_digest(request.query_params.get("key", ""), ASSET_KEY):
            return JSONResponse(
                {"Code": "AccessDenied", "Message": "assets are served to this process only"},
                status_code=403,
            )
        found = await off_loop(asset, request.url.path)
        if found is None:
            return JSONResponse({"Code": "NoSuchKey", "Message": "no such asset"}, status_code=404)
        data = found.data
        return await self.send(request, len(data), _bytes_reader(data), found.content_type)

    async def send(
        self,
        request: Request,
        size: int,
        read: Reader,
        content_type: str,
    ) -> Response:
        """A file answer with Range support and the download faults applied."""
        fault = self.sb.fault(request, "download")
        if fault is not None:
            if fault.kind == "drop":
                return await self.sb.drop(request)
            if fault.kind == "rate_limit":
                return JSONResponse(
                    {"Code": "TooManyRequests", "Message": "slow down"},
                    status_code=429,
                    headers={"Retry-After": f"{fault.value or 1:g}"},
                )
            return JSONResponse({"Code": "InternalError", "Message": "try again"}, status_code=500)
        wanted = parse_range(request.headers.get("range"), size)
        headers = {"Accept-Ranges": "bytes"}
        if wanted == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{size}"
            return Response(status_code=416, headers=headers)
        start, end = wanted if isinstance(wanted, tuple) else (0, size)
        status = 206 if isinstance(wanted, tuple) else 200
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=content_type)
        truncate = self.state.book().take("truncate_download")
        if truncate:
            self.sb.note(request, fault="truncate_download")
        rate = self.state.book().slow_download
        body = self._stream(request, read, start, end, truncate=truncate, rate=rate)
        return StreamingResponse(body, status_code=status, headers=headers, media_type=content_type)

    async def _stream(
        self,
        request: Request,
        read: Reader,
        start: int,
        end: int,
        *,
        truncate: bool,
        rate: float | None,
    ) -> AsyncIterator[bytes]:
        stop = start + (end - start) // 2 if truncate else end
        sent = start
        async for chunk in read(start, stop):
            if rate is not None:
                for offset in range(0, len(chunk), max(1, int(rate // 20))):
                    piece = chunk[offset : offset + max(1, int(rate // 20))]
                    yield piece
                    await anyio.sleep(len(piece) / rate)
            else:
                yield chunk
            sent += len(chunk)
        if truncate:
            await self.sb.close_now(request)
