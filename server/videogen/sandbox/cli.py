"""``python -m videogen.sandbox`` / ``videogen sandbox``: run the sandbox standalone."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from videogen.sandbox.faults import GRAMMAR, FaultSpecError
from videogen.sandbox.state import SandboxOptions


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="videogen sandbox",
        description="Run the offline provider sandbox (Volcengine, TokenOps, Jenius on one "
        "loopback port) until Ctrl-C. It prints the URLs and the environment to use.",
        epilog="Fault grammar" + GRAMMAR.rstrip() + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--job-seconds", type=float, default=8.0, help="how long a job takes (8)")
    p.add_argument("--url-ttl", type=float, default=3600.0, help="video URL lifetime, s (3600)")
    p.add_argument("--concurrency", type=int, default=None, help="tasks in flight per key")
    p.add_argument("--tokenops-vocabulary", choices=("seed", "openai"), default="seed")
    p.add_argument("--tokenops-content", choices=("bytes", "redirect", "json"), default="bytes")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault spec (repeatable; grammar below)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox in the foreground; returns the exit status."""
    from videogen.sandbox.server import RunningSandbox, run_forever

    args = parser().parse_args(argv)
    try:
        options = SandboxOptions(
            job_seconds=args.job_seconds,
            url_ttl_seconds=args.url_ttl,
            concurrency_limit=args.concurrency,
            tokenops_vocabulary=args.tokenops_vocabulary,
            tokenops_content=args.tokenops_content,
            faults=tuple(args.fault),
        )
    except (FaultSpecError, ValueError) as error:
        print(f"videogen sandbox: {error}", file=sys.stderr)
        return 2

    def ready(sb: RunningSandbox) -> None:
        print(f"videogen sandbox listening on {sb.url}")
        print(f"  volcengine  {sb.volcengine_url}  (POST /?Action=...&Version=...)")
        print(f"  tokenops    {sb.tokenops_url}")
        print(f"  jenius      {sb.jenius_url}")
        print(f"  assets      {sb.asset_url('/assets/image/640x480.png')}  (this run's key)")
        print("environment (fake sandbox credentials):")
        for name, value in sb.env().items():
            print(f"  export {name}={value}")
        if options.faults:
            print(f"faults: {', '.join(options.faults)}")
        print("Ctrl-C to stop.", flush=True)

    try:
        run_forever(options, port=args.port, on_ready=ready)
    except OSError as error:
        print(f"videogen sandbox: cannot listen on port {args.port}: {error}", file=sys.stderr)
        return 1
    return 0
