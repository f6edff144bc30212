"""The engine's own logic against a scripted provider: who polls, when, and what is recorded."""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import anyio
import pytest

from videogen.engine import Progress
from videogen.errors import (
    CredentialsError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from videogen.ledger import Ledger
from videogen.models import Task
from videogen.providers.base import PollResult

from .conftest import (
    ORIGIN,
    VIDEO_URL,
    ScriptedProvider,
    cdn_client,
    make_settings,
    running_engine,
    t2v,
    tiny_mp4,
)

pytestmark = pytest.mark.anyio


def file_bytes(path: str | Path) -> bytes:
    return Path(path).read_bytes()


#: Settings whose output "directory" is a file, so a finish stops at the download with an error.
def blocked_output(tmp_path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    (tmp_path / "blocked").write_text("a file, not a directory")
    return make_settings(tmp_path, output_dir=tmp_path / "blocked", **overrides)


async def test_the_task_is_in_the_ledger_before_the_submit_is_sent(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    seen: list[str] = []

    class Spy(ScriptedProvider):
        async def submit(self, request, inputs):  # type: ignore[no-untyped-def]
            seen.extend(t.status for t in Ledger.in_dir(settings.data_dir).recent())
            return await super().submit(request, inputs)

    async with running_engine(settings, Spy()) as engine:
        task = await engine.submit(t2v())
    assert seen == ["submitting"]
    assert task.status == "queued"
    assert task.provider_task_id == "p0" and task.req_key == "jimeng_t2v_v30"
    assert task.request_ids == ["req-submit"]


async def test_a_fast_failure_surfaces_at_the_first_poll(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=[PollResult(status="failed", raw_status="done")])
    async with running_engine(make_settings(tmp_path, poll_interval=30.0), provider) as engine:
        started = time.monotonic()
        task = await engine.generate(t2v(), wait_seconds=10)
    assert task.status == "failed"
    assert time.monotonic() - started < 2
    assert task.error is not None and "submit it again" in task.error.message


async def test_a_provider_that_forgot_the_task_marks_it_expired(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=[PollResult(status="expired", raw_status="not_found")])
    async with running_engine(make_settings(tmp_path), provider) as engine:
        task = await engine.generate(t2v(), wait_seconds=10)
    assert task.status == "expired"
    assert task.error is not None and "submit the request again" in task.error.message


async def test_two_waiters_share_one_poll_loop(tmp_path: Path) -> None:
    script = [PollResult(status="running", raw_status="generating")] * 10 + [
        PollResult(status="failed", raw_status="done")
    ]
    provider = ScriptedProvider(script=script)
    async with running_engine(make_settings(tmp_path), provider) as engine:
        task = await engine.submit(t2v())
        results: list[Task] = []

        async def check() -> None:
            results.append(await engine.check(task.id, wait_seconds=10))

        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(check)
    assert [t.status for t in results] == ["failed"] * 3
    assert provider.max_parallel_polls == 1
    assert provider.polls == len(script)


async def test_a_caller_whose_budget_runs_out_gets_the_task_as_it_stands(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=[PollResult(status="running", raw_status="generating")])
    async with running_engine(make_settings(tmp_path), provider) as engine:
        started = time.monotonic()
        task = await engine.generate(t2v(), wait_seconds=0.3)
        assert task.status == "running"
        assert 0.25 < time.monotonic() - started < 2
        assert engine.watching == 1  # the tracker keeps it


async def test_a_cancelled_caller_abandons_nothing(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        script=[PollResult(status="running", raw_status="generating")] * 5
        + [PollResult(status="failed", raw_status="done")]
    )
    async with running_engine(make_settings(tmp_path), provider) as engine:
        with anyio.move_on_after(0.05):
            await engine.generate(t2v(), wait_seconds=None)
        (task,) = engine.list_tasks()
        assert task.status in ("queued", "running")
        assert (await engine.check(task.id, wait_seconds=5)).status == "failed"


async def test_cancelling_during_the_submit_still_records_its_answer(tmp_path: Path) -> None:
    class Slow(ScriptedProvider):
        async def submit(self, request, inputs):  # type: ignore[no-untyped-def]
            await anyio.sleep(0.2)
            return await super().submit(request, inputs)

    async with running_engine(make_settings(tmp_path), Slow()) as engine:
        with anyio.move_on_after(0.05):
            await engine.submit(t2v())
        (task,) = engine.list_tasks()
        assert task.status == "queued" and task.provider_task_id == "p0"


async def test_progress_is_reported_while_waiting(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        script=[
            PollResult(status="running", raw_status="generating", progress=0.25),
            PollResult(status="running", raw_status="generating", progress=0.75),
            PollResult(status="failed", raw_status="done"),
        ]
    )
    heard: list[Progress] = []

    async def hear(progress: Progress) -> None:
        heard.append(progress)

    async with running_engine(make_settings(tmp_path), provider) as engine:
        await engine.generate(t2v(), wait_seconds=10, on_progress=hear)
    fractions = [p.fraction for p in heard if p.status == "running"]
    assert 0.25 in fractions and 0.75 in fractions
    assert heard[-1].status == "failed"


async def test_a_poll_hint_from_the_provider_is_honoured(tmp_path: Path) -> None:
    hint = PollResult(status="running", raw_status="generating", poll_after=0.3)
    provider = ScriptedProvider(script=[hint, hint, PollResult(status="failed", raw_status="x")])
    async with running_engine(make_settings(tmp_path, poll_interval=0.01), provider) as engine:
        started = time.monotonic()
        await engine.generate(t2v(), wait_seconds=10)
    assert time.monotonic() - started >= 0.6


async def test_polls_keep_their_interval_however_long_each_answer_takes(tmp_path: Path) -> None:
    """The polls keep their grid (every 0.4 s after the submit): a slow answer (0.3 s here)
    does not push every later poll back by its length (0.4 s apart, not 0.7 s), and a poll
    that started late is not carried over to the next."""
    starts: list[float] = []

    class Slow(ScriptedProvider):
        async def poll(self, ref):  # type: ignore[no-untyped-def]
            starts.append(anyio.current_time())
            await anyio.sleep(0.3)
            return await super().poll(ref)

    running = PollResult(status="running", raw_status="generating")
    provider = Slow(script=[running, running, running, PollResult(status="failed", raw_status="x")])
    async with running_engine(make_settings(tmp_path, poll_interval=0.4), provider) as engine:
        await engine.generate(t2v(), wait_seconds=10)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    assert all(0.3 <= gap < 0.6 for gap in gaps), gaps
    assert 1.15 <= starts[-1] - starts[0] <= 1.3  # three intervals


async def test_an_identical_request_within_the_window_returns_the_first_task(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(script=[PollResult(status="running", raw_status="generating")])
    async with running_engine(make_settings(tmp_path), provider) as engine:
        first = await engine.submit(t2v())
        again = await engine.submit(t2v())
        other_owner = await engine.submit(t2v(), owner="alice")
        forced = await engine.submit(t2v(), new=True)
    assert again.id == first.id
    assert again.notes and "identical request" in again.notes[0]
    assert other_owner.id != first.id
    assert forced.id != first.id
    assert provider.submits == 3


async def test_a_failed_task_is_not_returned_as_a_duplicate(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=[PollResult(status="failed", raw_status="done")])
    async with running_engine(make_settings(tmp_path), provider) as engine:
        first = await engine.generate(t2v(), wait_seconds=10)
        second = await engine.submit(t2v())
    assert first.status == "failed"
    assert second.id != first.id


async def test_the_window_is_configurable(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=[PollResult(status="running", raw_status="generating")])
    async with running_engine(make_settings(tmp_path, dedupe_seconds=0.0), provider) as engine:
        first = await engine.submit(t2v())
        await anyio.sleep(0.01)
        second = await engine.submit(t2v())
    assert second.id != first.id


async def test_an_ambiguous_submit_marks_the_task_unknown_and_is_not_resent(
    tmp_path: Path,
) -> None:
    lost = ProviderUnavailable(
        "The connection dropped; the request may have reached it. Try again later.",
        provider="volcengine",
        sent=True,
    )
    provider = ScriptedProvider(submit_error=lost, submit_errors_first=10)
    async with running_engine(make_settings(tmp_path), provider) as engine:
        task = await engine.submit(t2v())
    assert task.status == "unknown"
    assert task.error is not None and "may or may not have been billed" in task.error.message
    # The message leads with what really happened (the process did not stop), and does not
    # pass on the adapter's "try again later", which would contradict "never resent".
    assert task.error.message.startswith("The connection dropped, so it is not known whether")
    assert "Try again later" not in task.error.message
    assert provider.submits == 1


async def test_a_submit_that_never_left_or_was_rate_limited_is_retried(tmp_path: Path) -> None:
    refused = ProviderUnavailable("Connection refused.", provider="volcengine", sent=False)
    limited = RateLimited("Too many.", provider="volcengine", retry_after=0.05)
    for error in (refused, limited):
        provider = ScriptedProvider(submit_error=error, submit_errors_first=2)
        async with running_engine(make_settings(tmp_path), provider) as engine:
            task = await engine.submit(t2v(prompt=repr(error)))
        assert task.status == "queued"
        assert provider.submits == 3


async def test_a_refused_submit_is_recorded_and_raised(tmp_path: Path) -> None:
    refused = CredentialsError("Volcengine rejected the keys: check VOLC_ACCESSKEY.")
    provider = ScriptedProvider(submit_error=refused, submit_errors_first=1)  # type: ignore[arg-type]
    async with running_engine(make_settings(tmp_path), provider) as engine:
        with pytest.raises(CredentialsError):
            await engine.submit(t2v())
        (task,) = engine.list_tasks()
    assert task.status == "failed"
    assert task.error is not None and task.error.kind == "credentials"


async def test_a_credentials_error_while_polling_keeps_the_task(tmp_path: Path) -> None:
    provider = ScriptedProvider(script=[CredentialsError("Keys rejected: set VOLC_ACCESSKEY.")])
    async with running_engine(make_settings(tmp_path), provider) as engine:
        task = await engine.generate(t2v(), wait_seconds=10)
        assert task.status == "queued"
        assert task.error is not None and "VOLC_ACCESSKEY" in task.error.message
        assert engine.watching == 0
        # Fixed keys: checking again resumes polling.
        provider.script = [PollResult(status="failed", raw_status="done")]
        provider.steps.clear()
        task = await engine.check(task.id, wait_seconds=10)
    assert task.status == "failed"


async def test_an_unavailable_provider_is_retried_and_shown_without_failing(
    tmp_path: Path,
) -> None:
    down = ProviderUnavailable("503 from the provider.", provider="volcengine")
    provider = ScriptedProvider(script=[down] * 8 + [PollResult(status="failed", raw_status="x")])
    settings = make_settings(tmp_path, poll_interval=0.01)
    async with running_engine(settings, provider) as engine:
        engine._retry = type(engine._retry)(attempts=2, wait_initial=0.001, wait_max=0.002)
        seen: list[str] = []

        async def hear(progress: Progress) -> None:
            seen.append(
                engine.get(progress.task_id).error.kind
                if engine.get(progress.task_id).error
                else "-"
            )  # type: ignore[union-attr]

        task = await engine.generate(t2v(), wait_seconds=20, on_progress=hear)
    assert task.status == "failed"
    assert "unavailable" in seen


async def test_a_definitive_provider_error_at_poll_fails_the_task_at_once(tmp_path: Path) -> None:
    """50200-style answers do not change by asking again: no slow re-poll for 24 h."""
    bad = ProviderError("Volcengine refused the status query.", provider="volcengine",
                        code=50200, provider_message="Invalid parameter: task_id")  # fmt: skip
    provider = ScriptedProvider(script=[bad])
    async with running_engine(make_settings(tmp_path, poll_interval=30.0), provider) as engine:
        started = time.monotonic()
        task = await engine.generate(t2v(), wait_seconds=10)
        assert engine.watching == 0
    assert time.monotonic() - started < 3
    assert task.status == "failed" and provider.polls == 1
    assert task.error is not None and task.error.code == "50200"
    assert "Invalid parameter: task_id" in task.error.message


async def test_a_rate_limited_poll_keeps_the_task_and_polls_again(tmp_path: Path) -> None:
    limited = RateLimited("Too many polls.", provider="volcengine", retry_after=0.01)
    provider = ScriptedProvider(script=[limited] * 4 + [PollResult("failed", "done")])
    settings = make_settings(tmp_path, poll_interval=0.01)
    async with running_engine(settings, provider) as engine:
        engine._retry = type(engine._retry)(attempts=1)
        task = await engine.generate(t2v(), wait_seconds=20)
    assert task.status == "failed" and provider.polls == 5


async def test_a_submitting_row_found_at_start_becomes_unknown_and_is_never_resent(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, request_timeout=1.0)
    ledger = Ledger.in_dir(settings.data_dir)
    long_ago = time.time() - 60
    orphan = Task(
        id="vg_orphan",
        request=t2v(),
        status="submitting",
        created_at=long_ago,
        updated_at=long_ago,
        origin=ORIGIN,
    )
    ledger.insert(orphan)
    ledger.close()
    provider = ScriptedProvider()
    async with running_engine(settings, provider) as engine:
        task = await engine.check("vg_orphan", wait_seconds=5)
    assert task.status == "unknown"
    assert task.error is not None and "may or may not have been billed" in task.error.message
    assert provider.submits == 0 and provider.polls == 0


async def test_unfinished_tasks_are_resumed_at_start(tmp_path: Path) -> None:
    settings = blocked_output(tmp_path)
    ledger = Ledger.in_dir(settings.data_dir)
    now = time.time()
    for n in range(3):
        ledger.insert(
            Task(
                id=f"vg_{n}",
                request=t2v(prompt=f"p{n}"),
                status="running",
                created_at=now,
                updated_at=now,
                provider_task_id=f"x{n}",
                req_key="jimeng_t2v_v30",
                origin=ORIGIN,
            )
        )
    ledger.close()
    provider = ScriptedProvider()
    async with running_engine(settings, provider) as engine:
        with anyio.fail_after(10):
            await engine.wait_idle()
        tasks = engine.list_tasks()
    assert sorted(provider.steps) == ["x0", "x1", "x2"]
    assert {t.status for t in tasks} == {"ready"}


def block(folder: Path) -> None:
    """Turn a folder into a file: the save after a good preflight fails."""
    shutil.rmtree(folder)
    folder.write_text("a file, not a directory")


async def test_a_failed_download_keeps_the_task_ready_with_its_url_and_the_error(
    tmp_path: Path,
) -> None:
    async with running_engine(make_settings(tmp_path), ScriptedProvider()) as engine:
        task = await engine.submit(t2v())
        block(tmp_path / "out")  # no checkpoint since the submit: the watcher has not run yet
        task = await engine.check(task.id, wait_seconds=10)
    assert task.status == "ready"
    assert task.video_url == "https://cdn.example/video.mp4"
    assert task.error is not None and task.error.kind == "output"
    assert "VIDEOGEN_OUTPUT_DIR" in task.error.message
    assert task.local_path is None


async def test_a_finished_task_is_saved_probed_and_given_a_poster_when_asked(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    body = tiny_mp4(seconds=121 / 24)
    async with running_engine(settings, ScriptedProvider(), cdn_client(body)) as engine:
        task = await engine.generate(t2v(), wait_seconds=20)
        assert task.poster_path is None  # made when an interface that shows it asks
        task = await engine.poster(task)
        assert engine.get(task.id).poster_path == task.poster_path
        assert await engine.poster(task) == task  # once made, kept
    assert task.status == "completed", task.error
    assert task.local_path is not None and task.media is not None
    path = Path(task.local_path)
    assert path.parent == (tmp_path / "out").resolve()
    assert task.id in path.name
    assert file_bytes(path) == body  # 121 frames at 24 fps is already a "5 s" clip
    assert task.media.frames == 121 and task.media.fps == 24
    assert task.poster_path is not None and file_bytes(task.poster_path)[:2] == b"\xff\xd8"
    assert [e.status for e in task.history] == [
        "submitting",
        "queued",
        "running",
        "ready",
        "completed",
    ]


async def test_a_clip_is_conformed_to_the_requested_duration_and_fps(tmp_path: Path) -> None:
    body = tiny_mp4(seconds=121 / 24)
    async with running_engine(
        make_settings(tmp_path), ScriptedProvider(), cdn_client(body)
    ) as engine:
        task = await engine.generate(t2v(duration=4, fps=30), wait_seconds=30)
    assert task.status == "completed", task.error
    assert task.media is not None
    assert task.media.fps == 30
    assert abs(task.media.duration - 4.0) <= 1 / 30 + 1e-6


async def test_a_video_already_saved_by_a_run_that_died_is_adopted_not_duplicated(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    body = tiny_mp4(seconds=121 / 24)
    ledger = Ledger.in_dir(settings.data_dir)
    now = time.time()
    task = Task(
        id="vg_0000deadbeef",
        request=t2v(),
        status="ready",
        created_at=now,
        updated_at=now,
        provider_task_id="p9",
        req_key="jimeng_t2v_v30",
        video_url=VIDEO_URL,
        origin=ORIGIN,
    )
    ledger.insert(task)
    ledger.close()
    from videogen.files import safe_filename

    out = tmp_path / "out"
    out.mkdir()
    (out / safe_filename(task.request.prompt, task.id)).write_bytes(body)
    async with running_engine(settings, ScriptedProvider(), cdn_client(body)) as engine:
        done = await engine.check(task.id, wait_seconds=20)
    assert done.status == "completed"
    assert [p.name for p in out.glob("*.mp4")] == [safe_filename(task.request.prompt, task.id)]


async def test_a_ledger_row_a_newer_version_wrote_does_not_stop_the_engine(
    tmp_path: Path,
) -> None:
    """Resuming, listing, submitting and checking all work next to a row with an unknown status
    and one with an unknown request field; checking the unreadable one says why."""
    import sqlite3

    from videogen.errors import VideogenError

    settings = make_settings(tmp_path)
    ledger = Ledger.in_dir(settings.data_dir)
    now = time.time()
    for task_id, prompt in (("vg_newstatus", "one"), ("vg_newfield", "two")):
        ledger.insert(Task(id=task_id, request=t2v(prompt), status="queued", created_at=now,
                           updated_at=now, provider_task_id="p-old", origin=ORIGIN))  # fmt: skip
    ledger.close()
    with sqlite3.connect(settings.data_dir / "tasks.sqlite3") as db:
        db.execute("UPDATE tasks SET data = json_set(data, '$.status', 'paused'), "
                   "status = 'paused' WHERE id = 'vg_newstatus'")  # fmt: skip
        db.execute("UPDATE tasks SET data = json_set(data, '$.request.motion_brush', 'soft') "
                   "WHERE id = 'vg_newfield'")  # fmt: skip
    provider = ScriptedProvider()
    async with running_engine(settings, provider, cdn_client(tiny_mp4(5))) as engine:
        listed = engine.list_tasks()
        assert [t.id for t in listed] == ["vg_newfield"]
        fresh = await engine.generate(t2v("three"), wait_seconds=20)
        assert fresh.status == "completed", fresh.error
        assert (await engine.check("vg_newfield", wait_seconds=20)).status == "completed"
        with pytest.raises(VideogenError, match="newer videogen"):
            await engine.check("vg_newstatus")
