"""What the providers offer: modes, req_keys, models, sizes, camera moves, scenes. Data only.

Everything here comes from ``shared/docs/contracts.md`` and the seeds. Where the providers'
documentation is silent (720P/1080P output sizes, the full Jenius scene list) the values are
marked as assumptions: the real size of a video is always read from the downloaded file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

JimengMode = Literal[
    "ti2v_pro",
    "t2v_720p",
    "i2v_first_720p",
    "i2v_first_tail_720p",
    "i2v_recamera_720p",
    "t2v_1080p",
    "i2v_first_1080p",
    "i2v_first_tail_1080p",
]
Mode = Literal[
    "ti2v_pro",
    "t2v_720p",
    "i2v_first_720p",
    "i2v_first_tail_720p",
    "i2v_recamera_720p",
    "t2v_1080p",
    "i2v_first_1080p",
    "i2v_first_tail_1080p",
    "omnihuman",
    "scene",
]
ProviderName = Literal["jenius", "tokenops", "volcengine"]
AspectRatio = Literal["16:9", "4:3", "1:1", "3:4", "9:16", "21:9"]
CameraMove = Literal[
    "hitchcock_dolly_in",
    "hitchcock_dolly_out",
    "robo_arm",
    "dynamic_orbit",
    "central_orbit",
    "crane_push",
    "quick_pull_back",
    "counterclockwise_swivel",
    "clockwise_swivel",
    "handheld",
    "rapid_push_pull",
]
CameraStrength = Literal["weak", "medium", "strong"]
Duration = Literal[4, 5, 6, 8, 10]
Fps = Literal[24, 25, 30]
OmniResolution = Literal[720, 1080]

JIMENG_MODES: Final[tuple[JimengMode, ...]] = get_args(JimengMode)
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
PROVIDERS: Final[tuple[ProviderName, ...]] = get_args(ProviderName)
ASPECT_RATIOS: Final[tuple[AspectRatio, ...]] = get_args(AspectRatio)
CAMERA_MOVES: Final[tuple[CameraMove, ...]] = get_args(CameraMove)
CAMERA_STRENGTHS: Final[tuple[CameraStrength, ...]] = get_args(CameraStrength)
DURATIONS: Final[tuple[Duration, ...]] = get_args(Duration)
FPS_CHOICES: Final[tuple[Fps, ...]] = get_args(Fps)

DEFAULT_MODE: Final[JimengMode] = "t2v_720p"
DEFAULT_ASPECT_RATIO: Final[AspectRatio] = "16:9"
DEFAULT_DURATION: Final[Duration] = 5
DEFAULT_FPS: Final[Fps] = 24

#: The provider renders at 24 fps; ``frames = 24 * seconds + 1``.
PROVIDER_FPS: Final = 24
#: Provider clip length in seconds -> ``frames`` field value.
PROVIDER_FRAMES: Final[dict[int, int]] = {5: 121, 10: 241}
FRAME_CHOICES: Final[tuple[int, ...]] = (121, 241)

PROMPT_MAX_CHARS: Final = 800
OMNIHUMAN_PROMPT_MAX_CHARS: Final = 300
OMNIHUMAN_AUDIO_MAX_SECONDS: Final = 60

IMAGE_MAX_BYTES: Final = 4_700_000
IMAGE_MAX_SIDE: Final = 4096
IMAGE_MIN_SHORT_SIDE: Final = 320
IMAGE_MAX_RATIO: Final = 3.0
#: Largest local audio file uploaded for OmniHuman (this project's cap, not a documented one:
#: under 60 s of audio is about 11 MB even as uncompressed 48 kHz stereo WAV).
AUDIO_MAX_BYTES: Final = 20_000_000


#: Modes whose images the provider fetches by URL itself: OmniHuman portraits (also for subject
#: detection) and Jenius scene photos. In the other (Jimeng) modes a local JPEG/PNG file or a
#: data: URL is read, checked and uploaded. Audio and masks are URLs in every mode.
URL_ONLY_IMAGE_MODES: Final[frozenset[Mode]] = frozenset({"omnihuman", "scene"})
#: What each URL-only mode calls its images, for descriptions.
URL_ONLY_IMAGES: Final[dict[Mode, str]] = {
    "omnihuman": "the omnihuman portrait (also for subject detection)",
    "scene": "Jenius scene photos",
}
ANY_IMAGE_FORM: Final = "an http(s) URL, a local JPEG/PNG file path or a data: URL"
URL_IMAGE_FORM: Final = "a public http(s) URL only (not a local file or a data: URL)"


def uploads_images(mode: Mode) -> bool:
    """True when ``mode`` takes a local file or data: URL as an image (read and uploaded)."""
    return mode not in URL_ONLY_IMAGE_MODES


def image_help() -> str:
    """What an image parameter accepts, mode by mode: the one text tools and commands show."""
    url_only = " and ".join(URL_ONLY_IMAGES[m] for m in MODES if not uploads_images(m))
    return f"{ANY_IMAGE_FORM} in the Jimeng modes; {URL_IMAGE_FORM} for {url_only}"


@dataclass(frozen=True, slots=True)
class ModeSpec:
    """One Jimeng video 3.0 mode (contracts.md §1.2)."""

    name: JimengMode
    req_key: str
    resolution: Literal["720p", "1080p"]
    min_images: int
    max_images: int
    text_to_video: bool  # aspect_ratio is sent only for text-to-video
    camera: bool
    tokenops_model: str
    summary: str


JIMENG: Final[dict[JimengMode, ModeSpec]] = {
    spec.name: spec
    for spec in (
        ModeSpec(
            "ti2v_pro",
            "jimeng_ti2v_v30_pro",
            "1080p",
            0,
            1,
            True,
            False,
            "jimeng-video-3.0-pro",
            "Pro 1080P: text-to-video, or one image as the first frame.",
        ),
        ModeSpec(
            "t2v_720p",
            "jimeng_t2v_v30",
            "720p",
            0,
            0,
            True,
            False,
            "jimeng-video-3.0-720P",
            "Text-to-video, 720P. The default.",
        ),
        ModeSpec(
            "i2v_first_720p",
            "jimeng_i2v_first_v30",
            "720p",
            1,
            1,
            False,
            False,
            "jimeng-video-3.0-720P",
            "One image animated from the first frame, 720P.",
        ),
        ModeSpec(
            "i2v_first_tail_720p",
            "jimeng_i2v_first_tail_v30",
            "720p",
            2,
            2,
            False,
            False,
            "jimeng-video-3.0-720P",
            "A transition from a first to a last image, 720P.",
        ),
        ModeSpec(
            "i2v_recamera_720p",
            "jimeng_i2v_recamera_v30",
            "720p",
            1,
            1,
            False,
            True,
            "jimeng-video-3.0-720P",
            "One image with a camera move (template and strength), 720P.",
        ),
        ModeSpec(
            "t2v_1080p",
            "jimeng_t2v_v30_1080p",
            "1080p",
            0,
            0,
            True,
            False,
            "jimeng-video-3.0-1080P",
            "Text-to-video, 1080P.",
        ),
        ModeSpec(
            "i2v_first_1080p",
            "jimeng_i2v_first_v30_1080",
            "1080p",
            1,
            1,
            False,
            False,
            "jimeng-video-3.0-1080P",
            "One image animated from the first frame, 1080P.",
        ),
        ModeSpec(
            "i2v_first_tail_1080p",
            "jimeng_i2v_first_tail_v30_1080",
            "1080p",
            2,
            2,
            False,
            False,
            "jimeng-video-3.0-1080P",
            "A transition from a first to a last image, 1080P.",
        ),
    )
}

REQ_KEY_TO_MODE: Final[dict[str, JimengMode]] = {s.req_key: s.name for s in JIMENG.values()}

#: TokenOps model -> the req_keys it accepts (contracts.md §2: each model only its own).
TOKENOPS_MODELS: Final[dict[str, frozenset[str]]] = {
    model: frozenset(s.req_key for s in JIMENG.values() if s.tokenops_model == model)
    for model in ("jimeng-video-3.0-pro", "jimeng-video-3.0-720P", "jimeng-video-3.0-1080P")
}


@dataclass(frozen=True, slots=True)
class OmniHumanSpec:
    """OmniHuman 1.5 (contracts.md §1.5, §2)."""

    video_req_key: str = "jimeng_realman_avatar_picture_omni_v15"
    detection_req_key: str = "jimeng_realman_avatar_object_detection"
    recognition_req_key: str = "jimeng_realman_avatar_picture_create_role_omni_v15"
    tokenops_model: str = "OmniHuman_1.5"
    max_subjects: int = 5
    default_resolution: OmniResolution = 1080


OMNIHUMAN: Final = OmniHumanSpec()


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """A Jenius scene effect (seed 000). The full scene list is not documented; this grows."""

    name: str
    title: str
    summary: str
    min_images: int
    max_images: int
    photo_advice: str


SCENES: Final[dict[str, SceneSpec]] = {
    "celebrity": SceneSpec(
        "celebrity",
        "Photo with celebrities",
        "The person in one personal photo shakes hands with several famous people.",
        1,
        1,
        "One clear, front-facing photo of a single person.",
    ),
    "family": SceneSpec(
        "family",
        "Family New-Year greeting",
        "Photos of family members composed into a reunion video in which each appears in "
        "turn and sends New-Year wishes.",
        1,
        9,
        "One photo per family member, each showing one person clearly.",
    ),
}

#: Output sizes. ti2v_pro's are documented (contracts.md §1.2); the 720P and 1080P families
#: are an assumption (the usual 1280x720 and 1920x1080 families, even sides for H.264).
OUTPUT_SIZES: Final[dict[str, dict[AspectRatio, tuple[int, int]]]] = {
    "pro": {
        "21:9": (2176, 928),
        "16:9": (1920, 1088),
        "4:3": (1664, 1248),
        "1:1": (1440, 1440),
        "3:4": (1248, 1664),
        "9:16": (1088, 1920),
    },
    "1080p": {
        "21:9": (2520, 1080),
        "16:9": (1920, 1080),
        "4:3": (1440, 1080),
        "1:1": (1080, 1080),
        "3:4": (1080, 1440),
        "9:16": (1080, 1920),
    },
    "720p": {
        "21:9": (1680, 720),
        "16:9": (1280, 720),
        "4:3": (960, 720),
        "1:1": (720, 720),
        "3:4": (720, 960),
        "9:16": (720, 1280),
    },
}


def size_family(mode: JimengMode) -> str:
    """The key of OUTPUT_SIZES that a mode renders in."""
    return "pro" if mode == "ti2v_pro" else JIMENG[mode].resolution


def output_size(
    mode: JimengMode, aspect_ratio: AspectRatio = DEFAULT_ASPECT_RATIO
) -> tuple[int, int]:
    """The documented (or assumed) width and height of a mode's output at an aspect ratio."""
    return OUTPUT_SIZES[size_family(mode)][aspect_ratio]


def nearest_aspect_ratio(width: int, height: int) -> AspectRatio:
    """The supported ratio closest to width/height (image modes pick it and centre-crop)."""

    def ratio(ar: AspectRatio) -> float:
        w, h = ar.split(":")
        return int(w) / int(h)

    return min(ASPECT_RATIOS, key=lambda ar: abs(ratio(ar) - width / height))


def provider_clip_seconds(duration: int) -> int:
    """The provider clip (5 or 10 s) a requested duration is cut from: the next longer one."""
    return 5 if duration <= 5 else 10
