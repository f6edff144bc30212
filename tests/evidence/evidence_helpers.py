"""Shared pieces of the evidence suite (issue 7): environments, file checks, ledger reads.

Every check here is about what a user would see: the task in the ledger, how many submits the
provider saw, and whether the outcome is a playable file or a readable error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from videogen.config import VARIABLES
from videogen.ledger import Ledger
from videogen.models import Task
from videogen.sandbox import LogEntry

#: Sandbox jobs take this long (s); the engine polls this often (s).
JOB_SECONDS = 1.0
POLL_INTERVAL = "0.2"

#: One request per provider that every fault can act on: text (for reject_text) and an image
#: (for reject_image) where the provider takes both; the sandbox never fetches the image URL.
REQUESTS: dict[str, dict[str, object]] = {
    "volcengine": {
        "prompt": "a paper boat on a pond",
        "provider": "volcengine",
        "image": "https://example.com/boat.png",
    },
    "tokenops": {
        "prompt": "a paper boat on a pond",
        "provider": "tokenops",
        "image": "https://example.com/boat.png",
    },
    "jenius": {"mode": "scene", "scene": "celebrity", "images": ["https://example.com/me.jpg"]},
}

#: The same requests as ``videogen generate`` arguments.
CLI_ARGS: dict[str, list[str]] = {
    "volcengine": ["a paper boat on a pond", "--provider", "volcengine", "--image",
                   "https://example.com/boat.png"],
    "tokenops": ["a paper boat on a pond", "--provider", "tokenops", "--image",
                 "https://example.com/boat.png"],
    "jenius": ["--scene", "celebrity", "--images", "https://example.com/me.jpg"],
}  # fmt: skip


def clean_env(root: Path, **extra: str) -> dict[str, str]:
    """A child's environment: this one minus every videogen variable, plus private folders."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES and k != "XDG_STATE_HOME"}
    env.update(
        HOME=str(root / "home"),
        VIDEOGEN_OUTPUT_DIR=str(root / "videos"),
        VIDEOGEN_DATA_DIR=str(root / "data"),
        JIMENG_VIDEO_POLL_INTERVAL=POLL_INTERVAL,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def settings_env(root: Path, **extra: str) -> dict[str, str]:
    """The variables ``Settings.from_env`` gets in-process (nothing inherited)."""
    return {
        "HOME": str(root / "home"),
        "VIDEOGEN_OUTPUT_DIR": str(root / "videos"),
        "VIDEOGEN_DATA_DIR": str(root / "data"),
        "JIMENG_VIDEO_POLL_INTERVAL": POLL_INTERVAL,
        "VIDEOGEN_WAIT_SECONDS": "40",
        **extra,
    }


def ledger_tasks(data_dir: Path) -> list[Task]:
    """Every task in the ledger at ``data_dir`` (newest first); [] when there is none."""
    if not data_dir.exists():
        return []
    ledger = Ledger.in_dir(data_dir)
    try:
        return ledger.recent(limit=1000)
    finally:
        ledger.close()


@dataclass(frozen=True)
class Playable:
    duration: float
    fps: float
    width: int
    height: int
    frames: int

    def __str__(self) -> str:
        return f"{self.duration:.2f} s, {self.fps:g} fps, {self.width}x{self.height}"


def probe_playable(path: Path) -> Playable:
    """Decode every video frame with PyAV (raises on a broken file); the facts of the file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = float(stream.average_rate or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
    if frames == 0 or rate <= 0:
        raise ValueError(f"{path} has no decodable frames")
    return Playable(frames / rate, rate, width, height, frames)


def stray_files(folder: Path) -> list[str]:
    """Partial or temporary files left in an output folder (there must be none)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or p.name.endswith(".tmp"))


def submit_problems(entries: Sequence[LogEntry], *, completed: bool) -> list[str]:
    """What is wrong with the submits the provider saw, if anything.

    Rules: at most one submit was accepted (HTTP 200, i.e. billed); exactly one when a video was
    made; and after an ambiguous submit (dropped, or a 5xx: it may have been billed) nothing was
    sent again. A retry after a clear refusal (429) is allowed.
    """
    submits = [e for e in entries if e.operation == "submit"]
    accepted = [e for e in submits if e.http_status == 200]
    problems = []
    if len(accepted) > 1:
        problems.append(f"{len(accepted)} submits accepted (billed)")
    if completed and len(accepted) != 1:
        problems.append(f"a video without exactly one accepted submit ({len(accepted)})")
    for i, entry in enumerate(submits):
        ambiguous = entry.http_status == 0 or entry.http_status >= 500
        if ambiguous and i + 1 < len(submits):
            problems.append(f"submit resent after an ambiguous answer ({entry.http_status})")
    return problems


@dataclass
class Cell:
    """One fault × provider × interface run and what was found."""

    interface: str
    provider: str
    fault: str
    expected: str  # "file" or "error"
    status: str = "-"
    outcome: str = "-"  # "file", "error" or "-" (nothing usable)
    detail: str = ""
    submits: int = 0
    accepted: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.outcome == self.expected

    def row(self) -> str:
        verdict = "pass" if self.ok else "FAIL: " + "; ".join(self.problems or ["unexpected"])
        detail = self.detail.replace("|", "/").replace("\n", " ")
        if len(detail) > 90:
            detail = detail[:87] + "..."
        return (
            f"| {self.interface} | {self.provider} | `{self.fault}` | {self.expected} | "
            f"{self.status} | {self.outcome} | {detail} | {self.submits}/{self.accepted} | "
            f"{self.seconds:.1f} | {verdict} |"
        )


TABLE_HEAD = (
    "| interface | provider | fault | expected | status | outcome | detail | submits sent/"
    "accepted | s | verdict |\n|---|---|---|---|---|---|---|---|---|---|"
)


def table(cells: Sequence[Cell]) -> str:
    return "\n".join([TABLE_HEAD, *(c.row() for c in cells)])


def write_table(name: str, cells: Sequence[Cell]) -> None:
    """Write the table to ``$VIDEOGEN_EVIDENCE_OUT/<name>.md`` when that is set (run_all.py)."""
    out = os.environ.get("VIDEOGEN_EVIDENCE_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{name}.md").write_text(table(cells) + "\n", encoding="utf-8")


def readable(message: str | None) -> bool:
    """An error a user can act on: a sentence, not a bare class name or a traceback."""
    return bool(message) and len(message or "") >= 20 and "Traceback" not in (message or "")


def struct_png(width: int, height: int) -> bytes:
    """A valid grey RGB PNG of the given size, written without an imaging library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = zlib.compress((b"\x00" + b"\x80\x80\x80" * width) * height)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
