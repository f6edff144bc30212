"""The Volcengine front runs a Jimeng task from submit to a downloadable MP4."""

from __future__ import annotations

import io

import av
import httpx2
import pytest
from sandbox_helpers import JOB_SECONDS, Volc

from videogen.sandbox import ManualClock, RunningSandbox

pytestmark = pytest.mark.anyio


async def test_a_text_to_video_task_moves_from_queue_to_done_and_serves_a_real_mp4(
    volc: Volc, clock: ManualClock, http: httpx2.AsyncClient, sb: RunningSandbox
) -> None:
    """in_queue -> generating -> done on the clock, then a 1280x720 24 fps 121-frame H.264."""
    body = {
        "req_key": "jimeng_t2v_v30",
        "prompt": "a paper boat on a pond",
        "seed": -1,
        "frames": 121,
        "aspect_ratio": "16:9",
    }
    submitted = await volc.submit(body)
    assert submitted.status_code == 200
    envelope = submitted.json()
    assert envelope["code"] == 10000 and envelope["status"] == 10000
    assert len(envelope["request_id"]) == 34 and envelope["request_id"][:14].isdigit()
    task_id = envelope["data"]["task_id"]

    first = (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]
    assert first == {"status": "in_queue", "video_url": ""}
    clock.advance(JOB_SECONDS / 2)
    assert (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]["status"] == "generating"
    clock.advance(JOB_SECONDS)
    done = (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]
    assert done["status"] == "done" and done["aigc_meta_tagged"] is True

    video = await http.get(done["video_url"])
    assert video.status_code == 200
    assert int(video.headers["content-length"]) == len(video.content)
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1280, 720)
        assert stream.average_rate == 24 and frames == 121
    assert sb.log.count("volcengine", "submit") == 1
    assert sb.log.count("volcengine", "download", task_id=task_id) == 1
