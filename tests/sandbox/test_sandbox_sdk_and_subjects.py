"""The official Volcengine SDK works against the sandbox; OmniHuman subjects and cancel."""

from __future__ import annotations

import io
import json

import anyio
import av
import httpx2
import pytest
from sandbox_helpers import JOB_SECONDS, TOKENOPS_HEADERS, Volc, probe

from videogen.sandbox import (
    SANDBOX_ACCESS_KEY,
    SANDBOX_SECRET_KEY,
    ManualClock,
    RunningSandbox,
    SandboxOptions,
    serve_in_thread,
)


def test_the_official_sdk_submits_polls_and_gets_a_video_it_can_download() -> None:
    """VisualService with set_host("127.0.0.1:PORT") signs Host with the port; it verifies."""
    from volcengine.visual.VisualService import VisualService

    clock = ManualClock()
    with serve_in_thread(SandboxOptions(job_seconds=1), clock=clock) as sb:
        service = VisualService()
        service.set_host(f"127.0.0.1:{sb.port}")
        service.set_scheme("http")
        service.set_ak(SANDBOX_ACCESS_KEY)
        service.set_sk(SANDBOX_SECRET_KEY)
        form = {
            "req_key": "jimeng_t2v_v30",
            "prompt": "a paper boat drifts across a quiet pond",
            "seed": -1,
            "frames": 121,
            "aspect_ratio": "16:9",
        }
        submitted = service.cv_sync2async_submit_task(form)
        assert submitted["code"] == 10000, submitted
        task_id = submitted["data"]["task_id"]
        clock.advance(1.01)
        done = service.cv_sync2async_get_result({"req_key": "jimeng_t2v_v30", "task_id": task_id})
        assert done["data"]["status"] == "done"
        video = httpx2.get(done["data"]["video_url"])
        assert probe(video.content) == (1280, 720, 121, 24.0, 1, False)
        service.set_sk("wrong")
        with pytest.raises(Exception, match="SignatureDoesNotMatch"):
            service.cv_sync2async_submit_task(form)
        assert sb.log.count("volcengine", "submit", http_status=200) == 1


@pytest.mark.anyio
async def test_detection_finds_no_subject_in_a_uniform_image_and_masks_in_a_picture(
    volc: Volc, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """CVProcess: resp_data is a JSON string; masks are real PNGs, largest first."""
    key = "jimeng_realman_avatar_object_detection"
    empty = await volc.call(
        "CVProcess", {"req_key": key, "image_url": f"{sb.url}/assets/image/640x640-uniform.png"}
    )
    resp = json.loads(empty.json()["data"]["resp_data"])
    assert resp["status"] == 0 and resp["object_detection_result"]["mask"]["url"] == []
    found = await volc.call(
        "CVProcess", {"req_key": key, "image_url": f"{sb.url}/assets/image/640x640-team.png"}
    )
    urls = json.loads(found.json()["data"]["resp_data"])["object_detection_result"]["mask"]["url"]
    assert 1 <= len(urls) <= 5
    areas = []
    for url in urls:
        mask = await http.get(url)
        assert mask.headers["content-type"] == "image/png"
        with av.open(io.BytesIO(mask.content)) as container:
            pixels = next(container.decode(video=0)).to_ndarray(format="gray")
        areas.append(int((pixels > 127).sum()))
    assert areas == sorted(areas, reverse=True) and areas[-1] > 0
    again = await volc.call(
        "CVProcess", {"req_key": key, "image_url": f"{sb.url}/assets/image/640x640-team.png"}
    )
    again_urls = json.loads(again.json()["data"]["resp_data"])["object_detection_result"]
    assert len(again_urls["mask"]["url"]) == len(urls)  # deterministic
    tokenops = await http.post(
        f"{sb.tokenops_url}/omnihuman/subject/detection",
        headers=TOKENOPS_HEADERS,
        json={
            "model": "OmniHuman_1.5",
            "req_key": key,
            "image_url": f"{sb.url}/assets/image/640x640-team.png",
        },
    )
    assert tokenops.json()["status"] == 1 and len(tokenops.json()["mask_urls"]) == len(urls)


@pytest.mark.anyio
async def test_recognition_is_a_task_whose_result_says_whether_there_is_a_subject(
    volc: Volc, clock: ManualClock, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """CVSubmitTask/CVGetResult -> resp_data '{"status": 1|0}'; TokenOps answers at once."""
    key = "jimeng_realman_avatar_picture_create_role_omni_v15"
    results = {}
    for name in ("uniform", "person"):
        url = f"{sb.url}/assets/image/640x640-{name}.png"
        task_id = (await volc.call("CVSubmitTask", {"req_key": key, "image_url": url})).json()[
            "data"
        ]["task_id"]
        clock.advance(JOB_SECONDS)
        answer = await volc.call("CVGetResult", {"req_key": key, "task_id": task_id})
        assert answer.json()["data"]["status"] == "done"
        results[name] = json.loads(answer.json()["data"]["resp_data"])["status"]
    assert results == {"uniform": 0, "person": 1}
    assert sb.log.count("volcengine", "recognize_submit") == 2
    assert sb.log.count("volcengine", "recognize_poll") == 2
    tokenops = await http.post(
        f"{sb.tokenops_url}/omnihuman/subject/recognition",
        headers=TOKENOPS_HEADERS,
        json={
            "model": "OmniHuman_1.5",
            "req_key": key,
            "image_url": "https://example.com/no-subject.png",
        },
    )
    assert tokenops.json()["status"] == 0 and tokenops.json()["task_id"]


@pytest.mark.anyio
async def test_cancel_works_on_a_queued_task_but_not_a_generating_one(
    volc: Volc, clock: ManualClock, sb: RunningSandbox
) -> None:
    """CVCancelTask (2024-06-06): queued -> cancelled (then not_found); generating -> 50200."""
    body = {"req_key": "jimeng_t2v_v30", "prompt": "a boat"}
    queued = (await volc.submit(body)).json()["data"]["task_id"]
    cancel = await volc.call(
        "CVCancelTask", {"req_key": "jimeng_t2v_v30", "task_id": queued}, version="2024-06-06"
    )
    assert cancel.status_code == 200 and cancel.json()["code"] == 10000
    assert (await volc.poll("jimeng_t2v_v30", queued)).json()["data"]["status"] == "not_found"
    busy = (await volc.submit(body)).json()["data"]["task_id"]
    clock.advance(JOB_SECONDS / 2)
    refused = await volc.call(
        "CVCancelTask", {"req_key": "jimeng_t2v_v30", "task_id": busy}, version="2024-06-06"
    )
    assert refused.status_code == 400 and "generating" in refused.json()["message"]
    assert sb.log.count("volcengine", "cancel") == 2


@pytest.mark.anyio
async def test_files_honour_ranges_and_the_bench_file_streams_any_size(
    sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """Content-Length, 206 + Content-Range for a-b, a- and -n, 416 past the end."""
    from videogen.sandbox import bench_bytes

    url = f"{sb.url}/files/bench-1000000.bin"
    whole = await http.get(url)
    assert whole.headers["content-length"] == "1000000" and whole.content == bench_bytes(0, 10**6)
    middle = await http.get(url, headers={"Range": "bytes=10-19"})
    assert (middle.status_code, middle.headers["content-range"]) == (206, "bytes 10-19/1000000")
    assert middle.content == bench_bytes(10, 20)
    tail = await http.get(url, headers={"Range": "bytes=-5"})
    assert tail.content == bench_bytes(999_995, 10**6)
    rest = await http.get(url, headers={"Range": "bytes=999990-"})
    assert rest.headers["content-length"] == "10"
    beyond = await http.get(url, headers={"Range": "bytes=2000000-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */1000000"


@pytest.mark.anyio
async def test_tokenops_content_can_redirect_or_answer_json_and_speak_openai_statuses(
    volc: Volc, clock: ManualClock, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """tokenops_content redirect -> 302 to /files; json -> video_url + expires_at;
    tokenops_vocabulary openai -> queued / in_progress / completed."""
    sb.options.tokenops_vocabulary = "openai"
    body = {
        "model": "jimeng-video-3.0-720P",
        "req_key": "jimeng_t2v_v30",
        "prompt": "a boat",
        "seconds": "5",
        "size": "1280x720",
    }
    video_id = (
        await http.post(f"{sb.tokenops_url}/videos", json=body, headers=TOKENOPS_HEADERS)
    ).json()["id"]
    status_url = f"{sb.tokenops_url}/videos/{video_id}"
    statuses = []
    for _ in range(3):
        statuses.append((await http.get(status_url, headers=TOKENOPS_HEADERS)).json()["status"])
        clock.advance(JOB_SECONDS / 2)
    assert statuses == ["queued", "in_progress", "completed"]
    sb.options.tokenops_content = "redirect"
    moved = await http.get(f"{status_url}/content", headers=TOKENOPS_HEADERS)
    assert moved.status_code == 302 and "/files/" in moved.headers["location"]
    sb.options.tokenops_content = "json"
    described = (await http.get(f"{status_url}/content", headers=TOKENOPS_HEADERS)).json()
    assert described["expires_at"] > clock() and "/files/" in described["video_url"]
    assert (await http.get(described["video_url"])).status_code == 200
    await anyio.lowlevel.checkpoint()
