"""Spending limits: what is billed, how much of each limit is spent, and the refusal.

**Billed.** A task counts when its submit was sent and the provider did not definitively refuse
it: every task in the ledger except a ``failed`` one without a provider task id (refused,
rate-limited, unreachable, invalid: the provider never accepted it). So ``submitting`` (in
flight), ``queued`` to ``completed``, ``unknown`` (it may be billed) and a ``failed`` or
``expired`` task the provider had accepted all count. An identical request answered with the
earlier task records nothing and counts nothing; a request refused before sending records
nothing. Sandbox tasks count only against a sandbox session's limits, real ones only against a
real session's.

**Seconds.** The requested provider clip (5 or 10 s, ``GenerationRequest.provider_seconds``):
what is asked of the provider. An OmniHuman video follows its audio, whose length is not known
before: it counts as its provider clip too.

**Days and months are UTC**: a day starts at 00:00 UTC, a month on the 1st at 00:00 UTC.

**Money.** ``VIDEOGEN_PRICES`` gives a price per second of video per provider and mode
(``volcengine:t2v_720p=0.07,tokenops:*=0.1``); spend is seconds times today's price. With a
spend limit set, a provider and mode without a price is refused before sending.

**Atomic.** ``Guard`` runs inside the ledger transaction that records the task
(``Ledger.record_new`` / ``Ledger.insert``): requests racing from any number of processes on
one ledger are checked one after the other, so none overshoots.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Literal

from pydantic import BaseModel, Field

from videogen.errors import SpendingLimitReached
from videogen.models import LimitUse, Task, Usage

if TYPE_CHECKING:
    from videogen.ledger import Ledger

Period = Literal["day", "month"]
Measure = Literal["videos", "seconds", "spend"]


def billed_where(provider_task_id: str) -> str:
    """SQL condition on a ``tasks`` row: the task is billed (see the module docstring).
    ``provider_task_id`` is the ledger backend's expression for the stored task's field."""
    return f"NOT (status = 'failed' AND {provider_task_id} IS NULL)"


#: ``billed_where`` for the SQLite ledger.
BILLED_WHERE: Final = billed_where("json_extract(data, '$.provider_task_id')")

_UNITS: Final[dict[Measure, str]] = {"videos": "videos", "seconds": "s", "spend": "spend"}
_WHEN: Final[dict[Period, str]] = {"day": "today", "month": "this month"}


@dataclass(frozen=True)
class Limit:
    """One ``VIDEOGEN_LIMIT_*`` setting: at most ``value`` of ``measure`` per ``period``, for
    everyone together or for each owner (HTTP token; the local user is one owner)."""

    measure: Measure
    period: Period
    per_owner: bool
    value: float

    @property
    def variable(self) -> str:
        return limit_variable(self.measure, self.period, self.per_owner)


def limit_variable(measure: Measure, period: Period, per_owner: bool) -> str:
    who = "OWNER_" if per_owner else ""
    return f"VIDEOGEN_LIMIT_{who}{measure.upper()}_PER_{period.upper()}"


#: Every limit variable, with what it limits (for config, --help and the README).
LIMIT_VARIABLES: Final[dict[str, tuple[Measure, Period, bool]]] = {
    limit_variable(m, p, o): (m, p, o)
    for o in (False, True)
    for m in ("videos", "seconds", "spend")
    for p in ("day", "month")
}


@dataclass(frozen=True)
class Prices:
    """Price per second of video by ``provider:mode`` (``provider:*`` for the rest)."""

    table: Mapping[str, float]

    def per_second(self, provider: str, mode: str) -> float | None:
        found = self.table.get(f"{provider}:{mode}")
        return self.table.get(f"{provider}:*") if found is None else found


def parse_prices(text: str) -> Prices:
    """``provider:mode=price,...``; ``ValueError`` saying which entry is wrong."""
    table: dict[str, float] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        key, sep, price = entry.partition("=")
        provider, colon, mode = key.strip().partition(":")
        try:
            value = float(price)
        except ValueError:
            value = math.nan
        if not sep or not colon or not provider or not mode or not 0 <= value < math.inf:
            raise ValueError(
                f"{entry!r} is not provider:mode=price (a price per second, 0 or more; "
                "mode * for every other mode)"
            )
        table[f"{provider.strip()}:{mode.strip()}"] = value
    return Prices(table)


@dataclass(frozen=True)
class Policy:
    """The limits and prices in force (``Settings.spending``); empty by default."""

    limits: tuple[Limit, ...] = ()
    prices: Prices | None = None

    @property
    def active(self) -> bool:
        """True when results should say what was spent (a limit or a price is set)."""
        return bool(self.limits) or self.prices is not None


@dataclass(frozen=True)
class Billed:
    """One billed task as the limits and ``videogen usage`` see it."""

    created_at: float
    owner: str | None
    provider: str
    mode: str
    seconds: int


def period_start(now: float, period: Period) -> float:
    """Unix time the UTC day or month holding ``now`` began."""
    at = datetime.fromtimestamp(now, UTC)
    start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.timestamp()


def period_end(now: float, period: Period) -> float:
    """Unix time the UTC day or month holding ``now`` ends (when its limits reset)."""
    start = period_start(now, period)
    if period == "day":
        return start + 86_400
    at = datetime.fromtimestamp(start, UTC)
    return start + calendar.monthrange(at.year, at.month)[1] * 86_400


@dataclass
class Guard:
    """One submit's check, called by the ledger inside the transaction that records ``task``
    with every billed task since ``since`` (same sandbox flag): raises ``SpendingLimitReached``
    when a limit would be passed, else returns the task with its ``usage`` set (or as it is
    when no limit or price is set)."""

    policy: Policy
    now: float
    owner: str | None
    since: float = field(init=False)

    def __post_init__(self) -> None:
        self.since = period_start(self.now, "month")

    def __call__(self, task: Task, billed: Sequence[Billed]) -> Task:
        if not self.policy.active:
            return task
        mine = Billed(task.created_at, task.owner, task.provider, task.request.mode_label,
                      task.request.provider_seconds)  # fmt: skip
        price = self._price(mine)
        uses = [self._check(limit, billed, mine, price) for limit in self.policy.limits]
        today = [b for b in billed if b.created_at >= period_start(self.now, "day")]
        if self.owner is not None:
            today = [b for b in today if b.owner == self.owner]
        today.append(mine)
        videos, seconds = len(today), sum(b.seconds for b in today)
        spend = None if self.policy.prices is None else round(_spend(today, self.policy), 4)
        task.usage = Usage(
            videos_today=videos,
            seconds_today=seconds,
            spend_today=spend,
            limits=uses,
            summary=_summary(videos, seconds, spend, uses),
        )
        return task

    def _price(self, mine: Billed) -> float | None:
        prices = self.policy.prices
        price = None if prices is None else prices.per_second(mine.provider, mine.mode)
        spend_limits = [lim.variable for lim in self.policy.limits if lim.measure == "spend"]
        if price is None and spend_limits:
            raise SpendingLimitReached(
                f"No price for {mine.provider}:{mine.mode} in VIDEOGEN_PRICES, and "
                f"{spend_limits[0]} is set, so this video's cost cannot be checked. Nothing "
                f"was sent, so nothing was billed. Add {mine.provider}:{mine.mode}=<price per "
                f"second> (or {mine.provider}:*=<price>) to VIDEOGEN_PRICES."
            )
        return price

    def _check(
        self, limit: Limit, billed: Sequence[Billed], mine: Billed, price: float | None
    ) -> LimitUse:
        start = period_start(self.now, limit.period)
        counted = [b for b in billed if b.created_at >= start]
        if limit.per_owner:
            counted = [b for b in counted if b.owner == self.owner]
        spent = _measure(limit.measure, counted, self.policy)
        need = _measure(limit.measure, [mine], self.policy)
        resets_at = period_end(self.now, limit.period)
        if spent + need > limit.value + 1e-9:
            raise SpendingLimitReached(_refusal(limit, spent, need, resets_at, self.now))
        return LimitUse(
            variable=limit.variable,
            limit=limit.value,
            spent=round(spent + need, 4),
            resets_at=resets_at,
        )


def _measure(measure: Measure, billed: Iterable[Billed], policy: Policy) -> float:
    rows = list(billed)
    if measure == "videos":
        return float(len(rows))
    if measure == "seconds":
        return float(sum(b.seconds for b in rows))
    return _spend(rows, policy)


def _spend(billed: Iterable[Billed], policy: Policy) -> float:
    prices = policy.prices
    if prices is None:
        return 0.0
    return sum(b.seconds * (prices.per_second(b.provider, b.mode) or 0.0) for b in billed)


def _refusal(limit: Limit, spent: float, need: float, resets_at: float, now: float) -> str:
    unit = _UNITS[limit.measure]
    who = " for this token" if limit.per_owner else ""
    reset = datetime.fromtimestamp(resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Spending limit reached: {limit.variable}={limit.value:g} allows {limit.value:g} "
        f"{unit} per {limit.period} (UTC){who}; {_amount(limit.measure, spent)} already billed "
        f"{_WHEN[limit.period]}, and this request needs {_amount(limit.measure, need)} more. "
        f"Nothing was sent, so nothing was billed. The limit resets at {reset} (in "
        f"{_duration(resets_at - now)}); to go on sooner, raise {limit.variable} or unset it."
    )


def _amount(measure: Measure, value: float) -> str:
    if measure == "videos":
        return f"{value:g} video{'s' * (value != 1)}"
    return f"{value:g} {_UNITS[measure]}"


def _duration(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours)
    return " ".join([*parts, f"{minutes} min"] if minutes or not parts else parts)


def _summary(videos: int, seconds: int, spend: float | None, uses: Sequence[LimitUse]) -> str:
    text = f"today: {videos} video{'s' * (videos != 1)}, {seconds} s"
    if spend is not None:
        text += f", {spend:g} spent"
    if uses:
        text += "; limits: " + ", ".join(_use(u) for u in uses)
    return text


def _use(use: LimitUse) -> str:
    measure, period, per_owner = LIMIT_VARIABLES[use.variable]
    who = " (this token)" if per_owner else ""
    return f"{use.spent:g} of {use.limit:g} {_UNITS[measure]} {_WHEN[period]}{who}"


# -- videogen usage ------------------------------------------------------------------------------


class UsageRow(BaseModel):
    """Billed videos of one UTC day, provider, mode and owner."""

    day: str = Field(description="UTC date, YYYY-MM-DD.")
    provider: str
    mode: str
    owner: str | None = Field(None, description="Owner id (HTTP token hash); null: local.")
    videos: int
    seconds: int = Field(description="Requested provider clip seconds.")
    spend: float | None = Field(None, description="Seconds times VIDEOGEN_PRICES, if set.")


class UsageReport(BaseModel):
    """What the ledger counts as billed over the last ``days`` UTC days, newest first."""

    days: int
    since: float = Field(description="Unix time the first day counted began (UTC).")
    sandbox: bool = Field(description="True: the sandbox's tasks (not billed by anyone).")
    videos: int
    seconds: int
    spend: float | None = None
    rows: list[UsageRow] = Field(default_factory=list)
    limits: dict[str, float] = Field(
        default_factory=dict, description="The VIDEOGEN_LIMIT_* settings in force."
    )


def usage_since(now: float, days: int) -> float:
    """Start of the UTC day ``days - 1`` days before today (``days`` = 1: today)."""
    return period_start(now, "day") - (days - 1) * 86_400


def ledger_usage(
    ledger: Ledger | None,
    policy: Policy,
    *,
    now: float,
    days: int,
    sandbox: bool,
    owner: str | None = None,
) -> UsageReport:
    """The usage report of ``ledger`` (None: no ledger yet, nothing billed); ``owner`` (when
    given) counts that owner's tasks alone."""
    since = usage_since(now, days)
    billed = [] if ledger is None else ledger.billed_since(since, sandbox=sandbox, owner=owner)
    return usage_report(billed, policy, now=now, days=days, sandbox=sandbox)


def usage_report(
    billed: Iterable[Billed], policy: Policy, *, now: float, days: int, sandbox: bool
) -> UsageReport:
    groups: dict[tuple[str, str, str, str | None], list[Billed]] = {}
    for b in billed:
        day = datetime.fromtimestamp(b.created_at, UTC).strftime("%Y-%m-%d")
        groups.setdefault((day, b.provider, b.mode, b.owner), []).append(b)
    priced = policy.prices is not None
    rows = [
        UsageRow(
            day=day,
            provider=provider,
            mode=mode,
            owner=owner,
            videos=len(items),
            seconds=sum(b.seconds for b in items),
            spend=round(_spend(items, policy), 4) if priced else None,
        )
        for (day, provider, mode, owner), items in groups.items()
    ]
    rows.sort(key=lambda r: (r.day, r.provider, r.mode, r.owner or ""))
    rows.sort(key=lambda r: r.day, reverse=True)
    return UsageReport(
        days=days,
        since=usage_since(now, days),
        sandbox=sandbox,
        videos=sum(r.videos for r in rows),
        seconds=sum(r.seconds for r in rows),
        spend=round(sum(r.spend or 0.0 for r in rows), 4) if priced else None,
        rows=rows,
        limits={lim.variable: lim.value for lim in policy.limits},
    )
