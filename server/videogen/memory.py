"""The process's memory, on glibc (elsewhere every call here does nothing).

- ``limit_malloc_arenas``: at most ``MALLOC_ARENAS`` malloc arenas. The engine's file work runs
  in up to 40 worker threads, and glibc gives each thread an arena of its own (up to 8 per
  core) whose freed memory it rarely returns: with a thousand tasks in flight that is about
  30 MB of resident memory that buys nothing here (the threads mostly wait on system calls).
  ``open_app`` sets it; an explicit ``MALLOC_ARENA_MAX`` is left to glibc.
- ``return_freed_memory``: hand the heap's free pages back to the system (``malloc_trim``).
  The embedded sandbox calls it after each render: a 1080p encode's frames and encoder
  buffers (~90 MB) would otherwise stay resident after the render is done.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

#: glibc's ``mallopt`` parameter for the most malloc arenas (``M_ARENA_MAX``).
_M_ARENA_MAX: Final = -8
#: Arenas kept: the event loop's and one for the worker threads.
MALLOC_ARENAS: Final = 2


def on_glibc() -> bool:
    """Whether this process runs on glibc."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system (or no confstr at all)
        return False


def limit_malloc_arenas() -> bool:
    """At most ``MALLOC_ARENAS`` malloc arenas from now on, unless ``MALLOC_ARENA_MAX`` says
    otherwise; True when the limit was set."""
    if os.environ.get("MALLOC_ARENA_MAX") or not on_glibc():
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS))
    except (OSError, AttributeError):
        return False


def return_freed_memory() -> bool:
    """Give the heap's free memory back to the system; True when glibc returned some."""
    if not on_glibc():
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False
