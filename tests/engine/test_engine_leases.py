"""Several processes on one ledger: only the lease holder polls and saves; the others follow the
ledger. A dead holder's task is taken over, and its leftover temp files are swept first."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
import pytest

from videogen.config import Settings
from videogen.engine import Engine
from videogen.files import safe_filename, sweep_temporaries
from videogen.ledger import Lease, Ledger
from videogen.models import GenerationRequest, Task, TaskError
from videogen.providers.base import PollResult, PreparedInputs, Submitted

from .conftest import (
    ORIGIN,
    VIDEO_URL,
    ScriptedProvider,
    make_settings,
    running_engine,
    t2v,
    tiny_mp4,
)

pytestmark = pytest.mark.anyio

CLIP = tiny_mp4(seconds=121 / 24)


def finished() -> ScriptedProvider:
    """A provider whose task is done (a fresh poll hands out the link)."""
    return ScriptedProvider(
        script=[PollResult(status="succeeded", raw_status="done", video_url=VIDEO_URL)]
    )


def counting_cdn(downloads: list[str]) -> httpx2.AsyncClient:
    def serve(request: httpx2.Request) -> httpx2.Response:
        downloads.append(str(request.url))
        return httpx2.Response(200, content=CLIP, headers={"content-type": "video/mp4"})

    return httpx2.AsyncClient(transport=httpx2.MockTransport(serve))


async def test_two_engines_on_one_ledger_download_a_task_once(tmp_path: Path) -> None:
    """The CLI's check next to the server's tracker: one download, one file, both completed."""
    settings = make_settings(tmp_path)
    script = [PollResult(status="running", raw_status="generating")] * 5 + [
        PollResult(status="succeeded", raw_status="done", video_url=VIDEO_URL)
    ]
    provider = ScriptedProvider(script=script)
    downloads: list[str] = []
    async with (
        running_engine(settings, provider, counting_cdn(downloads)) as server,
        running_engine(settings, provider, counting_cdn(downloads)) as cli,
    ):
        task = await server.submit(t2v())
        results: dict[str, Task] = {}

        async def check(name: str, engine: Engine) -> None:
            results[name] = await engine.check(task.id, wait_seconds=20)

        async with anyio.create_task_group() as group:
            group.start_soon(check, "cli", cli)
            group.start_soon(check, "server", server)
    assert {name: t.status for name, t in results.items()} == {
        "cli": "completed",
        "server": "completed",
    }
    assert downloads == [VIDEO_URL]
    assert provider.polls == len(script)  # one poll loop between them
    saved = sorted(p.name for p in (tmp_path / "out").glob("*.mp4"))
    assert saved == [Path(results["cli"].local_path or "").name]


def leased_ready_task(tmp_path: Path, holder: str, until: float) -> Task:
    ledger = Ledger.in_dir(tmp_path / "data")
    now = time.time()
    task = Task(id="vg_0000000000aa", request=t2v(), status="ready", created_at=now,
                updated_at=now, provider_task_id="p7", req_key="jimeng_t2v_v30",
                video_url=VIDEO_URL, origin=ORIGIN)  # fmt: skip
    ledger.insert(task, lease=Lease(holder, until))
    ledger.close()
    return task


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


async def test_a_task_held_by_a_dead_process_of_this_host_is_taken_over_at_once(
    tmp_path: Path,
) -> None:
    holder = f"{socket.gethostname()}:{dead_pid()}:0badf00d"
    task = leased_ready_task(tmp_path, holder, until=time.time() + 3600)
    downloads: list[str] = []
    provider = finished()
    async with running_engine(make_settings(tmp_path), provider, counting_cdn(downloads)) as e:
        done = await e.check(task.id, wait_seconds=20)
    assert done.status == "completed", done.error
    assert len(downloads) == 1


async def test_a_live_holder_is_followed_not_raced_until_its_lease_runs_out(
    tmp_path: Path,
) -> None:
    """Another host's holder cannot be proven dead: its lease must run out first."""
    task = leased_ready_task(tmp_path, "another-host:1:cafecafe", until=time.time() + 0.8)
    downloads: list[str] = []
    async with running_engine(
        make_settings(tmp_path), finished(), counting_cdn(downloads)
    ) as engine:
        early = await engine.check(task.id, wait_seconds=0.3)
        assert early.status == "ready" and downloads == []
        done = await engine.check(task.id, wait_seconds=20)
    assert done.status == "completed", done.error
    assert len(downloads) == 1


async def test_a_follower_sees_what_the_holder_records(tmp_path: Path) -> None:
    """A non-holder never writes: it returns what the holder stored, as soon as it is stored."""
    task = leased_ready_task(tmp_path, "another-host:1:cafecafe", until=time.time() + 3600)
    provider = finished()
    async with running_engine(make_settings(tmp_path), provider) as engine:

        async def holder_finishes() -> None:
            await anyio.sleep(0.2)
            ledger = Ledger.in_dir(tmp_path / "data")
            finished = ledger.get(task.id)
            finished.status, finished.local_path = "completed", "/somewhere/boat.mp4"
            finished.updated_at = time.time()
            ledger.save(finished)
            ledger.close()

        async with anyio.create_task_group() as group:
            group.start_soon(holder_finishes)
            seen = await engine.check(task.id, wait_seconds=10)
    assert seen.status == "completed" and seen.local_path == "/somewhere/boat.mp4"
    assert provider.polls == 0


async def test_leases_are_renewed_while_working_and_released_after(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    script = [PollResult(status="running", raw_status="generating")] * 12 + [
        PollResult(status="failed", raw_status="done")
    ]
    provider = ScriptedProvider(script=script)
    async with running_engine(settings, provider, lease_seconds=0.4) as engine:
        task = await engine.submit(t2v())
        first = engine.ledger.lease(task.id)
        assert first.holder == engine.holder
        await anyio.sleep(0.5)  # longer than the lease: it must have been renewed
        renewed = engine.ledger.lease(task.id)
        assert renewed.holder == engine.holder and (renewed.until or 0) > time.time()
        done = await engine.check(task.id, wait_seconds=20)
        assert done.status == "failed"
        assert engine.ledger.lease(task.id) == Lease(None, None)


# -- replicas: taking over while running, stopping gracefully (issue 19) -------------------------


async def test_a_running_engine_takes_over_a_task_whose_lease_ran_out_without_being_asked(
    tmp_path: Path,
) -> None:
    """The holder (on another host, so only expiry tells) stopped renewing: a running engine
    that was never asked about the task finishes it within a lease length and a round."""
    downloads: list[str] = []
    settings = make_settings(tmp_path)
    async with running_engine(
        settings, finished(), counting_cdn(downloads), lease_seconds=0.4
    ) as engine:
        task = leased_ready_task(tmp_path, "another-host:1:cafecafe", until=time.time() + 0.3)
        with anyio.fail_after(10):
            # The takeover happens in the engine's own rounds: nothing to wait on but the ledger.
            while engine.ledger.get(task.id).status != "completed":  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert await anyio.Path(engine.ledger.get(task.id).local_path or "").is_file()
    assert len(downloads) == 1


async def test_a_live_holders_task_and_a_failed_save_are_not_taken_over(tmp_path: Path) -> None:
    """Due means nobody works on it: a renewed lease is left alone, and so is a video whose save
    failed and stopped (a check retries that one)."""
    settings = make_settings(tmp_path)
    held = leased_ready_task(tmp_path, "another-host:1:cafecafe", until=time.time() + 3600)
    ledger = Ledger.in_dir(tmp_path / "data")
    failed = held.model_copy(update={"id": "vg_0000000000bb", "error": TaskError(
        kind="download", message="the disk is full")})  # fmt: skip
    ledger.insert(failed)
    ledger.close()
    provider = finished()
    async with running_engine(settings, provider, lease_seconds=0.4, resume=False) as engine:
        origins = [ORIGIN]
        assert engine._tracker.take_over_due(origins) == 0
        assert engine.ledger.lease(held.id).holder == "another-host:1:cafecafe"
        assert engine.ledger.lease(failed.id).holder == engine.holder  # left to run out
        assert engine.watching == 0 and provider.polls == 0


async def test_stop_waiting_answers_every_waiting_caller_at_once_with_the_pending_task(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(script=[PollResult(status="running", raw_status="generating")])
    async with running_engine(make_settings(tmp_path), provider) as engine:
        answers: list[Task] = []

        async def generate() -> None:
            answers.append(await engine.generate(t2v(), wait_seconds=60))

        with anyio.fail_after(2):
            async with anyio.create_task_group() as group:
                group.start_soon(generate)
                await anyio.wait_all_tasks_blocked()  # submitted, and waiting
                engine.stop_waiting()
        (answer,) = answers
        assert answer.status in ("queued", "running")
        with anyio.fail_after(2):
            again = await engine.check(answer.id, wait_seconds=60)
        assert again.id == answer.id and not again.terminal


async def test_an_app_that_stops_hands_its_leases_back(tmp_path: Path) -> None:
    """Leaving ``open_app`` cancels the watchers and releases every lease the engine held, so
    another process takes the tasks over at once instead of after the lease runs out."""
    from videogen.app import open_app
    from videogen.sandbox import SandboxOptions

    settings = Settings.from_env({"HOME": str(tmp_path), "VIDEOGEN_DATA_DIR": str(
        tmp_path / "data"), "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "out")})  # fmt: skip
    async with open_app(settings, sandbox_options=SandboxOptions(job_seconds=60)) as app:
        task = await app.engine.generate(t2v(), wait_seconds=0)
        assert app.ledger.lease(task.id).holder == app.engine.holder
    ledger = Ledger.in_dir(tmp_path / "data")
    try:
        assert ledger.lease(task.id) == Lease(None, None)
        assert not ledger.get(task.id).terminal
    finally:
        ledger.close()


# -- nobody waits for a submit in flight in its own process (issue 14 item 4) -------------------


@dataclass
class GatedSubmit(ScriptedProvider):
    """A provider whose submit stays in flight until ``release`` is set."""

    in_flight: anyio.Event = field(default_factory=anyio.Event)
    release: anyio.Event = field(default_factory=anyio.Event)

    async def submit(self, request: GenerationRequest, inputs: PreparedInputs) -> Submitted:
        self.in_flight.set()
        await self.release.wait()
        return await super().submit(request, inputs)


async def test_a_check_or_duplicate_during_this_processs_own_submit_never_waits_for_it(
    tmp_path: Path,
) -> None:
    """A check and a duplicate request that arrive while this process's submit is in flight
    wait for that submit, not for the grace given to another process's (request timeout + 5 s
    = 10 s here); another process following the task sees it finish as soon."""
    settings = make_settings(tmp_path)
    provider = GatedSubmit()
    cdn: list[str] = []
    async with (
        running_engine(settings, provider, counting_cdn(cdn)) as engine,
        running_engine(settings, provider, counting_cdn(cdn)) as other,
    ):
        results: dict[str, Task] = {}

        async def ask(name: str, call: Callable[[], Awaitable[Task]]) -> None:
            results[name] = await call()

        async with anyio.create_task_group() as group:
            group.start_soon(ask, "submit", lambda: engine.submit(t2v()))
            await provider.in_flight.wait()
            (task,) = engine.list_tasks()
            assert task.status == "submitting"
            group.start_soon(ask, "duplicate", lambda: engine.generate(t2v(), wait_seconds=4))
            group.start_soon(ask, "check", lambda: engine.check(task.id, wait_seconds=4))
            group.start_soon(ask, "other", lambda: other.check(task.id, wait_seconds=4))
            await anyio.wait_all_tasks_blocked()
            provider.release.set()
    assert {name: t.status for name, t in results.items() if name != "submit"} == {
        "duplicate": "completed",
        "check": "completed",
        "other": "completed",
    }
    assert {t.id for t in results.values()} == {task.id}
    assert provider.submits == 1 and len(cdn) == 1


async def test_a_lease_its_live_holder_does_not_work_on_runs_out_for_another_process(
    tmp_path: Path,
) -> None:
    """A live process renews only the leases of tasks it is submitting, polling or saving: one
    it holds but does nothing with runs out, and another process finishes the task."""
    settings = make_settings(tmp_path)
    downloads: list[str] = []
    async with running_engine(settings, finished(), lease_seconds=0.4) as idle:
        task = leased_ready_task(tmp_path, idle.holder, until=time.time() + 0.4)
        async with running_engine(
            settings, finished(), counting_cdn(downloads), lease_seconds=0.4
        ) as worker:
            done = await worker.check(task.id, wait_seconds=5)
    assert done.status == "completed", done.error
    assert len(downloads) == 1


# -- temp files a killed run left ----------------------------------------------------------------


async def test_temp_files_left_by_a_killed_run_are_swept_before_the_task_is_saved(
    tmp_path: Path,
) -> None:
    holder = f"{socket.gethostname()}:{dead_pid()}:0badf00d"
    task = leased_ready_task(tmp_path, holder, until=time.time() + 3600)
    out = tmp_path / "out"
    (out / ".posters").mkdir(parents=True)
    name = safe_filename(task.request.prompt, task.id)
    stem = name.removesuffix(".mp4")
    leftovers = [
        out / f".{name}.part-0123abcd",
        out / f".{name}.conform-89abcdef.mp4",
        out / ".posters" / f".{stem}.jpg.part-00ff00ff",
    ]
    other = out / ".someone-elses.mp4.part-0123abcd"
    for path in [*leftovers, other]:
        path.write_bytes(b"half a video")
    live = os.open(other, os.O_RDONLY)
    fcntl.flock(live, fcntl.LOCK_EX)  # another process's download in progress
    async with running_engine(make_settings(tmp_path), finished(), counting_cdn([])) as engine:
        try:
            done = await engine.check(task.id, wait_seconds=20)
        finally:
            os.close(live)
    assert done.status == "completed", done.error
    assert [p for p in leftovers if p.exists()] == []
    assert other.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([".posters", name, other.name])


def test_a_shared_file_name_sweeps_only_long_untouched_temp_files(tmp_path: Path) -> None:
    """A requested filename may be another live task's too: its fresh temp file is kept."""
    fresh, stale = tmp_path / ".boat.mp4.part-00000001", tmp_path / ".boat.mp4.part-00000002"
    conformed = tmp_path / ".boat-1.mp4.conform-00000003.mp4"
    for path in (fresh, stale, conformed):
        path.write_bytes(b"x")
    old = time.time() - 120
    os.utime(stale, (old, old))
    os.utime(conformed, (old, old))
    removed = sweep_temporaries(tmp_path, "boat.mp4", shared_after=60)
    assert sorted(removed) == sorted([stale, conformed])
    assert fresh.exists()
    assert sweep_temporaries(tmp_path, "boat.mp4") == [fresh]


def test_a_temp_file_a_live_writer_holds_is_never_swept(tmp_path: Path) -> None:
    held = tmp_path / ".boat_vg_1.mp4.part-0000000a"
    held.write_bytes(b"x")
    fd = os.open(held, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert sweep_temporaries(tmp_path, "boat_vg_1.mp4") == []
    finally:
        os.close(fd)
    assert sweep_temporaries(tmp_path, "boat_vg_1.mp4") == [held]
