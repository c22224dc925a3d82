"""Which days a partition run fetches: its own day and the incomplete days around it.

A day x exchange partition stays the ledger data engineers see, but fetching day by day would
ask a latest-window exchange for the same window once per day and cost one request per coin and
day where the exchange pages a year at once. So a run for day D fetches the *stretch*: the
longest run of consecutive incomplete days that contains D, inside the run's bounds (`--days`,
`--since`, or the days of the Dagster backfill that launched it). Each series (coin, dataset,
period) is then walked once, from its first incomplete day of the stretch to its end, with the
exchange's own paging. The other runs of the same backfill find their days complete and fetch
nothing. A run without bounds (the hourly schedule, one partition materialized from the UI)
fetches its own day.

A day is complete for one series when its last fetch ended after the day did and was ok, empty
or unavailable (`partition_log`); days before the coin's listing, beyond the period's configured
depth or beyond the exchange's reach need no fetch at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Bounds:
    """The days a run may fetch: from `first` to `last`, and only `days` when given."""

    first: date
    last: date
    days: frozenset[date] | None = None

    def allows(self, day: date) -> bool:
        return self.first <= day <= self.last and (self.days is None or day in self.days)


@dataclass(frozen=True)
class SeriesKey:
    dataset: str
    coin: str
    period: str


@dataclass(frozen=True)
class FetchPlan:
    """The run's stretch of days, and the day each series starts fetching (absent: complete)."""

    day: date
    first: date
    last: date
    starts: Mapping[SeriesKey, date] = field(default_factory=dict)

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


@dataclass(frozen=True)
class Needs:
    """What decides whether a series needs a day at all."""

    listed: Mapping[str, date | None]  # coin -> listing day, where the exchange says
    depth_days: Mapping[str, int | None]  # period -> configured depth (None: full reach)
    reach: Callable[[str, str], timedelta | None]  # (dataset, period) -> the exchange's reach
    now: datetime

    def needed(self, series: SeriesKey, day: date) -> bool:
        listed = self.listed.get(series.coin)
        depth = self.depth_days.get(series.period)
        today = self.now.date()
        return (listed is None or day >= listed) and (
            depth is None or day > today - timedelta(depth)
        )

    def reachable(self, series: SeriesKey, day: date) -> bool:
        reach = self.reach(series.dataset, series.period)
        end = datetime(day.year, day.month, day.day, tzinfo=UTC) + ONE_DAY
        return reach is None or end > self.now - reach


# (dataset, coin, period, day) whose last fetch covered the whole day, or could not
Done = set[tuple[str, str, str, date]]


def plan_fetch(
    day: date,
    series: list[SeriesKey],
    needs: Needs,
    bounds: Bounds | None,
    load_done: Callable[[date, date], Done],
) -> FetchPlan:
    """The stretch around `day` and where each series starts.

    A run on its own (no bounds: the hourly schedule, a partition materialized from the UI)
    fetches its day, all of it, as materializing that partition asks. Within bounds (a Dagster
    backfill, `lsr run`) the stretch spreads over the incomplete days around it, and a day that
    is already complete is left alone.
    """
    if bounds is None:
        return FetchPlan(day, day, day, {s: day for s in series if needs.needed(s, day)})
    today = needs.now.date()
    done = load_done(bounds.first, bounds.last)

    def complete(d: date) -> bool:
        return d < today and all(
            (s.dataset, s.coin, s.period, d) in done
            for s in series
            if needs.needed(s, d) and needs.reachable(s, d)
        )

    if complete(day):
        return FetchPlan(day, day, day)
    first = last = day
    while bounds.allows(first - ONE_DAY) and not complete(first - ONE_DAY):
        first -= ONE_DAY
    while last < today and bounds.allows(last + ONE_DAY) and not complete(last + ONE_DAY):
        last += ONE_DAY
    plan = FetchPlan(day, first, last)
    return FetchPlan(day, first, last, _starts(plan, series, needs, done))


def _starts(
    plan: FetchPlan, series: list[SeriesKey], needs: Needs, done: Done
) -> dict[SeriesKey, date]:
    starts: dict[SeriesKey, date] = {}
    today = needs.now.date()
    for s in series:
        for d in plan.days:
            fetched = d != today and (s.dataset, s.coin, s.period, d) in done
            # A day out of the exchange's reach costs no request (the fetch reports it
            # unavailable); only the run's own day is worth that line in the log.
            worth_asking = needs.reachable(s, d) or d == plan.day
            if needs.needed(s, d) and not fetched and worth_asking:
                starts[s] = d
                break
    return starts


def parse_depth(text: str) -> dict[str, int | None]:
    """`1h=30,4h=120` -> {'1h': 30, '4h': 120}: days back each period is fetched (others: all)."""
    depth: dict[str, int | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        period, _, days = part.partition("=")
        if not days.strip().isdigit() or int(days) < 1:
            raise ValueError(f"depth {part!r} is not PERIOD=DAYS, e.g. 1h=30")
        depth[period.strip()] = int(days)
    return depth
