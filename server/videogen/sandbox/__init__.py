"""The local sandbox: all three provider APIs emulated on one loopback port, with real videos.

It is part of the product (what a new user meets with no credentials) and what every test and
benchmark runs against::

    async with serve(SandboxOptions(job_seconds=1)) as sb:
        sb.endpoints()["volcengine"]   # base URL + the sandbox credentials
        sb.log.count("volcengine", "submit")
        sb.set_faults("rate_limit:poll:2")

- ``serve()`` / ``serve_in_thread()`` start it; ``RunningSandbox`` is what they yield.
- ``SandboxOptions`` and the fault grammar (``videogen.sandbox.faults``) make it misbehave.
- ``ManualClock`` moves task statuses and URL expiry without sleeping.
- ``python -m videogen.sandbox`` (``main``) runs it standalone.

The provider fronts follow ``shared/docs/contracts.md``: ``volcengine.py`` (V4-signed
``POST /?Action=``), ``tokenops.py`` (``/tokenops/v1``), ``jenius.py`` (``/jenius/api``);
``files.py`` serves the expiring video URLs (with Range) and the synthetic bench file;
``render.py`` draws and encodes the videos.
"""

from __future__ import annotations

from videogen.sandbox.cli import main
from videogen.sandbox.faults import GRAMMAR as FAULT_GRAMMAR
from videogen.sandbox.faults import FaultSpecError
from videogen.sandbox.files import bench_bytes
from videogen.sandbox.jenius import SANDBOX_JENIUS_KEY
from videogen.sandbox.server import RunningSandbox, serve, serve_in_thread
from videogen.sandbox.state import LogEntry, ManualClock, RequestLog, SandboxOptions
from videogen.sandbox.tokenops import SANDBOX_TOKENOPS_KEY
from videogen.sandbox.volcengine import SANDBOX_ACCESS_KEY, SANDBOX_SECRET_KEY

__all__ = [
    "FAULT_GRAMMAR",
    "SANDBOX_ACCESS_KEY",
    "SANDBOX_JENIUS_KEY",
    "SANDBOX_SECRET_KEY",
    "SANDBOX_TOKENOPS_KEY",
    "FaultSpecError",
    "LogEntry",
    "ManualClock",
    "RequestLog",
    "RunningSandbox",
    "SandboxOptions",
    "bench_bytes",
    "main",
    "serve",
    "serve_in_thread",
]
