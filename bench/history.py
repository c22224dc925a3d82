"""A full-history first run per exchange against the simulator, next to the rate-limit floor.

Every exchange is fetched at once (as `lsr run` does), each series walked from its listing (or
the exchange's reach) to now with the exchange's own paging, for a sample of coins; windows of
the simulator's and the client's rate limits are scaled, so the wall time measures the pipeline
and the simulator, not the waiting. The whole universe's requests are extrapolated from the
sample (every request belongs to one coin), and the floor is what those requests need at the
real limits: the busiest rate-limit bucket's (ceil(requests / allowed per window) - 1) windows.
A second pass counts the requests for one year of 1d rows per coin.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pipelines.backfill import Bounds, FetchPlan, Needs, plan_fetch
from pipelines.config import PERIODS
from pipelines.exchanges import CONNECTORS, EXCHANGES, binance_archive, connector
from pipelines.http import RateLimit
from pipelines.ingest import PartitionFetch, Planner, Task, fetch_partition, series_key
from pipelines.partitions import FIRST_DAY
from pipelines.resources import ExchangeAccess
from pipelines.simulator import SimulatorProcess
from pipelines.universe import Universe, load_universe

# Old and new listings, a multiplier contract: what makes one coin's history cost more than
# another's.
SAMPLE = ("BTC", "ETH", "SOL", "DOGE", "PEPE", "SUI")
YEAR = 365


@dataclass(frozen=True)
class HistoryFigures:
    exchange: str
    seconds: float  # measured, sample coins, scaled windows
    requests: int  # measured, sample coins
    rows: int
    first_day: date | None  # oldest day fetched with rows
    universe_requests: int  # extrapolated to the universe
    floor_seconds: float  # the universe's requests at the real limits
    busiest_bucket: str
    year_1d_requests_per_coin: float


def _limits(exchange: str) -> Mapping[str, RateLimit]:
    limits = dict(CONNECTORS[exchange].profile().limits)
    if exchange == "binance":  # the archive is another host with its own (polite) limit
        limits.update(binance_archive.LIMITS)
    return limits


def _floor(exchange: str, per_bucket: Mapping[str, float]) -> tuple[float, str]:
    limits = _limits(exchange)
    worst = (0.0, "")
    for bucket, n in per_bucket.items():
        limit = limits[bucket.split(":", 1)[0]]
        worst = max(worst, (max(math.ceil(n / limit.requests) - 1, 0) * limit.seconds, bucket))
    return worst


def _planner(exchange: str, first: date, now: datetime) -> Planner:
    """Every series from `first` (or its listing, or the exchange's reach) to now."""

    def plan(tasks: list[Task], listed: dict[str, date | None]) -> FetchPlan:
        needs = Needs(listed=listed, depth_days={}, reach=connector(exchange).reach, now=now)
        series = sorted({series_key(t) for t in tasks}, key=str)
        return plan_fetch(now.date(), series, needs, Bounds(first, now.date()), lambda *_: set())

    return plan


async def _fetch_all(
    sample: Universe, periods: tuple[str, ...], first: date, access: ExchangeAccess
) -> dict[str, tuple[float, PartitionFetch]]:
    now = datetime.now(UTC)

    async def one(exchange: str) -> tuple[str, tuple[float, PartitionFetch]]:
        start = time.perf_counter()
        fetched = await fetch_partition(
            exchange,
            now.date(),
            universe=sample,
            periods=periods,
            now=now,
            client=access.client(),
            planner=_planner(exchange, first, now),
        )
        return exchange, (time.perf_counter() - start, fetched)

    return dict(await asyncio.gather(*(one(name) for name in EXCHANGES)))


def _first_day(fetched: PartitionFetch) -> date | None:
    """The oldest day with an L/S row."""
    return None if fetched.ls.empty else fetched.ls["ts"].min().date()


def _rows(fetched: PartitionFetch) -> int:
    return len(fetched.ls) + len(fetched.klines) + len(fetched.open_interest)


def run(scale: float, coins: tuple[str, ...] = SAMPLE) -> list[HistoryFigures]:
    universe = load_universe()
    sample = Universe(coins=tuple(c for c in coins if c in universe.coins), alt_exclusions=())
    factor = len(universe.coins) / len(sample.coins)
    today = datetime.now(UTC).date()
    with SimulatorProcess(rate_limit_scale=scale) as sim:
        access = ExchangeAccess.at_simulator(sim.base_urls, scale)
        full = asyncio.run(_fetch_all(sample, PERIODS, date.fromisoformat(FIRST_DAY), access))
        year = asyncio.run(_fetch_all(sample, ("1d",), today - timedelta(YEAR - 1), access))
    figures = []
    for exchange, (seconds, fetched) in full.items():
        stats = fetched.http_stats
        per_bucket = {b: n * factor for b, n in stats.get("per_bucket", {}).items()}
        floor, bucket = _floor(exchange, per_bucket)
        figures.append(
            HistoryFigures(
                exchange=exchange,
                seconds=seconds,
                requests=stats.get("requests", 0),
                rows=_rows(fetched),
                first_day=_first_day(fetched),
                universe_requests=round(stats.get("requests", 0) * factor),
                floor_seconds=floor,
                busiest_bucket=bucket,
                year_1d_requests_per_coin=year[exchange][1].http_stats.get("requests", 0)
                / len(sample.coins),
            )
        )
    return figures


def _datasets(exchange: str) -> int:
    """The L/S kinds, klines and open interest: each its own series per coin."""
    return len(CONNECTORS[exchange].METRICS) + 2


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def report(figures: list[HistoryFigures], scale: float, coins: tuple[str, ...] = SAMPLE) -> str:
    n_universe = len(load_universe().coins)
    lines = [
        f"Full-history first run: periods {','.join(PERIODS)}, every dataset, from {FIRST_DAY} "
        f"or each series' listing/reach; measured on {len(coins)} coins "
        f"({', '.join(coins)}) at rate-limit windows x{scale}, requests extrapolated to the "
        f"universe's {n_universe} coins; the floor is those requests at the real limits",
        f"{'exchange':<9}{'first day':>11}{'rows':>10}{'requests':>9}{'wall s':>8}  "
        f"{'universe requests':>17}  {'floor at real limits':>20}  busiest bucket  "
        f"1y of 1d: requests per coin (per coin and dataset)",
    ]
    for f in figures:
        lines.append(
            f"{f.exchange:<9}{f.first_day!s:>11}{f.rows:>10}{f.requests:>9}{f.seconds:>8.1f}  "
            f"{f.universe_requests:>17}  {_duration(f.floor_seconds):>20}  "
            f"{f.busiest_bucket or '-':<14}  {f.year_1d_requests_per_coin:.1f} "
            f"({f.year_1d_requests_per_coin / _datasets(f.exchange):.1f})"
        )
    return "\n".join(lines)
