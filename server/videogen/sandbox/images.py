"""Small image helpers with no third-party imaging library: header sniffing and a PNG writer.

``image_info`` reads a JPEG's or PNG's type and size from its header (what the sandbox checks
at submit). ``png`` writes an 8-bit grey or RGB PNG (mask images and test assets).
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import numpy.typing as npt

from videogen.imageheader import PNG_SIGNATURE, ImageHeader, read_header

#: What the sandbox checks at submit: the same header reading the project's own input checks use.
ImageInfo = ImageHeader


def image_info(data: bytes) -> ImageInfo | None:
    """Type and size of a PNG or JPEG from its header; None when it is neither (or broken)."""
    return read_header(data)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(pixels: npt.NDArray[np.uint8]) -> bytes:
    """Encode an (h, w) grey or (h, w, 3) RGB uint8 array as PNG."""
    if pixels.ndim == 2:
        height, width = pixels.shape
        colour = 0
    else:
        height, width, _ = pixels.shape
        colour = 2
    rows = pixels.reshape(height, -1)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + (_chunk(b"IEND", b""))
    )


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_image(width: int, height: int, variant: str = "scene") -> npt.NDArray[np.uint8]:
    """A deterministic picture: ``uniform`` is one flat colour (no subject), anything else a
    gradient with one to three bright blobs ("people") decided by the variant name."""
    if variant == "uniform":
        return np.full((height, width, 3), (90, 140, 200), np.uint8)
    seed = int(hashlib.sha256(variant.encode()).hexdigest()[:8], 16)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [x / width * 200 + 30, y / height * 180 + 40, np.full_like(x, 60 + seed % 120)], axis=-1
    )
    for k in range(1 + seed % 3):
        cx = width * (0.25 + 0.25 * k)
        cy = height * 0.5
        r = min(width, height) * (0.22 - 0.05 * k)
        blob = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
        img[blob] = (240, 200, 170)
    return img.clip(0, 255).astype(np.uint8)
