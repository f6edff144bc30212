"""TokenOps: an OpenAI-style ``/v1/videos`` gateway to Jimeng and OmniHuman (contracts.md §2).

Create with ``POST {base}/videos``, check with ``GET {base}/videos/{id}``, fetch with
``GET {base}/videos/{id}/content`` — which may answer the MP4 bytes, a redirect, or JSON with a
``video_url``: ``download_source`` asks without following redirects or reading a large body and
says where the bytes are. Statuses come in several vocabularies (seed 001's, OpenAI's, and
``pending``/``submitted``); an unknown one is treated as still pending and logged once.
Bearer auth; errors are OpenAI-style JSON when the gateway is kind, anything when it is not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final, Literal, assert_never, get_args

import httpx2
from pydantic import Field

from videogen.catalog import (
    DEFAULT_ASPECT_RATIO,
    JIMENG,
    JIMENG_MODES,
    OMNIHUMAN,
    PROVIDER_FRAMES,
    ProviderName,
)
from videogen.config import ProviderEndpoint
from videogen.errors import (
    CapabilityNotEnabled,
    GenerationFailed,
    InputError,
    ProviderError,
    VideogenError,
)
from videogen.models import GenerationRequest, ProviderStatus
from videogen.providers._common import (
    INVALID_INPUTS,
    Loose,
    Once,
    TextId,
    bearer,
    body_text,
    content_rejection,
    credentials_error,
    int_code,
    is_task_outcome,
    json_body,
    parse,
    rate_limited,
    read_bounded,
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
    origin,
)

PROVIDER: Final = "tokenops"
TITLE: Final = "TokenOps"
#: A JSON answer from the content endpoint is small; anything bigger is not what we expect.
CONTENT_JSON_LIMIT: Final = 256 * 1024

TokenOpsStatus = Literal[
    "in_queue", "queued", "pending", "submitted", "processing", "in_progress", "completed", "failed"
]
_KNOWN_STATUSES: Final[frozenset[str]] = frozenset(get_args(TokenOpsStatus))
_unknown_statuses = Once()


class _ApiError(Loose):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _ErrorBody(Loose):
    error: _ApiError | str | None = None
    message: str | None = None
    code: str | int | None = None
    request_id: str | None = None


class _Created(Loose):
    id: TextId
    status: str | None = None


class _Video(Loose):
    id: TextId | None = None
    status: str | None = None
    progress: float | None = None
    error: _ApiError | str | None = None
    video_url: str | None = None
    expires_at: float | None = None


class _ContentJson(Loose):
    video_url: str
    expires_at: float | None = None


class _Detection(Loose):
    status: int
    mask_urls: list[str] = Field(default_factory=list)
    request_id: str | None = None


class _Recognition(Loose):
    task_id: TextId
    status: int | None = None
    request_id: str | None = None


class TokenOpsProvider:
    """Jimeng's eight modes and OmniHuman through the TokenOps gateway."""

    name: ProviderName = "tokenops"
    accepts_uploaded_images = True

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
        # Recognition answers at once; TokenOps documents no status call for it, so the verdict
        # is kept here for poll_recognition.
        self._recognitions: dict[str, bool] = {}

    async def submit(self, request: GenerationRequest, inputs: PreparedInputs) -> Submitted:
        if request.mode == "omnihuman":
            body = _omni_body(request, inputs)
        elif request.mode in JIMENG_MODES:
            body = _jimeng_body(request, inputs)
        else:
            raise InputError(f"TokenOps cannot run mode {request.mode}: use provider jenius.")
        response = await self._request("POST", "/videos", body)
        created = parse(_Created, json_body(response), PROVIDER, "create", response)
        return Submitted(TaskRef(created.id, str(body["req_key"])), _request_id(response))

    async def poll(self, ref: TaskRef) -> PollResult:
        try:
            response = await self._request("GET", f"/videos/{ref.provider_task_id}", allow_404=True)
        except ProviderError as error:
            if not is_task_outcome(error):
                raise
            # A review or a permanent business code about this task: its outcome, not a
            # failed poll (asking again would get the same answer).
            return PollResult("failed", "error", error=error, request_id=error.request_id)
        if response.status_code == 404:
            return _forgotten(ref, response)
        video = parse(_Video, json_body(response), PROVIDER, "status", response)
        return _poll_result(video, _request_id(response))

    async def download_source(self, ref: TaskRef, poll: PollResult) -> DownloadSource:
        """Ask the content endpoint once, without following redirects or reading video bytes."""
        url = f"{self._base}/videos/{ref.provider_task_id}/content"
        headers = bearer(self._endpoint.api_key, PROVIDER)
        request = self._client.build_request("GET", url, headers=headers)
        response = await send(self._client, request, PROVIDER, stream=True)
        try:
            return await self._content_source(url, headers, response)
        finally:
            await response.aclose()

    async def cancel(self, ref: TaskRef) -> None:
        raise InputError(
            "TokenOps documents no way to cancel a task: let it finish (it is billed "
            "either way) or ignore it."
        )

    async def detect_subjects(self, image: PreparedImage) -> SubjectDetection:
        body = {
            "model": OMNIHUMAN.tokenops_model,
            "req_key": OMNIHUMAN.detection_req_key,
            "image_url": _image_url(image),
        }
        response = await self._request("POST", "/omnihuman/subject/detection", body)
        found = parse(_Detection, json_body(response), PROVIDER, "subject detection", response)
        request_id = found.request_id or _request_id(response)
        return SubjectDetection(found.status == 1, tuple(found.mask_urls), request_id)

    async def submit_recognition(self, image: PreparedImage) -> TaskRef:
        body = {
            "model": OMNIHUMAN.tokenops_model,
            "req_key": OMNIHUMAN.recognition_req_key,
            "image_url": _image_url(image),
        }
        response = await self._request("POST", "/omnihuman/subject/recognition", body)
        answer = parse(_Recognition, json_body(response), PROVIDER, "recognition", response)
        if answer.status is not None:
            self._recognitions[answer.task_id] = answer.status == 1
        return TaskRef(answer.task_id, OMNIHUMAN.recognition_req_key)

    async def poll_recognition(self, ref: TaskRef) -> RecognitionPoll:
        verdict = self._recognitions.get(ref.provider_task_id)
        if verdict is None:
            raise ProviderError(
                f"TokenOps has no status call for recognition {ref.provider_task_id} and this "
                "process did not see its answer: run the recognition again.",
                provider=PROVIDER,
            )
        return RecognitionPoll("succeeded", verdict)

    # -- transport -------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, allow_404: bool = False
    ) -> httpx2.Response:
        headers = bearer(self._endpoint.api_key, PROVIDER)
        request = self._client.build_request(method, self._base + path, headers=headers, json=body)
        response = await send(self._client, request, PROVIDER)
        if response.status_code >= 300 and not (allow_404 and response.status_code == 404):
            raise _translate(response, f"{method} {path.split('/')[1]}")
        return response

    async def _content_source(
        self, url: str, headers: dict[str, str], response: httpx2.Response
    ) -> DownloadSource:
        api = origin(url)
        if response.has_redirect_location:
            target = str(response.url.join(response.headers["location"]))
            return DownloadSource(target, headers, credential_origin=api)
        if response.status_code >= 300:
            # Read at most a bounded error body, into a copy the translator can read.
            head = await read_bounded(response)
            kept = {k: v for k, v in response.headers.items()
                    if k.lower() in ("content-type", "retry-after", "x-request-id")}  # fmt: skip
            read = httpx2.Response(response.status_code, headers=kept, content=head,
                                   request=response.request)  # fmt: skip
            raise _translate(read, "GET content")
        content_type = response.headers.get("content-type", "").lower()
        if "json" not in content_type:
            return DownloadSource(url, headers, credential_origin=api)  # the bytes themselves
        raw = await read_bounded(response, CONTENT_JSON_LIMIT)
        answer = parse(_ContentJson, _loads(raw), PROVIDER, "content", response)
        return DownloadSource(answer.video_url, headers, credential_origin=api)


# -- request bodies ----------------------------------------------------------------------------


def _jimeng_body(request: GenerationRequest, inputs: PreparedInputs) -> dict[str, Any]:
    spec = JIMENG[request.mode]  # type: ignore[index]
    body: dict[str, Any] = {"model": spec.tokenops_model, "req_key": spec.req_key}
    if request.prompt:
        body["prompt"] = request.prompt
    body["seed"] = request.seed
    body["frames"] = PROVIDER_FRAMES[request.provider_seconds]
    if spec.text_to_video and not inputs.images:
        body["aspect_ratio"] = request.aspect_ratio or DEFAULT_ASPECT_RATIO
    if inputs.images:
        # The content array carries the images; its text (the same prompt) wins over `prompt`.
        text = [{"type": "text", "text": request.prompt}] if request.prompt else []
        body["content"] = text + [_image_item(image) for image in inputs.images]
    if spec.camera:
        body["template_id"] = request.camera
        body["camera_strength"] = request.camera_strength
    return body


def _image_item(image: PreparedImage) -> dict[str, Any]:
    if image.url:
        return {"type": "image_url", "image_url": {"url": image.url}}
    return {"type": "image_base64", "image_url": {"url": image.data_url}}


def _omni_body(request: GenerationRequest, inputs: PreparedInputs) -> dict[str, Any]:
    if len(inputs.images) != 1 or not inputs.audio_url:
        raise InputError("OmniHuman needs one portrait image URL and one audio URL.")
    body: dict[str, Any] = {
        "model": OMNIHUMAN.tokenops_model,
        "req_key": OMNIHUMAN.video_req_key,
        "generation_type": "omni_human",
        "content": [
            {"type": "image_url", "image_url": {"url": _image_url(inputs.images[0])}},
            {"type": "audio_url", "audio_url": {"url": inputs.audio_url}},
        ],
    }
    if request.prompt:
        body["prompt"] = request.prompt
    if inputs.mask_urls:
        body["mask_urls"] = list(inputs.mask_urls)
    if request.resolution is not None:
        body["output_resolution"] = request.resolution
    if request.fast_mode:
        body["pe_fast_mode"] = True
    body["seed"] = request.seed
    return body


def _image_url(image: PreparedImage) -> str:
    if not image.url:
        raise InputError(
            "OmniHuman takes the image as a public http(s) URL: upload the image "
            "somewhere public and pass its URL."
        )
    return image.url


# -- answers -----------------------------------------------------------------------------------


def _loads(raw: bytes) -> object:
    try:
        parsed: object = json.loads(raw)
    except ValueError:
        return None
    return parsed


def _request_id(response: httpx2.Response) -> str | None:
    return response.headers.get("x-request-id") or None


def _map_status(raw: str | None) -> ProviderStatus:
    if raw is None or raw not in _KNOWN_STATUSES:
        _unknown_statuses.warn(
            str(raw), f"TokenOps answered an unknown status {raw!r}; treating it as still pending."
        )
        return "queued"
    status: TokenOpsStatus = raw  # type: ignore[assignment]
    match status:
        case "in_queue" | "queued" | "pending" | "submitted":
            return "queued"
        case "processing" | "in_progress":
            return "running"
        case "completed":
            return "succeeded"
        case "failed":
            return "failed"
        case _:
            assert_never(status)


def _poll_result(video: _Video, request_id: str | None) -> PollResult:
    raw = video.status or ""
    status = _map_status(video.status)
    # TokenOps counts 0-100; a PollResult's progress is a fraction (0..1).
    progress = None if video.progress is None else min(max(video.progress / 100, 0.0), 1.0)
    if status == "failed":
        error = _failure(video.error, request_id)
        return PollResult("failed", raw, error=error, progress=progress, request_id=request_id)
    url = video.video_url or None if status == "succeeded" else None
    return PollResult(
        status,
        raw,
        video_url=url,
        url_expires_at=video.expires_at,
        progress=progress,
        request_id=request_id,
    )


def _failure(error: _ApiError | str | None, request_id: str | None) -> ProviderError:
    message = error if isinstance(error, str) else (error.message if error else None)
    code = None if isinstance(error, str) or error is None else error.code
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "code": code,
        "request_id": request_id,
        "provider_message": message,
    }
    rejection = content_rejection(int_code(code), TITLE, common)
    if rejection is not None:
        return rejection
    if int_code(code) in INVALID_INPUTS:
        return GenerationFailed(
            f"TokenOps could not run the task: {INVALID_INPUTS[int_code(code) or 0]}.", **common
        )
    return GenerationFailed(
        "The TokenOps task failed; submitting again may work — if it fails "
        "again, change the prompt or inputs.",
        **common,
    )


def _forgotten(ref: TaskRef, response: httpx2.Response) -> PollResult:
    error = ProviderError(
        f"TokenOps does not know video {ref.provider_task_id} (HTTP 404): it "
        "may have expired; submit the request again.",
        provider=PROVIDER,
        http_status=404,
        provider_message=body_text(response),
    )
    return PollResult("expired", "not_found", error=error)


def _translate(response: httpx2.Response, what: str) -> VideogenError:
    """The one place TokenOps HTTP errors become the project's error tree."""
    http = response.status_code
    data = json_body(response)
    body = _ErrorBody.model_validate(data) if isinstance(data, dict) else _ErrorBody()
    api = body.error if isinstance(body.error, _ApiError) else None
    message = (
        (api.message if api else None)
        or (body.error if isinstance(body.error, str) else None)
        or body.message
        or body_text(response)
    )
    raw_code = (api.code if api else None) or body.code
    code = int_code(raw_code)
    request_id = body.request_id or _request_id(response)
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "code": raw_code,
        "http_status": http,
        "request_id": request_id,
        "provider_message": message,
    }
    if http == 401 or code in (100003, 100009, 100010):
        return credentials_error(PROVIDER, f"HTTP {http}", request_id)
    rejection = content_rejection(code, TITLE, common)
    if rejection is not None:
        return rejection
    if http == 403 or code in (50400, 50204):
        return CapabilityNotEnabled(
            "This TokenOps key may not use this model or capability: "
            "enable it for the account behind TOKENOPS_API_KEY.",
            **common,
        )
    if http == 429 or code in (50429, 50430):
        return rate_limited(
            PROVIDER,
            response,
            code=raw_code,
            request_id=request_id,
            message=message,
            what="too many requests or tasks in flight",
            in_flight=code == 50430,
        )
    if http >= 500 or code in (50500, 50501):
        return unavailable(
            PROVIDER, response, code=raw_code, request_id=request_id, message=message
        )
    if code in INVALID_INPUTS:
        return ProviderError(f"TokenOps refused the request: {INVALID_INPUTS[code]}.", **common)
    return ProviderError(
        f"TokenOps refused {what} (HTTP {http}); check the request's parameters.", **common
    )
