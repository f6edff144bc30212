"""The TokenOps adapter against the sandbox over real loopback HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from provider_helpers import PNG_640x480, is_mp4, open_sandbox

from videogen.catalog import JIMENG_MODES
from videogen.errors import ContentRejected, CredentialsError, GenerationFailed, RateLimited
from videogen.inputs import prepare_inputs
from videogen.intake import build_request
from videogen.providers.base import PreparedImage, TaskRef, origin

PROMPT = "a paper boat on a pond"
IMAGE_COUNT = {
    "i2v_first_720p": 1,
    "i2v_first_1080p": 1,
    "i2v_recamera_720p": 1,
    "i2v_first_tail_720p": 2,
    "i2v_first_tail_1080p": 2,
}


async def mode_kwargs(env: Any, mode: str, tmp_path: Path) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"mode": mode, "prompt": PROMPT}
    count = IMAGE_COUNT.get(mode, 0)
    if count:
        picture = (await env.client.get(env.asset(PNG_640x480))).content
        paths = [tmp_path / f"{i}.png" for i in range(count)]
        for path in paths:
            path.write_bytes(picture)
        kwargs["images"] = [str(p) for p in paths]
    if mode == "i2v_recamera_720p":
        kwargs.update(camera="dynamic_orbit", camera_strength="weak")
    return kwargs


@pytest.mark.anyio
@pytest.mark.parametrize("mode", JIMENG_MODES)
async def test_every_jimeng_mode_runs_to_a_video_that_can_be_fetched(
    mode: str, tmp_path: Path
) -> None:
    async with open_sandbox() as env:
        adapter, submitted, poll = await env.generate(
            "tokenops", **await mode_kwargs(env, mode, tmp_path)
        )
        assert poll.status == "succeeded", poll.error
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))
        assert env.sb.log.count("tokenops", "submit") == 1


@pytest.mark.anyio
async def test_omnihuman_runs_to_a_video() -> None:
    async with open_sandbox() as env:
        adapter, submitted, poll = await env.generate(
            "tokenops",
            image=env.asset(PNG_640x480),
            audio=env.asset("/assets/audio/2s.wav"),
            resolution=720,
            fast_mode=True,
        )
        assert poll.status == "succeeded", poll.error
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))


@pytest.mark.anyio
@pytest.mark.parametrize("content", ["bytes", "redirect", "json"])
async def test_every_content_answer_leads_to_the_video(content: str) -> None:
    async with open_sandbox(tokenops_content=content) as env:
        adapter, submitted, poll = await env.generate("tokenops", prompt=PROMPT)
        source = await adapter.download_source(submitted.ref, poll)
        assert source.credential_origin == origin(env.sb.tokenops_url)
        if content == "bytes":
            assert source.url.endswith(f"/videos/{submitted.ref.provider_task_id}/content")
        else:
            assert "/files/" in source.url
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))


@pytest.mark.anyio
async def test_the_openai_status_vocabulary_is_understood() -> None:
    async with open_sandbox(tokenops_vocabulary="openai", job_seconds=2) as env:
        adapter = env.adapter("tokenops")
        request = build_request(provider="tokenops", prompt=PROMPT).request
        submitted = await adapter.submit(
            request, await prepare_inputs(request, accepts_uploaded_images=True)
        )
        seen = []
        for _ in range(8):
            poll = await adapter.poll(submitted.ref)
            seen.append((poll.raw_status, poll.status))
            env.clock.advance(0.5)
        assert ("queued", "queued") in seen
        assert ("in_progress", "running") in seen
        assert seen[-1] == ("completed", "succeeded")


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["rate_limit:poll:2", "server_error:poll:2", "drop:poll:1"])
async def test_poll_faults_are_waited_out_and_the_submit_is_sent_once(fault: str) -> None:
    async with open_sandbox(faults=(fault,)) as env:
        _, _, poll = await env.generate("tokenops", prompt=PROMPT)
        assert poll.status == "succeeded"
        assert env.sb.log.count("tokenops", "submit") == 1
        assert env.waits


@pytest.mark.anyio
async def test_download_source_faults_are_retryable_errors() -> None:
    from videogen.retry import RetryPolicy, call_with_retries

    async with open_sandbox() as env:
        adapter, submitted, poll = await env.generate("tokenops", prompt=PROMPT)
        env.sb.set_faults("server_error:download:1")
        source = await call_with_retries(
            lambda: adapter.download_source(submitted.ref, poll),
            policy=RetryPolicy(),
            sleep=env.sleep,
        )
        assert len(env.waits) == 1 and source.url.endswith("/content")


@pytest.mark.anyio
async def test_a_rate_limited_submit_carries_retry_after_and_is_not_resent() -> None:
    async with open_sandbox(faults=("rate_limit:submit:1:3",)) as env:
        with pytest.raises(RateLimited) as caught:
            await env.generate("tokenops", prompt=PROMPT)
        assert caught.value.retry_after == 3.0
        assert env.sb.log.count("tokenops", "submit") == 1


@pytest.mark.anyio
async def test_a_rejected_prompt_says_retrying_will_not_help() -> None:
    async with open_sandbox(faults=("reject_text",)) as env:
        with pytest.raises(ContentRejected, match="will not help"):
            await env.generate("tokenops", prompt=PROMPT)


@pytest.mark.anyio
async def test_a_failed_task_carries_the_providers_reason() -> None:
    async with open_sandbox(faults=("fail_after_generating:1",)) as env:
        _, _, poll = await env.generate("tokenops", prompt=PROMPT)
        assert poll.status == "failed"
        assert isinstance(poll.error, ContentRejected | GenerationFailed)
        assert poll.error.provider_message


@pytest.mark.anyio
async def test_an_unknown_video_is_expired() -> None:
    async with open_sandbox() as env:
        poll = await env.adapter("tokenops").poll(TaskRef("999"))
        assert poll.status == "expired"


@pytest.mark.anyio
async def test_detection_and_recognition_work() -> None:
    async with open_sandbox() as env:
        adapter = env.adapter("tokenops")
        person = PreparedImage(url=env.asset("/assets/image/640x480-people.png"))
        found = await adapter.detect_subjects(person)
        assert found.contains_subject and found.mask_urls
        nobody = PreparedImage(url=env.asset("/assets/image/640x480-uniform.png"))
        ref = await adapter.submit_recognition(nobody)
        verdict = await adapter.poll_recognition(ref)
        assert (verdict.status, verdict.contains_subject) == ("succeeded", False)


@pytest.mark.anyio
async def test_a_wrong_key_is_a_credentials_error_naming_the_variable() -> None:
    async with open_sandbox() as env:
        with pytest.raises(CredentialsError, match="TOKENOPS_API_KEY"):
            await env.adapter("tokenops", api_key="wrong").poll(TaskRef("1"))
