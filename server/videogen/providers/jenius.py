"""Jenius scene effects (contracts.md §3, seed 000): a scene plus photos in, a video out.

Create with ``POST {base}/plugins/video/tasks`` (``image_url`` for one photo, ``image_urls`` for
several), check with ``GET {base}/plugins/video/tasks/{uuid}``. Statuses ``created``/``pending``
-> queued, ``processing`` -> running, ``completed`` -> succeeded, ``failed`` (``error_msg``).
Images are URLs only (no upload is documented), and there is no cancel, detection or
recognition. Bearer auth; error bodies are ``{"code", "message"}`` when they are JSON at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Final, Literal, assert_never, get_args

import httpx2

from videogen.catalog import ProviderName
from videogen.config import ProviderEndpoint
from videogen.errors import (
    ContentRejected,
    GenerationFailed,
    InputError,
    ProviderError,
    VideogenError,
)
from videogen.models import GenerationRequest, ProviderStatus
from videogen.providers._common import (
    Loose,
    Once,
    TextId,
    bearer,
    body_text,
    credentials_error,
    json_body,
    parse,
    rate_limited,
    send,
    unavailable,
)
from videogen.providers.base import (
    DownloadSource,
    PollResult,
    PreparedImage,
    PreparedInputs,
    RecognitionPoll,
    SubjectDetection,
    Submitted,
    TaskRef,
)

PROVIDER: Final = "jenius"
TASKS: Final = "/plugins/video/tasks"

JeniusStatus = Literal["created", "pending", "processing", "completed", "failed"]
_KNOWN_STATUSES: Final[frozenset[str]] = frozenset(get_args(JeniusStatus))
_unknown_statuses = Once()
#: How a Jenius refusal or failure says that content review stopped it. Jenius documents no error
#: codes (contracts.md §3), so its words are all there is to tell a review from a bad request.
_REVIEW_WORDS: Final = re.compile(
    r"\b(?:review|risk|sensitive|moderation|violat\w*|inappropriate|nsfw|prohibited)\b"
    r"|审核|违规|敏感|风险",
    re.IGNORECASE,
)


class _Task(Loose):
    uuid: TextId
    status: str | None = None
    video_url: str | None = None
    error_msg: str | None = None


class _Envelope(Loose):
    code: int | None = None
    message: str | None = None
    data: _Task | None = None


class _ErrorBody(Loose):
    code: int | str | None = None
    message: str | None = None
    msg: str | None = None


class JeniusProvider:
    """Jenius scene videos."""

    name: ProviderName = "jenius"
    accepts_uploaded_images = False

    def __init__(
        self,
        endpoint: ProviderEndpoint,
        client: httpx2.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._endpoint = endpoint
        self._client = client
        self._clock = clock
        self._base = endpoint.base_url.rstrip("/")

    async def submit(self, request: GenerationRequest, inputs: PreparedInputs) -> Submitted:
        if request.mode != "scene" or not request.scene:
            raise InputError(
                f"Jenius only makes scene videos, not {request.mode}: use provider "
                "volcengine or tokenops for this mode."
            )
        urls = [_image_url(image) for image in inputs.images]
        if not urls:
            raise InputError(f"Scene {request.scene} needs at least one photo URL.")
        body: dict[str, Any] = {"scene": request.scene}
        if len(urls) == 1:
            body["image_url"] = urls[0]
        else:
            body["image_urls"] = urls
        response = await self._request("POST", TASKS, body)
        task = _task(response, "create")
        return Submitted(TaskRef(task.uuid), None)

    async def poll(self, ref: TaskRef) -> PollResult:
        response = await self._request("GET", f"{TASKS}/{ref.provider_task_id}", allow_404=True)
        if response.status_code == 404:
            error = ProviderError(
                f"Jenius does not know task {ref.provider_task_id} (HTTP 404): "
                "submit the request again.",
                provider=PROVIDER,
                http_status=404,
                provider_message=body_text(response),
            )
            return PollResult("expired", "not_found", error=error)
        return _poll_result(_task(response, "status"))

    async def download_source(self, ref: TaskRef, poll: PollResult) -> DownloadSource:
        if poll.video_url:
            return DownloadSource(url=poll.video_url)
        fresh = await self.poll(ref)
        if fresh.status != "succeeded" or not fresh.video_url:
            raise ProviderError(
                f"Jenius has no video for task {ref.provider_task_id} yet (status "
                f"{fresh.raw_status}): wait until it is completed.",
                provider=PROVIDER,
            )
        return DownloadSource(url=fresh.video_url)

    async def cancel(self, ref: TaskRef) -> None:
        raise InputError("Jenius documents no way to cancel a scene task: let it finish.")

    async def detect_subjects(self, image: PreparedImage) -> SubjectDetection:
        raise InputError("Jenius offers no subject detection: use provider volcengine or tokenops.")

    async def submit_recognition(self, image: PreparedImage) -> TaskRef:
        raise InputError(
            "Jenius offers no subject recognition: use provider volcengine or tokenops."
        )

    async def poll_recognition(self, ref: TaskRef) -> RecognitionPoll:
        raise InputError(
            "Jenius offers no subject recognition: use provider volcengine or tokenops."
        )

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, allow_404: bool = False
    ) -> httpx2.Response:
        headers = bearer(self._endpoint.api_key, PROVIDER)
        request = self._client.build_request(method, self._base + path, headers=headers, json=body)
        response = await send(self._client, request, PROVIDER)
        if response.status_code >= 300 and not (allow_404 and response.status_code == 404):
            raise _translate(response)
        return response


def _image_url(image: PreparedImage) -> str:
    if not image.url:
        raise InputError(
            "Jenius takes photos as public http(s) URLs only: upload the photo "
            "somewhere public and pass its URL."
        )
    return image.url


def _task(response: httpx2.Response, what: str) -> _Task:
    envelope = parse(_Envelope, json_body(response), PROVIDER, what, response)
    if envelope.code not in (None, 0, 200) or envelope.data is None:
        # A 200 answer can still carry an error in its own code.
        rejection = _rejection(
            envelope.message,
            code=envelope.code,
            http_status=response.status_code,
            may_pass=False,
        )
        if rejection is not None:
            raise rejection
        raise ProviderError(
            f"Jenius refused the {what} request (code {envelope.code}).",
            provider=PROVIDER,
            code=envelope.code,
            http_status=response.status_code,
            provider_message=envelope.message,
        )
    return envelope.data


def _map_status(raw: str | None) -> ProviderStatus:
    if raw is None or raw not in _KNOWN_STATUSES:
        _unknown_statuses.warn(
            str(raw), f"Jenius answered an unknown status {raw!r}; treating it as still pending."
        )
        return "queued"
    status: JeniusStatus = raw  # type: ignore[assignment]
    match status:
        case "created" | "pending":
            return "queued"
        case "processing":
            return "running"
        case "completed":
            return "succeeded"
        case "failed":
            return "failed"
        case _:
            assert_never(status)


def _poll_result(task: _Task) -> PollResult:
    raw = task.status or ""
    status = _map_status(task.status)
    error: ProviderError
    if status == "failed":
        error = _rejection(task.error_msg, may_pass=True) or GenerationFailed(
            "The Jenius scene task failed; try a clearer photo (one person, "
            "front-facing) or submit again.",
            provider=PROVIDER,
            provider_message=task.error_msg,
        )
        return PollResult("failed", raw, error=error)
    if status == "succeeded" and not task.video_url:
        error = ProviderError(
            "Jenius reported the task completed but gave no video URL: submit again.",
            provider=PROVIDER,
        )
        return PollResult("failed", raw, error=error)
    url = task.video_url if status == "succeeded" else None
    return PollResult(status, raw, video_url=url)


def _translate(response: httpx2.Response) -> VideogenError:
    """The one place Jenius HTTP errors become the project's error tree."""
    http = response.status_code
    data = json_body(response)
    body = _ErrorBody.model_validate(data) if isinstance(data, dict) else _ErrorBody()
    message = body.message or body.msg or body_text(response)
    if http not in (401, 429) and http < 500:
        rejection = _rejection(message, code=body.code, http_status=http, may_pass=False)
        if rejection is not None:
            return rejection
    if http in (401, 403):
        return credentials_error(PROVIDER, f"HTTP {http}")
    if http == 429:
        return rate_limited(
            PROVIDER,
            response,
            code=body.code,
            request_id=None,
            message=message,
            what="too many requests",
        )
    if http >= 500:
        return unavailable(PROVIDER, response, code=body.code, request_id=None, message=message)
    return ProviderError(
        f"Jenius refused the request (HTTP {http}); check the scene and the photo URLs.",
        provider=PROVIDER,
        code=body.code,
        http_status=http,
        provider_message=message,
    )


def _rejection(
    message: str | None,
    *,
    may_pass: bool,
    code: int | str | None = None,
    http_status: int | None = None,
) -> ContentRejected | None:
    """A ``ContentRejected`` when Jenius's words say content review refused the task.

    ``may_pass``: a task that failed review after it ran (the output) may pass when submitted
    again; a submit refused by review (the photos) will not.
    """
    if not message or not _REVIEW_WORDS.search(message):
        return None
    advice = (
        "The same request may pass if submitted again; if not, use other photos."
        if may_pass
        else "Retrying the same photos will not help: use other photos (one clear person, "
        "nothing sensitive)."
    )
    return ContentRejected(
        f"Jenius's content review refused the scene task. {advice}",
        same_input_may_pass=may_pass,
        provider=PROVIDER,
        code=code,
        http_status=http_status,
        provider_message=message,
    )
