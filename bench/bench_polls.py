"""Polls per task and completion latency: the engine vs the seeds' fixed-interval loops.

    uv run --group dev python bench/bench_polls.py            # 12 job lengths
    uv run --group dev python bench/bench_polls.py --tasks 2  # quick: 8

Against the sandbox, with time scaled down by ``--scale`` (default 1/10: a 90 s job takes 9 s,
a 5 s sleep 0.5 s; HTTP round trips are not scaled, so keep the scale modest). Job lengths are
drawn (fixed seed) from 40-140 s, a plausible range for Jimeng 720p clips, and not multiples of
any loop's interval (that would flatter the loops). Four contenders each
submit the same tasks to the same sandbox at the same time:

- ``videogen``: the engine as shipped (first poll after 1 s, then ``JIMENG_VIDEO_POLL_INTERVAL``
  = 5 s, seed 002's default), scaled;
- ``seed 002``: poll, then sleep 5 s, until done (the Jimeng skill's defaults);
- ``seed 000``: poll, then sleep 10 s (the Jenius example);
- ``seed 001``: poll, then sleep 15 s (the TokenOps example).

Measured per task from the sandbox's own request log and clock: the polls the provider saw, and
the latency from the moment the provider finished to the moment the client saw ``done`` (in
unscaled seconds). The engine also downloads its videos; the latency stops at ``ready``, the
same point as the loops. The last line is JSON for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from videogen.app import ProviderClients
from videogen.config import Settings
from videogen.engine import Engine
from videogen.ledger import Ledger
from videogen.models import GenerationRequest
from videogen.providers.base import PreparedInputs, Provider, TaskRef
from videogen.sandbox import RunningSandbox, SandboxOptions, serve

JOB_RANGE = (40.0, 140.0)
SEED_LOOPS = {"seed 002 (5 s)": 5.0, "seed 000 (10 s)": 10.0, "seed 001 (15 s)": 15.0}


@dataclass
class Sample:
    contender: str
    job_seconds: float  # unscaled
    polls: int = 0
    latency: float = 0.0  # unscaled seconds from provider done to client done


def request(i: int) -> GenerationRequest:
    return GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=f"a boat {i}", seed=i)


async def seed_loop(
    provider: Provider, ref: TaskRef, interval: float, sandbox: RunningSandbox
) -> float:
    """Poll, then sleep ``interval``, until done (the seeds' loop); the time done was seen."""
    while True:
        result = await provider.poll(ref)
        if result.status not in ("queued", "running"):
            return sandbox.state.clock()
        await anyio.sleep(interval)


async def run(args: argparse.Namespace) -> list[Sample]:
    scale = args.scale
    root = Path(tempfile.mkdtemp(prefix="videogen-polls-"))
    samples: list[Sample] = []
    async with serve(SandboxOptions(job_seconds=1.0)) as sandbox:
        env = {
            **sandbox.env(),
            "HOME": str(root),
            "VIDEOGEN_DATA_DIR": str(root / "data"),
            "VIDEOGEN_OUTPUT_DIR": str(root / "videos"),
            "JIMENG_VIDEO_POLL_INTERVAL": str(5.0 * scale),
        }
        settings = Settings.from_env(env)
        clients = ProviderClients(settings)
        ledger = Ledger.in_dir(settings.data_dir)
        engine = Engine(
            settings,
            ledger,
            providers=clients.provider,
            clients=clients.client,
            first_poll_seconds=1.0 * scale,
        )
        provider = clients.provider("volcengine")
        inputs = PreparedInputs()
        engine_tasks: list[tuple[str, str, float]] = []  # (task id, provider id, job s)
        loops: list[tuple[str, TaskRef, float, float]] = []  # (name, ref, interval, job s)
        counter = 0
        async with anyio.create_task_group() as group:
            engine.attach(group, resume=False)
            draw = random.Random(7)
            for job in [round(draw.uniform(*JOB_RANGE), 1) for _ in range(4 * args.tasks)]:
                sandbox.options.job_seconds = job * scale
                counter += 1
                task = await engine.submit(request(counter))
                assert task.provider_task_id is not None
                engine_tasks.append((task.id, task.provider_task_id, job))
                for name, interval in SEED_LOOPS.items():
                    counter += 1
                    submitted = await provider.submit(request(counter), inputs)
                    loops.append((name, submitted.ref, interval * scale, job))
            loop_done: dict[str, float] = {}

            async def follow(name: str, ref: TaskRef, interval: float) -> None:
                loop_done[ref.provider_task_id] = await seed_loop(provider, ref, interval, sandbox)

            async with anyio.create_task_group() as loop_group:
                for name, ref, interval, _ in loops:
                    loop_group.start_soon(follow, name, ref, interval)
            await engine.wait_idle()
            group.cancel_scope.cancel()
        for task_id, provider_id, job in engine_tasks:
            task = ledger.get(task_id)
            ready = next(e.at for e in task.history if e.status == "ready")
            samples.append(_sample("videogen", job, provider_id, ready, sandbox, scale))
        for name, ref, _, job in loops:
            done = loop_done[ref.provider_task_id]
            samples.append(_sample(name, job, ref.provider_task_id, done, sandbox, scale))
        ledger.close()
        await clients.aclose()
    return samples


def _sample(
    name: str, job: float, provider_id: str, seen: float, sandbox: RunningSandbox, scale: float
) -> Sample:
    entries = [e for e in sandbox.log.entries if e.task_id == provider_id]
    submitted = next(e.at for e in entries if e.operation == "submit")
    task = sandbox.state.find("volcengine", provider_id)
    assert task is not None
    finished = submitted + task.job_seconds
    polls = sum(1 for e in entries if e.operation == "poll" and e.at <= seen + 1e-6)
    return Sample(name, job, polls, max(0.0, seen - finished) / scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3, help="4 x this many job lengths")
    parser.add_argument("--scale", type=float, default=0.1, help="time scale (1/10)")
    args = parser.parse_args()
    started = time.monotonic()
    samples = anyio.run(run, args)
    names = ["videogen", *SEED_LOOPS]
    figures: dict[str, dict[str, float]] = {}
    low, high = JOB_RANGE
    print(f"polls per task and latency after the provider finished ({4 * args.tasks} jobs of "
          f"{low:g}-{high:g} s; time x{args.scale:g}):")  # fmt: skip
    for name in names:
        mine = [s for s in samples if s.contender == name]
        polls = statistics.mean(s.polls for s in mine)
        latency = statistics.mean(s.latency for s in mine)
        figures[name] = {"polls": polls, "latency": latency, "n": len(mine)}
        print(f"  {name:16} polls/task {polls:5.1f}   latency {latency:5.1f} s (unscaled)")
    ours = figures["videogen"]
    for name in SEED_LOOPS:
        base = figures[name]
        print(f"  videogen vs {name:16} polls x{ours['polls'] / base['polls']:.2f}, "
              f"latency {ours['latency']:.1f} s vs {base['latency']:.1f} s")  # fmt: skip
    print(f"  wall time {time.monotonic() - started:.1f} s")
    print(json.dumps({"bench": "polls", "figures": figures, "scale": args.scale}))


if __name__ == "__main__":
    main()
