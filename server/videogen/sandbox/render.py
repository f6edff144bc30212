"""The sandbox's video renderer: real H.264 MP4s drawn from the request, cheaply, and cached.

A ``RenderSpec`` says what to draw (the prompt on a moving background; an image animated, cross-
faded or moved by a camera template; a portrait with a tone for OmniHuman; a scene slideshow)
and at what size/length. Frames are synthetic numpy arrays encoded with libx264 ``ultrafast``
(yuv420p, 24 fps). Identical specs render once: renders are cached in a directory keyed by the
spec (a per-user temp directory shared by every process, or ``<state_dir>/renders`` for a
persistent sandbox), and concurrent requests for one spec wait for the first. The cache is
bounded: past ``CACHE_MAX_BYTES`` the least recently used renders (by mtime, refreshed on every
use) are deleted, at start and after each new render.

Off the loop, bounded: ``render`` (and ``off_loop`` for the sandbox's other heavy work) runs in
this module's own pool of ``RENDER_WORKERS`` threads — never on the event loop, and never in the
process-wide anyio thread pool that the program embedding the sandbox (the MCP server) needs
for its own work. So at most ``RENDER_WORKERS`` encodes hold frames in memory at once however
many tasks finish together, and the embedding program's loop keeps most of the CPU. A caller
waiting for a render already under way holds no thread: it awaits that render's future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from videogen.memory import return_freed_memory
from videogen.sandbox import font
from videogen.sandbox.images import test_image

RENDER_VERSION: Final = "4"
RENDERS_DIRNAME: Final = "renders"
#: The render cache's size cap; least recently used renders go first.
CACHE_MAX_BYTES: Final = 1 << 30
#: Temp files older than this are left by a killed process and are deleted by ``evict``.
STALE_TEMP_SECONDS: Final = 3600.0
#: Threads that encode videos (and draw assets) at once, process-wide: at most two (libx264 and
#: numpy release the GIL, so the embedding program's loop still runs; more would only add
#: frames in memory and GIL contention).
RENDER_WORKERS: Final = max(1, min(2, os.cpu_count() or 2))
RenderKind = Literal["text", "first", "first_tail", "camera", "portrait", "scene"]
Frame = npt.NDArray[np.uint8]
T = TypeVar("T")

_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL  # one bounded pool per process, shared by every sandbox and event loop
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                RENDER_WORKERS, thread_name_prefix="videogen-sandbox-render"
            )
        return _POOL


async def _await(future: concurrent.futures.Future[T]) -> T:
    """Wait for a pool job without holding a thread. A cancelled waiter leaves the job running
    for the others (it is shared); a job that ends after its waiter's loop has closed wakes
    nobody (and logs nothing)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def wake(_: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(done.set)

    future.add_done_callback(wake)
    await done.wait()
    return future.result()


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in the sandbox's bounded render pool (for CPU-heavy work)."""
    return await _await(_pool().submit(function, *args))


#: Image bytes by sha256, so specs stay small and hashable (a process-wide content store).
_IMAGES: dict[str, bytes] = {}
_IMAGES_LOCK = threading.Lock()


def store_image(data: bytes) -> str:
    """Keep image bytes for rendering; the returned digest goes into a ``RenderSpec``."""
    key = hashlib.sha256(data).hexdigest()
    with _IMAGES_LOCK:
        _IMAGES.setdefault(key, data)
    return key


def image_bytes(ref: str) -> bytes | None:
    """The bytes a ``store_image`` digest stands for, if this process has them."""
    return _IMAGES.get(ref)


def placeholder_ref(url: str) -> str:
    """A spec image reference that draws a placeholder for an image the sandbox cannot fetch."""
    return "placeholder:" + hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """What one video shows. ``images`` holds ``store_image`` digests or ``placeholder_ref``s."""

    kind: RenderKind
    width: int
    height: int
    frames: int
    fps: int = 24
    text: str = ""
    images: tuple[str, ...] = ()
    camera: str | None = None
    strength: str | None = None
    audio: bool = False

    def key(self) -> str:
        return hashlib.sha256(f"{RENDER_VERSION}|{self!r}".encode()).hexdigest()[:32]

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


class Renderer:
    """Renders specs to MP4 files once, in ``directory`` (default: a per-user temp dir), keeping
    the directory under ``max_bytes`` (least recently used renders are deleted first)."""

    def __init__(self, directory: Path | None = None, *, max_bytes: int = CACHE_MAX_BYTES) -> None:
        self.directory = directory or Path(tempfile.gettempdir()) / (
            f"videogen-sandbox-renders-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        )
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        #: Renders under way or queued, by spec key: later callers wait for the same future.
        self._pending: dict[str, concurrent.futures.Future[Path]] = {}
        self.renders = 0  # how many encodes this renderer actually ran (cache misses)
        self.evicted = 0  # how many renders the size cap has deleted
        self.encoding = 0  # encodes running right now (across this renderer's threads)
        self.peak_encoding = 0  # the most that ever ran at once
        self.evict()

    def path_of(self, spec: RenderSpec) -> Path:
        return self.directory / f"{spec.key()}.mp4"

    async def render(self, spec: RenderSpec) -> Path:
        """The spec's MP4, rendered in the bounded render pool if it is not cached yet; callers
        asking for a spec already being rendered share that render."""
        path = self.path_of(spec)
        if _touch(path):
            return path
        key = spec.key()
        with self._guard:
            future = self._pending.get(key)
            fresh = future is None
            if future is None:
                future = self._pending[key] = _pool().submit(self.render_sync, spec)
        if fresh:  # outside the guard: a job already done runs the callback at once
            future.add_done_callback(lambda _: self._forget(key))
        return await _await(future)

    def _forget(self, key: str) -> None:
        with self._guard:
            self._pending.pop(key, None)

    def evict(self, keep: Path | None = None) -> None:
        """Delete the least recently used renders until the cache fits ``max_bytes`` (never
        ``keep``), and temp files a killed process left. A reader that has a file open keeps
        reading it (POSIX); one that has not opened it yet re-renders it."""
        now = time.time()
        renders: list[tuple[float, int, Path]] = []
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return  # no directory yet: nothing cached
        for entry in entries:
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.name.endswith(".mp4"):
                renders.append((stat.st_mtime, stat.st_size, Path(entry.path)))
            elif entry.name.endswith(".tmp") and now - stat.st_mtime > STALE_TEMP_SECONDS:
                Path(entry.path).unlink(missing_ok=True)
        total = sum(size for _, size, _ in renders)
        for _, size, path in sorted(renders):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            self.evicted += 1

    def render_sync(self, spec: RenderSpec) -> Path:
        path = self.path_of(spec)
        with self._guard:
            lock = self._locks.setdefault(spec.key(), threading.Lock())
        with lock:
            if path.exists():
                return path
            self.directory.mkdir(parents=True, exist_ok=True)
            if not _copy_from_sibling(path):
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
                with self._guard:
                    self.encoding += 1
                    self.peak_encoding = max(self.peak_encoding, self.encoding)
                try:
                    encode(spec, tmp)
                    os.replace(tmp, path)  # atomic: other processes see all or nothing
                finally:
                    tmp.unlink(missing_ok=True)
                    with self._guard:
                        self.encoding -= 1
                    return_freed_memory()  # the frames and encoder buffers, ~90 MB at 1080p
                self.renders += 1
        self.evict(keep=path)
        return path


def _copy_from_sibling(path: Path) -> bool:
    """Take a render another cache of this process already has (a copy: caches evict on their
    own). Renders are pure functions of the spec, so any cache's file will do; this keeps
    several persistent sandboxes in one process (tests) from encoding the same video again."""
    with _BY_DIRECTORY_LOCK:
        others = [r.directory for r in (_DEFAULT, *_BY_DIRECTORY.values()) if r is not None]
    for directory in others:
        source = directory / path.name
        if directory == path.parent or not source.is_file():
            continue
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            continue
        return True
    return False


def _touch(path: Path) -> bool:
    """Mark a cached render as just used (its mtime orders eviction); False if it is absent."""
    try:
        os.utime(path)
    except OSError:
        return False
    return True


_DEFAULT: Renderer | None = None
_BY_DIRECTORY: dict[Path, Renderer] = {}
_BY_DIRECTORY_LOCK = threading.Lock()


def default_renderer() -> Renderer:
    """The process-wide renderer every sandbox shares (so tests share renders)."""
    global _DEFAULT  # one cache per process is the point of it
    if _DEFAULT is None:
        _DEFAULT = Renderer()
    return _DEFAULT


def renderer_for(directory: Path) -> Renderer:
    """The process-wide renderer of one cache directory (a persistent sandbox's)."""
    key = directory.resolve()
    with _BY_DIRECTORY_LOCK:
        renderer = _BY_DIRECTORY.get(key)
        if renderer is None:
            renderer = _BY_DIRECTORY[key] = Renderer(key)
        return renderer


# -- encoding ------------------------------------------------------------------------------


def encode(spec: RenderSpec, path: Path) -> None:
    """Write the spec's video (and tone) to ``path`` as MP4."""
    import av  # imported lazily: PyAV is heavy and only the renderer needs it

    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=spec.fps)
        video.width = spec.width
        video.height = spec.height
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "30"}
        audio = container.add_stream("aac", rate=44100) if spec.audio else None
        for i, pixels in enumerate(frames(spec)):
            frame = (
                av.VideoFrame.from_ndarray(pixels, format="yuv420p")
                if isinstance(pixels, np.ndarray)
                else pixels
            )
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            _encode_tone(av, container, audio, spec.seconds)


def _encode_tone(av: Any, container: Any, stream: Any, seconds: float) -> None:
    rate = 44100
    total = round(seconds * rate)
    t = np.arange(total, dtype=np.float32) / rate
    # a "voice": a 220 Hz tone whose loudness pulses like syllables
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    for start in range(0, total, 1024):
        chunk = wave[start : start + 1024].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


# -- drawing -------------------------------------------------------------------------------


def frames(spec: RenderSpec) -> Iterator[Any]:
    """The spec's frames, all yuv420p: (h*3/2, w) arrays, or PyAV frames (moving images)."""
    match spec.kind:
        case "text":
            return _text_frames(spec)
        case "first" | "camera":
            return _moving_image_frames(spec)
        case "first_tail":
            return _crossfade_frames(spec)
        case "portrait":
            return _portrait_frames(spec)
        case "scene":
            return _scene_frames(spec)


def _stamp_text(frame: Frame, lines: list[str], *, y_fraction: float, max_scale: int) -> None:
    """Draw white text with a dark outline, centred horizontally."""
    h, w, _ = frame.shape
    cols = max(len(line) for line in lines)
    scale = max(1, min(max_scale, int(w * 0.9) // max(cols * 6, 1)))
    mask = font.bitmap(lines, scale)
    mh, mw = mask.shape
    if mh >= h or mw >= w:
        return
    y0 = min(max(0, int(h * y_fraction) - mh // 2), h - mh)
    x0 = (w - mw) // 2
    region = frame[y0 : y0 + mh, x0 : x0 + mw]
    region[np.roll(mask, 1, axis=0) | np.roll(mask, 1, axis=1)] = (20, 20, 20)
    region[mask] = (255, 255, 255)


def rgb_to_yuv420(rgb: Frame) -> Frame:
    """BT.601 limited-range planar 4:2:0 (as PyAV's ``yuv420p`` ndarray: (h*3/2, w))."""
    a = rgb.astype(np.int32)
    y = ((66 * a[..., 0] + 129 * a[..., 1] + 25 * a[..., 2] + 128) >> 8) + 16
    s = a[::2, ::2]
    u = ((-38 * s[..., 0] - 74 * s[..., 1] + 112 * s[..., 2] + 128) >> 8) + 128
    v = ((112 * s[..., 0] - 94 * s[..., 1] - 18 * s[..., 2] + 128) >> 8) + 128
    h, w = rgb.shape[:2]
    planes = [y.astype(np.uint8).ravel(), u.astype(np.uint8).ravel(), v.astype(np.uint8).ravel()]
    return np.concatenate(planes).reshape(h * 3 // 2, w)


def _text_frames(spec: RenderSpec) -> Iterator[Frame]:
    """Yields yuv420p frames directly (the common case, so it skips RGB conversion): a
    background band that scrolls sideways, the prompt in the middle, a progress bar."""
    w, h = spec.width, spec.height
    seed = int(hashlib.sha256(spec.text.encode()).hexdigest()[:6], 16)
    x = np.arange(2 * w, dtype=np.float32)
    phase = 2 * np.pi * x / w
    band = np.stack(
        [
            120 + 100 * np.sin(phase + seed % 7),
            120 + 100 * np.sin(phase + 2.1 + seed % 5),
            120 + 100 * np.sin(phase + 4.2 + seed % 3),
        ],
        axis=-1,
    ).astype(np.uint8)
    shade = np.linspace(0.55, 1.0, h, dtype=np.float32)[:, None, None]
    background = rgb_to_yuv420((band[None, :, :] * shade).astype(np.uint8))  # periodic in w
    luma, chroma = background[:h], background[h:].reshape(2, h // 2, w)  # U, V: (h/2, w) each
    still = np.zeros((h, w, 3), np.uint8)
    _stamp_text(
        still, font.wrap(spec.text or "(no prompt)"), y_fraction=0.5, max_scale=max(2, h // 90)
    )
    white, dark = np.all(still == 255, axis=-1), np.all(still == 20, axis=-1)
    chroma_text = (white | dark)[::2, ::2]
    bar = max(4, h // 120)
    step = max(2, w // 120) // 2 * 2  # even, so chroma columns stay aligned
    for i in range(spec.frames):
        offset = (i * step) % w
        y = np.ascontiguousarray(luma[:, offset : offset + w])
        u = np.ascontiguousarray(chroma[0][:, offset // 2 : offset // 2 + w // 2])
        v = np.ascontiguousarray(chroma[1][:, offset // 2 : offset // 2 + w // 2])
        y[white], y[dark] = 235, 30
        u[chroma_text], v[chroma_text] = 128, 128
        y[h - bar :, : int(w * (i + 1) / spec.frames)] = 235
        yield np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)


def load_image(ref: str, width: int, height: int) -> Frame:
    """A stored image (or a placeholder) centre-cropped to width:height and resized to it."""
    data = _IMAGES.get(ref)
    rgb = _decode(data) if data is not None else None
    if rgb is None:
        return _placeholder(ref, width, height)
    return _resize(_crop_to_ratio(rgb, width / height), width, height)


def _decode(data: bytes) -> Frame | None:
    import av

    try:
        with av.open(io.BytesIO(data), "r") as container:
            for frame in container.decode(video=0):
                arr: Frame = frame.to_ndarray(format="rgb24").astype(np.uint8, copy=False)
                return arr
    except (av.FFmpegError, ValueError, StopIteration):
        return None
    return None


def _placeholder(ref: str, width: int, height: int) -> Frame:
    seed = ref.removeprefix("placeholder:")
    img = test_image(width, height, seed)
    _stamp_text(img, ["IMAGE", seed[:8].upper()], y_fraction=0.15, max_scale=max(2, height // 120))
    return img


def _crop_to_ratio(rgb: Frame, ratio: float) -> Frame:
    h, w, _ = rgb.shape
    if w / h > ratio:
        new_w = max(2, int(h * ratio))
        x0 = (w - new_w) // 2
        return rgb[:, x0 : x0 + new_w]
    new_h = max(2, int(w / ratio))
    y0 = (h - new_h) // 2
    return rgb[y0 : y0 + new_h]


def _resize(rgb: Frame, width: int, height: int) -> Frame:
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    out: Frame = (
        frame.reformat(width=width, height=height)
        .to_ndarray(format="rgb24")
        .astype(np.uint8, copy=False)
    )
    return out


_STRENGTH: Final = {"weak": 0.1, "medium": 0.2, "strong": 0.35}


def _camera_window(spec: RenderSpec, t: float) -> tuple[float, float, float]:
    """(zoom >= 1, x shift, y shift) in [-1, 1] units at time t in [0, 1]."""
    s = _STRENGTH.get(spec.strength or "", 0.2) if spec.kind == "camera" else 0.06
    move = spec.camera or "dolly_in"
    if "out" in move or "pull_back" in move:
        return 1 + s * (1 - t), 0.0, 0.0
    if "push_pull" in move:
        return 1 + s * math.sin(math.pi * t), 0.0, 0.0
    if "orbit" in move or "swivel" in move or "robo_arm" in move:
        direction = -1.0 if "counter" in move else 1.0
        return 1 + s, direction * (2 * t - 1), 0.0
    if move == "handheld":
        return 1 + s, 0.6 * math.sin(9 * t), 0.6 * math.cos(7 * t)
    return 1 + s * t, 0.0, 0.0  # dolly in, crane push, and the default slow push


def _yuv_bar(yuv: Frame, height: int, i: int, total: int) -> None:
    """The progress bar on a yuv420p array (white: luma 235, neutral chroma untouched)."""
    yuv[height - max(4, height // 120) : height, : int(yuv.shape[1] * (i + 1) / total)] = 235


def _moving_image_frames(spec: RenderSpec) -> Iterator[Any]:
    """Zoom/pan windows of the image (held as yuv420p planes, cropped in numpy) scaled to the
    output by one reused swscale context: no RGB work per frame."""
    import av
    from av.video.reformatter import VideoReformatter

    w, h = spec.width, spec.height
    base = load_image(spec.images[0], w, h)
    if spec.text:  # the caption is drawn once, into the picture, and moves with it
        caption = font.wrap(spec.text, width=40, max_lines=1)
        _stamp_text(base, caption, y_fraction=0.9, max_scale=max(1, h // 180))
    yuv = rgb_to_yuv420(base)
    luma, u, v = yuv[:h], yuv[h:].ravel()[: h * w // 4], yuv[h:].ravel()[h * w // 4 :]
    u, v = u.reshape(h // 2, w // 2), v.reshape(h // 2, w // 2)
    scaler = VideoReformatter()
    for i in range(spec.frames):
        zoom, dx, dy = _camera_window(spec, i / max(1, spec.frames - 1))
        cw, ch = max(4, int(w / zoom)) // 4 * 4, max(4, int(h / zoom)) // 4 * 4
        x0 = int((w - cw) / 2 * (1 + dx)) // 2 * 2
        y0 = int((h - ch) / 2 * (1 + dy)) // 2 * 2
        planes = [
            luma[y0 : y0 + ch, x0 : x0 + cw].ravel(),
            u[y0 // 2 : (y0 + ch) // 2, x0 // 2 : (x0 + cw) // 2].ravel(),
            v[y0 // 2 : (y0 + ch) // 2, x0 // 2 : (x0 + cw) // 2].ravel(),
        ]
        window = av.VideoFrame.from_ndarray(
            np.concatenate(planes).reshape(ch * 3 // 2, cw), format="yuv420p"
        )
        yield scaler.reformat(
            window, width=w, height=h, format="yuv420p", interpolation="FAST_BILINEAR"
        )


def _crossfade_frames(spec: RenderSpec) -> Iterator[Frame]:
    w, h = spec.width, spec.height
    first = rgb_to_yuv420(load_image(spec.images[0], w, h)).astype(np.uint16)
    tail = rgb_to_yuv420(load_image(spec.images[-1], w, h)).astype(np.uint16)
    for i in range(spec.frames):
        k = round(256 * i / max(1, spec.frames - 1))
        frame = ((first * (256 - k) + tail * k) >> 8).astype(np.uint8)
        _yuv_bar(frame, h, i, spec.frames)
        yield frame


def _portrait_frames(spec: RenderSpec) -> Iterator[Frame]:
    w, h = spec.width, spec.height
    base = rgb_to_yuv420(load_image(spec.images[0], w, h))
    y, x = np.ogrid[0:h, 0:w]
    mouth = ((x - w / 2) / (w * 0.08)) ** 2 + ((y - h * 0.62) / (h * 0.025)) ** 2 <= 1
    for i in range(spec.frames):
        frame = base.copy()
        level = 0.5 + 0.5 * math.sin(2 * math.pi * 3 * i / spec.fps)  # follows the tone's pulse
        frame[:h][mouth] = int(40 + 120 * level)  # the mouth opens and closes (luma only)
        _yuv_bar(frame, h, i, spec.frames)
        yield frame


def _scene_frames(spec: RenderSpec) -> Iterator[Frame]:
    w, h = spec.width, spec.height
    photos = [load_image(ref, w, h) for ref in spec.images] or [_placeholder("scene", w, h)]
    for photo in photos:
        _stamp_text(photo, [spec.text.upper()], y_fraction=0.1, max_scale=max(2, h // 100))
    planes = [rgb_to_yuv420(photo) for photo in photos]
    per = spec.frames / len(planes)
    for i in range(spec.frames):
        frame = planes[min(len(planes) - 1, int(i / per))].copy()
        _yuv_bar(frame, h, i, spec.frames)
        yield frame
