"""Volcengine Visual API (Jimeng video 3.0 and OmniHuman 1.5), signed with V4 (contracts.md §1).

Every call is ``POST /?Action=...&Version=...`` with a JSON body. Jimeng modes use
``CVSync2AsyncSubmitTask`` / ``CVSync2AsyncGetResult``; OmniHuman video and subject recognition
use ``CVSubmitTask`` / ``CVGetResult``; subject detection is the synchronous ``CVProcess``. A
poll needs the submit's ``req_key``, which ``TaskRef.req_key`` carries.

Answers come in two envelopes — the business one (``code``, ``data``, ``request_id``) and the
gateway's ``ResponseMetadata`` — and business codes can arrive in either; ``_translate`` is the
one place where both become the project's error tree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeGuard, assert_never, get_args

import httpx2
from pydantic import Field

from videogen.catalog import (
    DEFAULT_ASPECT_RATIO,
    JIMENG,
    JIMENG_MODES,
    OMNIHUMAN,
    PROVIDER_FRAMES,
    REQ_KEY_TO_MODE,
    ProviderName,
)
from videogen.config import ProviderEndpoint
from videogen.errors import (
    CapabilityNotEnabled,
    CredentialsError,
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
    body_text,
    content_rejection,
    credentials_error,
    is_task_outcome,
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
from videogen.providers.signing import Credentials, sign

PROVIDER: Final = "volcengine"
VERSION: Final = "2022-08-31"
CANCEL_VERSION: Final = "2024-06-06"
SUCCESS: Final = 10000

VolcStatus = Literal["in_queue", "processing", "generating", "done", "not_found", "expired"]
_KNOWN_STATUSES: Final[frozenset[str]] = frozenset(get_args(VolcStatus))

_GATEWAY_CREDENTIALS: Final = {
    100003: "missing",
    100005: "missing signature",
    100009: "unknown access key",
    100010: "signature mismatch",
}
_unknown_statuses = Once()


class _GatewayError(Loose):
    CodeN: int | None = None
    Code: str | None = None
    Message: str | None = None


class _Metadata(Loose):
    RequestId: str | None = None
    Error: _GatewayError | None = None


class _Envelope(Loose):
    code: int | None = None
    message: str | None = None
    request_id: str | None = None
    data: dict[str, Any] | None = None
    ResponseMetadata: _Metadata | None = None

    @property
    def any_request_id(self) -> str | None:
        meta = self.ResponseMetadata
        return self.request_id or (meta.RequestId if meta else None)


class _SubmitData(Loose):
    task_id: TextId


class _ResultData(Loose):
    status: str | None = None
    video_url: str | None = None
    resp_data: str | None = None


class _Mask(Loose):
    url: list[str] = Field(default_factory=list)


class _DetectionInner(Loose):
    mask: _Mask | None = None


class _Detection(Loose):
    status: int
    object_detection_result: _DetectionInner | None = None


class _Recognition(Loose):
    status: int


class VolcengineProvider:
    """Jimeng's eight modes and OmniHuman over the signed Volcengine Visual API."""

    name: ProviderName = "volcengine"
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
        self._url = httpx2.URL(endpoint.base_url)

    async def submit(self, request: GenerationRequest, inputs: PreparedInputs) -> Submitted:
        if request.mode == "omnihuman":
            req_key, action, body = (
                OMNIHUMAN.video_req_key,
                "CVSubmitTask",
                _omni_body(request, inputs),
            )
        elif request.mode in JIMENG_MODES:
            body = _jimeng_body(request, inputs)
            req_key, action = str(body["req_key"]), "CVSync2AsyncSubmitTask"
        else:
            raise InputError(f"Volcengine cannot run mode {request.mode}: use provider jenius.")
        envelope, response = await self._call(action, body)
        data = parse(_SubmitData, envelope.data, PROVIDER, "submit", response)
        return Submitted(TaskRef(data.task_id, req_key), envelope.any_request_id)

    async def poll(self, ref: TaskRef) -> PollResult:
        req_key = _req_key(ref)
        envelope, response, error = await self._exchange(_get_action(req_key), _poll_body(ref))
        data = _result_data(envelope, response)
        raw = data.status if data else None
        request_id = envelope.any_request_id
        if error is not None:
            if _is_task_outcome(error) or (raw == "done" and isinstance(error, ProviderError)):
                return PollResult("failed", raw or "error", error=error, request_id=request_id)
            raise error
        return _poll_result(data or _ResultData(), request_id, self._clock())

    async def download_source(self, ref: TaskRef, poll: PollResult) -> DownloadSource:
        if poll.video_url:
            return DownloadSource(url=poll.video_url)
        fresh = await self.poll(ref)
        if fresh.status != "succeeded" or not fresh.video_url:
            raise ProviderError(
                f"Volcengine has no video for task {ref.provider_task_id} yet (status "
                f"{fresh.raw_status}): wait until it is done.",
                provider=PROVIDER,
                request_id=fresh.request_id,
            )
        return DownloadSource(url=fresh.video_url)

    async def cancel(self, ref: TaskRef) -> None:
        await self._call("CVCancelTask", _poll_body(ref), version=CANCEL_VERSION)

    async def detect_subjects(self, image: PreparedImage) -> SubjectDetection:
        body = {"req_key": OMNIHUMAN.detection_req_key, "image_url": _image_url(image)}
        envelope, response = await self._call("CVProcess", body)
        data = parse(_ResultData, envelope.data, PROVIDER, "subject detection", response)
        result = parse(
            _Detection, _json_string(data.resp_data), PROVIDER, "subject detection", response
        )
        inner = result.object_detection_result
        masks = tuple(inner.mask.url) if inner and inner.mask else ()
        return SubjectDetection(result.status == 1, masks, envelope.any_request_id)

    async def submit_recognition(self, image: PreparedImage) -> TaskRef:
        body = {"req_key": OMNIHUMAN.recognition_req_key, "image_url": _image_url(image)}
        envelope, response = await self._call("CVSubmitTask", body)
        data = parse(_SubmitData, envelope.data, PROVIDER, "subject recognition", response)
        return TaskRef(data.task_id, OMNIHUMAN.recognition_req_key)

    async def poll_recognition(self, ref: TaskRef) -> RecognitionPoll:
        ref = TaskRef(ref.provider_task_id, ref.req_key or OMNIHUMAN.recognition_req_key)
        envelope, response, error = await self._exchange("CVGetResult", _poll_body(ref))
        request_id = envelope.any_request_id
        if error is not None:
            if _is_task_outcome(error):
                return RecognitionPoll("failed", error=error, request_id=request_id)
            raise error
        data = _result_data(envelope, response) or _ResultData()
        status = _map_status(data.status, has_video=bool(data.resp_data))
        if status != "succeeded":
            return RecognitionPoll(status, request_id=request_id)
        result = parse(
            _Recognition, _json_string(data.resp_data), PROVIDER, "recognition", response
        )
        return RecognitionPoll("succeeded", result.status == 1, request_id=request_id)

    # -- transport -------------------------------------------------------------------------

    async def _call(
        self, action: str, body: dict[str, Any], *, version: str = VERSION
    ) -> tuple[_Envelope, httpx2.Response]:
        """One signed call that must succeed; any error is raised."""
        envelope, response, error = await self._exchange(action, body, version=version)
        if error is not None:
            raise error
        return envelope, response

    async def _exchange(
        self,
        action: str,
        body: dict[str, Any],
        *,
        version: str = VERSION,
    ) -> tuple[_Envelope, httpx2.Response, VideogenError | None]:
        """One signed call; returns the envelope and the translated error (None on success)."""
        response = await send(self._client, self._signed(action, version, body), PROVIDER)
        data = json_body(response)
        if not isinstance(data, dict):
            return _Envelope(), response, _translate_plain(response, action)
        envelope = parse(_Envelope, data, PROVIDER, action, response)
        return envelope, response, _translate(envelope, response, action)

    def _signed(self, action: str, version: str, body: dict[str, Any]) -> httpx2.Request:
        endpoint = self._endpoint
        if not (endpoint.access_key and endpoint.secret_key):
            raise CredentialsError(
                "No Volcengine credentials: set VOLC_ACCESSKEY and "
                "VOLC_SECRETKEY in the environment."
            )
        credentials = Credentials(endpoint.access_key, endpoint.secret_key, endpoint.session_token)
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        query = {"Action": action, "Version": version}
        path = self._url.path or "/"
        headers = sign(
            credentials,
            method="POST",
            host=self._url.netloc.decode("ascii"),
            path=path,
            query=query,
            body=payload,
            now=datetime.fromtimestamp(self._clock(), UTC),
            scheme=self._url.scheme,
        )
        url = self._url.copy_with(path=path)
        return self._client.build_request(
            "POST", url, params=query, headers=headers, content=payload
        )


# -- request bodies ----------------------------------------------------------------------------


def _jimeng_body(request: GenerationRequest, inputs: PreparedInputs) -> dict[str, Any]:
    """The documented submit fields only: no fps, no duration (contracts.md §1.2)."""
    spec = JIMENG[request.mode]  # type: ignore[index]
    body: dict[str, Any] = {"req_key": spec.req_key}
    if request.prompt:
        body["prompt"] = request.prompt
    body["seed"] = request.seed
    body["frames"] = PROVIDER_FRAMES[request.provider_seconds]
    if spec.text_to_video and not inputs.images:
        body["aspect_ratio"] = request.aspect_ratio or DEFAULT_ASPECT_RATIO
    body.update(_image_fields(inputs.images))
    if spec.camera:
        body["template_id"] = request.camera
        body["camera_strength"] = request.camera_strength
    return body


def _image_fields(images: tuple[PreparedImage, ...]) -> dict[str, list[str]]:
    if not images:
        return {}
    urls = [i.url for i in images if i.url]
    uploads = [i.base64 for i in images if i.base64]
    if urls and uploads:
        raise InputError(
            "Volcengine takes the images of one request either all as URLs or all "
            "as files: give both frames as URLs, or both as local files."
        )
    return {"image_urls": urls} if urls else {"binary_data_base64": uploads}


def _omni_body(request: GenerationRequest, inputs: PreparedInputs) -> dict[str, Any]:
    if len(inputs.images) != 1 or not inputs.audio_url:
        raise InputError("OmniHuman needs one portrait image URL and one audio URL.")
    body: dict[str, Any] = {
        "req_key": OMNIHUMAN.video_req_key,
        "image_url": _image_url(inputs.images[0]),
        "audio_url": inputs.audio_url,
    }
    if inputs.mask_urls:
        body["mask_url"] = list(inputs.mask_urls)
    if request.prompt:
        body["prompt"] = request.prompt
    body["seed"] = request.seed
    if request.resolution is not None:
        body["output_resolution"] = request.resolution
    if request.fast_mode:
        body["pe_fast_mode"] = True
    return body


def _image_url(image: PreparedImage) -> str:
    if not image.url:
        raise InputError(
            "OmniHuman takes the image as a public http(s) URL: upload the image "
            "somewhere public and pass its URL."
        )
    return image.url


def _req_key(ref: TaskRef) -> str:
    if not ref.req_key:
        raise InputError(
            f"Task {ref.provider_task_id} cannot be polled without its req_key "
            "(Volcengine needs the submit's req_key)."
        )
    return ref.req_key


def _get_action(req_key: str) -> str:
    return "CVSync2AsyncGetResult" if req_key in REQ_KEY_TO_MODE else "CVGetResult"


def _poll_body(ref: TaskRef) -> dict[str, Any]:
    return {"req_key": _req_key(ref), "task_id": ref.provider_task_id}


# -- answers -----------------------------------------------------------------------------------


def _result_data(envelope: _Envelope, response: httpx2.Response) -> _ResultData | None:
    if envelope.data is None:
        return None
    return parse(_ResultData, envelope.data, PROVIDER, "result", response)


def _json_string(text: str | None) -> object:
    """``resp_data`` is a JSON document inside a string."""
    try:
        return json.loads(text or "")
    except ValueError:
        return None


def _map_status(raw: str | None, *, has_video: bool) -> ProviderStatus:
    if raw is None:
        # Some answers omit the status; a URL means done, nothing means still pending.
        return "succeeded" if has_video else "queued"
    if raw not in _KNOWN_STATUSES:
        _unknown_statuses.warn(
            raw, f"Volcengine answered an unknown status {raw!r}; treating it as still pending."
        )
        return "queued"
    status: VolcStatus = raw  # type: ignore[assignment]
    match status:
        case "in_queue" | "processing":
            return "queued"
        case "generating":
            return "running"
        case "done":
            return "succeeded"
        case "not_found" | "expired":
            return "expired"
        case _:
            assert_never(status)


#: contracts.md 1.3: a Jimeng video_url is valid for one hour.
VIDEO_URL_LIFETIME_SECONDS = 3600.0


def _poll_result(data: _ResultData, request_id: str | None, now: float) -> PollResult:
    raw = data.status or ""
    status = _map_status(data.status, has_video=bool(data.video_url))
    if status == "expired":
        error = ProviderError(
            f"Volcengine no longer knows this task ({raw}: unknown, or older than its 12–24 h "
            "retention): submit the request again.",
            provider=PROVIDER,
            code=raw,
            request_id=request_id,
        )
        return PollResult("expired", raw, error=error, request_id=request_id)
    if status == "succeeded" and not data.video_url:
        error = ProviderError(
            "Volcengine reported the task done but gave no video URL: submit again.",
            provider=PROVIDER,
            request_id=request_id,
        )
        return PollResult("failed", raw, error=error, request_id=request_id)
    if status != "succeeded":
        return PollResult(status, raw, request_id=request_id)
    expires = now + VIDEO_URL_LIFETIME_SECONDS
    return PollResult(
        status, raw, video_url=data.video_url, url_expires_at=expires, request_id=request_id
    )


def _is_task_outcome(error: VideogenError) -> TypeGuard[ProviderError]:
    """Errors on a poll that describe the task itself (not the poll request)."""
    return is_task_outcome(error)


def _business_code(envelope: _Envelope) -> tuple[int | None, str | None]:
    """The business or gateway code and message, from whichever envelope carried them."""
    if envelope.code is not None:
        return envelope.code, envelope.message
    meta = envelope.ResponseMetadata
    if meta is None or meta.Error is None:
        return None, None
    error = meta.Error
    code = error.CodeN
    if code is None and error.Code and error.Code.isdigit():
        code = int(error.Code)
    return code, error.Message or error.Code


def _translate(envelope: _Envelope, response: httpx2.Response, action: str) -> VideogenError | None:
    """The project error for an answer, or None when it is a success."""
    code, message = _business_code(envelope)
    status = response.status_code
    request_id = envelope.any_request_id
    if code == SUCCESS and status < 400:
        return None
    if code is None and status < 400:
        if envelope.data is not None:
            return None  # a success envelope without a code: tolerate it
        return ProviderError(
            f"Volcengine answered {action} with neither data nor a code.",
            provider=PROVIDER,
            http_status=status,
            request_id=request_id,
        )
    return _error_for(code, message, response, request_id, action)


def _translate_plain(response: httpx2.Response, action: str) -> VideogenError:
    """A non-JSON answer (a proxy's HTML page, an empty body): judge by the HTTP status."""
    text = body_text(response)
    if response.status_code < 400:
        return ProviderError(
            f"Volcengine answered {action} with a body that is not JSON.",
            provider=PROVIDER,
            http_status=response.status_code,
            provider_message=text,
        )
    return _error_for(None, text, response, None, action)


def _error_for(
    code: int | None,
    message: str | None,
    response: httpx2.Response,
    request_id: str | None,
    action: str,
) -> VideogenError:
    http = response.status_code
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "code": code,
        "http_status": http,
        "request_id": request_id,
        "provider_message": message,
    }
    if code in _GATEWAY_CREDENTIALS or (code is None and http == 401):
        return credentials_error(
            PROVIDER, _GATEWAY_CREDENTIALS.get(code or 0, f"HTTP {http}"), request_id
        )
    rejection = content_rejection(code, "Volcengine", common)
    if rejection is not None:
        return rejection
    if code in (50400, 50204, 100013):
        return CapabilityNotEnabled(
            f"This Volcengine account may not use {action} (code {code}): "
            "enable the service for the account behind VOLC_ACCESSKEY in "
            "the Volcengine console.",
            **common,
        )
    if code in (50429, 50430) or http == 429:
        what = "too many tasks in flight" if code == 50430 else "too many requests per second"
        return rate_limited(
            PROVIDER,
            response,
            code=code,
            request_id=request_id,
            message=message,
            what=what,
            in_flight=code == 50430,
        )
    if code in (50500, 50501) or http >= 500:
        return unavailable(PROVIDER, response, code=code, request_id=request_id, message=message)
    if code in INVALID_INPUTS:
        return ProviderError(
            f"Volcengine refused the request: {INVALID_INPUTS[code]} (code {code}).", **common
        )
    if code == 100006:
        return ProviderError(
            "Volcengine refused the request time (X-Date): set this machine's "
            "clock right and try again.",
            **common,
        )
    return ProviderError(f"Volcengine refused {action} (code {code}, HTTP {http}).", **common)
