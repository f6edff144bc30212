"""The output folder's side of finishing a task: check it before billing, posters.

Synchronous file-system helpers; the engine runs them through ``anyio.to_thread``.

- ``open_folder`` is the one folder rule (made with its parents, or ``OutputError`` naming the
  fix), at save time as before billing.
- ``prepare_folder`` is the preflight ``Engine.submit`` runs *before* anything is billed: the
  folder is created with its parents (a user who names a folder wants it) and proven writable by
  creating and removing a file in it, or ``OutputError`` names the folder and the fix.
  ``ProvenFolders`` runs it off the event loop, once per folder per burst of submits.
- The temporary files a killed process left are swept by ``files`` (``sweep_temporaries``
  for one task, ``sweep_orphans`` for a whole folder).
- ``posters_folder`` creates/opens ``.posters`` without following a symlink planted there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import anyio

from videogen.errors import OutputError
from videogen.files import POSTERS

#: How to choose another output folder, in every interface's terms. A tool call cannot: the MCP
#: server's folder is its VIDEOGEN_OUTPUT_DIR, and a call chooses only the file name.
FIX: Final = (
    "choose a folder you can write to: on the command line pass --output FOLDER (or set "
    "VIDEOGEN_OUTPUT_DIR); for the MCP server set VIDEOGEN_OUTPUT_DIR in its environment (the "
    "host's server configuration) and restart it, since a tool call chooses only the file "
    "name (filename), not the folder"
)


def open_folder(folder: Path) -> Path:
    """The one folder rule: ``folder`` (``~`` expanded) made with its parents when missing (a
    user who names a folder wants it); its absolute path. ``OutputError`` names the folder,
    what is wrong and the fix. Used before billing (``prepare_folder``) and at save time."""
    folder = folder.expanduser()
    if folder.is_dir():  # the usual case, at every save: one stat
        return folder.absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"Cannot save videos in {str(folder)!r}: it exists and is not a "
                          f"folder. Please {FIX}.") from None  # fmt: skip
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder {str(folder)!r} "
                          f"({exc.strerror or exc}). Please {FIX}.") from exc  # fmt: skip
    return folder.absolute()


def prepare_folder(folder: Path) -> Path:
    """``open_folder``, then prove a file can be made in it: the preflight before billing."""
    folder = open_folder(folder)
    probe = folder / f".videogen-write-check-{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(probe, flags, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"Cannot write in the output folder {str(folder)!r} "
                          f"({exc.strerror or exc}). Please {FIX}.") from exc  # fmt: skip
    return folder


#: How long a folder ``prepare_folder`` proved writable counts as proven (``ProvenFolders``).
PROVEN_SECONDS: Final = 2.0


class ProvenFolders:
    """``prepare_folder`` in a worker thread, remembered for ``PROVEN_SECONDS``: a thousand
    submits to one folder at once prove it once, not a thousand times (those arriving while the
    proof runs wait for it). A folder that turns unwritable within that time fails at save time
    instead, the task kept with its URL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._proven: dict[Path, tuple[float, Path]] = {}
        self._proving: dict[Path, anyio.Event] = {}

    async def prepare(self, folder: Path) -> Path:
        while True:
            proven = self._proven.get(folder)
            if proven is not None and self._clock() - proven[0] < PROVEN_SECONDS:
                return proven[1]
            proving = self._proving.get(folder)
            if proving is None:
                break
            await proving.wait()  # then look again: proven, or this call proves it itself
        now, self._proving[folder] = self._clock(), anyio.Event()
        try:
            absolute = await anyio.to_thread.run_sync(prepare_folder, folder)
            self._proven[folder] = (now, absolute)
            return absolute
        finally:
            self._proving.pop(folder).set()


def posters_folder(video_folder: Path) -> Path:
    """``<video_folder>/.posters``, created if missing; ``OutputError`` when it is a symlink or
    not a folder (a planted link must not send poster writes elsewhere)."""
    folder = video_folder / POSTERS
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o755)
    mode = os.lstat(folder).st_mode
    if stat.S_ISLNK(mode):
        raise OutputError(f"{str(folder)!r} is a symbolic link: no poster is written through "
                          "it (remove the link to get posters back).")  # fmt: skip
    if not stat.S_ISDIR(mode):
        raise OutputError(f"{str(folder)!r} is not a folder: no poster is written (remove it "
                          "to get posters back).")  # fmt: skip
    return folder
