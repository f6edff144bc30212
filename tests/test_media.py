"""What the block reports is what the file is: probe, conform (trim/retime) and poster frames.

Clips are generated here with PyAV (no committed media): 1280×720, 24 fps, 121 frames (the
provider's "5 s") or 241 frames (its "10 s"), with a stereo AAC track.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import anyio
import av
import numpy as np
import pytest

from videogen import h264
from videogen.errors import DownloadError
from videogen.media import conform, poster, probe
from videogen.models import MediaInfo

WIDTH, HEIGHT = 1280, 720


def make_clip(
    path: Path,
    frames: int,
    fps: int = 24,
    *,
    audio: bool = True,
    gops: bool = False,
    movflags: str = "",
) -> Path:
    """A moving-bar clip of ``frames`` frames at ``fps`` with a 440 Hz tone as long as it.
    ``gops``: like a streaming encoder's output, a keyframe about every 2 s and B-frames.
    ``movflags``: the MP4 muxer's layout (``faststart``: the header first; fragmented...)."""
    options = {"preset": "ultrafast"}
    if gops:
        options = {
            "preset": "veryfast",
            "x264-params": f"keyint={2 * fps + 2}:scenecut=0:bframes=3:b-adapt=0",
        }
    with av.open(str(path), "w", options={"movflags": movflags} if movflags else {}) as out:
        video = out.add_stream("libx264", rate=Fraction(fps), options=options)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = out.add_stream("aac", rate=48_000) if audio else None
        if sound is not None:
            sound.layout = "stereo"
        for i in range(frames):
            image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            image[:, : (i * 9) % WIDTH] = (40 + i * 3) % 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _tone(out, sound, round(frames / fps * 48_000))
    return path


def _tone(out: av.container.OutputContainer, sound: av.AudioStream, total: int) -> None:
    done = 0
    while done < total:
        count = min(1024, total - done)
        wave = np.sin(2 * np.pi * 440 * np.arange(done, done + count) / 48_000)
        samples = np.stack([wave, wave]).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48_000, done
        done += count
        out.mux(sound.encode(frame))
    out.mux(sound.encode(None))


def audio_seconds(path: Path) -> float | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    return {
        "5s": make_clip(root / "five.mp4", 121),
        "10s": make_clip(root / "ten.mp4", 241),
        "mute": make_clip(root / "mute.mp4", 121, audio=False),
        "gops": make_clip(root / "gops.mp4", 241, gops=True),
        "faststart": make_clip(root / "faststart.mp4", 73, 30, movflags="faststart"),
        "fragmented": make_clip(
            root / "fragmented.mp4", 73, 30, movflags="frag_keyframe+empty_moov"
        ),
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def copy_of(clip: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(clip, tmp_path / clip.name))


@pytest.mark.anyio
async def test_probe_reads_the_facts_of_a_provider_clip(clips: dict[str, Path]) -> None:
    """A 121-frame 24 fps clip is 5.04 s of 1280×720 H.264."""
    info = await probe(clips["5s"])
    assert (info.width, info.height, info.codec, info.fps, info.frames) == (
        WIDTH,
        HEIGHT,
        "h264",
        24.0,
        121,
    )
    assert info.duration == pytest.approx(121 / 24, abs=0.01)
    assert info.size_bytes == clips["5s"].stat().st_size


@pytest.mark.parametrize("clip", ["5s", "10s", "mute", "gops", "faststart", "fragmented"])
def test_the_probe_decodes_no_frame_and_reads_what_a_decoding_probe_reads(
    clips: dict[str, Path], clip: str
) -> None:
    """The probe opens the file without decoding a frame or analysing packets; its facts are
    the same as those of a probe that analyses the stream and decodes its first frame, whatever
    the MP4's layout (header last, first, or fragmented)."""
    from videogen.media import _probe, probe_sync

    assert probe_sync(clips[clip]) == _probe(clips[clip], decode=True)


def test_a_stream_whose_size_only_decoding_tells_is_probed_again_decoding(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from videogen import media

    real = media._probe
    opened: list[bool] = []

    def without_size(path: Path, *, decode: bool) -> MediaInfo:
        opened.append(decode)
        info = real(path, decode=decode)
        return info if decode else info.model_copy(update={"width": 0, "height": 0})

    monkeypatch.setattr(media, "_probe", without_size)
    assert media.probe_sync(clips["5s"]).width == WIDTH
    assert opened == [False, True]


@pytest.mark.anyio
async def test_probe_of_a_file_that_is_not_a_video_is_a_download_error(tmp_path: Path) -> None:
    """Garbage is reported as an unreadable video, not as an FFmpeg traceback."""
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DownloadError, match="cannot be read as a video"):
        await probe(junk)


@pytest.mark.anyio
@pytest.mark.parametrize("clip", ["5s", "10s"])
async def test_the_providers_own_clip_at_24_fps_is_kept_untouched(
    clips: dict[str, Path], tmp_path: Path, clip: str
) -> None:
    """(5 s, 24) and (10 s, 24) are the provider's 121/241-frame clips: no re-encode."""
    path = copy_of(clips[clip], tmp_path)
    before = path.read_bytes()
    info = await conform(path, duration=5 if clip == "5s" else 10, fps=24)
    assert path.read_bytes() == before
    assert info.frames == (121 if clip == "5s" else 241)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("clip", "duration", "fps"),
    [("5s", 4, 25), ("5s", 4, 24), ("10s", 6, 30), ("10s", 8, 24), ("10s", 8, 25)],
)
async def test_conform_gives_exactly_the_asked_frames_at_the_asked_rate_with_audio(
    clips: dict[str, Path], tmp_path: Path, clip: str, duration: int, fps: int
) -> None:
    """round(duration × fps) frames at fps; the audio track is kept and trimmed to match."""
    path = copy_of(clips[clip], tmp_path)
    info = await conform(path, duration=duration, fps=fps)
    assert info.frames == duration * fps
    assert info.fps == fps
    assert info.duration == pytest.approx(duration, abs=1 / fps)
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    assert audio_seconds(path) == pytest.approx(duration, abs=0.05)
    assert await probe(path) == info
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary left


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def gray_frames(path: Path) -> list[np.ndarray]:
    """Every frame PyAV decodes (FFmpeg's errors are raised), as luma planes."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(np.float64) for f in container.decode(video=0)]


@pytest.mark.anyio
@pytest.mark.parametrize("clip", ["gops", "10s"])
async def test_a_trim_at_the_same_rate_copies_the_packets_it_keeps_and_is_frame_exact(
    clips: dict[str, Path], tmp_path: Path, clip: str
) -> None:
    """10 s -> 8 s at 24 fps: 192 frames; every packet up to the last point where the copy
    decodes alone is the source's own, byte for byte (not re-encoded); with B-frames the few
    frames after it are re-encoded, and the whole file decodes to the source's pictures."""
    source = clips[clip]
    path = copy_of(source, tmp_path)
    info = await conform(path, duration=8, fps=24)
    assert (info.frames, info.fps, info.duration) == (192, 24.0, 8.0)
    assert audio_seconds(path) == pytest.approx(8, abs=0.03)
    ours, theirs = video_packets(path), video_packets(source)
    copied = next(i for i, (a, b) in enumerate(zip([*ours, b""], theirs, strict=False)) if a != b)
    if clip == "gops":  # B-frames: a mini-GOP (at most 4 frames) is re-encoded at the cut
        assert 192 - 4 <= copied < 192
    else:  # no B-frames: every packet is copied
        assert copied == 192
    decoded, original = gray_frames(path), gray_frames(source)[:192]
    assert len(decoded) == 192
    worst = max(float(np.abs(a - b).mean()) for a, b in zip(decoded, original, strict=True))
    assert worst < 2.0  # the re-encoded frames are the source's pictures (mean error, 0..255)


@pytest.mark.anyio
async def test_a_trim_of_a_clip_that_cannot_be_spliced_is_reencoded_whole(tmp_path: Path) -> None:
    """Only H.264 is spliced: an MPEG-4 Part 2 clip is re-encoded to H.264, frame-exact."""
    path = tmp_path / "mpeg4.mp4"
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=Fraction(24))
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        for i in range(241):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i, np.uint8), "rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    info = await conform(path, duration=8, fps=24)
    assert (info.frames, info.codec, info.duration) == (192, "h264", 8.0)
    assert len(gray_frames(path)) == 192


@pytest.mark.anyio
async def test_the_full_reencode_still_gives_the_same_figures(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """``reencode=True`` (the slow path, kept as the bench's baseline) re-encodes every frame
    and reports what the copying trim reports."""
    path = copy_of(clips["gops"], tmp_path)
    info = await conform(path, duration=8, fps=24, reencode=True)
    assert (info.frames, info.fps, info.duration) == (192, 24.0, 8.0)
    assert video_packets(path)[0] != video_packets(clips["gops"])[0]


def test_the_spliced_avcc_keeps_the_sources_parameter_sets_and_adds_the_tails() -> None:
    """Both SPS/PPS pairs are listed, the source's first; ids are read back."""
    sps, pps = bytes.fromhex("6764001eacd940"), bytes.fromhex("68ebe3cb22c0")
    record = bytes([1, 0x64, 0, 0x1E, 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
    record += bytes([1]) + len(pps).to_bytes(2, "big") + pps
    avcc = h264.Avcc.parse(record)
    assert avcc.ids() == {0}
    tail_sps, tail_pps = bytes.fromhex("6742c01e") + bytes([0b01000000]), bytes([0x68, 0b01000000])
    assert (h264.sps_id(tail_sps), h264.pps_id(tail_pps)) == (1, 1)
    both = h264.Avcc.parse(avcc.adding(tail_sps, tail_pps))
    assert both.sps == (sps, tail_sps) and both.pps == (pps, tail_pps)
    assert both.ids() == {0, 1} and both.length_size == 4


@pytest.mark.anyio
async def test_retiming_keeps_playback_speed(clips: dict[str, Path], tmp_path: Path) -> None:
    """At 30 fps the frame shown at 2 s is the source frame shown at 2 s (frames repeated)."""
    path = copy_of(clips["10s"], tmp_path)
    await conform(path, duration=6, fps=30)
    assert _bar_width(path, 60) == _bar_width(clips["10s"], 48)


def _bar_width(path: Path, index: int) -> int:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                row = frame.to_ndarray(format="rgb24")[HEIGHT // 2, :, 0]
                return int((row > 20).sum())
    raise AssertionError(f"no frame {index}")


@pytest.mark.anyio
async def test_a_clip_without_audio_conforms_without_audio(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """No audio track is invented."""
    path = copy_of(clips["mute"], tmp_path)
    info = await conform(path, duration=4, fps=25)
    assert info.frames == 100
    assert audio_seconds(path) is None


@pytest.mark.anyio
async def test_conform_never_pads_a_clip_shorter_than_asked(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """Asked for 6 s of a 5.04 s clip, the result holds the 5.04 s it has, and says so."""
    path = copy_of(clips["5s"], tmp_path)
    info = await conform(path, duration=6, fps=30)
    assert info.frames == 152
    assert info.duration == pytest.approx(152 / 30, abs=0.01)


@pytest.mark.anyio
async def test_conform_does_not_block_the_event_loop(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """The encoder runs in a worker thread: a 20 ms ticker keeps ticking meanwhile."""
    path = copy_of(clips["5s"], tmp_path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.02)
            ticks += 1

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        started = anyio.current_time()
        await conform(path, duration=4, fps=25)
        elapsed = anyio.current_time() - started
        group.cancel_scope.cancel()
    assert ticks >= elapsed / 0.02 * 0.5


@pytest.mark.anyio
async def test_poster_is_a_small_jpeg_at_most_320_wide(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    """A JPEG of a frame about 1 s in, a few tens of KB at most."""
    dest = await poster(clips["5s"], tmp_path / "poster.jpg")
    data = dest.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
    assert len(data) < 100_000
    with av.open(str(dest)) as image:
        frame = next(image.decode(video=0))
        assert (frame.width, frame.height) == (320, 180)


def test_importing_the_modules_does_not_load_pyav() -> None:
    """The MCP server starts fast: PyAV loads on first use, not on import."""
    code = "import sys, videogen.media, videogen.download; print('av' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.anyio
async def test_conform_and_poster_of_a_broken_file_raise_project_errors_and_keep_it(
    tmp_path: Path,
) -> None:
    """FFmpeg's own errors never escape; the file is left exactly as it was."""
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0\0\0\x18ftypisom" + b"garbage" * 500)
    before = junk.read_bytes()
    with pytest.raises(DownloadError):
        await conform(junk, duration=4, fps=25)
    with pytest.raises(DownloadError):
        await poster(junk, tmp_path / "p.jpg")
    assert junk.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["junk.mp4"]
