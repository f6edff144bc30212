"""Fixtures for the MCP server tests: settings in temporary folders, real clients.

Every test talks to the real server through the SDK's ``Client`` (in memory, over stdio or over
HTTP); the server runs the real engine against the embedded sandbox over loopback HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import child_env, free_port, settings_env, stop, wait_for_port

from videogen.config import Settings
from videogen.mcp_server import create_server

SpawnHttp = Callable[..., tuple[int, "subprocess.Popen[bytes]"]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(settings_env(tmp_path))


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both protocol eras: 2026-07-28 (stateless) and 2025-11-25 (initialize handshake)."""
    return str(request.param)


@pytest.fixture
async def client(settings: Settings, mode: str) -> AsyncIterator[Client]:
    async with Client(create_server(settings, warm_up_after=None), mode=mode) as connected:
        yield connected


@pytest.fixture
def spawn_http(tmp_path: Path) -> Iterator[SpawnHttp]:
    """Start ``jimeng-videogen-mcp --http`` in a subprocess; stopped at the end of the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(host: str, **extra_env: str) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        args = ["-m", "videogen.mcp_server", "--http", "--host", host, "--port", str(port)]
        process = subprocess.Popen(
            [sys.executable, *args],
            env=child_env(tmp_path, **extra_env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        wait_for_port(port, process)
        return port, process

    yield spawn
    for process in processes:
        stop(process)
