"""What the server says of itself and of bad calls: its version, argument errors, descriptions."""

from __future__ import annotations

import inspect
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from mcp_helpers import settings_env, text_of, write_png

from videogen.catalog import (
    ANY_IMAGE_FORM,
    MODES,
    URL_IMAGE_FORM,
    URL_ONLY_IMAGES,
    Mode,
    uploads_images,
)
from videogen.config import Settings
from videogen.engine import Progress
from videogen.errors import InputError
from videogen.inputs import prepare_inputs
from videogen.intake import build_request, choose_provider
from videogen.mcp_server import ProgressReporter, create_server
from videogen.sandbox import SandboxOptions

pytestmark = pytest.mark.anyio


async def test_the_server_reports_the_installed_package_version(client: Client) -> None:
    info = client.server_info
    assert info is not None
    assert info.version == metadata.version("jimeng-videogen-mcp")


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


async def test_progress_counts_towards_a_total_when_the_provider_gives_a_fraction(
    tmp_path: Path,
) -> None:
    """TokenOps reports how far it is: progress is that percentage of 100, rising, 100 when
    saved; never seconds elapsed, never above the total."""
    settings = Settings.from_env(settings_env(tmp_path, VIDEOGEN_PROVIDER="tokenops"))
    server = create_server(
        settings,
        sandbox_options=SandboxOptions(job_seconds=2),
        warm_up_after=None,
        heartbeat_seconds=0.2,
    )
    seen: list[tuple[float, float | None, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message or ""))

    async with Client(server) as client:
        result = await client.call_tool(
            "generate_video", {"prompt": "a counted boat"}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    values = [v for v, _, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values), seen
    partial = [v for v, total, m in seen if total == 100 and "running (" in m]
    assert partial and all(0 < v < 100 for v in partial), seen
    assert all(v <= total for v, total, _ in seen if total is not None), seen
    assert seen[-1][:2] == (100, 100), seen


class _Recorder:
    """Stands in for the request context: records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, float | None, str | None]] = []

    async def report_progress(self, value: float, total: float | None, message: str | None) -> None:
        self.sent.append((value, total, message))


async def test_an_update_that_changes_nothing_is_not_sent_twice() -> None:
    """The engine may repeat itself within milliseconds; the host hears it once."""
    recorder = _Recorder()
    reporter = ProgressReporter(cast(Context, recorder), heartbeat=30)
    running = Progress("vg_1", "running", 1.0, "The provider is generating the video.", 0.4)

    await reporter.on_progress(running)
    await reporter.on_progress(running)
    await reporter.on_progress(replace(running, elapsed=1.01))
    await reporter.on_progress(replace(running, fraction=0.5))

    assert [(v, t) for v, t, _ in recorder.sent] == [(40, 100), (50, 100)]


#: One call per mode that takes images, each with a local PNG as its image(s).
LOCAL_IMAGE_CALLS: dict[Mode, dict[str, Any]] = {
    "ti2v_pro": {"prompt": "p", "image": "{png}"},
    "i2v_first_720p": {"prompt": "p", "image": "{png}"},
    "i2v_first_1080p": {"prompt": "p", "image": "{png}"},
    "i2v_first_tail_720p": {"prompt": "p", "image": "{png}", "tail_image": "{png}"},
    "i2v_first_tail_1080p": {"prompt": "p", "image": "{png}", "tail_image": "{png}"},
    "i2v_recamera_720p": {
        "prompt": "p",
        "image": "{png}",
        "camera": "robo_arm",
        "camera_strength": "weak",
    },
    "omnihuman": {"image": "{png}", "audio": "https://example.com/a.mp3"},
    "scene": {"scene": "celebrity", "images": ["{png}"]},
}


async def test_image_descriptions_say_what_each_mode_really_accepts(
    client: Client, tmp_path: Path
) -> None:
    """The descriptions are checked against what the input checks really do with a local file."""
    png = str(write_png(tmp_path / "local.png"))
    assert set(LOCAL_IMAGE_CALLS) == {m for m in MODES if m not in ("t2v_720p", "t2v_1080p")}
    accepts_local: dict[Mode, bool] = {}
    for mode, call in LOCAL_IMAGE_CALLS.items():
        args = {
            k: v.replace("{png}", png) if isinstance(v, str) else [png] for k, v in call.items()
        }
        provider = choose_provider(explicit=None, mode=mode, scene=None, default="volcengine")
        request = build_request(provider=provider, mode=mode, **args).request
        try:
            await prepare_inputs(request, accepts_uploaded_images=True)
            accepts_local[mode] = True
        except InputError as refused:
            assert "public http(s) URL" in refused.message
            accepts_local[mode] = False
    tools = {t.name: t for t in (await client.list_tools()).tools}
    image = tools["generate_video"].input_schema["properties"]["image"]["description"]
    detect = tools["detect_subjects"].input_schema["properties"]["image"]["description"]

    assert any(accepts_local.values()) and ANY_IMAGE_FORM in image
    for mode, accepted in accepts_local.items():
        assert uploads_images(mode) == accepted, mode
        if not accepted:
            assert f"{URL_IMAGE_FORM} for" in image and URL_ONLY_IMAGES[mode] in image, mode
    assert URL_IMAGE_FORM in detect and "local JPEG/PNG file path or" not in detect
    refused = await client.call_tool("detect_subjects", {"image": png})
    assert refused.is_error and "public http(s) URL" in text_of(refused)
