"""The result block: seed 002's lines for a saved video, a status block otherwise."""

from __future__ import annotations

from videogen.config import SANDBOX_NOTICE
from videogen.models import GenerationRequest, MediaInfo, Task, TaskError, TaskStatus
from videogen.report import VideoResult, render_markdown, result_of

PROMPT = "A golden retriever running through a field of sunflowers, warm afternoon sunlight"


def make_task(status: TaskStatus, **fields: object) -> Task:
    request = GenerationRequest(provider="volcengine", mode="t2v_720p", prompt=PROMPT)
    return Task(
        id="vg_0123456789ab",
        request=request,
        status=status,
        created_at=1000.0,
        updated_at=1060.0,
        **fields,  # type: ignore[arg-type]
    )


def completed() -> Task:
    media = MediaInfo(
        duration=5.041667, fps=24.0, width=1280, height=720, codec="h264", size_bytes=1_300_000
    )
    return make_task(
        "completed",
        video_url="https://example.com/video.mp4",
        local_path="/videos/dog_vg_0123456789ab.mp4",
        media=media,
    )


def test_a_saved_video_renders_seed_002s_block_exactly_then_extra_lines() -> None:
    text = render_markdown(result_of(completed(), notice=None))
    assert text.splitlines()[:8] == [
        "**Generated Video:**",
        "[Download Video](https://example.com/video.mp4)",
        "**Generation Info:**",
        f"- Prompt: {PROMPT}",
        "- Duration: 5.04 seconds",
        "- Mode: t2v_720p",
        "- FPS: 24",
        "- Save Path: /videos/dog_vg_0123456789ab.mp4",
    ]
    extra = text.splitlines()[8:]
    assert "- Task ID: vg_0123456789ab" in extra
    assert "- Provider: volcengine" in extra
    assert "- Resolution: 1280x720" in extra
    assert "- Size: 1.2 MB" in extra


def test_the_sandbox_notice_is_the_first_line() -> None:
    text = render_markdown(result_of(completed(), notice=SANDBOX_NOTICE))
    assert text.splitlines()[0] == SANDBOX_NOTICE
    assert text.splitlines()[1] == "**Generated Video:**"


def test_notes_follow_the_block() -> None:
    task = completed()
    task.notes = ["an identical request returned the first task"]
    text = render_markdown(result_of(task, notice=None, notes=["mode t2v_720p chosen"]))
    assert text.splitlines()[-2:] == [
        "- Note: an identical request returned the first task",
        "- Note: mode t2v_720p chosen",
    ]


def test_a_pending_task_says_when_to_call_check_task() -> None:
    result = result_of(make_task("running", progress=0.5), notice=None, now=1030.0)
    text = render_markdown(result)
    assert "**Video not ready yet**" in text
    assert "- Status: running (50%)" in text
    assert "- Elapsed: 30 s" in text
    assert "call check_task with task_id=vg_0123456789ab in about 30 s" in text
    assert result.done is False


def test_the_cli_is_told_the_command_instead() -> None:
    result = result_of(make_task("queued"), notice=None, interface="cli", now=1010.0)
    assert result.next_step is not None
    assert result.next_step.startswith("videogen check vg_0123456789ab")


def test_a_failed_task_shows_the_error_and_what_to_do() -> None:
    error = TaskError(kind="rejected", message="The prompt was rejected by review.")
    text = render_markdown(result_of(make_task("failed", error=error), notice=None))
    assert "**Video generation failed**" in text
    assert "- Error: The prompt was rejected by review." in text
    assert "change the prompt" in text


def test_an_unknown_task_tells_how_to_decide_about_billing() -> None:
    error = TaskError(kind="uncertain", message="It may or may not have been billed.")
    result = result_of(make_task("unknown", error=error), notice=None)
    assert result.done is True
    assert result.next_step is not None and "new=true" in result.next_step


def test_a_ready_task_whose_download_failed_keeps_its_link() -> None:
    error = TaskError(kind="output", message="The output directory is not writable.")
    task = make_task("ready", video_url="https://example.com/v.mp4", error=error)
    text = render_markdown(result_of(task, notice=None))
    assert "[Download Video](https://example.com/v.mp4)" in text
    assert "not writable" in text
    assert "after fixing the error" in text


def test_the_structured_result_is_flat_and_described() -> None:
    schema = VideoResult.model_json_schema()
    assert "$defs" not in schema
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
        kinds = [p.get("type") for p in prop.get("anyOf", [prop])]
        assert "object" not in kinds, name


def test_a_submit_that_was_never_accepted_is_not_said_to_bill_again() -> None:
    for kind in ("rate_limited", "unavailable", "cancelled"):
        error = TaskError(kind=kind, message="Refused: nothing was billed.")
        result = result_of(make_task("failed", error=error), notice=None)
        assert result.next_step is not None and "nothing was billed" in result.next_step
        assert "billed again" not in result.next_step


def test_control_characters_in_caller_text_are_shown_as_visible_escapes() -> None:
    """No escape sequence or line break from a prompt or an error reaches the rendered block."""
    task = make_task(
        "failed",
        error=TaskError(kind="failed", message="provider said \x1b[2J\u202eevil"),
    )
    task.request = task.request.model_copy(update={"prompt": "cat\x1b[31m\tred\r\nhat\x7f"})
    text = render_markdown(result_of(task, notice=None))
    assert "- Prompt: cat\\x1b[31m red  hat\\x7f" in text.splitlines()
    assert "- Error: provider said \\x1b[2J\\u202eevil" in text.splitlines()
    assert not any(ch in text for ch in "\x1b\t\r\x7f\u202e")


def test_an_unknown_outcome_tells_each_interface_its_own_way_to_submit_again() -> None:
    task = make_task("unknown", error=TaskError(kind="uncertain", message="not known"))
    cli_step = result_of(task, notice=None, interface="cli").next_step or ""
    mcp_step = result_of(task, notice=None, interface="mcp").next_step or ""
    assert "--new" in cli_step and "new=true" not in cli_step
    assert "new=true" in mcp_step and "--new" not in mcp_step


def test_a_sandbox_video_links_the_saved_file_and_says_it_is_a_local_preview() -> None:
    """The sandbox's own server stops with the run that started it: its link would be dead."""
    task = completed()
    task.sandbox = True
    task.video_url = "http://127.0.0.1:40123/files/0123.mp4"
    task.local_path = "/videos/my boat_vg_0123456789ab.mp4"
    text = render_markdown(result_of(task, notice=SANDBOX_NOTICE, interface="cli"))
    assert "[Download Video](file:///videos/my%20boat_vg_0123456789ab.mp4)" in text.splitlines()
    assert "127.0.0.1:40123" not in text
    assert any(line.startswith("- Preview: a local preview") for line in text.splitlines())
