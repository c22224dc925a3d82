"""Fetch one day x exchange partition: every coin, metric and period, plus klines and OI.

No database connection is open while fetching (the DuckDB file has one writer at a time); the
result is a plain `PartitionFetch` that `pipelines.warehouse.write_partition` stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from pipelines.backfill import FetchPlan, SeriesKey
from pipelines.config import FLOW_LOWER_PERIOD
from pipelines.errors import (
    DataUnavailable,
    ExchangeBanned,
    ExchangeError,
    PayloadError,
    RetryableError,
)
from pipelines.exchanges import connector
from pipelines.exchanges.base import (
    DERIVED_FROM,
    KLINE_COLUMNS,
    LS_COLUMNS,
    OI_COLUMNS,
    SOURCE,
    Connector,
    Window,
    keep_inside,
    reachable,
    with_source,
)
from pipelines.http import HttpClient, RawResponse
from pipelines.universe import Listing, Universe, resolve

log = logging.getLogger(__name__)

KLINES = "klines"
OPEN_INTEREST = "open_interest"
# Pauses (seconds at real limits) before fetching again what still failed with a transient
# error once the client's own retries were spent: an exchange that answers "busy" several
# times in a row gets two more chances, well apart, before the partition is marked failed.
RETRY_ROUNDS: tuple[float, ...] = (5.0, 20.0)


@dataclass(frozen=True)
class Task:
    """One (dataset, coin, period) to fetch; a dataset is a metric kind, klines or OI."""

    dataset: str
    coin: str
    instrument: str
    period: str


@dataclass(frozen=True)
class Outcome:
    task: Task
    status: str  # ok | empty | unavailable | failed
    rows: int = 0
    detail: str | None = None
    endpoint: str | None = None
    raw: str | None = None  # the body a parser could not read (the landing zone has them all)
    window: Window | None = None  # what was asked of the exchange (the reachable part)
    transient: bool = False  # failed on something worth another try (busy, 5xx, timeout)
    rows_by_day: tuple[tuple[date, int], ...] = ()  # rows fetched per UTC day of the window
    # Days of the window a source said it has nothing for, and why: (day, status, detail),
    # e.g. an archive file refused for its checksum (`failed`: fetched again next run).
    day_problems: tuple[tuple[date, str, str], ...] = ()


@dataclass
class PartitionFetch:
    exchange: str
    day: date
    window: Window
    listings: list[Listing]
    mapping: dict[str, str]  # coin -> instrument
    ls: pd.DataFrame
    klines: pd.DataFrame
    open_interest: pd.DataFrame
    outcomes: list[Outcome]
    responses: list[RawResponse]
    out_of_window_rows: int
    http_stats: dict[str, Any] = field(default_factory=dict)
    banned: str | None = None
    # Whole files refused before parsing (an archive zip whose checksum does not match):
    # (instrument, reason) -> the raw evidence (the published checksum).
    rejected_files: dict[tuple[str, str], str] = field(default_factory=dict)
    # Every day this fetch covered: the partition's own and the incomplete days around it.
    days: list[date] = field(default_factory=list)
    # What the fetch was asked to do, and its clock: replaying the landed responses under
    # them gives the same rows (pipelines/landing.py).
    plan: FetchPlan | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def covered_days(self) -> list[date]:
        return self.days or [self.day]

    @property
    def simulated(self) -> bool:
        return any(r.simulated for r in self.responses)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def unavailable(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "unavailable"]


def asset_of(dataset: str) -> str:
    """The Dagster asset (and table) a fetched dataset lands in: klines, open_interest, or
    ls_ratio (every metric kind)."""
    return dataset if dataset in (KLINES, OPEN_INTEREST) else "ls_ratio"


def day_window(day: date, now: datetime) -> Window | None:
    """The UTC day, cut at `now` for today; None for a day that has not begun."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = min(start + timedelta(days=1), now)
    return Window.of(start, end) if end > start else None


def _describe_reach(reach: timedelta) -> str:
    return f"{reach.days} days" if reach.days else f"{reach.total_seconds() / 3600:g} hours"


# Given the tasks and each coin's listing day, the days to fetch and where each task starts
# (pipelines.backfill.plan_fetch, bound to a warehouse and a run's bounds).
Planner = Callable[[list[Task], dict[str, date | None]], FetchPlan]


def one_day(day: date) -> Planner:
    """Fetch `day` alone, every task (what a fetch without a planner does)."""
    return lambda tasks, _listed: FetchPlan(
        day, day, day, {SeriesKey(t.dataset, t.coin, t.period): day for t in tasks}
    )


def series_key(task: Task) -> SeriesKey:
    return SeriesKey(task.dataset, task.coin, task.period)


def plan(conn: Connector, mapping: dict[str, str], periods: tuple[str, ...]) -> list[Task]:
    """Every dataset at every period for every coin, plus the candles of candle flow's lower
    timeframe where the exchange's candles carry no taker buys."""
    datasets = (*conn.METRICS, KLINES, OPEN_INTEREST)
    flow_lower = (
        () if conn.TAKER_BUY_CANDLES or FLOW_LOWER_PERIOD in periods else (FLOW_LOWER_PERIOD,)
    )
    return [
        Task(dataset, coin, instrument, period)
        for coin, instrument in mapping.items()
        for dataset in datasets
        for period in periods
    ] + [
        Task(KLINES, coin, instrument, period)
        for coin, instrument in mapping.items()
        for period in flow_lower
    ]


async def fetch_partition(
    exchange: str,
    day: date,
    *,
    universe: Universe,
    periods: tuple[str, ...],
    client: HttpClient,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    planner: Planner | None = None,
) -> PartitionFetch:
    """Fetch everything configured for one exchange and one UTC day, or, with a `planner`,
    the stretch of days it chooses around that day, each series walked once, with `client`
    (not yet entered: it is opened and closed here).

    With a client that keeps a ledger, the fetch waits for any other fetch from the same
    exchange on this host and counts the requests that one made (exchanges limit per IP, not
    per run).
    """
    conn = connector(exchange)
    now = now or datetime.now(UTC)
    if day_window(day, now) is None:
        raise ValueError(f"{exchange} {day}: the day has not begun yet (now {now:%Y-%m-%d %H:%M})")
    ledger = client.ledger
    exclusive = (
        ledger.exclusive(exchange, client.base_url(conn.profile()))
        if ledger
        else contextlib.nullcontext()
    )
    async with exclusive, client:
        listings = await conn.fetch_instruments(client)
        mapping = resolve(exchange, listings, universe)
        planned = plan(conn, mapping, periods)
        chosen = (planner or one_day(day))(planned, _listing_days(listings))
        tasks = [t for t in planned if series_key(t) in chosen.starts]
        window = _stretch_window(chosen, now)
        windows = {t: Window(_midnight(chosen.starts[series_key(t)]), window.end_ms) for t in tasks}
        runner = _Runner(conn, client, windows, now, len(tasks), progress)
        results = await asyncio.gather(*(runner.run(task) for task in tasks))
        results = await _retry_transient(runner, results, client.rate_limit_scale)
        frames = {
            table: [f for f, o in results if o.task.dataset in datasets and f is not None]
            for table, datasets in _datasets_by_table(conn).items()
        }
        return PartitionFetch(
            exchange=exchange,
            day=day,
            window=window,
            listings=listings,
            mapping=mapping,
            ls=with_source(_concat(frames["ls"], [*LS_COLUMNS, SOURCE])),
            klines=_concat(frames[KLINES], KLINE_COLUMNS),
            open_interest=with_source(_concat(frames[OPEN_INTEREST], [*OI_COLUMNS, SOURCE])),
            outcomes=[o for _, o in results],
            responses=list(client.responses),
            out_of_window_rows=runner.out_of_window,
            http_stats=_totals(client.stats()),
            banned=str(runner.banned) if runner.banned else None,
            rejected_files=runner.rejected_files,
            days=chosen.days,
            plan=chosen,
            now=now,
        )


def _midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _stretch_window(chosen: FetchPlan, now: datetime) -> Window:
    return Window(
        _midnight(chosen.first),
        min(_midnight(chosen.last + timedelta(days=1)), int(now.timestamp() * 1000)),
    )


def _listing_days(listings: list[Listing]) -> dict[str, date | None]:
    """Each coin's first listing day, where the exchange says (its plain contract's, else the
    earliest of its contracts)."""
    days: dict[str, date | None] = {}
    for listing in listings:
        listed = (
            datetime.fromtimestamp(listing.onboard_ms / 1000, UTC).date()
            if listing.onboard_ms
            else None
        )
        known = days.get(listing.coin)
        days[listing.coin] = listed if known is None else min(known, listed or known)
    return days


async def _retry_transient(
    runner: _Runner, results: list[tuple[pd.DataFrame | None, Outcome]], scale: float
) -> list[tuple[pd.DataFrame | None, Outcome]]:
    """Fetch again, after a pause, the tasks that failed on a transient error."""
    results = list(results)
    for pause in RETRY_ROUNDS:
        again = [i for i, (_, outcome) in enumerate(results) if outcome.transient]
        if not again or runner.banned is not None:
            break
        log.warning(
            "%s: fetching %d failed tasks again in %g s",
            runner.conn.NAME,
            len(again),
            pause * scale,
        )
        await asyncio.sleep(pause * scale)
        redone = await asyncio.gather(*(runner.attempt(results[i][1].task) for i in again))
        for i, result in zip(again, redone, strict=True):
            results[i] = result
    return results


def _totals(stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One exchange's requests over every host it was reached on (API and archive)."""
    totals: dict[str, Any] = {"requests": 0, "retries": 0, "sent": 0, "per_bucket": {}}
    for host in stats.values():
        for name in ("requests", "retries", "sent"):
            totals[name] += host[name]
        totals["per_bucket"].update(host["per_bucket"])
    return totals


def _datasets_by_table(conn: Connector) -> dict[str, tuple[str, ...]]:
    return {"ls": conn.METRICS, KLINES: (KLINES,), OPEN_INTEREST: (OPEN_INTEREST,)}


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """One frame with exactly `columns` (plus `derived_from`, NULL where a connector set none)."""
    columns = [*columns, DERIVED_FROM] if columns and DERIVED_FROM not in columns else columns
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    merged = pd.concat(frames, ignore_index=True)
    return merged.reindex(columns=columns) if columns else merged


class _Runner:
    """Runs tasks against one exchange, turning each into a frame and an outcome."""

    def __init__(
        self,
        conn: Connector,
        client: HttpClient,
        windows: dict[Task, Window],
        now: datetime,
        total: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.conn = conn
        self.client = client
        self.windows = windows
        self.now = now
        self.total = total
        self.done = 0
        self.progress = progress
        self.out_of_window = 0
        self.banned: ExchangeBanned | None = None
        self.rejected_files: dict[tuple[str, str], str] = {}

    def _steps(self, task: Task, w: Window) -> tuple[Callable[[], Awaitable[list[Any]]], Any]:
        c, t = self.conn, task
        if t.dataset == KLINES:
            return (
                lambda: c.fetch_klines(self.client, t.instrument, t.period, w),
                lambda p: c.parse_klines(p, instrument=t.instrument, period=t.period),
            )
        if t.dataset == OPEN_INTEREST:
            return (
                lambda: c.fetch_open_interest(self.client, t.instrument, t.period, w),
                lambda p: c.parse_open_interest(p, instrument=t.instrument, period=t.period),
            )
        return (
            lambda: c.fetch_ls(self.client, t.instrument, t.dataset, t.period, w),
            lambda p: c.parse(t.dataset, p, instrument=t.instrument, period=t.period),
        )

    async def run(self, task: Task) -> tuple[pd.DataFrame | None, Outcome]:
        try:
            return await self.attempt(task)
        finally:
            self.done += 1
            if self.progress:
                self.progress(self.done, self.total)

    async def attempt(self, task: Task) -> tuple[pd.DataFrame | None, Outcome]:
        reach = self.conn.reach(task.dataset, task.period)
        window = reachable(self.windows[task], reach, self.now, task.period)
        if window is None:
            assert reach is not None  # only a limited reach leaves nothing to fetch
            reason = (
                f"{self.conn.NAME} serves {task.dataset} {task.period} for the last "
                f"{_describe_reach(reach)} only"
            )
            return None, Outcome(task, "unavailable", detail=reason)
        outcome = await self._fetch(task, window)
        return outcome[0], replace(outcome[1], window=window)

    async def _fetch(self, task: Task, window: Window) -> tuple[pd.DataFrame | None, Outcome]:
        fetch, parse = self._steps(task, window)
        if self.banned is not None:
            return None, Outcome(task, "failed", detail=f"not fetched: {self.banned}")
        pages: list[Any] = []
        try:
            pages = await fetch()
            frame = _concat([parse(page) for page in pages], [])
        except PayloadError as error:
            log.warning("%s", error)
            raw = json.dumps(pages)[:4000]
            return None, Outcome(
                task, "failed", detail=str(error), endpoint=error.endpoint, raw=raw
            )
        except DataUnavailable as error:
            return None, Outcome(task, "unavailable", detail=str(error), endpoint=error.endpoint)
        except ExchangeBanned as error:
            self.banned = error
            return None, Outcome(task, "failed", detail=str(error), endpoint=error.endpoint)
        except RetryableError as error:
            log.warning("%s", error)
            return None, Outcome(
                task, "failed", detail=str(error), endpoint=error.endpoint, transient=True
            )
        except ExchangeError as error:
            log.warning("%s", error)
            return None, Outcome(task, "failed", detail=str(error), endpoint=error.endpoint)
        missing = [reason for page in pages for reason in getattr(page, "missing", ())]
        for page in pages:
            for instrument, reason, raw in getattr(page, "rejected", ()):
                self.rejected_files[(instrument, reason)] = raw
        if frame.empty:
            if missing:  # the exchange said why (an archive day not published, refused)
                return None, Outcome(task, "unavailable", detail="; ".join(missing)[:500])
            return None, Outcome(task, "empty")
        frame, outside = keep_inside(frame, window)
        self.out_of_window += outside
        if frame.empty:
            return None, Outcome(
                task,
                "unavailable",
                detail="the exchange returned no rows inside the requested window",
            )
        per_day = frame["ts"].dt.date.value_counts()
        problems = tuple(p for page in pages for p in getattr(page, "day_problems", ()))
        return frame, Outcome(
            task,
            "ok",
            rows=len(frame),
            rows_by_day=tuple(sorted(per_day.items())),
            day_problems=problems,
        )
