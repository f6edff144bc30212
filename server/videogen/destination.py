"""The output folder's side of finishing a task: check it before billing, tidy it, posters.

Synchronous file-system helpers; the engine runs them through ``anyio.to_thread``.

- ``prepare_folder`` is the preflight ``Engine.submit`` runs *before* anything is billed: the
  folder is created with its parents (a user who names a folder wants it) and proven writable by
  creating and removing a file in it, or ``OutputError`` names the folder and the fix.
- ``sweep_temporaries`` removes what a killed process left for one task: the download's
  ``.<name>.part-XXXXXXXX``, the conform's ``.<name>.conform-XXXXXXXX.mp4`` and the poster's
  ``.posters/.<stem>.jpg.part-XXXXXXXX``. The engine calls it while holding the task's lease, so
  no live process of ours is writing them — except for a name shared by two tasks (a requested
  ``filename``): such files are removed only once they are older than ``shared_after`` seconds.
  A file a live writer holds locked (``download.hold_lock``) is never removed. (download.py and
  media.py also sweep unlocked orphans of any name before they write; this sweep adds the
  posters' and runs when a task is taken over, before anything is written.)
- ``posters_folder`` creates/opens ``.posters`` without following a symlink planted there.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Final

from videogen.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

POSTERS: Final = ".posters"
_HEX8: Final = r"[0-9a-f]{8}"

#: How to choose another output folder, in every interface's terms. A tool call cannot: the MCP
#: server's folder is its VIDEOGEN_OUTPUT_DIR, and a call chooses only the file name.
FIX: Final = (
    "choose a folder you can write to: on the command line pass --output FOLDER (or set "
    "VIDEOGEN_OUTPUT_DIR); for the MCP server set VIDEOGEN_OUTPUT_DIR in its environment (the "
    "host's server configuration) and restart it, since a tool call chooses only the file "
    "name (filename), not the folder"
)


def prepare_folder(folder: Path) -> Path:
    """Create ``folder`` (with parents) and prove a file can be made in it; its absolute path.

    Raises ``OutputError`` naming the folder, what is wrong and the fix.
    """
    folder = folder.expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"Cannot save videos in {str(folder)!r}: it exists and is not a "
                          f"folder. Please {FIX}.") from None  # fmt: skip
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder {str(folder)!r} "
                          f"({exc.strerror or exc}). Please {FIX}.") from exc  # fmt: skip
    probe = folder / f".videogen-write-check-{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        os.close(os.open(probe, flags, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"Cannot write in the output folder {str(folder)!r} "
                          f"({exc.strerror or exc}). Please {FIX}.") from exc  # fmt: skip
    return folder.absolute()


def temporary_patterns(filename: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The temp files of a video saved as ``filename`` (or ``stem-N.ext`` after a clash): the
    download's and conform's (in the folder), and the poster's (in ``.posters``)."""
    stem, dot, ext = filename.rpartition(".")
    if not stem:
        stem, dot, ext = filename, "", ""
    saved = rf"{re.escape(stem)}(?:-\d+)?{re.escape(dot + ext)}"
    in_folder = re.compile(
        rf"\.(?:{re.escape(filename)}\.part-{_HEX8}|{saved}\.conform-{_HEX8}\.mp4)"
    )
    posters = re.compile(rf"\.{re.escape(stem)}(?:-\d+)?\.jpg\.part-{_HEX8}")
    return in_folder, posters


def sweep_temporaries(
    folder: Path, filename: str, *, shared_after: float | None = None, now: float | None = None
) -> list[Path]:
    """Remove the temp files a killed run left for the video ``filename``; returns them.

    ``shared_after``: the name is not unique to this task, so only files untouched for that
    many seconds are removed (a live writer of another task touches its file all the time).
    Symlinks are never followed (only unlinked if they match).
    """
    in_folder, posters = temporary_patterns(filename)
    # Every temporary name starts with "." and the stem: a cheap test before the pattern, as
    # the folder may hold thousands of videos.
    prefix = "." + (filename.rpartition(".")[0] or filename)
    removed = _sweep(folder, prefix, in_folder, shared_after, now)
    poster_dir = folder / POSTERS
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(poster_dir).st_mode):
            removed += _sweep(poster_dir, prefix, posters, shared_after, now)
    return removed


def _sweep(
    folder: Path,
    prefix: str,
    pattern: re.Pattern[str],
    shared_after: float | None,
    now: float | None,
) -> list[Path]:
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        with os.scandir(folder) as scan:
            entries = [e for e in scan if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if shared_after is not None and age < shared_after:
                continue
            if _remove_unless_locked(Path(entry.path), entry.is_symlink()):
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _remove_unless_locked(path: Path, is_link: bool) -> bool:
    """Unlink ``path`` unless a live writer holds its advisory lock (download.hold_lock)."""
    if is_link or fcntl is None:  # unlinking a link never touches its target
        os.unlink(path)
        return True
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live download or conform is writing it
        os.unlink(path)
        return True
    finally:
        os.close(fd)


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
