"""The TokenOps adapter against answer variants the sandbox never gives (MockTransport)."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
from provider_helpers import Recorder

from videogen.config import ProviderEndpoint
from videogen.errors import (
    CapabilityNotEnabled,
    ContentRejected,
    CredentialsError,
    GenerationFailed,
    InputError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from videogen.intake import build_request
from videogen.providers.base import PollResult, PreparedImage, PreparedInputs, TaskRef
from videogen.providers.tokenops import TokenOpsProvider

BASE = "http://gateway.test:8000/v1"
ENDPOINT = ProviderEndpoint(BASE, api_key="tok-test")
REF = TaskRef("10762451179911711518", "jimeng_t2v_v30")
DONE = PollResult("succeeded", "completed")


def provider(rec: Recorder, endpoint: ProviderEndpoint = ENDPOINT) -> TokenOpsProvider:
    return TokenOpsProvider(endpoint, rec.client())


def created(video_id: Any = "10762451179911711518") -> httpx2.Response:
    return httpx2.Response(200, json={"id": video_id, "object": "video", "status": "in_queue"})


def status(**fields: Any) -> httpx2.Response:
    return httpx2.Response(200, json={"id": REF.provider_task_id, "object": "video", **fields})


@pytest.mark.anyio
async def test_a_text_submit_sends_model_req_key_frames_and_aspect_ratio_with_bearer() -> None:
    rec = Recorder([created(10762451179911711518)])
    request = build_request(provider="tokenops", prompt="horses", mode="ti2v_pro",
                            duration=10).request  # fmt: skip
    submitted = await provider(rec).submit(request, PreparedInputs())
    assert submitted.ref.provider_task_id == "10762451179911711518"
    sent = rec.requests[0]
    assert (sent.method, str(sent.url)) == ("POST", f"{BASE}/videos")
    assert sent.headers["authorization"] == "Bearer tok-test"
    assert rec.body() == {
        "model": "jimeng-video-3.0-pro",
        "req_key": "jimeng_ti2v_v30_pro",
        "prompt": "horses",
        "seed": -1,
        "frames": 241,
        "aspect_ratio": "16:9",
    }


@pytest.mark.anyio
async def test_images_go_in_content_as_urls_or_data_urls() -> None:
    rec = Recorder([created()])
    request = build_request(
        provider="tokenops",
        prompt="fade",
        images=["https://a/1.png", "b.png"],
        mode="i2v_first_tail_1080p",
    ).request
    upload = PreparedImage(base64="iVBOR", mime="image/png", width=640, height=480)
    await provider(rec).submit(
        request, PreparedInputs((PreparedImage(url="https://a/1.png"), upload))
    )
    body = rec.body()
    assert body["model"] == "jimeng-video-3.0-1080P"
    assert body["req_key"] == "jimeng_i2v_first_tail_v30_1080"
    assert "aspect_ratio" not in body
    assert body["content"] == [
        {"type": "text", "text": "fade"},
        {"type": "image_url", "image_url": {"url": "https://a/1.png"}},
        {"type": "image_base64", "image_url": {"url": "data:image/png;base64,iVBOR"}},
    ]


@pytest.mark.anyio
async def test_omnihuman_uses_generation_type_and_content_items() -> None:
    rec = Recorder([created()])
    request = build_request(
        provider="tokenops",
        image="https://a/p.png",
        audio="https://a/s.mp3",
        mask=["https://a/m1.png"],
        resolution=1080,
        seed=7,
    ).request
    prepared = PreparedInputs(
        (PreparedImage(url="https://a/p.png"),), "https://a/s.mp3", ("https://a/m1.png",)
    )
    await provider(rec).submit(request, prepared)
    assert rec.body() == {
        "model": "OmniHuman_1.5",
        "req_key": "jimeng_realman_avatar_picture_omni_v15",
        "generation_type": "omni_human",
        "content": [
            {"type": "image_url", "image_url": {"url": "https://a/p.png"}},
            {"type": "audio_url", "audio_url": {"url": "https://a/s.mp3"}},
        ],
        "mask_urls": ["https://a/m1.png"],
        "output_resolution": 1080,
        "seed": 7,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "mapped"),
    [
        ("in_queue", "queued"),
        ("queued", "queued"),
        ("pending", "queued"),
        ("submitted", "queued"),
        ("processing", "running"),
        ("in_progress", "running"),
        ("completed", "succeeded"),
    ],
)
async def test_both_status_vocabularies_map(raw: str, mapped: str) -> None:
    result = await provider(Recorder([status(status=raw, progress=40)])).poll(REF)
    assert (result.status, result.raw_status, result.progress) == (mapped, raw, 0.4)


@pytest.mark.anyio
async def test_the_percentage_progress_becomes_the_fraction_every_layer_reads() -> None:
    """The API says 0-100; reports, progress notifications and the poll schedule read 0-1."""
    for given, fraction in ((0, 0.0), (25, 0.25), (100, 1.0), (250, 1.0)):
        result = await provider(Recorder([status(status="in_progress", progress=given)])).poll(REF)
        assert result.progress == fraction


@pytest.mark.anyio
async def test_unknown_or_missing_statuses_are_pending_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder([status(status="warming_up"), status(status="warming_up"), status()])
    with caplog.at_level(logging.WARNING, logger="videogen.providers"):
        for _ in range(3):
            assert (await provider(rec).poll(REF)).status == "queued"
    assert sum("warming_up" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        ({"message": "Post Video Risk Not Pass", "code": 50516}, ContentRejected, "may pass"),
        ({"message": "Text Risk Not Pass", "code": "50412"}, ContentRejected, "will not help"),
        ("the GPU caught fire", GenerationFailed, "GPU caught fire"),
        (None, GenerationFailed, "task failed"),
    ],
)
async def test_a_failed_task_carries_the_reason(error: Any, kind: type, words: str) -> None:
    result = await provider(Recorder([status(status="failed", error=error)])).poll(REF)
    assert result.status == "failed"
    assert isinstance(result.error, kind) and words in result.error.message


@pytest.mark.anyio
async def test_an_unknown_video_is_expired() -> None:
    answer = httpx2.Response(404, json={"error": {"message": "video not found"}})
    result = await provider(Recorder([answer])).poll(REF)
    assert result.status == "expired" and result.error is not None


@pytest.mark.anyio
async def test_content_bytes_point_the_downloader_at_the_content_url_with_credentials() -> None:
    answer = httpx2.Response(200, headers={"content-type": "video/mp4"}, content=b"\0" * 4096)
    rec = Recorder([answer])
    source = await provider(rec).download_source(REF, DONE)
    assert source.url == f"{BASE}/videos/{REF.provider_task_id}/content"
    assert source.headers == {"Authorization": "Bearer tok-test"}
    assert source.credential_origin == "http://gateway.test:8000"


@pytest.mark.anyio
async def test_a_redirect_is_not_followed_and_its_target_is_returned() -> None:
    answer = httpx2.Response(302, headers={"location": "https://cdn.test/v.mp4?sig=1"})
    rec = Recorder([answer])
    source = await provider(rec).download_source(REF, DONE)
    assert source.url == "https://cdn.test/v.mp4?sig=1"
    assert (
        source.credential_origin == "http://gateway.test:8000"
    )  # the downloader drops them for the CDN
    assert len(rec.requests) == 1


@pytest.mark.anyio
async def test_a_relative_redirect_is_resolved_against_the_api() -> None:
    rec = Recorder([httpx2.Response(307, headers={"location": "/files/v.mp4"})])
    assert (
        await provider(rec).download_source(REF, DONE)
    ).url == "http://gateway.test:8000/files/v.mp4"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "elsewhere",
    ["http://gateway.test:9999/v.mp4", "https://gateway.test/v.mp4", "http://gateway.test/v.mp4"],
)
async def test_the_key_is_not_trusted_to_another_port_or_scheme_of_the_api_host(
    elsewhere: str,
) -> None:
    """A content redirect or a JSON ``video_url`` to the API host on another port must not
    receive ``Authorization: Bearer <key>``: only the configured origin does."""
    for answer in (
        httpx2.Response(302, headers={"location": elsewhere}),
        httpx2.Response(200, json={"video_url": elsewhere}),
    ):
        source = await provider(Recorder([answer])).download_source(REF, DONE)
        assert source.url == elsewhere
        assert not source.trusts(elsewhere)
        assert source.trusts(f"{BASE}/videos/{REF.provider_task_id}/content")


@pytest.mark.anyio
async def test_a_json_content_answer_gives_its_video_url() -> None:
    answer = httpx2.Response(200, json={"video_url": "https://cdn.test/v.mp4", "expires_at": 9})
    source = await provider(Recorder([answer])).download_source(REF, DONE)
    assert source.url == "https://cdn.test/v.mp4"


@pytest.mark.anyio
async def test_a_large_video_body_is_not_read() -> None:
    """The content endpoint's bytes are left to the downloader: the stream is closed unread."""
    pulled: list[int] = []

    class Endless(httpx2.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for _ in range(1000):
                pulled.append(1)
                yield b"\0" * 65536

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "video/mp4"}, stream=Endless())

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    await TokenOpsProvider(ENDPOINT, client).download_source(REF, DONE)
    assert len(pulled) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (
            httpx2.Response(401, json={"error": {"message": "bad key", "type": "auth"}}),
            CredentialsError,
            "TOKENOPS_API_KEY",
        ),
        (
            httpx2.Response(403, json={"error": {"message": "model not enabled"}}),
            CapabilityNotEnabled,
            "TOKENOPS_API_KEY",
        ),
        (
            httpx2.Response(429, json={"error": {"message": "slow"}}, headers={"Retry-After": "4"}),
            RateLimited,
            "limiting",
        ),
        (httpx2.Response(503, text="<html>upstream down</html>"), ProviderUnavailable, "503"),
        (
            httpx2.Response(400, json={"error": {"message": "Text Risk Not Pass", "code": 50412}}),
            ContentRejected,
            "the prompt",
        ),
        (
            httpx2.Response(400, json={"error": {"message": "bad frames", "code": "invalid"}}),
            ProviderError,
            "bad frames",
        ),
        (httpx2.Response(400, json={"message": "flat body"}), ProviderError, "flat body"),
        (httpx2.Response(400, text="just text"), ProviderError, "just text"),
        (httpx2.Response(422, json=["odd"]), ProviderError, "odd"),
    ],
)
async def test_http_errors_become_the_right_project_error(
    answer: httpx2.Response, kind: type[Exception], words: str
) -> None:
    request = build_request(provider="tokenops", prompt="p").request
    with pytest.raises(kind, match=words) as caught:
        await provider(Recorder([answer])).submit(request, PreparedInputs())
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 4.0


@pytest.mark.anyio
async def test_errors_from_the_content_endpoint_are_translated() -> None:
    rec = Recorder([httpx2.Response(500, json={"error": {"message": "boom"}})])
    with pytest.raises(ProviderUnavailable, match="boom"):
        await provider(rec).download_source(REF, DONE)


@pytest.mark.anyio
async def test_a_refused_connection_on_submit_says_nothing_was_sent() -> None:
    request = build_request(provider="tokenops", prompt="p").request
    with pytest.raises(ProviderUnavailable) as caught:
        await provider(Recorder([httpx2.ConnectError("refused")])).submit(request, PreparedInputs())
    assert caught.value.sent is False


@pytest.mark.anyio
async def test_a_missing_key_is_refused_before_sending() -> None:
    rec = Recorder([])
    with pytest.raises(CredentialsError, match="TOKENOPS_API_KEY"):
        await provider(rec, ProviderEndpoint(BASE)).poll(REF)
    assert rec.requests == []


@pytest.mark.anyio
async def test_detection_and_recognition_parse_their_answers() -> None:
    rec = Recorder(
        [
            httpx2.Response(
                200, json={"status": 1, "mask_urls": ["https://m/1"], "request_id": "r"}
            ),
            httpx2.Response(200, json={"task_id": 55, "status": 1, "request_id": "r2"}),
        ]
    )
    tok = provider(rec)
    image = PreparedImage(url="https://a/p.png")
    found = await tok.detect_subjects(image)
    assert (found.contains_subject, found.mask_urls, found.request_id) == (
        True,
        ("https://m/1",),
        "r",
    )
    assert rec.body(0) == {
        "model": "OmniHuman_1.5",
        "req_key": "jimeng_realman_avatar_object_detection",
        "image_url": "https://a/p.png",
    }
    ref = await tok.submit_recognition(image)
    assert ref.provider_task_id == "55"
    verdict = await tok.poll_recognition(ref)
    assert (verdict.status, verdict.contains_subject) == ("succeeded", True)


@pytest.mark.anyio
async def test_a_recognition_this_process_never_saw_cannot_be_polled() -> None:
    with pytest.raises(ProviderError, match="run the recognition again"):
        await provider(Recorder([])).poll_recognition(TaskRef("x"))


@pytest.mark.anyio
async def test_cancel_is_not_offered() -> None:
    with pytest.raises(InputError, match="cancel"):
        await provider(Recorder([])).cancel(REF)


@pytest.mark.anyio
async def test_a_streamed_compressed_error_from_the_content_endpoint_is_read_and_translated() -> (
    None
):
    import gzip

    class Body(httpx2.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield gzip.compress(b'{"error": {"message": "slow down"}}')

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {
            "content-type": "application/json",
            "content-encoding": "gzip",
            "retry-after": "2",
        }
        return httpx2.Response(429, headers=headers, stream=Body())

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    with pytest.raises(RateLimited, match="slow down") as caught:
        await TokenOpsProvider(ENDPOINT, client).download_source(REF, DONE)
    assert caught.value.retry_after == 2.0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"error": {"message": "Invalid parameter", "code": 50200}}, ProviderError),
        (
            {"error": {"message": "Input URL could not be downloaded", "code": "50220"}},
            ProviderError,
        ),
        ({"error": {"message": "Post Video Risk Not Pass", "code": 50516}}, ContentRejected),
    ],
)
async def test_a_permanent_business_error_at_poll_time_fails_the_task(
    body: dict[str, Any], kind: type[Exception]
) -> None:
    """A 4xx with a business code about the task is its outcome, not a poll to retry."""
    answer = httpx2.Response(400, json=body, headers={"x-request-id": "rid-1"})
    result = await provider(Recorder([answer])).poll(REF)
    assert result.status == "failed"
    assert isinstance(result.error, kind) and result.error.request_id == "rid-1"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx2.Response(401, json={"error": {"message": "bad key"}}), CredentialsError),
        (httpx2.Response(403, json={"error": {"message": "not enabled"}}), CapabilityNotEnabled),
        (httpx2.Response(429, json={"error": {"message": "slow"}}), RateLimited),
        (httpx2.Response(503, text="down"), ProviderUnavailable),
        (
            httpx2.Response(400, json={"error": {"message": "bad id", "code": "invalid"}}),
            ProviderError,
        ),
    ],
)
async def test_errors_about_the_poll_itself_are_still_raised(
    answer: httpx2.Response, kind: type[Exception]
) -> None:
    with pytest.raises(kind):
        await provider(Recorder([answer])).poll(REF)
