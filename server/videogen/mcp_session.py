"""What every MCP tool call shares: the engine started on first use (``LazyApp``), progress
notifications during a wait (``ProgressReporter``), and errors turned into ``ToolError``s."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar, cast

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from videogen.config import Settings
from videogen.errors import VideogenError
from videogen.report import leaf_error, with_notice

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from videogen.app import App, SandboxOptions
    from videogen.engine import Progress, ProgressCallback

logger = logging.getLogger("videogen.mcp")
T = TypeVar("T")

#: The longest a tool call waits: Claude Desktop drops calls after about 60 s.
MAX_WAIT_SECONDS: Final = 50.0
#: A progress notification goes out at least this often during a wait.
HEARTBEAT_SECONDS: Final = 5.0


# --- the engine, started on first use --------------------------------------------------------


@dataclass
class _Start:
    """One attempt at starting the app; a failed attempt is replaced by the next call."""

    ready: anyio.Event = field(default_factory=anyio.Event)
    app: App | None = None
    error: BaseException | None = None


class LazyApp:
    """The application (engine, ledger, providers, sandbox), started on first use.

    ``open_app`` is entered and left by one runner task in the lifespan's task group (anyio
    cancel scopes must be left by the task that entered them), so a tool call only waits for
    the start; a cancelled call never takes the app down with it.
    """

    def __init__(
        self,
        settings: Settings,
        task_group: TaskGroup,
        sandbox_options: SandboxOptions | None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.settings = settings
        self.heartbeat_seconds = heartbeat_seconds
        self._task_group = task_group
        self._sandbox_options = sandbox_options
        self._start: _Start | None = None
        self._closing = anyio.Event()
        #: Set by ``stop_waiting``: the server is stopping.
        self._stopping = False
        #: The pending warm-up, cancelled by ``close`` (a client that left needs no engine).
        self._warm_up = anyio.CancelScope()

    async def get(self) -> App:
        """The running app; starts it if needed. Raises the start-up error, if any."""
        start = self._start
        if start is None or (start.ready.is_set() and start.app is None):
            start = self._start = _Start()
            self._task_group.start_soon(self._run, start)
        await start.ready.wait()
        if start.app is None:
            raise start.error or RuntimeError("the engine has stopped")
        return start.app

    async def warm_up(self, delay: float) -> None:
        """Start the app after ``delay`` s unless a tool call started it already; ``close``
        (the client went away) cancels it, so the server exits at once."""
        with self._warm_up:
            await anyio.sleep(delay)
            try:
                await self.get()
            except Exception as error:
                logger.warning("the engine could not start (%s); tool calls will retry", error)
        if self._warm_up.cancelled_caught:
            logger.info("engine warm-up cancelled: the server is closing")

    def stop_waiting(self) -> None:
        """The server is stopping: every tool call waiting on a task answers now with the task
        as it stands, and later ones do not wait (``Engine.stop_waiting``)."""
        self._stopping = True
        start = self._start
        if start is not None and start.app is not None:
            start.app.engine.stop_waiting()

    def close(self) -> None:
        self._closing.set()
        self._warm_up.cancel()

    async def _run(self, start: _Start) -> None:
        try:
            from videogen.app import open_app

            async with open_app(self.settings, sandbox_options=self._sandbox_options) as app:
                if self._stopping:
                    app.engine.stop_waiting()
                start.app = app
                start.ready.set()
                await self._closing.wait()
        except Exception as error:
            logger.exception("the engine failed to start")
            start.error = error
        finally:
            start.app = None
            start.ready.set()


def lazy_app(ctx: Context) -> LazyApp:
    return cast(LazyApp, ctx.request_context.lifespan_context)


async def running_app(ctx: Context) -> App:
    return await lazy_app(ctx).get()


# --- progress ----------------------------------------------------------------------------------


class ProgressReporter:
    """Progress notifications during a wait: one per change of the task (status, fraction done,
    message), plus a heartbeat so that no more than ``heartbeat`` seconds pass without one
    (some hosts reset their timeout on each). An update that changes nothing is not sent again
    within the heartbeat.

    ``progress`` is the percentage done as far as the provider has said (0 until it says; 100
    once saved), and rises by ``PROGRESS_STEP`` when nothing more is known, since each
    notification must carry a larger value than the last. ``total`` is 100 once the provider
    has given a fraction (or the task is done), and absent before. The message says where the
    task stands, e.g. ``vg_1a2b running (40%) — 12 s elapsed``.
    """

    PROGRESS_STEP: Final = 0.001

    def __init__(self, ctx: Context, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self._ctx = ctx
        self._heartbeat = heartbeat
        self._started = time.monotonic()
        self._last_value = 0.0
        self._last_sent = self._started
        self._percent = 0.0
        self._total: float | None = None
        self._state: tuple[object, ...] | None = None
        self._label = "submitting"
        self._lock = anyio.Lock()

    async def on_progress(self, progress: Progress) -> None:
        state = (progress.task_id, progress.status, progress.fraction, progress.message)
        async with self._lock:
            if state == self._state and not self._silent_for_a_heartbeat():
                return  # nothing new: the heartbeat speaks for it
            self._state = state
            self._label = f"{progress.task_id} {progress.status}"
            if progress.fraction is not None:
                self._label += f" ({progress.fraction:.0%})"
                self._percent = max(self._percent, _percent_done(progress))
                self._total = 100.0
            await self._send(progress.message)

    async def beat(self) -> None:
        """Run until cancelled, filling every silence longer than the heartbeat."""
        while True:
            await anyio.sleep(max(0.0, self._last_sent + self._heartbeat - time.monotonic()))
            async with self._lock:  # an update may have been sent while this one waited
                if self._silent_for_a_heartbeat():
                    await self._send(None)

    def _silent_for_a_heartbeat(self) -> bool:
        return time.monotonic() - self._last_sent >= self._heartbeat - 0.01

    async def _send(self, detail: str | None) -> None:
        """Send one notification; the caller holds the lock."""
        now = time.monotonic()
        value = self._percent
        if value <= self._last_value:
            value = round(self._last_value + self.PROGRESS_STEP, 6)
        if self._total is not None and value > self._total:
            return  # the task is done: there is nothing left to report progress on
        self._last_value, self._last_sent = value, now
        message = f"{self._label} — {now - self._started:.0f} s elapsed"
        if detail:
            message += f": {detail}"
        try:
            await self._ctx.report_progress(value, self._total, message)
        except Exception:
            # A lost notification must not cost the caller its (billed) result.
            logger.debug("progress notification not sent", exc_info=True)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ProgressReporter]:
        """Heartbeat while the body runs. Errors of the body come out as they are."""
        async with anyio.create_task_group() as group:
            group.start_soon(self.beat)
            try:
                yield self
            finally:
                group.cancel_scope.cancel()


def _percent_done(progress: Progress) -> float:
    """The provider's fraction as a percentage; 100 only once the video is saved (a provider
    that has finished leaves the download to do)."""
    fraction = min(max(progress.fraction or 0.0, 0.0), 1.0)
    return 100.0 if progress.status == "completed" else min(fraction * 100, 99.0)


async def waiting(ctx: Context, call: Callable[[ProgressCallback], Awaitable[T]]) -> T:
    """Await ``call(on_progress)`` with progress notifications; re-raise its error unwrapped."""
    reporter = ProgressReporter(ctx, lazy_app(ctx).heartbeat_seconds)
    outcome: T | None = None
    failure: Exception | None = None
    async with reporter.running():
        try:
            outcome = await call(reporter.on_progress)
        except Exception as error:  # raised outside the task group, not as an ExceptionGroup
            failure = error
    if failure is not None:
        raise failure
    return cast(T, outcome)


# --- errors and waits ------------------------------------------------------------------------


@contextmanager
def tool_errors(tool: str, notice: str | None) -> Iterator[None]:
    """Every failure becomes a ``ToolError`` the model can read and act on.

    In sandbox mode its first line is the sandbox notice, as in every other result: an error
    from the offline preview must not read as one from a real (billed) provider.
    """
    try:
        yield
    except ToolError as refused:
        raise ToolError(with_notice(notice, str(refused))) from refused
    except Exception as raised:
        error = leaf_error(raised)
        if isinstance(error, VideogenError):
            raise ToolError(with_notice(notice, error.message)) from raised
        logger.exception("%s failed unexpectedly", tool)
        raise ToolError(
            with_notice(
                notice,
                f"{tool} failed inside videogen ({type(error).__name__}); this is a bug, not a "
                "problem with your request. The server's log (stderr) has the details. Any task "
                "already submitted keeps being tracked: call list_tasks to find it.",
            )
        ) from raised


def wait_budget(wait_seconds: float | None, settings: Settings) -> float:
    wait = settings.wait_seconds if wait_seconds is None else wait_seconds
    return max(0.0, min(wait, MAX_WAIT_SECONDS))
