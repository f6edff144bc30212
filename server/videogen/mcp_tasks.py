"""The MCP Tasks extension (SEP-2663, ``io.modelcontextprotocol/tasks``) on protocol 2026-07-28.

The server advertises the extension. A ``tools/call`` of ``generate_video`` on 2026-07-28 from a
client that declares it in that request's capabilities runs the tool in submit-only mode: input
errors are refused as usual, before anything is billed, and once the provider has accepted the
submit the call answers at once with a flat ``CreateTaskResult`` (``resultType: "task"``). The
host follows the task with ``tasks/get``: a status, a ``statusMessage`` in words and, once the
video is saved, the very result ``generate_video`` gives (markdown block, poster, resource link,
structured content). A generation that failed is a ``completed`` task whose result has
``isError``; ``tasks/cancel`` cancels at the provider while it can (``Engine.cancel``).
``tasks/update`` is an empty acknowledgement (this server never asks for input);
``tasks/result`` and ``tasks/list`` do not exist (-32601, the SDK's answer for an unknown method).

**The ledger is the task store.** A task id is the ledger's id, and every answer is read from
the ledger through the engine, so ``tasks/get`` answers for tasks submitted before a restart, by
another process sharing the data directory, or over another transport. ``ttlMs`` is null: the
ledger keeps tasks until they are deleted by hand. ``pollIntervalMs`` follows the engine's own
poll schedule. A task is visible only to the owner (bearer token) that made it; to anyone else
it does not exist (-32602, the same answer as for an id never issued).

**Both eras, one behaviour.** Clients on 2025-11-25, and clients that do not declare the
extension, get today's bounded wait and ``check_task``; ``tasks/*`` then answer -32021.

This module only uses the SDK's public ``Extension`` API, so it can be replaced by the SDK's own
Tasks runtime when there is one: ``mcp_server`` registers it in one line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import require_client_extension
from mcp_types import CallToolRequestParams, CallToolResult, RequestParams
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field

from videogen.errors import TaskNotFound, VideogenError
from videogen.report import waiting_words

if TYPE_CHECKING:
    from videogen.app import App
    from videogen.engine import Task

EXTENSION_ID: Final = "io.modelcontextprotocol/tasks"
#: The protocol revision that carries the extension (tasks left the core there).
TASKS_PROTOCOL_VERSIONS: Final = frozenset({"2026-07-28"})
#: Tools that answer with a task when the client can follow one.
TASK_TOOLS: Final = frozenset({"generate_video"})

McpTaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]


class TaskParams(RequestParams):
    """``tasks/get`` and ``tasks/cancel`` params."""

    task_id: str = Field(min_length=1)


class UpdateTaskParams(TaskParams):
    """``tasks/update`` params (this server never asks for input; they are acknowledged)."""

    input_responses: dict[str, Any] | None = None


class AppSource(Protocol):
    """The lifespan's app handle (``mcp_server.LazyApp``)."""

    async def get(self) -> App: ...


class Answer(Protocol):
    """Builds the tool result of a task (``mcp_server._answer``)."""

    def __call__(self, task: Task, *, notice: str | None) -> Awaitable[CallToolResult]: ...


class TasksExtension(Extension):
    """``io.modelcontextprotocol/tasks`` over the engine and its ledger (see the module doc).

    ``answer`` renders a task as ``generate_video``'s result; ``owner`` names the caller (None
    when the transport has no authentication).
    """

    identifier = EXTENSION_ID

    def __init__(self, *, answer: Answer, owner: Callable[[], str | None]) -> None:
        self._answer = answer
        self._owner = owner

    def methods(self) -> Sequence[MethodBinding]:
        return [
            MethodBinding("tasks/get", TaskParams, self._get, TASKS_PROTOCOL_VERSIONS),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, TASKS_PROTOCOL_VERSIONS),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, TASKS_PROTOCOL_VERSIONS),
        ]

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or not client_follows_tasks(ctx):
            return await call_next(ctx)
        # Submit only: the host follows the task with tasks/get instead of a held-open call.
        # The handler below reads these very params (an interceptor cannot pass others).
        params.arguments = {**(params.arguments or {}), "wait_seconds": 0}
        result = await call_next(ctx)
        task_id = _task_id_of(result)
        if task_id is None:  # refused before anything was billed: the error as the tool gave it
            return result
        app = await _app(ctx)
        task = _owned(app, task_id, self._owner())
        return {"resultType": "task", **_envelope(app, task)}

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, EXTENSION_ID)
        app = await _app(ctx)
        _owned(app, params.task_id, self._owner())  # another owner's task does not exist
        try:
            task = await app.engine.check(params.task_id, owner=self._owner())
        except VideogenError as error:
            raise MCPError(code=INTERNAL_ERROR, message=error.message) from error
        body = _envelope(app, task)
        if body["status"] == "completed":
            result = await self._answer(await app.engine.poster(task), notice=app.notice)
            result.is_error = task.status != "completed"
            body["result"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return body

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> HandlerResult:
        require_client_extension(ctx, EXTENSION_ID)
        _owned(await _app(ctx), params.task_id, self._owner())
        return {}

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        require_client_extension(ctx, EXTENSION_ID)
        app = await _app(ctx)
        owner = self._owner()
        _owned(app, params.task_id, owner)
        try:
            await app.engine.cancel(params.task_id, owner=owner)
        except VideogenError as error:
            raise MCPError(code=INTERNAL_ERROR, message=error.message) from error
        return {}


def client_follows_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """True on 2026-07-28 when this request's client capabilities declare the extension."""
    if ctx.protocol_version not in TASKS_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(
        capabilities and capabilities.extensions and EXTENSION_ID in capabilities.extensions
    )


async def _app(ctx: ServerRequestContext[Any, Any]) -> App:
    source: AppSource = ctx.lifespan_context
    try:
        return await source.get()
    except VideogenError as error:
        raise MCPError(code=INTERNAL_ERROR, message=error.message) from error


def _owned(app: App, task_id: str, owner: str | None) -> Task:
    """The caller's task, or -32602 whether it does not exist or is someone else's."""
    try:
        return app.engine.get(task_id, owner=owner)
    except TaskNotFound as error:
        raise MCPError(
            code=INVALID_PARAMS, message=f"Unknown task: {task_id}", data={"taskId": task_id}
        ) from error


def _task_id_of(result: HandlerResult) -> str | None:
    if not isinstance(result, CallToolResult) or result.is_error:
        return None
    task_id = (result.structured_content or {}).get("task_id")
    return task_id if isinstance(task_id, str) else None


def _envelope(app: App, task: Task) -> dict[str, Any]:
    """The task fields every answer carries (``Task`` in SEP-2663's terms)."""
    return {
        "taskId": task.id,
        "status": mcp_status(task),
        "statusMessage": status_message(task),
        "createdAt": _iso(task.created_at),
        "lastUpdatedAt": _iso(task.updated_at),
        "ttlMs": None,  # the ledger keeps every task
        "pollIntervalMs": max(1, round(app.engine.poll_interval(task) * 1000)),
    }


def mcp_status(task: Task) -> McpTaskStatus:
    """The ledger's status in the extension's words. A generation that failed, expired or
    whose submit went unanswered is ``completed`` (its result has ``isError``): ``failed`` is
    for protocol errors, and reading the ledger has none."""
    if task.cancelled_at is not None:
        return "cancelled"
    return "completed" if task.terminal else "working"


def status_message(task: Task) -> str:
    """Where the task stands, in words: queued, rendering, downloading, saved ..."""
    where = task.provider
    if task.cancelled_at is not None and task.status == "failed":
        if task.provider_task_id is None:
            return f"Cancelled before it was sent to {where}: nothing was billed."
        return f"Cancelled at {where} while still queued: nothing was billed."
    if task.cancelled_at is not None:
        return (
            f"Cancelled here, but {where} could not stop it ({task.status}), so it may still be "
            f"billed; the video is still saved when it is ready: check_task {task.id} shows it."
        )
    match task.status:
        case "waiting":
            return waiting_words(task)
        case "submitting":
            return f"Submitting to {where}."
        case "queued":
            return f"Queued at {where}."
        case "running":
            share = f" ({task.progress:.0%})" if task.progress is not None else ""
            return f"Rendering at {where}{share}."
        case "ready":
            if task.error is not None:
                return f"Rendered; saving failed and is retried: {task.error.message}"
            return "Rendered; downloading and saving the video."
        case "completed":
            return f"Saved to {task.local_path}."
        case _:
            reason = task.error.message if task.error else ""
            return f"The generation ended {task.status}. {reason}".strip()


def _iso(timestamp: float) -> str:
    stamp = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
