"""The composition root: settings in, a running engine out, everything closed on exit.

``open_app`` is what the MCP server's lifespan and each CLI run enter. It starts the embedded
sandbox when ``settings.sandbox`` (and points every provider at it) with its state in
``<data_dir>/sandbox``, so its tasks outlive the process like a real provider's: a later run
(``videogen check`` after ``--no-wait``, a restarted server) finishes them. It opens the
ledger, builds one ``httpx2.AsyncClient`` per provider lazily on first use (start-up stays fast:
no adapter module is imported until a provider is needed), and owns the task group the engine's
watchers run in.
With ``track`` the engine resumes every unfinished task in the ledger at start, and takes over
those another process stopped working on while it runs. On exit the watchers are cancelled (their
tasks stay in the ledger), every lease the engine holds is handed back (another process, or the
next start, takes the tasks over at once), then the clients, the ledger and the sandbox are
closed.

``read_tasks`` and ``read_usage`` read the ledger alone, for commands that need no engine.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from videogen.catalog import ProviderName
from videogen.config import Settings
from videogen.engine import Engine, Task
from videogen.errors import ConfigError
from videogen.ledger import Ledger, ledger_exists, open_ledger, private_dir
from videogen.memory import limit_malloc_arenas
from videogen.spending import UsageReport, ledger_usage

if TYPE_CHECKING:
    import httpx2

    from videogen.providers.base import Provider
    from videogen.sandbox import RunningSandbox
    from videogen.sandbox import SandboxOptions as SandboxOptions  # named by the interfaces


@dataclass
class App:
    settings: Settings
    engine: Engine
    ledger: Ledger
    notice: str | None
    sandbox: RunningSandbox | None
    resumed: int = 0


class ProviderClients:
    """One HTTP client and one adapter per provider, built on first use, closed together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[ProviderName, httpx2.AsyncClient] = {}
        self._providers: dict[ProviderName, Provider] = {}

    def client(self, name: ProviderName) -> httpx2.AsyncClient:
        client = self._clients.get(name)
        if client is None:
            import httpx2

            from videogen.httpclient import create_client

            timeout = httpx2.Timeout(self.settings.request_timeout, connect=10.0)
            client = create_client(timeout)
            self._clients[name] = client
        return client

    def provider(self, name: ProviderName) -> Provider:
        """The adapter; ``CredentialsError`` naming the variables when it has no keys."""
        adapter = self._providers.get(name)
        if adapter is None:
            from videogen import providers

            endpoint = self.settings.require_credentials(name)
            adapter = providers.create(name, endpoint, self.client(name))
            self._providers[name] = adapter
        return adapter

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        self._providers = {}
        for client in clients.values():
            await client.aclose()


@asynccontextmanager
async def open_app(
    settings: Settings, *, track: bool = True, sandbox_options: SandboxOptions | None = None
) -> AsyncIterator[App]:
    """The engine, ledger and (when ``settings.sandbox``) the sandbox, for one run or server."""
    limit_malloc_arenas()
    async with AsyncExitStack() as stack:
        # The ledger first: the SQLite one creates the data dir (private) the sandbox keeps its
        # state in.
        ledger = open_ledger(settings)
        stack.callback(ledger.close)
        sandbox: RunningSandbox | None = None
        if settings.sandbox:
            _private_data_dir(settings)
            from videogen.sandbox import SandboxOptions, serve

            options = sandbox_options or SandboxOptions(job_seconds=settings.sandbox_job_seconds)
            if options.state_dir is None:
                # Persistent: a task outlives this process (--no-wait, a restarted server).
                options = dataclasses.replace(options, state_dir=settings.data_dir / "sandbox")
            sandbox = await stack.enter_async_context(serve(options))
            settings = dataclasses.replace(settings, **sandbox.endpoints())  # type: ignore[arg-type]
        clients = ProviderClients(settings)
        stack.push_async_callback(clients.aclose)
        storage = None
        if settings.storage is not None:
            from videogen.storage import Storage  # obstore itself loads on first use

            storage = Storage(settings.storage)
        engine = Engine(
            settings, ledger, providers=clients.provider, clients=clients.client, storage=storage
        )
        stack.callback(engine.hand_back)  # after the watchers, before the ledger closes
        async with anyio.create_task_group() as group:
            resumed = engine.attach(group, resume=track)
            try:
                yield App(settings, engine, ledger, settings.notice, sandbox, resumed)
            finally:
                group.cancel_scope.cancel()


def _private_data_dir(settings: Settings) -> None:
    """The data dir, private, for the sandbox's state (already made by a SQLite ledger; a
    PostgreSQL one leaves it to us)."""
    try:
        private_dir(settings.data_dir)
    except OSError as exc:
        raise ConfigError(
            f"The data dir {settings.data_dir} cannot be created ({exc.strerror or exc}): set "
            "VIDEOGEN_DATA_DIR to a folder this user can write."
        ) from exc


def read_tasks(settings: Settings, limit: int) -> list[Task]:
    """The newest tasks, read from the ledger alone: listing starts no sandbox, no HTTP client
    and no engine (none of which it needs, and any of which could fail)."""
    if not ledger_exists(settings):
        return []  # nothing was ever submitted here: do not create a ledger just to say so
    ledger = open_ledger(settings)
    try:
        return ledger.recent(limit=limit)
    finally:
        ledger.close()


def read_usage(
    settings: Settings, *, days: int, owner: str | None = None, ledger: Ledger | None = None
) -> UsageReport:
    """What was billed over the last ``days`` days (``owner``'s alone when given), from
    ``ledger``, else from the settings' ledger opened for this read (none yet: nothing)."""
    opened = None
    if ledger is None and ledger_exists(settings):
        ledger = opened = open_ledger(settings)
    try:
        return ledger_usage(ledger, settings.spending, now=time.time(), days=days,
                            sandbox=settings.sandbox, owner=owner)  # fmt: skip
    finally:
        if opened is not None:
            opened.close()
