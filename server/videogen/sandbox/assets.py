"""Test inputs the sandbox hosts itself, so image and audio URLs can point somewhere real.

``GET /assets/image/<w>x<h>[-<variant>].png|.jpg`` — a deterministic picture; variant ``uniform``
is one flat colour (subject detection finds nobody), any other variant draws one to three
"people". ``GET /assets/audio/<seconds>s.wav`` — a mono tone of that length (OmniHuman refuses
60 s or more at poll time, like the real service).

Over HTTP an asset is served only with ``?key=<ASSET_KEY>``, a secret made per process: drawing
one costs up to seconds of CPU, so only this process's own code (its tests, its adapters, via
``RunningSandbox.asset_url``) may ask for one. An asset URL given as a provider input is
resolved in-process, with or without the key.
"""

from __future__ import annotations

import functools
import io
import re
import secrets
import wave
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

import numpy as np
import numpy.typing as npt

from videogen.sandbox.images import png, test_image

_IMAGE: Final = re.compile(
    r"/assets/image/(\d{1,4})x(\d{1,4})(?:-([A-Za-z0-9_]{1,32}))?\.(png|jpg)"
)
_AUDIO: Final = re.compile(r"/assets/audio/(\d{1,3}(?:\.\d{1,3})?)s\.wav")
MAX_ASSET_SIDE: Final = 4096
#: The per-process secret an HTTP asset request must carry as ``?key=``.
ASSET_KEY: Final = secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Asset:
    data: bytes
    content_type: str


def audio_seconds(path: str) -> float | None:
    """The length of a sandbox audio asset from its path, or None if the path is not one."""
    match = _AUDIO.fullmatch(path)
    return float(match.group(1)) if match else None


@functools.lru_cache(maxsize=8)  # bounded: a few recent assets, each drawn once
def asset(path: str) -> Asset | None:
    """The bytes of a sandbox asset path, or None when no asset has that path."""
    if (m := _IMAGE.fullmatch(path)) is not None:
        width, height = int(m.group(1)), int(m.group(2))
        if not (8 <= width <= MAX_ASSET_SIDE and 8 <= height <= MAX_ASSET_SIDE):
            return None
        pixels = test_image(width, height, m.group(3) or "scene")
        if m.group(4) == "png":
            return Asset(png(pixels), "image/png")
        return Asset(jpeg(pixels), "image/jpeg")
    if (seconds := audio_seconds(path)) is not None and seconds <= 600:
        return Asset(wav_tone(seconds), "audio/wav")
    return None


def jpeg(pixels: npt.NDArray[np.uint8]) -> bytes:
    """Encode RGB pixels (even sides) as a baseline JPEG with PyAV's mjpeg encoder."""
    import av

    height, width, _ = pixels.shape
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width // 2 * 2, height // 2 * 2
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(
        np.ascontiguousarray(pixels[: codec.height, : codec.width]), format="rgb24"
    ).reformat(format="yuvj420p")
    packets = codec.encode(frame) + codec.encode(None)
    return b"".join(bytes(p) for p in packets)


def wav_tone(seconds: float, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 330 * t) * 8000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()
