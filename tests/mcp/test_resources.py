"""The resources: the saved video, the task as JSON, the catalogue; missing ones are refused."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_helpers import write_png
from mcp_types import BlobResourceContents, TextResourceContents

from videogen.mcp_server import VIDEO_RESOURCE_MAX_BYTES

pytestmark = pytest.mark.anyio


async def _generated(client: Client) -> dict[str, object]:
    result = await client.call_tool("generate_video", {"prompt": "a lighthouse at dusk"})
    assert not result.is_error and isinstance(result.structured_content, dict)
    assert result.structured_content["status"] == "completed"
    return result.structured_content


async def test_the_video_resource_serves_the_saved_mp4(client: Client) -> None:
    data = await _generated(client)
    read = await client.read_resource(f"videogen://videos/{data['task_id']}")
    (content,) = read.contents
    assert isinstance(content, BlobResourceContents)
    assert content.mime_type == "video/mp4"
    blob = base64.b64decode(content.blob)
    assert blob == await anyio.Path(str(data["local_path"])).read_bytes()
    assert blob[4:8] == b"ftyp"


async def test_the_task_resource_is_the_task_as_json(client: Client) -> None:
    data = await _generated(client)
    read = await client.read_resource(f"videogen://tasks/{data['task_id']}")
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    task = json.loads(content.text)
    assert task["id"] == data["task_id"] and task["status"] == "completed"
    assert task["request"]["prompt"] == "a lighthouse at dusk"
    assert "owner" not in task


async def test_the_catalog_resource_lists_modes_scenes_and_camera_moves(client: Client) -> None:
    read = await client.read_resource("videogen://catalog")
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    cat = json.loads(content.text)
    assert {m["name"] for m in cat["modes"]} >= {"t2v_720p", "omnihuman", "scene"}
    assert "celebrity" in {s["name"] for s in cat["scenes"]}


async def test_templates_are_listed(client: Client) -> None:
    templates = {
        t.uri_template for t in (await client.list_resource_templates()).resource_templates
    }
    assert templates == {
        "videogen://videos/{task_id}",
        "videogen://tasks/{task_id}",
        "videogen://usage{?days}",
    }


@pytest.mark.parametrize("uri", ["videogen://videos/vg_000000000000", "videogen://tasks/vg_nope"])
async def test_a_missing_task_is_not_found(client: Client, uri: str) -> None:
    with pytest.raises(MCPError) as caught:
        await client.read_resource(uri)
    assert "vg_" in str(caught.value)


async def test_a_video_that_is_not_saved_yet_is_not_found(client: Client) -> None:
    result = await client.call_tool("generate_video", {"prompt": "pending", "wait_seconds": 0})
    assert isinstance(result.structured_content, dict)
    with pytest.raises(MCPError) as caught:
        await client.read_resource(f"videogen://videos/{result.structured_content['task_id']}")
    assert "no saved video" in str(caught.value)


async def test_a_video_over_the_cap_is_refused_with_the_path_to_open_instead(
    client: Client,
) -> None:
    """Past VIDEO_RESOURCE_MAX_BYTES (8 MB, ~11 MB as base64) the answer names the saved file."""
    data = await _generated(client)
    saved = str(data["local_path"])
    os.truncate(saved, VIDEO_RESOURCE_MAX_BYTES + 1)  # sparse: no 8 MB written
    with pytest.raises(MCPError) as caught:
        await client.read_resource(f"videogen://videos/{data['task_id']}")
    assert saved in str(caught.value) and "8 MB" in str(caught.value)


async def test_the_video_cap_is_small_enough_for_hosts_and_documented(client: Client) -> None:
    assert VIDEO_RESOURCE_MAX_BYTES <= 8 * 1024 * 1024
    templates = (await client.list_resource_templates()).resource_templates
    (video,) = [t for t in templates if t.uri_template.startswith("videogen://videos/")]
    assert "8 MB" in (video.description or "") and "local_path" in (video.description or "")


async def test_the_task_resource_never_echoes_a_data_url_image(
    client: Client, tmp_path: Path
) -> None:
    """A data-URL image (hundreds of KB of base64) is abbreviated, not served back whole."""
    png = write_png(tmp_path / "frame.png").read_bytes()
    payload = base64.b64encode(png).decode()
    result = await client.call_tool(
        "generate_video",
        {"prompt": "a grey frame", "image": f"data:image/png;base64,{payload}", "wait_seconds": 0},
    )
    assert not result.is_error and isinstance(result.structured_content, dict)
    read = await client.read_resource(f"videogen://tasks/{result.structured_content['task_id']}")
    (content,) = read.contents
    assert isinstance(content, TextResourceContents)
    assert payload[:200] not in content.text and len(content.text) < len(payload)
    (image,) = json.loads(content.text)["request"]["images"]
    assert image.startswith("data:image/png;base64,")


def _replace_with_link(path: str, target: str) -> None:
    os.unlink(path)
    os.symlink(target, path)


async def test_a_saved_video_replaced_by_a_link_is_not_followed(client: Client) -> None:
    """Issue 14 item 12: a link planted where the MP4 was never serves what it points at."""
    data = await _generated(client)
    _replace_with_link(str(data["local_path"]), "/etc/passwd")
    with pytest.raises(MCPError) as caught:
        await client.read_resource(f"videogen://videos/{data['task_id']}")
    assert "root:" not in str(caught.value) and "not served" in str(caught.value)


async def test_a_poster_replaced_by_a_link_is_not_inlined(client: Client, tmp_path: Path) -> None:
    from mcp_types import ImageContent

    data = await _generated(client)
    assert data["poster_path"]
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8 not a poster, a secret")
    _replace_with_link(str(data["poster_path"]), str(secret))
    again = await client.call_tool("check_task", {"task_id": data["task_id"]})
    images = [c for c in again.content if isinstance(c, ImageContent)]
    assert all(b"secret" not in base64.b64decode(image.data) for image in images)
    assert secret.read_bytes() == b"\xff\xd8 not a poster, a secret"


async def test_the_video_resource_streams_from_the_bucket_when_the_file_is_not_here(
    tmp_path: Path, bucket
) -> None:  # type: ignore[no-untyped-def]
    """Replicas do not share a disk: a video saved by another one is read from the bucket."""
    from mcp_helpers import settings_env

    from videogen.config import Settings
    from videogen.mcp_server import create_server

    settings = Settings.from_env(settings_env(tmp_path, **bucket.env()))
    async with Client(create_server(settings, warm_up_after=None)) as client:
        data = await _generated(client)
        assert data["object_key"] and data["video_link"]
        stored = bucket.read(str(data["object_key"]))
        os.unlink(str(data["local_path"]))
        read = await client.read_resource(f"videogen://videos/{data['task_id']}")
    (content,) = read.contents
    assert isinstance(content, BlobResourceContents)
    assert base64.b64decode(content.blob) == stored
