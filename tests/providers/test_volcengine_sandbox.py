"""The Volcengine adapter against the sandbox over real loopback HTTP: every mode, every fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from provider_helpers import PNG_640x480, is_mp4, open_sandbox

from videogen.catalog import JIMENG_MODES
from videogen.errors import (
    ContentRejected,
    CredentialsError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
)
from videogen.inputs import prepare_inputs
from videogen.intake import build_request
from videogen.providers.base import PreparedImage, TaskRef

PROMPT = "a paper boat on a pond"


async def local_png(env: Any, tmp_path: Path, name: str = "frame.png") -> str:
    """The sandbox's own test picture, saved as a local file (so it is uploaded as base64)."""
    response = await env.client.get(env.asset(PNG_640x480))
    path = tmp_path / name
    path.write_bytes(response.content)
    return str(path)


async def mode_kwargs(env: Any, mode: str, tmp_path: Path) -> dict[str, Any]:
    spec_images = {
        "i2v_first_720p": 1,
        "i2v_first_1080p": 1,
        "i2v_recamera_720p": 1,
        "i2v_first_tail_720p": 2,
        "i2v_first_tail_1080p": 2,
    }.get(mode, 0)
    kwargs: dict[str, Any] = {"mode": mode, "prompt": PROMPT}
    if spec_images:
        kwargs["images"] = [await local_png(env, tmp_path, f"{i}.png") for i in range(spec_images)]
    if mode == "i2v_recamera_720p":
        kwargs.update(camera="dynamic_orbit", camera_strength="weak")
    return kwargs


@pytest.mark.anyio
@pytest.mark.parametrize("mode", JIMENG_MODES)
async def test_every_jimeng_mode_runs_to_a_video_that_can_be_fetched(
    mode: str, tmp_path: Path
) -> None:
    async with open_sandbox() as env:
        kwargs = await mode_kwargs(env, mode, tmp_path)
        adapter, submitted, poll = await env.generate("volcengine", **kwargs)
        assert poll.status == "succeeded", poll.error
        assert submitted.ref.req_key is not None and submitted.request_id
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))
        assert env.sb.log.count("volcengine", "submit") == 1


@pytest.mark.anyio
async def test_image_urls_are_sent_as_urls_and_accepted(tmp_path: Path) -> None:
    async with open_sandbox() as env:
        url = env.asset(PNG_640x480)
        _, submitted, poll = await env.generate("volcengine", prompt=PROMPT, image=url)
        assert poll.status == "succeeded"
        assert submitted.ref.req_key == "jimeng_i2v_first_v30"


@pytest.mark.anyio
async def test_omnihuman_runs_to_a_talking_video() -> None:
    async with open_sandbox() as env:
        adapter, submitted, poll = await env.generate(
            "volcengine",
            image=env.asset("/assets/image/640x480.png"),
            audio=env.asset("/assets/audio/2s.wav"),
            resolution=720,
            prompt="smile",
        )
        assert poll.status == "succeeded", poll.error
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))


@pytest.mark.anyio
async def test_omnihuman_audio_of_a_minute_fails_at_poll_time_with_the_reason() -> None:
    async with open_sandbox() as env:
        _, _, poll = await env.generate(
            "volcengine",
            image=env.asset(PNG_640x480),
            audio=env.asset("/assets/audio/61s.wav"),
            resolution=720,
        )
        assert poll.status == "failed"
        assert poll.error is not None and "60 s" in poll.error.message


@pytest.mark.anyio
async def test_subject_detection_and_recognition_answer_from_the_image() -> None:
    async with open_sandbox() as env:
        volc = env.adapter("volcengine")
        person = PreparedImage(url=env.asset("/assets/image/640x480-people.png"))
        nobody = PreparedImage(url=env.asset("/assets/image/640x480-uniform.png"))
        found = await volc.detect_subjects(person)
        assert found.contains_subject and found.mask_urls
        assert not (await volc.detect_subjects(nobody)).contains_subject
        ref = await volc.submit_recognition(person)
        for _ in range(10):
            verdict = await volc.poll_recognition(ref)
            if verdict.status == "succeeded":
                break
            env.clock.advance(0.5)
        assert (verdict.status, verdict.contains_subject) == ("succeeded", True)


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["rate_limit:poll:2", "server_error:poll:2", "drop:poll:2"])
async def test_poll_faults_are_waited_out_and_the_submit_is_sent_once(fault: str) -> None:
    async with open_sandbox(faults=(fault,)) as env:
        _, _, poll = await env.generate("volcengine", prompt=PROMPT)
        assert poll.status == "succeeded"
        assert env.sb.log.count("volcengine", "submit") == 1
        assert len(env.waits) == 2
        if fault.startswith("rate_limit"):
            assert all(wait >= 1.0 for wait in env.waits)  # the sandbox's Retry-After


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "error", "sent"),
    [
        ("server_error:submit:1", ProviderUnavailable, True),
        ("drop:submit:1", ProviderUnavailable, True),
        ("rate_limit:submit:1", RateLimited, True),
    ],
)
async def test_a_failed_submit_is_raised_not_resent(
    fault: str, error: type[Exception], sent: bool
) -> None:
    async with open_sandbox(faults=(fault,)) as env:
        volc = env.adapter("volcengine")
        request = build_request(provider="volcengine", prompt=PROMPT).request
        with pytest.raises(error) as caught:
            await volc.submit(request, await prepare_inputs(request, accepts_uploaded_images=True))
        if isinstance(caught.value, ProviderUnavailable):
            assert caught.value.sent is sent
        if isinstance(caught.value, RateLimited):
            assert caught.value.retry_after == 1.0
        assert env.sb.log.count("volcengine", "submit") == 1


@pytest.mark.anyio
async def test_a_refused_connection_says_nothing_was_sent() -> None:
    async with open_sandbox() as env:
        port = env.sb.port
    async with open_sandbox() as env:
        closed = env.adapter("volcengine", base_url=f"http://127.0.0.1:{port}")
        request = build_request(provider="volcengine", prompt=PROMPT).request
        with pytest.raises(ProviderUnavailable) as caught:
            await closed.submit(
                request, await prepare_inputs(request, accepts_uploaded_images=True)
            )
        assert caught.value.sent is False


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("reject_text", "rejected the prompt"),
        ("reject_image", "rejected the input image"),
        ("reject_copyright", "copyrighted words"),
    ],
)
async def test_review_rejections_name_the_input_and_say_retrying_will_not_help(
    fault: str, words: str
) -> None:
    async with open_sandbox(faults=(fault,)) as env:
        with pytest.raises(ContentRejected, match=words) as caught:
            await env.generate("volcengine", prompt=PROMPT, image=env.asset(PNG_640x480))
        assert not caught.value.same_input_may_pass
        assert "will not help" in caught.value.message
        assert caught.value.request_id


@pytest.mark.anyio
async def test_an_output_rejection_fails_the_task_but_may_pass_next_time() -> None:
    async with open_sandbox(faults=("fail_after_generating:1",)) as env:
        _, _, poll = await env.generate("volcengine", prompt=PROMPT)
        assert poll.status == "failed"
        assert isinstance(poll.error, ContentRejected) and poll.error.same_input_may_pass


@pytest.mark.anyio
async def test_the_concurrency_limit_is_a_rate_limit() -> None:
    async with open_sandbox(faults=("concurrency:1",)) as env:
        volc = env.adapter("volcengine")
        request = build_request(provider="volcengine", prompt=PROMPT).request
        await volc.submit(request, await prepare_inputs(request, accepts_uploaded_images=True))
        with pytest.raises(RateLimited) as caught:
            await volc.submit(request, await prepare_inputs(request, accepts_uploaded_images=True))
        assert caught.value.code == 50430


@pytest.mark.anyio
async def test_an_expired_url_is_refreshed_by_polling_again() -> None:
    async with open_sandbox(faults=("expired_urls",)) as env:
        adapter, submitted, poll = await env.generate("volcengine", prompt=PROMPT)
        stale = await env.client.get((await adapter.download_source(submitted.ref, poll)).url)
        assert stale.status_code == 403
        env.sb.set_faults()
        fresh = await adapter.poll(submitted.ref)
        assert fresh.video_url != poll.video_url
        assert is_mp4(await env.fetch_video(adapter, submitted, fresh))


@pytest.mark.anyio
async def test_a_queued_task_can_be_cancelled_and_a_generating_one_cannot() -> None:
    async with open_sandbox(job_seconds=10) as env:
        volc = env.adapter("volcengine")
        request = build_request(provider="volcengine", prompt=PROMPT).request
        prepared = await prepare_inputs(request, accepts_uploaded_images=True)
        first = await volc.submit(request, prepared)
        await volc.cancel(first.ref)
        assert (await volc.poll(first.ref)).status == "expired"
        second = await volc.submit(request, prepared)
        env.clock.advance(5)
        assert (await volc.poll(second.ref)).status == "running"
        with pytest.raises(ProviderError, match="queued"):
            await volc.cancel(second.ref)


@pytest.mark.anyio
async def test_a_wrong_secret_key_is_a_credentials_error_naming_the_variables() -> None:
    async with open_sandbox() as env:
        wrong = env.adapter("volcengine", secret_key="not-the-secret")
        with pytest.raises(CredentialsError, match="VOLC_ACCESSKEY and VOLC_SECRETKEY"):
            await wrong.poll(TaskRef("1", "jimeng_t2v_v30"))
