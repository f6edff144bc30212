"""Serving streamable HTTP as one of several replicas behind a load balancer.

**Stateless transport.** ``videogen serve --http`` serves the streamable HTTP transport in the
SDK's stateless mode: no ``Mcp-Session-Id`` is handed out, and every request is answered by
whichever replica gets it, so the load balancer needs no sticky sessions. Clients on 2026-07-28
are stateless anyway (one self-contained request per envelope); a 2025-11-25 client initializes
on one replica and may send its next calls to any other. Nothing videogen does needs a session:
every task lives in the shared ledger (``check_task``, ``list_tasks`` and the Tasks extension's
``tasks/get`` read it there), the server never asks the client anything (no elicitation,
sampling or roots) and sends no notification outside a request. Progress notifications still
flow: they go on the SSE response of the ``tools/call`` they belong to. What a legacy client no
longer gets is what sessions alone give and videogen never used: the standalone GET stream for
server-initiated messages, and resuming a broken stream (no event store was ever configured).

**Health.** ``GET /healthz`` (no token: it says nothing secret) answers ``200`` with
``{"status": "ok", "version": ..., "ledger": true}`` when the ledger answers a query, and
``503`` when it does not (``"status": "unavailable"``) or while the replica is stopping
(``"stopping"``). The first check starts the engine if no call has yet.

**Stopping.** On SIGTERM or SIGINT the replica drains (``DrainingServer``): it stops accepting
connections and its health says 503; every tool call waiting on a task answers at once with the
task as it stands (a pending task the client checks later, on any replica), and requests still
running after ``DRAIN_SECONDS`` are cancelled. Then the engine stops: its watchers are cancelled
and every lease it held is handed back, so the other replicas take its tasks over at once, and the
ledger is closed. The process exits 0. (A second SIGINT stops at once, as uvicorn does.)
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

import anyio
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from uvicorn.server import HANDLED_SIGNALS

from videogen import package_version

if TYPE_CHECKING:
    import socket

    from videogen.mcp_session import LazyApp

logger = logging.getLogger("videogen.mcp")

HEALTH_PATH: Final = "/healthz"
#: Requests still running this long after a stop was asked for are cancelled (tool calls answer
#: at once then; a submit in flight may take a little longer). Below the 30 s most orchestrators
#: give before they kill.
DRAIN_SECONDS: Final = 20.0
#: The longest one health check waits for the engine to start and the ledger to answer.
HEALTH_TIMEOUT_SECONDS: Final = 10.0


class Replica:
    """This process as the load balancer sees it: serving, or stopping (draining)."""

    def __init__(self) -> None:
        self.draining = False
        self._app: LazyApp | None = None

    def serve(self, lazy: LazyApp) -> None:
        """The server's app handle, from its lifespan."""
        self._app = lazy
        if self.draining:
            lazy.stop_waiting()

    def drain(self) -> None:
        """Stop: health answers 503, and every wait on a task ends now."""
        if not self.draining:
            logger.warning("stopping: answering the calls in flight, then handing tasks back")
        self.draining = True
        if self._app is not None:
            self._app.stop_waiting()

    async def health(self, request: Request) -> JSONResponse:
        """``GET /healthz`` for the load balancer."""
        if self.draining:
            return _health("stopping", ledger=False)
        ledger = await self._ledger_answers()
        return _health("ok" if ledger else "unavailable", ledger=ledger)

    async def _ledger_answers(self) -> bool:
        if self._app is None:
            return False  # the server is not started (or no longer running)
        try:
            with anyio.fail_after(HEALTH_TIMEOUT_SECONDS):
                app = await self._app.get()
            _ = app.ledger.schema_version  # one query: the ledger answers
        except Exception as error:  # anything: the answer is "not healthy", the log says why
            logger.warning("health check: the ledger does not answer (%s)", error)
            return False
        return True


def _health(status: str, *, ledger: bool) -> JSONResponse:
    body = {"status": status, "version": package_version(), "ledger": ledger}
    code = 200 if status == "ok" else 503
    return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})


class DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping as a replica should (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, replica: Replica) -> None:
        super().__init__(config)
        self.replica = replica

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.replica.drain()  # before uvicorn waits for the requests in flight
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # As uvicorn's, but the signal is not raised again once the server stopped: a stop
        # that went as asked exits 0, not killed by the signal it handled.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def uvicorn_config(app: object, host: str, port: int, log_level: str) -> uvicorn.Config:
    """The uvicorn settings of a replica: the app's lifespan on, a bounded drain."""
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=int(DRAIN_SECONDS),
    )
