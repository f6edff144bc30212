"""The TokenOps front under ``/tokenops/v1`` (contracts.md §2, seed 001).

Bearer auth; errors are non-2xx with ``{"error": {"message", "type", "code"}}`` (400 invalid
request, 401 bad key, 404 unknown id, 409 video not ready, 429 rate/concurrency limit, 500).
Content refusals carry the Volcengine code as ``error.code`` (e.g. ``"50412"``).

Statuses by ``options.tokenops_vocabulary``: ``seed`` ``in_queue → processing → completed``;
``openai`` ``queued → in_progress → completed``; both end in ``failed`` (with ``error``).
``GET /videos/{id}/content`` by ``options.tokenops_content``: ``bytes`` (the MP4, with Range),
``redirect`` (302 to a ``/files`` URL) or ``json`` (``{"video_url", "expires_at"}``).
"""

from __future__ import annotations

import re
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from videogen import catalog
from videogen.catalog import AspectRatio
from videogen.sandbox import jobs
from videogen.sandbox.core import JSONResponse, Sandbox, read_json
from videogen.sandbox.files import Files
from videogen.sandbox.jobs import Invalid, field_error
from videogen.sandbox.state import Operation, SandboxTask

SANDBOX_TOKENOPS_KEY: Final = "sk-sandbox-tokenops-not-a-real-key"
OMNI = catalog.OMNIHUMAN
MODELS: Final[dict[str, frozenset[str]]] = {
    **catalog.TOKENOPS_MODELS,
    OMNI.tokenops_model: frozenset({OMNI.video_req_key}),
}
_JIMENG_FIELDS: Final = frozenset(
    {
        "model",
        "req_key",
        "prompt",
        "content",
        "seed",
        "frames",
        "seconds",
        "aspect_ratio",
        "size",
        "image_urls",
        "template_id",
        "camera_strength",
    }
)
_OMNI_FIELDS: Final = frozenset(
    {
        "model",
        "req_key",
        "generation_type",
        "content",
        "prompt",
        "mask_urls",
        "output_resolution",
        "pe_fast_mode",
        "seed",
    }
)


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = kind


def _from_invalid(error: Invalid) -> ApiError:
    status = jobs.http_status_of(error.code)
    return ApiError(status, error.message, str(error.code))


class TokenOps:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.state = sandbox.state
        self.files = Files(sandbox)

    # -- plumbing -------------------------------------------------------------------------
    def error(
        self, request: Request, error: ApiError, headers: dict[str, str] | None = None
    ) -> Response:
        self.sb.note(request, code=error.code)
        body = {"error": {"message": error.message, "type": error.kind, "code": error.code}}
        return JSONResponse(body, status_code=error.status, headers=headers)

    async def guarded(self, request: Request, operation: Operation, handler: Any) -> Response:
        """Auth, faults, then the handler; ``ApiError``/``Invalid`` become error answers."""
        self.sb.note(request, provider="tokenops", operation=operation)
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {SANDBOX_TOKENOPS_KEY}":
            why = "Missing bearer token" if not auth else "Incorrect API key provided"
            return self.error(request, ApiError(401, why, "invalid_api_key"))
        fault = self.sb.fault(request, operation)
        if fault is not None:
            if fault.kind == "drop":
                return await self.sb.drop(request)
            if fault.kind == "rate_limit":
                limited = ApiError(
                    429,
                    "Rate limit reached, retry later",
                    "rate_limit_exceeded",
                    "rate_limit_error",
                )
                return self.error(request, limited, {"Retry-After": f"{fault.value or 1:g}"})
            return self.error(request, ApiError(500, "Internal error", "internal", "server_error"))
        try:
            response: Response = await handler(request)
            return response
        except Invalid as error:
            return self.error(request, _from_invalid(error))
        except ApiError as error:
            return self.error(request, error)

    async def body(self, request: Request) -> dict[str, Any]:
        try:
            _, value = await read_json(request)
        except ValueError as error:
            raise ApiError(400, f"The {error}", "invalid_json") from None
        if not isinstance(value, dict):
            raise ApiError(400, "The body must be a JSON object", "invalid_json")
        return value

    # -- routes ---------------------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        return await self.guarded(request, "submit", self._create)

    async def retrieve(self, request: Request) -> Response:
        return await self.guarded(request, "poll", self._retrieve)

    async def content(self, request: Request) -> Response:
        return await self.guarded(request, "download", self._content)

    async def detect(self, request: Request) -> Response:
        return await self.guarded(request, "detect", self._detect)

    async def recognize(self, request: Request) -> Response:
        return await self.guarded(request, "recognize_submit", self._recognize)

    # -- create ---------------------------------------------------------------------------
    async def _create(self, request: Request) -> Response:
        body = await self.body(request)
        model = jobs.text(body, "model", required=True)
        req_key = jobs.text(body, "req_key", required=True)
        assert model is not None and req_key is not None
        if model not in MODELS:
            raise field_error("model", f"{model!r} is not one of {', '.join(sorted(MODELS))}")
        if req_key not in MODELS[model]:
            raise field_error(
                "req_key",
                f"{req_key!r} is not a req_key of {model} (use one of "
                f"{', '.join(sorted(MODELS[model]))})",
            )
        if model == OMNI.tokenops_model:
            return await self._create_omni(request, body)
        return await self._create_jimeng(request, req_key, body)

    def _content_items(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        items = body.get("content")
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise field_error("content", "must be a list of objects")
        return items

    async def _create_jimeng(
        self, request: Request, req_key: str, body: dict[str, Any]
    ) -> Response:
        mode = catalog.REQ_KEY_TO_MODE[req_key]
        jobs.check_fields(body, set(_JIMENG_FIELDS), "a Jimeng video request")
        prompt, images = await self._jimeng_content(body)
        camera, strength = jobs.camera_of(body, catalog.JIMENG[mode].camera)
        params = jobs.JimengParams(
            mode=mode,
            prompt=jobs.prompt_of(prompt, limit=catalog.PROMPT_MAX_CHARS, required=False),
            frames=_frames(body),
            aspect_ratio=_aspect_ratio(body, has_images=bool(images)),
            images=images,
            camera=camera,
            strength=strength,
        )
        jobs.seed_of(jobs.integer(body, "seed"))
        jobs.check_jimeng(params)
        return self._start(
            request,
            "jimeng",
            req_key,
            jobs.jimeng_render(params),
            text=bool(params.prompt),
            images=bool(images),
        )

    async def _jimeng_content(
        self, body: dict[str, Any]
    ) -> tuple[str | None, tuple[jobs.Image, ...]]:
        """(prompt, images): content text wins over ``prompt``; content images then
        ``image_urls``."""
        prompt = jobs.text(body, "prompt")
        images: list[jobs.Image] = []
        for i, item in enumerate(self._content_items(body)):
            kind = item.get("type")
            where = f"content[{i}]"
            if kind == "text":
                value = item.get("text")
                if not isinstance(value, str):
                    raise field_error(f"{where}.text", "must be a string")
                prompt = value
            elif kind in ("image_url", "image_base64"):
                url = _item_url(item, "image_url", where)
                if kind == "image_url":
                    where_url = f"{where}.image_url.url"
                    images.append(await jobs.image_from_url(self.state, where_url, url))
                else:
                    images.append(jobs.image_from_data_url(f"{where}.image_url.url", url))
            else:
                raise field_error(f"{where}.type", "must be text, image_url or image_base64")
        for i, url in enumerate(jobs.string_list(body, "image_urls") or []):
            images.append(await jobs.image_from_url(self.state, f"image_urls[{i}]", url))
        return prompt, tuple(images)

    async def _create_omni(self, request: Request, body: dict[str, Any]) -> Response:
        jobs.check_fields(body, set(_OMNI_FIELDS), "an OmniHuman request")
        if body.get("generation_type") != "omni_human":
            raise field_error("generation_type", 'must be "omni_human" for OmniHuman_1.5')
        images: list[tuple[str, str]] = []
        audios: list[str] = []
        masks = list(jobs.string_list(body, "mask_urls") or [])
        for i, item in enumerate(self._content_items(body)):
            where = f"content[{i}]"
            kind = item.get("type")
            if kind == "image_url":
                url = _item_url(item, "image_url", where)
                role = item.get("role")
                if role == "mask_image":
                    masks.append(url)
                elif role is None:
                    images.append((f"{where}.image_url.url", url))
                else:
                    raise field_error(f"{where}.role", 'must be "mask_image" when given')
            elif kind == "audio_url":
                audios.append(_item_url(item, "audio_url", where))
            else:
                raise field_error(f"{where}.type", "must be image_url or audio_url for OmniHuman")
        if len(images) != 1 or len(audios) != 1:
            raise field_error(
                "content",
                "must hold exactly one image_url and one audio_url item "
                f"(got {len(images)} image(s), {len(audios)} audio)",
            )
        image = await jobs.image_from_url(self.state, *images[0])
        length = await jobs.audio_from_url(self.state, "audio_url", audios[0])
        prompt, resolution = jobs.omni_options(body, masks, "mask_urls")
        await jobs.check_masks(self.state, "mask_urls", masks)
        render = jobs.omni_render(image, resolution, length)
        response = self._start(
            request, "omnihuman", OMNI.video_req_key, render, text=bool(prompt), images=True
        )
        task = self.state.find("tokenops", request.scope["videogen.log"].get("task_id", ""))
        if task is not None and length is not None and length >= 60:
            task.failure = (50215, f"{jobs.MESSAGES[50215]}: audio must be shorter than 60 s")
            task.fail_early = True
            self.state.update(task)
        return response

    def _start(
        self, request: Request, kind: str, req_key: str, render: Any, *, text: bool, images: bool
    ) -> Response:
        book = self.state.book()
        for fault, wanted, code in (
            ("reject_text", text, 50412),
            ("reject_image", images, 50411),
            ("reject_copyright", True, 50413),
        ):
            if wanted and book.take(fault):  # type: ignore[arg-type]
                raise Invalid(code)
        if self.state.over_concurrency(SANDBOX_TOKENOPS_KEY):
            raise ApiError(429, jobs.MESSAGES[50430], "50430", "rate_limit_error")
        failed = book.take("fail_after_generating")
        task = self.state.add_task(
            SandboxTask(
                provider="tokenops",
                kind=kind,  # type: ignore[arg-type]
                task_id=self.state.numeric_id(20),
                req_key=req_key,
                owner=SANDBOX_TOKENOPS_KEY,
                submitted_at=self.state.clock(),
                job_seconds=self.state.job_seconds(),
                render=render,
                failure=(50516, jobs.MESSAGES[50516]) if failed else None,
            )
        )
        self.sb.note(request, task_id=task.task_id)
        return JSONResponse(
            {
                "id": task.task_id,
                "object": "video",
                "created_at": int(task.submitted_at),
                "status": self._status(task)[0],
            }
        )

    # -- status and content ---------------------------------------------------------------
    def _task(self, request: Request) -> SandboxTask:
        video_id = request.path_params["video_id"]
        self.sb.note(request, task_id=video_id)
        task = self.state.find("tokenops", video_id)
        if task is None or task.kind == "recognition":
            raise ApiError(404, f"No video found with id {video_id!r}", "not_found")
        return task

    def _status(self, task: SandboxTask) -> tuple[str, int]:
        """(status in the configured vocabulary, progress 0-100)."""
        now = self.state.clock()
        progress = task.progress(now)
        openai = self.state.options.tokenops_vocabulary == "openai"
        if task.failure is not None and (progress >= 1 or (task.fail_early and progress >= 0.25)):
            return "failed", int(progress * 100)
        if progress >= 1:
            return "completed", 100
        queued = progress < (0.5 if task.kind == "omnihuman" else 1 / 3)
        if queued:
            return ("queued" if openai else "in_queue"), 0
        return ("in_progress" if openai else "processing"), int(progress * 100)

    async def _retrieve(self, request: Request) -> Response:
        task = self._task(request)
        status, progress = self._status(task)
        r = task.render
        body: dict[str, Any] = {
            "id": task.task_id,
            "object": "video",
            "created_at": int(task.submitted_at),
            "status": status,
            "progress": progress,
            "model": _model_of(task.req_key),
            "seconds": str((r.frames - 1) // r.fps),
            "size": f"{r.width}x{r.height}",
        }
        if status == "failed" and task.failure is not None:
            body["error"] = {"code": str(task.failure[0]), "message": task.failure[1]}
        if status == "completed":
            body["completed_at"] = int(task.submitted_at + task.job_seconds)
            body["expires_at"] = int(self.state.clock() + self.state.options.url_ttl_seconds)
            self.sb.prewarm(task.render)
        return JSONResponse(body)

    async def _content(self, request: Request) -> Response:
        task = self._task(request)
        status, _ = self._status(task)
        if status != "completed":
            raise ApiError(
                409, f"Video {task.task_id} is not ready (status {status})", "video_not_ready"
            )
        url, grant = self.state.grant(
            ext="mp4",
            content_type="video/mp4",
            render=task.render,
            provider="tokenops",
            task_id=task.task_id,
        )
        match self.state.options.tokenops_content:
            case "redirect":
                return RedirectResponse(url, status_code=302)
            case "json":
                return JSONResponse({"video_url": url, "expires_at": int(grant.expires_at)})
            case _:
                return await self.files.send(request, *await self._file(grant), "video/mp4")

    async def _file(self, grant: Any) -> tuple[int, Any]:
        from videogen.sandbox.files import _file_reader

        path = await self.sb.renderer.render(grant.render)
        return path.stat().st_size, _file_reader(path)

    # -- OmniHuman subjects ---------------------------------------------------------------
    async def _subject_body(self, body: dict[str, Any], req_key: str) -> tuple[jobs.Image, str]:
        jobs.check_fields(body, {"model", "req_key", "image_url"}, req_key)
        if body.get("model") != OMNI.tokenops_model:
            raise field_error("model", f"must be {OMNI.tokenops_model}")
        if body.get("req_key") != req_key:
            raise field_error("req_key", f"must be {req_key}")
        url = jobs.text(body, "image_url", required=True)
        assert url is not None
        return await jobs.image_from_url(self.state, "image_url", url), url

    async def _detect(self, request: Request) -> Response:
        image, url = await self._subject_body(await self.body(request), OMNI.detection_req_key)
        status, masks = await jobs.detection_result(self.state, image, url)
        return JSONResponse({"status": status, "mask_urls": masks, "request_id": self.state.uuid()})

    async def _recognize(self, request: Request) -> Response:
        image, url = await self._subject_body(await self.body(request), OMNI.recognition_req_key)
        contains = await jobs.subject_count(self.state, image, url) > 0
        task_id = self.state.numeric_id(20)
        self.sb.note(request, task_id=task_id)
        return JSONResponse(
            {"task_id": task_id, "status": int(contains), "request_id": self.state.uuid()}
        )


def _item_url(item: dict[str, Any], key: str, where: str) -> str:
    inner = item.get(key)
    url = inner.get("url") if isinstance(inner, dict) else None
    if not isinstance(url, str):
        raise field_error(f"{where}.{key}.url", "is required (a string)")
    return url


def _frames(body: dict[str, Any]) -> int:
    frames = jobs.integer(body, "frames")
    seconds = body.get("seconds")
    if seconds is None:
        return jobs.frames_of(frames)
    if isinstance(seconds, bool) or str(seconds) not in ("5", "10"):
        raise field_error("seconds", 'must be "5" or "10"')
    from_seconds = catalog.PROVIDER_FRAMES[int(str(seconds))]
    if frames is not None and frames != from_seconds:
        raise field_error("frames", f"({frames}) disagrees with seconds ({seconds})")
    return from_seconds


def _aspect_ratio(body: dict[str, Any], *, has_images: bool) -> AspectRatio | None:
    """The ratio from ``aspect_ratio`` or ``size``. With images the output follows the image,
    so ``size`` is ignored there (seed 001 sends it with an image); ``aspect_ratio`` is not."""
    ratio = jobs.aspect_ratio_of(jobs.text(body, "aspect_ratio"))
    size = jobs.text(body, "size")
    if size is None or has_images:
        return ratio
    match = re.fullmatch(r"(\d{2,5})x(\d{2,5})", size)
    if match is None:
        raise field_error("size", "must look like 1280x720")
    width, height = int(match.group(1)), int(match.group(2))
    from_size = catalog.nearest_aspect_ratio(width, height)
    w, h = (int(x) for x in from_size.split(":"))
    if abs(width / height - w / h) > 0.02 * (w / h):
        raise field_error("size", f"{size} is not one of the supported aspect ratios")
    if ratio is not None and ratio != from_size:
        raise field_error("aspect_ratio", f"({ratio}) disagrees with size ({size})")
    return from_size


def _model_of(req_key: str | None) -> str:
    for model, keys in MODELS.items():
        if req_key in keys:
            return model
    return ""
