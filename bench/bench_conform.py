"""Conform speed: a 10 s 1080p 24 fps clip (241 frames, stereo AAC) conformed to shorter lengths.

    uv run --group dev python bench/bench_conform.py            # 3 runs of each target
    uv run --group dev python bench/bench_conform.py --runs 5 --height 720

Generates the clip once with PyAV (moving gradient + tone), then for each target — 8 s @ 24,
4 s @ 25, 6 s @ 30 — copies it and times ``videogen.media.conform`` (median of the runs). Prints
seconds and the real-time factor (output clip seconds / wall seconds: above 1 is faster than real
time), next to the same-run baseline of simply decoding the whole source clip once and the CPU
seconds used. The trim at the clip's own rate (8 s @ 24) copies the packets it keeps; it is also
timed against ``conform(..., reencode=True)``, which re-encodes every frame as conform did before
(the two alternate run by run), and the ratio printed (issue 16's target: at most 0.25x).

The clip has x264's default GOP (one keyframe in 10 s) and B-frames, so the copying trim cannot
copy whole GOPs: it copies up to the last point where the copy decodes alone and re-encodes the
few frames after it, which costs decoding the reference frames before the cut.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import anyio
import av
import numpy as np

from videogen.media import conform, probe

TARGETS = ((8, 24), (4, 25), (6, 30))


def make_clip(path: Path, *, frames: int, fps: int, width: int, height: int) -> None:
    """A moving gradient (compressible like real video, not like noise) with a 440 Hz tone."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=Fraction(fps), options={"preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48_000)
        sound.layout = "stereo"
        for i in range(frames):
            red = ((x + i * 4) % 256).astype(np.uint8)
            image = np.empty((height, width, 3), np.uint8)
            image[..., 0] = red
            image[..., 1] = ((y + i * 2) % 256).astype(np.uint8)
            image[..., 2] = 128
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        total = round(frames / fps * 48_000)
        for start in range(0, total, 1024):
            count = min(1024, total - start)
            wave = np.sin(2 * np.pi * 440 * np.arange(start, start + count) / 48_000)
            samples = np.stack([wave, wave]).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = 48_000, start
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decode_all(path: Path) -> None:
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for _ in container.decode(video=0):
            pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()
    width = args.height * 16 // 9
    root = Path(tempfile.mkdtemp(prefix="videogen-conform-"))
    try:
        source = root / "source.mp4"
        make_clip(source, frames=241, fps=24, width=width, height=args.height)
        info = await probe(source)
        print(
            f"source: {info.width}x{info.height} {info.fps:g} fps, {info.frames} frames, "
            f"{info.duration:.2f} s, {info.size_bytes / 1e6:.1f} MB; {args.runs} runs each"
        )
        await bench_decode(source, args.runs)
        await bench_copy_vs_reencode(source, root, args.runs)
        for duration, fps in TARGETS:
            await bench_target(source, root, duration, fps, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def bench_decode(source: Path, runs: int) -> None:
    walls, cpus = [], []
    for _ in range(runs):
        cpu, started = cpu_seconds(), time.perf_counter()
        await anyio.to_thread.run_sync(decode_all, source)
        walls.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu)
    wall = statistics.median(walls)
    print(
        f"  baseline: decode the source once   median {wall:5.2f} s  "
        f"cpu {statistics.median(cpus):5.2f} s"
    )


async def timed_conform(path: Path, duration: int, fps: int, *, reencode: bool) -> float:
    started = time.perf_counter()
    result = await conform(path, duration=duration, fps=fps, reencode=reencode)
    wall = time.perf_counter() - started
    if result.frames != duration * fps or result.fps != fps or result.duration != duration:
        raise SystemExit(f"conform gave {result}, not {duration} s at {fps} fps")
    await anyio.Path(path).unlink()
    return wall


async def bench_copy_vs_reencode(source: Path, root: Path, runs: int) -> None:
    """The trim at the source's rate, copying vs re-encoding every frame, alternating."""
    walls: dict[bool, list[float]] = {False: [], True: []}
    for run in range(runs):
        for reencode in (True, False):
            path = Path(shutil.copy(source, root / f"trim-{run}-{reencode}.mp4"))
            walls[reencode].append(await timed_conform(path, 8, 24, reencode=reencode))
    full, copy = statistics.median(walls[True]), statistics.median(walls[False])
    for name, reencode in (("re-encode every frame (before)", True), ("copy (now)", False)):
        each = ", ".join(f"{w:.2f}" for w in walls[reencode])
        wall = statistics.median(walls[reencode])
        print(f"  trim 8 s @ 24 fps, {name:31s} median {wall:5.2f} s  [{each}]")
    print(f"  trim copy / re-encode: {copy / full:.2f}x  (target <= 0.25x)")


async def bench_target(source: Path, root: Path, duration: int, fps: int, runs: int) -> None:
    walls, cpus = [], []
    for run in range(runs):
        path = Path(shutil.copy(source, root / f"out-{duration}-{fps}-{run}.mp4"))
        cpu, started = cpu_seconds(), time.perf_counter()
        result = await conform(path, duration=duration, fps=fps)
        walls.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu)
        if result.frames != duration * fps or result.fps != fps:
            raise SystemExit(f"conform gave {result}, not {duration} s at {fps} fps")
        await anyio.Path(path).unlink()
    wall = statistics.median(walls)
    print(
        f"  conform to {duration:2d} s @ {fps} fps        median {wall:5.2f} s  "
        f"cpu {statistics.median(cpus):5.2f} s  real-time factor {duration / wall:4.1f}x  "
        f"[{', '.join(f'{w:.2f}' for w in walls)}]"
    )


if __name__ == "__main__":
    anyio.run(main)
