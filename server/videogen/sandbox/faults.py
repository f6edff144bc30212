"""Faults on demand: deterministic misbehaviour, selected by spec strings.

Grammar (one spec per string; ``<operation>`` is a request-log operation: ``submit``, ``poll``,
``download``, ``detect``, ``recognize_submit``, ``recognize_poll``, ``cancel``, or ``any``;
a missing ``<count>`` means "every time")::

    rate_limit:<operation>[:<count>[:<retry_after>]]  429 (Volcengine 50429, TokenOps/Jenius 429)
                                                       with Retry-After (default 1 s)
    server_error:<operation>[:<count>]                 500 (Volcengine 50500)
    drop:<operation>[:<count>]                         close the connection without an answer
    truncate_download[:<count>]                        full Content-Length, half the bytes, close
    slow_download[:<bytes_per_second>]                 throttle file downloads (default 262144)
    reject_text[:<count>]                              submit refused: 50412 Text Risk Not Pass
    reject_image[:<count>]                             submit refused: 50411 Pre Img Risk Not Pass
                                                       (Jenius: 400 "rejected by content review")
    reject_copyright[:<count>]                         submit refused: 50413 Post Text Risk Not Pass
    fail_after_generating[:<count>]                    the next <count> tasks fail when done:
                                                       50516 / TokenOps "failed" / Jenius "failed"
    expired_urls                                       every URL handed out is already expired
    concurrency:<limit>                                at most <limit> tasks in flight per key
    job_seconds:<seconds>                              how long a job takes from now on

Each fault counts its own hits, so ``rate_limit:poll:2`` makes exactly the first two polls
answer 429. When several request faults match one request, the first spec listed wins (and only
it counts the hit). Counters restart whenever the fault list is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

OPERATIONS: Final = (
    "submit",
    "poll",
    "download",
    "detect",
    "recognize_submit",
    "recognize_poll",
    "cancel",
    "any",
)
RequestFaultKind = Literal["rate_limit", "server_error", "drop"]
CountedFaultKind = Literal[
    "truncate_download", "reject_text", "reject_image", "reject_copyright", "fail_after_generating"
]
REQUEST_KINDS: Final = ("rate_limit", "server_error", "drop")
COUNTED_KINDS: Final = (
    "truncate_download",
    "reject_text",
    "reject_image",
    "reject_copyright",
    "fail_after_generating",
)
DEFAULT_SLOW_BYTES_PER_SECOND: Final = 262_144


def _plain(text: str) -> str:
    """The docstring's reST as plain text for ``--help`` and error messages (no ``, no ::)."""
    return text.replace("``", "").replace("::\n", ":\n")


GRAMMAR: Final = _plain((__doc__ or "").split("Grammar", 1)[1].split("Each fault", 1)[0])


class FaultSpecError(ValueError):
    """A fault spec that does not follow the grammar."""

    def __init__(self, spec: str, why: str) -> None:
        super().__init__(f"bad fault spec {spec!r}: {why}. Grammar{GRAMMAR}")


@dataclass
class Fault:
    """One parsed spec with its remaining hits (``None``: unlimited)."""

    spec: str
    kind: str
    operation: str | None = None
    remaining: int | None = None
    value: float | None = None

    def applies(self, kind: str, operation: str | None = None) -> bool:
        if self.kind != kind or self.remaining == 0:
            return False
        return operation is None or self.operation in (operation, "any")

    def take(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


def _int(spec: str, raw: str, what: str) -> int:
    if not raw.isdigit():
        raise FaultSpecError(spec, f"{what} must be a whole number, got {raw!r}")
    return int(raw)


def _float(spec: str, raw: str, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise FaultSpecError(spec, f"{what} must be a number, got {raw!r}") from None
    if value < 0 or value != value:
        raise FaultSpecError(spec, f"{what} must not be negative")
    return value


def parse_fault(spec: str) -> Fault:
    """Parse one spec string; ``FaultSpecError`` (a ``ValueError``) names what is wrong."""
    kind, *args = spec.strip().split(":")
    if kind in REQUEST_KINDS:
        if not args or args[0] not in OPERATIONS:
            raise FaultSpecError(spec, f"{kind} needs an operation, one of {', '.join(OPERATIONS)}")
        if len(args) > (3 if kind == "rate_limit" else 2):
            raise FaultSpecError(spec, "too many fields")
        count = _int(spec, args[1], "count") if len(args) > 1 else None
        retry = _float(spec, args[2], "retry_after") if len(args) > 2 else 1.0
        return Fault(spec, kind, args[0], count, retry if kind == "rate_limit" else None)
    if kind in COUNTED_KINDS:
        if len(args) > 1:
            raise FaultSpecError(spec, "too many fields")
        return Fault(spec, kind, None, _int(spec, args[0], "count") if args else None)
    if kind == "slow_download":
        if len(args) > 1:
            raise FaultSpecError(spec, "too many fields")
        rate = _float(spec, args[0], "bytes_per_second") if args else DEFAULT_SLOW_BYTES_PER_SECOND
        if rate <= 0:
            raise FaultSpecError(spec, "bytes_per_second must be positive")
        return Fault(spec, kind, value=rate)
    if kind == "expired_urls":
        if args:
            raise FaultSpecError(spec, "expired_urls takes no fields")
        return Fault(spec, kind)
    if kind in ("concurrency", "job_seconds"):
        if len(args) != 1:
            raise FaultSpecError(spec, f"{kind} needs exactly one value")
        value = (
            _int(spec, args[0], "limit") if kind == "concurrency" else _float(spec, args[0], "s")
        )
        return Fault(spec, kind, value=float(value))
    raise FaultSpecError(spec, f"unknown fault {kind!r}")


def parse_faults(specs: tuple[str, ...] | list[str]) -> list[Fault]:
    return [parse_fault(s) for s in specs]


class FaultBook:
    """The active faults of one sandbox and their hit counters."""

    def __init__(self, specs: tuple[str, ...] = ()) -> None:
        self.specs = tuple(specs)
        self.faults = parse_faults(self.specs)

    def hit(self, operation: str) -> Fault | None:
        """The request fault (rate_limit / server_error / drop) this request meets, counted."""
        for fault in self.faults:
            if fault.kind in REQUEST_KINDS and fault.applies(fault.kind, operation):
                fault.take()
                return fault
        return None

    def take(self, kind: CountedFaultKind) -> bool:
        """Whether a counted fault of this kind fires now (and count it)."""
        for fault in self.faults:
            if fault.applies(kind):
                fault.take()
                return True
        return False

    def _value(self, kind: str) -> float | None:
        values = [f.value for f in self.faults if f.kind == kind]
        return values[-1] if values else None

    @property
    def job_seconds(self) -> float | None:
        return self._value("job_seconds")

    @property
    def concurrency(self) -> int | None:
        value = self._value("concurrency")
        return None if value is None else int(value)

    @property
    def slow_download(self) -> float | None:
        return self._value("slow_download")

    @property
    def expired_urls(self) -> bool:
        return any(f.kind == "expired_urls" for f in self.faults)
