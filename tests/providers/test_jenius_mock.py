"""The Jenius adapter: request shapes, status mapping and error bodies (MockTransport)."""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
from provider_helpers import Recorder

from videogen.config import ProviderEndpoint
from videogen.errors import (
    ContentRejected,
    CredentialsError,
    GenerationFailed,
    InputError,
    ProviderError,
    RateLimited,
)
from videogen.intake import build_request
from videogen.providers.base import PollResult, PreparedImage, PreparedInputs, TaskRef
from videogen.providers.jenius import JeniusProvider

BASE = "http://jenius.test/api"
ENDPOINT = ProviderEndpoint(BASE, api_key="jen-test")
UUID = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
REF = TaskRef(UUID)


def provider(rec: Recorder) -> JeniusProvider:
    return JeniusProvider(ENDPOINT, rec.client())


def answer(**data: Any) -> httpx2.Response:
    return httpx2.Response(
        200, json={"code": 200, "message": "success", "data": {"uuid": UUID, **data}}
    )


def urls(*items: str) -> PreparedInputs:
    return PreparedInputs(tuple(PreparedImage(url=u) for u in items))


@pytest.mark.anyio
async def test_one_photo_goes_as_image_url() -> None:
    rec = Recorder([answer(status="created")])
    request = build_request(provider="jenius", scene="celebrity", image="https://a/me.png").request
    submitted = await provider(rec).submit(request, urls("https://a/me.png"))
    assert submitted.ref == TaskRef(UUID)
    assert str(rec.requests[0].url) == f"{BASE}/plugins/video/tasks"
    assert rec.requests[0].headers["authorization"] == "Bearer jen-test"
    assert rec.body() == {"scene": "celebrity", "image_url": "https://a/me.png"}


@pytest.mark.anyio
async def test_several_photos_go_as_image_urls() -> None:
    rec = Recorder([answer(status="created")])
    photos = ["https://a/1.png", "https://a/2.png", "https://a/3.png"]
    request = build_request(provider="jenius", scene="family", images=photos).request
    await provider(rec).submit(request, urls(*photos))
    assert rec.body() == {"scene": "family", "image_urls": photos}


@pytest.mark.anyio
async def test_an_uploaded_photo_is_refused_before_sending() -> None:
    rec = Recorder([])
    request = build_request(provider="jenius", scene="celebrity", image="https://a/me.png").request
    upload = PreparedInputs((PreparedImage(base64="AAAA", mime="image/png"),))
    with pytest.raises(InputError, match="public http"):
        await provider(rec).submit(request, upload)
    assert rec.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("raw", "mapped"),
    [("created", "queued"), ("pending", "queued"), ("processing", "running")],
)
async def test_statuses_map(raw: str, mapped: str) -> None:
    result = await provider(Recorder([answer(status=raw, video_url="")])).poll(REF)
    assert (result.status, result.video_url) == (mapped, None)


@pytest.mark.anyio
async def test_completed_gives_the_video_url_and_a_plain_download_source() -> None:
    rec = Recorder([answer(status="completed", video_url="https://cdn/v.mp4")])
    jen = provider(rec)
    result = await jen.poll(REF)
    assert str(rec.requests[0].url) == f"{BASE}/plugins/video/tasks/{UUID}"
    assert (result.status, result.video_url) == ("succeeded", "https://cdn/v.mp4")
    source = await jen.download_source(REF, result)
    assert source.url == "https://cdn/v.mp4" and dict(source.headers) == {}


@pytest.mark.anyio
async def test_failed_carries_error_msg() -> None:
    result = await provider(Recorder([answer(status="failed", error_msg="no face found")])).poll(
        REF
    )
    assert result.status == "failed"
    assert isinstance(result.error, GenerationFailed) and "no face found" in result.error.message


@pytest.mark.anyio
async def test_an_unknown_status_is_pending_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder([answer(status="rendering"), answer(status="rendering")])
    with caplog.at_level(logging.WARNING, logger="videogen.providers"):
        for _ in range(2):
            assert (await provider(rec).poll(REF)).status == "queued"
    assert sum("rendering" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.anyio
async def test_download_source_polls_again_when_the_poll_had_no_url() -> None:
    rec = Recorder([answer(status="completed", video_url="https://cdn/fresh.mp4")])
    source = await provider(rec).download_source(REF, PollResult("succeeded", "completed"))
    assert source.url == "https://cdn/fresh.mp4"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "kind", "words"),
    [
        (
            httpx2.Response(401, json={"code": 401, "message": "bad token"}),
            CredentialsError,
            "JENIUS_API_KEY",
        ),
        (httpx2.Response(429, json={"code": 429, "message": "slow"}), RateLimited, "limiting"),
        (
            httpx2.Response(400, json={"code": 400, "message": "unknown scene moon"}),
            ProviderError,
            "unknown scene moon",
        ),
        (httpx2.Response(400, text="<html>nope</html>"), ProviderError, "nope"),
        (
            httpx2.Response(200, json={"code": 500, "message": "internal", "data": None}),
            ProviderError,
            "internal",
        ),
    ],
)
async def test_errors_become_the_right_project_error(
    response: httpx2.Response, kind: type[Exception], words: str
) -> None:
    request = build_request(provider="jenius", scene="celebrity", image="https://a/me.png").request
    with pytest.raises(kind, match=words):
        await provider(Recorder([response])).submit(request, urls("https://a/me.png"))


@pytest.mark.anyio
async def test_an_unknown_task_is_expired() -> None:
    result = await provider(Recorder([httpx2.Response(404, json={"code": 404})])).poll(REF)
    assert result.status == "expired"


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["cancel", "poll_recognition"])
async def test_what_jenius_does_not_offer_is_an_input_error(method: str) -> None:
    with pytest.raises(InputError):
        await getattr(provider(Recorder([])), method)(REF)


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["detect_subjects", "submit_recognition"])
async def test_jenius_has_no_subject_detection(method: str) -> None:
    with pytest.raises(InputError, match="volcengine or tokenops"):
        await getattr(provider(Recorder([])), method)(PreparedImage(url="https://a/p.png"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        httpx2.Response(400, json={"code": 400, "message": "image rejected by content review"}),
        httpx2.Response(403, json={"code": 403, "message": "图片审核未通过"}),
        httpx2.Response(200, json={"code": 4001, "message": "Sensitive content", "data": None}),
    ],
)
async def test_a_submit_refused_by_review_is_a_content_rejection(response: httpx2.Response) -> None:
    """Jenius documents no codes: its words tell a review refusal from a bad request."""
    request = build_request(provider="jenius", scene="celebrity", image="https://a/me.png").request
    with pytest.raises(ContentRejected, match="will not help") as caught:
        await provider(Recorder([response])).submit(request, urls("https://a/me.png"))
    assert caught.value.exit_code == 5 and not caught.value.same_input_may_pass


@pytest.mark.anyio
async def test_a_task_failed_by_review_is_a_content_rejection_that_may_pass_again() -> None:
    rec = Recorder([answer(status="failed", error_msg="output failed moderation review")])
    result = await provider(rec).poll(REF)
    assert result.status == "failed"
    assert isinstance(result.error, ContentRejected) and result.error.same_input_may_pass


@pytest.mark.anyio
async def test_a_plain_failure_stays_a_generation_failure() -> None:
    rec = Recorder([answer(status="failed", error_msg="preview renderer crashed")])
    result = await provider(rec).poll(REF)
    assert type(result.error) is GenerationFailed
