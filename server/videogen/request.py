"""What a caller may ask of a generation: one model, read by every interface.

``VideoAsk`` holds the caller's parameters, their types (the catalogue's ``Literal`` types),
defaults and descriptions. The MCP tool ``generate_video`` publishes its fields as its flat
parameters, the CLI's ``generate`` derives its options from them, and ``intake.build_request``
reads one to check the rules that join several fields (mode inference, mode <-> inputs <->
provider). A new parameter is one field here, one use in the provider adapter, and the docs.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field

from videogen.catalog import (
    DEFAULT_DURATION,
    DEFAULT_FPS,
    IMAGE_MAX_BYTES,
    PROMPT_MAX_CHARS,
    SCENES,
    URL_IMAGE_FORM,
    AspectRatio,
    CameraMove,
    CameraStrength,
    Duration,
    Fps,
    Mode,
    OmniResolution,
    ProviderName,
    image_help,
)

#: The catalogue's names an interface needs to describe a caller's input are re-exported here,
#: so the interfaces read the caller's side of the catalogue through this module alone.
__all__ = [
    "IMAGE_MAX_BYTES",
    "URL_IMAGE_FORM",
    "ProviderName",
    "VideoAsk",
    "ask_parameters",
    "cli_flag",
    "option",
    "pick_ask",
]

_MODE_HELP: Final = (
    "Generation mode. Omit it to let the server choose from the inputs (text only -> t2v_720p, "
    "one image -> i2v_first_720p, first+last image -> i2v_first_tail_720p, image+audio -> "
    "omnihuman, scene given -> scene); the result says what was chosen. "
    "ti2v_pro: 1080P pro, text or one first-frame image. t2v_720p / t2v_1080p: text to video. "
    "i2v_first_720p / i2v_first_1080p: animate one image from its first frame. "
    "i2v_first_tail_720p / i2v_first_tail_1080p: transition from image to tail_image. "
    "i2v_recamera_720p: one image with a camera move (camera, camera_strength). "
    "omnihuman: a portrait speaks/sings the audio. scene: a Jenius scene effect from photos."
)
_IMAGE_HELP: Final = image_help()
#: Command-line spellings that are not ``--`` + the field name with dashes.
CLI_FLAGS: Final[dict[str, str]] = {"fast_mode": "--fast", "prompt": "PROMPT"}


class VideoAsk(BaseModel):
    """The caller's parameters of one generation, as given (nothing inferred yet)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        "",
        description="What the video shows, in the user's words (at most 800 characters; 300 "
        "for omnihuman). Optional for scenes.",
        max_length=PROMPT_MAX_CHARS,
    )
    mode: Mode | None = Field(None, description=_MODE_HELP)
    provider: ProviderName | None = Field(
        None,
        description="Which API makes it: volcengine (Jimeng/OmniHuman, signed), tokenops "
        "(gateway to the same models), jenius (scenes). Default: the configured one; jenius "
        "for scenes.",
    )
    image: str | None = Field(
        None, description=f"First-frame image or omnihuman portrait: {_IMAGE_HELP}."
    )
    tail_image: str | None = Field(
        None, description=f"Last-frame image (first+tail modes): {_IMAGE_HELP}."
    )
    images: list[str] | None = Field(
        None,
        description="Several images, in order: scene photos, or first and last frame "
        f"({_IMAGE_HELP}).",
        max_length=9,
    )
    audio: str | None = Field(
        None, description="Audio URL for omnihuman (at most 60 s): the portrait says it."
    )
    mask: str | list[str] | None = Field(
        None, description="omnihuman: which subject speaks — mask URL(s) from detect_subjects."
    )
    duration: Duration = Field(DEFAULT_DURATION, description="Seconds: 4, 5, 6, 8 or 10.")
    fps: Fps = Field(DEFAULT_FPS, description="Frames per second: 24, 25 or 30.")
    aspect_ratio: AspectRatio | None = Field(
        None, description="Text-to-video only; image modes follow the image. Default 16:9."
    )
    seed: int = Field(-1, description="-1 for random; a fixed seed repeats.")
    camera: CameraMove | None = Field(None, description="Camera move for i2v_recamera_720p.")
    camera_strength: CameraStrength | None = Field(None, description="Camera move strength.")
    resolution: OmniResolution | None = Field(
        None, description="omnihuman output: 720 or 1080 (default)."
    )
    fast_mode: bool = Field(False, description="omnihuman: faster, somewhat lower quality.")
    scene: str | None = Field(
        None,
        description="Jenius scene name (see list_scenes): "
        + ", ".join(SCENES)
        + ". Another name is sent to Jenius as given (it refuses scenes it lacks).",
    )
    filename: str | None = Field(
        None, description="File name for the saved MP4 (no folders). Default from prompt."
    )


def ask_parameters() -> list[inspect.Parameter]:
    """``VideoAsk``'s fields as keyword-only parameters (``Annotated[type, Field(...)]``), for
    a function whose signature publishes them one by one (the MCP tool's flat arguments)."""
    parameters = []
    for name, info in VideoAsk.model_fields.items():
        metadata = (info.annotation, *info.metadata, Field(description=info.description))
        annotation = Annotated.__class_getitem__(metadata)  # type: ignore[attr-defined]
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=info.default, annotation=annotation
            )
        )
    return parameters


def pick_ask(arguments: dict[str, Any]) -> VideoAsk:
    """The ``VideoAsk`` among already-validated arguments (the others are the interface's)."""
    return VideoAsk.model_construct(
        **{k: v for k, v in arguments.items() if k in VideoAsk.model_fields}
    )


def option(name: str) -> str:
    """A parameter as both interfaces name it, e.g. ``tail_image / --tail-image``.

    Intake's messages reach the model (MCP: ``tail_image=``) and people at a shell (CLI:
    ``--tail-image``) alike, so they name both spellings.
    """
    return f"{name} / {cli_flag(name)}"


def cli_flag(name: str) -> str:
    """The command line's spelling of a field: ``--tail-image``, ``--fast``, ``PROMPT``."""
    return CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
