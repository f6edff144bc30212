"""A minimal client side of the MCP Tasks extension (``io.modelcontextprotocol/tasks``) for the
tests: the claimed ``CreateTaskResult`` shape and raw ``tasks/*`` requests through the SDK's
session (imported by name, like ``mcp_helpers``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import anyio
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, Request, RequestParams, Result

EXTENSION_ID = "io.modelcontextprotocol/tasks"
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class CreatedTask(Result):
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskState(Result):
    """What ``tasks/get`` answers (a ``DetailedTask``)."""

    result_type: str | None = None
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def tool_result(self) -> CallToolResult:
        assert self.result is not None, self
        return CallToolResult.model_validate(self.result)


class Ack(Result):
    result_type: str | None = None


class TaskIdParams(RequestParams):
    task_id: str
    input_responses: dict[str, Any] | None = None


class _TaskRequest(Request[TaskIdParams, Any]):
    name_param: ClassVar[str | None] = "taskId"


class GetTask(_TaskRequest):
    method: Literal["tasks/get"] = "tasks/get"


class CancelTask(_TaskRequest):
    method: Literal["tasks/cancel"] = "tasks/cancel"


class UpdateTask(_TaskRequest):
    method: Literal["tasks/update"] = "tasks/update"


class ResultRequest(_TaskRequest):
    method: Literal["tasks/result"] = "tasks/result"


class ListRequest(Request[RequestParams, Any]):
    method: Literal["tasks/list"] = "tasks/list"


class TasksClientExtension(ClientExtension):
    """Declares the extension; a claimed task is followed with ``tasks/get`` to its end."""

    identifier = EXTENSION_ID

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self._resolve)]

    async def _resolve(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        state = await _follow(lambda: ctx.session.send_request(_get(created.task_id), TaskState))
        return state.tool_result()


def _get(task_id: str) -> GetTask:
    return GetTask(params=TaskIdParams(task_id=task_id))


async def submit(client: Client, arguments: dict[str, Any]) -> CreatedTask | CallToolResult:
    """``generate_video`` as the raw answer: a claimed task, or a plain tool result."""
    result = await client.session.call_tool("generate_video", arguments, allow_claimed=True)
    assert isinstance(result, CreatedTask | CallToolResult), result
    return result


async def get_task(client: Client, task_id: str) -> TaskState:
    return await client.session.send_request(_get(task_id), TaskState)


async def cancel_task(client: Client, task_id: str) -> Ack:
    return await client.session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)), Ack)


async def update_task(client: Client, task_id: str) -> Ack:
    params = TaskIdParams(task_id=task_id, input_responses={})
    return await client.session.send_request(UpdateTask(params=params), Ack)


async def follow(client: Client, task_id: str, within: float = 30) -> list[TaskState]:
    """Every distinct state ``tasks/get`` reports until the task ends (polling as told)."""
    seen: list[TaskState] = []

    async def one() -> TaskState:
        state = await get_task(client, task_id)
        if not seen or (seen[-1].status, seen[-1].status_message) != (
            state.status,
            state.status_message,
        ):
            seen.append(state)
        return state

    with anyio.fail_after(within):
        await _follow(one)
    return seen


async def _follow(get: Any) -> TaskState:
    while True:
        state: TaskState = await get()
        if state.status in TERMINAL:
            return state
        await anyio.sleep(min(0.5, (state.poll_interval_ms or 500) / 1000))
