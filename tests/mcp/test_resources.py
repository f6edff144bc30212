"""The resources: the saved video, the task as JSON, the catalogue; missing ones are refused."""

from __future__ import annotations

import base64
import json

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import BlobResourceContents, TextResourceContents

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
    assert templates == {"videogen://videos/{task_id}", "videogen://tasks/{task_id}"}


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
