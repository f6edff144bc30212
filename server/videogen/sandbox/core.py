"""The request plumbing every provider front shares: logging, faults, dropped connections.

``Sandbox`` is what a handler gets: the state, the renderer, and helpers. The outermost ASGI
wrapper (``LogMiddleware``) writes one ``LogEntry`` per request at the moment the response
starts (so a client can never see an answer before the log has it), and hands handlers the raw
uvicorn transport so a ``drop`` fault can close the connection without any answer at all.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from videogen.catalog import ProviderName
from videogen.sandbox.faults import Fault
from videogen.sandbox.render import Renderer, RenderSpec
from videogen.sandbox.state import LogEntry, Operation, SandboxState

LOG_KEY = "videogen.log"
CYCLE_KEY = "videogen.cycle"


class JSONResponse(Response):
    """Compact UTF-8 JSON (non-ASCII kept, like the providers)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


class Sandbox:
    """One running sandbox as the handlers see it."""

    def __init__(self, state: SandboxState, renderer: Renderer) -> None:
        self.state = state
        self.renderer = renderer
        self.task_group: anyio.abc.TaskGroup | None = None
        self.ready = anyio.Event()  # set once the app's lifespan has started

    def note(
        self,
        request: Request,
        *,
        provider: ProviderName | None = None,
        operation: Operation | None = None,
        task_id: str | None = None,
        code: int | str | None = None,
        fault: str | None = None,
    ) -> None:
        """Record what this request was, for its log entry."""
        info = request.scope.setdefault(LOG_KEY, {})
        for key, value in (
            ("provider", provider),
            ("operation", operation),
            ("task_id", task_id),
            ("code", code),
            ("fault", fault),
        ):
            if value is not None:
                info[key] = value

    def fault(self, request: Request, operation: Operation) -> Fault | None:
        """The request fault this request meets, if any (counted, and noted for the log)."""
        found = self.state.book().hit(operation)
        if found is not None:
            self.note(request, fault=found.spec)
        return found

    def prewarm(self, spec: RenderSpec) -> None:
        """Start rendering a finished task's video in the background, so downloads are quick."""
        if self.task_group is not None and not self.renderer.path_of(spec).exists():
            self.task_group.start_soon(self._render_quietly, spec)

    async def _render_quietly(self, spec: RenderSpec) -> None:
        try:
            await self.renderer.render(spec)
        except Exception:  # the download will try again and answer the error there
            return

    async def drop(self, request: Request) -> Response:
        """Close the connection without answering; the returned response goes nowhere."""
        log_entry(self.state, request.scope, 0)
        cycle = request.scope.get(CYCLE_KEY)
        transport = getattr(cycle, "transport", None)
        if transport is None:  # not under uvicorn's h11 protocol: the best we can do is a 500
            raise RuntimeError("sandbox drop fault")
        transport.abort()
        await wait_disconnected(request)
        return Response(status_code=599)

    async def close_now(self, request: Request) -> None:
        """Flush what was sent and close (a truncated download)."""
        cycle = request.scope.get(CYCLE_KEY)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise RuntimeError("sandbox truncate fault")
        transport.close()
        await wait_disconnected(request)


async def wait_disconnected(request: Request, limit: float = 2.0) -> None:
    """Let uvicorn notice the closed transport (its ``connection_lost`` runs on the loop)."""
    cycle = request.scope.get(CYCLE_KEY)
    with anyio.move_on_after(limit):
        # uvicorn offers no event for it; this runs only on the drop/truncate fault paths
        while not getattr(cycle, "disconnected", True):  # noqa: ASYNC110
            await anyio.sleep(0.005)


def log_entry(state: SandboxState, scope: Scope, status: int) -> None:
    info = scope.setdefault(LOG_KEY, {})
    if info.get("logged"):
        return
    info["logged"] = True
    state.log.append(
        LogEntry(
            provider=info.get("provider"),
            operation=info.get("operation", "other"),
            method=scope.get("method", ""),
            path=scope.get("path", ""),
            http_status=status,
            task_id=info.get("task_id"),
            at=info.get("at", state.clock()),
            code=info.get("code"),
            fault=info.get("fault"),
        )
    )


class LogMiddleware:
    """Outermost ASGI layer: logs each request when its response starts; exposes the
    uvicorn request cycle (for ``drop``/``truncate``)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[LOG_KEY] = {"at": self.state.clock()}
        scope[CYCLE_KEY] = getattr(send, "__self__", None)

        async def logging_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                log_entry(self.state, scope, int(message["status"]))
            await send(message)

        await self.app(scope, receive, logging_send)


Handler = Callable[[Request], Awaitable[Response]]


async def read_json(request: Request) -> tuple[bytes, Any]:
    """The raw body and its JSON value.

    ``ValueError`` (its message says which) when the request is not declared
    ``Content-Type: application/json`` — every provider documents JSON bodies, and a client that
    sends anything else must hear about it here, not from the real service — or is not JSON.
    """
    declared = request.headers.get("content-type", "")
    if declared.split(";")[0].strip().lower() != "application/json":
        raise ValueError(f"Content-Type must be application/json, not {declared or 'missing'!r}")
    body = await request.body()
    try:
        return body, json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("body is not valid JSON") from None
