"""A ``jimeng-videogen-mcp`` stdio subprocess driven with raw JSON-RPC lines, so a test holds its
pid (to SIGKILL it mid-call) — the SDK's stdio client hides the process."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

PROTOCOL = "2025-11-25"


class StdioServer:
    """One server process. ``call_tool`` returns the JSON-RPC ``result``; ``start_call`` sends a
    call without waiting (the answer may never come: the process is killed)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "videogen.mcp_server"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._next_id = 0
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        init = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "evidence", "version": "0"},
            },
        )
        assert "serverInfo" in init, init
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    # -- plumbing -------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                message = {"id": -1, "error": {"message": f"not JSON on stdout: {line!r}"}}
            answer_id = message.get("id")
            if isinstance(answer_id, int) and "method" not in message:
                self._queue(answer_id).put(message)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_lines.append(line.decode(errors="replace"))

    def _queue(self, answer_id: int) -> queue.Queue[dict[str, Any]]:
        with self._lock:
            return self._answers.setdefault(answer_id, queue.Queue())

    def start(self, method: str, params: dict[str, Any]) -> int:
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return self._next_id

    def answer(self, request_id: int, timeout: float = 60) -> dict[str, Any]:
        message = self._queue(request_id).get(timeout=timeout)
        if "error" in message:
            raise AssertionError(f"JSON-RPC error: {message['error']}")
        result: dict[str, Any] = message["result"]
        return result

    def request(self, method: str, params: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        return self.answer(self.start(method, params), timeout)

    def start_call(self, tool: str, arguments: dict[str, Any]) -> int:
        return self.start("tools/call", {"name": tool, "arguments": arguments})

    def call_tool(
        self, tool: str, arguments: dict[str, Any], timeout: float = 60
    ) -> dict[str, Any]:
        return self.answer(self.start_call(tool, arguments), timeout)

    # -- lifecycle ------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — a power cut as far as the program knows."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # already killed: nothing to flush
                self.process.stdin.close()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> StdioServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(
        c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"
    )
