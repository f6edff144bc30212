"""Object storage: the setting, the key rule, and each operation against a loopback S3 server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from videogen.config import Settings
from videogen.errors import ConfigError, StorageError
from videogen.storage import Storage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def storage_of(env: dict[str, str]) -> Storage:
    settings = Settings.from_env({"HOME": "/h", **env})
    assert settings.storage is not None
    return Storage(settings.storage)


def test_the_storage_url_names_a_bucket_and_a_prefix() -> None:
    settings = Settings.from_env(
        {"VIDEOGEN_STORAGE_URL": "s3://team-videos/a/b/", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    )
    assert settings.storage is not None
    assert (settings.storage.bucket, settings.storage.prefix) == ("team-videos", "a/b")
    assert settings.storage.region == "us-east-1"
    assert Settings.from_env({}).storage is None


@pytest.mark.parametrize(
    "url", ["https://team-videos/x", "s3://", "s3://Team_Videos/x", "s3://ok-bucket/a/../b"]
)
def test_a_bad_storage_url_names_the_variable_and_the_form(url: str) -> None:
    with pytest.raises(ConfigError, match=r"VIDEOGEN_STORAGE_URL=.*s3://bucket/prefix"):
        Settings.from_env({"VIDEOGEN_STORAGE_URL": url})


def test_half_a_key_pair_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY is not set"):
        Settings.from_env({"VIDEOGEN_STORAGE_URL": "s3://b-1/x", "AWS_ACCESS_KEY_ID": "testing"})


def test_the_store_secret_never_shows_in_a_repr() -> None:
    settings = Settings.from_env(
        {
            "VIDEOGEN_STORAGE_URL": "s3://b-1/x",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "not-a-real-secret-value",
        }
    )
    assert "not-a-real-secret-value" not in repr(settings)
    assert "not-a-real-secret-value" in settings.secrets()


def test_keys_follow_one_rule_under_the_prefix() -> None:
    store = storage_of({"VIDEOGEN_STORAGE_URL": "s3://b-1/team/"})
    assert store.video_key("vg_1", "boat.mp4") == "team/videos/vg_1/boat.mp4"
    assert store.upload_key("vg_1", "image-1.png") == "team/uploads/vg_1/image-1.png"
    bare = storage_of({"VIDEOGEN_STORAGE_URL": "s3://b-1"})
    assert bare.video_key("vg_1", "boat.mp4") == "videos/vg_1/boat.mp4"


def test_the_default_program_never_imports_obstore() -> None:
    code = (
        "import sys; from videogen.config import Settings; from videogen import app, cli, "
        "mcp_server; Settings.from_env({}); print('obstore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_an_upload_is_reachable_by_its_presigned_link_and_then_deleted(bucket) -> None:  # type: ignore[no-untyped-def]
    store = storage_of(bucket.env())
    await store.check()
    key = store.upload_key("vg_1", "audio.wav")
    link = await store.upload(key, b"RIFF....WAVE", "audio/wav")
    assert "X-Amz-Signature=" in link and "X-Amz-Expires=3600" in link
    async with httpx2.AsyncClient() as client:
        fetched = await client.get(link)
        assert fetched.content == b"RIFF....WAVE"
        assert (await client.get(link.split("?")[0])).status_code == 403  # never public
    await store.delete([key])
    assert bucket.keys() == []


async def test_a_saved_file_is_stored_once_however_often_it_is_put(bucket, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = storage_of(bucket.env())
    video = tmp_path / "boat.mp4"
    video.write_bytes(b"\x00" * 1000)
    key = store.video_key("vg_1", video.name)
    await store.put_file(key, video)
    await store.put_file(key, video)
    assert bucket.keys() == [key]
    assert await store.size(key) == 1000
    assert await store.read(key, limit=10_000) == b"\x00" * 1000
    assert await store.read(key, limit=10) == 1000  # over the limit: its size, not its bytes


async def test_a_store_that_denies_access_is_refused_naming_the_credentials(bucket) -> None:  # type: ignore[no-untyped-def]
    bucket.deny_everything()
    with pytest.raises(StorageError) as raised:
        await storage_of(bucket.env()).check()
    message = raised.value.message
    assert "denied access" in message and "AWS_ACCESS_KEY_ID" in message
    assert "nothing was billed" in message and "testing" not in message.replace(bucket.name, "")


async def test_an_unreachable_store_is_refused_naming_the_endpoint_variable(bucket) -> None:  # type: ignore[no-untyped-def]
    env = {**bucket.env(), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    with pytest.raises(StorageError, match="could not be reached: check AWS_ENDPOINT_URL"):
        await storage_of(env).check()


async def test_a_missing_bucket_is_refused_naming_the_setting(bucket) -> None:  # type: ignore[no-untyped-def]
    env = {**bucket.env(), "VIDEOGEN_STORAGE_URL": "s3://no-such-bucket-here/x"}
    with pytest.raises(StorageError, match="does not exist: create it or fix VIDEOGEN_STORAGE_URL"):
        await storage_of(env).check()
