"""Every mode on every provider runs to a playable MP4 whose size, frames and fps match."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sandbox_helpers import JENIUS_HEADERS, JOB_SECONDS, TOKENOPS_HEADERS, Volc, png_b64, probe

from videogen.sandbox import ManualClock, RunningSandbox

pytestmark = pytest.mark.anyio

PROMPT = "a paper boat drifts across a quiet pond"


def asset(sb: RunningSandbox, name: str) -> str:
    return f"{sb.url}/assets/image/{name}"


# (mode id, req_key, body extras (callable of sb), expected width, height, frames)
VOLC_CASES: list[tuple[str, str, Any, int, int, int]] = [
    (
        "t2v_720p",
        "jimeng_t2v_v30",
        lambda sb: {"prompt": PROMPT, "aspect_ratio": "16:9"},
        1280,
        720,
        121,
    ),
    (
        "t2v_1080p 10s",
        "jimeng_t2v_v30_1080p",
        lambda sb: {"prompt": PROMPT, "aspect_ratio": "9:16", "frames": 241},
        1080,
        1920,
        241,
    ),
    (
        "ti2v_pro text",
        "jimeng_ti2v_v30_pro",
        lambda sb: {"prompt": PROMPT, "aspect_ratio": "21:9"},
        2176,
        928,
        121,
    ),
    (
        "ti2v_pro image, no prompt",
        "jimeng_ti2v_v30_pro",
        lambda sb: {"binary_data_base64": [png_b64(1280, 720)]},
        1920,
        1088,
        121,
    ),
    (
        "i2v_first_720p",
        "jimeng_i2v_first_v30",
        lambda sb: {"prompt": PROMPT, "image_urls": [asset(sb, "960x720-boat.jpg")]},
        960,
        720,
        121,
    ),
    (
        "i2v_first_tail_720p",
        "jimeng_i2v_first_tail_v30",
        lambda sb: {
            "prompt": PROMPT,
            "binary_data_base64": [png_b64(1280, 720, "a"), png_b64(1280, 720, "b")],
        },
        1280,
        720,
        121,
    ),
    (
        "i2v_recamera_720p",
        "jimeng_i2v_recamera_v30",
        lambda sb: {
            "prompt": PROMPT,
            "image_urls": [asset(sb, "720x720-pond.png")],
            "template_id": "robo_arm",
            "camera_strength": "strong",
        },
        720,
        720,
        121,
    ),
    (
        "i2v_first_1080p",
        "jimeng_i2v_first_v30_1080",
        lambda sb: {"prompt": PROMPT, "image_urls": ["https://example.com/not-fetched.png"]},
        1920,
        1080,
        121,
    ),
    (
        "i2v_first_tail_1080p",
        "jimeng_i2v_first_tail_v30_1080",
        lambda sb: {
            "prompt": PROMPT,
            "image_urls": [asset(sb, "1280x720-a.png"), asset(sb, "1280x720-b.png")],
        },
        1920,
        1080,
        121,
    ),
]


async def finish_volcengine(volc: Volc, clock: ManualClock, req_key: str, task_id: str) -> str:
    clock.advance(JOB_SECONDS + 0.01)
    data = (await volc.poll(req_key, task_id)).json()["data"]
    assert data["status"] == "done"
    return str(data["video_url"])


@pytest.mark.parametrize(
    ("case", "req_key", "extra", "width", "height", "frames"),
    VOLC_CASES,
    ids=[c[0] for c in VOLC_CASES],
)
async def test_each_jimeng_mode_on_volcengine_renders_the_documented_video(
    case: str,
    req_key: str,
    extra: Any,
    width: int,
    height: int,
    frames: int,
    volc: Volc,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    sb: RunningSandbox,
) -> None:
    """A valid body for the mode is accepted and its video probes at the expected size."""
    answer = await volc.submit({"req_key": req_key, "seed": -1, **extra(sb)})
    assert answer.status_code == 200, answer.text
    url = await finish_volcengine(volc, clock, req_key, answer.json()["data"]["task_id"])
    video = await http.get(url)
    assert video.status_code == 200
    assert probe(video.content) == (width, height, frames, 24.0, 1, False)


TOKENOPS_MODEL = {
    "jimeng_ti2v_v30_pro": "jimeng-video-3.0-pro",
    "jimeng_t2v_v30_1080p": "jimeng-video-3.0-1080P",
    "jimeng_i2v_first_v30_1080": "jimeng-video-3.0-1080P",
    "jimeng_i2v_first_tail_v30_1080": "jimeng-video-3.0-1080P",
}


def tokenops_body(req_key: str, volc_body: dict[str, Any]) -> dict[str, Any]:
    """The same request in TokenOps' shape: content items, seconds/size where they fit."""
    body: dict[str, Any] = {
        "model": TOKENOPS_MODEL.get(req_key, "jimeng-video-3.0-720P"),
        "req_key": req_key,
    }
    content: list[dict[str, Any]] = []
    if "prompt" in volc_body:
        content.append({"type": "text", "text": volc_body["prompt"]})
        body["prompt"] = "ignored: content text wins"
    for url in volc_body.get("image_urls", []):
        content.append({"type": "image_url", "image_url": {"url": url}})
    for blob in volc_body.get("binary_data_base64", []):
        content.append(
            {"type": "image_base64", "image_url": {"url": f"data:image/png;base64,{blob}"}}
        )
    body["content"] = content
    if volc_body.get("frames") == 241:
        body["seconds"] = "10"
    if "aspect_ratio" in volc_body:
        body["aspect_ratio"] = volc_body["aspect_ratio"]
    for key in ("template_id", "camera_strength"):
        if key in volc_body:
            body[key] = volc_body[key]
    return body


@pytest.mark.parametrize(
    ("case", "req_key", "extra", "width", "height", "frames"),
    VOLC_CASES,
    ids=[c[0] for c in VOLC_CASES],
)
async def test_each_jimeng_mode_on_tokenops_renders_the_documented_video(
    case: str,
    req_key: str,
    extra: Any,
    width: int,
    height: int,
    frames: int,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    sb: RunningSandbox,
) -> None:
    """The same request through /v1/videos: in_queue -> processing -> completed -> MP4 bytes."""
    created = await http.post(
        f"{sb.tokenops_url}/videos",
        json=tokenops_body(req_key, extra(sb)),
        headers=TOKENOPS_HEADERS,
    )
    assert created.status_code == 200, created.text
    video_id = created.json()["id"]
    assert created.json()["status"] == "in_queue"
    clock.advance(JOB_SECONDS / 2)
    status = await http.get(f"{sb.tokenops_url}/videos/{video_id}", headers=TOKENOPS_HEADERS)
    assert status.json()["status"] == "processing" and 0 < status.json()["progress"] < 100
    clock.advance(JOB_SECONDS)
    status = await http.get(f"{sb.tokenops_url}/videos/{video_id}", headers=TOKENOPS_HEADERS)
    assert status.json()["status"] == "completed"
    assert status.json()["size"] == f"{width}x{height}"
    video = await http.get(f"{sb.tokenops_url}/videos/{video_id}/content", headers=TOKENOPS_HEADERS)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert probe(video.content) == (width, height, frames, 24.0, 1, False)


async def test_omnihuman_on_volcengine_renders_the_portrait_with_audio_as_long_as_the_audio(
    volc: Volc, clock: ManualClock, http: httpx2.AsyncClient, sb: RunningSandbox
) -> None:
    """processing -> in_queue -> generating -> done; 720p portrait, 3 s audio -> 73 frames."""
    key = "jimeng_realman_avatar_picture_omni_v15"
    body = {
        "req_key": key,
        "image_url": asset(sb, "720x1280-speaker.png"),
        "audio_url": f"{sb.url}/assets/audio/3s.wav",
        "output_resolution": 720,
        "prompt": "speaks warmly",
        "pe_fast_mode": True,
        "seed": 7,
    }
    answer = await volc.call("CVSubmitTask", body)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["data"]["task_id"]
    seen = []
    for _ in range(4):
        poll = await volc.call("CVGetResult", {"req_key": key, "task_id": task_id})
        seen.append(poll.json()["data"]["status"])
        clock.advance(JOB_SECONDS / 4 + 0.01)
    assert seen == ["processing", "in_queue", "generating", "generating"]
    clock.advance(JOB_SECONDS)
    done = (await volc.call("CVGetResult", {"req_key": key, "task_id": task_id})).json()["data"]
    video = await http.get(done["video_url"])
    assert probe(video.content) == (720, 1280, 73, 24.0, 1, True)


async def test_omnihuman_on_tokenops_renders_the_portrait_with_audio(
    clock: ManualClock, http: httpx2.AsyncClient, sb: RunningSandbox
) -> None:
    """generation_type omni_human with content image + audio (+ a mask item) completes."""
    body = {
        "model": "OmniHuman_1.5",
        "req_key": "jimeng_realman_avatar_picture_omni_v15",
        "generation_type": "omni_human",
        "output_resolution": 720,
        "prompt": "speaks warmly",
        "content": [
            {"type": "image_url", "image_url": {"url": asset(sb, "720x1280-speaker.png")}},
            {"type": "audio_url", "audio_url": {"url": f"{sb.url}/assets/audio/3s.wav"}},
            {
                "type": "image_url",
                "role": "mask_image",
                "image_url": {"url": "https://example.com/mask.png"},
            },
        ],
    }
    created = await http.post(f"{sb.tokenops_url}/videos", json=body, headers=TOKENOPS_HEADERS)
    assert created.status_code == 200, created.text
    clock.advance(JOB_SECONDS + 0.01)
    video_id = created.json()["id"]
    video = await http.get(f"{sb.tokenops_url}/videos/{video_id}/content", headers=TOKENOPS_HEADERS)
    assert probe(video.content) == (720, 1280, 73, 24.0, 1, True)


@pytest.mark.parametrize(("scene", "count"), [("celebrity", 1), ("family", 3)])
async def test_each_jenius_scene_runs_created_to_completed_and_serves_a_720p_video(
    scene: str, count: int, clock: ManualClock, http: httpx2.AsyncClient, sb: RunningSandbox
) -> None:
    """created -> pending -> processing -> completed with a video_url to a 1280x720 MP4."""
    urls = [asset(sb, f"800x800-person{i}.png") for i in range(count)]
    body: dict[str, Any] = {"scene": scene}
    body.update({"image_url": urls[0]} if count == 1 else {"image_urls": urls})
    created = await http.post(
        f"{sb.jenius_url}/plugins/video/tasks", json=body, headers=JENIUS_HEADERS
    )
    assert created.status_code == 200, created.text
    assert created.json()["code"] == 200 and created.json()["data"]["status"] == "created"
    uuid = created.json()["data"]["uuid"]
    statuses = []
    for _ in range(3):
        got = await http.get(f"{sb.jenius_url}/plugins/video/tasks/{uuid}", headers=JENIUS_HEADERS)
        statuses.append(got.json()["data"]["status"])
        clock.advance(JOB_SECONDS / 4 + 0.01)
    clock.advance(JOB_SECONDS)
    got = await http.get(f"{sb.jenius_url}/plugins/video/tasks/{uuid}", headers=JENIUS_HEADERS)
    statuses.append(got.json()["data"]["status"])
    assert statuses == ["created", "pending", "processing", "completed"]
    data = got.json()["data"]
    assert data["uuid"] == uuid and data["scene"] == scene and data["error_msg"] == ""
    video = await http.get(data["video_url"])
    assert probe(video.content) == (1280, 720, 121, 24.0, 1, False)
