"""Run the real ``videogen`` command in a subprocess, against the sandbox, in temporary folders."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from videogen.config import VARIABLES

if TYPE_CHECKING:
    from videogen.sandbox import RunningSandbox

#: Every variable the program reads is dropped from the inherited environment, so a developer's
#: own keys or settings never leak into a test.
_DROPPED = set(VARIABLES) | {"XDG_STATE_HOME"}


@dataclass(frozen=True)
class Cli:
    """The command line with a private environment (tmp HOME, output and data folders)."""

    env: dict[str, str]
    output_dir: Path
    data_dir: Path
    cwd: Path

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 100
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **(extra_env or {})}
        return run_python(["-m", "videogen", *args], env, self.cwd, timeout)

    def script(self, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run_python([str(path), *args], self.env, self.cwd, 100)

    def with_env(self, **changes: str | None) -> Cli:
        env = dict(self.env)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return Cli(env, self.output_dir, self.data_dir, self.cwd)


def run_python(
    args: Sequence[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The CLI against its embedded sandbox: 1 s jobs, fast polls, private folders."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED}
    home, output, data, cwd = (tmp_path / n for n in ("home", "videos", "state", "cwd"))
    for folder in (home, cwd):
        folder.mkdir()
    env.update(
        HOME=str(home),
        VIDEOGEN_SANDBOX="1",
        VIDEOGEN_SANDBOX_JOB_SECONDS="1",
        VIDEOGEN_OUTPUT_DIR=str(output),
        VIDEOGEN_DATA_DIR=str(data),
        JIMENG_VIDEO_POLL_INTERVAL="0.2",
        PYTHONUNBUFFERED="1",
    )
    return Cli(env, output, data, cwd)


@pytest.fixture
def standalone(cli: Cli) -> Iterator[tuple[Cli, RunningSandbox]]:
    """A sandbox running in this test process, and the CLI pointed at it as a real provider.

    Its credentials are configured, so the CLI does not start its own sandbox: a task left
    running by one ``videogen`` process can be checked by the next one.
    """
    from videogen.sandbox import SandboxOptions, serve_in_thread

    with serve_in_thread(SandboxOptions(job_seconds=1.0)) as sandbox:
        yield cli.with_env(VIDEOGEN_SANDBOX=None, **sandbox.env()), sandbox


def png(width: int, height: int) -> bytes:
    """A valid RGB PNG (a gradient), written without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
