"""Every fault spec makes the sandbox misbehave exactly as specified, and only that often."""

from __future__ import annotations

import time

import httpx2
import pytest
from sandbox_helpers import JENIUS_HEADERS, JOB_SECONDS, TOKENOPS_HEADERS, Volc, png_b64

from videogen.sandbox import (
    FaultSpecError,
    ManualClock,
    RunningSandbox,
    SandboxOptions,
    bench_bytes,
    main,
)

pytestmark = pytest.mark.anyio

T2V = {"req_key": "jimeng_t2v_v30", "prompt": "a paper boat drifts across a quiet pond"}
TOKENOPS_T2V = {"model": "jimeng-video-3.0-720P", **T2V}


async def done_url(volc: Volc, clock: ManualClock) -> tuple[str, str]:
    task_id = (await volc.submit(T2V)).json()["data"]["task_id"]
    clock.advance(JOB_SECONDS + 0.01)
    return task_id, (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]["video_url"]


async def test_rate_limit_answers_exactly_the_first_n_polls_with_429_and_retry_after(
    volc: Volc, sb: RunningSandbox
) -> None:
    """rate_limit:poll:2 -> two 50429s with Retry-After, then normal answers."""
    task_id = (await volc.submit(T2V)).json()["data"]["task_id"]
    sb.set_faults("rate_limit:poll:2:3")
    answers = [await volc.poll("jimeng_t2v_v30", task_id) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].json()["code"] == 50429 and answers[0].json()["data"] is None
    assert answers[0].headers["retry-after"] == "3"
    assert sb.log.count("volcengine", "poll", fault="rate_limit:poll:2:3") == 2
    assert sb.log.count("volcengine", "submit") == 1


async def test_rate_limit_and_server_error_use_each_providers_own_shape(
    sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """TokenOps: 429/500 with an error object; Jenius: {"code": 429/500} with that status."""
    sb.set_faults("rate_limit:submit:1", "server_error:submit:1")
    limited = await http.post(
        f"{sb.tokenops_url}/videos", json=TOKENOPS_T2V, headers=TOKENOPS_HEADERS
    )
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    body = {"scene": "celebrity", "image_url": "https://example.com/me.png"}
    broken = await http.post(
        f"{sb.jenius_url}/plugins/video/tasks", json=body, headers=JENIUS_HEADERS
    )
    assert broken.status_code == 500 and broken.json()["code"] == 500
    fine = await http.post(
        f"{sb.jenius_url}/plugins/video/tasks", json=body, headers=JENIUS_HEADERS
    )
    assert fine.status_code == 200


async def test_server_error_answers_50500_then_recovers(volc: Volc, sb: RunningSandbox) -> None:
    """server_error:submit:1 -> one 500 with code 50500; the next submit is accepted."""
    sb.set_faults("server_error:submit:1")
    first, second = await volc.submit(T2V), await volc.submit(T2V)
    assert (first.status_code, first.json()["code"]) == (500, 50500)
    assert second.status_code == 200 and len(sb.state.tasks) == 1


async def test_drop_closes_the_connection_without_an_answer(
    volc: Volc, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """drop:submit:1 -> the client sees a transport error; the log says status 0; no task."""
    sb.set_faults("drop:submit:1")
    with pytest.raises(httpx2.TransportError):
        await volc.submit(T2V)
    assert sb.log.count("volcengine", "submit", http_status=0) == 1
    assert not sb.state.tasks
    assert (await volc.submit(T2V)).status_code == 200


async def test_truncate_download_sends_half_the_bytes_and_a_range_request_resumes(
    volc: Volc, clock: ManualClock, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """truncate_download:1 -> full Content-Length, half the body, closed; Range gets the rest."""
    _, url = await done_url(volc, clock)
    whole = (await http.get(url)).content
    sb.set_faults("truncate_download:1")
    received = bytearray()
    with pytest.raises(httpx2.TransportError):
        async with http.stream("GET", url) as response:
            assert int(response.headers["content-length"]) == len(whole)
            async for chunk in response.aiter_raw():
                received += chunk
    assert 0 < len(received) < len(whole)
    rest = await http.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(received)}-{len(whole) - 1}/{len(whole)}"
    assert bytes(received) + rest.content == whole


async def test_slow_download_throttles_to_the_given_rate(
    sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """slow_download:400000 -> 200 kB take about half a second."""
    sb.set_faults("slow_download:400000")
    started = time.monotonic()
    got = await http.get(f"{sb.url}/files/bench-200000.bin")
    assert got.content == bench_bytes(0, 200_000)
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(
    ("fault", "code"),
    [("reject_text", 50412), ("reject_image", 50411), ("reject_copyright", 50413)],
)
async def test_content_rejections_refuse_the_submit_with_their_code(
    fault: str, code: int, volc: Volc, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """The documented risk codes at submit (HTTP 400), once; TokenOps carries the same code."""
    body = {
        "req_key": "jimeng_i2v_first_v30",
        "prompt": "a boat",
        "binary_data_base64": [png_b64(640, 360)],
    }
    sb.set_faults(f"{fault}:1")
    refused = await volc.submit(body)
    assert (refused.status_code, refused.json()["code"]) == (400, code)
    assert (await volc.submit(body)).status_code == 200
    sb.set_faults(fault)
    tokenops = await http.post(
        f"{sb.tokenops_url}/videos",
        headers=TOKENOPS_HEADERS,
        json={
            "model": "jimeng-video-3.0-720P",
            "req_key": "jimeng_i2v_first_v30",
            "prompt": "a boat",
            "content": [
                {
                    "type": "image_base64",
                    "image_url": {"url": "data:image/png;base64," + png_b64(640, 360)},
                }
            ],
        },
    )
    assert tokenops.status_code == 400 and tokenops.json()["error"]["code"] == str(code)


async def test_fail_after_generating_fails_the_task_when_it_would_be_done(
    volc: Volc, clock: ManualClock, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """50516 at the done poll (Volcengine), failed + error (TokenOps), failed + error_msg
    (Jenius); generating polls before that look normal."""
    sb.set_faults("fail_after_generating:3")
    task_id = (await volc.submit(T2V)).json()["data"]["task_id"]
    created = await http.post(
        f"{sb.tokenops_url}/videos", json=TOKENOPS_T2V, headers=TOKENOPS_HEADERS
    )
    scene = await http.post(
        f"{sb.jenius_url}/plugins/video/tasks",
        headers=JENIUS_HEADERS,
        json={"scene": "celebrity", "image_url": "https://example.com/me.png"},
    )
    clock.advance(JOB_SECONDS * 0.6)
    assert (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]["status"] == "generating"
    clock.advance(JOB_SECONDS)
    failed = await volc.poll("jimeng_t2v_v30", task_id)
    assert (failed.status_code, failed.json()["code"]) == (400, 50516)
    status = await http.get(
        f"{sb.tokenops_url}/videos/{created.json()['id']}", headers=TOKENOPS_HEADERS
    )
    assert status.json()["status"] == "failed" and status.json()["error"]["code"] == "50516"
    got = await http.get(
        f"{sb.jenius_url}/plugins/video/tasks/{scene.json()['data']['uuid']}",
        headers=JENIUS_HEADERS,
    )
    assert got.json()["data"]["status"] == "failed" and got.json()["data"]["error_msg"]


async def test_expired_urls_are_refused_with_403_and_a_new_poll_hands_out_a_fresh_one(
    volc: Volc, clock: ManualClock, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """expired_urls -> 403 at once; without it a URL lives url_ttl_seconds, then 403."""
    sb.set_faults("expired_urls")
    task_id, url = await done_url(volc, clock)
    assert (await http.get(url)).status_code == 403
    sb.set_faults()
    fresh = (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]["video_url"]
    assert fresh != url and (await http.head(fresh)).status_code == 200
    clock.advance(sb.options.url_ttl_seconds + 1)
    assert (await http.get(fresh)).status_code == 403
    assert (await http.get(f"{sb.url}/files/{'0' * 32}.mp4")).status_code == 404


async def test_concurrency_limit_answers_50430_until_a_task_finishes(
    volc: Volc, clock: ManualClock, sb: RunningSandbox, http: httpx2.AsyncClient
) -> None:
    """concurrency:1 -> a second task in flight is 50430 (HTTP 429) on every provider."""
    sb.set_faults("concurrency:1")
    assert (await volc.submit(T2V)).status_code == 200
    busy = await volc.submit(T2V)
    assert (busy.status_code, busy.json()["code"]) == (429, 50430)
    assert (
        await http.post(f"{sb.tokenops_url}/videos", json=TOKENOPS_T2V, headers=TOKENOPS_HEADERS)
    ).status_code == 200
    again = await http.post(
        f"{sb.tokenops_url}/videos", json=TOKENOPS_T2V, headers=TOKENOPS_HEADERS
    )
    assert again.status_code == 429 and again.json()["error"]["code"] == "50430"
    clock.advance(JOB_SECONDS + 0.01)
    assert (await volc.submit(T2V)).status_code == 200


async def test_job_seconds_fault_changes_how_long_new_tasks_take(
    volc: Volc, sb: RunningSandbox
) -> None:
    """job_seconds:0 -> a task is done at its first poll."""
    sb.set_faults("job_seconds:0")
    task_id = (await volc.submit(T2V)).json()["data"]["task_id"]
    assert (await volc.poll("jimeng_t2v_v30", task_id)).json()["data"]["status"] == "done"


async def test_omnihuman_audio_of_a_minute_is_refused_at_poll_time_with_50215(
    volc: Volc, clock: ManualClock, sb: RunningSandbox
) -> None:
    """The submit is accepted; after the processing phase the poll answers 50215."""
    key = "jimeng_realman_avatar_picture_omni_v15"
    task_id = (
        await volc.call(
            "CVSubmitTask",
            {
                "req_key": key,
                "image_url": "https://example.com/p.png",
                "audio_url": "https://example.com/long-audio.mp3",
            },
        )
    ).json()["data"]["task_id"]
    first = await volc.call("CVGetResult", {"req_key": key, "task_id": task_id})
    assert first.json()["data"]["status"] == "processing"
    clock.advance(JOB_SECONDS / 2)
    refused = await volc.call("CVGetResult", {"req_key": key, "task_id": task_id})
    assert (refused.status_code, refused.json()["code"]) == (400, 50215)


def test_a_bad_fault_spec_is_refused_with_the_grammar() -> None:
    """Unknown names, operations and counts raise FaultSpecError (a ValueError)."""
    for spec in (
        "bogus",
        "rate_limit",
        "rate_limit:fly:1",
        "drop:poll:x",
        "slow_download:-1",
        "expired_urls:3",
        "concurrency",
        "rate_limit:poll:1:2:3",
    ):
        with pytest.raises(FaultSpecError, match="Grammar"):
            SandboxOptions(faults=(spec,))
    assert main(["--fault", "bogus"]) == 2


async def test_replacing_the_faults_restarts_their_counters(volc: Volc, sb: RunningSandbox) -> None:
    """set_faults twice with the same spec -> the count applies afresh."""
    task_id = (await volc.submit(T2V)).json()["data"]["task_id"]
    for _ in range(2):
        sb.set_faults("server_error:poll:1")
        assert (await volc.poll("jimeng_t2v_v30", task_id)).status_code == 500
        assert (await volc.poll("jimeng_t2v_v30", task_id)).status_code == 200
    sb.options.faults = ("server_error:any",)
    assert (await volc.submit(T2V)).status_code == 500
