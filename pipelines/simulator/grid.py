"""Bucket grids (fixed steps, Monday weeks, calendar months) and the row window a request selects.

Every exchange module describes its periods as `Grid`s and asks `window` which bucket starts a
request covers; only the direction and the limits differ between exchanges, and those are data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
_MONDAY = 4 * DAY  # 1970-01-01 was a Thursday; exchanges start weeks on Monday 00:00 UTC


def ms_of(iso_date: str) -> int:
    """Epoch ms of a UTC date or datetime written in ISO form."""
    parsed = datetime.fromisoformat(iso_date)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _month_start(t_ms: int, months_ahead: int = 0) -> int:
    moment = datetime.fromtimestamp(t_ms / 1000, UTC)
    index = moment.year * 12 + moment.month - 1 + months_ahead
    return int(datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True)
class Grid:
    """Bucket starts on a UTC grid: `step` ms apart from `offset`, or calendar months if step=0."""

    step: int
    offset: int = 0

    def floor(self, t_ms: int) -> int:
        if self.step == 0:
            return _month_start(t_ms)
        return t_ms - (t_ms - self.offset) % self.step

    def next(self, start: int) -> int:
        return _month_start(start, 1) if self.step == 0 else start + self.step

    def prev(self, start: int) -> int:
        return _month_start(start, -1) if self.step == 0 else start - self.step

    def ceil(self, t_ms: int) -> int:
        start = self.floor(t_ms)
        return start if start == t_ms else self.next(start)

    def length(self, start: int) -> int:
        return self.next(start) - start


def every(step_ms: int) -> Grid:
    return Grid(step_ms)


WEEKLY = Grid(WEEK, _MONDAY)
MONTHLY = Grid(0)


def window(
    grid: Grid,
    *,
    first: int,
    last: int,
    start: int | None,
    end: int | None,
    limit: int,
    oldest_first: bool,
) -> list[int]:
    """Bucket starts in [start, end] that the exchange has (first..last), ascending.

    At most `limit` of them: the oldest ones when `oldest_first` and a start was sent (Binance
    walks forward from startTime), otherwise the newest ones (most recent data, or paging back).
    """
    lo = grid.ceil(max(first, start) if start is not None else first)
    hi = grid.floor(min(last, end) if end is not None else last)
    if limit <= 0 or lo > hi:
        return []
    out: list[int] = []
    if oldest_first and start is not None:
        t = lo
        while t <= hi and len(out) < limit:
            out.append(t)
            t = grid.next(t)
        return out
    t = hi
    while t >= lo and len(out) < limit:
        out.append(t)
        t = grid.prev(t)
    out.reverse()
    return out


def quarter_expiries(now_ms: int, count: int = 2) -> list[int]:
    """Delivery times (08:00 UTC, last Friday of Mar/Jun/Sep/Dec) of the next quarterlies."""
    out: list[int] = []
    month = _month_start(now_ms)
    while len(out) < count:
        moment = datetime.fromtimestamp(month / 1000, UTC)
        if moment.month % 3 == 0:
            expiry = _last_friday_8am(month)
            if expiry > now_ms:
                out.append(expiry)
        month = _month_start(month, 1)
    return out


def _last_friday_8am(month_ms: int) -> int:
    day = _month_start(month_ms, 1) - DAY
    while datetime.fromtimestamp(day / 1000, UTC).weekday() != 4:
        day -= DAY
    return day + 8 * HOUR
