"""A JPEG's or PNG's type and size from its first bytes, with no imaging library.

Used where images are judged by their content, not their name: the local-input checks
(``inputs``) and the sandbox's checks of what a provider would receive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
JPEG_SOI: Final = b"\xff\xd8"
#: JPEG start-of-frame markers that carry the image size (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS: Final = frozenset(
    {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}
)


@dataclass(frozen=True, slots=True)
class ImageHeader:
    mime: str
    width: int
    height: int


def image_type(data: bytes) -> str | None:
    """``image/png`` or ``image/jpeg`` by the file's signature; None for anything else."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(JPEG_SOI):
        return "image/jpeg"
    return None


def read_header(data: bytes) -> ImageHeader | None:
    """Type and size of a PNG or JPEG; None when it is neither, or its size cannot be read."""
    mime = image_type(data)
    size = _png_size(data) if mime == "image/png" else _jpeg_size(data) if mime else None
    if mime is None or size is None or not all(size):
        return None
    return ImageHeader(mime, *size)


def _png_size(data: bytes) -> tuple[int, int] | None:
    # Signature (8), then the IHDR chunk: length (4), type (4), width (4), height (4).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame and read its height and width."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # standalone markers carry no length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > len(data) or length < 7:
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if length < 2:
            return None
        i += 2 + length
    return None
