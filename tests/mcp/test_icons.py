"""Hosts show the server's and each tool's icon: PNGs shipped in the package, sent as data: URIs."""

from __future__ import annotations

import base64
import struct

import pytest
from mcp import Client
from mcp_types import Icon

from videogen.config import Settings
from videogen.mcp_server import create_server

pytestmark = pytest.mark.anyio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(icon: Icon) -> str:
    """The ``WxH`` of a ``data:image/png;base64,...`` icon, read from its IHDR chunk."""
    prefix = "data:image/png;base64,"
    assert icon.src.startswith(prefix), icon.src[:40]
    data = base64.b64decode(icon.src[len(prefix) :], validate=True)
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return f"{width}x{height}"


def check_icons(icons: list[Icon] | None) -> set[str]:
    """Each icon is a PNG whose declared size is its real size; returns the sizes."""
    assert icons, "no icons"
    for icon in icons:
        assert icon.mime_type == "image/png"
        assert icon.sizes == [png_size(icon)]
    return {size for icon in icons for size in icon.sizes or ()}


async def test_every_tool_in_tools_list_carries_a_png_icon(client: Client) -> None:
    tools = (await client.list_tools()).tools
    assert len(tools) == 5
    for tool in tools:
        assert check_icons(tool.icons) == {"64x64"}, tool.name


async def test_the_server_info_carries_small_and_large_png_icons(settings: Settings) -> None:
    """The initialize handshake's serverInfo names the server with its icons."""
    server = create_server(settings, warm_up_after=None)
    async with Client(server, mode="legacy") as client:
        info = client.server_info
    assert info is not None and info.name == "videogen"
    assert check_icons(info.icons) == {"64x64", "256x256"}
