"""The sandbox's Starlette application: one loopback port for all three provider APIs.

Routes: ``POST /`` (Volcengine), ``/tokenops/v1/...`` (TokenOps), ``/jenius/api/...`` (Jenius),
``/files/...`` (videos, masks, the bench file), ``/assets/...`` (test inputs). Anything else is
a 404 in the caller's provider style where it can be told, and never a 500: an unexpected error
in a handler answers a JSON 500 without a traceback (and is a sandbox bug to fix).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from videogen.sandbox.core import JSONResponse, LogMiddleware, Sandbox
from videogen.sandbox.files import Files
from videogen.sandbox.jenius import Jenius
from videogen.sandbox.tokenops import TokenOps
from videogen.sandbox.volcengine import Volcengine

logger = logging.getLogger("videogen.sandbox")


def build_app(sandbox: Sandbox) -> ASGIApp:
    """The ASGI app for one sandbox (wrapped in the request log)."""
    volc = Volcengine(sandbox)
    tokenops = TokenOps(sandbox)
    jenius = Jenius(sandbox)
    files = Files(sandbox)
    routes = [
        Route("/", volc.handle, methods=["POST"]),
        Route("/tokenops/v1/videos", tokenops.create, methods=["POST"]),
        Route("/tokenops/v1/videos/{video_id}", tokenops.retrieve, methods=["GET"]),
        Route("/tokenops/v1/videos/{video_id}/content", tokenops.content, methods=["GET"]),
        Route("/tokenops/v1/omnihuman/subject/detection", tokenops.detect, methods=["POST"]),
        Route("/tokenops/v1/omnihuman/subject/recognition", tokenops.recognize, methods=["POST"]),
        Route("/jenius/api/plugins/video/tasks", jenius.create, methods=["POST"]),
        Route("/jenius/api/plugins/video/tasks/{uuid}", jenius.retrieve, methods=["GET"]),
        Route("/files/{name}", files.file, methods=["GET", "HEAD"]),
        Route("/assets/{rest:path}", files.asset, methods=["GET", "HEAD"]),
    ]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            sandbox.task_group = tg
            sandbox.ready.set()
            try:
                yield
            finally:
                sandbox.task_group = None
                tg.cancel_scope.cancel()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        path = request.url.path
        if path.startswith("/tokenops/"):
            sandbox.note(request, provider="tokenops")
            body: object = {
                "error": {
                    "message": f"Unknown route {request.method} {path}",
                    "type": "invalid_request_error",
                    "code": "not_found",
                }
            }
        elif path.startswith("/jenius/"):
            sandbox.note(request, provider="jenius")
            body = {"code": status, "message": f"Unknown route {request.method} {path}"}
        else:
            body = {"Code": "NotFound", "Message": f"Unknown route {request.method} {path}"}
        return JSONResponse(body, status_code=status)

    async def crashed(request: Request, exc: Exception) -> Response:
        logger.exception("sandbox handler failed", exc_info=exc)
        return JSONResponse(
            {
                "error": {
                    "message": "sandbox internal error",
                    "type": "server_error",
                    "code": "internal",
                }
            },
            status_code=500,
        )

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_found, 500: crashed},
    )
    return LogMiddleware(app, sandbox.state)
