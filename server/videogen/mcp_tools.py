"""The MCP tools and resources, one module-level function each, registered from ``TOOLS`` and
``RESOURCES``. Each tool turns its arguments into one engine call and the answer into a
``CallToolResult`` (markdown for the person, ``structuredContent`` for the model)."""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import (
    CallToolResult,
    ContentBlock,
    Icon,
    ImageContent,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import Field

from videogen.errors import TaskNotFound, VideogenError
from videogen.mcp_apps import player_tool_meta
from videogen.mcp_http import caller
from videogen.mcp_session import (
    MAX_WAIT_SECONDS,
    LazyApp,
    lazy_app,
    running_app,
    tool_errors,
    wait_budget,
    waiting,
)
from videogen.report import (
    Catalog,
    SubjectReport,
    TaskList,
    VideoResult,
    catalog,
    catalog_markdown,
    leaf_error,
    render_markdown,
    render_subjects,
    result_of,
    tasks_markdown,
    with_notice,
)
from videogen.request import URL_IMAGE_FORM, ProviderName, ask_parameters, pick_ask

if TYPE_CHECKING:
    from videogen.engine import Task

#: Largest MP4 served through ``videogen://videos/{task_id}`` (about 11 MB once base64-encoded):
#: a 5 s 720p clip fits. Some hosts refuse any message over about 1 MB whatever this says, and a
#: bigger cap only makes the refusal slower; past it the answer names the file to open instead.
VIDEO_RESOURCE_MAX_BYTES: Final = 8 * 1024 * 1024
#: Largest poster inlined in a tool result (hosts reject results around 1 MB).
POSTER_MAX_BYTES: Final = 200 * 1024


# --- the tools ---------------------------------------------------------------------------------


async def generate_video(
    ctx: Context,
    *,
    wait_seconds: Annotated[
        float | None,
        Field(
            description="How long this call waits for the video before answering with "
            "the task id (default about 45, at most 50). The task goes on either way.",
            ge=0,
            le=MAX_WAIT_SECONDS,
        ),
    ] = None,
    new: Annotated[
        bool,
        Field(
            description="true to bill a new task even if an identical request was made in "
            "the last minutes (by default that earlier task is returned)."
        ),
    ] = False,
    **ask: Any,
) -> Annotated[CallToolResult, VideoResult]:
    """Generate a video and save it as an MP4 on this computer. Every call is billed.

    Submits one task to the provider, then waits (up to wait_seconds) while it renders,
    downloads it and answers with a markdown block (link, prompt, duration, mode, FPS,
    save path) to show the user as it is. If the result says the video is not ready yet,
    the task keeps running and is saved in the background: call check_task with the
    task_id from the result (later, as the result suggests). Do NOT call generate_video
    again for the same video — that bills a second one. Use list_scenes for scene names
    and camera moves, and detect_subjects before omnihuman when a portrait shows several
    people.
    """
    lazy = lazy_app(ctx)
    with tool_errors("generate_video", lazy.settings.notice):
        from videogen.engine import request_from

        intake = request_from(pick_ask(ask), lazy.settings)
        app = await lazy.get()
        owner = caller()
        task: Task = await waiting(
            ctx,
            lambda on_progress: app.engine.generate(
                intake.request,
                wait_seconds=wait_budget(wait_seconds, app.settings),
                on_progress=on_progress,
                new=new,
                owner=owner,
            ),
        )
        return await answer(await app.engine.poster(task), notice=app.notice, notes=intake.notes)


def _publish_ask(fn: Callable[..., Any]) -> None:
    """Give ``fn`` (whose ``**ask`` takes them) ``VideoAsk``'s fields as flat parameters, after
    its first parameter: what the SDK reads to build the tool's input schema."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    parameters = [own[0], *ask_parameters(), *own[1:]]
    fn.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    hints = {p.name: p.annotation for p in parameters}
    fn.__annotations__ = {**hints, "return": signature.return_annotation}


_publish_ask(generate_video)


async def check_task(
    ctx: Context,
    task_id: Annotated[
        str,
        Field(
            description="The task_id from generate_video or list_tasks, e.g. vg_1a2b3c.",
            min_length=1,
            max_length=64,
        ),
    ],
    wait_seconds: Annotated[
        float | None,
        Field(
            description="How long to wait for it to finish before answering (default "
            "about 45, at most 50; 0 answers at once).",
            ge=0,
            le=MAX_WAIT_SECONDS,
        ),
    ] = None,
) -> Annotated[CallToolResult, VideoResult]:
    """Follow a video task: its status, and once saved the same block generate_video gives.

    Free (not billed). Works for tasks from earlier sessions and from the videogen CLI. If
    it is still running, the answer says when to check again; call check_task again then.
    """
    with tool_errors("check_task", lazy_app(ctx).settings.notice):
        app = await running_app(ctx)
        owner = caller()
        task: Task = await waiting(
            ctx,
            lambda on_progress: app.engine.check(
                task_id,
                wait_seconds=wait_budget(wait_seconds, app.settings),
                on_progress=on_progress,
                owner=owner,
            ),
        )
        return await answer(await app.engine.poster(task), notice=app.notice)


async def list_scenes(ctx: Context) -> Annotated[CallToolResult, Catalog]:
    """List the Jenius scenes (what photos each needs), the generation modes, and the
    camera moves and strengths for i2v_recamera_720p. Free; no provider is called."""
    cat = catalog()
    text = with_notice(lazy_app(ctx).settings.notice, catalog_markdown(cat))
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=cat.model_dump(mode="json"),
    )


async def detect_subjects(
    ctx: Context,
    image: Annotated[str, Field(description=f"The portrait: {URL_IMAGE_FORM}.", min_length=1)],
    provider: Annotated[
        ProviderName | None,
        Field(description="volcengine or tokenops (default: the configured one)."),
    ] = None,
) -> Annotated[CallToolResult, SubjectReport]:
    """Check a portrait before an omnihuman video: whether it contains a subject OmniHuman
    can animate, and the subject masks (largest first). When several people are shown,
    pass the chosen mask back as generate_video(mode="omnihuman", mask=...). Runs the
    provider's detection and recognition (small charges may apply), waits up to 30 s."""
    with tool_errors("detect_subjects", lazy_app(ctx).settings.notice):
        app = await running_app(ctx)
        report: SubjectReport = await waiting(
            ctx,
            lambda _: app.engine.detect_subjects(image, provider=provider, wait_seconds=30),
        )
        text = render_subjects(report)
        if report.mask_urls:
            text += '\n- Next: generate_video(mode="omnihuman", image=..., audio=..., mask=<one>)'
        return CallToolResult(
            content=[TextContent(type="text", text=with_notice(app.notice, text))],
            structured_content=report.model_dump(mode="json"),
        )


async def list_tasks(
    ctx: Context,
    limit: Annotated[int, Field(description="How many, newest first.", ge=1, le=100)] = 20,
) -> Annotated[CallToolResult, TaskList]:
    """List recent video tasks, newest first, with status and save path. Free. Use it to
    find a task_id for check_task (for example after a lost or cancelled call)."""
    with tool_errors("list_tasks", lazy_app(ctx).settings.notice):
        app = await running_app(ctx)
        tasks = app.engine.list_tasks(limit=limit, owner=caller())
        listing = TaskList(tasks=[result_of(t, notice=None) for t in tasks], notice=app.notice)
        return CallToolResult(
            content=[TextContent(type="text", text=tasks_markdown(listing))],
            structured_content=listing.model_dump(mode="json"),
        )


@dataclass(frozen=True)
class ToolEntry:
    """One tool as published: its function (name and description from it), title, hints."""

    fn: Callable[..., Awaitable[CallToolResult]]
    title: str
    annotations: ToolAnnotations
    player: bool = False  # the MCP Apps player shows its result


_READS_PROVIDER: Final = ToolAnnotations(read_only_hint=True, open_world_hint=True)
_READS_LOCAL: Final = ToolAnnotations(read_only_hint=True, open_world_hint=False)
TOOLS: Final = (
    ToolEntry(
        generate_video,
        "Generate a video",
        ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
        player=True,
    ),
    ToolEntry(check_task, "Check a video task", _READS_PROVIDER, player=True),
    ToolEntry(list_scenes, "List scenes, modes and camera moves", _READS_LOCAL),
    ToolEntry(detect_subjects, "Detect subjects in a portrait", _READS_PROVIDER),
    ToolEntry(list_tasks, "List recent video tasks", _READS_LOCAL),
)


def register_tools(server: MCPServer[LazyApp], icons: list[Icon]) -> None:
    """Register ``TOOLS``; a description is its function's docstring without indentation."""
    for entry in TOOLS:
        server.add_tool(
            entry.fn,
            title=entry.title,
            description=inspect.cleandoc(entry.fn.__doc__ or ""),
            annotations=entry.annotations,
            icons=icons,
            meta=player_tool_meta() if entry.player else None,
        )


# --- results -----------------------------------------------------------------------------------


async def answer(task: Task, *, notice: str | None, notes: Sequence[str] = ()) -> CallToolResult:
    """The markdown block, the poster when there is one, a link to the saved video."""
    result = result_of(task, notice=notice, notes=notes)
    content: list[ContentBlock] = [TextContent(type="text", text=render_markdown(result))]
    from videogen.engine import read_poster

    poster = await read_poster(task, POSTER_MAX_BYTES)
    if poster is not None:
        data = base64.b64encode(poster).decode()
        content.append(ImageContent(type="image", data=data, mime_type="image/jpeg"))
    if result.status == "completed" and result.local_path:
        content.append(
            ResourceLink(
                type="resource_link",
                name=Path(result.local_path).name,
                uri=f"videogen://videos/{result.task_id}",
                mime_type="video/mp4",
                size=result.size_bytes,
                description=f"The saved video ({result.local_path})",
            )
        )
    return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))


# --- the resources -----------------------------------------------------------------------------


async def video(task_id: str, ctx: Context) -> bytes:
    """The saved MP4 of a completed task, within ``VIDEO_RESOURCE_MAX_BYTES``: the file on this
    machine, else (saved by another replica, which does not share this disk) the object in
    the bucket."""
    task = await _find_task(ctx, task_id)
    if task.status != "completed" or not task.local_path:
        raise ResourceNotFoundError(f"Task {task_id} has no saved video yet ({task.status}).")
    try:
        data = await (await running_app(ctx)).engine.saved_video(task, VIDEO_RESOURCE_MAX_BYTES)
    except VideogenError as error:  # the object store's
        raise ResourceError(error.message) from error
    except OSError as error:
        raise ResourceError(
            f"The video of {task_id} is not served: {task.local_path} is no longer a plain "
            "file in its folder (it was replaced, e.g. by a link)."
        ) from error
    if data is None:
        raise ResourceNotFoundError(f"The video of {task_id} is gone from disk.")
    if isinstance(data, int):
        raise ResourceError(
            f"The video of {task_id} is {data / 1048576:.1f} MB, more than this resource "
            f"serves ({VIDEO_RESOURCE_MAX_BYTES // 1048576} MB): open the video_link or the "
            f"local_path ({task.local_path}) given in the task's result instead."
        )
    return data


async def task_json(task_id: str, ctx: Context) -> str:
    """One task as JSON (without its owner)."""
    task = await _find_task(ctx, task_id)
    return task.model_dump_json(indent=2, exclude={"owner"})


async def usage_json(ctx: Context, days: int = 30) -> str:
    """What was billed over the last ``days`` days; over HTTP, the calling token's alone."""
    from videogen.app import read_usage

    if not 1 <= days <= 3660:
        raise ResourceError("days must be between 1 and 3660.")
    app = await running_app(ctx)
    report = read_usage(app.settings, days=days, owner=caller(), ledger=app.ledger)
    return report.model_dump_json(indent=2)


def catalog_json() -> str:
    """The catalogue, as ``list_scenes`` gives it."""
    return json.dumps(catalog().model_dump(mode="json"), indent=2, ensure_ascii=False)


async def _find_task(ctx: Context, task_id: str) -> Task:
    try:
        app = await running_app(ctx)
        return app.engine.get(task_id, owner=caller())
    except Exception as raised:
        error = leaf_error(raised)
        if isinstance(error, TaskNotFound):
            raise ResourceNotFoundError(error.message) from raised
        if isinstance(error, VideogenError):
            raise ResourceError(error.message) from raised
        raise


@dataclass(frozen=True)
class ResourceEntry:
    """One resource (or template) as published."""

    fn: Callable[..., Any]
    uri: str
    name: str
    title: str
    mime_type: str
    description: str | None = None


RESOURCES: Final = (
    ResourceEntry(
        video,
        "videogen://videos/{task_id}",
        "video",
        "A saved video",
        "video/mp4",
        f"The saved MP4 of a completed task, for files up to "
        f"{VIDEO_RESOURCE_MAX_BYTES // (1024 * 1024)} MB (about "
        f"{VIDEO_RESOURCE_MAX_BYTES * 4 // 3 // 1_000_000} MB as base64; some hosts refuse "
        "messages over about 1 MB). For a larger file, or such a host, open the local_path "
        "given in the task's result instead.",
    ),
    ResourceEntry(
        task_json,
        "videogen://tasks/{task_id}",
        "task",
        "A video task",
        "application/json",
        "One task as JSON: request, status history, paths, probed media facts.",
    ),
    ResourceEntry(
        usage_json,
        "videogen://usage{?days}",
        "usage",
        "What was billed",
        "application/json",
        "Videos, seconds and spend billed by UTC day, provider, mode and owner over the last "
        "`days` days (default 30), and the spending limits in force. Over HTTP, the calling "
        "token's tasks alone.",
    ),
    ResourceEntry(
        catalog_json,
        "videogen://catalog",
        "catalog",
        "Modes, scenes and camera moves",
        "application/json",
    ),
)


def register_resources(server: MCPServer[LazyApp]) -> None:
    for entry in RESOURCES:
        server.resource(
            entry.uri,
            name=entry.name,
            title=entry.title,
            mime_type=entry.mime_type,
            description=entry.description,
        )(entry.fn)
