"""MCP Apps over MCP: the player is advertised and served; results stay what they were.

The player itself runs in a browser in ``test_player_browser.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp_types import CallToolResult, TextResourceContents

from videogen.config import Settings
from videogen.mcp_apps import PLAYER_URI
from videogen.mcp_server import create_server
from videogen.report import VideoResult, render_markdown

pytestmark = pytest.mark.anyio

PLAYER_TOOLS = {"generate_video", "check_task"}


def _apps_client(settings: Settings, mode: str) -> Client:
    """A client that says it renders Apps, as Claude or VS Code do."""
    apps = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
    return Client(create_server(settings, warm_up_after=None), mode=mode, extensions=[apps])


async def test_generate_video_and_check_task_point_at_the_player(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name, tool in tools.items():
        meta = tool.meta or {}
        if name in PLAYER_TOOLS:
            assert meta["ui"]["resourceUri"] == PLAYER_URI, name
            assert meta["ui/resourceUri"] == PLAYER_URI, name  # the flat key older hosts read
        else:
            assert "ui" not in meta and "ui/resourceUri" not in meta, name


async def test_the_server_advertises_the_apps_extension_on_2026_07_28(settings: Settings) -> None:
    """On the 2025-11-25 era the SDK sends no extension capabilities; hosts there go by the
    tools' ``_meta`` (tested above in both eras)."""
    async with Client(create_server(settings, warm_up_after=None), mode="auto") as client:
        extensions = client.server_capabilities.extensions or {}
    assert EXTENSION_ID in extensions


async def test_the_player_is_one_self_contained_html_file_served_as_an_mcp_app(
    client: Client,
) -> None:
    listed = {r.uri: r for r in (await client.list_resources()).resources}
    assert listed[PLAYER_URI].mime_type == APP_MIME_TYPE
    (content,) = (await client.read_resource(PLAYER_URI)).contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == APP_MIME_TYPE
    assert content.meta == {"ui": {"prefersBorder": True}}
    html = content.text
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert 'id="video"' in html and "videogen://videos/" in html
    # Scripts and styles are inlined: no file the sandboxed iframe would have to fetch.
    assert not re.search(r"<script[^>]*\bsrc=", html, re.I)
    assert not re.search(r"<link[^>]*\bhref=", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", html, re.I)


async def test_the_player_never_calls_the_billed_tool() -> None:
    """The view follows a task with check_task; generate_video is only the host's to call."""
    html = (Path(__file__).parents[2] / "server/videogen/assets/player.html").read_text()
    called = set(re.findall(r"name:\s*[`\"']([a-z_]+)[`\"']", html))
    assert called == {"check_task"}
    assert "generate_video" not in html


@pytest.mark.parametrize("apps", [False, True], ids=["plain host", "apps host"])
async def test_results_are_the_same_text_poster_and_link_with_or_without_apps(
    settings: Settings, mode: str, apps: bool
) -> None:
    client = (
        _apps_client(settings, mode)
        if apps
        else Client(create_server(settings, warm_up_after=None), mode=mode)
    )
    async with client:
        result = await client.call_tool("generate_video", {"prompt": "a lighthouse at dusk"})
        checked = await client.call_tool(
            "check_task", {"task_id": _structured(result)["task_id"], "wait_seconds": 0}
        )
    for answer in (result, checked):
        structured = _structured(answer)
        assert [c.type for c in answer.content] == ["text", "image", "resource_link"]
        text = answer.content[0]
        assert text.type == "text"
        assert text.text == render_markdown(VideoResult.model_validate(structured))
        link = answer.content[2]
        assert link.type == "resource_link"
        assert str(link.uri) == f"videogen://videos/{structured['task_id']}"


def _structured(result: CallToolResult) -> dict[str, object]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content
