"""Turn the caller's input references into checked provider inputs. Reads files; never sends.

A reference is a URL (``http``/``https``: passed through untouched, the provider fetches it), a
local path, or a ``data:`` URL. Local and data images are read off the event loop, capped in
size *before* they are read whole, and checked by content: JPEG or PNG by their magic bytes (the
name is never trusted), at most 4.7 MB, at most 4096×4096, short side at least 320 px, long/short
at most 3 — the providers' own limits (contracts.md §1.2), so nothing is billed for an image
they would refuse. Where a provider only takes URLs (Jenius images, OmniHuman portraits, all
audio and masks) a local file is refused with a message saying a public URL is needed — unless
object storage is configured (``staging``): then it is read and checked the same way and
returned as ``Staged``, for the engine to upload once the task is recorded and to send as a
short-lived presigned link (``storage.py``).

Hostile references (NUL bytes, ``..``, FIFOs, devices, directories, symlinks to any of them,
a private key named ``photo.png``, ``~nosuchuser/x.png``) end in an ``InputError``, never a hang
or a traceback.

Whose files: local paths are read on the user's own machine (the CLI, the stdio server). For
clients over HTTP (``folders`` given) a path is refused, or — when the operator names input
folders (``VIDEOGEN_INPUT_DIRS``) — read only if it lies in one of them once every symlink is
resolved; anything else gets one neutral error that says nothing about what is at that path.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import anyio

from videogen.catalog import (
    AUDIO_MAX_BYTES,
    IMAGE_MAX_BYTES,
    IMAGE_MAX_RATIO,
    IMAGE_MAX_SIDE,
    IMAGE_MIN_SHORT_SIDE,
    uploads_images,
)
from videogen.errors import InputError
from videogen.imageheader import image_type, read_header
from videogen.models import GenerationRequest
from videogen.providers.base import PreparedImage, PreparedInputs

RefKind = Literal["url", "data", "path"]

#: First and tail frames must share an aspect ratio; this much relative difference is allowed
#: (cropping to even sides and phone cameras' odd sizes differ by well under 2%).
TAIL_RATIO_TOLERANCE: Final = 0.02

_SCHEME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DATA_URL: Final = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),", re.I)
_URL_ONLY_FIX: Final = (
    "pass its public http(s) URL instead of a local file or data URL, or have the server's "
    "operator set VIDEOGEN_STORAGE_URL (s3://bucket/prefix) so local files are uploaded for the "
    "provider"
)
#: Audio files by their first bytes (the name is never trusted).
_AUDIO_MAGIC: Final = (
    (0, b"ID3", "audio/mpeg", ".mp3"),
    (0, b"OggS", "audio/ogg", ".ogg"),
    (0, b"fLaC", "audio/flac", ".flac"),
    (8, b"WAVE", "audio/wav", ".wav"),
    (4, b"ftyp", "audio/mp4", ".m4a"),
)
#: Which local files may be read: None for any (the user's own machine), else only files in
#: these folders (none at all when empty).
Folders = tuple[Path, ...] | None


def describe(ref: str) -> str:
    """A short, safe rendering of a reference for messages (data URLs are never echoed)."""
    if ref[:5].lower() == "data:":
        return "the data URL"
    shown = ref if len(ref) <= 80 else ref[:77] + "..."
    return repr(shown.replace("\x00", "\\0"))


def classify_ref(ref: str, *, label: str = "image") -> RefKind:
    """What kind of reference ``ref`` is, with no I/O. Raises ``InputError`` when unusable."""
    if not ref or not ref.strip():
        raise InputError(f"The {label} reference is empty: give a URL, a local path or a data URL.")
    if "\x00" in ref:
        raise InputError(f"The {label} reference contains a NUL byte: give a plain path or URL.")
    head = ref[:8].lower()
    if head.startswith(("http://", "https://")):
        if not ref.split("://", 1)[1].split("/", 1)[0]:
            raise InputError(f"The {label} URL {describe(ref)} has no host: give a full URL.")
        return "url"
    if head.startswith("data:"):
        return "data"
    if _SCHEME.match(ref):
        raise InputError(
            f"The {label} reference {describe(ref)} uses an unsupported scheme: give an "
            "http(s) URL, a local file path or a data: URL."
        )
    return "path"


def require_url(ref: str, *, label: str, why: str) -> str:
    """``ref`` if it is an http(s) URL; otherwise an ``InputError`` saying a URL is needed."""
    if classify_ref(ref, label=label) != "url":
        raise InputError(
            f"The {label} {describe(ref)} must be a public http(s) URL ({why}): {_URL_ONLY_FIX}."
        )
    return ref


async def prepare_image(
    ref: str, *, allow_upload: bool, label: str = "image", folders: Folders = None
) -> PreparedImage:
    """A URL passed through, or a local/data image read, checked and base64-encoded.

    ``allow_upload`` False refuses anything but a URL; ``folders`` confines local paths (see the
    module docstring). Raises ``InputError`` naming ``label``.
    """
    kind = classify_ref(ref, label=label)
    if kind == "url":
        return PreparedImage(url=ref)
    if not allow_upload:
        raise InputError(
            f"The {label} {describe(ref)} must be a public http(s) URL (this "
            f"provider or mode cannot take uploaded images): {_URL_ONLY_FIX}."
        )
    data, mime, width, height = await _read_image(ref, kind, label, folders)
    return PreparedImage(
        base64=base64.b64encode(data).decode("ascii"), mime=mime, width=width, height=height
    )


async def _read_image(
    ref: str, kind: RefKind, label: str, folders: Folders
) -> tuple[bytes, str, int, int]:
    """A local or data image's bytes, checked: ``(data, mime, width, height)``."""
    if kind == "data":
        data = _decode_data_url(ref, label=label)
    else:
        data = await anyio.to_thread.run_sync(_read_file, ref, label, folders, IMAGE_MAX_BYTES)
        label = f"{label} {describe(ref)}"  # name the file: several may have been given
    mime, width, height = check_image_bytes(data, label=label)
    return data, mime, width, height


@dataclass(frozen=True, slots=True)
class Staged:
    """A local file (or data URL) given where the provider takes only URLs, read and checked:
    the engine uploads it once the task is recorded and sends a presigned link instead."""

    name: str  # the input it is: image-1, audio, mask-1
    suffix: str  # .png, .wav...
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Checked:
    """The request's inputs after checking; a staged input's slot is empty until its link is
    known (``with_links``)."""

    inputs: PreparedInputs
    staged: tuple[Staged, ...] = ()

    def with_links(self, links: Mapping[str, str]) -> PreparedInputs:
        """The inputs to send, each staged one replaced by its link (``links`` by name)."""
        images = tuple(
            PreparedImage(url=links[f"image-{n}"]) if f"image-{n}" in links else image
            for n, image in enumerate(self.inputs.images, 1)
        )
        audio = links.get("audio", self.inputs.audio_url)
        masks = tuple(links.get(f"mask-{n}", m) for n, m in enumerate(self.inputs.mask_urls, 1))
        return PreparedInputs(images=images, audio_url=audio, mask_urls=masks)


async def prepare_inputs(
    request: GenerationRequest, *, accepts_uploaded_images: bool, folders: Folders = None
) -> PreparedInputs:
    """Check and prepare every input of ``request`` for a provider, refusing local files where
    only URLs are taken (``check_inputs`` without staging)."""
    checked = await check_inputs(
        request, accepts_uploaded_images=accepts_uploaded_images, folders=folders
    )
    return checked.inputs


async def check_inputs(
    request: GenerationRequest,
    *,
    accepts_uploaded_images: bool,
    folders: Folders = None,
    staging: bool = False,
) -> Checked:
    """Check and prepare every input of ``request`` for a provider.

    Images may be uploaded only when the provider accepts uploads and the mode does
    (``catalog.uploads_images``: OmniHuman and scenes take URLs). Audio and masks are always
    URLs. Where only a URL is taken, a local file or data URL is refused — or, with
    ``staging`` (object storage configured), read, checked and returned as ``Staged``. A tail
    frame must share the first frame's aspect ratio when both sizes are known (i.e. both were
    uploaded). Local paths are confined to ``folders`` unless it is None.
    """
    allow_upload = accepts_uploaded_images and uploads_images(request.mode)
    staged: list[Staged] = []
    images = []
    for n, (ref, label) in enumerate(zip(request.images, _image_labels(request), strict=True), 1):
        kind = classify_ref(ref, label=label)
        if allow_upload or not staging or kind == "url":
            images.append(
                await prepare_image(ref, allow_upload=allow_upload, label=label, folders=folders)
            )
            continue
        data, mime, width, height = await _read_image(ref, kind, label, folders)
        staged.append(Staged(f"image-{n}", _IMAGE_SUFFIX[mime], mime, data))
        images.append(PreparedImage(mime=mime, width=width, height=height))
    if request.mode in ("i2v_first_tail_720p", "i2v_first_tail_1080p") and len(images) == 2:
        check_same_ratio(images[0], images[1])
    stage = staged if staging else None
    audio = None
    if request.audio is not None:
        why = "no provider accepts audio uploads"
        audio = await _url_or_staged(request.audio, "audio", "audio", why, stage, folders)
    why = "masks are passed to the provider by URL"
    masks = tuple(
        [
            await _url_or_staged(m, f"mask {n}", f"mask-{n}", why, stage, folders)
            for n, m in enumerate(request.masks, 1)
        ]
    )
    inputs = PreparedInputs(images=tuple(images), audio_url=audio, mask_urls=masks)
    return Checked(inputs, tuple(staged))


_IMAGE_SUFFIX: Final = {"image/png": ".png", "image/jpeg": ".jpg"}


async def _url_or_staged(
    ref: str, label: str, name: str, why: str, staged: list[Staged] | None, folders: Folders
) -> str:
    """An audio or mask reference: its URL, or (``staged`` given) "" with the file read,
    checked and added to ``staged``; otherwise a refusal saying a URL is needed."""
    kind = classify_ref(ref, label=label)
    if kind == "url" or staged is None:
        return require_url(ref, label=label, why=why)
    limit = AUDIO_MAX_BYTES if name == "audio" else IMAGE_MAX_BYTES
    if kind == "data":
        data = _decode_data_url(ref, label=label, limit=limit)
    else:
        data = await anyio.to_thread.run_sync(_read_file, ref, label, folders, limit)
        label = f"{label} {describe(ref)}"
    if name == "audio":
        content_type, suffix = _audio_type(data, label)
    else:
        content_type = image_type(data) or ""
        if content_type not in _IMAGE_SUFFIX:
            raise InputError(f"The {label} is not a PNG or JPEG mask: give the mask image "
                             "detect_subjects returned, or its URL.")  # fmt: skip
        suffix = _IMAGE_SUFFIX[content_type]
    staged.append(Staged(name, suffix, content_type, data))
    return ""


def _audio_type(data: bytes, label: str) -> tuple[str, str]:
    """``(content type, suffix)`` of an audio file judged by its first bytes."""
    for offset, magic, content_type, suffix in _AUDIO_MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return content_type, suffix
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:  # an MPEG frame header
        return "audio/mpeg", ".mp3"
    raise InputError(
        f"The {label} is not an audio file videogen recognises (MP3, WAV, M4A, OGG or FLAC, "
        "judged by its content): convert it to MP3 or WAV."
    )


def _image_labels(request: GenerationRequest) -> list[str]:
    count = len(request.images)
    if request.mode in ("i2v_first_tail_720p", "i2v_first_tail_1080p") and count == 2:
        return ["first-frame image", "tail-frame image"]
    if request.mode == "omnihuman":
        return ["portrait image"] * count
    if count == 1:
        return ["image"]
    return [f"image {i}" for i in range(1, count + 1)]


def check_same_ratio(first: PreparedImage, tail: PreparedImage) -> None:
    """Refuse a tail frame whose aspect ratio differs from the first frame's."""
    if not (first.width and first.height and tail.width and tail.height):
        return  # a URL: its size is unknown here, the provider checks it
    a, b = first.width / first.height, tail.width / tail.height
    if abs(a - b) / a > TAIL_RATIO_TOLERANCE:
        raise InputError(
            f"The tail-frame image is {tail.width}×{tail.height} but the first-frame image is "
            f"{first.width}×{first.height}: both frames must have the same aspect ratio. Crop "
            "one of them to match the other."
        )


def check_image_bytes(data: bytes, *, label: str = "image") -> tuple[str, int, int]:
    """``(mime, width, height)`` of a JPEG/PNG within the provider limits, else ``InputError``."""
    if len(data) > IMAGE_MAX_BYTES:
        raise _too_large(label, len(data))
    mime = image_type(data)
    if mime is None:
        raise InputError(
            f"The {label} is not a JPEG or PNG image (judged by its content, not its "
            "name): convert it to JPEG or PNG."
        )
    header = read_header(data)
    if header is None:
        raise InputError(
            f"The {label} looks like a {mime[6:].upper()} but its size cannot be read "
            "(truncated or damaged file): re-save it and try again."
        )
    _check_dimensions(header.width, header.height, label)
    return mime, header.width, header.height


def _check_dimensions(width: int, height: int, label: str) -> None:
    if width > IMAGE_MAX_SIDE or height > IMAGE_MAX_SIDE:
        raise InputError(
            f"The {label} is {width}×{height}: at most {IMAGE_MAX_SIDE}×"
            f"{IMAGE_MAX_SIDE} is accepted. Scale it down."
        )
    short, long = sorted((width, height))
    if short < IMAGE_MIN_SHORT_SIDE:
        raise InputError(
            f"The {label} is {width}×{height}: its short side must be at least "
            f"{IMAGE_MIN_SHORT_SIDE} px. Use a larger image."
        )
    if long / short > IMAGE_MAX_RATIO:
        raise InputError(
            f"The {label} is {width}×{height}: the long side may be at most "
            f"{IMAGE_MAX_RATIO:g}× the short side. Crop it closer to square."
        )


def _too_large(label: str, size: int, limit: int = IMAGE_MAX_BYTES) -> InputError:
    return InputError(
        f"The {label} is {size / 1e6:.1f} MB: at most {limit / 1e6:.1f} MB "
        "is accepted. Compress or shorten it."
    )


def _decode_data_url(ref: str, *, label: str, limit: int = IMAGE_MAX_BYTES) -> bytes:
    match = _DATA_URL.match(ref)
    if match is None or ";base64" not in match.group("params").lower():
        raise InputError(
            f"The {label} data URL is not of the form data:<type>;base64,<data>: "
            "give a base64 data URL, a local path or an http(s) URL."
        )
    payload = ref[match.end() :].strip()
    # Cap before decoding: base64 is 4 characters per 3 bytes.
    if len(payload) * 3 // 4 > limit + 3:
        raise _too_large(label, len(payload) * 3 // 4, limit)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(
            f"The {label} data URL does not hold valid base64: re-encode the image "
            "or pass its path instead."
        ) from None


def _read_file(
    ref: str, label: str, folders: Folders = None, limit: int = IMAGE_MAX_BYTES
) -> bytes:
    """Read a local input file, refusing anything that is not a regular file of at most
    ``limit`` bytes. Blocking."""
    path = _checked_path(ref, label, folders)
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    if folders is not None:
        # The path is resolved already: a symlink there now was swapped in after the check.
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputError(
            f"The {label} file {describe(ref)} does not exist: check the path "
            "(a relative path is taken from the current directory; in a tool call, from the "
            "MCP server's)."
        ) from None
    except IsADirectoryError:
        raise _not_a_file(label, ref, "a directory") from None
    except PermissionError:
        raise InputError(
            f"The {label} file {describe(ref)} cannot be read (permission denied): "
            "make it readable or pass a URL."
        ) from None
    except OSError as error:
        if folders is not None and error.errno == errno.ELOOP:
            raise _outside(label, ref, folders) from None
        raise InputError(
            f"The {label} file {describe(ref)} cannot be opened ({error.strerror}): "
            "pass a readable image file or a URL."
        ) from None
    try:
        _check_opened(os.fstat(fd), label, ref, limit)
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)  # the file may grow after fstat
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _too_large(f"{label} {describe(ref)}", len(data), limit)
    return data


def _check_opened(info: os.stat_result, label: str, ref: str, limit: int) -> None:
    """Refuse what an opened descriptor must not be: a directory, a device/pipe, a huge file."""
    if stat.S_ISDIR(info.st_mode):
        raise _not_a_file(label, ref, "a directory")
    if not stat.S_ISREG(info.st_mode):
        raise _not_a_file(label, ref, "a device, pipe or socket")
    if info.st_size > limit:
        raise _too_large(f"{label} {describe(ref)}", info.st_size, limit)


def _checked_path(ref: str, label: str, folders: Folders = None) -> str:
    """The path to open: ``~`` expanded, and with ``folders`` resolved and inside one of them."""
    if folders is not None and not folders:
        raise InputError(
            f"The {label} {describe(ref)} is a path on the server, which does not read its own "
            "files for clients over HTTP: pass an https URL or a data: URL of the image instead "
            "(the server's operator can allow folders with VIDEOGEN_INPUT_DIRS)."
        )
    if ".." in re.split(r"[\\/]", ref):
        raise InputError(
            f"The {label} path {describe(ref)} contains '..': give the file's full "
            "path without parent-directory steps."
        )
    try:
        path = Path(ref).expanduser()
    except RuntimeError:  # ~name of a user this system does not have
        if folders is not None:
            raise _outside(label, ref, folders) from None
        user = re.split(r"[\\/]", ref[1:], maxsplit=1)[0]
        raise InputError(
            f"The {label} path {describe(ref)} starts with ~{user}, but this computer has no "
            f"user {user!r}: give the file's full path."
        ) from None
    if folders is None:
        return str(path)
    real = os.path.realpath(path)  # every symlink resolved; a missing tail stays as written
    if not any(_within(real, folder) for folder in folders):
        raise _outside(label, ref, folders)
    return real


def _within(real: str, folder: Path) -> bool:
    base = os.path.realpath(folder)
    try:
        return os.path.commonpath([real, base]) == base
    except ValueError:  # different drives (Windows)
        return False


def _outside(label: str, ref: str, folders: tuple[Path, ...]) -> InputError:
    """One answer for every path outside the input folders, whatever is (or is not) there."""
    names = ", ".join(str(f) for f in folders)
    return InputError(
        f"The {label} {describe(ref)} is not a file in the server's input folders ({names}): "
        "put the image in one of them and pass that path, or pass an https URL or a data: URL."
    )


def _not_a_file(label: str, ref: str, what: str) -> InputError:
    return InputError(
        f"The {label} path {describe(ref)} is {what}, not a file: give the path of the "
        f"{label} file itself."
    )
