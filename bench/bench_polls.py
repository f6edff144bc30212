"""Polls per task and latency after done: the engine (polls that learn) vs the seeds' loops.

    uv run --group dev python bench/bench_polls.py             # 5 runs, 3 measured jobs per kind
    uv run --group dev python bench/bench_polls.py --runs 1 --tasks 2   # quick

**Jobs.** Four kinds of Jimeng job, each with its own typical length: ``t2v_720p`` 5 s clip
150 s, ``t2v_720p`` 10 s clip 300 s, ``ti2v_pro`` (1080p) 5 s clip 270 s and 10 s clip 540 s;
each job is its kind's typical length times a log-normal factor (sigma 0.15, i.e. about
+-15 %), kept within 2-10 minutes. Jobs of one kind vary, kinds differ a lot: a job's length
is not known in advance, but jobs like it are. (How much real jobs vary within a kind is not
published; ``--sigma`` changes the assumption.)

**Time.** Compressed by ``--scale`` (default 1/20): a 300 s job takes 15 s, the 5 s poll
interval 0.25 s, the 1 s first poll 0.05 s. The engine gets the scaled interval
(``JIMENG_VIDEO_POLL_INTERVAL``) and first poll; everything else in its schedule is a multiple
of those or learned from the (scaled) history, so its decisions are the unscaled ones, scaled.
Round trips are not compressed, so they are kept out of the figures: a task's latency is
measured *at the provider*, from the moment the job finished to the first poll the sandbox
logged after it (its own clock), not to the moment a client has read and stored the answer;
real clients add one round trip to every contender alike. The seed loops (poll, then sleep)
would drift later by a round trip per poll, far more in compressed time than at real time, so
they sleep their interval minus the round trip just measured: no drift at all, which favours
them slightly (a real 100 ms round trip stretches 5 s by 2 %). The engine times its polls from
each poll's start, so it does not drift either. The loopback round trip (mostly this process's
own event loop, busy with ~50 tasks on a shared machine) is printed next to the engine's
shortest compressed gap.

**History.** The engine learns from its ledger, so each run first sends a warm-up batch
(``--history`` jobs per kind, engine only, the fixed schedule since nothing is known yet) and
waits for it; then the measured batch: ``--tasks`` jobs per kind, each submitted by the engine
and by each seed loop (same job lengths, at the same moment):

- ``videogen``: the engine (``videogen.schedule``);
- ``seed 002``: poll, then sleep 5 s, until done (the Jimeng skill's defaults);
- ``seed 000``: poll, then sleep 10 s (the Jenius example);
- ``seed 001``: poll, then sleep 15 s (the TokenOps example).

**Renders.** Each run has a fresh sandbox, ledger and render cache (a new directory, and a
prompt with a per-run nonce), so every run renders cold. All jobs of a kind share the prompt
(their seeds differ, so the engine does not treat them as duplicates): a run renders 4
distinct videos, not one per task. The peak RSS of the process is printed.

Per run: mean polls per task and median latency after done (unscaled seconds) per contender;
printed: the median over runs, and the ratio to seed 002 per run (from the same run). The last
line is JSON for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from videogen.app import ProviderClients
from videogen.catalog import JimengMode
from videogen.config import Settings
from videogen.engine import Engine
from videogen.engine.context import FIRST_POLL_SECONDS
from videogen.ledger import open_ledger
from videogen.memory import limit_malloc_arenas
from videogen.models import GenerationRequest
from videogen.providers.base import PreparedInputs, Provider, TaskRef
from videogen.sandbox import RunningSandbox, SandboxOptions, serve
from videogen.sandbox.render import Renderer
from videogen.schedule import NEAR_FACTOR

#: (mode, requested duration, typical seconds from submit to done).
KINDS: tuple[tuple[JimengMode, int, float], ...] = (
    ("t2v_720p", 5, 150.0),
    ("t2v_720p", 10, 300.0),
    ("ti2v_pro", 5, 270.0),
    ("ti2v_pro", 10, 540.0),
)
JOB_RANGE = (120.0, 600.0)
POLL_INTERVAL = 5.0  # JIMENG_VIDEO_POLL_INTERVAL's default, unscaled
SEED_LOOPS = {"seed 002 (5 s)": 5.0, "seed 000 (10 s)": 10.0, "seed 001 (15 s)": 15.0}
BASELINE = "seed 002 (5 s)"


@dataclass
class Job:
    mode: JimengMode
    duration: int
    seconds: float  # unscaled


@dataclass
class Sample:
    contender: str
    job: Job
    polls: int
    latency: float  # unscaled seconds from the job's end to the first poll after it


@dataclass
class Run:
    samples: list[Sample]
    renders: int
    jobs: int  # generations the embedded sandbox ran (videogen's and the loops')
    round_trips: list[float] = field(default_factory=list)  # seconds, not scaled


def draw_jobs(draw: random.Random, per_kind: int, sigma: float) -> list[Job]:
    low, high = JOB_RANGE
    jobs = [
        Job(mode, duration, min(high, max(low, typical * math.exp(draw.gauss(0.0, sigma)))))
        for mode, duration, typical in KINDS
        for _ in range(per_kind)
    ]
    draw.shuffle(jobs)
    return jobs


class Bench:
    """One run: a fresh sandbox, ledger and render cache."""

    def __init__(self, args: argparse.Namespace, run: int) -> None:
        self.args = args
        self.scale: float = args.scale
        self.nonce = uuid.uuid4().hex[:8]
        self.draw = random.Random(1000 + run)
        self.counter = 0
        self.round_trips: list[float] = []

    def request(self, job: Job) -> GenerationRequest:
        self.counter += 1
        prompt = f"a paper boat, run {self.nonce}"
        return GenerationRequest(
            provider="volcengine",
            mode=job.mode,
            prompt=prompt,
            duration=job.duration,  # type: ignore[arg-type]
            seed=self.counter,
        )

    async def run(self) -> Run:
        root = Path(tempfile.mkdtemp(prefix="videogen-polls-"))
        renderer = Renderer(root / "renders")
        async with serve(SandboxOptions(job_seconds=1.0), renderer=renderer) as sandbox:
            env = {
                **sandbox.env(),
                "HOME": str(root),
                "VIDEOGEN_DATA_DIR": str(root / "data"),
                "VIDEOGEN_OUTPUT_DIR": str(root / "videos"),
                "JIMENG_VIDEO_POLL_INTERVAL": str(POLL_INTERVAL * self.scale),
            }
            settings = Settings.from_env(env)
            clients = ProviderClients(settings)
            ledger = open_ledger(settings)
            engine = Engine(
                settings,
                ledger,
                providers=clients.provider,
                clients=clients.client,
                first_poll_seconds=FIRST_POLL_SECONDS * self.scale,
            )
            try:
                samples = await self.batches(engine, clients.provider("volcengine"), sandbox)
            finally:
                ledger.close()
                await clients.aclose()
        return Run(samples, renderer.renders, self.counter, self.round_trips)

    async def batches(
        self, engine: Engine, provider: Provider, sandbox: RunningSandbox
    ) -> list[Sample]:
        args = self.args
        measured: list[tuple[str, str, Job]] = []  # (contender, provider task id, job)
        async with anyio.create_task_group() as group:
            engine.attach(group, resume=False)
            for job in draw_jobs(self.draw, args.history, args.sigma):  # warm-up: not measured
                await self.submit(engine, sandbox, job)
            await engine.wait_idle()
            async with anyio.create_task_group() as loops:
                for job in draw_jobs(self.draw, args.tasks, args.sigma):
                    provider_id = await self.submit(engine, sandbox, job)
                    measured.append(("videogen", provider_id, job))
                    for name, interval in SEED_LOOPS.items():
                        submitted = await provider.submit(self.request(job), PreparedInputs())
                        ref = submitted.ref
                        measured.append((name, ref.provider_task_id, job))
                        loops.start_soon(self.loop, provider, ref, interval * self.scale)
            await engine.wait_idle()
            group.cancel_scope.cancel()
        return [self.sample(name, pid, job, sandbox) for name, pid, job in measured]

    async def submit(self, engine: Engine, sandbox: RunningSandbox, job: Job) -> str:
        sandbox.options.job_seconds = job.seconds * self.scale
        task = await engine.submit(self.request(job))
        assert task.provider_task_id is not None, task.error
        return task.provider_task_id

    async def loop(self, provider: Provider, ref: TaskRef, interval: float) -> None:
        """Poll, then sleep ``interval``, until done (the seeds' loop). The sleep is shortened
        by the round trip just measured: compressed, a round trip would stretch the loop's
        interval (and so cut its polls and raise its latency) far more than at real time."""
        while True:
            started = time.perf_counter()
            result = await provider.poll(ref)
            took = time.perf_counter() - started
            self.round_trips.append(took)
            if result.status not in ("queued", "running"):
                return
            await anyio.sleep(max(0.0, interval - took))

    def sample(self, name: str, provider_id: str, job: Job, sandbox: RunningSandbox) -> Sample:
        """Polls up to the first one after the job ended, and how long after the end it was
        (the sandbox's own log and clock)."""
        entries = [e for e in sandbox.log.entries if e.task_id == provider_id]
        submitted = next(e.at for e in entries if e.operation == "submit")
        task = sandbox.state.find("volcengine", provider_id)
        assert task is not None
        finished = submitted + task.job_seconds
        polls = sorted(e.at for e in entries if e.operation == "poll")
        done = next(at for at in polls if at >= finished)
        count = sum(1 for at in polls if at <= done)
        return Sample(name, job, count, (done - finished) / self.scale)


def summarise(runs: list[Run]) -> dict[str, dict[str, float]]:
    names = ["videogen", *SEED_LOOPS]
    per_run: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for run in runs:
        for name in names:
            mine = [s for s in run.samples if s.contender == name]
            per_run[name].append(
                (statistics.mean(s.polls for s in mine), statistics.median(s.latency for s in mine))
            )
    figures: dict[str, dict[str, float]] = {}
    for name in names:
        figures[name] = {
            "polls": statistics.median(p for p, _ in per_run[name]),
            "latency": statistics.median(lat for _, lat in per_run[name]),
            "n": len(runs),
        }
    for name in names:  # every measured task of every run together: steadier than per run
        pooled = [s.latency for run in runs for s in run.samples if s.contender == name]
        figures[name]["latency_pooled"] = statistics.median(pooled)
    ratios = [
        ours[0] / base[0] for ours, base in zip(per_run["videogen"], per_run[BASELINE], strict=True)
    ]
    figures["videogen"]["ratio_runs"] = statistics.median(ratios)
    print("  per run (videogen vs seed 002, same run): " + "; ".join(
        f"x{o[0] / b[0]:.2f} polls, {o[1]:.1f} s vs {b[1]:.1f} s"
        for o, b in zip(per_run["videogen"], per_run[BASELINE], strict=True)
    ))  # fmt: skip
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=3, help="measured jobs per kind (4 kinds)")
    parser.add_argument("--history", type=int, default=10, help="warm-up jobs per kind")
    parser.add_argument("--scale", type=float, default=0.05, help="time scale (1/20)")
    parser.add_argument("--sigma", type=float, default=0.15, help="spread within a kind")
    args = parser.parse_args()
    limit_malloc_arenas()  # as ``open_app`` does in the program that embeds the sandbox
    started = time.monotonic()
    runs: list[Run] = []
    for run in range(args.runs):
        runs.append(anyio.run(Bench(args, run).run))
        print(f"  run {run + 1}: {runs[-1].renders} renders (cold cache), "
              f"{time.monotonic() - started:.0f} s so far", flush=True)  # fmt: skip
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trips = sorted(t for r in runs for t in r.round_trips)
    close = NEAR_FACTOR * POLL_INTERVAL * args.scale
    print(f"polls per task and latency after done: {4 * args.tasks} measured jobs per run "
          f"(after {4 * args.history} warm-up jobs), lengths "
          f"{'/'.join(f'{t:g}' for *_, t in KINDS)} s x lognormal(sigma {args.sigma:g}), "
          f"time x{args.scale:g}; median of {args.runs} runs:")  # fmt: skip
    figures = summarise(runs)
    for name, f in figures.items():
        print(f"  {name:16} polls/task {f['polls']:5.1f}   latency {f['latency']:5.1f} s "
              f"(all runs' tasks pooled: {f['latency_pooled']:.1f} s)")  # fmt: skip
    ours, base = figures["videogen"], figures[BASELINE]
    print(f"  videogen vs {BASELINE}: polls x{ours['ratio_runs']:.2f} (median of per-run "
          f"ratios; target <= 0.5), latency {ours['latency']:.1f} s vs "
          f"{base['latency']:.1f} s")  # fmt: skip
    rtt = statistics.median(trips) if trips else 0.0
    print(f"  poll round trip (loopback): median {rtt * 1000:.1f} ms, p95 "
          f"{trips[int(0.95 * (len(trips) - 1))] * 1000 if trips else 0:.1f} ms = "
          f"{rtt / close:.1%} of the shortest compressed gap ({close * 1000:.0f} ms)")  # fmt: skip
    print(f"  renders per run {[r.renders for r in runs]}, jobs per run {[r.jobs for r in runs]}, "
          f"peak RSS {rss_mb:.0f} MB (engine + embedded sandbox), "
          f"wall time {time.monotonic() - started:.0f} s")  # fmt: skip
    print(json.dumps({"bench": "polls", "figures": figures, "scale": args.scale,
                      "runs": args.runs, "runs_completed": len(runs),
                      "jobs_per_run": [r.jobs for r in runs],
                      "renders_per_run": [r.renders for r in runs], "peak_rss_mb": round(rss_mb),
                      "round_trip_ms": round(rtt * 1000, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
