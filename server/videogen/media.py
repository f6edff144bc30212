"""True facts about saved videos, and the local trim/retime that honours seed 002's options.

- :func:`probe` reads duration, frame rate, size, codec and frame count from the file itself.
- :func:`conform` makes a provider clip (5 s or 10 s at 24 fps: 121 or 241 frames) the length
  and frame rate the caller asked for (``--duration 4,5,6,8,10``, ``--fps 24,25,30``): exactly
  ``round(duration * fps)`` frames at ``fps``, by dropping or repeating frames (playback speed is
  unchanged), audio trimmed to the same length and re-encoded as AAC. The file is replaced
  atomically. The provider's own clip is kept untouched when it already has the asked frame rate
  and the asked frame count or one more: 121 frames at 24 fps *is* the provider's "5 s" clip
  (5.04 s), so (5 s, 24) and (10 s, 24) never re-encode. A clip is never padded: asked for more
  than it holds, it yields the frames it covers, and the probe says so. A trim of an H.264
  clip at its own frame rate re-encodes only the few frames after the last point where the
  copied part decodes on its own, and copies every other packet, audio included (the audio
  then ends on its last whole frame within the asked length); see :class:`_SplicePlan`.
  Retiming, and a clip that cannot be spliced, re-encodes every frame.
- :func:`poster` writes a small JPEG of a frame about one second in (or the middle).

PyAV is imported inside the functions (the MCP server must start without loading FFmpeg), and
all decoding/encoding runs in a worker thread through ``anyio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread

from videogen import h264
from videogen.errors import DownloadError, OutputError, VideogenError
from videogen.files import create_locked, fsync_dir, sweep_orphans_now_and_then
from videogen.models import MediaInfo

if TYPE_CHECKING:
    from av.container import InputContainer, OutputContainer

#: x264 speed/size trade-off. "veryfast" used ~9 s of CPU to conform a 10 s 1080p clip to 8 s
#: (slower than real time on 2 busy cores); "ultrafast" ~3.5 s, for files about 1.7x larger.
X264_PRESET: Final = "ultrafast"
X264_CRF: Final = "20"
ENCODER_THREADS: Final = 2
AUDIO_BITRATE: Final = 128_000
#: Frame rates closer than this are the same rate (23.976 is not 24; 24.0000001 is).
FPS_TOLERANCE: Final = 0.01
#: FFmpeg's options to open a file whose frames will not be decoded: skip them in the stream
#: analysis, and analyse no more than FFmpeg's minimum (32 bytes, no time).
NO_DECODE_OPTIONS: Final = {"skip_frame": "all", "probesize": "32", "analyzeduration": "0"}


async def probe(path: Path) -> MediaInfo:
    """Facts read from the file: duration (s), fps, width, height, codec, size, frame count."""
    return await anyio.to_thread.run_sync(probe_sync, Path(path))


async def conform(path: Path, *, duration: float, fps: int, reencode: bool = False) -> MediaInfo:
    """Make ``path`` hold ``round(duration * fps)`` frames at ``fps``, in place; see the module
    docstring for the no-op, never-pad and copy rules. Returns the probe of the result.
    ``reencode=True`` re-encodes every frame even where a trim could copy them (the slow path
    the copy is measured against in bench/bench_conform.py)."""
    return await anyio.to_thread.run_sync(conform_sync, Path(path), duration, fps, reencode)


async def poster(path: Path, dest: Path, *, max_width: int = 320) -> Path:
    """Write a JPEG (at most ``max_width`` wide) of the frame about 1 s in to ``dest``."""
    return await anyio.to_thread.run_sync(_poster_sync, Path(path), Path(dest), max_width)


# ------------------------------------------------------------------------------------ probe


def probe_sync(path: Path) -> MediaInfo:
    """:func:`probe` without the thread hop, for code already off the event loop.

    The facts come from the container and the stream's parameter sets, so no frame is decoded
    (a third of the CPU of a probe that decodes the first one); a stream whose picture size is
    only known by decoding is probed again, decoding."""
    info = _probe(path, decode=False)
    return info if info.width and info.height else _probe(path, decode=True)


def _probe(path: Path, *, decode: bool) -> MediaInfo:
    with _open_input(path, decode=decode) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        frames = int(stream.frames) or _count_packets(path)
        duration = _duration(container, stream, frames, fps)
        return MediaInfo(
            duration=round(duration, 4),
            fps=round(fps, 3),
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            codec=str(stream.codec_context.name),
            size_bytes=path.stat().st_size,
            frames=frames or None,
        )


def _duration(container: InputContainer, stream: Any, frames: int, fps: float) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return frames / fps if fps else 0.0


def _count_packets(path: Path) -> int:
    with _open_input(path, decode=False) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


@contextlib.contextmanager
def _open_input(path: Path, *, decode: bool = True) -> Iterator[InputContainer]:
    """``path`` opened for reading; ``decode=False`` when no frame will be decoded (opening
    then decodes none either: FFmpeg's stream analysis skips every frame, and reads no packet
    beyond FFmpeg's minimum, since an MP4's header already holds every fact the probe reports:
    1.16 -> 0.44 ms of CPU to open a 720p clip)."""
    import av

    options = {} if decode else NO_DECODE_OPTIONS
    try:
        container = av.open(str(path), "r", options=options)
    except (av.error.FFmpegError, OSError) as exc:
        raise DownloadError(
            f"The saved file {path.name!r} cannot be read as a video ({exc}).", retryable=False
        ) from exc
    try:
        yield container
    finally:
        container.close()


def _video_stream(container: InputContainer, path: Path) -> Any:
    if not container.streams.video:
        raise DownloadError(f"The saved file {path.name!r} has no video track.", retryable=False)
    return container.streams.video[0]


# ---------------------------------------------------------------------------------- conform


def target_frames(duration: float, fps: int) -> int:
    """Frames a clip of ``duration`` seconds at ``fps`` has: ``round(duration * fps)``."""
    return round(duration * fps)


def needs_conform(info: MediaInfo, *, duration: float, fps: int) -> bool:
    """False when the file already is what was asked (the provider's extra frame allowed)."""
    same_rate = abs(info.fps - fps) < FPS_TOLERANCE
    wanted = target_frames(duration, fps)
    return not (same_rate and info.frames is not None and info.frames in {wanted, wanted + 1})


def conform_sync(path: Path, duration: float, fps: int, reencode: bool = False) -> MediaInfo:
    """:func:`conform` without the thread hop, for code already off the event loop."""
    if duration <= 0 or fps <= 0:
        raise ValueError(f"duration and fps must be positive, not {duration!r} and {fps!r}")
    info = probe_sync(path)
    if not needs_conform(info, duration=duration, fps=fps):
        return info
    if info.fps <= 0:
        raise DownloadError(
            f"The saved file {path.name!r} does not say its frame rate, so it cannot be retimed; "
            "it is kept as it was.",
            retryable=False,
        )
    sweep_orphans_now_and_then(path.parent)  # a conform killed mid-way left its temp file
    temp = path.with_name(f".{path.name}.conform-{secrets.token_hex(4)}.mp4")
    try:
        lock = create_locked(temp)  # locked until this process is done with it or dies
    except OSError as exc:
        raise _media_error("conform", path, exc) from exc
    try:
        if reencode or not _try_splice_trim(path, temp, info, duration=duration, fps=fps):
            _transcode(path, temp, info, duration=duration, fps=fps)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
        fsync_dir(path.parent)
    except (OSError, ValueError, _ffmpeg_error()) as exc:
        raise _media_error("conform", path, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        os.close(lock)
    return probe_sync(path)


def _transcode(source: Path, dest: Path, info: MediaInfo, *, duration: float, fps: int) -> None:
    import av

    wanted = target_frames(duration, fps)
    with _open_input(source) as src:
        video_in = _video_stream(src, source)
        video_in.thread_type = "AUTO"
        audio_in = src.streams.audio[0] if src.streams.audio else None
        out = av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            video = _Retimer(out, info, fps=fps, wanted=wanted)
            audio = _AudioTrimmer(out, audio_in, duration) if audio_in is not None else None
            streams = [video_in] + ([audio_in] if audio_in is not None else [])
            for packet in src.demux(*streams):
                if packet.stream is video_in and not video.done:
                    for frame in packet.decode():
                        video.add(frame)
                elif audio is not None and packet.stream is audio_in and not audio.done:
                    for aframe in packet.decode():
                        audio.add(aframe)
                if video.done and (audio is None or audio.done):
                    break
            video.finish()
            if audio is not None:
                audio.finish()
        finally:
            out.close()


def _try_splice_trim(
    source: Path, dest: Path, info: MediaInfo, *, duration: float, fps: int
) -> bool:
    """:func:`_splice_trim`, False also when FFmpeg or the bitstream refuse it half-way (the
    caller then re-encodes every frame into ``dest``, which it truncates)."""
    try:
        return _splice_trim(source, dest, info, duration=duration, fps=fps)
    except (h264.H264Error, _ffmpeg_error()):
        return False


def _splice_trim(source: Path, dest: Path, info: MediaInfo, *, duration: float, fps: int) -> bool:
    """Trim an H.264 clip already at ``fps`` by copying what it keeps and re-encoding only the
    frames that cannot be copied; False (``dest`` left as it was) when this clip cannot be
    spliced and must be re-encoded. See :class:`_SplicePlan`."""
    if abs(info.fps - fps) >= FPS_TOLERANCE or info.frames is None or info.codec != "h264":
        return False
    with _open_input(source) as src:
        plan = _SplicePlan.make(src, target_frames(duration, fps), fps)
        tail = plan.encode_tail() if plan is not None else None
        if plan is None or tail is None:
            return False
        plan.write(src, dest, tail, duration)
    return True


@dataclass
class _Tail:
    """Re-encoded frames ready for the MP4 track: their SPS and PPS (under ids of their own)
    and their packets (length-prefixed NAL units, source time base)."""

    sps: bytes = b""
    pps: bytes = b""
    packets: list[Any] = field(default_factory=list)


class _SplicePlan:
    """A trim that copies packets ``[:keep]`` and re-encodes shown frames ``keep .. wanted-1``.

    The packets copied are the longest run, in decoding order, that decodes on its own to
    exactly the first frames shown: with B-frames such a run ends every few frames, without
    them at every frame, so at most a few frames are re-encoded. Those are decoded (from the
    last keyframe, skipping the pictures nothing predicts from) and encoded as a new
    keyframe-led run whose SPS/PPS take ids the source does not use and are added to the
    track's ``avcC``: one ``avc1`` track, each slice naming the parameter sets it was coded
    with. The audio packets are copied too, up to the last whole audio frame within
    ``duration`` (AAC: at most 1024 samples, 21 ms at 48 kHz, short of it).
    """

    def __init__(
        self, stream: Any, avcc: h264.Avcc, packets: list[Any], keep: int, wanted: int, fps: int
    ) -> None:
        self.stream = stream
        self.avcc = avcc
        self.packets = packets
        self.keep = keep
        self.wanted = wanted
        self.fps = fps
        self.step = max(1, round(1 / (fps * stream.time_base)))  # one frame, in the time base
        self.tail_pts = sorted(p.pts for p in packets)[keep:wanted]

    @classmethod
    def make(cls, src: InputContainer, wanted: int, fps: int) -> _SplicePlan | None:
        stream = src.streams.video[0]
        ctx = stream.codec_context
        if ctx.pix_fmt not in {"yuv420p", "yuvj420p"} or not ctx.extradata or not stream.time_base:
            return None
        try:
            avcc = h264.Avcc.parse(bytes(ctx.extradata))
        except h264.H264Error:
            return None
        packets: list[Any] = [p for p in src.demux(stream) if p.size]
        if not packets or any(p.pts is None or p.dts is None for p in packets):
            return None
        rank = {pts: i for i, pts in enumerate(sorted(p.pts for p in packets))}
        if len(rank) != len(packets) or not packets[0].is_keyframe:
            return None
        wanted = min(wanted, len(packets))
        keep, highest = 0, -1
        for count, packet in enumerate(packets[:wanted], start=1):
            highest = max(highest, rank[packet.pts])
            # `count` packets showing ranks 0..count-1 decode alone. The re-encoded keyframe
            # must not follow a copied one directly (two IDRs in a row need different
            # idr_pic_id values, which the encoder cannot be told).
            if highest == count - 1 and (count == wanted or not packet.is_keyframe):
                keep = count
        return cls(stream, avcc, packets, keep, wanted, fps) if keep else None

    def encode_tail(self) -> _Tail | None:
        """The re-encoded frames, or None when they cannot be made to fit the copied ones."""
        if not self.tail_pts:
            return _Tail()
        frames = self._decode_tail()
        return self._encode(frames) if frames is not None else None

    def _decode_tail(self) -> list[Any] | None:
        wanted = set(self.tail_pts)
        last = max(i for i, p in enumerate(self.packets) if p.pts in wanted)
        start = max(i for i, p in enumerate(self.packets[: self.keep + 1]) if p.is_keyframe)
        decoder = self.stream.codec_context
        decoder.thread_type = "AUTO"
        frames: dict[int, Any] = {}
        for packet in [*self.packets[start : last + 1], None]:
            if packet is not None and packet.pts not in wanted and not self._reference(packet):
                continue  # nothing shown from it, nothing predicts from it
            frames.update((f.pts, f) for f in decoder.decode(packet) if f.pts in wanted)
        if len(frames) != len(wanted):
            return None
        return [frames[pts] for pts in self.tail_pts]

    def _reference(self, packet: Any) -> bool:
        return h264.is_reference(bytes(packet), self.avcc.length_size)

    def _encode(self, frames: list[Any]) -> _Tail | None:
        free = [i for i in range(h264.MAX_SPS_ID + 1) if i not in self.avcc.ids()]
        if not free:
            return None
        encoder = self._encoder(sps_id=free[0])
        coded = []
        for frame in frames:
            frame.pict_type = _picture_type_none()
            coded.extend(encoder.encode(frame))
        coded.extend(encoder.encode(None))
        if len(coded) != len(frames) or not coded[0].is_keyframe:
            return None
        try:
            tail = self._repackage(coded, free[0])
        except h264.H264Error:
            return None
        return tail

    def _encoder(self, *, sps_id: int) -> Any:
        """x264 as the full conform uses it, matching the source's size, pixel format, colour
        description, level and time base; no B-frames, so decoding order is showing order."""
        import av

        source = self.stream.codec_context
        encoder: Any = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = source.width, source.height
        encoder.pix_fmt = source.pix_fmt
        encoder.time_base = self.stream.time_base
        encoder.framerate = Fraction(self.fps)
        for name in ("color_range", "color_primaries", "color_trc", "colorspace"):
            setattr(encoder, name, getattr(source, name))
        if source.sample_aspect_ratio:
            encoder.sample_aspect_ratio = source.sample_aspect_ratio
        encoder.thread_count = ENCODER_THREADS
        encoder.options = {
            "preset": X264_PRESET,
            "crf": X264_CRF,
            "x264-params": f"sps-id={sps_id}:bframes=0:level={self.avcc.level}",
        }
        return encoder

    def _repackage(self, coded: list[Any], sps_id: int) -> _Tail | None:
        """Annex B packets to MP4 samples; the SPS/PPS go to the ``avcC``, timestamps continue
        the copied run's decoding times."""
        import av

        tail = _Tail()
        dts = self.packets[self.keep - 1].dts
        for packet in coded:
            units = []
            for unit in h264.annexb_units(bytes(packet)):
                kind = h264.nal_type(unit)
                if kind == h264.NAL_SPS:
                    tail.sps = unit
                elif kind == h264.NAL_PPS:
                    tail.pps = unit
                elif kind != h264.NAL_AUD:
                    units.append(unit)
            sample = av.Packet(h264.length_prefixed(units, self.avcc.length_size))
            if min(packet.pts, dts + self.step) <= dts:
                return None
            dts = min(packet.pts, dts + self.step)
            sample.pts, sample.dts, sample.duration = packet.pts, dts, self.step
            sample.time_base = self.stream.time_base
            sample.is_keyframe = packet.is_keyframe
            tail.packets.append(sample)
        if not tail.sps or h264.sps_id(tail.sps) != sps_id or h264.pps_id(tail.pps) != sps_id:
            return None
        return tail

    def write(self, src: InputContainer, dest: Path, tail: _Tail, duration: float) -> None:
        import av

        audio_in = src.streams.audio[0] if src.streams.audio else None
        out = av.open(str(dest), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            video = out.add_stream_from_template(self.stream)
            if tail.sps:
                video.codec_context.extradata = self.avcc.adding(tail.sps, tail.pps)
            audio = out.add_stream_from_template(audio_in) if audio_in is not None else None
            for packet in [*self.packets[: self.keep], *tail.packets]:
                packet.stream = video
                out.mux(packet)
            if audio is not None and audio_in is not None:
                src.seek(0)
                base = audio_in.time_base
                end = duration / base if base else math.inf
                for packet in src.demux(audio_in):
                    if packet.size and packet.pts is not None:
                        if packet.pts + (packet.duration or 0) > end:
                            break
                        packet.stream = audio
                        out.mux(packet)
        finally:
            out.close()


class _Retimer:
    """Encodes output frame ``j`` (time ``j / fps``) from the source frame showing at that time:
    frames are dropped or repeated, never blended, so motion keeps its speed."""

    def __init__(self, out: OutputContainer, info: MediaInfo, *, fps: int, wanted: int) -> None:
        self.out = out
        self.stream: Any = out.add_stream(
            "libx264",
            rate=Fraction(fps),
            options={"preset": X264_PRESET, "crf": X264_CRF},
        )
        self.stream.width, self.stream.height = info.width, info.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.thread_count = ENCODER_THREADS
        self.stream.codec_context.time_base = Fraction(1, fps)
        self.source_fps = info.fps
        self.fps = fps
        self.wanted = wanted
        self.seen = 0  # source frames decoded so far
        self.emitted = 0

    @property
    def done(self) -> bool:
        return self.emitted >= self.wanted

    def add(self, frame: Any) -> None:
        self.seen += 1
        # Source frame k shows during [k, k+1) / source_fps; emit every output time inside.
        ends_at = self.seen / self.source_fps
        ready = None
        while not self.done and self.emitted / self.fps < ends_at - 1e-9:
            if ready is None:
                ready = frame.reformat(format="yuv420p")
                ready.pict_type = _picture_type_none()  # let x264 choose frame types
            ready.pts = self.emitted
            ready.time_base = Fraction(1, self.fps)
            self.out.mux(self.stream.encode(ready))
            self.emitted += 1

    def finish(self) -> None:
        self.out.mux(self.stream.encode(None))


def _picture_type_none() -> Any:
    from av.video.frame import PictureType

    return PictureType.NONE


class _AudioTrimmer:
    """Re-encodes audio as AAC and stops at ``duration`` seconds, to the sample."""

    def __init__(self, out: OutputContainer, stream_in: Any, duration: float) -> None:
        import av

        rate = int(stream_in.codec_context.sample_rate or 48_000)
        self.stream: Any = out.add_stream("aac", rate=rate)
        self.stream.codec_context.bit_rate = AUDIO_BITRATE
        layout = stream_in.codec_context.layout.name or "stereo"
        self.stream.codec_context.layout = layout
        self.out = out
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.fifo = av.AudioFifo()
        self.rate = rate
        self.limit = math.floor(duration * rate)
        self.taken = 0  # samples pushed into the fifo
        self.written = 0  # samples encoded

    @property
    def done(self) -> bool:
        return self.taken >= self.limit

    def add(self, frame: Any) -> None:
        for resampled in self.resampler.resample(frame):
            if self.done:  # samples past the limit are never encoded: see _drain
                break
            resampled.pts = None
            self.fifo.write(resampled)
            self.taken += resampled.samples
        self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        size = self.stream.codec_context.frame_size or 1024
        while True:
            left = self.limit - self.written
            available = min(self.fifo.samples, left)
            if left <= 0 or available <= 0 or (available < size and not final):
                return
            frame = self.fifo.read(min(size, available))
            if frame is None:
                return
            frame.pts = self.written
            frame.time_base = Fraction(1, self.rate)
            self.written += frame.samples
            self.out.mux(self.stream.encode(frame))

    def finish(self) -> None:
        for resampled in self.resampler.resample(None):
            resampled.pts = None
            self.fifo.write(resampled)
        self._drain(final=True)
        self.out.mux(self.stream.encode(None))


# ----------------------------------------------------------------------------------- poster


def _poster_sync(path: Path, dest: Path, max_width: int) -> Path:
    try:
        return _write_poster(path, dest, max_width)
    except (OSError, ValueError, _ffmpeg_error()) as exc:
        raise _media_error("poster", path, exc) from exc


def _ffmpeg_error() -> type[Exception]:
    import av

    return av.error.FFmpegError


def _media_error(step: str, path: Path, exc: BaseException) -> VideogenError:
    if isinstance(exc, OSError) and exc.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}:
        return OutputError(
            f"The disk is full: the {step} of {path.name!r} could not be written; the saved "
            "video itself is kept."
        )
    return DownloadError(
        f"The {step} of {path.name!r} failed ({exc}); the saved video itself is kept as it was.",
        retryable=False,
    )


def _write_poster(path: Path, dest: Path, max_width: int) -> Path:
    import av

    with _open_input(path) as container:
        stream = _video_stream(container, path)
        info_duration = float(container.duration or 0) / 1_000_000
        at = min(1.0, info_duration / 2) if info_duration else 0.0
        if at and stream.time_base:
            container.seek(int(at / stream.time_base), stream=stream, backward=True)
        # The keyframe at or before `at`: decoding only keyframes makes a poster cost one frame
        # (about 4 ms at 720p) instead of every frame up to `at`; a poster needs no exact time.
        stream.codec_context.skip_frame = "NONKEY"
        frame = _first_frame_at(container, stream, 0.0)
    width = min(max_width, frame.width)
    width -= width % 2
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder: Any = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"qmin": "2", "qmax": "6"}
    packets = [*encoder.encode(small), *encoder.encode(None)]
    temp = dest.with_name(f".{dest.name}.part-{secrets.token_hex(4)}")
    try:
        with open(temp, "xb") as f:
            for packet in packets:
                f.write(bytes(packet))
        os.replace(temp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    return dest


def _first_frame_at(container: InputContainer, stream: Any, at: float) -> Any:
    """The first decoded frame at or after ``at`` seconds (the last one if the clip is shorter)."""
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.time is None or frame.time >= at - 1e-6:
            return frame
    if last is None:
        raise DownloadError(f"The video {container.name!r} has no frames.", retryable=False)
    return last
