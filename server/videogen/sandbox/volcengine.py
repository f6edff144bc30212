"""The Volcengine Visual API front: ``POST /?Action=...&Version=...``, V4-signed (contracts.md §1).

Gateway refusals (missing/invalid signature, unknown action) use the ``ResponseMetadata``
envelope; everything after the gateway uses the business envelope ``{code, data, message,
request_id, status, time_elapsed}`` with the HTTP status of §1.4. Bodies are checked strictly
per ``req_key``: an unknown field, a wrong type or a broken rule is 50200 naming the field; so
is a body not sent as ``Content-Type: application/json``. The signature must cover ``host``,
``x-date``, ``x-content-sha256`` and every ``content-type``/``x-*`` header sent, and
``X-Content-Sha256`` must be the body's hash (``signing.verify``), else SignatureDoesNotMatch.

Task life on the clock (``job_seconds`` as of submit): Jimeng ``in_queue`` (first third) →
``generating`` → ``done``; OmniHuman ``processing`` (first quarter) → ``in_queue`` →
``generating`` (second half) → ``done``. A cancelled task then polls as ``not_found``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from videogen import catalog
from videogen.providers.signing import REGION, SERVICE, X_DATE_FORMAT
from videogen.sandbox import jobs
from videogen.sandbox.core import JSONResponse, Sandbox, read_json
from videogen.sandbox.jobs import Invalid, field_error
from videogen.sandbox.signature import VerifyError, parse_authorization, verify
from videogen.sandbox.state import Operation, SandboxTask

SANDBOX_ACCESS_KEY: Final = "AKLTsandbox0000000000000000000000"
SANDBOX_SECRET_KEY: Final = "sandbox-secret-not-a-real-key=="

VERSION: Final = "2022-08-31"
CANCEL_VERSION: Final = "2024-06-06"
ACTIONS: Final[dict[str, str]] = {
    "CVSync2AsyncSubmitTask": VERSION,
    "CVSync2AsyncGetResult": VERSION,
    "CVSubmitTask": VERSION,
    "CVGetResult": VERSION,
    "CVProcess": VERSION,
    "CVCancelTask": CANCEL_VERSION,
}
GATEWAY: Final[dict[str, tuple[int, int]]] = {  # Code -> (CodeN, HTTP)
    "MissingParameter": (100002, 400),
    "MissingAuthenticationToken": (100003, 401),
    "MissingSignature": (100005, 401),
    "InvalidTimestamp": (100006, 403),
    "InvalidActionOrVersion": (100008, 404),
    "InvalidAccessKey": (100009, 401),
    "SignatureDoesNotMatch": (100010, 401),
    "AccessDenied": (100013, 403),
}
OMNI = catalog.OMNIHUMAN


class Volcengine:
    """Handlers for one sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.state = sandbox.state

    # -- envelopes ------------------------------------------------------------------------
    def gateway_error(
        self, request: Request, code: str, message: str, *, http: int | None = None
    ) -> Response:
        code_n, status = GATEWAY[code]
        self.sb.note(request, code=code)
        meta = {
            "RequestId": self.state.request_id(),
            "Action": request.query_params.get("Action", ""),
            "Version": request.query_params.get("Version", ""),
            "Service": SERVICE,
            "Region": REGION,
            "Error": {"CodeN": code_n, "Code": code, "Message": message},
        }
        return JSONResponse({"ResponseMetadata": meta}, status_code=http or status)

    def reply(
        self,
        request: Request,
        code: int,
        data: dict[str, Any] | None = None,
        *,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        self.sb.note(request, code=code)
        started = request.scope.get("videogen.started", time.perf_counter())
        body = {
            "code": code,
            "data": data if code == 10000 else None,
            "message": message or jobs.MESSAGES.get(code, "Error"),
            "request_id": self.state.request_id(),
            "status": code,
            "time_elapsed": f"{(time.perf_counter() - started) * 1000:.6f}ms",
        }
        return JSONResponse(body, status_code=jobs.http_status_of(code), headers=headers)

    def refuse(self, request: Request, error: Invalid) -> Response:
        return self.reply(request, error.code, message=error.message)

    # -- entry point ----------------------------------------------------------------------
    async def handle(self, request: Request) -> Response:
        request.scope["videogen.started"] = time.perf_counter()
        self.sb.note(request, provider="volcengine")
        action = request.query_params.get("Action")
        version = request.query_params.get("Version")
        if not action or not version:
            return self.gateway_error(
                request, "MissingParameter", "Action and Version are required"
            )
        if ACTIONS.get(action) != version:
            return self.gateway_error(
                request,
                "InvalidActionOrVersion",
                f"Could not find operation {action} for version {version}",
            )
        body = await request.body()
        gate = self.check_signature(request, body)
        if gate is not None:
            return gate
        try:
            value = await read_json(request)
        except ValueError as error:  # not declared as JSON, or not JSON: 50200 naming which
            self.sb.note(request, operation=_operation(action, None))
            return self.refuse(request, Invalid(50200, str(error)))
        payload = value[1]
        req_key = payload.get("req_key") if isinstance(payload, dict) else None
        operation = _operation(action, req_key if isinstance(req_key, str) else None)
        self.sb.note(request, operation=operation)
        fault = self.sb.fault(request, operation)
        if fault is not None:
            if fault.kind == "drop":
                return await self.sb.drop(request)
            if fault.kind == "rate_limit":
                retry = f"{fault.value or 1:g}"
                return self.reply(request, 50429, headers={"Retry-After": retry})
            return self.reply(request, 50500)
        if not isinstance(payload, dict):
            return self.refuse(request, field_error("body", "must be a JSON object"))
        try:
            return await self.dispatch(request, action, payload)
        except Invalid as error:
            return self.refuse(request, error)

    def check_signature(self, request: Request, body: bytes) -> Response | None:
        headers = dict(request.headers)
        x_date = headers.get("x-date")
        if parse_authorization(headers.get("authorization", "")) is not None:
            try:
                datetime.strptime(x_date or "", X_DATE_FORMAT)
            except ValueError:
                return self.gateway_error(
                    request, "InvalidTimestamp", "X-Date is missing or malformed", http=400
                )
        try:
            verify(
                {SANDBOX_ACCESS_KEY: SANDBOX_SECRET_KEY},
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                headers=headers,
                body=body,
                now=datetime.fromtimestamp(self.state.clock(), UTC),
            )
        except VerifyError as error:
            return self.gateway_error(request, error.code, error.message)
        scope = (headers.get("authorization") or "").split("Credential=", 1)[-1].split(",")[0]
        if scope.split("/")[2:4] != [REGION, SERVICE]:
            return self.gateway_error(
                request,
                "SignatureDoesNotMatch",
                f"credential scope must be */{REGION}/{SERVICE}/request",
            )
        return None

    async def dispatch(self, request: Request, action: str, body: dict[str, Any]) -> Response:
        req_key = jobs.text(body, "req_key", required=True)
        assert req_key is not None
        match action:
            case "CVSync2AsyncSubmitTask":
                if req_key not in catalog.REQ_KEY_TO_MODE:
                    raise field_error("req_key", f"{req_key!r} is not a Jimeng video req_key")
                return await self.submit_jimeng(request, req_key, body)
            case "CVSync2AsyncGetResult":
                return self.poll(request, body, frozenset(catalog.REQ_KEY_TO_MODE), True)
            case "CVSubmitTask":
                if req_key == OMNI.video_req_key:
                    return await self.submit_omni(request, body)
                if req_key == OMNI.recognition_req_key:
                    return await self.submit_recognition(request, body)
                raise field_error("req_key", f"{req_key!r} is not an OmniHuman req_key")
            case "CVGetResult":
                keys = frozenset({OMNI.video_req_key, OMNI.recognition_req_key})
                return self.poll(request, body, keys, False)
            case "CVProcess":
                return await self.detect(request, body)
            case _:
                return self.cancel(request, body)

    # -- submits --------------------------------------------------------------------------
    def _owner(self) -> str:
        return SANDBOX_ACCESS_KEY

    def _admit(self, request: Request, *, text: bool, images: bool) -> Response | None:
        """Content faults and the concurrency limit, after validation (in that order)."""
        book = self.state.book()
        if text and book.take("reject_text"):
            return self.reply(request, 50412)
        if images and book.take("reject_image"):
            return self.reply(request, 50411)
        if book.take("reject_copyright"):
            return self.reply(request, 50413)
        if self.state.over_concurrency(self._owner()):
            return self.reply(request, 50430)
        return None

    def _new_task(self, kind: str, req_key: str, render: Any, **kw: Any) -> SandboxTask:
        fail = self.state.book().take("fail_after_generating") if kind != "recognition" else False
        job_seconds = self.state.job_seconds()
        task = SandboxTask(
            provider="volcengine",
            kind=kind,  # type: ignore[arg-type]
            task_id=self.state.numeric_id(19),
            req_key=req_key,
            owner=self._owner(),
            submitted_at=self.state.clock(),
            job_seconds=job_seconds / 4 if kind == "recognition" else job_seconds,
            render=render,
            failure=(50516, jobs.MESSAGES[50516]) if fail else None,
            **kw,
        )
        return self.state.add_task(task)

    async def submit_jimeng(self, request: Request, req_key: str, body: dict[str, Any]) -> Response:
        mode = catalog.REQ_KEY_TO_MODE[req_key]
        spec = catalog.JIMENG[mode]
        allowed = {
            "req_key",
            "prompt",
            "seed",
            "frames",
            "aspect_ratio",
            "image_urls",
            "binary_data_base64",
        }
        if spec.camera:
            allowed |= {"template_id", "camera_strength"}
        jobs.check_fields(body, allowed, req_key)
        images = await self._images(body)
        camera, strength = jobs.camera_of(body, spec.camera)
        params = jobs.JimengParams(
            mode=mode,
            prompt=jobs.prompt_of(
                jobs.text(body, "prompt"), limit=catalog.PROMPT_MAX_CHARS, required=False
            ),
            frames=jobs.frames_of(jobs.integer(body, "frames")),
            aspect_ratio=jobs.aspect_ratio_of(jobs.text(body, "aspect_ratio")),
            images=images,
            camera=camera,
            strength=strength,
        )
        jobs.seed_of(jobs.integer(body, "seed"))
        jobs.check_jimeng(params)
        refused = self._admit(request, text=bool(params.prompt), images=bool(images))
        if refused is not None:
            return refused
        task = self._new_task("jimeng", req_key, jobs.jimeng_render(params))
        self.sb.note(request, task_id=task.task_id)
        return self.reply(request, 10000, {"task_id": task.task_id})

    async def _images(self, body: dict[str, Any]) -> tuple[jobs.Image, ...]:
        urls = jobs.string_list(body, "image_urls")
        blobs = jobs.string_list(body, "binary_data_base64")
        if urls is not None and blobs is not None:
            raise field_error("image_urls", "and binary_data_base64 cannot both be given")
        if urls is not None:
            return tuple(
                [
                    await jobs.image_from_url(self.state, f"image_urls[{i}]", u)
                    for i, u in enumerate(urls)
                ]
            )
        if blobs is not None:
            return tuple(
                jobs.image_from_base64(f"binary_data_base64[{i}]", b) for i, b in enumerate(blobs)
            )
        return ()

    async def submit_omni(self, request: Request, body: dict[str, Any]) -> Response:
        allowed = {
            "req_key",
            "image_url",
            "audio_url",
            "mask_url",
            "prompt",
            "seed",
            "output_resolution",
            "pe_fast_mode",
        }
        jobs.check_fields(body, allowed, OMNI.video_req_key)
        image_url = jobs.text(body, "image_url", required=True)
        audio_url = jobs.text(body, "audio_url", required=True)
        assert image_url is not None and audio_url is not None
        image = await jobs.image_from_url(self.state, "image_url", image_url)
        length = await jobs.audio_from_url(self.state, "audio_url", audio_url)
        masks = jobs.string_list(body, "mask_url") or []
        prompt, resolution = jobs.omni_options(body, masks, "mask_url")
        await jobs.check_masks(self.state, "mask_url", masks)
        refused = self._admit(request, text=bool(prompt), images=True)
        if refused is not None:
            return refused
        render = jobs.omni_render(image, resolution, length)
        task = self._new_task("omnihuman", OMNI.video_req_key, render)
        if length is not None and length >= catalog.OMNIHUMAN_AUDIO_MAX_SECONDS:
            task.failure = (50215, f"{jobs.MESSAGES[50215]}: audio must be shorter than 60 s")
            task.fail_early = True
            self.state.update(task)
        self.sb.note(request, task_id=task.task_id)
        return self.reply(request, 10000, {"task_id": task.task_id})

    async def submit_recognition(self, request: Request, body: dict[str, Any]) -> Response:
        jobs.check_fields(body, {"req_key", "image_url"}, OMNI.recognition_req_key)
        image_url = jobs.text(body, "image_url", required=True)
        assert image_url is not None
        image = await jobs.image_from_url(self.state, "image_url", image_url)
        contains = await jobs.subject_count(self.state, image, image_url) > 0
        task = self._new_task("recognition", OMNI.recognition_req_key, None)
        task.extra["contains"] = contains
        self.state.update(task)
        self.sb.note(request, task_id=task.task_id)
        return self.reply(request, 10000, {"task_id": task.task_id})

    async def detect(self, request: Request, body: dict[str, Any]) -> Response:
        req_key = body.get("req_key")
        if req_key != OMNI.detection_req_key:
            raise field_error("req_key", f"{req_key!r} is not {OMNI.detection_req_key}")
        jobs.check_fields(body, {"req_key", "image_url"}, OMNI.detection_req_key)
        image_url = jobs.text(body, "image_url", required=True)
        assert image_url is not None
        image = await jobs.image_from_url(self.state, "image_url", image_url)
        status, urls = await jobs.detection_result(self.state, image, image_url)
        resp = {"code": 0, "object_detection_result": {"mask": {"url": urls}}, "status": status}
        return self.reply(request, 10000, {"resp_data": jobs.resp_data_json(resp)})

    # -- polls and cancel -----------------------------------------------------------------
    def _lookup(self, body: dict[str, Any], keys: frozenset[str]) -> tuple[str, SandboxTask | None]:
        req_key = jobs.text(body, "req_key", required=True)
        task_id = jobs.text(body, "task_id", required=True)
        assert req_key is not None and task_id is not None
        if req_key not in keys:
            raise field_error("req_key", f"{req_key!r} cannot be polled with this action")
        task = self.state.find("volcengine", task_id)
        if task is not None and task.req_key != req_key:
            raise field_error(
                "req_key", f"{req_key!r} is not the req_key task {task_id} was submitted with"
            )
        return task_id, task

    def poll(
        self, request: Request, body: dict[str, Any], keys: frozenset[str], sync2async: bool
    ) -> Response:
        jobs.check_fields(
            body,
            {"req_key", "task_id", "req_json"} if sync2async else {"req_key", "task_id"},
            "the poll",
        )
        if sync2async:
            _check_req_json(body)
        task_id, task = self._lookup(body, keys)
        self.sb.note(request, task_id=task_id)
        if task is not None and task.kind == "recognition":
            self.sb.note(request, operation="recognize_poll")
        if task is None or task.cancelled:
            return self.reply(request, 10000, {"status": "not_found", "video_url": ""})
        now = self.state.clock()
        status = phase(task, now)
        if task.failure is not None and (
            status == "done" or (task.fail_early and status not in ("processing",))
        ):
            code, message = task.failure
            return self.reply(request, code, message=message)
        if task.kind == "recognition":
            data: dict[str, Any] = {"status": status, "resp_data": ""}
            if status == "done":
                data["resp_data"] = jobs.resp_data_json({"status": int(task.extra["contains"])})
            return self.reply(request, 10000, data)
        if status != "done":
            return self.reply(request, 10000, {"status": status, "video_url": ""})
        url, _ = self.state.grant(
            ext="mp4",
            content_type="video/mp4",
            render=task.render,
            provider="volcengine",
            task_id=task.task_id,
        )
        self.sb.prewarm(task.render)
        return self.reply(
            request, 10000, {"aigc_meta_tagged": True, "status": "done", "video_url": url}
        )

    def cancel(self, request: Request, body: dict[str, Any]) -> Response:
        jobs.check_fields(body, {"req_key", "task_id"}, "CVCancelTask")
        keys = frozenset({*catalog.REQ_KEY_TO_MODE, OMNI.video_req_key})
        task_id, task = self._lookup(body, keys)
        self.sb.note(request, task_id=task_id)
        if task is None or task.cancelled:
            raise field_error("task_id", f"{task_id} is not a known task")
        status = phase(task, self.state.clock())
        if status not in ("in_queue", "processing"):
            raise field_error(
                "task_id", f"{task_id} is {status}; only a queued task can be cancelled"
            )
        task.cancelled = True
        self.state.update(task)
        return self.reply(request, 10000, {})


def _check_req_json(body: dict[str, Any]) -> None:
    raw = body.get("req_json")
    if raw is None:
        return
    if not isinstance(raw, str):
        raise field_error("req_json", "must be a JSON string, not an object")
    import json

    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        raise field_error("req_json", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise field_error("req_json", "must encode a JSON object")
    for key in value:
        if key != "aigc_meta":
            raise field_error(f"req_json.{key}", "is not a video option (only aigc_meta)")


def _operation(action: str, req_key: str | None) -> Operation:
    match action:
        case "CVSync2AsyncSubmitTask":
            return "submit"
        case "CVSync2AsyncGetResult":
            return "poll"
        case "CVSubmitTask":
            return "recognize_submit" if req_key == OMNI.recognition_req_key else "submit"
        case "CVGetResult":
            return "recognize_poll" if req_key == OMNI.recognition_req_key else "poll"
        case "CVProcess":
            return "detect"
        case _:
            return "cancel"


def phase(task: SandboxTask, now: float) -> str:
    """The Volcengine status of a task at ``now``."""
    p = task.progress(now)
    if p >= 1:
        return "done"
    if task.kind == "omnihuman":
        return "processing" if p < 0.25 else "in_queue" if p < 0.5 else "generating"
    return "in_queue" if p < 1 / 3 else "generating"
