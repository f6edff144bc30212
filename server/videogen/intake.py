"""Loose caller parameters -> one checked ``GenerationRequest``. No I/O, no HTTP.

Every interface (MCP tool, CLI) hands the caller's words to ``build_request``. It infers the
mode when none is given (and says so in ``Intake.notes``), checks that the mode, its inputs and
the provider agree, and refuses anything a provider would refuse, before anything is billed.
Each ``InputError`` names the problem and the fix. Files are not opened here: ``inputs`` does
that when the request is about to be sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, get_args

from pydantic import ValidationError

from videogen.catalog import (
    ASPECT_RATIOS,
    CAMERA_MOVES,
    CAMERA_STRENGTHS,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_DURATION,
    DEFAULT_FPS,
    DURATIONS,
    FPS_CHOICES,
    JIMENG,
    JIMENG_MODES,
    MODES,
    OMNIHUMAN,
    OMNIHUMAN_PROMPT_MAX_CHARS,
    PROMPT_MAX_CHARS,
    PROVIDERS,
    SCENES,
    Mode,
    OmniResolution,
    ProviderName,
)
from videogen.errors import InputError
from videogen.files import check_name
from videogen.inputs import classify_ref, describe
from videogen.models import GenerationRequest
from videogen.request import VideoAsk, option

#: Which modes each provider runs (contracts.md: Jenius only scenes; the others all but scenes).
PROVIDER_MODES: Final[dict[ProviderName, frozenset[Mode]]] = {
    "jenius": frozenset({"scene"}),
    "tokenops": frozenset(m for m in MODES if m != "scene"),
    "volcengine": frozenset(m for m in MODES if m != "scene"),
}
#: Image modes to suggest when a text-to-video mode is given images (by image count).
_IMAGE_MODE_FOR: Final[dict[str, tuple[Mode, Mode]]] = {
    "720p": ("i2v_first_720p", "i2v_first_tail_720p"),
    "1080p": ("i2v_first_1080p", "i2v_first_tail_1080p"),
}
SEED_MAX: Final = 2**32 - 1
#: A scene name not in the catalogue is passed to Jenius when it looks like one (contracts.md §3:
#: the scene list is unknown and grows; the provider's own error speaks for names it rejects).
SCENE_NAME: Final = re.compile(r"[a-z0-9_-]{1,64}")


def choose_provider(
    *,
    explicit: ProviderName | None,
    mode: Mode | None,
    scene: str | None,
    default: ProviderName,
) -> ProviderName:
    """The provider a request goes to; the one rule both interfaces use.

    The caller's choice wins; a scene (``mode`` scene, or a scene with no mode) goes to Jenius,
    the only provider that makes them; anything else to the configured ``default``.
    """
    if explicit:
        return explicit
    if mode == "scene" or (scene and mode is None):
        return "jenius"
    return default


#: The fields the request takes as the caller gave them (checked, never rewritten here): a new
#: ``VideoAsk`` field that ``GenerationRequest`` also has arrives without a line in this module.
_SHARED: Final = VideoAsk.model_fields.keys() & GenerationRequest.model_fields.keys()
_AS_GIVEN: Final = frozenset(_SHARED) - {
    "provider", "mode", "prompt", "images", "audio", "aspect_ratio", "camera", "camera_strength",
    "scene", "filename",
}  # fmt: skip


@dataclass(frozen=True)
class Intake:
    """The checked request, and what was decided for the caller (e.g. the inferred mode)."""

    request: GenerationRequest
    notes: tuple[str, ...]


def build_request(
    ask: VideoAsk | None = None, /, *, provider: ProviderName, **params: Any
) -> Intake:
    """Check the caller's parameters and build the request; raise ``InputError`` naming the fix.

    Images are taken in order ``image``, then ``images``, then ``tail_image`` (the tail frame
    is last). Empty strings count as not given. With ``mode`` None the mode is inferred: a scene
    -> ``scene``; audio -> ``omnihuman``; a camera move with one image -> ``i2v_recamera_720p``;
    two images -> ``i2v_first_tail_720p``; one image -> ``i2v_first_720p``; else ``t2v_720p``.

    The parameters are a ``VideoAsk`` (its ``provider`` is ignored: ``provider`` is the one
    chosen, see ``choose_provider``), or the same fields as keywords.
    """
    if ask is None:
        unknown = params.keys() - VideoAsk.model_fields.keys()
        if unknown:
            raise TypeError(f"build_request() got unexpected parameters: {sorted(unknown)}")
        ask = VideoAsk.model_construct(**params)
    return _build(ask, provider)


def _build(ask: VideoAsk, provider: ProviderName) -> Intake:
    prompt, mode, image, tail_image = ask.prompt, ask.mode, ask.image, ask.tail_image
    images, audio, duration, fps = ask.images or (), ask.audio, ask.duration, ask.fps
    aspect_ratio: str | None
    aspect_ratio, seed, camera, camera_strength = (
        ask.aspect_ratio, ask.seed, ask.camera, ask.camera_strength,
    )  # fmt: skip
    resolution, fast_mode, scene, filename = ask.resolution, ask.fast_mode, ask.scene, ask.filename
    mask: str | Sequence[str] | None = ask.mask
    notes: list[str] = []
    texts = [prompt, image, tail_image, *images, audio, camera, camera_strength, scene, filename]
    masks = _as_tuple(mask)
    _refuse_nul([t for t in texts if t], masks)
    prompt = prompt.strip()
    refs = _collect_images(image, images, tail_image)
    audio = audio or None
    scene = scene or None
    _check_provider(provider)
    if mode is None:
        mode = _infer_mode(provider, refs, audio, scene, camera, notes)
    _check_mode(mode, provider)
    _check_timing(mode, duration, fps)
    if not isinstance(seed, int) or isinstance(seed, bool) or not -1 <= seed <= SEED_MAX:
        raise InputError(
            f"{option('seed')} {seed!r} is out of range: use -1 (random) or 0..{SEED_MAX}."
        )
    for ref in refs:
        classify_ref(ref)
    if mode == "scene":
        _check_scene(scene, refs, prompt, notes)
    elif mode == "omnihuman":
        _check_omnihuman(prompt, refs, audio, masks, tail_image)
    else:
        aspect_ratio = _check_jimeng(mode, prompt, refs, aspect_ratio, camera, camera_strength)
    _check_extras(
        mode, audio, masks, resolution, fast_mode, scene, camera, camera_strength, aspect_ratio
    )
    filename = check_name(filename) if filename else None
    try:
        request = GenerationRequest(
            **{name: getattr(ask, name) for name in _AS_GIVEN},
            provider=provider,
            mode=mode,
            prompt=prompt,
            images=refs,
            audio=audio,
            masks=masks,
            aspect_ratio=aspect_ratio,
            camera=camera or None,
            camera_strength=camera_strength or None,
            scene=scene,
            filename=filename,
        )
    except ValidationError as error:  # every field was checked above; this is a safety net
        raise InputError(f"The request is not valid: {error.errors()[0]['msg']}.") from None
    return Intake(request=request, notes=tuple(notes))


def _as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(v for v in value if v)


def _refuse_nul(texts: Sequence[str], more: Sequence[str]) -> None:
    if any("\x00" in t for t in (*texts, *more)):
        raise InputError(
            "A parameter contains a NUL byte: remove it (paths, URLs and the prompt "
            "must be plain text)."
        )


def _collect_images(image: str | None, images: Sequence[str], tail: str | None) -> tuple[str, ...]:
    if isinstance(images, str):
        images = [images]
    refs = [r for r in (image, *images) if r]
    if tail:
        if not refs:
            raise InputError(
                f"A last frame ({option('tail_image')}) was given without a first image: give "
                f"the first frame as {option('image')} too."
            )
        refs.append(tail)
    return tuple(refs)


def _check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise InputError(f"Unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}.")


def _infer_mode(
    provider: ProviderName,
    refs: tuple[str, ...],
    audio: str | None,
    scene: str | None,
    camera: str | None,
    notes: list[str],
) -> Mode:
    mode: Mode
    if scene:
        mode, why = "scene", f"scene {scene!r} was given"
    elif provider == "jenius":
        raise InputError(
            f"Jenius only makes scene videos: give {option('scene')} (e.g. "
            f"{', '.join(SCENES)}), or choose provider volcengine or tokenops."
        )
    elif audio:
        mode, why = "omnihuman", "audio was given (a talking portrait)"
    elif camera and len(refs) == 1:
        mode, why = "i2v_recamera_720p", "one image and a camera move were given"
    elif len(refs) == 2:
        mode, why = "i2v_first_tail_720p", "two images were given (first and last frame)"
    elif len(refs) == 1:
        mode, why = "i2v_first_720p", "one image was given"
    elif len(refs) > 2:
        raise InputError(
            f"{len(refs)} images were given but video modes take at most two (first "
            "and last frame): give one or two images, or a scene for group photos."
        )
    else:
        return "t2v_720p"  # the default needs no note: the result's Mode line says it
    notes.append(f"mode {mode} chosen because {why}")
    return mode


def _check_mode(mode: str, provider: ProviderName) -> None:
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode not in PROVIDER_MODES[provider]:
        if provider == "jenius":
            raise InputError(
                f"Jenius cannot run mode {mode}: it only makes scene videos. Use "
                "provider volcengine or tokenops for this mode."
            )
        raise InputError(
            f"{provider} cannot run scene videos: scenes are made by Jenius. Use "
            "provider jenius for a scene."
        )


def _check_timing(mode: Mode, duration: int, fps: int) -> None:
    if duration not in DURATIONS:
        raise InputError(
            f"{option('duration')} {duration!r} is not offered: use one of "
            f"{', '.join(map(str, DURATIONS))} seconds."
        )
    if fps not in FPS_CHOICES:
        raise InputError(
            f"{option('fps')} {fps!r} is not offered: use one of "
            f"{', '.join(map(str, FPS_CHOICES))}."
        )
    if mode in ("omnihuman", "scene") and (duration != DEFAULT_DURATION or fps != DEFAULT_FPS):
        # Neither provider takes a length or a rate, and the engine conforms only Jimeng clips:
        # a value here would be silently ignored.
        what = "the audio" if mode == "omnihuman" else "the scene"
        name = "duration" if duration != DEFAULT_DURATION else "fps"
        raise InputError(
            f"{name} cannot be chosen for {mode} videos: their length follows {what} and "
            f"their frame rate is the provider's. Leave {option(name)} unset."
        )


def _check_prompt(prompt: str, limit: int, required: bool, mode: str) -> None:
    if len(prompt) > limit:
        raise InputError(
            f"The prompt has {len(prompt)} characters; {mode} accepts at most {limit}. Shorten it."
        )
    if required and not prompt:
        raise InputError(
            f"Mode {mode} needs a prompt describing the video: give the prompt "
            f"({option('prompt')})."
        )


def _check_jimeng(
    mode: Mode,
    prompt: str,
    refs: tuple[str, ...],
    aspect_ratio: str | None,
    camera: str | None,
    strength: str | None,
) -> str | None:
    """Check a Jimeng mode's images, prompt, aspect ratio and camera; return the aspect ratio."""
    assert mode in JIMENG_MODES
    spec = JIMENG[mode]
    _check_image_count(mode, spec.min_images, spec.max_images, len(refs), spec.resolution)
    text_only = spec.text_to_video and not refs
    _check_prompt(prompt, PROMPT_MAX_CHARS, required=not (mode == "ti2v_pro" and refs), mode=mode)
    if aspect_ratio and not text_only:
        raise InputError(
            f"aspect_ratio is only for text-to-video: with an image, {mode} takes the "
            f"image's own shape. Remove {option('aspect_ratio')} (or crop the image)."
        )
    if aspect_ratio and aspect_ratio not in ASPECT_RATIOS:
        raise InputError(
            f"{option('aspect_ratio')} {aspect_ratio!r} is not offered: use one of "
            f"{', '.join(ASPECT_RATIOS)}."
        )
    if spec.camera:
        _check_camera(camera, strength)
    return (aspect_ratio or DEFAULT_ASPECT_RATIO) if text_only else None


def _check_image_count(mode: Mode, low: int, high: int, count: int, resolution: str) -> None:
    if low <= count <= high:
        return
    if high == 0:
        first, tail = _IMAGE_MODE_FOR[resolution]
        better = first if count == 1 else tail
        raise InputError(
            f"Mode {mode} is text-to-video and takes no image, but {count} were "
            f"given: use mode {better} to animate {'it' if count == 1 else 'them'}, "
            "or drop the images."
        )
    if mode == "ti2v_pro":
        raise InputError(
            f"Mode ti2v_pro takes at most one image (the first frame), but {count} "
            "were given: use i2v_first_tail_1080p for a first and last frame."
        )
    need = "one image" if high == 1 else "two images (first and last frame)"
    got = "none" if count == 0 else str(count)
    give = option("image") if high == 1 else f"{option('image')} and {option('tail_image')}"
    raise InputError(
        f"Mode {mode} needs {need}, but {got} were given: give {give}, or use a "
        "text-to-video mode (t2v_720p)."
    )


def _check_camera(camera: str | None, strength: str | None) -> None:
    if not camera or not strength:
        raise InputError(
            "Mode i2v_recamera_720p needs a camera move and its strength: give "
            f"{option('camera')} (one of {', '.join(CAMERA_MOVES)}) and "
            f"{option('camera_strength')} (one of {', '.join(CAMERA_STRENGTHS)})."
        )
    if camera not in CAMERA_MOVES:
        raise InputError(
            f"{option('camera')} {camera!r} is not a known move: use one of "
            f"{', '.join(CAMERA_MOVES)}."
        )
    if strength not in CAMERA_STRENGTHS:
        raise InputError(
            f"{option('camera_strength')} {strength!r} is not offered: use one of "
            f"{', '.join(CAMERA_STRENGTHS)}."
        )


def _check_omnihuman(
    prompt: str, refs: tuple[str, ...], audio: str | None, masks: tuple[str, ...], tail: str | None
) -> None:
    _check_prompt(prompt, OMNIHUMAN_PROMPT_MAX_CHARS, required=False, mode="omnihuman")
    if tail or len(refs) != 1:
        raise InputError(
            f"OmniHuman needs exactly one portrait image, but {len(refs)} were "
            f"given: give {option('image')} (a public URL of one clear portrait)."
        )
    if not audio:
        raise InputError(
            f"OmniHuman needs audio for the portrait to speak: give {option('audio')}, a "
            "public URL of a speech clip shorter than 60 seconds."
        )
    classify_ref(audio, label="audio")
    if len(masks) > OMNIHUMAN.max_subjects:
        raise InputError(
            f"{len(masks)} masks were given; OmniHuman takes at most "
            f"{OMNIHUMAN.max_subjects}: pass the mask(s) of the subject(s) that speak."
        )


def _check_scene(scene: str | None, refs: tuple[str, ...], prompt: str, notes: list[str]) -> None:
    if not scene:
        raise InputError(f"Mode scene needs {option('scene')}: one of {', '.join(SCENES)}.")
    spec = SCENES.get(scene)
    if spec is None:
        _check_unknown_scene(scene, refs, notes)
    elif not spec.min_images <= len(refs) <= spec.max_images:
        count = (
            str(spec.min_images)
            if spec.min_images == spec.max_images
            else f"{spec.min_images} to {spec.max_images}"
        )
        raise InputError(
            f"Scene {scene} needs {count} image(s), but {len(refs)} were given: {spec.photo_advice}"
        )
    _check_prompt(prompt, PROMPT_MAX_CHARS, required=False, mode="scene")
    if prompt:
        notes.append(
            "the prompt is not sent to Jenius (scenes take no text); it only names the file"
        )


def _check_unknown_scene(scene: str, refs: tuple[str, ...], notes: list[str]) -> None:
    """A scene the catalogue does not list goes to Jenius, which knows its own list."""
    if not SCENE_NAME.fullmatch(scene):
        raise InputError(
            f"Scene {describe(scene)} is not a scene name: names are 1 to 64 lower-case "
            f"letters, digits, '_' or '-' (known scenes: {', '.join(SCENES)})."
        )
    if not refs:
        raise InputError(
            f"Scene {scene} needs at least one photo: give {option('image')} or "
            f"{option('images')} (public URLs)."
        )
    notes.append(
        f"scene {scene!r} is not in videogen's catalogue ({', '.join(SCENES)}); it is sent "
        "to Jenius as given, and Jenius refuses it if it does not offer it"
    )


def _check_extras(
    mode: Mode,
    audio: str | None,
    masks: tuple[str, ...],
    resolution: int | None,
    fast_mode: bool,
    scene: str | None,
    camera: str | None,
    strength: str | None,
    aspect_ratio: str | None,
) -> None:
    """Refuse parameters that belong to another mode."""
    if mode != "omnihuman":
        for name, given in (
            ("audio", audio),
            ("mask", masks),
            ("resolution", resolution),
            ("fast_mode", fast_mode),
        ):
            if given:
                raise InputError(
                    f"{name} is only for OmniHuman (mode omnihuman), not {mode}: "
                    f"remove {option(name)} or use mode omnihuman."
                )
    elif resolution is not None and resolution not in get_args(OmniResolution):
        raise InputError(
            f"{option('resolution')} {resolution!r} is not offered: OmniHuman renders 720 or 1080."
        )
    if mode != "scene" and scene:
        raise InputError(
            f"scene is only for Jenius scene videos, not {mode}: remove {option('scene')} or "
            "use provider jenius."
        )
    if mode != "i2v_recamera_720p" and (camera or strength):
        raise InputError(
            f"camera and camera_strength are only for mode i2v_recamera_720p, not "
            f"{mode}: remove {option('camera')} and {option('camera_strength')}, or use "
            "that mode with one image."
        )
    if mode in ("omnihuman", "scene") and aspect_ratio:
        raise InputError(
            f"aspect_ratio is only for text-to-video, not {mode}: remove {option('aspect_ratio')}."
        )
