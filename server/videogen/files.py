"""The file room: what a saved video may be called, and how files get into the output folder.

- :func:`check_name` is *the* file-name rule. Intake applies it before anything is sent (a name
  the saver would refuse must never be billed) and the saver applies it again; whatever it
  accepts can be saved on this machine and is portable (Windows, macOS, Linux): no folders or
  separators, no leading dot (hidden files), no control, format (bidirectional overrides,
  zero-width marks), surrogate, private-use or unassigned characters, no ``<>:"|?*``, no leading
  or trailing whitespace, no Windows device name (``CON``, ``nul.mp4``, ``COM1``...), and at
  most ``NAME_BYTES`` bytes of UTF-8 once ``.mp4`` is added (room is left for the temporary
  names ``.<name>.part-xxxxxxxx.new`` and ``.<name>.conform-xxxxxxxx.mp4``).
- :func:`safe_filename` is the name a video is saved under: the requested name (checked), or a
  slug of the prompt and the task id (which always passes the rule).
- :func:`publish` links a finished temporary file to the first free name (``boat.mp4``,
  ``boat-1.mp4``, ...) without ever replacing or following anything; :func:`copy_into` delivers
  a copy of a saved video that way; :func:`fsync_dir` makes such a rename durable.
- Temporary files are created already locked (:func:`create_locked`, so no sweeper takes a
  live one); :func:`sweep_orphans` removes unlocked ones of any name a killed process left in
  a folder (download and conform do it before they write), :func:`sweep_temporaries` those of
  one task, posters' included (the engine, when it takes a task over). The engine calls the
  latter while holding the task's lease, so no live process of ours is writing them — except
  for a name shared by two tasks (a requested ``filename``): such files are removed only once
  they are older than ``shared_after`` seconds.
- :func:`open_saved` opens a saved file for reading only if it is a regular file directly in
  the folder it was saved to (no symlink followed, neither the file nor the folder);
  :func:`saved_file` says whether a recorded video is still there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import threading
import time
import unicodedata
from pathlib import Path
from typing import BinaryIO, Final

from videogen.errors import InputError, OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no orphan sweeping
    fcntl = None  # type: ignore[assignment]

#: The folder, beside the videos, that holds their poster frames.
POSTERS: Final = ".posters"
#: Longest accepted file name in UTF-8 bytes (``.mp4`` included); filesystems allow 255, the
#: rest is room for the temporary names made next to it.
NAME_BYTES: Final = 200
#: The longest slug taken from a prompt, in characters.
SLUG_CHARS: Final = 48
#: Characters Windows (and macOS, for ':') cannot have in a file name.
_FORBIDDEN: Final = frozenset('<>:"/\\|?*')
#: Unicode categories never allowed: control, format (bidi overrides, zero-width), surrogate,
#: private use, unassigned, line and paragraph separators.
_BAD_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Windows device names, reserved whatever the extension (``nul.mp4`` is the device too).
_RESERVED: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in ("123456789" + "¹²³")}
)
_ADVICE: Final = (
    "give a plain file name such as 'boat.mp4' (no folders); the video is always saved in "
    "the output folder"
)


def check_name(requested: str) -> str:
    """The name a video asked to be saved as ``requested`` gets: ``requested`` itself, with
    ``.mp4`` appended when it does not end so. ``InputError`` naming the problem and the fix
    when the rule (module docstring) refuses it."""
    problem = _problem(requested)
    if problem is None:
        name = requested if requested.lower().endswith(".mp4") else requested + ".mp4"
        size = len(name.encode())
        if size <= NAME_BYTES:
            return name
        problem = f"it is {size} bytes long (with .mp4), more than {NAME_BYTES}"
    raise InputError(f"The file name {_shown(requested)} cannot be used: {problem}; {_ADVICE}.")


def _problem(name: str) -> str | None:
    if not name or name.isspace():
        return "it is empty"
    if name != name.strip():
        return "it starts or ends with a space"
    if name.startswith("."):
        return "it starts with a dot (a hidden file, or '..')"
    forbidden = sorted({c for c in name if c in _FORBIDDEN})
    if forbidden:
        return f"it contains {' '.join(forbidden)} (folders and drives cannot be named here)"
    if any(unicodedata.category(c) in _BAD_CATEGORIES for c in name):
        return "it contains control, formatting or unassigned characters"
    if name.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        return "it is a device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
    return None


def _shown(name: str) -> str:
    """``repr`` escapes every unprintable character (a bidi override cannot reorder a message)."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def safe_filename(prompt: str, task_id: str, requested: str | None = None) -> str:
    """The file name a video is saved under.

    With ``requested``: ``check_name(requested)``. Without: ``<slug>_<task_id>.mp4``, the slug
    being the prompt ASCII-folded where possible (CJK and other letters kept), lower case,
    separators and punctuation turned into ``-``, at most 48 characters (``video`` if empty).
    """
    if requested is not None:
        return check_name(requested)
    slug = _slug(prompt)[:SLUG_CHARS].strip("-") or "video"
    while len(slug.encode()) > NAME_BYTES - 60:
        slug = slug[:-1]
    tid = re.sub(r"[^A-Za-z0-9_-]", "", task_id) or "task"
    return f"{slug}_{tid[:40]}.mp4"


def _slug(text: str) -> str:
    pieces: list[str] = []
    for char in unicodedata.normalize("NFKD", text):
        category = unicodedata.category(char)
        if category == "Mn":  # accents left behind by NFKD: "é" -> "e"
            continue
        if char.isascii() and char.isalnum():
            pieces.append(char.lower())
        elif category[0] in "LN" and not char.isascii():
            pieces.append(char)  # CJK and other scripts are fine in file names
        else:
            pieces.append("-")
    return re.sub(r"-{2,}", "-", "".join(pieces)).strip("-")


# ----------------------------------------------------------------------------- putting files


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in ``folder`` durable; filesystems that refuse it are let be."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still done
    finally:
        os.close(fd)


def numbered(filename: str, n: int) -> str:
    """``boat.mp4`` for 0, ``boat-1.mp4`` for 1, ...: the names tried when one is taken."""
    if n == 0:
        return filename
    stem, dot, ext = filename.rpartition(".")
    if not stem:
        stem, dot, ext = filename, "", ""
    return f"{stem}-{n}{dot}{ext}"


def is_numbered(saved: str, filename: str) -> bool:
    """True when ``saved`` is ``filename`` or one of its :func:`numbered` variants."""
    stem, dot, ext = filename.rpartition(".")
    if not stem:
        stem, dot, ext = filename, "", ""
    return (
        re.fullmatch(rf"{re.escape(stem)}(?:-[1-9]\d*)?{re.escape(dot + ext)}", saved) is not None
    )


def publish(temporary: Path, folder: Path, filename: str) -> Path:
    """Link ``temporary`` (a finished file in ``folder``) to the first free name, remove the
    temporary name and return the path. Never replaces or follows anything; ``OSError`` as the
    filesystem raised it, ``OutputError`` when ten thousand names are taken."""
    for n in range(10_000):
        target = folder / numbered(filename, n)
        if target.parent != folder:  # belt and braces: names are bare already
            raise OutputError(f"Refusing to save outside the output folder: {target.name!r}.")
        try:
            _link_exclusive(temporary, target)
        except FileExistsError:
            continue
        with contextlib.suppress(FileNotFoundError):  # moved by the fallback of _link_exclusive
            os.unlink(temporary)
        fsync_dir(folder)
        return target
    raise OutputError(f"Too many files named like {filename!r} in {str(folder)!r}.")


def _link_exclusive(source: Path, target: Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in {errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}:
            raise
        # No hard links here (some network/FUSE filesystems): reserve the name exclusively,
        # then move our own file over the empty placeholder we just created.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        os.close(os.open(target, flags, 0o644))
        os.replace(source, target)


def copy_into(source: BinaryIO, folder: Path, filename: str) -> Path:
    """Copy the open file ``source`` into ``folder`` as ``filename`` (or ``stem-N``): through a
    hidden temporary file, fsync-ed, then :func:`publish`-ed. Nothing half-written is left."""
    temporary = folder / f".{filename}.part-{secrets.token_hex(4)}"
    fd = create_locked(temporary)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            shutil.copyfileobj(source, out, 4 << 20)
            out.flush()
            os.fsync(out.fileno())
        return publish(temporary, folder, filename)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def open_saved(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file in its folder and neither the file
    nor the folder's last component is a symlink. ``FileNotFoundError`` when it is gone,
    ``OSError`` (``ELOOP``, ``ENOTDIR``, ``EINVAL``) when it is a link or not a regular file."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    directory = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow)
    try:
        flags = os.O_RDONLY | nofollow | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path.name, flags, dir_fd=directory)
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")


def saved_file(path: str | None) -> Path | None:
    """``path`` when a video really is saved there (see :func:`open_saved`), else None."""
    if not path:
        return None
    try:
        open_saved(Path(path)).close()
    except OSError:
        return None
    return Path(path)


# ------------------------------------------------------------------------------ temporaries

#: A folder is swept for orphaned temporary files at most this often by one process: a sweep
#: lists the whole folder, so sweeping before every download is quadratic in a busy folder.
ORPHAN_SWEEP_SECONDS: Final = 60.0
_HEX8: Final = r"[0-9a-f]{8}"

#: Temporary files of a download (``.<name>.part-xxxxxxxx``) and of media.conform
#: (``.<name>.conform-xxxxxxxx.mp4``).
_TEMPORARY = re.compile(r"\..+\.(part-[0-9a-f]{8}|conform-[0-9a-f]{8}\.mp4)")


def hold_lock(fd: int) -> None:
    """Mark a temporary file as in use for as long as this process keeps ``fd`` open: the
    kernel drops the lock when the process dies, however it dies."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # a filesystem without locks: sweeping skips it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def create_locked(path: Path) -> int:
    """Create ``path`` exclusively, already locked (``hold_lock``), and return its descriptor.

    The file is made under a name no sweeper matches (``<path>.new``), locked, and only then
    renamed to ``path``: a sweeper can never see it unlocked and take a live file for an orphan
    (with many downloads at once, the instant between creating and locking does get hit).
    """
    staging = path.with_name(path.name + ".new")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(staging, flags, 0o644)
    try:
        hold_lock(fd)
        os.rename(staging, path)  # `path` ends in random hex: it names no existing file
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise
    return fd


def sweep_orphans(root: Path) -> None:
    """Remove temporary files left in ``root`` by a process that was killed mid-download or
    mid-conform. A live writer holds a lock on its file (``create_locked``) from before the file
    has its temporary name, so only files no live process holds are removed. Without ``fcntl``
    (Windows) nothing is swept."""
    if fcntl is None:
        return
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            name = entry.name
            if (
                name[0] == "."
                and _TEMPORARY.fullmatch(name)
                and entry.is_file(follow_symlinks=False)
            ):
                with contextlib.suppress(OSError):
                    _remove_unless_locked(Path(entry.path), is_link=False)


_last_sweeps: dict[Path, float] = {}
_last_sweeps_lock = threading.Lock()


def sweep_orphans_now_and_then(root: Path) -> None:
    """``sweep_orphans(root)`` unless this process swept ``root`` in the last
    ``ORPHAN_SWEEP_SECONDS`` (orphans only appear when another process dies: waiting a minute
    for them to go costs nothing, listing the folder before each of 500 downloads does)."""
    now = time.monotonic()
    with _last_sweeps_lock:
        last = _last_sweeps.get(root)
        if last is not None and now - last < ORPHAN_SWEEP_SECONDS:
            return
        _last_sweeps[root] = now
    sweep_orphans(root)


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
    """Unlink ``path`` unless a live writer holds its advisory lock (``hold_lock``)."""
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
