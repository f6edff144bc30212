"""build_request infers the mode, checks mode/input/provider agreement and names every fix."""

from __future__ import annotations

from typing import Any

import pytest

from videogen.errors import InputError
from videogen.intake import build_request, choose_provider

URL1 = "https://example.com/a.png"
URL2 = "https://example.com/b.png"
AUDIO = "https://example.com/speech.mp3"


def refused(**kwargs: Any) -> str:
    kwargs.setdefault("provider", "volcengine")
    with pytest.raises(InputError) as caught:
        build_request(**kwargs)
    return str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "mode", "why"),
    [
        ({"prompt": "a boat", "image": URL1}, "i2v_first_720p", "one image"),
        ({"prompt": "a boat", "image": URL1, "tail_image": URL2}, "i2v_first_tail_720p", "two"),
        ({"prompt": "a boat", "images": [URL1, URL2]}, "i2v_first_tail_720p", "two"),
        ({"image": URL1, "audio": AUDIO}, "omnihuman", "audio"),
        (
            {"prompt": "x", "image": URL1, "camera": "robo_arm", "camera_strength": "weak"},
            "i2v_recamera_720p",
            "camera",
        ),
    ],
)
def test_the_mode_is_inferred_from_the_inputs_and_the_choice_is_noted(
    kwargs: dict[str, Any], mode: str, why: str
) -> None:
    intake = build_request(provider="volcengine", **kwargs)
    assert intake.request.mode == mode
    assert any(mode in note and why in note for note in intake.notes)


def test_a_scene_infers_scene_mode_on_jenius() -> None:
    intake = build_request(provider="jenius", scene="celebrity", image=URL1)
    assert intake.request.mode == "scene"
    assert intake.request.scene == "celebrity"
    assert intake.notes and "scene" in intake.notes[0]


def test_plain_text_gets_the_default_mode_without_a_note() -> None:
    intake = build_request(provider="volcengine", prompt="a boat")
    assert (intake.request.mode, intake.notes) == ("t2v_720p", ())


def test_an_explicit_mode_is_not_noted() -> None:
    intake = build_request(provider="tokenops", mode="t2v_1080p", prompt="a boat")
    assert intake.notes == ()
    assert intake.request.aspect_ratio == "16:9"


def test_text_to_video_keeps_the_chosen_aspect_ratio() -> None:
    request = build_request(provider="volcengine", prompt="a", aspect_ratio="9:16").request
    assert request.aspect_ratio == "9:16"


def test_image_modes_carry_no_aspect_ratio() -> None:
    request = build_request(provider="volcengine", prompt="a", image=URL1).request
    assert request.aspect_ratio is None


def test_ti2v_pro_with_an_image_needs_no_prompt() -> None:
    request = build_request(provider="volcengine", mode="ti2v_pro", image=URL1).request
    assert request.prompt == "" and request.images == (URL1,)


def test_ti2v_pro_without_an_image_counts_as_text_to_video() -> None:
    request = build_request(provider="volcengine", mode="ti2v_pro", prompt="a").request
    assert request.aspect_ratio == "16:9"


def test_omnihuman_keeps_its_resolution_fast_mode_and_masks() -> None:
    request = build_request(
        provider="tokenops", image=URL1, audio=AUDIO, mask=URL2, resolution=720, fast_mode=True
    ).request
    assert (request.mode, request.resolution, request.fast_mode) == ("omnihuman", 720, True)
    assert request.masks == (URL2,)


def test_empty_strings_count_as_not_given() -> None:
    request = build_request(provider="volcengine", prompt="a", image="", audio="", scene="").request
    assert request.mode == "t2v_720p" and request.images == ()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mode": "t2v_720p", "prompt": "a", "image": URL1}, "use mode i2v_first_720p"),
        ({"mode": "t2v_1080p", "prompt": "a", "images": [URL1, URL2]}, "i2v_first_tail_1080p"),
        ({"mode": "ti2v_pro", "prompt": "a", "images": [URL1, URL2]}, "i2v_first_tail_1080p"),
        ({"mode": "i2v_first_720p", "prompt": "a"}, "needs one image"),
        ({"mode": "i2v_first_tail_1080p", "prompt": "a", "image": URL1}, "two images"),
        ({"mode": "i2v_first_720p", "image": URL1}, "needs a prompt"),
        ({"mode": "t2v_720p"}, "needs a prompt"),
        ({"prompt": "a" * 801}, "at most 800"),
        ({"image": URL1, "audio": AUDIO, "prompt": "a" * 301}, "at most 300"),
        ({"prompt": "a", "image": URL1, "aspect_ratio": "16:9"}, "only for text-to-video"),
        ({"mode": "ti2v_pro", "image": URL1, "aspect_ratio": "1:1"}, "only for text-to-video"),
        ({"prompt": "a", "aspect_ratio": "2:1"}, "not offered"),
        ({"mode": "i2v_recamera_720p", "prompt": "a", "image": URL1}, "needs a camera move"),
        (
            {"mode": "i2v_recamera_720p", "prompt": "a", "image": URL1, "camera": "robo_arm"},
            "camera_strength",
        ),
        (
            {
                "mode": "i2v_recamera_720p",
                "prompt": "a",
                "image": URL1,
                "camera": "zoom",
                "camera_strength": "weak",
            },
            "not a known move",
        ),
        (
            {
                "mode": "i2v_recamera_720p",
                "prompt": "a",
                "image": URL1,
                "camera": "robo_arm",
                "camera_strength": "max",
            },
            "not offered",
        ),
        ({"prompt": "a", "camera": "robo_arm", "camera_strength": "weak"}, "only for mode"),
        ({"prompt": "a", "duration": 7}, "4, 5, 6, 8, 10"),
        ({"prompt": "a", "fps": 60}, "24, 25, 30"),
        ({"image": URL1, "audio": AUDIO, "duration": 10}, "follows"),
        ({"mode": "omnihuman", "image": URL1}, "needs audio"),
        ({"mode": "omnihuman", "audio": AUDIO}, "exactly one portrait"),
        ({"image": URL1, "tail_image": URL2, "audio": AUDIO}, "exactly one portrait"),
        ({"image": URL1, "audio": AUDIO, "mask": [URL2] * 6}, "at most 5"),
        ({"image": URL1, "audio": AUDIO, "resolution": 480}, "720 or 1080"),
        ({"prompt": "a", "resolution": 720}, "only for OmniHuman"),
        ({"prompt": "a", "fast_mode": True}, "only for OmniHuman"),
        ({"prompt": "a", "mask": URL1}, "only for OmniHuman"),
        ({"mode": "scene", "scene": "celebrity", "image": URL1}, "scenes are made by Jenius"),
        ({"prompt": "a", "tail_image": URL2}, "without a first image"),
        ({"prompt": "a", "images": [URL1, URL2, URL1]}, "at most two"),
        ({"prompt": "a", "seed": -2}, "seed"),
        ({"prompt": "a\x00b"}, "NUL"),
        ({"prompt": "a", "image": "/tmp/a\x00.png"}, "NUL"),
        ({"prompt": "a", "image": "ftp://example.com/a.png"}, "unsupported scheme"),
        ({"prompt": "a", "image": "https:///a.png"}, "no host"),
        ({"prompt": "a", "filename": "../x.mp4"}, "plain file name"),
        ({"prompt": "a", "filename": "a/b.mp4"}, "plain file name"),
        ({"prompt": "a", "mode": "t2v_4k"}, "Unknown mode"),
    ],
)
def test_each_rule_refuses_with_the_problem_and_the_fix(kwargs: dict[str, Any], words: str) -> None:
    assert words in refused(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"prompt": "a"}, "only makes scene videos"),
        ({"mode": "t2v_720p", "prompt": "a"}, "only makes scene videos"),
        ({"scene": "moon"}, "at least one photo"),
        ({"scene": "Moon Walk", "image": URL1}, "not a scene name"),
        ({"scene": "x" * 65, "image": URL1}, "not a scene name"),
        ({"mode": "scene", "image": URL1}, "needs scene / --scene"),
        ({"scene": "celebrity", "images": [URL1, URL2]}, "needs 1 image"),
        ({"scene": "family"}, "1 to 9"),
        ({"scene": "celebrity", "image": URL1, "aspect_ratio": "16:9"}, "only for text-to-video"),
        ({"scene": "celebrity", "image": URL1, "duration": 10}, "follows the scene"),
        ({"scene": "celebrity", "image": URL1, "fps": 30}, "fps / --fps"),
    ],
)
def test_jenius_rules_refuse_with_the_fix(kwargs: dict[str, Any], words: str) -> None:
    assert words in refused(provider="jenius", **kwargs)


def test_a_prompt_on_a_scene_is_kept_for_the_file_name_and_noted() -> None:
    intake = build_request(provider="jenius", scene="celebrity", image=URL1, prompt="me and stars")
    assert intake.request.prompt == "me and stars"
    assert any("not sent to Jenius" in note for note in intake.notes)


def test_an_unknown_provider_is_refused() -> None:
    assert "Unknown provider" in refused(provider="openai", prompt="a")


def test_a_data_url_or_a_local_path_passes_intake_without_being_read() -> None:
    request = build_request(
        provider="volcengine", prompt="a", image="/nonexistent/x.png", tail_image="data:,x"
    ).request
    assert request.images == ("/nonexistent/x.png", "data:,x")


@pytest.mark.parametrize("fps", [25, 30])
def test_omnihuman_refuses_a_frame_rate_it_would_silently_ignore(fps: int) -> None:
    """OmniHuman's rate follows the provider: fps other than 24 is refused, not dropped."""
    message = refused(image=URL1, audio=AUDIO, fps=fps)
    assert "fps cannot be chosen for omnihuman" in message
    assert "fps / --fps" in message


def test_a_scene_name_missing_from_the_catalogue_is_sent_to_jenius_with_a_note() -> None:
    """contracts.md §3: the scene list grows; Jenius's own error speaks for names it lacks."""
    intake = build_request(provider="jenius", scene="new_year-2026", images=[URL1, URL2])
    assert (intake.request.mode, intake.request.scene) == ("scene", "new_year-2026")
    assert intake.request.images == (URL1, URL2)
    assert any("not in videogen's catalogue" in note for note in intake.notes)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"mode": "i2v_first_720p", "image": URL1}, "prompt / PROMPT"),
        ({"mode": "i2v_first_720p", "prompt": "a"}, "image / --image"),
        (
            {"mode": "i2v_first_tail_720p", "prompt": "a", "image": URL1},
            "tail_image / --tail-image",
        ),
        ({"mode": "omnihuman", "image": URL1}, "audio / --audio"),
        ({"prompt": "a", "fast_mode": True}, "fast_mode / --fast"),
        ({"mode": "i2v_recamera_720p", "prompt": "a", "image": URL1}, "camera / --camera"),
    ],
)
def test_messages_name_the_option_as_both_the_tools_and_the_command_line_spell_it(
    kwargs: dict[str, Any], option: str
) -> None:
    """No MCP-only wording such as "pass prompt=...": the CLI shows these messages too."""
    message = refused(**kwargs)
    assert option in message
    assert "=" not in message.replace("==", "")


@pytest.mark.parametrize(
    ("explicit", "mode", "scene", "chosen"),
    [
        (None, None, None, "tokenops"),
        (None, "scene", None, "jenius"),
        (None, None, "celebrity", "jenius"),
        (None, "t2v_720p", "celebrity", "tokenops"),
        ("volcengine", "scene", "celebrity", "volcengine"),
    ],
)
def test_choose_provider_sends_scenes_to_jenius_unless_told_otherwise(
    explicit: Any, mode: Any, scene: str | None, chosen: str
) -> None:
    """One rule for the CLI and the MCP tool (it used to differ for --mode scene)."""
    assert choose_provider(explicit=explicit, mode=mode, scene=scene, default="tokenops") == chosen
