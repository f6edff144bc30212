"""Models shared by every layer: the request, the task record and its states, media facts."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from videogen.catalog import (
    AspectRatio,
    CameraMove,
    CameraStrength,
    Duration,
    Fps,
    Mode,
    OmniResolution,
    ProviderName,
    provider_clip_seconds,
)

#: A task's life in the ledger.
#: ``waiting``: written, waiting its turn in the account-wide queue (``engine.queue``); nothing
#: sent yet. ``submitting``: written, submit in flight. ``queued``/``running``: the provider has it.
#: ``ready``: the provider finished; the video is not saved yet (download pending or failed).
#: ``completed``: the file is saved. ``failed``: the provider failed or refused it.
#: ``expired``: the provider no longer knows it. ``unknown``: the submit's outcome could not be
#: learned (it may be billed); nothing is resent automatically.
TaskStatus = Literal[
    "waiting",
    "submitting",
    "queued",
    "running",
    "ready",
    "completed",
    "failed",
    "expired",
    "unknown",
]
#: A task in one of these holds a place at the provider (``engine.queue`` counts them against its
#: bucket's limit); ``ready`` is done there, ``waiting`` was not sent yet.
OCCUPYING_STATUSES: Final[tuple[TaskStatus, ...]] = ("submitting", "queued", "running")
TERMINAL_STATUSES: Final[frozenset[TaskStatus]] = frozenset(
    {"completed", "failed", "expired", "unknown"}
)
#: What a provider says of a task, mapped from its own vocabulary.
ProviderStatus = Literal["queued", "running", "succeeded", "failed", "expired"]

#: A data URL longer than this is stored abbreviated (see ``GenerationRequest.compact``).
DATA_URL_KEPT_CHARS: Final = 256
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<b64>;base64)?,(?P<payload>.*)", re.DOTALL)


def abbreviate_data_url(reference: str) -> str:
    """``data:image/png;base64,… (sha256 ab12cd34ef56…, 123456 bytes)`` for a long data URL;
    anything else (URLs, paths, short data URLs, already abbreviated ones) as it is."""
    match = _DATA_URL.fullmatch(reference)
    if match is None or len(reference) <= DATA_URL_KEPT_CHARS:
        return reference
    payload = match["payload"]
    try:
        raw = base64.b64decode(payload) if match["b64"] else payload.encode()
    except (binascii.Error, ValueError):
        raw = payload.encode()
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return f"data:{match['mime']}{match['b64'] or ''},… (sha256 {digest}…, {len(raw)} bytes)"


def abbreviated(reference: str) -> bool:
    """True for a data URL ``abbreviate_data_url`` shortened (its bytes are gone)."""
    return reference.startswith("data:") and ",… (sha256 " in reference


def mode_label(mode: str, scene: str | None) -> str:
    """A mode as results and usage name it: the mode, or ``scene:<scene>`` for a scene."""
    return f"scene:{scene}" if mode == "scene" else mode


class GenerationRequest(BaseModel):
    """What the caller asked for, normalised. Never holds credentials or file contents.

    ``images`` are references as the caller gave them (URL, local path or data URL), in order:
    first frame then tail frame for Jimeng; the portrait for OmniHuman; the photos for a scene.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: ProviderName
    mode: Mode
    prompt: str = ""
    images: tuple[str, ...] = ()
    audio: str | None = None
    masks: tuple[str, ...] = ()
    duration: Duration = 5
    fps: Fps = 24
    aspect_ratio: AspectRatio | None = None
    seed: int = -1
    camera: CameraMove | None = None
    camera_strength: CameraStrength | None = None
    resolution: OmniResolution | None = None
    fast_mode: bool = False
    scene: str | None = None
    filename: str | None = None
    #: Absolute folder to save into; None means the configured output directory.
    output_dir: str | None = None

    @property
    def provider_seconds(self) -> int:
        """The provider clip length (5 or 10 s) this request is generated at."""
        return provider_clip_seconds(self.duration)

    @property
    def mode_label(self) -> str:
        return mode_label(self.mode, self.scene)

    def compact(self) -> GenerationRequest:
        """This request with its data URLs abbreviated: what the ledger keeps once the request
        is in hand (the bytes are sent once and never needed again: nothing is resubmitted)."""
        return self.model_copy(
            update={
                "images": tuple(map(abbreviate_data_url, self.images)),
                "masks": tuple(map(abbreviate_data_url, self.masks)),
                "audio": None if self.audio is None else abbreviate_data_url(self.audio),
            }
        )

    def dedupe_key(self) -> str:
        """Same provider, mode, prompt, inputs and parameters give the same key."""
        fields = self.model_dump(mode="json", exclude={"filename", "output_dir"})
        blob = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


class StatusEvent(BaseModel):
    status: TaskStatus
    at: float
    note: str | None = None


class MediaInfo(BaseModel):
    """Facts probed from a saved file."""

    duration: float = Field(description="seconds")
    fps: float
    width: int
    height: int
    codec: str
    size_bytes: int
    frames: int | None = None


class TaskError(BaseModel):
    """An error recorded on a task, as the user should read it."""

    kind: str
    message: str
    code: str | None = None
    request_id: str | None = None


class LimitUse(BaseModel):
    """One spending limit as a generation left it (this generation included)."""

    variable: str = Field(description="The VIDEOGEN_LIMIT_* setting.")
    limit: float
    spent: float = Field(description="Used in the limit's period, this generation included.")
    resets_at: float = Field(description="Unix time the period ends (UTC day or month).")


class Usage(BaseModel):
    """What was billed when a generation was recorded, it included (see videogen.spending)."""

    videos_today: int = Field(description="Videos billed today (UTC), this one included.")
    seconds_today: int = Field(description="Requested provider clip seconds billed today.")
    spend_today: float | None = Field(None, description="With VIDEOGEN_PRICES: money today.")
    limits: list[LimitUse] = Field(default_factory=list)
    summary: str = Field(description='e.g. "today: 3 videos, 15 s; limits: 3 of 20 videos today"')


class QueuePlace(BaseModel):
    """Where a ``waiting`` task stands in its queue (read from the ledger for one answer)."""

    place: int = Field(description="1 for the next task to go, 2 for the one after ...")
    limit: int | None = Field(description="How many of its kind may be at the provider at once.")


class Task(BaseModel):
    """One generation as the ledger keeps it."""

    id: str
    request: GenerationRequest
    status: TaskStatus
    created_at: float
    updated_at: float
    history: list[StatusEvent] = Field(default_factory=list)
    provider_task_id: str | None = None
    req_key: str | None = None
    request_ids: list[str] = Field(default_factory=list)
    video_url: str | None = None
    video_url_expires_at: float | None = None
    local_path: str | None = None
    poster_path: str | None = None
    media: MediaInfo | None = None
    error: TaskError | None = None
    progress: float | None = None
    sandbox: bool = False
    owner: str | None = None
    #: Where the task was sent: a hash of provider, endpoint and credential identity (never a
    #: key). ``ledger.UNRECORDED_ORIGIN`` for tasks recorded before origins were kept.
    origin: str | None = None
    #: The endpoint in words, for messages: a base URL, or "the embedded sandbox".
    endpoint: str | None = None
    #: ``request.dedupe_key()`` of the request as given (``request`` may be abbreviated since).
    dedupe_key: str | None = None
    #: When a caller cancelled it (``Engine.cancel``). A task the provider could not stop keeps
    #: its status: it may still be billed, and its video is still saved.
    cancelled_at: float | None = None
    #: Spend when the task was recorded (set when a spending limit or price is configured).
    usage: Usage | None = None
    #: Object keys of local inputs uploaded for the provider to fetch (``VIDEOGEN_STORAGE_URL``),
    #: until they are deleted once the provider is done with them.
    uploads: list[str] = Field(default_factory=list)
    #: The saved video's key in the object store, once it is stored there.
    object_key: str | None = None
    #: A presigned download link to ``object_key`` and when it stops working: made for each
    #: answer, never stored.
    video_link: str | None = Field(None, exclude=True)
    video_link_expires_at: float | None = Field(None, exclude=True)
    #: Notes for this one answer (e.g. "an identical request ... returned the first task");
    #: not stored in the ledger.
    notes: list[str] = Field(default_factory=list, exclude=True)
    #: For a ``waiting`` task in one answer: its place in line; not stored in the ledger.
    queue_place: QueuePlace | None = Field(None, exclude=True)

    @property
    def provider(self) -> ProviderName:
        return self.request.provider

    @property
    def bucket(self) -> str:
        """The queue this task waits in and counts against (``engine.queue``): where it is sent
        (its origin: provider, endpoint, account) and its mode, as the provider counts tasks in
        flight per account and model."""
        return f"{self.origin}/{self.request.mode_label}"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def new_task_id() -> str:
    """A short id the model can pass back verbatim, unique across providers."""
    return "vg_" + secrets.token_hex(6)
