"""What the server says of itself and of bad calls: its version, argument errors, descriptions."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import settings_env, text_of

from videogen.config import Settings
from videogen.mcp_server import create_server

pytestmark = pytest.mark.anyio


async def test_the_server_reports_the_installed_package_version(client: Client) -> None:
    info = client.server_info
    assert info is not None
    assert info.version == metadata.version("videogen-mcp")


async def test_an_unusable_output_folder_names_only_settings_that_exist(
    tmp_path: Path, mode: str
) -> None:
    """The fix an MCP user is told is the server's VIDEOGEN_OUTPUT_DIR: no tool has output_dir."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    settings = Settings.from_env(settings_env(tmp_path, VIDEOGEN_OUTPUT_DIR=str(blocker)))
    async with Client(create_server(settings, warm_up_after=None), mode=mode) as client:
        result = await client.call_tool("generate_video", {"prompt": "a paper boat"})
        tools = {t.name: t for t in (await client.list_tools()).tools}

    assert result.is_error
    text = text_of(result)
    assert "VIDEOGEN_OUTPUT_DIR" in text and "server" in text
    assert (
        "output_dir" not in text
        and "output_dir" not in tools["generate_video"].input_schema["properties"]
    )
    assert "filename" in tools["generate_video"].input_schema["properties"]
