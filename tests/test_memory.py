"""The process's memory on glibc: few malloc arenas once the app opens; freed memory handed
back after a sandbox render."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from videogen.memory import MALLOC_ARENAS, on_glibc

#: Threads that allocate at once and hold what they allocated, then glibc's own account of its
#: heaps (``malloc_info``: one ``<heap nr=...>`` per arena).
ARENAS_CHILD = """
import ctypes, os, sys, tempfile, threading
from videogen.memory import limit_malloc_arenas
if sys.argv[1] == "limited":
    assert limit_malloc_arenas()
start, held = threading.Barrier(16), []
def work():
    start.wait()
    held.append([bytearray(4096) for _ in range(2000)])
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
with tempfile.TemporaryFile() as out:
    stream = libc.fdopen(os.dup(out.fileno()), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    out.seek(0)
    print(out.read().decode().count("<heap nr="))
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", ARENAS_CHILD, mode],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return int(done.stdout.strip())


@pytest.mark.skipif(not on_glibc(), reason="malloc arenas are glibc's")
def test_the_app_keeps_few_malloc_arenas_however_many_threads_allocate() -> None:
    """16 threads allocating at once: glibc alone makes an arena for most of them (each keeps
    what is freed in it); with the app's limit there are at most ``MALLOC_ARENAS``."""
    assert _arenas("limited") <= MALLOC_ARENAS
    assert _arenas("default") > MALLOC_ARENAS  # what the limit changes, on this machine


def test_an_explicit_malloc_arena_max_is_left_to_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from videogen.memory import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


#: One 720p render in a fresh process: how much its resident memory grew (MB) once it is done.
RENDER_CHILD = """
import sys, tempfile, psutil
from pathlib import Path
import videogen.sandbox.render as render
if sys.argv[1] == "kept":
    render.return_freed_memory = lambda: False
render.encode(render.RenderSpec("text", 64, 64, 2, text="warm"), Path(tempfile.mkdtemp()) / "w.mp4")
before = psutil.Process().memory_info().rss
spec = render.RenderSpec("text", 1280, 720, 48, text="a paper boat")
render.Renderer(Path(tempfile.mkdtemp())).render_sync(spec)
print((psutil.Process().memory_info().rss - before) / 1e6)
"""


def _growth_after_render(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", RENDER_CHILD, mode],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return float(done.stdout.strip())


@pytest.mark.skipif(not on_glibc(), reason="malloc_trim is glibc's")
def test_a_sandbox_render_hands_its_frames_memory_back_when_done() -> None:
    """The embedded sandbox lives in the server's process: a render's frames and encoder
    buffers do not stay resident after it (they do when nothing hands them back)."""
    assert _growth_after_render("returned") < 15
    assert _growth_after_render("kept") > 25  # what the hand-back changes, on this machine
