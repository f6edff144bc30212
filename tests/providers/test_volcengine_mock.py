"""The Volcengine adapter against answers the sandbox never gives (MockTransport)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from provider_helpers import Recorder

from videogen.config import ProviderEndpoint
from videogen.errors import (
    CapabilityNotEnabled,
    ConfigError,
    ContentRejected,
    CredentialsError,
    InputError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from videogen.intake import build_request
from videogen.providers.base import PollResult, PreparedImage, PreparedInputs, TaskRef
from videogen.providers.volcengine import VolcengineProvider
from videogen.sandbox.signature import verify

ENDPOINT = ProviderEndpoint("http://127.0.0.1:8080", access_key="AKtest", secret_key="sktest")
NOW = 1_767_323_045.0  # 2026-01-02T03:04:05Z
RID = "20260102030405ABCDEF0123456789ABCDEF"
T2V = TaskRef("7392616336519610409", "jimeng_t2v_v30")


def ok(data: Any, status: int = 200, **extra: Any) -> httpx2.Response:
    return httpx2.Response(
        status,
        json={"code": 10000, "data": data, "message": "Success", "request_id": RID, **extra},
    )


def business(code: int, status: int = 400, data: Any = None, **headers: str) -> httpx2.Response:
    body = {"code": code, "data": data, "message": "Nope", "request_id": RID, "status": code}
    return httpx2.Response(status, json=body, headers=headers)


def gateway(code_n: int | None, code: str, status: int) -> httpx2.Response:
    error: dict[str, Any] = {"Code": code, "Message": "gateway says no"}
    if code_n is not None:
        error["CodeN"] = code_n
    return httpx2.Response(status, json={"ResponseMetadata": {"RequestId": RID, "Error": error}})


def provider(recorder: Recorder, endpoint: ProviderEndpoint = ENDPOINT) -> VolcengineProvider:
    return VolcengineProvider(endpoint, recorder.client(), clock=lambda: NOW)


def inputs(*images: PreparedImage, audio: str | None = None) -> PreparedInputs:
    return PreparedInputs(images=images, audio_url=audio)


@pytest.mark.anyio
async def test_a_text_submit_is_signed_and_sends_only_documented_fields() -> None:
    rec = Recorder([ok({"task_id": "123"})])
    request = build_request(provider="volcengine", prompt="a paper boat", duration=4).request
    submitted = await provider(rec).submit(request, inputs())
    assert submitted.ref == TaskRef("123", "jimeng_t2v_v30")
    assert submitted.request_id == RID
    sent = rec.requests[0]
    assert sent.url.params["Action"] == "CVSync2AsyncSubmitTask"
    assert sent.url.params["Version"] == "2022-08-31"
    assert rec.body() == {
        "req_key": "jimeng_t2v_v30",
        "prompt": "a paper boat",
        "seed": -1,
        "frames": 121,
        "aspect_ratio": "16:9",
    }
    access_key = verify(
        {"AKtest": "sktest"},
        method="POST",
        path=sent.url.path,
        query=dict(sent.url.params),
        headers=dict(sent.headers),
        body=sent.content,
        now=datetime.fromtimestamp(NOW, UTC),
    )
    assert access_key == "AKtest"
    assert sent.headers["host"] == "127.0.0.1:8080"


@pytest.mark.anyio
async def test_image_modes_send_base64_for_uploads_and_urls_for_links_and_no_aspect_ratio() -> None:
    rec = Recorder([ok({"task_id": "1"}), ok({"task_id": "2"})])
    request = build_request(provider="volcengine", prompt="p", image="x.png", duration=8).request
    upload = PreparedImage(base64="iVBORw0", mime="image/png", width=640, height=480)
    await provider(rec).submit(request, inputs(upload))
    assert rec.body() == {
        "req_key": "jimeng_i2v_first_v30",
        "prompt": "p",
        "seed": -1,
        "frames": 241,
        "binary_data_base64": ["iVBORw0"],
    }
    await provider(rec).submit(request, inputs(PreparedImage(url="https://a/1.png")))
    assert rec.body()["image_urls"] == ["https://a/1.png"]
    assert "binary_data_base64" not in rec.body()


@pytest.mark.anyio
async def test_a_camera_move_sends_template_and_strength() -> None:
    rec = Recorder([ok({"task_id": "1"})])
    request = build_request(
        provider="volcengine",
        prompt="p",
        image="https://a/1.png",
        camera="hitchcock_dolly_out",
        camera_strength="medium",
    ).request
    await provider(rec).submit(request, inputs(PreparedImage(url="https://a/1.png")))
    body = rec.body()
    assert (body["template_id"], body["camera_strength"]) == ("hitchcock_dolly_out", "medium")
    assert body["req_key"] == "jimeng_i2v_recamera_v30"


@pytest.mark.anyio
async def test_mixed_url_and_uploaded_frames_are_refused_before_sending() -> None:
    rec = Recorder([])
    request = build_request(
        provider="volcengine", prompt="p", image="https://a/1.png", tail_image="b.png"
    ).request
    upload = PreparedImage(base64="AAAA", mime="image/png", width=640, height=480)
    with pytest.raises(InputError, match="all as URLs or all as files"):
        await provider(rec).submit(request, inputs(PreparedImage(url="https://a/1.png"), upload))
    assert rec.requests == []


@pytest.mark.anyio
async def test_omnihuman_submits_with_cvsubmittask_and_its_fields() -> None:
    rec = Recorder([ok({"task_id": "9"})])
    request = build_request(
        provider="volcengine",
        image="https://a/p.png",
        audio="https://a/s.mp3",
        mask="https://a/m.png",
        resolution=720,
        fast_mode=True,
        prompt="smile",
    ).request
    prepared = PreparedInputs(
        (PreparedImage(url="https://a/p.png"),), "https://a/s.mp3", ("https://a/m.png",)
    )
    submitted = await provider(rec).submit(request, prepared)
    assert rec.requests[0].url.params["Action"] == "CVSubmitTask"
    assert submitted.ref.req_key == "jimeng_realman_avatar_picture_omni_v15"
    assert rec.body() == {
        "req_key": "jimeng_realman_avatar_picture_omni_v15",
        "image_url": "https://a/p.png",
        "audio_url": "https://a/s.mp3",
        "mask_url": ["https://a/m.png"],
        "prompt": "smile",
        "seed": -1,
        "output_resolution": 720,
        "pe_fast_mode": True,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("data", "status", "url"),
    [
        ({"status": "in_queue", "video_url": ""}, "queued", None),
        ({"status": "in_queue"}, "queued", None),
        ({"status": "generating", "video_url": ""}, "running", None),
        ({"status": "processing"}, "queued", None),
        ({"status": "done", "video_url": "https://cdn/v.mp4"}, "succeeded", "https://cdn/v.mp4"),
        ({}, "queued", None),
        ({"video_url": "https://cdn/v.mp4"}, "succeeded", "https://cdn/v.mp4"),
        (None, "queued", None),
    ],
)
async def test_poll_maps_every_status_shape(data: Any, status: str, url: str | None) -> None:
    rec = Recorder([ok(data)])
    result = await provider(rec).poll(T2V)
    assert (result.status, result.video_url) == (status, url)
    assert rec.body() == {"req_key": "jimeng_t2v_v30", "task_id": T2V.provider_task_id}
    assert rec.requests[0].url.params["Action"] == "CVSync2AsyncGetResult"
    assert result.request_id == RID
    # contracts.md 1.3: a video URL lives one hour from the poll that handed it out.
    assert result.url_expires_at == (NOW + 3600 if url else None)


@pytest.mark.anyio
async def test_an_unknown_status_is_pending_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder([ok({"status": "thinking_hard"}) for _ in range(3)])
    with caplog.at_level(logging.WARNING, logger="videogen.providers"):
        for _ in range(3):
            assert (await provider(rec).poll(T2V)).status == "queued"
    assert sum("thinking_hard" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("raw", ["not_found", "expired"])
async def test_a_forgotten_task_is_expired_with_a_resubmit_hint(raw: str) -> None:
    result = await provider(Recorder([ok({"status": raw})])).poll(T2V)
    assert result.status == "expired"
    assert result.error is not None and "submit" in result.error.message


@pytest.mark.anyio
async def test_done_with_a_failure_code_is_a_failure_decided_from_the_code() -> None:
    rec = Recorder([business(50516, data={"status": "done", "video_url": ""})])
    result = await provider(rec).poll(T2V)
    assert result.status == "failed"
    assert isinstance(result.error, ContentRejected)
    assert result.error.same_input_may_pass
    assert result.error.request_id == RID


@pytest.mark.anyio
async def test_input_invalid_at_poll_time_fails_the_task() -> None:
    omni = TaskRef("1", "jimeng_realman_avatar_picture_omni_v15")
    result = await provider(Recorder([business(50215)])).poll(omni)
    assert result.status == "failed"
    assert result.error is not None and "60 s" in result.error.message


@pytest.mark.anyio
async def test_omnihuman_polls_use_cvgetresult() -> None:
    rec = Recorder([ok({"status": "processing"})])
    await provider(rec).poll(TaskRef("1", "jimeng_realman_avatar_picture_omni_v15"))
    assert rec.requests[0].url.params["Action"] == "CVGetResult"


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (business(50411), ContentRejected, "input image"),
        (business(50412), ContentRejected, "the prompt"),
        (business(50413), ContentRejected, "the prompt"),
        (business(50518), ContentRejected, "copyright"),
        (business(50400, 403), CapabilityNotEnabled, "console"),
        (business(50204), CapabilityNotEnabled, "console"),
        (business(50200), ProviderError, "parameter"),
        (business(50220), ProviderError, "public"),
        (business(50500, 500), ProviderUnavailable, "try again"),
        (business(50501, 500), ProviderUnavailable, "try again"),
        (gateway(100010, "SignatureDoesNotMatch", 401), CredentialsError, "VOLC_SECRETKEY"),
        (gateway(100009, "InvalidAccessKey", 401), CredentialsError, "VOLC_ACCESSKEY"),
        (gateway(100003, "MissingAuthenticationToken", 401), CredentialsError, "VOLC_ACCESSKEY"),
        (gateway(None, "FlowLimitExceeded", 429), RateLimited, "limiting"),
        (gateway(100006, "InvalidTimestamp", 400), ProviderError, "clock"),
        (gateway(50412, "50412", 400), ContentRejected, "the prompt"),
        (gateway(None, "50411", 400), ContentRejected, "input image"),
        (httpx2.Response(502, text="<html>Bad Gateway</html>"), ProviderUnavailable, "502"),
        (httpx2.Response(401, text="nope"), CredentialsError, "VOLC_ACCESSKEY"),
        (httpx2.Response(400, text="plain words"), ProviderError, "plain words"),
        (httpx2.Response(200, text="not json"), ProviderError, "not JSON"),
    ],
)
@pytest.mark.anyio
async def test_submit_errors_become_the_right_project_error(
    answer: httpx2.Response, error: type[Exception], words: str
) -> None:
    request = build_request(provider="volcengine", prompt="p").request
    with pytest.raises(error, match=words) as caught:
        await provider(Recorder([answer])).submit(request, inputs())
    is_json = answer.headers.get("content-type", "").startswith("application/json")
    if isinstance(caught.value, ProviderError) and is_json:
        assert caught.value.request_id == RID


@pytest.mark.anyio
async def test_input_rejections_say_retrying_will_not_help() -> None:
    request = build_request(provider="volcengine", prompt="p").request
    with pytest.raises(ContentRejected) as caught:
        await provider(Recorder([business(50412)])).submit(request, inputs())
    assert not caught.value.same_input_may_pass
    assert "will not help" in caught.value.message
    assert '(provider said: "Nope")' in caught.value.message


@pytest.mark.anyio
@pytest.mark.parametrize(("code", "header", "expected"), [(50429, "3", 3.0), (50430, "7", 7.0)])
async def test_rate_limits_carry_retry_after(code: int, header: str, expected: float) -> None:
    answer = business(code, 429, **{"Retry-After": header})
    with pytest.raises(RateLimited) as caught:
        await provider(Recorder([answer])).poll(T2V)
    assert caught.value.retry_after == expected
    assert caught.value.code == code


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exception", "sent"),
    [
        (httpx2.ConnectError("refused"), False),
        (httpx2.ConnectTimeout("slow"), False),
        (httpx2.ReadTimeout("slow"), True),
        (httpx2.RemoteProtocolError("dropped"), True),
        (httpx2.ReadError("reset"), True),
    ],
)
async def test_transport_failures_say_whether_anything_was_sent(
    exception: Exception, sent: bool
) -> None:
    request = build_request(provider="volcengine", prompt="p").request
    with pytest.raises(ProviderUnavailable) as caught:
        await provider(Recorder([exception])).submit(request, inputs())
    assert caught.value.sent is sent


@pytest.mark.anyio
async def test_an_unusable_url_scheme_is_a_configuration_error() -> None:
    request = build_request(provider="volcengine", prompt="p").request
    with pytest.raises(ConfigError, match="base URL"):
        await provider(Recorder([httpx2.UnsupportedProtocol("ftp")])).submit(request, inputs())


@pytest.mark.anyio
async def test_missing_credentials_are_refused_before_sending() -> None:
    rec = Recorder([])
    bare = ProviderEndpoint("http://127.0.0.1:8080")
    with pytest.raises(CredentialsError, match="VOLC_ACCESSKEY and VOLC_SECRETKEY"):
        await provider(rec, bare).poll(T2V)
    assert rec.requests == []


@pytest.mark.anyio
async def test_a_session_token_is_sent_and_signed() -> None:
    rec = Recorder([ok({"status": "in_queue"})])
    sts = ProviderEndpoint(
        "https://visual.example.com", access_key="AK", secret_key="SK", session_token="STS2token"
    )
    await provider(rec, sts).poll(T2V)
    sent = rec.requests[0]
    assert sent.headers["x-security-token"] == "STS2token"
    assert "x-security-token" in sent.headers["authorization"]
    assert sent.headers["host"] == "visual.example.com"


@pytest.mark.anyio
async def test_download_source_uses_the_poll_url_or_polls_again() -> None:
    rec = Recorder([ok({"status": "done", "video_url": "https://cdn/fresh.mp4"})])
    volc = provider(rec)
    given = PollResult("succeeded", "done", video_url="https://cdn/v.mp4")
    assert (await volc.download_source(T2V, given)).url == "https://cdn/v.mp4"
    assert rec.requests == []
    source = await volc.download_source(T2V, PollResult("succeeded", "done"))
    assert source.url == "https://cdn/fresh.mp4"
    assert dict(source.headers) == {}


@pytest.mark.anyio
async def test_cancel_uses_its_own_version() -> None:
    rec = Recorder([ok(None)])
    await provider(rec).cancel(T2V)
    params = rec.requests[0].url.params
    assert (params["Action"], params["Version"]) == ("CVCancelTask", "2024-06-06")


@pytest.mark.anyio
async def test_detection_parses_the_json_string_in_resp_data() -> None:
    inner = {
        "code": 0,
        "object_detection_result": {"mask": {"url": ["https://m/1", "https://m/2"]}},
        "status": 1,
    }
    rec = Recorder([ok({"resp_data": json.dumps(inner)})])
    found = await provider(rec).detect_subjects(PreparedImage(url="https://a/p.png"))
    assert found.contains_subject and found.mask_urls == ("https://m/1", "https://m/2")
    assert rec.requests[0].url.params["Action"] == "CVProcess"
    assert rec.body() == {
        "req_key": "jimeng_realman_avatar_object_detection",
        "image_url": "https://a/p.png",
    }


@pytest.mark.anyio
async def test_detection_refuses_an_uploaded_image_before_sending() -> None:
    rec = Recorder([])
    upload = PreparedImage(base64="AAAA", mime="image/png", width=640, height=480)
    with pytest.raises(InputError, match="public http"):
        await provider(rec).detect_subjects(upload)
    assert rec.requests == []


@pytest.mark.anyio
async def test_recognition_submits_then_polls_to_a_verdict() -> None:
    rec = Recorder(
        [
            ok({"task_id": "r1"}),
            ok({"status": "generating"}),
            ok({"status": "done", "resp_data": '{"status": 0}'}),
        ]
    )
    volc = provider(rec)
    ref = await volc.submit_recognition(PreparedImage(url="https://a/p.png"))
    assert ref == TaskRef("r1", "jimeng_realman_avatar_picture_create_role_omni_v15")
    assert (await volc.poll_recognition(ref)).status == "running"
    verdict = await volc.poll_recognition(ref)
    assert (verdict.status, verdict.contains_subject) == ("succeeded", False)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (50200, ProviderError),
        (50220, ProviderError),
        (50411, ContentRejected),
        (50299, ProviderError),
    ],
)
async def test_a_permanent_business_error_at_poll_time_fails_the_task(
    code: int, kind: type[Exception]
) -> None:
    """Asking again would get the same answer: the poll reports the task failed, not an error."""
    result = await provider(Recorder([business(code)])).poll(T2V)
    assert result.status == "failed"
    assert isinstance(result.error, kind) and result.error.code == code
    assert result.error.request_id == RID


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (gateway(100010, "SignatureDoesNotMatch", 401), CredentialsError),
        (business(50400, 403), CapabilityNotEnabled),
        (business(50429, 429), RateLimited),
        (business(50500, 500), ProviderUnavailable),
    ],
)
async def test_errors_about_the_poll_itself_are_still_raised(
    answer: httpx2.Response, kind: type[Exception]
) -> None:
    with pytest.raises(kind):
        await provider(Recorder([answer])).poll(T2V)
