"""A tiny 5x7 bitmap font, enough to write a prompt onto a synthetic frame.

Upper-case letters, digits and common punctuation; lower case is drawn upper case and any other
character (CJK included) as a hollow box, so every prompt still visibly lands in the video.
"""

from __future__ import annotations

import textwrap
from typing import Final

import numpy as np
import numpy.typing as npt

GLYPH_WIDTH: Final = 5
GLYPH_HEIGHT: Final = 7

_GLYPHS: Final[dict[str, str]] = {
    " ": "..... ..... ..... ..... ..... ..... .....",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    ".": "..... ..... ..... ..... ..... .##.. .##..",
    ",": "..... ..... ..... ..... .##.. ..#.. .#...",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
    "-": "..... ..... ..... ##### ..... ..... .....",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "'": "..#.. ..#.. .#... ..... ..... ..... .....",
    '"': ".#.#. .#.#. ..... ..... ..... ..... .....",
    "/": "....# ...#. ...#. ..#.. .#... .#... #....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.",
    ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    "=": "..... ..... ##### ..... ##### ..... .....",
    "_": "..... ..... ..... ..... ..... ..... #####",
    "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
    "&": ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#",
}
_BOX: Final = "##### #...# #...# #...# #...# #...# #####"


def _glyph(char: str) -> npt.NDArray[np.bool_]:
    rows = _GLYPHS.get(char.upper(), _BOX).split()
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


_CACHE: dict[str, npt.NDArray[np.bool_]] = {}


def glyph(char: str) -> npt.NDArray[np.bool_]:
    """The 7x5 bitmap of one character."""
    if char not in _CACHE:
        _CACHE[char] = _glyph(char)
    return _CACHE[char]


def wrap(text: str, width: int = 28, max_lines: int = 4) -> list[str]:
    """The prompt as at most ``max_lines`` lines of ``width`` characters (ellipsis if cut)."""
    flat = " ".join(text.split())
    lines = textwrap.wrap(flat, width=width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: width - 3] + "..."
    return lines


def bitmap(lines: list[str], scale: int) -> npt.NDArray[np.bool_]:
    """Lines of text as one boolean bitmap, each glyph cell 6x8 pixels times ``scale``."""
    cols = max(len(line) for line in lines) if lines else 0
    out = np.zeros((len(lines) * 8, max(cols, 1) * 6), dtype=bool)
    for r, line in enumerate(lines):
        offset = (cols - len(line)) * 3  # centre each line
        for c, char in enumerate(line):
            x = offset + c * 6
            out[r * 8 : r * 8 + 7, x : x + 5] = glyph(char)
    return np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
