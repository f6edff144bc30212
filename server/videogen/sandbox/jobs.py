"""What every provider front shares: input checks, image resolution, and what a task renders.

The provider modules parse their own wire shapes, then call these helpers with plain values.
A refusal is an ``Invalid`` carrying a Volcengine-style business code (50200, 50220, ...) and a
message naming the field; each front wraps it in its own error envelope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from videogen import catalog
from videogen.catalog import AspectRatio, JimengMode
from videogen.sandbox.assets import asset, audio_seconds
from videogen.sandbox.images import ImageInfo, image_info, png
from videogen.sandbox.render import RenderSpec, off_loop, placeholder_ref, store_image
from videogen.sandbox.state import SandboxState

MESSAGES: Final[dict[int, str]] = {
    10000: "Success",
    50200: "Invalid parameter",
    50204: "Service not enabled",
    50215: "Input invalid for this service",
    50220: "Input URL could not be downloaded",
    50411: "Pre Img Risk Not Pass",
    50412: "Text Risk Not Pass",
    50413: "Post Text Risk Not Pass",
    50429: "Request Has Reached API Limit, Please Try Later",
    50430: "Request Has Reached API Concurrent Limit, Please Try Later",
    50500: "Internal Error",
    50516: "Post Video Risk Not Pass",
}


#: How long the sandbox waits for an input URL it fetches (see ``fetch``).
FETCH_TIMEOUT_SECONDS: Final = 10.0


def http_status_of(code: int) -> int:
    """The HTTP status a Volcengine business code travels with (contracts.md §1.4)."""
    if code == 10000:
        return 200
    if code in (50429, 50430):
        return 429
    if code in (50500, 50501):
        return 500
    return 400


class Invalid(Exception):
    """A refused request: business ``code`` and a message naming the field and the rule."""

    def __init__(self, code: int, detail: str = "") -> None:
        base = MESSAGES.get(code, "Error")
        super().__init__(f"{base}: {detail}" if detail else base)
        self.code = code
        self.message = str(self)


def field_error(name: str, rule: str) -> Invalid:
    return Invalid(50200, f"{name} {rule}")


# -- typed field readers -------------------------------------------------------------------


def check_fields(body: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise field_error(unknown[0], f"is not a field of {where} (allowed: {sorted(allowed)})")


def text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise field_error(name, "is required")
        return None
    if not isinstance(value, str):
        raise field_error(name, "must be a string")
    if required and not value.strip():
        raise field_error(name, "must not be empty")
    return value


def integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(name, "must be an integer")
    return value


def boolean(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise field_error(name, "must be true or false")
    return value


def string_list(body: dict[str, Any], name: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise field_error(name, "must be a list of strings")
    return value


def prompt_of(value: str | None, *, limit: int, required: bool, name: str = "prompt") -> str:
    if value is None or not value.strip():
        if required:
            raise field_error(name, "is required")
        return ""
    if len(value) > limit:
        raise field_error(name, f"is {len(value)} characters long; at most {limit} are allowed")
    return value


def seed_of(value: int | None) -> int:
    if value is None:
        return -1
    if not -1 <= value <= 2**32 - 1:
        raise field_error("seed", "must be -1 (random) or between 0 and 4294967295")
    return value


def frames_of(value: int | None) -> int:
    if value is None:
        return 121
    if value not in catalog.FRAME_CHOICES:
        raise field_error("frames", f"must be 121 or 241 (got {value})")
    return value


def aspect_ratio_of(value: str | None) -> AspectRatio | None:
    if value is None:
        return None
    for ratio in catalog.ASPECT_RATIOS:
        if value == ratio:
            return ratio
    raise field_error("aspect_ratio", f"must be one of {', '.join(catalog.ASPECT_RATIOS)}")


# -- images --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Image:
    """An input image: a render reference and, when its bytes are known, its header info."""

    ref: str
    info: ImageInfo | None


def on_sandbox(state: SandboxState, url: str) -> str | None:
    """The path of a URL that points at this sandbox, else None (such URLs stay opaque)."""
    parts = urlsplit(url)
    mine = urlsplit(state.base_url)
    if parts.scheme != "http" or parts.port != mine.port:
        return None
    if parts.hostname not in ("127.0.0.1", "localhost", mine.hostname):
        return None
    return parts.path


def local_bytes(state: SandboxState, path: str) -> bytes | None:
    """The bytes behind a sandbox path (an asset or a live mask/file grant)."""
    found = asset(path)
    if found is not None:
        return found.data
    if path.startswith("/files/"):
        token = path.removeprefix("/files/").rsplit(".", 1)[0]
        grant = state.grants.get(token)
        if grant is not None and grant.data is not None and grant.expires_at > state.clock():
            return grant.data
    return None


def check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise field_error(name, "must be an http(s) URL")


def on_this_machine(state: SandboxState, url: str) -> bool:
    """True for a URL the sandbox fetches over HTTP, as the real providers fetch every input: a
    loopback host other than the sandbox itself (e.g. an object store's presigned link). The
    sandbox is offline: any other host's URL stays an opaque placeholder."""
    host = urlsplit(url).hostname or ""
    loopback = host == "localhost" or host == "::1" or host.startswith("127.")
    return loopback and on_sandbox(state, url) is None


async def fetch(name: str, url: str, limit: int) -> bytes:
    """GET an input URL as a provider would, bounded in time (``FETCH_TIMEOUT_SECONDS``) and
    size (``limit``); 50220 when it cannot be downloaded. Messages never echo the query (a
    presigned link's signature)."""
    import httpx2

    shown = url.split("?", 1)[0]
    try:
        async with (
            httpx2.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise Invalid(50220, f"{name} {shown} answered HTTP {response.status_code}")
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise field_error(name, f"is larger than {limit} bytes")
            return bytes(data)
    except httpx2.HTTPError as error:
        why = type(error).__name__
        raise Invalid(50220, f"{name} {shown} could not be downloaded ({why})") from None


async def image_from_url(state: SandboxState, name: str, url: str) -> Image:
    """A URL image: read if it is on the sandbox (50220 when it is missing there), fetched if it
    is elsewhere on this machine, else a placeholder (see ``on_this_machine``)."""
    check_url(name, url)
    if on_this_machine(state, url):
        return _image_from_bytes(name, await fetch(name, url, catalog.IMAGE_MAX_BYTES))
    path = on_sandbox(state, url)
    if path is None:
        return Image(placeholder_ref(url), None)
    data = local_bytes(state, path)
    if data is None:
        raise Invalid(50220, f"{name} {url} could not be downloaded")
    return _image_from_bytes(name, data)


async def audio_from_url(state: SandboxState, name: str, url: str) -> float | None:
    """Seconds of an audio URL when the sandbox can tell: its own asset, a URL on this machine
    (fetched and decoded; not audio: 50200), or a URL containing ``long-audio`` (taken as
    61 s, to select the ≥ 60 s refusal). None: opaque."""
    check_url(name, url)
    if on_this_machine(state, url):
        data = await fetch(name, url, catalog.AUDIO_MAX_BYTES)
        seconds = await off_loop(_audio_duration, data)
        if seconds is None:
            raise field_error(name, "is not an audio file")
        return seconds
    return audio_length(state, url)


async def check_masks(state: SandboxState, name: str, masks: list[str]) -> None:
    """Mask URLs on this machine are fetched and must be PNG or JPEG images."""
    for i, mask in enumerate(masks):
        if not on_this_machine(state, mask):
            continue
        if image_info(await fetch(f"{name}[{i}]", mask, catalog.IMAGE_MAX_BYTES)) is None:
            raise field_error(f"{name}[{i}]", "is not a JPEG or PNG image")


def _audio_duration(data: bytes) -> float | None:
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000
    except (av.FFmpegError, IndexError, ValueError):
        return None
    return None


def image_from_base64(name: str, value: str) -> Image:
    """A plain base64 image (no ``data:`` prefix): valid base64 of a JPEG or PNG."""
    if value.startswith("data:"):
        raise field_error(name, "must be plain base64 without a data: prefix")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise field_error(name, "is not valid base64") from None
    return _image_from_bytes(name, data)


def image_from_data_url(name: str, value: str) -> Image:
    """A ``data:image/png;base64,...`` URL (TokenOps ``image_base64``)."""
    head, sep, payload = value.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise field_error(name, "must be a data:image/(png|jpeg);base64,... URL")
    return image_from_base64(name, payload)


def _image_from_bytes(name: str, data: bytes) -> Image:
    info = image_info(data)
    if info is None:
        raise field_error(name, "is not a JPEG or PNG image")
    check_image_limits(name, info, len(data))
    return Image(store_image(data), info)


def check_image_limits(name: str, info: ImageInfo, size: int) -> None:
    """contracts.md §1.2: ≤ 4.7 MB, ≤ 4096 px, short side ≥ 320 px, long/short ≤ 3."""
    short, long = sorted((info.width, info.height))
    if size > catalog.IMAGE_MAX_BYTES:
        raise field_error(name, f"is {size} bytes; at most {catalog.IMAGE_MAX_BYTES} are allowed")
    if long > catalog.IMAGE_MAX_SIDE:
        raise field_error(name, f"is {info.width}x{info.height}; at most 4096 px a side")
    if short < catalog.IMAGE_MIN_SHORT_SIDE:
        raise field_error(name, f"is {info.width}x{info.height}; the short side must be ≥ 320 px")
    if long / short > catalog.IMAGE_MAX_RATIO:
        raise field_error(name, f"is {info.width}x{info.height}; long/short must be at most 3")


def image_ratio(image: Image, default: AspectRatio) -> AspectRatio:
    if image.info is None:
        return default
    return catalog.nearest_aspect_ratio(image.info.width, image.info.height)


# -- what a task renders -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JimengParams:
    mode: JimengMode
    prompt: str
    frames: int
    aspect_ratio: AspectRatio | None
    images: tuple[Image, ...]
    camera: str | None = None
    strength: str | None = None


def check_jimeng(p: JimengParams) -> None:
    """The per-mode rules shared by Volcengine and TokenOps (contracts.md §1.2)."""
    spec = catalog.JIMENG[p.mode]
    count = len(p.images)
    if not spec.min_images <= count <= spec.max_images:
        want = (
            f"exactly {spec.min_images}"
            if spec.min_images == spec.max_images
            else f"{spec.min_images} to {spec.max_images}"
        )
        raise field_error("images", f"{spec.req_key} takes {want} image(s), got {count}")
    if p.aspect_ratio is not None and count:
        raise field_error("aspect_ratio", "is only for text-to-video (no images)")
    needs_prompt = not (p.mode == "ti2v_pro" and count)
    if needs_prompt and not p.prompt.strip():
        raise field_error("prompt", "is required")
    if spec.camera and (p.camera is None or p.strength is None):
        missing = "template_id" if p.camera is None else "camera_strength"
        raise field_error(missing, f"is required for {spec.req_key}")
    if count == 2 and p.images[0].info and p.images[1].info:
        first, tail = p.images[0].info, p.images[1].info
        if not math.isclose(first.width / first.height, tail.width / tail.height, rel_tol=0.02):
            raise field_error("images", "the tail frame must have the first frame's aspect ratio")


def camera_of(body: dict[str, Any], allowed: bool) -> tuple[str | None, str | None]:
    template = text(body, "template_id")
    strength = text(body, "camera_strength")
    if not allowed:
        for name, value in (("template_id", template), ("camera_strength", strength)):
            if value is not None:
                raise field_error(name, "is only for jimeng_i2v_recamera_v30")
        return None, None
    if template is not None and template not in catalog.CAMERA_MOVES:
        raise field_error("template_id", f"must be one of {', '.join(catalog.CAMERA_MOVES)}")
    if strength is not None and strength not in catalog.CAMERA_STRENGTHS:
        raise field_error("camera_strength", "must be weak, medium or strong")
    return template, strength


def jimeng_render(p: JimengParams) -> RenderSpec:
    """The video a Jimeng task shows: its size from the mode and the ratio (image modes: the
    nearest ratio of the first image), 24 fps, the requested frame count."""
    spec = catalog.JIMENG[p.mode]
    refs = tuple(i.ref for i in p.images)
    ratio = (
        image_ratio(p.images[0], catalog.DEFAULT_ASPECT_RATIO)
        if p.images
        else (p.aspect_ratio or catalog.DEFAULT_ASPECT_RATIO)
    )
    width, height = catalog.output_size(p.mode, ratio)
    kind = "text"
    if len(refs) == 2:
        kind = "first_tail"
    elif refs:
        kind = "camera" if spec.camera else "first"
    return RenderSpec(
        kind=kind,  # type: ignore[arg-type]
        width=width,
        height=height,
        frames=p.frames,
        text=p.prompt,
        images=refs,
        camera=p.camera,
        strength=p.strength,
    )


def omni_options(body: dict[str, Any], masks: list[str], masks_field: str) -> tuple[str, int]:
    """The OmniHuman video fields both fronts check alike (masks, prompt, seed, resolution, fast
    mode); returns the prompt and the output resolution. Only the masks' field name differs:
    ``mask_url`` on Volcengine, ``mask_urls`` on TokenOps."""
    omni = catalog.OMNIHUMAN
    if len(masks) > omni.max_subjects:
        raise field_error(masks_field, f"holds at most {omni.max_subjects} URLs")
    for i, mask in enumerate(masks):
        check_url(f"{masks_field}[{i}]", mask)
    prompt = prompt_of(
        text(body, "prompt"), limit=catalog.OMNIHUMAN_PROMPT_MAX_CHARS, required=False
    )
    seed_of(integer(body, "seed"))
    resolution = integer(body, "output_resolution")
    if resolution is not None and resolution not in (720, 1080):
        raise field_error("output_resolution", "must be 720 or 1080")
    boolean(body, "pe_fast_mode")
    return prompt, resolution or omni.default_resolution


def omni_render(image: Image, resolution: int, audio_length: float | None) -> RenderSpec:
    """OmniHuman: the portrait at 720/1080 lines (9:16 unless the image says otherwise), as
    long as the audio (5 s when the audio is opaque), with a tone."""
    ratio = image_ratio(image, "9:16")
    family = "720p" if resolution == 720 else "1080p"
    width, height = catalog.OUTPUT_SIZES[family][ratio]
    seconds = audio_length if audio_length is not None else 5.0
    frames = max(2, round(seconds * catalog.PROVIDER_FPS) + 1)
    return RenderSpec("portrait", width, height, frames, images=(image.ref,), audio=True)


def scene_render(scene: str, images: tuple[Image, ...]) -> RenderSpec:
    width, height = catalog.output_size("t2v_720p", "16:9")
    return RenderSpec("scene", width, height, 121, text=scene, images=tuple(i.ref for i in images))


def audio_length(state: SandboxState, url: str) -> float | None:
    """Seconds of an audio URL when the sandbox can tell: its own asset, or a URL containing
    ``long-audio`` (taken as 61 s, to select the ≥ 60 s refusal). None: opaque."""
    if "long-audio" in url:
        return 61.0
    path = on_sandbox(state, url)
    return audio_seconds(path) if path is not None else None


# -- OmniHuman subjects --------------------------------------------------------------------


async def subject_count(state: SandboxState, image: Image, url: str) -> int:
    """How many subjects an image holds, decided deterministically: a one-colour image (or a
    foreign URL containing ``no-subject``) has none; otherwise one to three, from its bytes.
    Decoding runs in a worker thread."""
    if image.info is None:
        if "no-subject" in url or "uniform" in url:
            return 0
        return 1 + int(hashlib.sha256(url.encode()).hexdigest()[:2], 16) % 3
    path = on_sandbox(state, url)
    data = local_bytes(state, path) if path is not None else None
    if data is None or await off_loop(_looks_uniform, data):
        return 0
    return 1 + int(hashlib.sha256(data).hexdigest()[:2], 16) % 3


def _looks_uniform(data: bytes) -> bool:
    import av
    import numpy as np

    try:
        with av.open(io.BytesIO(data), "r") as container:
            frame = next(container.decode(video=0))
            pixels = frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, StopIteration, ValueError):
        return False
    return bool(np.ptp(pixels.reshape(-1, 3), axis=0).max() <= 2)


def mask_pngs(count: int, width: int = 256, height: int = 256) -> list[bytes]:
    """``count`` grey mask PNGs, one ellipse each, ordered largest first."""
    import numpy as np

    y, x = np.ogrid[0:height, 0:width]
    masks = []
    for k in range(count):
        radius = 0.4 - 0.08 * k
        cx = width * (0.3 + 0.2 * k)
        inside = ((x - cx) / (width * radius)) ** 2 + ((y - height / 2) / (height * radius)) ** 2
        masks.append(png(np.where(inside <= 1, 255, 0).astype(np.uint8)))
    return masks


async def detection_result(state: SandboxState, image: Image, url: str) -> tuple[int, list[str]]:
    """(status 0/1, mask URLs largest first) for a detection request."""
    count = min(catalog.OMNIHUMAN.max_subjects, await subject_count(state, image, url))
    urls = []
    for data in mask_pngs(count):
        mask_url, _ = state.grant(ext="png", content_type="image/png", data=data)
        urls.append(mask_url)
    return (1 if count else 0), urls


def resp_data_json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))
