"""The one error tree. Every message says what happened and what to do next.

```
VideogenError                    base: ``message`` for people and models, ``exit_code``
├── ConfigError                  a setting is wrong; names the variable and the fix        (exit 3)
│   ├── LedgerError              the data dir's task ledger is damaged, read-only or full  (exit 3)
│   └── StorageError             the object store (VIDEOGEN_STORAGE_URL) cannot be used    (exit 3)
├── InputError                   the request was refused before anything was billed        (exit 2)
│   └── SpendingLimitReached     a VIDEOGEN_LIMIT_* would be passed: names it, spend, reset (exit 2)
├── OutputError                  the output directory or file name cannot be used          (exit 3)
├── CredentialsError             keys missing or rejected; names the environment variables (exit 4)
├── ProviderError                the provider answered with an error (carries its data)    (exit 1)
│   ├── ContentRejected          review refused an input or the output                     (exit 5)
│   ├── CapabilityNotEnabled     the account lacks the capability (50400, 50204)           (exit 4)
│   ├── RateLimited              QPS / concurrency limit; ``retry_after`` seconds           (exit 1)
│   ├── ProviderUnavailable      5xx, dropped connection, timeout: safe to retry if idempotent
│   └── GenerationFailed         the task ran and failed                                   (exit 6)
├── TaskNotFound                 no such task in the ledger                                (exit 2)
├── TaskExpired                  the provider forgot the task: submit again                (exit 6)
├── SubmitUncertain              a submit may or may not have reached the provider         (exit 6)
└── DownloadError                the video could not be saved; the task keeps its URL      (exit 1)
```

``ProviderError`` subclasses carry ``provider``, ``code`` (the provider's code), ``http_status``,
``request_id`` and ``provider_message`` (the provider's words, truncated).

Foreign text enters this tree only through these constructors, so they are where it is
scrubbed: every credential the program holds (``remember_secrets``) and every ``Bearer`` value
is replaced by ``***`` before a message can reach a result, the ledger or a log.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Final

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_CREDENTIALS = 4
EXIT_REJECTED = 5
EXIT_FAILED = 6
EXIT_PENDING = 7

PROVIDER_TEXT_LIMIT = 300
#: What replaces a secret in any text this module lets out.
REDACTED: Final = "***"
#: Shorter values are not scrubbed (they would mangle ordinary words; no real key is that short).
SECRET_MIN_CHARS: Final = 8
_BEARER: Final = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;]+")
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add credential values (API keys, secret keys, session tokens) to those ``scrub`` removes.

    Called for every configured provider endpoint, so a key the program holds never reaches an
    error, the ledger or a log — even when a provider echoes it back in its answer.
    """
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= SECRET_MIN_CHARS)


def scrub(text: str) -> str:
    """``text`` with every remembered secret and every ``Bearer <value>`` replaced by ``***``."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)  # a key inside a longer one: longest first
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(rf"\1 {REDACTED}", text)


def provider_words(text: str | None) -> str:
    """The provider's own text, truncated and marked as theirs."""
    if not text:
        return ""
    text = " ".join(scrub(text).split())
    if len(text) > PROVIDER_TEXT_LIMIT:
        text = text[: PROVIDER_TEXT_LIMIT - 1] + "…"
    return f' (provider said: "{text}")'


class VideogenError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = EXIT_ERROR
    kind = "error"

    def __init__(self, message: str) -> None:
        message = scrub(message)  # provider text may echo a credential; none is ever kept
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(VideogenError):
    exit_code = EXIT_CONFIG
    kind = "config"


class LedgerError(ConfigError):
    """The task ledger cannot be used: the message names the data dir, the problem and the fix.

    ``provider_task_id`` is set when a task the provider accepted (billed) could not be
    recorded: the message names it too, so it can be found in the provider's console."""

    kind = "ledger"

    def __init__(self, message: str, *, provider_task_id: str | None = None) -> None:
        super().__init__(message)
        self.provider_task_id = provider_task_id


class StorageError(ConfigError):
    """The object store of ``VIDEOGEN_STORAGE_URL`` refused or could not be reached: the message
    names the store, what failed, whether anything was billed, and the fix."""

    kind = "storage"


class InputError(VideogenError):
    exit_code = EXIT_USAGE
    kind = "input"


class SpendingLimitReached(InputError):
    """A spending limit (``VIDEOGEN_LIMIT_*``) would be passed: nothing was sent."""

    kind = "spending_limit"


class OutputError(VideogenError):
    exit_code = EXIT_CONFIG
    kind = "output"


class CredentialsError(VideogenError):
    exit_code = EXIT_CREDENTIALS
    kind = "credentials"


class ProviderError(VideogenError):
    kind = "provider"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        code: str | int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        full = message + provider_words(provider_message)
        if request_id:
            full += f" [request id {request_id}]"
        super().__init__(full)
        self.provider = provider
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.provider_message = None if provider_message is None else scrub(provider_message)


class ContentRejected(ProviderError):
    exit_code = EXIT_REJECTED
    kind = "rejected"

    def __init__(self, message: str, *, same_input_may_pass: bool = False, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.same_input_may_pass = same_input_may_pass


class CapabilityNotEnabled(ProviderError):
    exit_code = EXIT_CREDENTIALS
    kind = "not_enabled"


class RateLimited(ProviderError):
    """``in_flight``: the provider refused because the account has too many tasks in flight
    (Volcengine's 50430), not because of the request rate: the engine's queue waits for one to
    finish instead of retrying on a timer."""

    kind = "rate_limited"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        in_flight: bool = False,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after
        self.in_flight = in_flight


class ProviderUnavailable(ProviderError):
    """5xx, timeouts, dropped connections. ``sent`` is False only when nothing left this host."""

    kind = "unavailable"
    retryable = True

    def __init__(self, message: str, *, sent: bool = True, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.sent = sent


class GenerationFailed(ProviderError):
    exit_code = EXIT_FAILED
    kind = "failed"


class TaskNotFound(VideogenError):
    exit_code = EXIT_USAGE
    kind = "not_found"


class TaskExpired(VideogenError):
    exit_code = EXIT_FAILED
    kind = "expired"


class SubmitUncertain(VideogenError):
    exit_code = EXIT_FAILED
    kind = "uncertain"


class DownloadError(VideogenError):
    kind = "download"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
