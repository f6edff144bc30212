"""Identical renders happen once, even when many tasks ask at the same moment."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from videogen.sandbox.render import Renderer, RenderSpec

pytestmark = pytest.mark.anyio


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_concurrent_requests_for_one_spec_encode_it_once(tmp_path: Path) -> None:
    """Eight concurrent render() calls -> one encode, one file, all callers get its path."""
    renderer = Renderer(tmp_path)
    spec = RenderSpec("text", 320, 180, 9, text="cache me")
    paths: list[Path] = []

    async def ask() -> None:
        paths.append(await renderer.render(spec))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(ask)
    assert renderer.renders == 1
    assert len(set(paths)) == 1 and paths[0].stat().st_size > 0
    assert names(tmp_path) == [paths[0].name]  # no temp files left
    other = await renderer.render(RenderSpec("text", 320, 180, 9, text="another prompt"))
    assert other != paths[0] and renderer.renders == 2


async def test_the_cache_deletes_the_least_recently_used_renders_over_its_cap(
    tmp_path: Path,
) -> None:
    """A render used again is kept; the one used longest ago goes when a new one overflows."""
    renderer = Renderer(tmp_path)
    first = await renderer.render(RenderSpec("text", 320, 180, 9, text="first"))
    second = await renderer.render(RenderSpec("text", 320, 180, 9, text="second"))
    os.utime(first, (1_000, 1_000))  # both used long ago, the second more recently
    os.utime(second, (2_000, 2_000))
    renderer.max_bytes = first.stat().st_size + second.stat().st_size + 1024
    await renderer.render(RenderSpec("text", 320, 180, 9, text="first"))  # a hit: now recent
    third = await renderer.render(RenderSpec("text", 320, 180, 9, text="third"))

    assert names(tmp_path) == sorted([first.name, third.name])
    assert renderer.evicted == 1 and renderer.renders == 3


def test_a_new_renderer_trims_an_oversized_cache_and_old_temp_files(tmp_path: Path) -> None:
    """At start: renders beyond the cap (oldest first) and temp files a killed process left."""
    for age, name in ((3_000, "old.mp4"), (2_000, "older.mp4"), (4_000, "new.mp4")):
        (tmp_path / name).write_bytes(b"x" * 1000)
        os.utime(tmp_path / name, (age, age))
    (tmp_path / "killed.123.456.tmp").write_bytes(b"partial")
    os.utime(tmp_path / "killed.123.456.tmp", (1_000, 1_000))
    (tmp_path / "busy.123.789.tmp").write_bytes(b"being written now")

    renderer = Renderer(tmp_path, max_bytes=2_500)

    assert names(tmp_path) == ["busy.123.789.tmp", "new.mp4", "old.mp4"]
    assert renderer.evicted == 1
