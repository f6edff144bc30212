"""The HTTP client each provider gets: ``httpx2`` tuned for hundreds of tasks at once.

Two things change from a plain ``httpx2.AsyncClient``, both invisible to the adapters:

- **Requests beyond the pool's size wait in a gate** (a FIFO semaphore, O(1) per request)
  instead of in httpcore2's pool queue, whose every pass walks all waiting requests: with 500
  submits at once that queue is quadratic. The wait is bounded by the request's ``pool``
  timeout and ends in ``httpx2.PoolTimeout`` (nothing was sent), as the pool's own wait does.
- **Idle connections are probed with one syscall.** Each pass of the pool asks every idle
  connection whether the server closed it; httpcore2's anyio stream answers by re-reading all
  the socket's attributes (a ``getpeername``) and building a ``poll`` object each time. Here the
  socket is looked up once and registered once with a ``poll`` object, so a probe is one
  ``poll(0)`` call.

Everything else (timeouts, proxies from the environment, TLS, HTTP/1.1) is ``httpx2``'s own.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import anyio
import httpcore2
import httpx2

#: Connections kept per provider: the tracker may poll hundreds of tasks at once.
MAX_CONNECTIONS: Final = 100


def create_client(
    timeout: httpx2.Timeout, *, max_connections: int = MAX_CONNECTIONS
) -> httpx2.AsyncClient:
    """An ``AsyncClient`` whose transports gate requests and probe idle sockets cheaply.

    Every transport the client makes is tuned, the direct one and any proxy transport it
    mounts from the environment (``HTTPS_PROXY``, ``NO_PROXY`` and friends keep working).
    """
    limits = httpx2.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return _TunedClient(timeout=timeout, limits=limits)


class _TunedClient(httpx2.AsyncClient):
    """``httpx2.AsyncClient`` with each transport it builds passed through :func:`_tune`."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return _tune(super()._init_transport(*args, **kwargs), kwargs.get("limits"))

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return _tune(super()._init_proxy_transport(*args, **kwargs), kwargs.get("limits"))


def _tune(
    transport: httpx2.AsyncBaseTransport, limits: httpx2.Limits | None
) -> httpx2.AsyncBaseTransport:
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore2.AsyncConnectionPool) and hasattr(select, "poll"):
        # The pool's backend is only used to open connections; swapping it keeps every other
        # setting the transport gave the pool.
        pool._network_backend = _ProbingBackend()
    size = limits.max_connections if limits is not None else None
    return transport if size is None else GatedTransport(transport, size)


class GatedTransport(httpx2.AsyncBaseTransport):
    """At most ``limit`` requests inside ``inner`` at once; the rest wait their turn, FIFO.

    A request holds its place until its response is closed (read in full by ``send``, or
    closed by the caller of a streamed ``send``), exactly as it holds a pooled connection.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int) -> None:
        self._inner = inner
        self._gate = anyio.Semaphore(limit)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            self._gate.acquire_nowait()  # the common case: a place is free, no timer needed
        except anyio.WouldBlock:
            await self._wait_for_place(request)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self._gate.release()
            raise
        if response.is_closed:
            # A body the transport already read in full (an in-memory answer) holds nothing.
            self._gate.release()
        else:
            response.stream = _ReleasingStream(response.stream, self._gate)
        return response

    async def _wait_for_place(self, request: httpx2.Request) -> None:
        wait = request.extensions.get("timeout", {}).get("pool")
        try:
            with anyio.fail_after(wait):
                await self._gate.acquire()
        except TimeoutError:
            raise httpx2.PoolTimeout(
                "Timed out waiting for a free connection", request=request
            ) from None

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ReleasingStream(httpx2.AsyncByteStream):
    """A response body that gives the gate's place back when it is closed (once)."""

    def __init__(self, inner: Any, gate: anyio.Semaphore) -> None:
        self._inner = inner
        self._gate: anyio.Semaphore | None = gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            gate, self._gate = self._gate, None
            if gate is not None:
                gate.release()


# The ``timeout`` parameters below are httpcore2's interface, not a choice made here.
# ruff: noqa: ASYNC109


class _ProbingBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's anyio backend, with streams that probe their socket cheaply."""

    def __init__(self) -> None:
        self._backend = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(
            host,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )
        return _ProbingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _ProbingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


class _ProbingStream(httpcore2.AsyncNetworkStream):
    """Delegates to the anyio stream; answers ``is_readable`` with one ``poll(0)`` on a poll
    object made when the connection opened."""

    def __init__(self, stream: httpcore2.AsyncNetworkStream) -> None:
        self._stream = stream
        self._poll: select.poll | None = None
        sock: socket.socket | None = stream.get_extra_info("socket")
        if sock is not None and sock.fileno() >= 0:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        self._poll = None
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _ProbingStream(tls)

    def get_extra_info(self, info: str) -> Any:
        if info != "is_readable":
            return self._stream.get_extra_info(info)
        # Readable (data, end of stream, or an error) on an idle connection means the server
        # closed it; a stream with no socket counts as closed, as in httpcore2.
        return self._poll is None or bool(self._poll.poll(0))
