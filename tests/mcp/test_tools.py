"""The five tools through an in-memory client, in both protocol eras, against the sandbox."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_helpers import check_output, settings_env, text_of, write_png
from mcp_types import ImageContent, ResourceLink

from videogen.config import SANDBOX_NOTICE, Settings
from videogen.mcp_server import MAX_WAIT_SECONDS, create_server
from videogen.sandbox import SandboxOptions, serve

pytestmark = pytest.mark.anyio

TOOLS = {"generate_video", "check_task", "list_scenes", "detect_subjects", "list_tasks"}


async def test_the_server_lists_five_described_tools_with_side_effect_hints(client: Client) -> None:
    """Every tool has a description and an output schema; only generate_video writes."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.annotations is not None, tool.name
    generate = tools["generate_video"]
    assert generate.annotations is not None
    assert generate.annotations.read_only_hint is False
    assert generate.annotations.idempotent_hint is False
    assert generate.annotations.open_world_hint is True
    assert "billed" in (generate.description or "")
    assert "check_task" in (generate.description or "")
    for name in TOOLS - {"generate_video"}:
        hints = tools[name].annotations
        assert hints is not None and hints.read_only_hint is True, name


async def test_generate_video_parameters_are_typed_enums_with_descriptions(client: Client) -> None:
    """Modes, durations, fps and providers are enums; every parameter is described."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    props = tools["generate_video"].input_schema["properties"]
    assert "ctx" not in props
    for name, prop in props.items():
        assert prop.get("description"), name
    assert props["duration"]["enum"] == [4, 5, 6, 8, 10]
    assert props["fps"]["enum"] == [24, 25, 30]
    modes = next(a["enum"] for a in props["mode"]["anyOf"] if "enum" in a)
    assert "omnihuman" in modes and "scene" in modes and "i2v_recamera_720p" in modes
    assert props["wait_seconds"]["anyOf"][0]["maximum"] == MAX_WAIT_SECONDS


async def test_generate_video_saves_the_video_and_answers_with_the_seed_block(
    client: Client, settings: Settings
) -> None:
    """The block of seed 002, the sandbox notice first, a poster, a link and valid structure."""
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    result = await client.call_tool(
        "generate_video",
        {"prompt": "a paper boat on a pond", "duration": 4, "fps": 25},
        progress_callback=on_progress,
    )
    data = await check_output(client, "generate_video", result)
    text = text_of(result)
    assert text.splitlines()[0] == SANDBOX_NOTICE
    assert "**Generated Video:**" in text and "**Generation Info:**" in text
    assert "- Prompt: a paper boat on a pond" in text
    assert "- Mode: t2v_720p" in text
    assert data["status"] == "completed" and data["sandbox"] is True
    saved = Path(data["local_path"])
    assert await anyio.Path(saved).is_file() and saved.parent == settings.output_dir
    assert f"- Save Path: {saved}" in text
    assert data["duration"] == pytest.approx(4, abs=0.1) and data["fps"] == pytest.approx(25)
    links = [c for c in result.content if isinstance(c, ResourceLink)]
    assert [str(link.uri) for link in links] == [f"videogen://videos/{data['task_id']}"]
    assert (
        links[0].mime_type == "video/mp4"
        and links[0].size == (await anyio.Path(saved).stat()).st_size
    )
    (poster,) = [c for c in result.content if isinstance(c, ImageContent)]
    assert poster.mime_type == "image/jpeg" and base64.b64decode(poster.data)[:2] == b"\xff\xd8"
    assert data["poster_path"] and len(poster.data) < 300_000
    assert progress, "no progress notification during the wait"
    values = [v for v, _ in progress]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert any(data["task_id"] in (m or "") for _, m in progress)


async def test_an_image_without_a_mode_picks_an_image_mode_and_says_so(
    client: Client, tmp_path: Path
) -> None:
    """Intake infers i2v_first_720p from one image; the result names the choice."""
    image = write_png(tmp_path / "boat.png")
    result = await client.call_tool(
        "generate_video", {"prompt": "the boat drifts", "image": str(image)}
    )
    data = await check_output(client, "generate_video", result)
    assert data["mode"] == "i2v_first_720p"
    assert any("i2v_first_720p" in note for note in data["notes"])
    assert "i2v_first_720p" in text_of(result)


async def test_a_call_that_runs_out_of_wait_returns_the_task_and_check_task_finishes_it(
    client: Client,
) -> None:
    """wait_seconds=0: the task id, its status and the instruction to call check_task."""
    result = await client.call_tool("generate_video", {"prompt": "slow clouds", "wait_seconds": 0})
    data = await check_output(client, "generate_video", result)
    assert data["status"] in ("submitting", "queued", "running", "ready")
    assert data["done"] is False and data["local_path"] is None
    text = text_of(result)
    assert data["task_id"] in text and "check_task" in text
    assert not [c for c in result.content if isinstance(c, ResourceLink)]

    checked = await client.call_tool("check_task", {"task_id": data["task_id"], "wait_seconds": 30})
    done = await check_output(client, "check_task", checked)
    assert done["task_id"] == data["task_id"] and done["status"] == "completed"
    assert await anyio.Path(done["local_path"]).is_file()
    assert "**Generated Video:**" in text_of(checked)


async def test_the_same_request_twice_returns_the_first_task_unless_new(client: Client) -> None:
    """The duplicate guard answers with the first task; new=true bills a second one."""
    args = {"prompt": "a red kite", "wait_seconds": 0}
    first = (await client.call_tool("generate_video", args)).structured_content
    again = (await client.call_tool("generate_video", args)).structured_content
    fresh = (await client.call_tool("generate_video", {**args, "new": True})).structured_content
    assert isinstance(first, dict) and isinstance(again, dict) and isinstance(fresh, dict)
    assert again["task_id"] == first["task_id"]
    assert any(first["task_id"] in note for note in again["notes"])
    assert fresh["task_id"] != first["task_id"]


async def test_bad_requests_come_back_as_tool_errors_that_say_what_to_fix(client: Client) -> None:
    """Intake refusals carry their message; nothing is a bare 'Error executing tool'."""
    result = await client.call_tool("generate_video", {"prompt": "x", "mode": "i2v_first_720p"})
    assert result.is_error
    text = text_of(result)
    assert text.startswith("Error executing tool generate_video: ")
    assert len(text) > len("Error executing tool generate_video: ") + 20
    assert "image" in text.lower()


async def test_tool_errors_in_sandbox_mode_say_so_on_their_first_line(client: Client) -> None:
    """Every result, errors included, says it came from the offline preview."""
    refused = await client.call_tool("generate_video", {"prompt": "x", "mode": "i2v_first_720p"})
    unknown = await client.call_tool("check_task", {"task_id": "vg_000000000000"})
    for result in (refused, unknown):
        assert result.is_error
        first, *rest = text_of(result).splitlines()
        assert first.endswith(SANDBOX_NOTICE) and rest


async def test_tool_errors_with_real_credentials_carry_no_sandbox_notice(tmp_path: Path) -> None:
    async with serve(SandboxOptions(job_seconds=1)) as sandbox:
        settings = Settings.from_env({**settings_env(tmp_path), **sandbox.env()})
        async with Client(create_server(settings, warm_up_after=None)) as client:
            result = await client.call_tool("check_task", {"task_id": "vg_000000000000"})
    assert result.is_error and "sandbox" not in text_of(result)
    assert "vg_000000000000" in text_of(result)


async def test_arguments_outside_the_schema_are_refused_before_anything_runs(
    client: Client,
) -> None:
    """A duration the providers do not offer is a validation error naming the field."""
    result = await client.call_tool("generate_video", {"prompt": "x", "duration": 7})
    assert result.is_error
    assert "duration" in text_of(result)
    listed = await client.call_tool("list_tasks", {})
    assert listed.structured_content == {"tasks": [], "notice": SANDBOX_NOTICE}


async def test_checking_an_unknown_task_is_a_tool_error_naming_it(client: Client) -> None:
    result = await client.call_tool("check_task", {"task_id": "vg_000000000000"})
    assert result.is_error
    assert "vg_000000000000" in text_of(result)


async def test_list_scenes_gives_scenes_modes_and_camera_moves(client: Client) -> None:
    result = await client.call_tool("list_scenes", {})
    data = await check_output(client, "list_scenes", result)
    scenes = {s["name"]: s for s in data["scenes"]}
    assert {"celebrity", "family"} <= set(scenes)
    assert scenes["family"]["max_images"] == 9
    assert "hitchcock_dolly_in" in data["camera_moves"]
    assert data["camera_strengths"] == ["weak", "medium", "strong"]
    assert len(data["modes"]) == 10
    assert "celebrity" in text_of(result) and "robo_arm" in text_of(result)
    assert text_of(result).splitlines()[0] == SANDBOX_NOTICE


async def test_list_tasks_lists_what_was_generated_newest_first(client: Client) -> None:
    first = await client.call_tool("generate_video", {"prompt": "one", "wait_seconds": 0})
    second = await client.call_tool("generate_video", {"prompt": "two", "wait_seconds": 0})
    result = await client.call_tool("list_tasks", {"limit": 5})
    data = await check_output(client, "list_tasks", result)
    ids = [t["task_id"] for t in data["tasks"]]
    assert isinstance(first.structured_content, dict)
    assert isinstance(second.structured_content, dict)
    assert ids == [second.structured_content["task_id"], first.structured_content["task_id"]]
    assert all(i in text_of(result) for i in ids)


async def test_detect_subjects_reports_masks_to_pass_back(tmp_path: Path, mode: str) -> None:
    """A portrait with people has masks, largest first; a flat image has no subject.

    The sandbox runs outside the server here, configured as if it were a real provider, so
    the test can point at its hosted images; results then carry no sandbox notice.
    """
    async with serve(SandboxOptions(job_seconds=1)) as sandbox:
        settings = Settings.from_env({**settings_env(tmp_path), **sandbox.env()})
        async with Client(create_server(settings, warm_up_after=None), mode=mode) as client:
            people = await client.call_tool(
                "detect_subjects", {"image": f"{sandbox.url}/assets/image/512x768-people.png"}
            )
            nobody = await client.call_tool(
                "detect_subjects", {"image": f"{sandbox.url}/assets/image/512x768-uniform.png"}
            )
            found = await check_output(client, "detect_subjects", people)
            empty = await check_output(client, "detect_subjects", nobody)
        assert sandbox.log.count(operation="detect") == 2
    assert found["contains_subject"] is True and found["mask_urls"]
    assert found["provider"] == "volcengine"
    text = text_of(people)
    assert SANDBOX_NOTICE not in text
    for url in found["mask_urls"]:
        assert url in text
    assert "mask=" in text
    assert empty["contains_subject"] is False and empty["mask_urls"] == []


async def test_a_configured_provider_is_used_and_no_sandbox_notice_is_shown(
    tmp_path: Path,
) -> None:
    """With credentials (here: pointing at a separate sandbox) the chosen provider is called."""
    async with serve(SandboxOptions(job_seconds=1)) as sandbox:
        settings = Settings.from_env({**settings_env(tmp_path), **sandbox.env()})
        async with Client(create_server(settings, warm_up_after=None)) as client:
            result = await client.call_tool(
                "generate_video", {"prompt": "gateway boat", "provider": "tokenops"}
            )
            data = await check_output(client, "generate_video", result)
        assert sandbox.log.count(provider="tokenops", operation="submit") == 1
    assert data["provider"] == "tokenops" and data["sandbox"] is False
    assert data["notice"] is None and not text_of(result).startswith("sandbox:")
    assert data["status"] == "completed"


class CallOutcomes:
    """Server middleware (the SDK's documented hook) recording how each tools/call ended on the
    server side: "returned", "raised" or "cancelled"."""

    def __init__(self) -> None:
        self.ended: dict[str, str] = {}
        self.done = anyio.Event()

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        name = str((ctx.params or {}).get("name"))
        try:
            result = await call_next(ctx)
        except anyio.get_cancelled_exc_class():
            self.ended[name] = "cancelled"
            raise
        except BaseException:
            self.ended[name] = "raised"
            raise
        finally:
            self.done.set()
        self.ended[name] = "returned"
        return result


async def test_a_cancelled_call_is_cancelled_on_the_server_and_its_task_still_finishes(
    tmp_path: Path, mode: str
) -> None:
    """Cancel generate_video once the task exists: the server-side call stops there (it does
    not run on to the end of the 3 s job), and the engine keeps the task and saves the video."""
    settings = Settings.from_env(settings_env(tmp_path, VIDEOGEN_SANDBOX_JOB_SECONDS="3"))
    server = create_server(settings, warm_up_after=None)
    outcomes = CallOutcomes()
    server.middleware.append(outcomes)
    async with Client(server, mode=mode) as client:
        task_ids: list[str] = []
        submitted = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            words = (message or "").split()
            if words and words[0].startswith("vg_"):
                task_ids.append(words[0])
                submitted.set()

        async def call() -> None:
            await client.call_tool(
                "generate_video", {"prompt": "cancelled boat"}, progress_callback=on_progress
            )

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            with anyio.fail_after(20):
                await submitted.wait()
            group.cancel_scope.cancel()
        with anyio.fail_after(10):
            await outcomes.done.wait()
        assert outcomes.ended == {"generate_video": "cancelled"}
        now = await client.call_tool("check_task", {"task_id": task_ids[0], "wait_seconds": 0})
        assert isinstance(now.structured_content, dict)
        assert now.structured_content["status"] in ("submitting", "queued", "running")

        result = await client.call_tool("check_task", {"task_id": task_ids[0], "wait_seconds": 30})
        data = await check_output(client, "check_task", result)
        assert data["status"] == "completed" and await anyio.Path(data["local_path"]).is_file()
        assert data["task_id"] == task_ids[0]


async def test_check_task_finds_a_task_after_the_server_restarts(tmp_path: Path) -> None:
    """The ledger outlives the server: a new server resumes the task and saves the video.

    The provider (a sandbox outside the server) outlives both servers, as a real one would;
    the embedded sandbox forgets its tasks when the server stops.
    """
    async with serve(SandboxOptions(job_seconds=1)) as sandbox:
        settings = Settings.from_env({**settings_env(tmp_path), **sandbox.env()})
        async with Client(create_server(settings, warm_up_after=None)) as client:
            made = await client.call_tool(
                "generate_video", {"prompt": "restart", "wait_seconds": 0}
            )
            assert isinstance(made.structured_content, dict)
            task_id = made.structured_content["task_id"]
        async with Client(create_server(settings, warm_up_after=None)) as client:
            result = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 30})
            data = await check_output(client, "check_task", result)
    assert data["status"] == "completed" and await anyio.Path(data["local_path"]).is_file()


async def test_the_engine_starts_on_its_own_shortly_after_the_server(tmp_path: Path) -> None:
    """With warm-up on, an unfinished task resumes and is saved without any tool call."""
    async with serve(SandboxOptions(job_seconds=1)) as sandbox:
        settings = Settings.from_env({**settings_env(tmp_path), **sandbox.env()})
        async with Client(create_server(settings, warm_up_after=None)) as client:
            made = await client.call_tool("generate_video", {"prompt": "resume", "wait_seconds": 0})
            assert isinstance(made.structured_content, dict)
            task_id = made.structured_content["task_id"]
        output = anyio.Path(settings.output_dir)
        async with Client(create_server(settings, warm_up_after=0.0)):
            # The file appearing is the only outside sign; there is no event to wait on.
            with anyio.fail_after(30):
                while not [p async for p in output.glob(f"*{task_id}*.mp4")]:  # noqa: ASYNC110
                    await anyio.sleep(0.1)


async def test_a_wait_sends_a_heartbeat_between_engine_updates(settings: Settings) -> None:
    """Silences longer than the heartbeat are filled with 'N s elapsed' notifications."""
    server = create_server(
        settings,
        sandbox_options=SandboxOptions(job_seconds=2),
        warm_up_after=None,
        heartbeat_seconds=0.2,
    )
    seen: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message or ""))

    async with Client(server) as client:
        result = await client.call_tool(
            "generate_video", {"prompt": "heartbeat"}, progress_callback=on_progress
        )
        await check_output(client, "generate_video", result)
    beats = [m for _, m in seen if m.endswith("s elapsed")]
    assert len(beats) >= 3, seen
    assert beats[0].startswith("submitting") or beats[0].startswith("vg_")
    values = [v for v, _ in seen]
    assert values == sorted(values) and len(set(values)) == len(values)


async def test_an_engine_that_cannot_start_is_a_tool_error_and_is_retried(
    tmp_path: Path,
) -> None:
    """A data folder that is a file: each call says so (no bare error) and tries again."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    env = settings_env(tmp_path, VIDEOGEN_DATA_DIR=str(blocker))
    async with Client(create_server(Settings.from_env(env), warm_up_after=None)) as client:
        first = await client.call_tool("list_tasks", {})
        second = await client.call_tool("list_tasks", {})
    for result in (first, second):
        assert result.is_error
        assert "VIDEOGEN_DATA_DIR" in text_of(result)
