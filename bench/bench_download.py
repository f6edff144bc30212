"""Download throughput and memory: ``videogen.download`` vs ``curl -o`` on the same URL, same run.

    uv run --group dev python bench/bench_download.py   # 1 GiB, 5 runs, output in a temp dir
    uv run --group dev python bench/bench_download.py --size-mib 256 --runs 5 --dest /dev/shm

A loopback HTTP server (stdlib, ``sendfile`` from a file in /dev/shm, so the server is never the
bottleneck) serves a deterministic MP4-shaped body (ftyp, moov, then a large mdat) with
``Content-Length`` and ``Range``. Each run times, in turn:

- ``curl``: ``curl -sS --fail -o FILE URL`` (wall time of the process);
- ``curl+fsync``: the same followed by an ``fsync`` of the file, because our downloader fsyncs
  the file and the directory before publishing it (it is the fair baseline on a real disk);
- ``videogen``: ``download()`` in a child process (timed inside the child around the call, so
  interpreter start-up is not counted), whose RSS growth is the process's peak RSS
  (``ru_maxrss``) after the download minus its resident size just before it (an upper bound).

Before each timed run the page cache is flushed (``sync``) so no contender pays for the
previous one's writeback, and the contenders' order rotates from run to run (the one that
follows an fsync of the whole file still pays for some of it). Prints the median of each
(wall time, throughput in MiB/s, CPU seconds of the downloading process — steadier than wall
time on a busy machine), the throughput ratios ours/curl and ours/curl+fsync, the CPU ratio
ours/curl (curl's own process; the fsync of curl+fsync is not counted, while ours counts its
writeback hints) and the RSS growth. The first run also checks that our file is byte-identical
to the body.
"""

from __future__ import annotations

import argparse
import filecmp
import http.server
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

MiB = 1 << 20

CHILD = """
import json, resource, sys, time, anyio, httpx2, psutil
from pathlib import Path
from videogen.download import download
from videogen.providers.base import DownloadSource

async def main() -> None:
    url, dest = sys.argv[1], Path(sys.argv[2])
    async with httpx2.AsyncClient(timeout=60) as client:
        rss_before = psutil.Process().memory_info().rss // 1024
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        path = await download(client, DownloadSource(url=url), dest, "bench.mp4",
                              max_bytes=1 << 40, deadline_seconds=3600)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # Peak over the whole run minus what was resident just before: an upper bound on growth.
    growth = after.ru_maxrss - rss_before
    print(json.dumps({"seconds": seconds, "cpu": cpu, "path": str(path), "rss_growth_kib": growth}))

anyio.run(main)
"""


def make_body(path: Path, size: int) -> None:
    """ftyp + moov + one mdat filling ``size`` bytes of seeded pseudo-random data."""
    ftyp = (24).to_bytes(4, "big") + b"ftypisom" + b"\0\0\2\0" + b"isomiso2"
    moov = (16).to_bytes(4, "big") + b"moov" + bytes(8)
    mdat_size = size - len(ftyp) - len(moov)
    block = random.Random(7).randbytes(MiB)
    with path.open("wb") as f:
        f.write(ftyp + moov + mdat_size.to_bytes(4, "big") + b"mdat")
        left = mdat_size - 8
        while left:
            piece = block[: min(left, MiB)]
            f.write(piece)
            left -= len(piece)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body: Path

    def do_GET(self) -> None:
        size = self.body.stat().st_size
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        with self.body.open("rb") as f:
            self.connection.sendfile(f, start, size - start)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(body: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = type("BenchHandler", (Handler,), {"body": body})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v.mp4"


def run_curl(url: str, dest: Path, *, fsync: bool) -> tuple[float, float]:
    out = dest / "curl.mp4"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(out), url], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if fsync:
        fd = os.open(out, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    seconds = time.perf_counter() - started
    out.unlink()
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def run_ours(url: str, dest: Path, body: Path | None) -> tuple[float, float, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(dest)], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout)
    path = Path(result["path"])
    if body is not None and not filecmp.cmp(path, body, shallow=False):
        raise SystemExit("the downloaded file differs from the served body")
    path.unlink()
    return float(result["seconds"]), float(result["cpu"]), int(result["rss_growth_kib"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dest", type=Path, default=None, help="where files are written")
    args = parser.parse_args()
    size = args.size_mib * MiB
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    body = shm / f"videogen-bench-{os.getpid()}.mp4"
    dest = Path(tempfile.mkdtemp(prefix="videogen-bench-", dir=args.dest))
    make_body(body, size)
    server, url = serve(body)
    times: dict[str, list[float]] = {"curl": [], "curl+fsync": [], "videogen": []}
    cpu: dict[str, list[float]] = {"curl": [], "curl+fsync": [], "videogen": []}
    rss: list[int] = []
    try:
        names = list(times)
        for run in range(args.runs):
            # The order rotates: whoever runs right after an fsync of 1 GiB pays for the
            # kernel's aftermath (measured: about +0.4 s of CPU), so each takes that turn.
            for name in names[run % 3 :] + names[: run % 3]:
                os.sync()  # every contender starts with no dirty pages of the one before
                if name == "videogen":
                    seconds, cpu_seconds, growth = run_ours(url, dest, body if run == 0 else None)
                    rss.append(growth)
                else:
                    seconds, cpu_seconds = run_curl(url, dest, fsync=name == "curl+fsync")
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
    finally:
        server.shutdown()
        body.unlink()
        shutil.rmtree(dest, ignore_errors=True)
    report(args, size, times, cpu, rss)


def report(
    args: argparse.Namespace,
    size: int,
    times: dict[str, list[float]],
    cpu: dict[str, list[float]],
    rss: list[int],
) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"download {args.size_mib} MiB over loopback, {args.runs} runs, dest={args.dest or 'tmp'}"
    )
    for name, seconds in medians.items():
        runs = ", ".join(f"{s:.2f}" for s in times[name])
        cpu_median = statistics.median(cpu[name])
        print(
            f"  {name:11s} median {seconds:6.2f} s  {size / MiB / seconds:6.0f} MiB/s  "
            f"cpu {cpu_median:5.2f} s  [{runs}]"
        )
    for baseline in ("curl", "curl+fsync"):
        ratio = medians[baseline] / medians["videogen"]
        print(f"  throughput videogen / {baseline}: {ratio:.2f}x")
    # curl's own CPU (the fsync of curl+fsync runs in this process, so it is not counted).
    cpu_ratio = statistics.median(cpu["videogen"]) / statistics.median(cpu["curl"])
    print(f"  cpu videogen / curl: {cpu_ratio:.2f}x")
    growth = statistics.median(rss) / 1024
    print(f"  peak RSS growth of the downloading process: median {growth:.1f} MiB")


if __name__ == "__main__":
    main()
