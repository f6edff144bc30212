"""What the server says of itself and of bad calls: its version, argument errors, descriptions."""

from __future__ import annotations

import inspect
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


async def test_bad_arguments_are_answered_in_videogens_words(client: Client) -> None:
    """Which argument, what it accepts; none of the validation library's internals."""
    refused = await client.call_tool(
        "generate_video", {"prompt": "a paper boat", "duration": 7, "wait_seconds": 99}
    )
    missing = await client.call_tool("check_task", {})

    assert refused.is_error and missing.is_error
    text = text_of(refused)
    assert "- duration: 7 is not accepted" in text and "4, 5, 6, 8 or 10" in text
    assert "- wait_seconds: 99 is not accepted" in text and "50" in text
    assert "nothing was billed" in text
    assert "- task_id is required" in text_of(missing)
    for answer in (text, text_of(missing)):
        for internal in ("pydantic", "validation error", "Arguments", "type=", "input_value"):
            assert internal not in answer, answer


async def test_tool_descriptions_carry_no_source_indentation(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        description = tool.description or ""
        assert description == inspect.cleandoc(description), tool.name
        assert not any(line.startswith(" ") for line in description.splitlines()), tool.name
