"""Many tasks in flight in one process: 500 generations tracked, downloaded and saved at once.

The sandbox runs in a separate process (so its rendering and serving do not share this
process's GIL or memory); the engine runs here. Each poll interval is measured in several
runs, each with a fresh sandbox and folders; the figures are medians:

- baseline: one task alone, submit to saved file, in this same run;
- in flight: N tasks submitted at once, time until every one is saved (and until every one is
  ``ready``, i.e. tracked to the provider's end, before the downloads);
- the target: every task finishes, wall time within job time + two poll intervals, peak RSS
  under 200 MB.

Intervals: the product's default (5 s, seed 002's loop) and a 1 s stress case, where the
engine sends five times the polls and has a third of the time to save everything.

Run: ``uv run --group dev python bench/bench_inflight.py [--tasks 500] [--job-seconds 5] [--runs 3]
[--poll-intervals 5,1]``.
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
import psutil

from videogen.app import open_app
from videogen.config import Settings
from videogen.engine import Engine
from videogen.models import GenerationRequest, Task

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
            "peak_rss_mb": round(rss.peak / 1e6, 1),
            "rss_under_200mb": rss.peak < 200e6,
            "cpus": os.cpu_count(),
        }


def summary(runs: list[dict[str, object]]) -> dict[str, object]:
    """Medians over the runs of one poll interval, and the worst of what must always hold."""

    def median(key: str) -> float:
        return round(statistics.median(float(cast(float, r[key])) for r in runs), 2)

    first = runs[0]
    all_saved, all_ready, target = median("all_saved_s"), median("all_ready_s"), first["target_s"]
    completed = min(cast(dict[str, int], r["statuses"]).get("completed", 0) for r in runs)
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
        "completed_min": completed,
        "peak_rss_mb_max": max(cast(float, r["peak_rss_mb"]) for r in runs),
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
    args = parser.parse_args()
    intervals = [float(v) for v in args.poll_intervals.split(",") if v.strip()]
    summaries = []
    for interval in intervals:
        runs = []
        for n in range(args.runs):
            figures = anyio.run(bench, args.tasks, args.job_seconds, interval)
            runs.append(figures)
            print(f"poll {interval:g} s, run {n + 1}: " + json.dumps(figures), flush=True)
        summaries.append(summary(runs))
    result = {"tasks": args.tasks, "job_seconds": args.job_seconds, "intervals": summaries}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
