"""Helpers for the MCP server tests (imported by name: this folder has no ``__init__.py``, which
would shadow the ``mcp`` package)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import jsonschema
from mcp import Client
from mcp_types import CallToolResult, TextContent

#: Short sandbox jobs keep the suite fast; the wait budget is far longer so a call finishes.
JOB_SECONDS = "1"


#: A 2025-11-25 client's first message over raw HTTP (one request, no SDK client).
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"},
    },
}


def settings_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a server with no credentials: sandbox, private folders, 1 s jobs."""
    return {
        "HOME": str(tmp_path / "home"),
        "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "videos"),
        "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
        "VIDEOGEN_SANDBOX_JOB_SECONDS": JOB_SECONDS,
        "VIDEOGEN_WAIT_SECONDS": "30",
        **extra,
    }


def child_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child's whole environment: PATH plus the test settings. Nothing else is inherited, so
    a developer's real provider keys never reach a test."""
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    return {**inherited, **settings_env(tmp_path), **extra}


async def check_output(client: Client, tool: str, result: CallToolResult) -> dict[str, Any]:
    """Validate a result's structured content against the tool's published output schema."""
    assert not result.is_error, text_of(result)
    listed = {t.name: t for t in (await client.list_tools()).tools}
    schema = listed[tool].output_schema
    assert schema is not None, f"{tool} publishes no output schema"
    structured = result.structured_content
    assert isinstance(structured, dict)
    jsonschema.validate(structured, schema)
    return structured


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def write_png(path: Path, width: int = 640, height: int = 480) -> Path:
    """A real (plain grey) PNG of the given size, big enough for every provider's checks."""
    row = b"\x00" + bytes([128, 128, 128]) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read() if process.stderr else b""
            raise AssertionError(f"server exited early: {err!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a server process started by a test: terminate, then kill if it lingers; close stderr."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr:
        process.stderr.close()
