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

This module composes the server: the tools and resources are in ``mcp_tools``, what every call
shares (lazy engine, progress, errors) in ``mcp_session``, tokens and the HTTP plan in
``mcp_http``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import anyio
import mcp.server.mcpserver.server as _sdk_server
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, Icon, InputRequiredResult
from pydantic import ValidationError

from videogen import package_version
from videogen.config import Settings
from videogen.errors import EXIT_OK, VideogenError
from videogen.mcp_apps import apps_extension
from videogen.mcp_http import (
    DEFAULT_HTTP_PORT,
    HTTP_MAX_BODY_BYTES,
    HttpPlan,
    StaticTokenVerifier,
    bind_listener,
    listening_url,
    owner_of,
    plan_http,
)
from videogen.mcp_http import caller as _owner
from videogen.mcp_serving import HEALTH_PATH, DrainingServer, Replica, uvicorn_config
from videogen.mcp_session import HEARTBEAT_SECONDS, MAX_WAIT_SECONDS, LazyApp, ProgressReporter
from videogen.mcp_tasks import TasksExtension
from videogen.mcp_tools import VIDEO_RESOURCE_MAX_BYTES, register_resources, register_tools
from videogen.mcp_tools import answer as _answer

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from videogen.app import SandboxOptions

__all__ = [
    "DEFAULT_HTTP_PORT",
    "MAX_WAIT_SECONDS",
    "VIDEO_RESOURCE_MAX_BYTES",
    "LazyApp",
    "ProgressReporter",
    "create_server",
    "main",
    "owner_of",
    "plan_http",
    "serve",
]

SERVER_NAME: Final = "videogen"
#: Start the engine this long after the server starts, so unfinished tasks resume on their own.
DEFAULT_WARM_UP_SECONDS: Final = 2.0
#: Icon sizes shipped in ``videogen/assets`` (``icon-<size>.png``); tools get the smallest.
ICON_SIZES: Final = (64, 256)

INSTRUCTIONS: Final = (
    "Turns a request into a saved MP4. Call generate_video once per video (every call is "
    "billed). If its result says the video is not ready, call check_task with the task_id it "
    "gives — never generate_video again for the same video. Show the markdown block of a "
    "finished result to the user as it is."
)


class VideogenServer(MCPServer[LazyApp]):
    """The SDK's server, answering arguments that do not fit a tool's schema in videogen's
    words (which argument, what it accepts) instead of the SDK's validation dump.

    It leaves logging to videogen (``serve`` sends plain lines to stderr): the SDK's own set-up,
    run when a server is built, imports rich for a handler that would never be installed once
    logging is configured — about 60 ms of every start, the largest part of videogen's start-up
    beyond the SDK's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        sdk_setup = getattr(_sdk_server, "configure_logging")  # noqa: B009 (not re-exported)
        setattr(_sdk_server, "configure_logging", _leave_logging_alone)  # noqa: B010
        try:
            super().__init__(*args, **kwargs)
        finally:
            setattr(_sdk_server, "configure_logging", sdk_setup)  # noqa: B010

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


def _leave_logging_alone(level: str) -> None:
    """In place of the SDK's logging set-up while a ``VideogenServer`` is built."""


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
    replica: Replica | None = None,
) -> MCPServer[LazyApp]:
    """Build the server. ``settings`` default to ``Settings.from_env()``, read in the lifespan.

    ``http_tokens`` turn on bearer authentication (streamable HTTP only; stdio and in-memory
    clients skip it). ``warm_up_after`` starts the engine that many seconds after the server
    starts (None: only on the first call that needs it). ``heartbeat_seconds`` is the longest
    silence between progress notifications during a wait (at most 10 s for hosts that reset
    their timeout on progress). ``replica`` (HTTP) is told of the app, for its health route and
    its graceful stop.
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer[LazyApp]) -> AsyncIterator[LazyApp]:
        resolved = settings if settings is not None else Settings.from_env()
        async with anyio.create_task_group() as group:
            lazy = LazyApp(resolved, group, sandbox_options, heartbeat_seconds)
            if replica is not None:
                replica.serve(lazy)
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
    register_tools(server, icons(ICON_SIZES[:1]))
    register_resources(server)
    return server


def http_app(
    plan: HttpPlan, settings: Settings, replica: Replica | None = None, **server_options: Any
) -> Starlette:
    """The streamable-HTTP ASGI app: stateless (any replica answers any request; see
    ``mcp_serving``), SSE responses (so progress notifications flow), and ``GET /healthz``.

    Its clients are not on this machine: their local image paths are read only inside
    ``settings.input_dirs`` (none by default).
    """
    settings = replace(settings, remote_clients=True)
    replica = replica or Replica()
    server = create_server(settings, http_tokens=plan.tokens, replica=replica, **server_options)
    server.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)(replica.health)
    return server.streamable_http_app(
        host=plan.host,
        transport_security=plan.security,
        max_request_body_size=HTTP_MAX_BODY_BYTES,
        stateless_http=True,
    )


async def serve_http_async(
    plan: HttpPlan,
    settings: Settings,
    listener: socket.socket | None = None,
    **server_options: Any,
) -> None:
    """Serve ``plan`` on ``listener`` (default: a socket bound by ``bind_listener``) until
    SIGTERM or SIGINT, then stop gracefully (``mcp_serving``)."""
    listener = listener or bind_listener(plan.host, plan.port)
    replica = Replica()
    app = http_app(plan, settings, replica, **server_options)
    config = uvicorn_config(app, plan.host, plan.port, settings.log_level)
    await DrainingServer(config, replica).serve(sockets=[listener])


def serve(
    transport: Literal["stdio", "streamable-http"] = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_HTTP_PORT,
    settings: Settings | None = None,
) -> None:
    """Serve until the client closes (stdio) or until SIGTERM/SIGINT (HTTP: a graceful stop).

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
