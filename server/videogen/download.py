"""Streaming, resumable, verified, atomic download of a finished video into the output directory.

The contract of :func:`download`:

- the body streams into a hidden temporary file next to the target (same filesystem), created
  with ``O_EXCL | O_NOFOLLOW``; memory stays flat whatever the size;
- the length is checked against ``Content-Length`` / ``Content-Range``; a dropped or truncated
  transfer resumes with ``Range: bytes=N-`` (a server that answers 200 instead of 206 makes the
  download restart from zero);
- the file must be a plausible MP4 (top-level boxes tile the file exactly, ``ftyp`` first,
  ``moov`` present) before it is published;
- ``max_bytes`` is enforced up front (``Content-Length``) and while streaming, and the whole
  download runs under one ``deadline_seconds``;
- an expired URL (403, or 410) calls ``refresh()`` for a fresh source, a bounded number of times;
- connection errors, 5xx and 429 are retried with capped, jittered backoff (``Retry-After``
  honoured);
- ``source.headers`` (credentials) are sent only to ``source.credential_origin`` (scheme, host
  and port); redirects are followed by hand and lose the credentials as soon as that changes;
- the finished file is ``fsync``-ed, hard-linked into place under the first free name
  (``name.mp4``, ``name-1.mp4``, ...), so an existing file or a planted symlink is never
  overwritten or followed, and the directory is ``fsync``-ed;
- whatever goes wrong, no partial file is left behind; one left by a process that was killed
  (no ``finally`` runs then) is removed by the next download into the same directory, or by
  the first one after a minute when this process swept that directory less than a minute ago.

Errors: :class:`DownloadError` for the network, integrity, size cap and deadline (the task keeps
its video URL, so the download can be tried again); :class:`OutputError` for the directory
(missing and uncreatable, not a directory, unwritable, full) and for unusable file names.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import anyio
import anyio.abc
import anyio.to_thread
import httpcore2
import httpx2

from videogen.destination import FIX, open_folder
from videogen.errors import DownloadError, InputError, OutputError
from videogen.files import (
    check_name,
    create_locked,
    publish,
    sweep_orphans_now_and_then,
)
from videogen.files import safe_filename as safe_filename  # where callers long found it
from videogen.providers.base import DownloadSource
from videogen.retry import RetryPolicy, honouring, retry_after

#: Bytes gathered before one write to the file (the body arrives in pieces of up to
#: SOCKET_READ_BYTES, or one TLS record). The write happens on the event loop right after the
#: read, while the bytes are still in this CPU's cache: copying them to the page cache is the
#: largest cost of a download, and it doubled when a worker thread did it (bench_download).
#: 256 KiB, not 1 MiB: with other processes on the CPUs, 1 MiB blocks left the cache before they
#: were written and cost up to twice the CPU; 256 KiB stayed near curl's.
WRITE_BLOCK: Final = 256 * 1024
#: Bytes written between two writeback hints (``_start_writeback``, in a worker thread).
WRITEBACK_STEP: Final = 8 << 20
#: SLOW_WRITES writes in a row on the event loop, each slower than SLOW_WRITE_SECONDS, mean
#: the disk, not the page cache, sets the pace: the rest of that download writes from a worker
#: thread, so the loop does not wait for the disk. (A 1 MiB write takes about 0.25 ms; on a busy
#: machine single writes of 4-9 ms were seen, the process losing the CPU for a moment, and
#: one of them alone must not send the download down the slower path.)
SLOW_WRITE_SECONDS: Final = 0.01
SLOW_WRITES: Final = 3
#: Bytes httpcore2 may read per HTTP/1.1 socket read (see ``_widen_http11_reads``).
HTTP11_READ_BYTES: Final = 256 * 1024
#: Bytes read per call when the body comes straight off the connection (``_socket_body``);
#: also what asyncio's transport hands over per ``recv``.
SOCKET_READ_BYTES: Final = 256 * 1024
#: Bodies at least this long come straight off the connection (``_socket_body``), which then
#: cannot serve another request; shorter ones go through the client's reader, and their
#: connection back to the pool. The socket path saves about 1 ms of CPU per MiB; a new
#: connection costs about 0.25 ms on loopback (bench_inflight's py-spy profile) and a TLS
#: handshake several times that, so below 2 MiB reuse wins.
SOCKET_BODY_MIN_BYTES: Final = 2 << 20
#: ``sync_file_range`` flag: start writing back dirty pages of the range, do not wait.
SYNC_FILE_RANGE_WRITE: Final = 2
#: Chunks per ``writev`` call, well under every platform's IOV_MAX (1024 on Linux).
MAX_IOVECS: Final = 512
MAX_REDIRECTS: Final = 5
MAX_REFRESHES: Final = 3
#: Requests per download, whatever happens (a server that always cuts the body short...).
MAX_ATTEMPTS: Final = 40
#: Consecutive failed attempts (no byte received) before giving up.
MAX_FAILED_ATTEMPTS: Final = 6
#: Waits between failed attempts: capped, jittered exponential backoff (videogen.retry's).
RETRY_POLICY: Final = RetryPolicy(attempts=MAX_FAILED_ATTEMPTS, wait_initial=0.25, wait_max=8.0)

_OUTPUT_HINT: Final = FIX
_KEEPS_URL: Final = "the task keeps its video URL, so the download can be tried again"
_CREDENTIAL_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"}
)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


# --------------------------------------------------------------------------------- file names


def _check_bare(filename: str) -> None:
    """The saver's side of the file-name rule (``files.check_name``): the name is final here."""
    try:
        usable = check_name(filename) == filename
    except InputError as exc:
        raise OutputError(f"Refusing to save under that name: {exc.message}") from None
    if not usable:
        raise OutputError(f"Refusing to save under {filename!r}: the name must end in .mp4.")


# ------------------------------------------------------------------------- output directory


def _output_error(exc: OSError, root: Path) -> OutputError:
    if exc.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}:
        return OutputError(
            f"The output directory {str(root)!r} is full ({exc.strerror}): free some space or "
            f"{_OUTPUT_HINT}; {_KEEPS_URL}."
        )
    return OutputError(
        f"Cannot write in the output directory {str(root)!r} ({exc.strerror}): {_OUTPUT_HINT}."
    )


@dataclass
class _PartFile:
    """The hidden temporary file a download streams into."""

    root: Path
    path: Path
    fd: int

    @classmethod
    def create(cls, root: Path, filename: str) -> _PartFile:
        path = root / f".{filename}.part-{secrets.token_hex(4)}"
        try:
            fd = create_locked(path)
        except OSError as exc:
            raise _output_error(exc, root) from exc
        return cls(root, path, fd)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise _output_error(exc, self.root) from exc

    def write_blocks(self, blocks: list[bytes]) -> None:
        """Write ``blocks`` in order with one ``writev`` when the kernel takes them all."""
        try:
            written = os.writev(self.fd, blocks)
        except OSError as exc:
            raise _output_error(exc, self.root) from exc
        if written < sum(map(len, blocks)):
            self.write(memoryview(b"".join(blocks))[written:])

    def restart(self) -> None:
        """Throw away what was received (the server would not resume)."""
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)

    def finish(self) -> None:
        """Flush to disk. The file stays open (and locked) until ``discard``, so no sweeper in
        another process can take it for an orphan before it is published."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise _output_error(exc, self.root) from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _start_writeback(fd: int) -> None:
    """Ask the kernel to start writing the file's dirty pages to the disk now, without waiting
    for it (Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` over the whole file, which skips
    the pages already written; elsewhere nothing happens). The disk then works while the
    network does, and the ``fsync`` before publishing finds little left: for 1 GiB it took
    about 0.45 s after the transfer, and now next to nothing (bench/bench_download.py). A hint
    only: the ``fsync`` still makes the file durable."""
    call = _sync_file_range()
    if call is not None:
        call(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return cast("Callable[[int, int, int, int], int]", call)


def _publish(part: _PartFile, filename: str) -> Path:
    """Link the finished file to the first free name; never replaces or follows anything."""
    try:
        return publish(part.path, part.root, filename)
    except OSError as exc:
        raise _output_error(exc, part.root) from exc


# ------------------------------------------------------------------------------- MP4 check


def check_mp4(path: Path) -> None:
    """Raise DownloadError unless the top-level MP4 boxes tile the file exactly,
    ``ftyp`` comes first (after at most one ``free``/``skip``/``wide``) and ``moov`` exists."""
    size = path.stat().st_size
    kinds: list[bytes] = []
    with path.open("rb") as f:
        offset = 0
        while offset < size:
            header = f.read(16)
            if len(header) < 8:
                raise _corrupt(f"a box header is cut at byte {offset}")
            box_size = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if box_size == 1:
                if len(header) < 16:
                    raise _corrupt(f"a large box header is cut at byte {offset}")
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                box_size = size - offset
            if not re.fullmatch(rb"[ -~]{4}", kind) or box_size < 8:
                raise _corrupt(f"no valid box at byte {offset}")
            if offset + box_size > size:
                raise _corrupt(f"box {kind.decode()!r} runs past the end of the file")
            kinds.append(kind)
            offset += box_size
            f.seek(offset)
    leading = [k for k in kinds[:2] if k not in {b"free", b"skip", b"wide"}]
    if not leading or leading[0] != b"ftyp":
        raise _corrupt("it does not start with an 'ftyp' box")
    if b"moov" not in kinds:
        raise _corrupt("it has no 'moov' box")


def _corrupt(why: str) -> DownloadError:
    return DownloadError(f"The downloaded file is not a valid MP4 ({why}); {_KEEPS_URL}.")


# ---------------------------------------------------------------------------------- transfer


class _Retry(Exception):
    """A transient failure: wait (at least ``after`` seconds) and try again."""

    def __init__(self, why: str, *, after: float | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.after = after


class _Expired(Exception):
    """The URL no longer works; a fresh one is needed."""


class _Restart(Exception):
    """The server will not resume; start again from byte zero."""


@dataclass(frozen=True)
class _Chunks:
    """A response body's chunks, and whether they come straight off the socket (no read
    timeout of the client's)."""

    parts: AsyncGenerator[bytes]
    from_socket: bool


@dataclass
class _Transfer:
    client: httpx2.AsyncClient
    source: DownloadSource
    part: _PartFile
    max_bytes: int
    refresh: Callable[[], Awaitable[DownloadSource]] | None
    received: int = 0
    total: int | None = None

    async def run(self) -> None:
        failures = refreshes = 0
        for _ in range(MAX_ATTEMPTS):
            before = self.received
            try:
                if await self._attempt():
                    return
                raise _Retry(f"the transfer stopped at {self.received} of {self.total} bytes")
            except _Restart:
                await anyio.to_thread.run_sync(self.part.restart)
                self.received, self.total = 0, None
                continue
            except _Expired as exc:
                if self.refresh is None or refreshes >= MAX_REFRESHES:
                    raise DownloadError(
                        f"The video URL has expired ({exc}) and no fresh one could be had; "
                        "check the task again to get a new URL."
                    ) from None
                refreshes += 1
                self.source = await self.refresh()
            except _Retry as exc:
                failures = 0 if self.received > before else failures + 1
                if failures >= MAX_FAILED_ATTEMPTS:
                    raise DownloadError(
                        f"The video could not be downloaded ({exc.why}); {_KEEPS_URL}."
                    ) from None
                await anyio.sleep(_backoff(failures, exc.after))
        raise DownloadError(
            f"The video could not be downloaded in {MAX_ATTEMPTS} requests "
            f"({self.received} bytes saved); {_KEEPS_URL}."
        )

    async def _attempt(self) -> bool:
        """One request; True when the whole body is on disk."""
        try:
            response = await self._open()
            try:
                return await self._receive(response)
            finally:
                await response.aclose()
        except (httpx2.TransportError, httpx2.DecodingError) as exc:
            raise _Retry(f"network error: {type(exc).__name__}") from None

    async def _open(self) -> httpx2.Response:
        url = self.source.url
        for _ in range(MAX_REDIRECTS + 1):
            request = self._request(url)
            response = await self.client.send(request, stream=True, follow_redirects=False)
            if not response.has_redirect_location:
                return response
            await response.aclose()
            url = str(request.url.join(response.headers["location"]))
        raise DownloadError(f"The video URL redirected more than {MAX_REDIRECTS} times.")

    def _request(self, url: str) -> httpx2.Request:
        headers = {"Accept-Encoding": "identity"}
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
        target = httpx2.URL(url)
        # The API's exact origin only: not another host, port or scheme (so no https->http).
        trusted = self.source.trusts(url)
        if trusted:
            headers.update(self.source.headers)
        request = self.client.build_request("GET", target, headers=headers)
        if not trusted:
            # The client may carry default credentials of its own: none of them leave the API host.
            for name in {*_CREDENTIAL_HEADERS, *(h.lower() for h in self.source.headers)}:
                request.headers.pop(name, None)
        return request

    async def _receive(self, response: httpx2.Response) -> bool:
        if response.status_code == 200 and self.received:
            # The server ignored our Range: this body starts at byte zero, so start over with it.
            await anyio.to_thread.run_sync(self.part.restart)
            self.received = 0
        self._check_status(response)
        if response.status_code == 416:
            return self._already_complete(response)
        self._check_length(response)
        await self._stream_to_disk(response)
        if self.total is not None and self.received > self.total:
            raise DownloadError(f"The server sent more bytes than it announced; {_KEEPS_URL}.")
        return self.total is None or self.received == self.total

    async def _stream_to_disk(self, response: httpx2.Response) -> None:
        """Write the body to the file as it arrives. ``received`` counts only bytes on disk,
        so a resume starts exactly there; what did arrive before a drop is kept."""
        chunks, short = self._body(response)
        if short:  # no writeback hint will be due: no task group either
            await self._copy_body(chunks, _Disk(self.part, None), None)
            return
        failure: Exception | None = None
        async with anyio.create_task_group() as group:  # writeback hints, the stall watch
            try:
                await self._copy_body(chunks, _Disk(self.part, group), group)
            except (httpx2.TransportError, DownloadError, OutputError) as exc:
                failure = exc  # raised below, not wrapped in the task group's ExceptionGroup
        if failure is not None:
            raise failure

    async def _copy_body(
        self, chunks: _Chunks, disk: _Disk, group: anyio.abc.TaskGroup | None
    ) -> None:
        """The body into the file. Straight off the socket, no read has a timeout of its own:
        a ``_StallWatch`` in ``group`` ends a stalled body. Through the client's reader, each
        read has the client's read timeout."""
        limit = self.max_bytes - self.received
        read = pending = 0
        block: list[bytes] = []
        stall = _StallWatch(self.client.timeout.read if chunks.from_socket else None)
        if group is not None:
            group.start_soon(stall.watch)
        try:
            with stall.scope:
                async with contextlib.aclosing(chunks.parts) as parts:
                    async for chunk in parts:
                        stall.last = time.monotonic()
                        read += len(chunk)
                        if read > limit:
                            raise DownloadError(_too_big(self.max_bytes), retryable=False)
                        block.append(chunk)
                        pending += len(chunk)
                        if pending >= WRITE_BLOCK or len(block) >= MAX_IOVECS:
                            stall.last = math.inf  # the disk's time does not count
                            await disk.write(block)
                            stall.last = time.monotonic()
                            self.received += pending
                            block, pending = [], 0
            if stall.scope.cancelled_caught:
                raise httpx2.ReadTimeout(f"no byte of the body arrived for {stall.timeout:g} s")
        except httpx2.TransportError:
            if block:  # good bytes: keep them so the resume starts after them
                await disk.write(block)
                self.received += pending
            raise
        finally:
            stall.stop()
        if block:
            await disk.write(block)
            self.received += pending

    def _body(self, response: httpx2.Response) -> tuple[_Chunks, bool]:
        """The body's bytes: straight off the connection when its length is known and at
        least ``SOCKET_BODY_MIN_BYTES`` (see ``_socket_body``), else through the client's own
        reader; and whether the body is short (its length known and under
        ``SOCKET_BODY_MIN_BYTES``, so under ``WRITEBACK_STEP``)."""
        if response.is_stream_consumed:
            return _Chunks(_once(response.content), from_socket=False), True
        stream = response.extensions.get("network_stream")
        length = response.headers.get("content-length", "")
        known = length.isdigit() and "transfer-encoding" not in response.headers
        if known and int(length) < SOCKET_BODY_MIN_BYTES:
            return _Chunks(response.aiter_raw(), from_socket=False), True
        if (
            known
            and isinstance(stream, httpcore2.AsyncNetworkStream)
            and isinstance(response.stream, httpx2.AsyncByteStream)
        ):
            body = _socket_body(response.stream, stream, int(length))
            return _Chunks(body, from_socket=True), False
        return _Chunks(response.aiter_raw(), from_socket=False), False

    def _check_status(self, response: httpx2.Response) -> None:
        status = response.status_code
        if status in {200, 206}:
            return
        if status in {403, 410}:
            raise _Expired(f"HTTP {status}")
        if status == 416 and self.received:
            return  # maybe the last attempt got every byte: see _already_complete
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", after=retry_after(response.headers))
        raise DownloadError(
            f"The video URL answered HTTP {status}; {_KEEPS_URL}.", retryable=status == 404
        )

    def _already_complete(self, response: httpx2.Response) -> bool:
        """A 416 to ``bytes=N-`` with ``Content-Range: bytes */N`` means we have it all."""
        match = re.fullmatch(r"bytes\s+\*/(\d+)", response.headers.get("content-range", "").strip())
        total = int(match.group(1)) if match else self.total
        if total is None or total != self.received:
            raise _Restart()
        self.total = total
        return True

    def _check_length(self, response: httpx2.Response) -> None:
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
            if match is None or int(match.group(1)) != self.received:
                raise _Restart()
            if match.group(3) != "*":
                self.total = int(match.group(3))
        elif response.status_code == 200:
            length = response.headers.get("content-length")
            self.total = int(length) if length and length.isdigit() else None
        if self.total is not None and self.total > self.max_bytes:
            raise DownloadError(_too_big(self.max_bytes, self.total), retryable=False)


class _Disk:
    """The part file's writer for one request: ``write`` copies a block to the page cache from
    the event loop (no thread hop, the bytes still hot in the CPU cache) until SLOW_WRITES such
    writes in a row are slow, then from a worker thread; every WRITEBACK_STEP bytes a worker
    thread asks the kernel to start writing back (``_start_writeback``), so the disk works while
    the network does and the loop does not wait for the disk (with no ``group``, a short body,
    no hint is given)."""

    def __init__(self, part: _PartFile, group: anyio.abc.TaskGroup | None) -> None:
        self.part = part
        self.group = group
        self.slow = 0  # slow writes in a row; SLOW_WRITES or more: writes go to a thread
        self.written = self.hinted = 0
        self.hinting = False

    async def write(self, block: list[bytes]) -> None:
        if self.slow >= SLOW_WRITES:
            await anyio.to_thread.run_sync(self.part.write_blocks, block)
        else:
            started = time.perf_counter()
            self.part.write_blocks(block)
            slow = time.perf_counter() - started > SLOW_WRITE_SECONDS
            self.slow = self.slow + 1 if slow else 0
        self.written += sum(map(len, block))
        due = self.written - self.hinted >= WRITEBACK_STEP
        if due and not self.hinting and self.group is not None:
            self.hinting, self.hinted = True, self.written
            self.group.start_soon(self._hint)

    async def _hint(self) -> None:
        try:
            await anyio.to_thread.run_sync(_start_writeback, self.part.fd)
        finally:
            self.hinting = False


class _StallWatch:
    """Gives up on a body when no byte of it arrived for ``timeout`` seconds (the client's read
    timeout): one deadline for the whole body, watched by one task that wakes about once per
    ``timeout``, instead of a timeout scope per read (a timer armed and cancelled for each read,
    which for a TLS body is every 16 KiB record). The reader sets ``last`` (``time.monotonic``)
    after each read, and to infinity while it waits for the disk; ``scope`` is cancelled when
    the body stalls."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.last = time.monotonic()
        self.scope = anyio.CancelScope()
        self._watching = anyio.CancelScope()

    async def watch(self) -> None:
        if self.timeout is None:
            return
        with self._watching:
            while True:
                left = self.last + self.timeout - time.monotonic()
                if left <= 0:
                    self.scope.cancel()
                    return
                await anyio.sleep(min(left, self.timeout))

    def stop(self) -> None:
        self._watching.cancel()


async def _socket_body(
    body: httpx2.AsyncByteStream, stream: httpcore2.AsyncNetworkStream, length: int
) -> AsyncGenerator[bytes]:
    """The ``length`` bytes of an HTTP/1.1 body, the first chunk through the client (it holds
    what arrived with the headers) and the rest read from the connection itself.

    Why: the client's HTTP/1.1 parser copies every body byte three times more and reads 64 KiB
    at a time, which costs a 1 GiB download about a second of CPU more than ``curl``; read
    here, a byte is copied once off the socket, up to ``SOCKET_READ_BYTES`` at a time, and
    straight from the anyio stream under it when there is one (the client's ``read`` wraps
    each call in a timeout scope and an exception map; the caller keeps one deadline for the
    whole body instead, see bench/bench_download.py). The parser is left behind mid-body, so
    the client closes this connection instead of reusing it; a download is one request anyway.
    Errors are the client's (``httpx2.ReadError``).
    """
    parts = body.__aiter__()
    try:
        first = await parts.__anext__()
    except StopAsyncIteration:
        return
    yield first
    left = length - len(first)
    receive = _receiver(stream)
    while left > 0:
        try:
            chunk = await receive(min(left, SOCKET_READ_BYTES))
        except anyio.EndOfStream:
            chunk = b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise httpx2.ReadError(str(exc) or "read failed") from exc
        except httpcore2.NetworkError as exc:
            raise httpx2.ReadError(str(exc) or "read failed") from exc
        if not chunk:
            raise httpx2.RemoteProtocolError(
                f"the server closed the connection {left} bytes before the end of the body"
            )
        left -= len(chunk)
        yield chunk


def _receiver(stream: httpcore2.AsyncNetworkStream) -> Callable[[int], Awaitable[bytes]]:
    """The anyio stream's own ``receive`` under the client's stream when there is one (the
    client's anyio backend), else the client's ``read`` with no timeout of its own."""
    inner = getattr(stream, "_stream", None)
    if isinstance(inner, anyio.abc.ByteReceiveStream):
        return inner.receive

    async def read(max_bytes: int) -> bytes:
        return await stream.read(max_bytes)

    return read


async def _once(data: bytes) -> AsyncGenerator[bytes]:
    """A body already read (a response built from bytes, as ``httpx2.MockTransport`` makes)."""
    yield data


def _too_big(limit: int, announced: int | None = None) -> str:
    size = f" ({announced} bytes)" if announced is not None else ""
    return (
        f"The video is larger than the {limit}-byte limit{size}; nothing was saved "
        "(raise the limit to save it)."
    )


def _backoff(failures: int, retry_after: float | None) -> float:
    # Not call_with_retries itself: here a failure that still moved bytes resets the count,
    # and the resume after such a drop starts at once.
    return honouring(RETRY_POLICY.backoff(failures) if failures else 0.0, retry_after)


# ------------------------------------------------------------------------------------- entry


def _widen_http11_reads() -> None:
    """Let httpcore2 read HTTP/1.1 bodies 256 KiB at a time instead of 64 KiB.

    Why: on loopback and LAN links the per-read cost (h11 events, anyio, context managers)
    dominates, and 64 KiB reads cap a download at about two thirds of ``curl``; 256 KiB, which
    is what asyncio's transport hands over per ``recv`` anyway, brings it level (see
    bench/bench_download.py). A read returns what is available, so small responses and memory
    are unaffected. This sets a class attribute of the library, process-wide — naughty, but the
    library offers no option; it is skipped if the attribute ever goes away or grows on its own.
    """
    try:
        from httpcore2._async.http11 import AsyncHTTP11Connection
    except ImportError:  # pragma: no cover - a future httpcore2 layout
        return
    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", HTTP11_READ_BYTES) < HTTP11_READ_BYTES:
        AsyncHTTP11Connection.READ_NUM_BYTES = HTTP11_READ_BYTES


async def download(
    client: httpx2.AsyncClient,
    source: DownloadSource,
    dest_dir: Path,
    filename: str,
    *,
    max_bytes: int,
    deadline_seconds: float,
    refresh: Callable[[], Awaitable[DownloadSource]] | None = None,
    after: Callable[[Path], None] | None = None,
) -> Path:
    """Save the video at ``source`` as ``dest_dir/filename`` (or ``filename-N`` if taken).

    Returns the path written. Raises :class:`DownloadError` (network, integrity, size cap,
    deadline) or :class:`OutputError` (directory or name); never leaves a partial file and
    never overwrites. ``refresh`` is awaited for a fresh source when the URL has expired.
    ``after`` is called with the saved file's path in the worker thread that saved it (work on
    the file without a thread hop of its own); it must not raise what it wants told apart from
    a failed download.
    """
    _check_bare(filename)
    _widen_http11_reads()
    part = await anyio.to_thread.run_sync(_start, Path(dest_dir), filename)
    try:
        transfer = _Transfer(client, source, part, max_bytes, refresh)
        try:
            with anyio.fail_after(deadline_seconds):
                await transfer.run()
        except TimeoutError:
            raise DownloadError(
                f"The download did not finish within {deadline_seconds:g} s "
                f"({transfer.received} bytes received); {_KEEPS_URL}."
            ) from None
        return await anyio.to_thread.run_sync(_complete, part, filename, after)
    finally:
        # Synchronous on purpose: it must also run when the task is being cancelled.
        part.discard()


# Each step off the event loop is one thread hop; with hundreds of downloads finishing at once
# the hops themselves cost, so the file-system work before and after the transfer is one each.


def _start(dest_dir: Path, filename: str) -> _PartFile:
    root = open_folder(dest_dir).resolve()
    sweep_orphans_now_and_then(root)
    return _PartFile.create(root, filename)


def _complete(part: _PartFile, filename: str, after: Callable[[Path], None] | None) -> Path:
    part.finish()
    check_mp4(part.path)
    path = _publish(part, filename)
    if after is not None:
        after(path)
    return path
