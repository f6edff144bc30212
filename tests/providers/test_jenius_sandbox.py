"""The Jenius adapter against the sandbox over real loopback HTTP."""

from __future__ import annotations

import pytest
from provider_helpers import PNG_640x480, is_mp4, open_sandbox

from videogen.errors import ContentRejected, CredentialsError, GenerationFailed, ProviderError
from videogen.providers.base import TaskRef


@pytest.mark.anyio
async def test_the_celebrity_scene_runs_to_a_video_that_can_be_fetched() -> None:
    async with open_sandbox() as env:
        adapter, submitted, poll = await env.generate(
            "jenius", scene="celebrity", image=env.asset(PNG_640x480)
        )
        assert poll.status == "succeeded", poll.error
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))
        assert env.sb.log.count("jenius", "submit") == 1


@pytest.mark.anyio
async def test_the_family_scene_takes_several_photos() -> None:
    async with open_sandbox() as env:
        photos = [env.asset(f"/assets/image/640x480-member{i}.png") for i in range(3)]
        adapter, submitted, poll = await env.generate("jenius", scene="family", images=photos)
        assert poll.status == "succeeded", poll.error
        assert is_mp4(await env.fetch_video(adapter, submitted, poll))


@pytest.mark.anyio
async def test_rate_limited_polls_are_waited_out() -> None:
    async with open_sandbox(faults=("rate_limit:poll:2",)) as env:
        _, _, poll = await env.generate("jenius", scene="celebrity", image=env.asset(PNG_640x480))
        assert poll.status == "succeeded"
        assert len(env.waits) == 2 and env.sb.log.count("jenius", "submit") == 1


@pytest.mark.anyio
async def test_a_failed_scene_carries_error_msg() -> None:
    async with open_sandbox(faults=("fail_after_generating:1",)) as env:
        _, _, poll = await env.generate("jenius", scene="celebrity", image=env.asset(PNG_640x480))
        assert poll.status == "failed"
        assert isinstance(poll.error, GenerationFailed) and poll.error.provider_message


@pytest.mark.anyio
async def test_an_unknown_task_is_expired_and_a_wrong_key_names_the_variable() -> None:
    async with open_sandbox() as env:
        assert (await env.adapter("jenius").poll(TaskRef("nope"))).status == "expired"
        with pytest.raises(CredentialsError, match="JENIUS_API_KEY"):
            await env.adapter("jenius", api_key="wrong").poll(TaskRef("nope"))


@pytest.mark.anyio
async def test_a_photo_refused_by_content_review_is_a_content_rejection() -> None:
    """The sandbox's reject_image for Jenius: ContentRejected (exit 5), not a generic error."""
    async with open_sandbox(faults=("reject_image",)) as env:
        with pytest.raises(ContentRejected, match="content review") as caught:
            await env.generate("jenius", scene="celebrity", image=env.asset(PNG_640x480))
        assert not caught.value.same_input_may_pass
        assert caught.value.http_status == 400
        assert env.sb.log.count("jenius", "submit") == 1


@pytest.mark.anyio
async def test_a_scene_jenius_does_not_offer_is_refused_by_jenius_itself() -> None:
    """Intake lets an uncatalogued scene through; the provider's own error speaks for it."""
    async with open_sandbox() as env:
        with pytest.raises(ProviderError, match="unknown scene 'moonwalk'") as caught:
            await env.generate("jenius", scene="moonwalk", image=env.asset(PNG_640x480))
        assert not isinstance(caught.value, ContentRejected)
        assert caught.value.http_status == 400
        assert env.sb.log.count("jenius", "submit") == 1
