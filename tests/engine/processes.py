"""Code run in other processes by the engine tests (spawned, so it must be importable)."""

from __future__ import annotations

import multiprocessing.queues
import multiprocessing.synchronize
import os
from pathlib import Path

import anyio

from videogen.app import open_app
from videogen.config import Settings
from videogen.errors import VideogenError
from videogen.models import GenerationRequest
from videogen.sandbox import SandboxOptions


def submit_rounds(
    home: str,
    rounds: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.queues.Queue[list[str]],
) -> None:
    """Submit ``rounds`` text-only requests through a sandboxed app on ``home``'s data dir,
    each round released by ``barrier`` at the same moment as the other process's; put the
    task ids answered, in order."""
    results.put(anyio.run(_submit_rounds, Path(home), rounds, barrier))


async def _submit_rounds(
    home: Path, rounds: int, barrier: multiprocessing.synchronize.Barrier
) -> list[str]:
    settings = _settings(home, {})
    ids: list[str] = []
    # Long jobs: nothing finishes (and nothing is downloaded) while the rounds run.
    async with open_app(
        settings, track=False, sandbox_options=SandboxOptions(job_seconds=60)
    ) as app:
        for round_ in range(rounds):
            await anyio.to_thread.run_sync(barrier.wait)
            request = GenerationRequest(
                provider="volcengine", mode="t2v_720p", prompt=f"round {round_}: a kite"
            )
            ids.append((await app.engine.submit(request)).id)
    return ids


def submit_at_once(
    home: str,
    env: dict[str, str],
    count: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: multiprocessing.queues.Queue[list[str]],
) -> None:
    """Submit ``count`` different text-only requests at once through a sandboxed app on
    ``home``'s data dir (``env`` added to its settings), released by ``barrier`` together
    with the other process's; put each answer: a task id, or the error's kind."""
    results.put(anyio.run(_submit_at_once, Path(home), env, count, barrier))


async def _submit_at_once(
    home: Path, env: dict[str, str], count: int, barrier: multiprocessing.synchronize.Barrier
) -> list[str]:
    settings = _settings(home, env)
    answers: list[str] = []
    async with open_app(
        settings, track=False, sandbox_options=SandboxOptions(job_seconds=60)
    ) as app:

        async def one(n: int) -> None:
            request = GenerationRequest(
                provider="volcengine", mode="t2v_720p", prompt=f"kite {os.getpid()} {n}"
            )
            try:
                answers.append((await app.engine.submit(request)).id)
            except VideogenError as exc:
                answers.append(exc.kind)

        await anyio.to_thread.run_sync(barrier.wait)
        async with anyio.create_task_group() as group:
            for n in range(count):
                group.start_soon(one, n)
    return answers


def _settings(home: Path, env: dict[str, str]) -> Settings:
    """A sandboxed app's settings on ``home``'s folders, with ``env`` added."""
    return Settings.from_env(
        {
            "HOME": str(home),
            "VIDEOGEN_OUTPUT_DIR": str(home / "out"),
            "VIDEOGEN_DATA_DIR": str(home / "data"),
            **env,
        }
    )
