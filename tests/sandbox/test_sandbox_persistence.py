"""A sandbox with a ``state_dir`` keeps its tasks: later sandboxes and concurrent ones answer them.

Every test runs two sandboxes on one state directory (one after the other, or both at once) on
one manual clock, as two processes would on the wall clock.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import numpy as np
import numpy.typing as npt
import pytest
from sandbox_helpers import JENIUS_HEADERS, JOB_SECONDS, TOKENOPS_HEADERS, Volc, png_b64, probe

from videogen.sandbox import ManualClock, RunningSandbox, SandboxOptions, serve
from videogen.sandbox import render as render_module

pytestmark = pytest.mark.anyio

T2V = "jimeng_t2v_v30"
I2V = "jimeng_i2v_first_v30"


def persistent(tmp_path: Path, **options: object) -> SandboxOptions:
    return SandboxOptions(job_seconds=JOB_SECONDS, state_dir=tmp_path / "state", **options)  # type: ignore[arg-type]


async def submit_t2v(volc: Volc, prompt: str) -> str:
    answer = await volc.submit({"req_key": T2V, "prompt": prompt, "frames": 121})
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["data"]["task_id"]
    return task_id


def port_of(url: str) -> int | None:
    return urlsplit(url).port


async def test_a_task_outlives_its_sandbox_and_the_next_one_finishes_it(
    tmp_path: Path, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    async with serve(persistent(tmp_path), clock=clock) as first:
        task_id = await submit_t2v(Volc(first, http, clock), "a boat that outlives its server")
        first_port = first.port
    clock.advance(JOB_SECONDS / 2)

    async with serve(persistent(tmp_path), clock=clock) as second:
        volc = Volc(second, http, clock)
        running = (await volc.poll(T2V, task_id)).json()["data"]
        assert running["status"] == "generating"
        clock.advance(JOB_SECONDS)
        done = (await volc.poll(T2V, task_id)).json()["data"]
        assert done["status"] == "done"
        # The URL is this sandbox's (the first one's port is closed now).
        assert port_of(done["video_url"]) == second.port != first_port
        video = await http.get(done["video_url"])
        assert video.status_code == 200
        assert probe(video.content)[:3] == (1280, 720, 121)
        assert second.log.count(operation="submit") == 0
        history = second.history()
        assert history.count("volcengine", "submit", task_id=task_id) == 1
        assert history.count("volcengine", "poll", task_id=task_id) == 2
        assert history.count(operation="download", task_id=task_id) == 1


async def test_the_job_runs_on_while_no_sandbox_is_alive(
    tmp_path: Path, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Status comes from the stored submit time: a job finishes while nobody is running."""
    async with serve(persistent(tmp_path), clock=clock) as first:
        task_id = await submit_t2v(Volc(first, http, clock), "finished while nobody watched")
    clock.advance(JOB_SECONDS + 1)
    async with serve(persistent(tmp_path), clock=clock) as second:
        done = (await Volc(second, http, clock).poll(T2V, task_id)).json()["data"]
    assert done["status"] == "done" and done["video_url"]


async def test_without_a_state_dir_the_next_sandbox_does_not_know_the_task(
    clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    async with serve(SandboxOptions(job_seconds=JOB_SECONDS), clock=clock) as first:
        task_id = await submit_t2v(Volc(first, http, clock), "forgotten")
    async with serve(SandboxOptions(job_seconds=JOB_SECONDS), clock=clock) as second:
        answer = (await Volc(second, http, clock).poll(T2V, task_id)).json()["data"]
    assert answer["status"] == "not_found"


async def test_two_sandboxes_open_at_once_share_tasks_cancels_and_the_concurrency_limit(
    tmp_path: Path, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    options = {"concurrency_limit": 1}
    async with (
        serve(persistent(tmp_path, **options), clock=clock) as a,
        serve(persistent(tmp_path, **options), clock=clock) as b,
    ):
        on_a, on_b = Volc(a, http, clock), Volc(b, http, clock)
        task_id = await submit_t2v(on_a, "seen by both")
        assert (await on_b.poll(T2V, task_id)).json()["data"]["status"] == "in_queue"
        # The limit counts the other sandbox's task too.
        refused = await on_b.submit({"req_key": T2V, "prompt": "one too many"})
        assert refused.json()["code"] == 50430
        cancelled = await on_b.call(
            "CVCancelTask", {"req_key": T2V, "task_id": task_id}, version="2024-06-06"
        )
        assert cancelled.json()["code"] == 10000, cancelled.text
        assert (await on_a.poll(T2V, task_id)).json()["data"]["status"] == "not_found"
        # Cancelled, it no longer counts: the other sandbox accepts a new task.
        accepted = await on_a.submit({"req_key": T2V, "prompt": "room again"})
        assert accepted.json()["code"] == 10000
        assert a.history().count(operation="submit") == b.history().count(operation="submit") == 3


async def test_tokenops_and_jenius_tasks_and_fault_outcomes_persist(
    tmp_path: Path, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A failure decided by a fault in the first process is the outcome in the next."""
    first_options = persistent(tmp_path, faults=("fail_after_generating:1",))
    async with serve(first_options, clock=clock) as first:
        failing = await http.post(
            first.tokenops_url + "/videos",
            headers=TOKENOPS_HEADERS,
            json={
                "model": "jimeng-video-3.0-720P",
                "req_key": T2V,
                "prompt": "doomed",
                "seconds": "5",
            },
        )
        assert failing.status_code == 200, failing.text
        scene = await http.post(
            first.jenius_url + "/plugins/video/tasks",
            headers=JENIUS_HEADERS,
            json={"scene": "celebrity", "image_url": first.url + "/assets/image/640x480.png"},
        )
        assert scene.status_code == 200, scene.text
    clock.advance(JOB_SECONDS + 1)

    async with serve(persistent(tmp_path), clock=clock) as second:
        video_id = failing.json()["id"]
        polled = await http.get(
            f"{second.tokenops_url}/videos/{video_id}", headers=TOKENOPS_HEADERS
        )
        uuid = scene.json()["data"]["uuid"]
        scene_now = await http.get(
            f"{second.jenius_url}/plugins/video/tasks/{uuid}", headers=JENIUS_HEADERS
        )
    assert polled.status_code == 200 and polled.json()["status"] == "failed"
    data = scene_now.json()["data"]
    assert data["status"] == "completed" and data["scene"] == "celebrity"
    assert port_of(data["video_url"]) == second.port


def first_frame(data: bytes) -> npt.NDArray[np.uint8]:
    import av

    with av.open(io.BytesIO(data), "r") as container:
        frame = next(container.decode(video=0))
        pixels = np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)
    return pixels


async def test_an_image_task_is_rendered_from_its_stored_image_in_a_later_process(
    tmp_path: Path, clock: ManualClock, http: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input image's bytes are stored with the task: a process that never saw the image
    (empty image store, empty render cache) renders the same video, not a placeholder."""
    image = png_b64(640, 360, "persisted")
    async with serve(persistent(tmp_path), clock=clock) as first:
        volc = Volc(first, http, clock)
        answer = await volc.submit({"req_key": I2V, "prompt": "pan", "binary_data_base64": [image]})
        task_id = answer.json()["data"]["task_id"]
        clock.advance(JOB_SECONDS + 1)
        url = (await volc.poll(I2V, task_id)).json()["data"]["video_url"]
        original = (await http.get(url)).content
    # What a new process starts with: no image bytes, and no render of this task anywhere.
    monkeypatch.setattr(render_module, "_IMAGES", {})
    for directory in {tmp_path / "state" / "renders", render_module.default_renderer().directory}:
        for path in directory.glob("*.mp4"):
            if path.read_bytes() == original:
                path.unlink()

    async with serve(persistent(tmp_path), clock=clock) as second:
        url = (await Volc(second, http, clock).poll(I2V, task_id)).json()["data"]["video_url"]
        again = (await http.get(url)).content
        assert renderer_of(second).renders >= 1
    difference = np.abs(first_frame(again).astype(int) - first_frame(original).astype(int))
    assert difference.mean() < 2.0


def renderer_of(sb: RunningSandbox) -> render_module.Renderer:
    return sb.renderer
