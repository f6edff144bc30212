"""Object storage end to end: the engine against the sandbox over loopback, with a loopback S3
server (moto) as the store. Local files given where a provider only takes URLs are uploaded and
passed as presigned links the sandbox fetches; saved videos land in the bucket once."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from videogen.app import open_app
from videogen.config import Settings
from videogen.errors import InputError, StorageError
from videogen.models import GenerationRequest
from videogen.report import render_markdown, result_of
from videogen.sandbox import SandboxOptions, serve
from videogen.sandbox.assets import asset, wav_tone
from videogen.storage import Storage

pytestmark = pytest.mark.anyio

FAST = SandboxOptions(job_seconds=1.0)


def settings_of(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "HOME": str(tmp_path),
            "VIDEOGEN_OUTPUT_DIR": str(tmp_path / "out"),
            "VIDEOGEN_DATA_DIR": str(tmp_path / "data"),
            "JIMENG_VIDEO_POLL_INTERVAL": "0.25",
            **env,
        }
    )


def local_file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / "inputs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def portrait(tmp_path: Path) -> str:
    """A 640×480 PNG with people in it, as a local file."""
    found = asset("/assets/image/640x480-people.png")
    assert found is not None
    return local_file(tmp_path, "me.png", found.data)


def omnihuman(tmp_path: Path) -> GenerationRequest:
    audio = local_file(tmp_path, "hello.wav", wav_tone(2.0))
    return GenerationRequest(
        provider="volcengine",
        mode="omnihuman",
        images=(portrait(tmp_path),),
        audio=audio,
        resolution=720,
    )


def family_scene(tmp_path: Path) -> GenerationRequest:
    photo = asset("/assets/image/480x640-people.jpg")
    assert photo is not None
    photos = (portrait(tmp_path), local_file(tmp_path, "grandma.jpg", photo.data))
    return GenerationRequest(provider="jenius", mode="scene", scene="family", images=photos)


async def test_omnihuman_with_a_local_portrait_and_audio_works_through_uploads(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    """The sandbox fetched both presigned links: the video has the portrait's 4:3 shape and
    the audio's 2 s (an opaque URL would give 9:16 and 5 s); the uploads are gone after."""
    async with open_app(settings_of(tmp_path, **bucket.env()), sandbox_options=FAST) as app:
        task = await app.engine.generate(omnihuman(tmp_path), wait_seconds=60)
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 1
    assert task.status == "completed", task.error
    assert task.media is not None
    assert (task.media.width, task.media.height) == (960, 720)
    assert abs(task.media.duration - 2.0) < 0.5
    assert task.uploads == []
    assert bucket.keys("uploads/") == []
    assert task.request.images[0].endswith("me.png")  # the ledger keeps the path, not a link


async def test_a_jenius_scene_with_local_photos_works_through_uploads(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    async with open_app(settings_of(tmp_path, **bucket.env()), sandbox_options=FAST) as app:
        task = await app.engine.generate(family_scene(tmp_path), wait_seconds=60)
    assert task.status == "completed", task.error
    assert task.uploads == [] and bucket.keys("uploads/") == []


@pytest.mark.parametrize("request_of", [omnihuman, family_scene])
async def test_local_files_for_url_only_inputs_are_refused_without_storage(
    tmp_path: Path, request_of
) -> None:  # type: ignore[no-untyped-def]
    async with open_app(settings_of(tmp_path), sandbox_options=FAST) as app:
        with pytest.raises(InputError) as refused:
            await app.engine.generate(request_of(tmp_path), wait_seconds=60)
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 0
        assert app.engine.list_tasks() == []
    assert "must be a public http(s) URL" in refused.value.message
    assert "VIDEOGEN_STORAGE_URL" in refused.value.message


async def test_a_store_that_denies_access_is_refused_before_anything_is_sent(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    bucket.deny_everything()
    async with open_app(settings_of(tmp_path, **bucket.env()), sandbox_options=FAST) as app:
        with pytest.raises(StorageError, match=r"denied access.*nothing was billed"):
            await app.engine.generate(omnihuman(tmp_path), wait_seconds=60)
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 0
        assert app.engine.list_tasks() == []


async def test_an_unreachable_store_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    env = {"VIDEOGEN_STORAGE_URL": "s3://videos/team", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip
    async with open_app(settings_of(tmp_path, **env), sandbox_options=FAST) as app:
        with pytest.raises(StorageError, match="could not be reached: check AWS_ENDPOINT_URL"):
            await app.engine.generate(omnihuman(tmp_path), wait_seconds=60)
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 0


async def test_an_upload_refused_after_the_check_fails_the_task_with_nothing_billed(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    async with open_app(settings_of(tmp_path, **bucket.env()), sandbox_options=FAST) as app:
        first = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="a boat")
        await app.engine.submit(first)  # the store is checked (and remembered as good) here
        bucket.deny_everything()
        with pytest.raises(StorageError, match=r"refused an upload.*nothing was billed"):
            await app.engine.generate(omnihuman(tmp_path), wait_seconds=60)
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 1  # the first request's only
        failed = app.engine.list_tasks()[0]
        assert failed.request.mode == "omnihuman"
        assert (failed.status, failed.error and failed.error.kind) == ("failed", "storage")
        with anyio.fail_after(60):
            await app.engine.wait_idle()


async def test_the_sandbox_refuses_a_presigned_link_that_is_gone_or_not_media(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    """As a provider does: 50220 for a link it cannot download, an error for a non-image."""
    settings = settings_of(tmp_path, **bucket.env())
    assert settings.storage is not None
    store = Storage(settings.storage)
    text = await store.upload(store.key("uploads", "t", "note.png"), b"not an image", "image/png")
    gone = store.link(store.key("uploads", "t", "missing.png"), 60)
    async with serve(FAST) as sandbox, httpx2.AsyncClient() as client:
        jenius = sandbox.endpoints()["jenius"]
        headers = {"Authorization": f"Bearer {jenius.api_key}"}
        answers = [
            await client.post(
                f"{jenius.base_url}/plugins/video/tasks",
                json={"scene": "celebrity", "image_url": url},
                headers=headers,
            )
            for url in (gone, text)
        ]
    assert answers[0].status_code == 400 and "answered HTTP 404" in answers[0].text
    assert "X-Amz-Signature" not in answers[0].text  # the link's signature is never echoed
    assert answers[1].status_code == 400 and "is not a JPEG or PNG image" in answers[1].text


async def test_a_finished_video_lands_in_the_bucket_once_with_a_link_to_the_same_bytes(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_of(tmp_path, **bucket.env())
    async with open_app(settings, sandbox_options=FAST) as app:
        request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="a boat")
        task = await app.engine.generate(request, wait_seconds=60)
        assert task.status == "completed", task.error
        assert task.local_path is not None
        saved = await anyio.Path(task.local_path).read_bytes()
        key = f"team/videos/{task.id}/{Path(task.local_path).name}"
        assert task.object_key == key and bucket.keys("videos/") == [key]
        assert bucket.read(key) == saved
        assert task.video_link is not None and "X-Amz-Signature=" in task.video_link
        async with httpx2.AsyncClient() as client:
            assert (await client.get(task.video_link)).content == saved
        text = render_markdown(result_of(task, notice=app.notice))
        assert f"[Download Video]({task.video_link})" in text
        assert f"- Object Key: {key}" in text
        assert text.index("- Save Path:") < text.index("- Object Key:")  # seed 002's order first
        # Another replica has no such file: the bucket has the video, nothing is made again.
        await anyio.Path(task.local_path).unlink()
        again = await app.engine.check(task.id)
        assert again.status == "completed" and again.video_link is not None
        assert app.sandbox is not None
        assert app.sandbox.log.count(operation="submit") == 1
    assert bucket.keys("videos/") == [key]


async def test_a_video_the_store_refused_is_stored_when_the_task_is_checked_again(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    async with open_app(settings_of(tmp_path, **bucket.env()), sandbox_options=FAST) as app:
        request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt="a boat")
        submitted = await app.engine.submit(request)  # the store is checked here
        bucket.deny_everything()
        with anyio.fail_after(60):
            await app.engine.wait_idle()
        refused = app.engine.get(submitted.id)
        assert refused.status == "completed" and refused.object_key is None
        assert refused.error is not None and refused.error.kind == "storage"
        assert "checking the task again stores it" in refused.error.message
        bucket.client.delete_bucket_policy(Bucket=bucket.name)
        stored = await app.engine.check(submitted.id)
    assert stored.object_key is not None and stored.error is None
    assert bucket.keys("videos/") == [stored.object_key]
