"""The MCP server: five tools and four resources over the engine. Thin on purpose.

Tools: ``generate_video`` (billed; submits, then waits a bounded time), ``check_task`` (follows a
task, from this server, an earlier run or the CLI), ``list_scenes``, ``detect_subjects``,
``list_tasks``. Resources: ``videogen://videos/{task_id}`` (the saved MP4),
``videogen://tasks/{task_id}`` (the task as JSON), ``videogen://catalog``, ``videogen://usage``
(what was billed, the caller's alone over HTTP).

Start-up: this module imports only the SDK, the settings and data modules. The engine, the
provider adapters, the ledger, the sandbox and PyAV load when the first tool call needs them (or a
moment after start, so that unfinished tasks resume) — never while ``initialize`` and
``tools/list`` are answered, which is what a host waits for.

Errors: every ``VideogenError`` reaches the model as a ``ToolError`` carrying its message (what
happened and what to do next); anything unexpected becomes a ``ToolError`` with a generic message
and a traceback in the stderr log. Cancelling a call never abandons a billed task: the engine's
tracker keeps following it and saves the video.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import inspect
import ipaddress
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar, cast

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedToolError,
)
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    CallToolResult,
    ContentBlock,
    Icon,
    ImageContent,
    InputRequiredResult,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field, ValidationError

from videogen import package_version
from videogen.catalog import (
    CAMERA_MOVES,
    CAMERA_STRENGTHS,
    IMAGE_MAX_BYTES,
    JIMENG,
    PROMPT_MAX_CHARS,
    SCENES,
    URL_IMAGE_FORM,
    AspectRatio,
    CameraMove,
    CameraStrength,
    Duration,
    Fps,
    Mode,
    OmniResolution,
    ProviderName,
    image_help,
)
from videogen.config import Settings
from videogen.errors import EXIT_OK, ConfigError, InputError, TaskNotFound, VideogenError
from videogen.mcp_apps import apps_extension, player_tool_meta
from videogen.mcp_tasks import TasksExtension
from videogen.report import (
    SubjectReport,
    VideoResult,
    printable_model,
    render_markdown,
    render_subjects,
    result_of,
)

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from starlette.applications import Starlette

    from videogen.app import App
    from videogen.engine import Progress, ProgressCallback
    from videogen.models import Task
    from videogen.sandbox import SandboxOptions

logger = logging.getLogger("videogen.mcp")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

SERVER_NAME: Final = "videogen"
#: The longest a tool call waits: Claude Desktop drops calls after about 60 s.
MAX_WAIT_SECONDS: Final = 50.0
#: A progress notification goes out at least this often during a wait.
HEARTBEAT_SECONDS: Final = 5.0
#: Largest MP4 served through ``videogen://videos/{task_id}`` (about 11 MB once base64-encoded):
#: a 5 s 720p clip fits. Some hosts refuse any message over about 1 MB whatever this says, and a
#: bigger cap only makes the refusal slower; past it the answer names the file to open instead.
VIDEO_RESOURCE_MAX_BYTES: Final = 8 * 1024 * 1024
#: Largest poster inlined in a tool result (hosts reject results around 1 MB).
POSTER_MAX_BYTES: Final = 200 * 1024
#: Start the engine this long after the server starts, so unfinished tasks resume on their own.
DEFAULT_WARM_UP_SECONDS: Final = 2.0
DEFAULT_HTTP_PORT: Final = 8000
#: Icon sizes shipped in ``videogen/assets`` (``icon-<size>.png``); tools get the smallest.
ICON_SIZES: Final = (64, 256)
#: Most images one call may upload: a first and a tail frame (scenes and portraits take URLs).
UPLOADED_IMAGES_MAX: Final = 2
#: Largest HTTP request body: a generate_video call whose images are data URLs at the documented
#: limit (4.7 MB each, 4/3 of that as base64, a little more if a client escapes '/' in JSON),
#: plus 1 MiB for the rest of the JSON-RPC message. The SDK's default (4 MiB) answered 413 to a
#: single image near the limit, so the documented limit and the transport's must be one.
HTTP_MAX_BODY_BYTES: Final = UPLOADED_IMAGES_MAX * (IMAGE_MAX_BYTES * 4 // 3) * 102 // 100 + (
    1 << 20
)
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})

INSTRUCTIONS: Final = (
    "Turns a request into a saved MP4. Call generate_video once per video (every call is "
    "billed). If its result says the video is not ready, call check_task with the task_id it "
    "gives — never generate_video again for the same video. Show the markdown block of a "
    "finished result to the user as it is."
)


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

    def close(self) -> None:
        self._closing.set()
        self._warm_up.cancel()

    async def _run(self, start: _Start) -> None:
        try:
            from videogen.app import open_app

            async with open_app(self.settings, sandbox_options=self._sandbox_options) as app:
                start.app = app
                start.ready.set()
                await self._closing.wait()
        except Exception as error:
            logger.exception("the engine failed to start")
            start.error = error
        finally:
            start.app = None
            start.ready.set()


def _lazy(ctx: Context) -> LazyApp:
    return cast(LazyApp, ctx.request_context.lifespan_context)


async def _app(ctx: Context) -> App:
    return await _lazy(ctx).get()


# --- who is calling ----------------------------------------------------------------------------


class StaticTokenVerifier:
    """Accepts the configured bearer tokens. The caller's identity is a hash of its token, so
    tasks can be owned per token without the token itself being stored anywhere."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._digests = tuple(_digest(t) for t in tokens if t)

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = _digest(token)
        # Compare against every token so the time taken does not say which one nearly matched.
        matched = [hmac.compare_digest(digest, known) for known in self._digests]
        if not any(matched):
            return None
        return AccessToken(token=token, client_id=owner_of(token), scopes=[])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_of(token: str) -> str:
    """The owner id recorded on tasks made with ``token`` (a hash, never the token)."""
    return "token:" + _digest(token)[:16]


def _owner() -> str | None:
    """The calling token's owner id on an authenticated HTTP request; None otherwise."""
    access = get_access_token()
    return access.client_id if access is not None else None


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


async def _waiting(ctx: Context, call: Callable[[ProgressCallback], Awaitable[T]]) -> T:
    """Await ``call(on_progress)`` with progress notifications; re-raise its error unwrapped."""
    reporter = ProgressReporter(ctx, _lazy(ctx).heartbeat_seconds)
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


# --- results -----------------------------------------------------------------------------------


@contextmanager
def _tool_errors(tool: str, notice: str | None) -> Iterator[None]:
    """Every failure becomes a ``ToolError`` the model can read and act on.

    In sandbox mode its first line is the sandbox notice, as in every other result: an error
    from the offline preview must not read as one from a real (billed) provider.
    """
    try:
        yield
    except ToolError as refused:
        raise ToolError(_with_notice(notice, str(refused))) from refused
    except Exception as raised:
        error = _leaf(raised)
        if isinstance(error, VideogenError):
            raise ToolError(_with_notice(notice, error.message)) from raised
        logger.exception("%s failed unexpectedly", tool)
        raise ToolError(
            _with_notice(
                notice,
                f"{tool} failed inside videogen ({type(error).__name__}); this is a bug, not a "
                "problem with your request. The server's log (stderr) has the details. Any task "
                "already submitted keeps being tracked: call list_tasks to find it.",
            )
        ) from raised


def _leaf(error: BaseException) -> BaseException:
    """The error that matters inside task-group wrappers: the first ``VideogenError``, else the
    only one, else the group itself."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [_leaf(e) for e in error.exceptions]
    ours = [e for e in leaves if isinstance(e, VideogenError)]
    if ours:
        return ours[0]
    return leaves[0] if len(leaves) == 1 else error


def _wait_budget(wait_seconds: float | None, settings: Settings) -> float:
    wait = settings.wait_seconds if wait_seconds is None else wait_seconds
    return max(0.0, min(wait, MAX_WAIT_SECONDS))


async def _answer(task: Task, *, notice: str | None, notes: Sequence[str] = ()) -> CallToolResult:
    """The markdown block, the poster when there is one, a link to the saved video."""
    result = result_of(task, notice=notice, notes=notes)
    content: list[ContentBlock] = [TextContent(type="text", text=render_markdown(result))]
    poster = await _poster(result.poster_path, result.local_path)
    if poster is not None:
        content.append(poster)
    if result.status == "completed" and result.local_path:
        content.append(
            ResourceLink(
                type="resource_link",
                name=Path(result.local_path).name,
                uri=f"videogen://videos/{result.task_id}",
                mime_type="video/mp4",
                size=result.size_bytes,
                description=f"The saved video ({result.local_path})",
            )
        )
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


async def _poster(path: str | None, video: str | None) -> ImageContent | None:
    """The poster inlined, when it is a plain file in the video's ``.posters`` folder."""
    from videogen.files import POSTERS

    if not path or not video or Path(path).parent != Path(video).parent / POSTERS:
        return None
    try:
        data = await anyio.to_thread.run_sync(_read_saved, Path(path), POSTER_MAX_BYTES)
    except OSError:
        return None
    if isinstance(data, int):
        return None
    return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type="image/jpeg")


def _read_saved(path: Path, limit: int = VIDEO_RESOURCE_MAX_BYTES) -> bytes | int:
    """A saved file's bytes, or its size when over ``limit``; never through a link (OSError)."""
    from videogen.files import open_saved

    with open_saved(path) as f:
        size = os.fstat(f.fileno()).st_size
        return size if size > limit else f.read()


# --- catalogue and subject models --------------------------------------------------------------


class SceneInfo(BaseModel):
    name: str = Field(description="Pass as scene= (with mode=scene).")
    title: str
    summary: str
    min_images: int = Field(description="Fewest photos the scene needs.")
    max_images: int = Field(description="Most photos the scene takes.")
    photo_advice: str


class ModeInfo(BaseModel):
    name: str
    summary: str
    images: str = Field(description="How many images the mode takes.")


class Catalog(BaseModel):
    """What can be asked for: modes, scenes and camera moves."""

    modes: list[ModeInfo]
    scenes: list[SceneInfo]
    camera_moves: list[str] = Field(description="camera= values for i2v_recamera_720p.")
    camera_strengths: list[str] = Field(description="camera_strength= values.")


class TaskList(BaseModel):
    tasks: list[VideoResult]
    notice: str | None = None


def catalog() -> Catalog:
    """The catalogue as served by ``list_scenes`` and ``videogen://catalog``."""
    modes = [
        ModeInfo(name=s.name, summary=s.summary, images=_count(s.min_images, s.max_images))
        for s in JIMENG.values()
    ]
    modes.append(
        ModeInfo(
            name="omnihuman",
            images="1 portrait + audio",
            summary="A portrait speaks or sings an audio track (OmniHuman 1.5).",
        )
    )
    modes.append(
        ModeInfo(
            name="scene",
            images="see scenes",
            summary="A Jenius scene effect built from personal photos.",
        )
    )
    scenes = [
        SceneInfo(
            name=s.name,
            title=s.title,
            summary=s.summary,
            min_images=s.min_images,
            max_images=s.max_images,
            photo_advice=s.photo_advice,
        )
        for s in SCENES.values()
    ]
    return Catalog(
        modes=modes,
        scenes=scenes,
        camera_moves=list(CAMERA_MOVES),
        camera_strengths=list(CAMERA_STRENGTHS),
    )


def _count(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _catalog_markdown(cat: Catalog) -> str:
    lines = ["**Scenes** (mode=scene, provider jenius):"]
    lines += [
        f"- `{s.name}` — {s.title}: {s.summary} Needs {_count(s.min_images, s.max_images)} "
        f"photo(s). {s.photo_advice}"
        for s in cat.scenes
    ]
    lines.append("**Modes:**")
    lines += [f"- `{m.name}` ({m.images} image(s)): {m.summary}" for m in cat.modes]
    lines.append(
        "**Camera moves** (mode i2v_recamera_720p, camera=): "
        + ", ".join(f"`{c}`" for c in cat.camera_moves)
    )
    lines.append("**Camera strengths** (camera_strength=): " + ", ".join(cat.camera_strengths))
    return "\n".join(lines)


# --- the server --------------------------------------------------------------------------------

_MODE_HELP = (
    "Generation mode. Omit it to let the server choose from the inputs (text only -> t2v_720p, "
    "one image -> i2v_first_720p, first+last image -> i2v_first_tail_720p, image+audio -> "
    "omnihuman, scene given -> scene); the result says what was chosen. "
    "ti2v_pro: 1080P pro, text or one first-frame image. t2v_720p / t2v_1080p: text to video. "
    "i2v_first_720p / i2v_first_1080p: animate one image from its first frame. "
    "i2v_first_tail_720p / i2v_first_tail_1080p: transition from image to tail_image. "
    "i2v_recamera_720p: one image with a camera move (camera, camera_strength). "
    "omnihuman: a portrait speaks/sings the audio. scene: a Jenius scene effect from photos."
)
_IMAGE_HELP = image_help()


class VideogenServer(MCPServer[LazyApp]):
    """The SDK's server, answering arguments that do not fit a tool's schema in videogen's
    words (which argument, what it accepts) instead of the SDK's validation dump."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[LazyApp, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as error:
            cause = error.__cause__
            if isinstance(error, UnexpectedToolError) or not isinstance(cause, ValidationError):
                raise
            tool = self._tool_manager.get_tool(name)
            schema = tool.parameters if tool is not None else {}
            raise ToolError(refused_arguments(name, cause, schema)) from cause


def refused_arguments(tool: str, error: ValidationError, schema: dict[str, Any]) -> str:
    """Why ``tool``'s arguments were refused: one line per argument, with what it accepts (its
    published description)."""
    by_argument: dict[str, list[Any]] = {}
    for problem in error.errors():
        by_argument.setdefault(str(problem["loc"][0]) if problem["loc"] else "", []).append(problem)
    properties = schema.get("properties", {})
    lines = [f"{tool} was not run (nothing was billed): fix these arguments and call it again."]
    for argument, problems in by_argument.items():
        accepts = properties.get(argument, {}).get("description")
        lines.append(
            f"- {_argument_problem(argument, problems)}" + (f" — {accepts}" if accepts else "")
        )
    return "\n".join(lines)


def _argument_problem(argument: str, problems: list[Any]) -> str:
    first = problems[0]
    if first["type"] == "missing":
        return f"{argument} is required."
    where = argument + "".join(f"[{p}]" for p in first["loc"][1:] if isinstance(p, int))
    value = _shown(first["input"])
    if len(problems) > 1:  # one per member of a union: none of its forms fits
        return f"{where}: {value} is not of an accepted type."
    reason = str(first["msg"])
    for pydantic_words, ours in (("Input should", "it should"), ("String should", "it should")):
        if reason.startswith(pydantic_words):
            reason = ours + reason[len(pydantic_words) :]
    return f"{where}: {value} is not accepted ({reason})."


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) > 40:
        return f"a text of {len(value)} characters"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _tool(server: MCPServer[LazyApp], **options: Any) -> Callable[[F], F]:
    """``server.tool(...)`` with the docstring's indentation removed from the description."""

    def register(fn: F) -> F:
        return server.tool(description=inspect.cleandoc(fn.__doc__ or ""), **options)(fn)

    return register


def icons(sizes: Sequence[int] = ICON_SIZES) -> list[Icon]:
    """The packaged PNG icons as ``data:`` URIs, so hosts show them without fetching anything."""
    assets = files("videogen") / "assets"
    return [
        Icon(
            src="data:image/png;base64,"
            + base64.b64encode((assets / f"icon-{size}.png").read_bytes()).decode(),
            mime_type="image/png",
            sizes=[f"{size}x{size}"],
        )
        for size in sizes
    ]


def create_server(
    settings: Settings | None = None,
    *,
    sandbox_options: SandboxOptions | None = None,
    http_tokens: Sequence[str] = (),
    warm_up_after: float | None = DEFAULT_WARM_UP_SECONDS,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> MCPServer[LazyApp]:
    """Build the server. ``settings`` default to ``Settings.from_env()``, read in the lifespan.

    ``http_tokens`` turn on bearer authentication (streamable HTTP only; stdio and in-memory
    clients skip it). ``warm_up_after`` starts the engine that many seconds after the server
    starts (None: only on the first call that needs it). ``heartbeat_seconds`` is the longest
    silence between progress notifications during a wait (at most 10 s for hosts that reset
    their timeout on progress).
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[LazyApp]) -> AsyncIterator[LazyApp]:
        resolved = settings if settings is not None else Settings.from_env()
        async with anyio.create_task_group() as group:
            lazy = LazyApp(resolved, group, sandbox_options, heartbeat_seconds)
            if warm_up_after is not None:
                group.start_soon(lazy.warm_up, warm_up_after)
            try:
                yield lazy
            finally:
                lazy.close()
                group.cancel_scope.deadline = anyio.current_time() + 30  # never hang at exit

    auth: dict[str, Any] = {}
    if http_tokens:
        auth = {
            "token_verifier": StaticTokenVerifier(http_tokens),
            "auth": AuthSettings(issuer_url="https://videogen.invalid", resource_server_url=None),
        }
    level = settings.log_level if settings is not None else "WARNING"
    server = VideogenServer(
        SERVER_NAME,
        title="videogen",
        version=package_version(),
        instructions=INSTRUCTIONS,
        icons=icons(),
        lifespan=lifespan,
        log_level=cast(Any, level),
        extensions=[apps_extension(), TasksExtension(answer=_answer, owner=_owner)],
        **auth,
    )
    _register_tools(server)
    _register_resources(server)
    return server


def _register_tools(server: MCPServer[LazyApp]) -> None:
    tool_icons = icons(ICON_SIZES[:1])

    @_tool(
        server,
        title="Generate a video",
        icons=tool_icons,
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
        meta=player_tool_meta(),
    )
    async def generate_video(
        ctx: Context,
        prompt: Annotated[
            str,
            Field(
                description="What the video shows, in the user's words (at most 800 "
                "characters; 300 for omnihuman). Optional for scenes.",
                max_length=PROMPT_MAX_CHARS,
            ),
        ] = "",
        mode: Annotated[Mode | None, Field(description=_MODE_HELP)] = None,
        provider: Annotated[
            ProviderName | None,
            Field(
                description="Which API makes it: volcengine (Jimeng/OmniHuman, signed), tokenops "
                "(gateway to the same models), jenius (scenes). Default: the configured one; "
                "jenius for scenes."
            ),
        ] = None,
        image: Annotated[
            str | None,
            Field(description=f"First-frame image or omnihuman portrait: {_IMAGE_HELP}."),
        ] = None,
        tail_image: Annotated[
            str | None, Field(description=f"Last-frame image (first+tail modes): {_IMAGE_HELP}.")
        ] = None,
        images: Annotated[
            list[str] | None,
            Field(
                description=f"Several images, in order: scene photos, or first and last frame "
                f"({_IMAGE_HELP}).",
                max_length=9,
            ),
        ] = None,
        audio: Annotated[
            str | None,
            Field(description="Audio URL for omnihuman (at most 60 s): the portrait says it."),
        ] = None,
        mask: Annotated[
            str | list[str] | None,
            Field(
                description="omnihuman: which subject speaks — mask URL(s) from detect_subjects."
            ),
        ] = None,
        duration: Annotated[Duration, Field(description="Seconds: 4, 5, 6, 8 or 10.")] = 5,
        fps: Annotated[Fps, Field(description="Frames per second: 24, 25 or 30.")] = 24,
        aspect_ratio: Annotated[
            AspectRatio | None,
            Field(description="Text-to-video only; image modes follow the image. Default 16:9."),
        ] = None,
        seed: Annotated[int, Field(description="-1 for random; a fixed seed repeats.")] = -1,
        camera: Annotated[
            CameraMove | None, Field(description="Camera move for i2v_recamera_720p.")
        ] = None,
        camera_strength: Annotated[
            CameraStrength | None, Field(description="Camera move strength.")
        ] = None,
        resolution: Annotated[
            OmniResolution | None, Field(description="omnihuman output: 720 or 1080 (default).")
        ] = None,
        fast_mode: Annotated[
            bool, Field(description="omnihuman: faster, somewhat lower quality.")
        ] = False,
        scene: Annotated[
            str | None,
            Field(
                description="Jenius scene name (see list_scenes): "
                + ", ".join(SCENES)
                + ". Another name is sent to Jenius as given (it refuses scenes it lacks)."
            ),
        ] = None,
        filename: Annotated[
            str | None,
            Field(description="File name for the saved MP4 (no folders). Default from prompt."),
        ] = None,
        wait_seconds: Annotated[
            float | None,
            Field(
                description="How long this call waits for the video before answering with "
                "the task id (default about 45, at most 50). The task goes on either way.",
                ge=0,
                le=MAX_WAIT_SECONDS,
            ),
        ] = None,
        new: Annotated[
            bool,
            Field(
                description="true to bill a new task even if an identical request was made in "
                "the last minutes (by default that earlier task is returned)."
            ),
        ] = False,
    ) -> Annotated[CallToolResult, VideoResult]:
        """Generate a video and save it as an MP4 on this computer. Every call is billed.

        Submits one task to the provider, then waits (up to wait_seconds) while it renders,
        downloads it and answers with a markdown block (link, prompt, duration, mode, FPS,
        save path) to show the user as it is. If the result says the video is not ready yet,
        the task keeps running and is saved in the background: call check_task with the
        task_id from the result (later, as the result suggests). Do NOT call generate_video
        again for the same video — that bills a second one. Use list_scenes for scene names
        and camera moves, and detect_subjects before omnihuman when a portrait shows several
        people.
        """
        with _tool_errors("generate_video", _lazy(ctx).settings.notice):
            from videogen.intake import build_request, choose_provider

            lazy = _lazy(ctx)
            chosen = choose_provider(
                explicit=provider, mode=mode, scene=scene, default=lazy.settings.provider
            )
            intake = build_request(
                prompt=prompt,
                provider=chosen,
                mode=mode,
                image=image,
                tail_image=tail_image,
                images=images or (),
                audio=audio,
                mask=mask,
                duration=duration,
                fps=fps,
                aspect_ratio=aspect_ratio,
                seed=seed,
                camera=camera,
                camera_strength=camera_strength,
                resolution=resolution,
                fast_mode=fast_mode,
                scene=scene,
                filename=filename,
            )
            app = await lazy.get()
            owner = _owner()
            task: Task = await _waiting(
                ctx,
                lambda on_progress: app.engine.generate(
                    intake.request,
                    wait_seconds=_wait_budget(wait_seconds, app.settings),
                    on_progress=on_progress,
                    new=new,
                    owner=owner,
                ),
            )
            return await _answer(
                await app.engine.poster(task), notice=app.notice, notes=intake.notes
            )

    @_tool(
        server,
        title="Check a video task",
        icons=tool_icons,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True),
        meta=player_tool_meta(),
    )
    async def check_task(
        ctx: Context,
        task_id: Annotated[
            str,
            Field(
                description="The task_id from generate_video or list_tasks, e.g. vg_1a2b3c.",
                min_length=1,
                max_length=64,
            ),
        ],
        wait_seconds: Annotated[
            float | None,
            Field(
                description="How long to wait for it to finish before answering (default "
                "about 45, at most 50; 0 answers at once).",
                ge=0,
                le=MAX_WAIT_SECONDS,
            ),
        ] = None,
    ) -> Annotated[CallToolResult, VideoResult]:
        """Follow a video task: its status, and once saved the same block generate_video gives.

        Free (not billed). Works for tasks from earlier sessions and from the videogen CLI. If
        it is still running, the answer says when to check again; call check_task again then.
        """
        with _tool_errors("check_task", _lazy(ctx).settings.notice):
            app = await _app(ctx)
            owner = _owner()
            task: Task = await _waiting(
                ctx,
                lambda on_progress: app.engine.check(
                    task_id,
                    wait_seconds=_wait_budget(wait_seconds, app.settings),
                    on_progress=on_progress,
                    owner=owner,
                ),
            )
            return await _answer(await app.engine.poster(task), notice=app.notice)

    @_tool(
        server,
        title="List scenes, modes and camera moves",
        icons=tool_icons,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def list_scenes(ctx: Context) -> Annotated[CallToolResult, Catalog]:
        """List the Jenius scenes (what photos each needs), the generation modes, and the
        camera moves and strengths for i2v_recamera_720p. Free; no provider is called."""
        cat = catalog()
        text = _with_notice(_lazy(ctx).settings.notice, _catalog_markdown(cat))
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=cat.model_dump(mode="json"),
        )

    @_tool(
        server,
        title="Detect subjects in a portrait",
        icons=tool_icons,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True),
    )
    async def detect_subjects(
        ctx: Context,
        image: Annotated[str, Field(description=f"The portrait: {URL_IMAGE_FORM}.", min_length=1)],
        provider: Annotated[
            ProviderName | None,
            Field(description="volcengine or tokenops (default: the configured one)."),
        ] = None,
    ) -> Annotated[CallToolResult, SubjectReport]:
        """Check a portrait before an omnihuman video: whether it contains a subject OmniHuman
        can animate, and the subject masks (largest first). When several people are shown,
        pass the chosen mask back as generate_video(mode="omnihuman", mask=...). Runs the
        provider's detection and recognition (small charges may apply), waits up to 30 s."""
        with _tool_errors("detect_subjects", _lazy(ctx).settings.notice):
            app = await _app(ctx)
            report: SubjectReport = await _waiting(
                ctx,
                lambda _: app.engine.detect_subjects(image, provider=provider, wait_seconds=30),
            )
            text = render_subjects(report)
            if report.mask_urls:
                text += (
                    '\n- Next: generate_video(mode="omnihuman", image=..., audio=..., mask=<one>)'
                )
            return CallToolResult(
                content=[TextContent(type="text", text=_with_notice(app.notice, text))],
                structured_content=report.model_dump(mode="json"),
            )

    @_tool(
        server,
        title="List recent video tasks",
        icons=tool_icons,
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
    )
    async def list_tasks(
        ctx: Context,
        limit: Annotated[int, Field(description="How many, newest first.", ge=1, le=100)] = 20,
    ) -> Annotated[CallToolResult, TaskList]:
        """List recent video tasks, newest first, with status and save path. Free. Use it to
        find a task_id for check_task (for example after a lost or cancelled call)."""
        with _tool_errors("list_tasks", _lazy(ctx).settings.notice):
            app = await _app(ctx)
            tasks = app.engine.list_tasks(limit=limit, owner=_owner())
            listing = TaskList(tasks=[result_of(t, notice=None) for t in tasks], notice=app.notice)
            return CallToolResult(
                content=[TextContent(type="text", text=_tasks_markdown(listing))],
                structured_content=listing.model_dump(mode="json"),
            )


def _with_notice(notice: str | None, text: str) -> str:
    return f"{notice}\n{text}" if notice else text


def _tasks_markdown(listing: TaskList) -> str:
    lines = [listing.notice] if listing.notice else []
    if not listing.tasks:
        return "\n".join([*lines, "No video tasks yet."])
    lines.append("**Recent video tasks** (newest first):")
    for r in map(printable_model, listing.tasks):
        where = r.local_path or r.video_url or r.next_step or r.message
        lines.append(f"- `{r.task_id}` — {r.status} — {r.mode} — {r.prompt[:60]!r} — {where}")
    return "\n".join(lines)


def _register_resources(server: MCPServer[LazyApp]) -> None:
    @server.resource(
        "videogen://videos/{task_id}",
        name="video",
        title="A saved video",
        mime_type="video/mp4",
        description=f"The saved MP4 of a completed task, for files up to "
        f"{VIDEO_RESOURCE_MAX_BYTES // (1024 * 1024)} MB (about "
        f"{VIDEO_RESOURCE_MAX_BYTES * 4 // 3 // 1_000_000} MB as base64; some hosts refuse "
        "messages over about 1 MB). For a larger file, or such a host, open the local_path "
        "given in the task's result instead.",
    )
    async def video(task_id: str, ctx: Context) -> bytes:
        task = await _find_task(ctx, task_id)
        if task.status != "completed" or not task.local_path:
            raise ResourceNotFoundError(f"Task {task_id} has no saved video yet ({task.status}).")
        try:
            data = await anyio.to_thread.run_sync(_read_saved, Path(task.local_path))
        except FileNotFoundError as error:
            raise ResourceNotFoundError(f"The video of {task_id} is gone from disk.") from error
        except OSError as error:
            raise ResourceError(
                f"The video of {task_id} is not served: {task.local_path} is no longer a plain "
                "file in its folder (it was replaced, e.g. by a link)."
            ) from error
        if isinstance(data, int):
            raise ResourceError(
                f"The video of {task_id} is {data / 1048576:.1f} MB, more than this resource "
                f"serves ({VIDEO_RESOURCE_MAX_BYTES // 1048576} MB): it is saved at "
                f"{task.local_path} — open that file instead."
            )
        return data

    @server.resource(
        "videogen://tasks/{task_id}",
        name="task",
        title="A video task",
        mime_type="application/json",
        description="One task as JSON: request, status history, paths, probed media facts.",
    )
    async def task_json(task_id: str, ctx: Context) -> str:
        task = await _find_task(ctx, task_id)
        return task.model_dump_json(indent=2, exclude={"owner"})

    @server.resource(
        "videogen://usage{?days}",
        name="usage",
        title="What was billed",
        mime_type="application/json",
        description="Videos, seconds and spend billed by UTC day, provider, mode and owner over "
        "the last `days` days (default 30), and the spending limits in force. Over HTTP, the "
        "calling token's tasks alone.",
    )
    async def usage_json(ctx: Context, days: int = 30) -> str:
        from videogen.spending import ledger_usage

        if not 1 <= days <= 3660:
            raise ResourceError("days must be between 1 and 3660.")
        app = await _app(ctx)
        report = ledger_usage(app.ledger, app.settings.spending, now=time.time(), days=days,
                              sandbox=app.settings.sandbox, owner=_owner())  # fmt: skip
        return report.model_dump_json(indent=2)

    @server.resource(
        "videogen://catalog",
        name="catalog",
        title="Modes, scenes and camera moves",
        mime_type="application/json",
    )
    def catalog_json() -> str:
        return json.dumps(catalog().model_dump(mode="json"), indent=2, ensure_ascii=False)


async def _find_task(ctx: Context, task_id: str) -> Task:
    try:
        app = await _app(ctx)
        return app.engine.get(task_id, owner=_owner())
    except Exception as raised:
        error = _leaf(raised)
        if isinstance(error, TaskNotFound):
            raise ResourceNotFoundError(error.message) from raised
        if isinstance(error, VideogenError):
            raise ResourceError(error.message) from raised
        raise


# --- transports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpPlan:
    """How the HTTP transport will be served, decided before anything starts."""

    host: str
    port: int
    tokens: tuple[str, ...]
    security: TransportSecuritySettings | None


def plan_http(settings: Settings, host: str, port: int) -> HttpPlan:
    """Refuse (``ConfigError``) to serve off loopback without a token, or with an input folder
    that is not a folder; keep Host/Origin checks on for loopback binds."""
    for folder in settings.input_dirs:
        if not folder.is_dir():
            raise ConfigError(
                f"VIDEOGEN_INPUT_DIRS names {str(folder)!r}, which is not a folder: create it, "
                "or remove it from the list."
            )
    loopback = _is_loopback(host)
    if not loopback and not settings.http_tokens:
        raise ConfigError(
            f"Refusing to serve MCP over HTTP on {host} without a token: anyone who can reach "
            "it could generate billed videos. Set VIDEOGEN_HTTP_TOKEN to one or more "
            "comma-separated secrets (clients send 'Authorization: Bearer <token>'), or bind "
            "127.0.0.1."
        )
    security = None
    if loopback and host not in LOOPBACK_NAMES:  # e.g. 127.0.0.2: the SDK only knows 3 names
        security = TransportSecuritySettings(
            allowed_hosts=[f"{host}:*", "127.0.0.1:*", "localhost:*"],
            allowed_origins=[f"http://{host}:*", "http://127.0.0.1:*", "http://localhost:*"],
        )
    return HttpPlan(host, port, settings.http_tokens, security)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_app(plan: HttpPlan, settings: Settings, **server_options: Any) -> Starlette:
    """The streamable-HTTP ASGI app (SSE responses, so progress notifications flow).

    Its clients are not on this machine: their local image paths are read only inside
    ``settings.input_dirs`` (none by default).
    """
    settings = replace(settings, remote_clients=True)
    server = create_server(settings, http_tokens=plan.tokens, **server_options)
    return server.streamable_http_app(
        host=plan.host,
        transport_security=plan.security,
        max_request_body_size=HTTP_MAX_BODY_BYTES,
    )


async def serve_http_async(
    plan: HttpPlan,
    settings: Settings,
    listener: socket.socket | None = None,
    **server_options: Any,
) -> None:
    """Serve ``plan`` on ``listener`` (default: a socket bound by ``bind_listener``)."""
    import uvicorn

    listener = listener or bind_listener(plan.host, plan.port)
    app = http_app(plan, settings, **server_options)
    config = uvicorn.Config(
        app, host=plan.host, port=plan.port, log_level=settings.log_level.lower(), lifespan="on"
    )
    await uvicorn.Server(config).serve(sockets=[listener])


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), or ``InputError`` naming
    the option to change: never a traceback for a port that cannot be had."""
    if not 0 <= port <= 65535:
        raise InputError(
            f"Port {port} is not a TCP port: give --port 1-65535, or 0 for any free port."
        )
    # As uvicorn binds: IPv6 for an address with a colon, else IPv4 (a name is resolved).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen()  # connections wait in the backlog until the server accepts them
    except (OSError, UnicodeError) as error:
        listener.close()
        reason = getattr(error, "strerror", None) or error
        raise InputError(
            f"Cannot listen on {host} port {port} ({reason}): give --host an address of this "
            "machine (e.g. 127.0.0.1) and a free --port (0 picks one)."
        ) from None
    return listener


def listening_url(listener: socket.socket) -> str:
    """The MCP endpoint a bound listener serves, with the port it really got."""
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/mcp"


def serve(
    transport: Literal["stdio", "streamable-http"] = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_HTTP_PORT,
    settings: Settings | None = None,
) -> None:
    """Serve until the client closes (stdio) or until interrupted (HTTP).

    Raises ``ConfigError`` for a bad setting, and for HTTP bound off loopback without
    ``VIDEOGEN_HTTP_TOKEN``, and ``InputError`` for a host or port that cannot be bound —
    before anything starts.
    """
    settings = settings or Settings.from_env()
    _configure_logging(settings)
    if transport == "stdio":
        anyio.run(create_server(settings).run_stdio_async)
        return
    plan = plan_http(settings, host, port)
    listener = bind_listener(host, port)
    # A plain line, not a log record: it is what a person starting the server waits to read.
    print(
        f"videogen: serving MCP over streamable HTTP at {listening_url(listener)}", file=sys.stderr
    )
    anyio.run(serve_http_async, plan, settings, listener)


def _configure_logging(settings: Settings) -> None:
    # stderr only: stdout carries the stdio protocol.
    logging.basicConfig(
        stream=sys.stderr,
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``jimeng-videogen-mcp``: stdio by default; ``--http [--host H] [--port P]`` for HTTP."""
    parser = argparse.ArgumentParser(
        prog="jimeng-videogen-mcp", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT, help="HTTP port (8000)")
    args = parser.parse_args(argv)
    try:
        serve("streamable-http" if args.http else "stdio", host=args.host, port=args.port)
    except VideogenError as error:
        print(f"{parser.prog}: {error.message}", file=sys.stderr)
        return error.exit_code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
