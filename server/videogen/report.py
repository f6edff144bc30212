"""What a task looks like to the person and the model: the structured result and its markdown.

``VideoResult`` is flat and JSON-friendly: it is the MCP tool's published output schema and the
CLI's ``--json`` output. ``render_markdown`` writes seed 002's block exactly for a saved video
(the facts come from probing the file), then a few extra lines; for a task that is not done it
writes a short status block that says what to call next.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, Field

from videogen.catalog import CAMERA_MOVES, CAMERA_STRENGTHS, JIMENG, SCENES, ProviderName
from videogen.errors import (
    EXIT_CONFIG,
    EXIT_CREDENTIALS,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REJECTED,
    EXIT_USAGE,
    VideogenError,
)
from videogen.models import Task, TaskStatus, Usage
from videogen.spending import UsageReport

Interface = Literal["mcp", "cli"]
M = TypeVar("M", bound=BaseModel)

#: Characters that must not reach a terminal or a markdown line as they are: C0 and C1 controls,
#: DEL, the line/paragraph separators and the bidirectional overrides (which reorder what is shown).
_UNPRINTABLE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_AS_SPACE: Final = frozenset("\t\n\r\u2028\u2029")

PENDING_STATUSES: frozenset[TaskStatus] = frozenset({"waiting", "submitting", "queued", "running"})
#: Error kinds of a ``failed`` task the provider never accepted (refused, unreachable, cancelled
#: between retries): nothing was billed.
NEVER_ACCEPTED: frozenset[str] = frozenset({"rate_limited", "unavailable", "cancelled", "storage"})


class VideoResult(BaseModel):
    """One task as an interface reports it."""

    task_id: str = Field(description="Pass this back to check_task to follow the task.")
    status: TaskStatus = Field(
        description="waiting (its turn: the provider takes so many at a time) | submitting | "
        "queued | running | ready (video made, not saved yet) | completed (saved) | failed | "
        "expired | unknown (submit outcome unknown)"
    )
    done: bool = Field(description="True when nothing more will happen without a new request.")
    provider: ProviderName = Field(description="The provider API that makes the video.")
    mode: str = Field(description="Generation mode, e.g. t2v_720p, omnihuman, scene:celebrity.")
    prompt: str = Field(description="The prompt as given.")
    video_url: str | None = Field(None, description="The provider's link to the video.")
    video_url_expires_at: float | None = Field(
        None, description="Unix time after which video_url stops working."
    )
    local_path: str | None = Field(None, description="Absolute path of the saved MP4.")
    poster_path: str | None = Field(None, description="Absolute path of a small JPEG frame.")
    object_key: str | None = Field(
        None, description="The saved video's key in the object store (VIDEOGEN_STORAGE_URL)."
    )
    video_link: str | None = Field(
        None,
        description="A presigned download link to the stored video; check the task again for "
        "a fresh one after video_link_expires_at.",
    )
    video_link_expires_at: float | None = Field(
        None, description="Unix time after which video_link stops working."
    )
    duration: float | None = Field(None, description="Seconds, probed from the saved file.")
    fps: float | None = Field(None, description="Frames per second, probed from the saved file.")
    width: int | None = Field(None, description="Pixels, probed from the saved file.")
    height: int | None = Field(None, description="Pixels, probed from the saved file.")
    size_bytes: int | None = Field(None, description="Size of the saved file in bytes.")
    requested_duration: int = Field(description="Seconds asked for.")
    requested_fps: int = Field(description="Frames per second asked for.")
    progress: float | None = Field(None, description="0..1 when the provider reports it.")
    place_in_line: int | None = Field(
        None, description="For a waiting task: 1 when it goes next, 2 after one more ..."
    )
    elapsed: float = Field(description="Seconds since the task was created.")
    message: str = Field(description="One sentence on where the task stands.")
    next_step: str | None = Field(None, description="What to do next, if anything.")
    error_kind: str | None = Field(None, description="Kind of the recorded error, if any.")
    error: str | None = Field(None, description="The recorded error, if any.")
    request_ids: list[str] = Field(default_factory=list, description="Provider request ids.")
    sandbox: bool = Field(description="True when made by the offline sandbox, not a provider.")
    notice: str | None = Field(None, description="Shown first, e.g. the sandbox notice.")
    notes: list[str] = Field(default_factory=list, description="Extra remarks for the user.")
    usage: str | None = Field(
        None,
        description="What was billed today (UTC) when this task was recorded, it included, and "
        "each spending limit's use; null when no VIDEOGEN_LIMIT_* or VIDEOGEN_PRICES is set.",
    )
    videos_today: int | None = Field(None, description="Videos billed today, this one included.")
    seconds_today: int | None = Field(
        None, description="Requested provider clip seconds billed today, this one included."
    )
    spend_today: float | None = Field(None, description="Spent today, with VIDEOGEN_PRICES.")


def result_of(
    task: Task,
    *,
    notice: str | None,
    notes: Sequence[str] = (),
    interface: Interface = "mcp",
    now: float | None = None,
) -> VideoResult:
    """The facts of ``task`` for an interface; ``notes`` are added after the task's own."""
    now = time.time() if now is None else now
    media = task.media
    return VideoResult(
        task_id=task.id,
        status=task.status,
        done=task.terminal,
        provider=task.provider,
        mode=task.request.mode_label,
        prompt=task.request.prompt,
        video_url=task.video_url,
        video_url_expires_at=task.video_url_expires_at,
        local_path=task.local_path,
        poster_path=task.poster_path,
        object_key=task.object_key,
        video_link=task.video_link,
        video_link_expires_at=task.video_link_expires_at,
        duration=media.duration if media else None,
        fps=media.fps if media else None,
        width=media.width if media else None,
        height=media.height if media else None,
        size_bytes=media.size_bytes if media else None,
        requested_duration=task.request.duration,
        requested_fps=task.request.fps,
        progress=task.progress,
        place_in_line=task.queue_place.place if task.queue_place else None,
        elapsed=round(_elapsed(task, now), 1),
        message=describe(task),
        next_step=_next_step(task, interface, now),
        error_kind=task.error.kind if task.error else None,
        error=task.error.message if task.error else None,
        request_ids=list(task.request_ids),
        sandbox=task.sandbox,
        notice=notice,
        notes=[*task.notes, *notes],
        **_usage(task.usage),
    )


def _usage(usage: Usage | None) -> dict[str, object]:
    if usage is None:
        return {}
    return {
        "usage": usage.summary,
        "videos_today": usage.videos_today,
        "seconds_today": usage.seconds_today,
        "spend_today": usage.spend_today,
    }


class SubjectReport(BaseModel):
    """Who is in a portrait: OmniHuman subject detection (+ recognition when it finished)."""

    provider: ProviderName = Field(description="The provider asked.")
    contains_subject: bool = Field(
        description="True when the image shows a person or person-like subject."
    )
    mask_urls: list[str] = Field(
        default_factory=list,
        description="One mask per subject, largest first; pass one as mask to choose who "
        "speaks. Valid about one hour.",
    )
    recognition: Literal["succeeded", "failed", "pending", "skipped"] = Field(
        "skipped", description="How the (asynchronous) recognition check ended."
    )
    recognised: bool | None = Field(None, description="Recognition's verdict, when it finished.")
    request_ids: list[str] = Field(default_factory=list, description="Provider request ids.")
    message: str | None = Field(None, description="Anything the user should know.")


def printable(text: str) -> str:
    """``text`` safe to show a person: no escape sequence reaches a terminal, no line break
    splits a markdown line. Tabs and line breaks become a space; every other control character
    is shown as an escape (``\\x1b``). Every human rendering of caller or provider text uses it.
    """
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _AS_SPACE:
        return " "
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable_model(model: M) -> M:
    """A copy of ``model`` whose text fields (and lists of text) went through ``printable``."""
    changes: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, str):
            changes[name] = printable(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            changes[name] = [printable(v) for v in value]
    return model.model_copy(update=changes)


def render_subjects(report: SubjectReport) -> str:
    """A short markdown summary of a subject report."""
    report = printable_model(report)
    verdict = "contains a subject" if report.contains_subject else "contains no subject"
    lines = [f"**Subject detection:** the image {verdict} ({report.provider})."]
    lines += [f"- Mask {n} (largest first): {url}" for n, url in enumerate(report.mask_urls, 1)]
    lines.append(f"- Recognition: {report.recognition}")
    if report.message:
        lines.append(f"- Note: {report.message}")
    return "\n".join(lines)


def render_markdown(result: VideoResult) -> str:
    """Seed 002's block for a saved video; a short status block otherwise."""
    result = printable_model(result)
    lines: list[str] = [result.notice] if result.notice else []
    if result.status == "completed" and result.local_path:
        lines += _video_block(result)
    else:
        lines += _status_block(result)
    lines += [f"- Note: {note}" for note in result.notes]
    if result.usage is not None:
        lines.append(f"- Usage: {result.usage}")
    return "\n".join(lines)


def _video_block(r: VideoResult) -> list[str]:
    lines = [
        "**Generated Video:**",
        f"[Download Video]({_download_link(r)})",
        "**Generation Info:**",
        f"- Prompt: {r.prompt}",
        f"- Duration: {_number(r.duration)} seconds",
        f"- Mode: {r.mode}",
        f"- FPS: {_number(r.fps)}",
        f"- Save Path: {r.local_path}",
        f"- Task ID: {r.task_id}",
        f"- Provider: {r.provider}",
    ]
    if r.width and r.height:
        lines.append(f"- Resolution: {r.width}x{r.height}")
    if r.size_bytes is not None:
        lines.append(f"- Size: {_size(r.size_bytes)}")
    if r.poster_path:
        lines.append(f"- Poster: {r.poster_path}")
    if r.object_key:
        lines.append(f"- Object Key: {r.object_key}")
    if r.error:  # saved, but not as asked (a conform that failed)
        lines.append(f"- Warning: {r.error}")
    if r.sandbox:
        lines.append(f"- Preview: {SANDBOX_LINK}")
    return lines


#: Why a sandbox result links the saved file: the offline sandbox's own server (the one that
#: served the download) stops with the command or the MCP server that started it.
SANDBOX_LINK: Final = (
    "a local preview made by the offline sandbox; the link opens the saved file on this computer"
)


def _download_link(r: VideoResult) -> str:
    """The stored video's presigned link; else the provider's link; for a sandbox video (whose
    server does not outlive the run that made it) or a video with no link, the saved file's
    ``file://`` URI."""
    if r.video_link:
        return r.video_link
    if r.video_url and not r.sandbox:
        return r.video_url
    return _file_url(r.local_path or "")


def _status_block(r: VideoResult) -> list[str]:
    lines = [f"**{_headline(r.status)}**"]
    if r.video_url:
        lines.append(f"[Download Video]({r.video_url})")
    status = r.status if r.progress is None else f"{r.status} ({r.progress:.0%})"
    lines += [
        f"- Task ID: {r.task_id}",
        f"- Status: {status}",
        f"- Provider: {r.provider}",
        f"- Mode: {r.mode}",
        f"- Prompt: {r.prompt}",
        f"- Elapsed: {r.elapsed:.0f} s",
    ]
    if r.error:
        lines.append(f"- Error: {r.error}")
    elif r.message:
        lines.append(f"- {r.message}")
    if r.next_step:
        lines.append(f"- Next: {r.next_step}")
    return lines


def _headline(status: TaskStatus) -> str:
    match status:
        case "waiting":
            return "Video request waiting its turn"
        case "submitting" | "queued" | "running":
            return "Video not ready yet"
        case "ready":
            return "Video made but not saved yet"
        case "completed":
            return "Video saved"
        case "failed":
            return "Video generation failed"
        case "expired":
            return "Video task expired"
        case "unknown":
            return "Video task outcome unknown"


def describe(task: Task) -> str:
    """One sentence on where the task stands."""
    match task.status:
        case "waiting":
            return waiting_words(task)
        case "submitting":
            return "The request is being sent to the provider."
        case "queued":
            return "The provider has the task and has not started it yet."
        case "running":
            return "The provider is generating the video."
        case "ready":
            if task.error:
                return "The video is made, but saving it failed; the link still works for now."
            return "The video is made and is being saved."
        case "completed":
            return "The video is saved."
        case "failed" | "expired" | "unknown":
            return task.error.message if task.error else f"The task is {task.status}."


def _next_step(task: Task, interface: Interface, now: float) -> str | None:
    check = (
        f"videogen check {task.id}"
        if interface == "cli"
        else f"call check_task with task_id={task.id}"
    )
    match task.status:
        case "waiting" | "submitting" | "queued" | "running":
            return f"{check} in about {_eta(task, now):.0f} s"
        case "ready":
            fix = " after fixing the error above" if task.error else ""
            return f"{check}{fix} to save the video (the link expires after about an hour)"
        case "completed":
            return None
        case "failed":
            kind = task.error.kind if task.error else "failed"
            if kind in ("rejected", "input"):
                return "change the prompt or inputs named in the error, then submit again"
            if kind == "credentials" or kind == "not_enabled":
                return "fix the credentials or account named in the error, then submit again"
            if kind in NEVER_ACCEPTED:
                return "submit the request again later (nothing was billed for this one)"
            return "submit the request again (a new submit is billed again)"
        case "expired":
            return "submit the request again: the provider no longer has this task"
        case "unknown":
            again = "--new" if interface == "cli" else "new=true"
            return (
                "check the provider console or bill for this request; submit again (with "
                f"{again}) only if it is not there"
            )


def waiting_words(task: Task) -> str:
    """A waiting task's place: "Waiting: 3rd in line for volcengine; 2 at a time." """
    place = task.queue_place
    if place is None:
        return f"Waiting its turn for {task.provider}: nothing is sent or billed until then."
    at_a_time = f"; {place.limit} at a time" if place.limit is not None else ""
    return f"Waiting: {ordinal(place.place)} in line for {task.provider}{at_a_time}."


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th ... 11th, 12th, 13th ... 21st."""
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{'th' if 10 <= number % 100 <= 20 else suffix}"


def _eta(task: Task, now: float) -> float:
    """A guess at when checking again is worthwhile, from progress when the provider gives it."""
    elapsed = max(_elapsed(task, now), 1.0)
    if task.progress and 0 < task.progress < 1:
        remaining = elapsed * (1 - task.progress) / task.progress
        return min(max(remaining, 5.0), 60.0)
    return 30.0


def _elapsed(task: Task, now: float) -> float:
    end = task.updated_at if task.terminal else now
    return max(0.0, end - task.created_at)


def _number(value: float | None) -> str:
    return "?" if value is None else f"{round(value, 2):g}"


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _file_url(path: str) -> str:
    """``path`` as a ``file://`` URI, percent-encoded (spaces and the like)."""
    local = Path(path)
    return local.as_uri() if local.is_absolute() else "file://" + quote(path)


# --- the catalogue, task lists, errors: what both interfaces show ------------------------------


class SceneInfo(BaseModel):
    name: str = Field(description="Pass as scene= (with mode=scene).")
    title: str
    summary: str
    min_images: int = Field(description="Fewest photos the scene needs.")
    max_images: int = Field(description="Most photos the scene takes.")
    photo_advice: str


class ModeInfo(BaseModel):
    name: str
    summary: str
    images: str = Field(description="How many images the mode takes.")


class Catalog(BaseModel):
    """What can be asked for: modes, scenes and camera moves."""

    modes: list[ModeInfo]
    scenes: list[SceneInfo]
    camera_moves: list[str] = Field(description="camera= values for i2v_recamera_720p.")
    camera_strengths: list[str] = Field(description="camera_strength= values.")


class TaskList(BaseModel):
    tasks: list[VideoResult]
    notice: str | None = None


def catalog() -> Catalog:
    """The catalogue as served by ``list_scenes`` and ``videogen://catalog``."""
    modes = [
        ModeInfo(name=s.name, summary=s.summary, images=_count(s.min_images, s.max_images))
        for s in JIMENG.values()
    ]
    modes.append(
        ModeInfo(
            name="omnihuman",
            images="1 portrait + audio",
            summary="A portrait speaks or sings an audio track (OmniHuman 1.5).",
        )
    )
    modes.append(
        ModeInfo(
            name="scene",
            images="see scenes",
            summary="A Jenius scene effect built from personal photos.",
        )
    )
    scenes = [
        SceneInfo(
            name=s.name,
            title=s.title,
            summary=s.summary,
            min_images=s.min_images,
            max_images=s.max_images,
            photo_advice=s.photo_advice,
        )
        for s in SCENES.values()
    ]
    return Catalog(
        modes=modes,
        scenes=scenes,
        camera_moves=list(CAMERA_MOVES),
        camera_strengths=list(CAMERA_STRENGTHS),
    )


def _count(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def catalog_markdown(cat: Catalog) -> str:
    lines = ["**Scenes** (mode=scene, provider jenius):"]
    lines += [
        f"- `{s.name}` — {s.title}: {s.summary} Needs {_count(s.min_images, s.max_images)} "
        f"photo(s). {s.photo_advice}"
        for s in cat.scenes
    ]
    lines.append("**Modes:**")
    lines += [f"- `{m.name}` ({m.images} image(s)): {m.summary}" for m in cat.modes]
    lines.append(
        "**Camera moves** (mode i2v_recamera_720p, camera=): "
        + ", ".join(f"`{c}`" for c in cat.camera_moves)
    )
    lines.append("**Camera strengths** (camera_strength=): " + ", ".join(cat.camera_strengths))
    return "\n".join(lines)


def with_notice(notice: str | None, text: str) -> str:
    return f"{notice}\n{text}" if notice else text


def tasks_markdown(listing: TaskList) -> str:
    lines = [listing.notice] if listing.notice else []
    if not listing.tasks:
        return "\n".join([*lines, "No video tasks yet."])
    lines.append("**Recent video tasks** (newest first):")
    for r in map(printable_model, listing.tasks):
        where = r.local_path or r.video_url or r.next_step or r.message
        lines.append(f"- `{r.task_id}` — {r.status} — {r.mode} — {r.prompt[:60]!r} — {where}")
    return "\n".join(lines)


def leaf_error(error: BaseException) -> BaseException:
    """The error that matters inside task-group wrappers: the first ``VideogenError``, else the
    only one, else the group itself."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [leaf_error(e) for e in error.exceptions]
    ours = [e for e in leaves if isinstance(e, VideogenError)]
    if ours:
        return ours[0]
    return leaves[0] if len(leaves) == 1 else error


#: The exit codes as ``videogen --help`` lists them (``exit_code_for`` gives a task's).
EXIT_CODES_HELP: Final = f"""\
exit codes:
  {EXIT_OK}  done: the video is saved as asked (or the command did what it was asked)
  {EXIT_ERROR}  other error: provider unavailable, download or conform failed, unexpected error
  {EXIT_USAGE}  usage: bad arguments, or inputs refused before anything was billed; unknown task
  {EXIT_CONFIG}  configuration: a bad environment variable, or an unusable output path
  {EXIT_CREDENTIALS}  credentials: keys missing or rejected, or the capability is not enabled
  {EXIT_REJECTED}  rejected: the provider's content review refused the input or the output
  {EXIT_FAILED}  failed: the task failed or expired, or its submit outcome is unknown
  {EXIT_PENDING}  still running: the wait ended first; run `videogen check TASK_ID` later
"""


def exit_code_for(task: Task) -> int:
    """The exit code a task's state means (the CLI's exit-code table)."""
    if task.status == "completed" and task.error is None:
        return EXIT_OK
    if task.status in PENDING_STATUSES or (task.status == "ready" and task.error is None):
        return EXIT_PENDING
    kind = task.error.kind if task.error else "failed"
    if kind == "output":  # the output folder or file name cannot be used (OutputError)
        return EXIT_CONFIG
    if task.status in ("ready", "completed"):  # not saved yet, or not made as asked
        return EXIT_ERROR
    if kind == "rejected":
        return EXIT_REJECTED
    if kind in ("credentials", "not_enabled"):
        return EXIT_CREDENTIALS
    return EXIT_FAILED


def task_line(task: Task) -> str:
    """One line of ``videogen tasks``: id, status, date, provider, mode, prompt, where."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(task.created_at))
    prompt = task.request.prompt if len(task.request.prompt) <= 40 else task.request.prompt[:39]
    prompt = prompt + ("…" if prompt != task.request.prompt else "")
    where = task.local_path or (task.error.message if task.error else "")
    if task.status == "waiting":
        where = waiting_words(task)
    provider = f"{task.provider} (sandbox)" if task.sandbox else task.provider
    return printable(
        f"{task.id}  {task.status:<9}  {when}  {provider:<20}  "
        f'{task.request.mode_label:<20}  "{prompt}"  {where}'
    ).rstrip()


def task_lines(tasks: Sequence[Task], skipped: Sequence[str] = ()) -> str:
    """``videogen tasks``: one ``task_line`` each, and the rows this version cannot read."""
    lines = [task_line(task) for task in tasks]
    if not tasks and not skipped:
        lines.append("No tasks yet. Start one with `videogen generate PROMPT`.")
    if skipped:
        lines.append(f"{len(skipped)} task(s) recorded by a newer videogen cannot be read by this "
                     f"one and are not listed: {', '.join(skipped)}.")  # fmt: skip
    return "\n".join(lines)


def scenes_markdown() -> str:
    """``videogen scenes``: the Jenius scenes and the camera moves, in command-line words."""
    lines = ["**Jenius scenes** (`videogen generate --scene NAME --images ...`):"]
    for s in SCENES.values():
        count = _count(s.min_images, s.max_images)
        lines.append(f"- {s.name}: {s.title}. {s.summary} Images: {count}. {s.photo_advice}")
    lines.append("")
    lines.append("**Camera moves** (`--mode i2v_recamera_720p --camera MOVE --camera-strength S`):")
    lines.append("- " + ", ".join(CAMERA_MOVES))
    lines.append("- strengths: " + ", ".join(CAMERA_STRENGTHS))
    return "\n".join(lines)


def scenes_data() -> dict[str, object]:
    """``videogen scenes --json``: the Jenius scenes and the camera moves."""
    return {
        "scenes": [dataclasses.asdict(s) for s in SCENES.values()],
        "camera_moves": list(CAMERA_MOVES),
        "camera_strengths": list(CAMERA_STRENGTHS),
    }


def render_usage(report: UsageReport) -> str:
    """The report as a markdown table."""
    where = " (sandbox: not billed)" if report.sandbox else ""
    total = f"{report.videos} videos, {report.seconds} s"
    if report.spend is not None:
        total += f", {report.spend:g} spent"
    lines = [f"**Usage, last {report.days} day(s), UTC{where}:** {total}"]
    if report.rows:
        lines += ["", "| Day | Provider | Mode | Owner | Videos | Seconds | Spend |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {r.day} | {r.provider} | {r.mode} | {r.owner or 'local'} | {r.videos} | "
            f"{r.seconds} | {'' if r.spend is None else f'{r.spend:g}'} |"
            for r in report.rows
        ]
    if report.limits:
        limits = ", ".join(f"{k}={v:g}" for k, v in report.limits.items())
        lines += ["", f"Limits: {limits}"]
    else:
        lines += ["", "No spending limits are set (VIDEOGEN_LIMIT_*)."]
    return "\n".join(lines)
