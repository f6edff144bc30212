"""Running the sandbox: ``serve()`` inside the caller's event loop, ``serve_in_thread()`` beside it.

The listening socket is bound (to a free loopback port) and listening *before* uvicorn starts,
so the URLs are valid the moment ``serve()`` yields: connections wait in the backlog until the
server accepts them. uvicorn's signal handling is switched off (the embedding program owns
Ctrl-C); shutdown is quick: open keep-alive connections are closed, in-flight ones get a second.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import anyio
import uvicorn
from anyio.from_thread import start_blocking_portal

from videogen.catalog import ProviderName
from videogen.config import ProviderEndpoint
from videogen.sandbox.app import build_app
from videogen.sandbox.assets import ASSET_KEY
from videogen.sandbox.core import Sandbox
from videogen.sandbox.jenius import SANDBOX_JENIUS_KEY
from videogen.sandbox.render import RENDERS_DIRNAME, Renderer, default_renderer, renderer_for
from videogen.sandbox.state import Clock, RequestLog, SandboxOptions, SandboxState
from videogen.sandbox.store import TaskStore
from videogen.sandbox.tokenops import SANDBOX_TOKENOPS_KEY
from videogen.sandbox.volcengine import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers (the program that embeds the sandbox owns them) and
    with a prompt stop: ``stop()`` wakes the main loop at once, and shutdown polls every few
    milliseconds instead of uvicorn's fixed 100 ms naps (tests start and stop many sandboxes)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.exit_requested = anyio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self.exit_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # on_tick keeps the Date header fresh
            counter = (counter + 1) % 864000
            with anyio.move_on_after(0.1):
                await self.exit_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now, busy ones after
        with anyio.move_on_after(self.config.timeout_graceful_shutdown or 1.0):
            while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


@dataclass
class RunningSandbox:
    """A sandbox that is listening. ``options`` may be changed while it runs."""

    url: str
    state: SandboxState = field(repr=False)
    renderer: Renderer = field(repr=False)

    @property
    def volcengine_url(self) -> str:
        return self.url

    @property
    def tokenops_url(self) -> str:
        return self.url + "/tokenops/v1"

    @property
    def jenius_url(self) -> str:
        return self.url + "/jenius/api"

    @property
    def log(self) -> RequestLog:
        return self.state.log

    @property
    def options(self) -> SandboxOptions:
        return self.state.options

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def asset_url(self, path: str) -> str:
        """The URL of a test asset (``/assets/image/640x480.png``), with this process's key."""
        return f"{self.url}{path}?key={ASSET_KEY}"

    def history(self) -> RequestLog:
        """Every request answered by every sandbox on this ``state_dir`` (earlier processes and
        concurrent ones included); just ``log`` when nothing is persisted."""
        return self.state.history()

    def set_faults(self, *specs: str) -> None:
        """Replace the active faults (counters restart). ``ValueError`` for a bad spec."""
        self.state.set_faults(tuple(specs))

    def endpoints(self) -> dict[ProviderName, ProviderEndpoint]:
        """Endpoints for every provider, pointing here, with the sandbox credentials."""
        return {
            "jenius": ProviderEndpoint(base_url=self.jenius_url, api_key=SANDBOX_JENIUS_KEY),
            "tokenops": ProviderEndpoint(base_url=self.tokenops_url, api_key=SANDBOX_TOKENOPS_KEY),
            "volcengine": ProviderEndpoint(
                base_url=self.volcengine_url,
                access_key=SANDBOX_ACCESS_KEY,
                secret_key=SANDBOX_SECRET_KEY,
            ),
        }

    def env(self) -> dict[str, str]:
        """Environment variables that point the program (or seed 002's script) here."""
        return {
            "JIMENG_VIDEO_API_URL": self.volcengine_url,
            "VOLC_ACCESSKEY": SANDBOX_ACCESS_KEY,
            "VOLC_SECRETKEY": SANDBOX_SECRET_KEY,
            "TOKENOPS_BASE_URL": self.tokenops_url,
            "TOKENOPS_API_KEY": SANDBOX_TOKENOPS_KEY,
            "JENIUS_BASE_URL": self.jenius_url,
            "JENIUS_API_KEY": SANDBOX_JENIUS_KEY,
        }


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def serve(
    options: SandboxOptions | None = None,
    *,
    clock: Clock | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    renderer: Renderer | None = None,
) -> AsyncIterator[RunningSandbox]:
    """Run the sandbox on ``host`` (a free port unless given) inside the current event loop.

    ``clock`` drives task statuses, URL expiry and signature time checks (default
    ``time.time``; see ``ManualClock``). Renders are shared process-wide unless a
    ``renderer`` is given (or ``options.state_dir`` is set: then they live under it).
    """
    options = options or SandboxOptions()
    clock = clock or time.time
    store: TaskStore | None = None
    state_dir = options.state_dir
    if state_dir is not None:
        store = await anyio.to_thread.run_sync(lambda: TaskStore(state_dir, now=clock()))
        renderer = renderer or renderer_for(state_dir / RENDERS_DIRNAME)
    state = SandboxState(options, clock, store)
    try:
        async with _serve(state, renderer or default_renderer(), host, port) as running:
            yield running
    finally:
        if store is not None:
            store.close()


@asynccontextmanager
async def _serve(
    state: SandboxState, renderer: Renderer, host: str, port: int
) -> AsyncIterator[RunningSandbox]:
    sandbox = Sandbox(state, renderer)
    sock = _listen(host, port)
    actual_port = sock.getsockname()[1]
    state.base_url = f"http://{host}:{actual_port}"
    config = uvicorn.Config(
        build_app(sandbox),
        log_level="warning",
        access_log=False,
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=1,
        log_config=None,
    )
    server = _EmbeddedServer(config)
    stopped = anyio.Event()

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            stopped.set()
            sandbox.ready.set()

    error: BaseException | None = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            # set by the app's lifespan startup; the socket is already listening, so clients
            # that connect before uvicorn accepts simply wait in the backlog
            await sandbox.ready.wait()
            if stopped.is_set():
                raise RuntimeError("the sandbox server failed to start")
            try:
                yield RunningSandbox(state.base_url, state, sandbox.renderer)
            except BaseException as exc:  # re-raised below, unwrapped (not in an ExceptionGroup)
                error = exc
            finally:
                # Stop uvicorn gracefully *before* an error leaving the block reaches the task
                # group: a cancelled uvicorn logs the error's traceback at ERROR level.
                server.stop()
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await stopped.wait()
    finally:
        sock.close()
    if error is not None:
        raise error


@contextmanager
def serve_in_thread(
    options: SandboxOptions | None = None, *, clock: Clock | None = None, port: int = 0
) -> Iterator[RunningSandbox]:
    """``serve()`` on its own event loop in a daemon thread, for synchronous callers."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(options, clock=clock, port=port)) as running,
    ):
        yield running


def run_forever(
    options: SandboxOptions, *, port: int, on_ready: Callable[[RunningSandbox], None]
) -> None:
    """Run until Ctrl-C (the command line's ``main``)."""

    async def main() -> None:
        async with serve(options, port=port) as running:
            on_ready(running)
            await anyio.sleep_forever()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
