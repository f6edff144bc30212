"""What the three adapters share: sending one request, transport errors, hints, small parsing.

``send`` is the only place an adapter touches the network. Transport failures become
``ProviderUnavailable`` here, with ``sent=False`` exactly when the request provably never left
this host (the connection was refused or never established), which is the one case in which an
engine may resend a billed submit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Final, TypeVar

import httpx2
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from videogen.config import CREDENTIAL_VARIABLES
from videogen.errors import (
    CapabilityNotEnabled,
    ConfigError,
    ContentRejected,
    CredentialsError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    scrub,
)
from videogen.retry import retry_after

logger = logging.getLogger("videogen.providers")
M = TypeVar("M", bound=BaseModel)

#: Transport failures that happen before any byte of the request is sent.
NOT_SENT: Final = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)
#: The most of an error body kept (the message is truncated further for people).
ERROR_BODY_LIMIT: Final = 64 * 1024


#: Input rejections: retrying the same input will not help. Code -> which input.
REJECTED_INPUTS: Final[dict[int, str]] = {
    50411: "the input image",
    50412: "the prompt",
    50413: "the prompt (sensitive or copyrighted words)",
    50512: "the generated text",
    50513: "the input video",
    50514: "the input audio",
    50518: "the input image (copyright)",
}
#: Output rejections: a new submit of the same request may pass.
REJECTED_OUTPUTS: Final[dict[int, str]] = {
    50511: "the generated image",
    50516: "the generated video",
    50517: "the generated audio",
    50519: "the generated image (copyright)",
}
#: Codes that reject the request's parameters, with what to do about them.
INVALID_INPUTS: Final[dict[int, str]] = {
    50200: "a parameter was refused (invalid value or unknown req_key); check the mode and inputs",
    50215: "the input is invalid for this service (OmniHuman audio must be shorter than 60 s)",
    50220: "an input URL could not be downloaded by the provider; make sure it is public",
}


def _int_to_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: An id that some answers give as a number: kept as text, verbatim.
TextId = Annotated[str, BeforeValidator(_int_to_text)]


class Loose(BaseModel):
    """Base for provider answers: unknown fields are ignored, models are immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


async def send(
    client: httpx2.AsyncClient, request: httpx2.Request, provider: str, *, stream: bool = False
) -> httpx2.Response:
    """Send ``request`` once; transport errors become ``ProviderUnavailable``.

    With ``stream`` the body is not read (the caller must close the response).
    """
    try:
        return await client.send(request, stream=stream, follow_redirects=False)
    except (httpx2.UnsupportedProtocol, httpx2.ProxyError) as error:
        raise ConfigError(
            f"The {provider} base URL ({request.url.scheme}://{request.url.host}) cannot be used "
            f"({type(error).__name__}): give an http:// or https:// URL and check any proxy "
            "settings."
        ) from None
    except NOT_SENT as error:
        raise ProviderUnavailable(
            f"Could not connect to {provider} at {request.url.host}: nothing was sent. Check the "
            "network (and the base URL), then try again.",
            provider=provider,
            sent=False,
            provider_message=type(error).__name__,
        ) from None
    except httpx2.TimeoutException as error:
        raise ProviderUnavailable(
            f"{provider} did not answer in time; the request may have reached it. Try again "
            "later (a submit is not resent automatically: check the task first).",
            provider=provider,
            provider_message=type(error).__name__,
        ) from None
    except httpx2.TransportError as error:
        raise ProviderUnavailable(
            f"The connection to {provider} broke before an answer arrived; the request may have "
            "reached it. Try again later.",
            provider=provider,
            provider_message=type(error).__name__,
        ) from None


def body_text(response: httpx2.Response) -> str:
    """The (already read) body as text, bounded."""
    return response.content[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")


def json_body(response: httpx2.Response) -> object | None:
    """The (already read) body as JSON, or None when it is not JSON."""
    try:
        parsed: object = json.loads(response.content[: ERROR_BODY_LIMIT * 16])
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed


def parse(model: type[M], data: object, provider: str, what: str, response: httpx2.Response) -> M:
    """Validate ``data`` as ``model``; an answer that does not fit is a ``ProviderError``."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ProviderError(
            f"{provider} answered the {what} in an unexpected shape (HTTP "
            f"{response.status_code}); this is a provider or adapter bug — report it.",
            provider=provider,
            http_status=response.status_code,
            provider_message=f"{body_text(response)[:200]} / {error.errors()[0]['msg']}",
        ) from None


def credentials_error(
    provider: str, detail: str, request_id: str | None = None
) -> CredentialsError:
    """A ``CredentialsError`` naming the environment variables to set."""
    names = " and ".join(CREDENTIAL_VARIABLES[provider])  # type: ignore[index]
    suffix = f" [request id {request_id}]" if request_id else ""
    return CredentialsError(
        f"{provider} refused the credentials ({detail}): check {names} in the environment.{suffix}"
    )


def rate_limited(
    provider: str,
    response: httpx2.Response,
    *,
    code: str | int | None,
    request_id: str | None,
    message: str | None,
    what: str,
    in_flight: bool = False,
) -> RateLimited:
    return RateLimited(
        f"{provider} is limiting requests ({what}); waiting and asking again usually works.",
        retry_after=retry_after(response.headers),
        in_flight=in_flight,
        provider=provider,
        code=code,
        http_status=response.status_code,
        request_id=request_id,
        provider_message=message,
    )


def unavailable(
    provider: str,
    response: httpx2.Response,
    *,
    code: str | int | None,
    request_id: str | None,
    message: str | None,
) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"{provider} had an internal error (HTTP {response.status_code}); try again later.",
        provider=provider,
        code=code,
        http_status=response.status_code,
        request_id=request_id,
        provider_message=message,
    )


class Once:
    """Log each distinct value once per process (unknown statuses must not flood the log)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def warn(self, key: str, message: str) -> None:
        if key not in self._seen:
            self._seen.add(key)
            logger.warning(scrub(message))


async def read_bounded(response: httpx2.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
    """Up to ``limit`` bytes of a streamed body (the rest is never read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def bearer(api_key: str | None, provider: str) -> dict[str, str]:
    """The ``Authorization`` header, or a ``CredentialsError`` naming the variable to set."""
    if not api_key:
        names = " and ".join(CREDENTIAL_VARIABLES[provider])  # type: ignore[index]
        raise CredentialsError(f"No {provider} API key: set {names} in the environment.")
    return {"Authorization": f"Bearer {api_key}"}


def content_rejection(
    code: int | None, title: str, common: Mapping[str, Any]
) -> ContentRejected | None:
    """The ``ContentRejected`` for a review code (contracts.md §1.4), or None for other codes."""
    if code in REJECTED_INPUTS:
        return ContentRejected(
            f"{title}'s content review rejected {REJECTED_INPUTS[code]} (code {code}). "
            "Retrying the same input will not help: change it.",
            **common,
        )
    if code in REJECTED_OUTPUTS:
        return ContentRejected(
            f"{title}'s content review rejected {REJECTED_OUTPUTS[code]} (code {code}). "
            "The same request may pass if submitted again.",
            same_input_may_pass=True,
            **common,
        )
    return None


def int_code(value: object) -> int | None:
    """A provider code as an int when it is one (``50412`` or ``"50412"``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


#: Business codes (contracts.md §1.4) are five digits starting with 5; gateway codes are 1000xx.
BUSINESS_CODES: Final = range(50000, 60000)


def is_task_outcome(error: object) -> bool:
    """Whether an error answered to a *poll* is the task's own fate, not the poll's.

    A review rejection, or a business code that asking again will not change (50200 invalid
    parameter, 50215 invalid input, 50220 an input URL the provider could not download, and the
    like) ends the task: the poll reports it ``failed`` with that error. Errors about the poll
    request itself, the account or the moment — credentials and signatures (gateway codes),
    capability not enabled, rate limits, 5xx — are raised as before.
    """
    if isinstance(error, ContentRejected):
        return True
    if not isinstance(error, ProviderError) or error.retryable:
        return False
    if isinstance(error, CapabilityNotEnabled):
        return False
    code = int_code(error.code)
    return code is not None and code in BUSINESS_CODES
