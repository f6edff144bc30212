"""A saved video or its poster read back for an interface that serves the bytes: never through
a link (``files.open_saved``), within a size limit, and from the object store when the file is
not on this machine (saved by another replica that shares no disk with this one)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from videogen.files import POSTERS, open_saved
from videogen.models import Task

if TYPE_CHECKING:
    from videogen.storage import Storage


def read_saved(path: Path, limit: int) -> bytes | int:
    """A saved file's bytes, or its size when over ``limit``; never through a link (OSError)."""
    with open_saved(path) as f:
        size = os.fstat(f.fileno()).st_size
        return size if size > limit else f.read()


async def read_poster(task: Task, limit: int) -> bytes | None:
    """The task's poster (JPEG) when it is a plain file in its video's ``.posters`` folder and
    at most ``limit`` bytes; None otherwise."""
    path, video = task.poster_path, task.local_path
    if not path or not video or Path(path).parent != Path(video).parent / POSTERS:
        return None
    try:
        data = await anyio.to_thread.run_sync(read_saved, Path(path), limit)
    except OSError:
        return None
    return None if isinstance(data, int) else data


async def read_video(task: Task, storage: Storage | None, limit: int) -> bytes | int | None:
    """A completed task's saved MP4 (its size when over ``limit``): the file on this machine,
    else the stored object. None when neither is there; ``OSError`` when the file is no longer
    a plain file in its folder (e.g. replaced by a link); the store's ``VideogenError``."""
    assert task.local_path is not None
    try:
        return await anyio.to_thread.run_sync(read_saved, Path(task.local_path), limit)
    except FileNotFoundError:
        if storage is None or task.object_key is None:
            return None
    try:
        return await storage.read(task.object_key, limit)
    except FileNotFoundError:
        return None
