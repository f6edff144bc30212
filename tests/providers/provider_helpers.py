"""Helpers for adapter tests: a recording MockTransport, a transport that must not be used."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2

Handler = Callable[[httpx2.Request], httpx2.Response]


@dataclass
class Recorder:
    """A MockTransport handler that answers from a queue and records every request."""

    answers: list[httpx2.Response | Exception] = field(default_factory=list)
    requests: list[httpx2.Request] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def refuse_all(request: httpx2.Request) -> httpx2.Response:
    """A handler for tests that must not send anything."""
    raise AssertionError(f"an HTTP request was sent: {request.method} {request.url}")


def no_http_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.MockTransport(refuse_all))
