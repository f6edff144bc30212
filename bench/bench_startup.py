"""Start-up: spawn -> ``initialize`` + ``tools/list`` answered, videogen vs a bare MCPServer.

The baseline is a bare ``MCPServer`` with the same five tool signatures (same parameter names,
types and enums) and nothing else, written to a temporary file and measured in the same run,
alternating with videogen so both see the same machine load. Each sample spawns a fresh process
over stdio (the 2025-11-25 handshake: ``initialize``, ``notifications/initialized``,
``tools/list``) and stops the clock when the ``tools/list`` answer is read. Prints the median
of each and their ratio (target <= 1.15).

Then the same sample closes the server's stdin (the client went away) and times how long the
process takes to exit (target <= 0.5 s: a pending engine warm-up must not hold the exit),
again next to the bare server in the same run.

    uv run --group dev python bench/bench_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BASELINE = '''
from typing import Annotated, Literal
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult
from pydantic import BaseModel, Field

Mode = Literal["ti2v_pro", "t2v_720p", "i2v_first_720p", "i2v_first_tail_720p",
               "i2v_recamera_720p", "t2v_1080p", "i2v_first_1080p", "i2v_first_tail_1080p",
               "omnihuman", "scene"]
Provider = Literal["jenius", "tokenops", "volcengine"]
Camera = Literal["hitchcock_dolly_in", "hitchcock_dolly_out", "robo_arm", "dynamic_orbit",
                 "central_orbit", "crane_push", "quick_pull_back", "counterclockwise_swivel",
                 "clockwise_swivel", "handheld", "rapid_push_pull"]

class Out(BaseModel):
    task_id: str
    status: str

server = MCPServer("baseline")

@server.tool()
async def generate_video(ctx: Context, prompt: Annotated[str, Field(max_length=800)] = "",
        mode: Mode | None = None, provider: Provider | None = None, image: str | None = None,
        tail_image: str | None = None, images: list[str] | None = None,
        audio: str | None = None, mask: str | list[str] | None = None,
        duration: Literal[4, 5, 6, 8, 10] = 5, fps: Literal[24, 25, 30] = 24,
        aspect_ratio: Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9"] | None = None,
        seed: int = -1, camera: Camera | None = None,
        camera_strength: Literal["weak", "medium", "strong"] | None = None,
        resolution: Literal[720, 1080] | None = None, fast_mode: bool = False,
        scene: str | None = None, filename: str | None = None,
        wait_seconds: Annotated[float | None, Field(ge=0, le=50)] = None,
        new: bool = False) -> Annotated[CallToolResult, Out]:
    """Generate a video."""
    raise NotImplementedError

@server.tool()
async def check_task(ctx: Context, task_id: str, wait_seconds: float | None = None
        ) -> Annotated[CallToolResult, Out]:
    """Check a task."""
    raise NotImplementedError

@server.tool()
async def list_scenes() -> Annotated[CallToolResult, Out]:
    """List scenes."""
    raise NotImplementedError

@server.tool()
async def detect_subjects(ctx: Context, image: str, provider: Provider | None = None
        ) -> Annotated[CallToolResult, Out]:
    """Detect subjects."""
    raise NotImplementedError

@server.tool()
async def list_tasks(ctx: Context, limit: Annotated[int, Field(ge=1, le=100)] = 20
        ) -> Annotated[CallToolResult, Out]:
    """List tasks."""
    raise NotImplementedError

server.run()
'''

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}


@dataclass
class Sample:
    startup: float  # spawn -> tools/list answered (s)
    exit: float  # stdin closed -> process gone (s)
    names: list[str]


def sample(command: list[str], env: dict[str, str]) -> Sample:
    """Seconds from spawn to the tools/list answer, from closing stdin right after it to the
    exit, and the tool names it listed."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        for message in (INITIALIZE, INITIALIZED, TOOLS_LIST):
            process.stdin.write(json.dumps(message).encode() + b"\n")
        process.stdin.flush()
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"{command} exited before answering tools/list")
            answer = json.loads(line)
            if answer.get("id") == 2:
                elapsed = time.perf_counter() - started
                names = sorted(t["name"] for t in answer["result"]["tools"])
                break
        closed = time.perf_counter()
        process.stdin.close()
        process.wait(timeout=10)
        return Sample(elapsed, time.perf_counter() - closed, names)
    finally:
        if not process.stdin.closed:
            process.stdin.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline_server.py"
        baseline.write_text(BASELINE)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": tmp,
            "VIDEOGEN_DATA_DIR": str(Path(tmp) / "data"),
            "VIDEOGEN_OUTPUT_DIR": str(Path(tmp) / "videos"),
        }
        commands = {
            "bare MCPServer": [sys.executable, str(baseline)],
            "jimeng-videogen-mcp": [sys.executable, "-m", "videogen.mcp_server"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        exits: dict[str, list[float]] = {name: [] for name in commands}
        names: dict[str, list[str]] = {}
        for name, command in commands.items():  # warm the file cache, not measured
            names[name] = sample(command, env).names
        if names["bare MCPServer"] != names["jimeng-videogen-mcp"]:
            raise SystemExit(f"tool sets differ: {names}")
        for _ in range(args.runs):
            for name, command in commands.items():
                measured = sample(command, env)
                times[name].append(measured.startup)
                exits[name].append(measured.exit)
    base = statistics.median(times["bare MCPServer"])
    ours = statistics.median(times["jimeng-videogen-mcp"])
    print(f"spawn -> initialize + tools/list answered, median of {args.runs} (same run):")
    for name in commands:
        runs = times[name]
        print(f"  {name:19} {statistics.median(runs) * 1000:7.0f} ms  "
              f"(min {min(runs) * 1000:.0f}, max {max(runs) * 1000:.0f})")  # fmt: skip
    print(f"  ratio               {ours / base:7.2f}x  (target <= 1.15x)")
    print(f"stdin closed right after tools/list -> process exited, median of {args.runs}:")
    for name in commands:
        runs = exits[name]
        print(f"  exit: {name:19} {statistics.median(runs) * 1000:7.0f} ms  "
              f"(min {min(runs) * 1000:.0f}, max {max(runs) * 1000:.0f})")  # fmt: skip
    print("  target: jimeng-videogen-mcp exits within 500 ms")


if __name__ == "__main__":
    main()
