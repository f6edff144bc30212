"""What the command line decides and refuses: provider choice, scenes, fps, messages, rejections."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from videogen.errors import EXIT_ERROR, EXIT_PENDING, EXIT_REJECTED, EXIT_USAGE

from .conftest import Cli

if TYPE_CHECKING:
    from videogen.sandbox import RunningSandbox

PHOTO = "https://example.com/me.png"
AUDIO = "https://example.com/speech.mp3"


def test_mode_scene_without_a_provider_goes_to_jenius_as_the_mcp_tool_does(cli: Cli) -> None:
    """`--mode scene --scene NAME` picks Jenius (it used to fall back to the default provider)."""
    done = cli.run("generate", "--mode", "scene", "--scene", "celebrity", "--image", PHOTO,
                   "--no-wait", "--json")  # fmt: skip

    assert done.returncode == EXIT_PENDING, done.stderr
    result = json.loads(done.stdout)
    assert (result["provider"], result["mode"]) == ("jenius", "scene:celebrity")


def test_fps_for_a_talking_portrait_is_refused_naming_the_option(cli: Cli) -> None:
    """OmniHuman ignores a frame rate: refused before anything is billed, in CLI words."""
    done = cli.run("generate", "--image", PHOTO, "--audio", AUDIO, "--fps", "30")

    assert done.returncode == EXIT_USAGE
    assert "--fps" in done.stderr and "fps=" not in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_prompt_names_the_command_lines_argument_not_the_tools(cli: Cli) -> None:
    done = cli.run("generate", "--mode", "i2v_first_720p", "--image", PHOTO)

    assert done.returncode == EXIT_USAGE
    assert "PROMPT" in done.stderr and "prompt=" not in done.stderr


def test_a_scene_photo_refused_by_content_review_exits_5(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    cli, sandbox = standalone
    sandbox.set_faults("reject_image")
    done = cli.run("generate", "--scene", "celebrity", "--image", PHOTO)

    assert done.returncode == EXIT_REJECTED, done.stderr
    assert "content review" in done.stderr and "Traceback" not in done.stderr


def test_an_uncatalogued_scene_is_sent_and_jenius_own_refusal_is_shown(
    standalone: tuple[Cli, RunningSandbox],
) -> None:
    cli, sandbox = standalone
    done = cli.run("generate", "--scene", "moonwalk", "--image", PHOTO)

    assert done.returncode == EXIT_ERROR, done.stderr
    assert "unknown scene 'moonwalk'" in done.stderr
    assert sandbox.log.count("jenius", "submit") == 1
