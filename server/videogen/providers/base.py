"""The small interface every provider adapter implements, and the values it trades in.

An adapter turns one call into one HTTP exchange (through the ``httpx2.AsyncClient`` it is given)
and parses the answer into these values. It never sleeps, loops, retries, downloads or touches
the ledger: the engine does all of that. Foreign errors become the project's error tree in one
place per adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from videogen.catalog import Mode, ProviderName
from videogen.errors import ProviderError
from videogen.models import GenerationRequest, ProviderStatus


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image ready to send: a URL, or checked bytes as plain base64 (no ``data:`` prefix)."""

    url: str | None = None
    base64: str | None = field(default=None, repr=False)
    mime: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def data_url(self) -> str:
        """``data:<mime>;base64,...`` for APIs that take data URLs (TokenOps ``image_base64``)."""
        if self.base64 is None:
            raise ValueError("not an uploaded image")
        return f"data:{self.mime};base64,{self.base64}"


@dataclass(frozen=True, slots=True)
class PreparedInputs:
    """The request's inputs after checking: images in request order, audio and masks as URLs."""

    images: tuple[PreparedImage, ...] = ()
    audio_url: str | None = None
    mask_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Enough to poll a provider task: its id, and for Volcengine the submit's req_key."""

    provider_task_id: str
    req_key: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    ref: TaskRef
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class PollResult:
    """One poll's answer, in the project's status vocabulary.

    ``error`` is set when ``status`` is ``failed`` or ``expired`` and says why. ``poll_after`` is
    the provider's hint (seconds) for the next poll, when it gives one. ``progress`` is the
    fraction done (0..1), when the provider says.
    """

    status: ProviderStatus
    raw_status: str
    video_url: str | None = None
    url_expires_at: float | None = None
    progress: float | None = None
    error: ProviderError | None = None
    request_id: str | None = None
    poll_after: float | None = None


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, the port always explicit (80/443 when omitted), as
    the HTTP client parses it: the unit credentials are trusted to."""
    import httpx2  # loaded with the adapters, not with the server

    parsed = httpx2.URL(url)
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme, 0)
    return f"{parsed.scheme}://{parsed.host}:{port}"


@dataclass(frozen=True, slots=True)
class DownloadSource:
    """Where to fetch a finished video. ``headers`` (credentials) belong to the provider's own
    API origin only (scheme, host and port, see ``origin``): the downloader must drop them for
    any other (a CDN, a redirect, another port or a plain-HTTP URL on the same host)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    credential_origin: str | None = None

    def trusts(self, url: str) -> bool:
        """Whether ``headers`` may be sent to ``url``: only to exactly ``credential_origin``."""
        return self.credential_origin is not None and origin(url) == self.credential_origin


@dataclass(frozen=True, slots=True)
class SubjectDetection:
    """Synchronous detection: whether there is a subject, and its masks, largest first."""

    contains_subject: bool
    mask_urls: tuple[str, ...]
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecognitionPoll:
    status: ProviderStatus
    contains_subject: bool | None = None
    error: ProviderError | None = None
    request_id: str | None = None


class Provider(Protocol):
    """One provider API. Methods raise ``videogen.errors`` only."""

    name: ProviderName
    #: Modes this provider can run.
    modes: frozenset[Mode]
    #: Whether local image files can be uploaded (as base64); if not, images must be URLs.
    accepts_uploaded_images: bool

    async def submit(self, request: GenerationRequest, inputs: PreparedInputs) -> Submitted:
        """Create a billed task. Sent once: the caller never resends after an ambiguous error."""
        ...

    async def poll(self, ref: TaskRef) -> PollResult:
        """Ask once how a task is doing. Safe to repeat."""
        ...

    async def download_source(self, ref: TaskRef, poll: PollResult) -> DownloadSource:
        """Where the finished video can be fetched (may ask the provider for a fresh URL)."""
        ...

    async def cancel(self, ref: TaskRef) -> None:
        """Cancel a task that is still queued (``InputError`` where the provider cannot)."""
        ...

    async def detect_subjects(self, image: PreparedImage) -> SubjectDetection:
        """OmniHuman subject detection, synchronous (``InputError`` where not offered)."""
        ...

    async def submit_recognition(self, image: PreparedImage) -> TaskRef:
        """Start OmniHuman subject recognition (asynchronous)."""
        ...

    async def poll_recognition(self, ref: TaskRef) -> RecognitionPoll:
        """Ask once how a recognition is doing."""
        ...
