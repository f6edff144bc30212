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
import unicodedata
from pathlib import Path
from typing import BinaryIO, Final

from videogen.errors import InputError, OutputError

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
    from videogen.download import create_locked  # the locked temporaries live there

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
