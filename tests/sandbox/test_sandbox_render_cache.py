"""Identical renders happen once, even when many tasks ask at the same moment."""

from __future__ import annotations

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
