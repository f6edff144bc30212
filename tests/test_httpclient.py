"""The provider HTTP client: a FIFO gate in front of the pool, cheap probes of idle sockets.

The gate tests drive ``GatedTransport`` over an in-process transport whose requests wait on
events the test controls; the socket tests use a tiny HTTP/1.1 server on loopback.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import httpx2
import pytest

from videogen.httpclient import GatedTransport, _ProbingStream, create_client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HeldTransport(httpx2.AsyncBaseTransport):
    """Each request waits until the test releases it by path; records who got in, in order."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.release: dict[str, anyio.Event] = {}

    def gate_for(self, path: str) -> anyio.Event:
        return self.release.setdefault(path, anyio.Event())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.entered.append(path)
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await self.gate_for(path).wait()
        finally:
            self.inside -= 1
        if path.startswith("/fail"):
            raise httpx2.ConnectError("refused", request=request)
        return httpx2.Response(200, content=path.encode())


@pytest.mark.anyio
async def test_the_gate_admits_at_most_its_limit_in_arrival_order() -> None:
    inner = HeldTransport()
    async with httpx2.AsyncClient(transport=GatedTransport(inner, 2)) as client:
        bodies: dict[str, bytes] = {}

        async def fetch(path: str) -> None:
            bodies[path] = (await client.get(f"http://gate.test{path}")).content

        paths = [f"/{n}" for n in range(6)]
        async with anyio.create_task_group() as tg:
            for path in paths:
                tg.start_soon(fetch, path)
                await anyio.wait_all_tasks_blocked()
            assert inner.entered == ["/0", "/1"]
            # Releasing in reverse still lets the waiting requests in first come, first served.
            for path in reversed(paths):
                inner.gate_for(path).set()
                await anyio.wait_all_tasks_blocked()
        assert inner.entered == paths
        assert inner.most_inside == 2
        assert bodies == {path: path.encode() for path in paths}


@pytest.mark.anyio
async def test_a_request_that_cannot_get_in_within_the_pool_timeout_is_a_pool_timeout() -> None:
    inner = HeldTransport()
    timeout = httpx2.Timeout(5.0, pool=0.05)
    async with httpx2.AsyncClient(transport=GatedTransport(inner, 1), timeout=timeout) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, "http://gate.test/slow")
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(httpx2.PoolTimeout):
                await client.get("http://gate.test/never")
            inner.gate_for("/slow").set()
        inner.gate_for("/after").set()
        assert (await client.get("http://gate.test/after")).content == b"/after"
        # The request that timed out in the gate never reached the transport, nor kept a place.
        assert inner.entered == ["/slow", "/after"]


@pytest.mark.anyio
async def test_the_place_is_given_back_when_a_streamed_response_closes_or_the_request_fails() -> (
    None
):
    inner = HeldTransport()
    for path in ("/a", "/b", "/fail", "/c"):
        inner.gate_for(path).set()
    timeout = httpx2.Timeout(5.0, pool=0.5)
    async with httpx2.AsyncClient(transport=GatedTransport(inner, 1), timeout=timeout) as client:
        async with client.stream("GET", "http://gate.test/a") as response:
            assert await response.aread() == b"/a"
        assert (await client.get("http://gate.test/b")).content == b"/b"
        with pytest.raises(httpx2.ConnectError):
            await client.get("http://gate.test/fail")
        assert (await client.get("http://gate.test/c")).content == b"/c"


@dataclass
class TinyServer:
    """HTTP/1.1 on loopback: answers ``200 <path>``; closes after each answer if ``close``."""

    close_after_answer: bool = False
    connections: int = 0
    closed: int = 0
    closing: anyio.Event = field(default_factory=anyio.Event)
    targets: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        try:
            await self.converse(stream)
        finally:
            self.closed += 1
            self.closing.set()
            self.closing = anyio.Event()

    async def converse(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        chunk = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                self.targets.append(target)
                body = target.encode()
                await stream.send(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                if self.close_after_answer:
                    return


@asynccontextmanager
async def tiny_server(close_after_answer: bool = False) -> AsyncIterator[TinyServer]:
    server = TinyServer(close_after_answer=close_after_answer)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async with tiny_server(close_after_answer=True) as server:
        client = create_client(httpx2.Timeout(5.0))
        async with client:
            for n in range(3):
                closing = server.closing
                response = await client.get(f"http://127.0.0.1:{server.port}/r{n}")
                assert response.text == f"/r{n}"
                # The server has closed the connection (on loopback the FIN is already here).
                await closing.wait()
        assert server.connections == 3


@pytest.mark.anyio
async def test_an_open_idle_connection_is_reused() -> None:
    async with tiny_server() as server:
        async with create_client(httpx2.Timeout(5.0)) as client:
            for n in range(3):
                assert (await client.get(f"http://127.0.0.1:{server.port}/k{n}")).text == f"/k{n}"
        assert server.connections == 1


class SocketOnly:
    """The part of an httpcore2 stream ``_ProbingStream`` reads when it is made."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, info: str) -> object:
        return self.sock if info == "socket" else None


def test_the_probe_sees_data_and_end_of_stream_but_not_an_idle_peer() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        probe = _ProbingStream(SocketOnly(ours))  # type: ignore[arg-type]
        assert probe.get_extra_info("is_readable") is False
        theirs.close()
        assert probe.get_extra_info("is_readable") is True
    ours2, theirs2 = socket.socketpair()
    with ours2, theirs2:
        probe = _ProbingStream(SocketOnly(ours2))  # type: ignore[arg-type]
        theirs2.send(b"x")
        assert probe.get_extra_info("is_readable") is True


@pytest.mark.anyio
async def test_proxies_from_the_environment_still_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    async with tiny_server() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        async with create_client(httpx2.Timeout(5.0)) as client:
            response = await client.get("http://provider.invalid/v1/videos")
        # An HTTP proxy is sent the absolute URL; the request never tried to resolve the host.
        assert proxy.targets == ["http://provider.invalid/v1/videos"]
        assert response.status_code == 200
