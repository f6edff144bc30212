"""Many tasks in flight in one process: 500 generations tracked, downloaded and saved at once.

The sandbox runs in a separate process (so its rendering and serving do not share this
process's GIL or memory); the engine runs here. Each poll interval is measured in several
runs, each with a fresh sandbox and folders; the figures are medians:

- baseline: one task alone, submit to saved file, in this same run;
- the floor: a **bare loop** over the same adapter, HTTP client and sandbox (submit, poll at the
  interval, stream the video to a file; no ledger, fsync, probe or leases), N tasks at once, in
  a process of its own: the ratios ``engine / bare`` for wall time, CPU per task and peak RSS;
- in flight: N tasks submitted at once, time until every one is saved (and until every one is
  ``ready``, i.e. tracked to the provider's end, before the downloads);
- the targets: every task saved once; wall time within job time + two poll intervals; against
  the bare loop, wall within 1.3x and CPU per task within 1.5x; peak RSS under 150 MB.

Each measurement (bare loop or engine) runs in a fresh child process, so CPU and peak RSS are
that measurement's own.

Intervals: the product's default (5 s, seed 002's loop) and a 1 s stress case, where the
engine sends five times the polls and has a third of the time to save everything.

Run: ``uv run --group dev python bench/bench_inflight.py [--tasks 500] [--job-seconds 5] [--runs 3]
[--poll-intervals 5,1] [--no-bare]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import anyio
import httpx2
import psutil

from videogen import providers
from videogen.app import open_app
from videogen.config import Settings
from videogen.engine import Engine
from videogen.httpclient import create_client
from videogen.models import GenerationRequest, Task
from videogen.providers.base import PreparedInputs

SANDBOX_CHILD = """
import json, sys
from videogen.sandbox import SandboxOptions, serve_in_thread
with serve_in_thread(SandboxOptions(job_seconds=float(sys.argv[1]))) as sandbox:
    print(json.dumps({"env": sandbox.env(), "url": sandbox.url}), flush=True)
    sys.stdin.read()
"""


@contextmanager
def sandbox_process(job_seconds: float) -> Iterator[dict[str, str]]:
    """The sandbox in a child process; yields the environment that points at it."""
    child = subprocess.Popen(
        [sys.executable, "-c", SANDBOX_CHILD, str(job_seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline())
        yield dict(ready["env"])
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


class PeakRss:
    """Samples this process's RSS every 50 ms in a thread; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def request(n: int, run: str) -> GenerationRequest:
    """Distinct requests (no duplicate guard) that the sandbox renders once: the seed is not
    drawn, so every task shares one cached render and the bench measures the engine."""
    return GenerationRequest(
        provider="volcengine", mode="t2v_720p", prompt=f"a paper boat ({run})", seed=n
    )


async def generate_all(engine: Engine, count: int, run: str) -> tuple[list[Task], float, float]:
    """Submit ``count`` at once; wall seconds until all ready and until all saved."""
    tasks: list[Task] = []
    ready_at: list[float] = []
    started = time.perf_counter()

    async def one(n: int) -> None:
        task = await engine.generate(request(n, run), wait_seconds=None)
        tasks.append(task)
        ready = next((e.at for e in task.history if e.status == "ready"), None)
        if ready is not None:
            ready_at.append(ready)

    wall_start = time.time()
    async with anyio.create_task_group() as group:
        for n in range(count):
            group.start_soon(one, n)
    saved = time.perf_counter() - started
    all_ready = (max(ready_at) - wall_start) if len(ready_at) == count else float("nan")
    return tasks, all_ready, saved


def phase_figures(tasks: list[Task]) -> dict[str, float]:
    """Where the time went: the submit wave, provider-done to seen, seen to saved."""

    def at(task: Task, status: str) -> float:
        return next(e.at for e in task.history if e.status == status)

    # Only tasks that went all the way; the statuses figure says how many did not.
    tasks = [t for t in tasks if {"queued", "ready", "completed"} <= {e.status for e in t.history}]
    if not tasks:
        return {}
    start = min(t.created_at for t in tasks)
    queued = [at(t, "queued") for t in tasks]
    ready_lag = sorted(at(t, "ready") - at(t, "queued") for t in tasks)
    finish = sorted(at(t, "completed") - at(t, "ready") for t in tasks)
    return {
        "submit_wave_s": round(max(queued) - start, 2),
        "queued_to_ready_p50_s": round(ready_lag[len(ready_lag) // 2], 2),
        "queued_to_ready_max_s": round(ready_lag[-1], 2),
        "ready_to_saved_p50_s": round(finish[len(finish) // 2], 2),
        "ready_to_saved_max_s": round(finish[-1], 2),
    }


def settings_for(env: dict[str, str], root: Path, poll_interval: float) -> Settings:
    values = {
        **env,
        "VIDEOGEN_OUTPUT_DIR": str(root / "out"),
        "VIDEOGEN_DATA_DIR": str(root / "data"),
        "JIMENG_VIDEO_POLL_INTERVAL": str(poll_interval),
        "HOME": str(root),
    }
    return dataclasses.replace(Settings.from_env(values), sandbox=False)


async def bench(count: int, job_seconds: float, poll_interval: float) -> dict[str, object]:
    with sandbox_process(job_seconds) as env, tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(env, Path(tmp), poll_interval)
        async with open_app(settings, track=False) as app:
            (alone,), alone_ready, alone_saved = await generate_all(app.engine, 1, "alone")
            cpu_before = psutil.Process().cpu_times()
            with PeakRss() as rss:
                tasks, all_ready, all_saved = await generate_all(app.engine, count, "many")
            cpu_after = psutil.Process().cpu_times()
        files = list((Path(tmp) / "out").glob("*.mp4"))
        statuses: dict[str, int] = {}
        for task in tasks:
            statuses[task.status] = statuses.get(task.status, 0) + 1
        target = job_seconds + 2 * poll_interval
        phases = phase_figures(tasks)
        return {
            "tasks": count,
            "job_seconds": job_seconds,
            "poll_interval": poll_interval,
            "baseline_one_task_ready_s": round(alone_ready, 2),
            "baseline_one_task_saved_s": round(alone_saved, 2),
            "baseline_status": alone.status,
            "all_ready_s": round(all_ready, 2),
            "all_saved_s": round(all_saved, 2),
            "target_s": target,
            "ready_within_target": all_ready <= target,
            "saved_within_target": all_saved <= target,
            "saved_vs_baseline": round(all_saved / alone_saved, 2),
            **phases,
            "statuses": statuses,
            "files": len(files),
            "process_cpu_s": round(
                cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system, 2
            ),
            "cpu_ms_per_task": round(
                (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system)
                * 1000
                / count,
                2,
            ),
            "peak_rss_mb": round(rss.peak / 1e6, 1),
            "rss_under_150mb": rss.peak < 150e6,
            "cpus": os.cpu_count(),
        }


async def bare_loop(count: int, poll_interval: float, settings: Settings, out: Path) -> int:
    """The floor: submit ``count`` at once, poll each every ``poll_interval`` (seed 002's loop),
    stream each video to a file. Returns how many files were written."""
    endpoint = settings.require_credentials("volcengine")
    async with create_client(httpx2.Timeout(settings.request_timeout, connect=10.0)) as client:
        adapter = providers.create("volcengine", endpoint, client)
        await anyio.Path(out).mkdir(parents=True, exist_ok=True)
        saved = 0

        async def one(n: int) -> None:
            nonlocal saved
            submitted = await adapter.submit(request(n, "many"), PreparedInputs())
            while True:
                await anyio.sleep(poll_interval)
                poll = await adapter.poll(submitted.ref)
                if poll.status not in ("queued", "running"):
                    break
            if poll.status != "succeeded":
                return
            source = await adapter.download_source(submitted.ref, poll)
            async with client.stream("GET", source.url, headers=dict(source.headers)) as reply:
                with (out / f"{n}.mp4").open("wb") as file:
                    async for chunk in reply.aiter_raw():
                        file.write(chunk)
            saved += 1

        async with anyio.create_task_group() as group:
            for n in range(count):
                group.start_soon(one, n)
    return saved


async def bench_bare(count: int, job_seconds: float, poll_interval: float) -> dict[str, object]:
    with sandbox_process(job_seconds) as env, tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(env, Path(tmp), poll_interval)
        cpu_before = psutil.Process().cpu_times()
        with PeakRss() as rss:
            started = time.perf_counter()
            saved = await bare_loop(count, poll_interval, settings, Path(tmp) / "bare")
            wall = time.perf_counter() - started
        cpu_after = psutil.Process().cpu_times()
    cpu = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    return {
        "bare_all_saved_s": round(wall, 2),
        "bare_files": saved,
        "bare_cpu_ms_per_task": round(cpu * 1000 / count, 2),
        "bare_peak_rss_mb": round(rss.peak / 1e6, 1),
    }


def in_child(kind: str, count: int, job_seconds: float, poll_interval: float) -> dict[str, object]:
    """One measurement in a fresh process of its own (so CPU and peak RSS are its own)."""
    command = [sys.executable, __file__, "--child", kind, "--tasks", str(count)]
    command += ["--job-seconds", str(job_seconds), "--poll-intervals", str(poll_interval)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return cast(dict[str, object], json.loads(done.stdout.strip().splitlines()[-1]))


def summary(runs: list[dict[str, object]]) -> dict[str, object]:
    """Medians over the runs of one poll interval, and the worst of what must always hold."""

    def median(key: str) -> float:
        return round(statistics.median(float(cast(float, r[key])) for r in runs), 2)

    first = runs[0]
    all_saved, all_ready, target = median("all_saved_s"), median("all_ready_s"), first["target_s"]
    completed = min(cast(dict[str, int], r["statuses"]).get("completed", 0) for r in runs)
    bare: dict[str, object] = {}
    if all("bare_all_saved_s" in r for r in runs):
        bare_saved, bare_cpu = median("bare_all_saved_s"), median("bare_cpu_ms_per_task")
        bare = {
            "bare_all_saved_s": bare_saved,
            "bare_cpu_ms_per_task": bare_cpu,
            "bare_peak_rss_mb": median("bare_peak_rss_mb"),
            "saved_vs_bare": round(all_saved / bare_saved, 2),
            "cpu_per_task_vs_bare": round(median("cpu_ms_per_task") / bare_cpu, 2),
            "within_1_3x_bare_wall": all_saved <= 1.3 * bare_saved,
            "within_1_5x_bare_cpu": median("cpu_ms_per_task") <= 1.5 * bare_cpu,
        }
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == "poll_interval")
    return {
        "poll_interval": first["poll_interval"],
        "product_default": first["poll_interval"] == default,
        "runs": len(runs),
        "target_s": target,
        "baseline_one_task_ready_s": median("baseline_one_task_ready_s"),
        "baseline_one_task_saved_s": median("baseline_one_task_saved_s"),
        "all_ready_s": all_ready,
        "all_saved_s": all_saved,
        "all_ready_runs_s": [r["all_ready_s"] for r in runs],
        "all_saved_runs_s": [r["all_saved_s"] for r in runs],
        "ready_within_target": all_ready <= cast(float, target),
        "saved_within_target": all_saved <= cast(float, target),
        "submit_wave_s": median("submit_wave_s"),
        "ready_to_saved_p50_s": median("ready_to_saved_p50_s"),
        "process_cpu_s": median("process_cpu_s"),
        "cpu_ms_per_task": median("cpu_ms_per_task"),
        "completed_min": completed,
        "peak_rss_mb_max": max(cast(float, r["peak_rss_mb"]) for r in runs),
        **bare,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--job-seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--poll-intervals",
        default="5,1",
        help="comma-separated poll intervals in seconds, each measured --runs times",
    )
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-loop floor")
    parser.add_argument("--child", choices=("engine", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    intervals = [float(v) for v in args.poll_intervals.split(",") if v.strip()]
    if args.child:
        measure = bench if args.child == "engine" else bench_bare
        print(json.dumps(anyio.run(measure, args.tasks, args.job_seconds, intervals[0])))
        return
    summaries = []
    for interval in intervals:
        runs = []
        for n in range(args.runs):
            figures = in_child("engine", args.tasks, args.job_seconds, interval)
            if not args.no_bare:
                figures |= in_child("bare", args.tasks, args.job_seconds, interval)
            runs.append(figures)
            print(f"poll {interval:g} s, run {n + 1}: " + json.dumps(figures), flush=True)
        summaries.append(summary(runs))
    result = {"tasks": args.tasks, "job_seconds": args.job_seconds, "intervals": summaries}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
