"""The Jenius scene-effects front under ``/jenius/api`` (contracts.md §3, seed 000).

Bearer auth. ``POST /plugins/video/tasks`` with ``scene`` and ``image_url`` *or* ``image_urls``
(counts per ``catalog.SCENES``) answers ``{"code": 200, "message": "success", "data": {"uuid",
"status": "created", ...}}``. ``GET /plugins/video/tasks/{uuid}``: ``created`` (first quarter of
the job) → ``pending`` → ``processing`` (second half) → ``completed`` with ``video_url``, or
``failed`` with ``error_msg``. Errors are ``{"code": <http status>, "message": ...}`` with that
non-2xx status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from videogen import catalog
from videogen.sandbox import jobs
from videogen.sandbox.core import JSONResponse, Sandbox, read_json
from videogen.sandbox.jobs import Invalid
from videogen.sandbox.state import Operation, SandboxTask

SANDBOX_JENIUS_KEY: Final = "jenius-sandbox-not-a-real-key"
PRICE: Final = 100


class JeniusError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Jenius:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self.state = sandbox.state
        self._serial = 0

    def error(
        self, request: Request, status: int, message: str, headers: dict[str, str] | None = None
    ) -> Response:
        self.sb.note(request, code=status)
        return JSONResponse(
            {"code": status, "message": message}, status_code=status, headers=headers
        )

    async def guarded(self, request: Request, operation: Operation, handler: Any) -> Response:
        self.sb.note(request, provider="jenius", operation=operation)
        if request.headers.get("authorization", "") != f"Bearer {SANDBOX_JENIUS_KEY}":
            return self.error(request, 401, "Unauthorized: invalid or missing bearer token")
        fault = self.sb.fault(request, operation)
        if fault is not None:
            if fault.kind == "drop":
                return await self.sb.drop(request)
            if fault.kind == "rate_limit":
                return self.error(
                    request, 429, "Too many requests", {"Retry-After": f"{fault.value or 1:g}"}
                )
            return self.error(request, 500, "Internal server error")
        try:
            response: Response = await handler(request)
            return response
        except JeniusError as error:
            return self.error(request, error.status, error.message)
        except Invalid as error:
            return self.error(request, jobs.http_status_of(error.code), error.message)

    async def create(self, request: Request) -> Response:
        return await self.guarded(request, "submit", self._create)

    async def retrieve(self, request: Request) -> Response:
        return await self.guarded(request, "poll", self._retrieve)

    async def _create(self, request: Request) -> Response:
        try:
            _, body = await read_json(request)
        except ValueError as error:
            raise JeniusError(400, str(error)) from None
        if not isinstance(body, dict):
            raise JeniusError(400, "body must be a JSON object")
        jobs.check_fields(body, {"scene", "image_url", "image_urls"}, "a scene task")
        scene = jobs.text(body, "scene", required=True)
        assert scene is not None
        spec = catalog.SCENES.get(scene)
        if spec is None:
            raise JeniusError(400, f"unknown scene {scene!r}")
        urls = self._urls(body)
        if not spec.min_images <= len(urls) <= spec.max_images:
            raise JeniusError(
                400,
                f"scene {scene} takes {spec.min_images} to {spec.max_images} "
                f"image(s), got {len(urls)}",
            )
        images = tuple(
            [
                await jobs.image_from_url(self.state, f"image_urls[{i}]", u)
                for i, u in enumerate(urls)
            ]
        )
        book = self.state.book()
        if book.take("reject_image"):
            raise JeniusError(400, "image rejected by content review")
        if self.state.over_concurrency(SANDBOX_JENIUS_KEY):
            raise JeniusError(429, "too many tasks in progress")
        failed = book.take("fail_after_generating")
        self._serial += 1
        task = self.state.add_task(
            SandboxTask(
                provider="jenius",
                kind="scene",
                task_id=self.state.uuid(),
                req_key=None,
                owner=SANDBOX_JENIUS_KEY,
                submitted_at=self.state.clock(),
                job_seconds=self.state.job_seconds(),
                render=jobs.scene_render(scene, images),
                failure=(500, "video generation failed") if failed else None,
                extra={"id": self._serial, "scene": scene},
            )
        )
        self.sb.note(request, task_id=task.task_id)
        return JSONResponse({"code": 200, "message": "success", "data": self._data(task)})

    def _urls(self, body: dict[str, Any]) -> list[str]:
        one = jobs.text(body, "image_url")
        many = jobs.string_list(body, "image_urls")
        if one is not None and many is not None:
            raise JeniusError(400, "give image_url or image_urls, not both")
        if one is None and many is None:
            raise JeniusError(400, "image_url or image_urls is required")
        return [one] if one is not None else list(many or [])

    def _status(self, task: SandboxTask) -> str:
        p = task.progress(self.state.clock())
        if p >= 1:
            return "failed" if task.failure else "completed"
        return "created" if p < 0.25 else "pending" if p < 0.5 else "processing"

    def _data(self, task: SandboxTask) -> dict[str, Any]:
        status = self._status(task)
        now = self.state.clock()
        data: dict[str, Any] = {
            "id": task.extra["id"],
            "uuid": task.task_id,
            "scene": task.extra["scene"],
            "status": status,
            "price": PRICE,
            "created_at": _iso(task.submitted_at),
            "updated_at": _iso(min(now, task.submitted_at + task.job_seconds)),
            "video_url": "",
            "error_msg": "",
            "completed_at": None,
        }
        if status == "completed":
            url, _ = self.state.grant(
                ext="mp4",
                content_type="video/mp4",
                render=task.render,
                provider="jenius",
                task_id=task.task_id,
            )
            data["video_url"] = url
            data["completed_at"] = _iso(task.submitted_at + task.job_seconds)
            self.sb.prewarm(task.render)
        elif status == "failed" and task.failure is not None:
            data["error_msg"] = task.failure[1]
        return data

    async def _retrieve(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        self.sb.note(request, task_id=uuid)
        task = self.state.find("jenius", uuid)
        if task is None:
            raise JeniusError(404, f"task {uuid} not found")
        return JSONResponse({"code": 200, "message": "success", "data": self._data(task)})
