"""Recomputing every derived table over a year of 1h/4h/1d data, 50 coins x 6 exchanges.

The year is generated in DuckDB SQL (random-walk-like shares, prices and open interest for every
kind each exchange publishes): fetching a year through the simulator would measure the simulator.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipelines.analytics import DERIVED_TABLES, refresh
from pipelines.exchanges import CONNECTORS
from pipelines.universe import load_universe
from pipelines.warehouse import connect

PERIOD_HOURS = {"1h": 1, "4h": 4, "1d": 24}


@dataclass
class DeriveFigures:
    ls_rows: int
    build_seconds: float
    seconds: dict[str, float]
    rows: dict[str, int]


def _series() -> pd.DataFrame:
    """exchange x coin x metric x period to generate (only kinds the exchange publishes)."""
    return pd.DataFrame(
        [
            {"exchange": ex, "coin": coin, "metric": metric, "period": period,
             "hours": hours, "seed": zlib.crc32(f"{ex}{coin}{metric}".encode()) % 1000}
            for ex, conn in CONNECTORS.items()
            for coin in load_universe().coins
            for metric in conn.METRICS
            for period, hours in PERIOD_HOURS.items()
        ]
    )  # fmt: skip


def build(path: Path, days: int = 365) -> float:
    """Write the year into a fresh warehouse at `path`; return the seconds it took."""
    start = time.perf_counter()
    end = datetime.now(UTC).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    with connect(path) as conn:
        conn.register("series", _series())
        conn.execute(
            """
            CREATE TEMP TABLE grid AS
            SELECT s.*, t.ts,
                   0.5 + 0.12 * sin(epoch(t.ts) / 86400 / (3 + s.seed % 7) + s.seed)
                       + 0.03 * (random() - 0.5) AS long_share
            FROM series s,
                 LATERAL (SELECT unnest(range(
                     date_trunc('day', $end - to_days($days::INTEGER)), $end,
                     to_hours(s.hours::INTEGER))) AS ts) t
            """,
            {"end": end, "days": days},
        )
        conn.execute(
            """
            INSERT INTO ls_ratio (exchange, coin, instrument, metric, period, ts, long_share,
                                  short_share, ratio, source_ratio, fetched_at, source_ts)
            SELECT exchange, coin, coin || 'USDT', metric, period, ts, long_share,
                   1 - long_share, long_share / (1 - long_share), NULL, $end,
                   epoch_ms(ts)
            FROM grid
            """,
            {"end": end},
        )
        conn.execute(
            """
            INSERT INTO instruments
            SELECT DISTINCT exchange, coin || 'USDT', coin, coin, 1, NULL, true, $end, $end
            FROM series
            """,
            {"end": end},
        )
        conn.execute(
            """
            CREATE TEMP TABLE prices AS
            SELECT DISTINCT exchange, coin, period, ts,
                   100 * exp(0.2 * sin(epoch(ts) / 86400 / 11 + hash(coin) % 7)) AS close
            FROM grid
            """
        )
        conn.execute(
            """
            INSERT INTO klines (exchange, coin, instrument, period, ts, open, high, low, close,
                                volume, quote_volume, taker_buy_volume, fetched_at)
            SELECT exchange, coin, coin || 'USDT', period, ts, close, close * 1.01,
                   close * 0.99, close, 1000, 1000 * close,
                   CASE WHEN exchange = 'binance' THEN 400 + 200 * random() END, $end
            FROM prices
            """,
            {"end": end},
        )
        conn.execute(
            """
            INSERT INTO open_interest (exchange, coin, instrument, period, ts, open_interest,
                                       open_interest_value, fetched_at)
            SELECT exchange, coin, coin || 'USDT', period, ts, 1e6, 1e6 * close, $end
            FROM prices
            """,
            {"end": end},
        )
    return time.perf_counter() - start


def run(path: Path) -> DeriveFigures:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    build_seconds = build(path)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    with connect(path) as conn:
        ls_rows = int(conn.execute("SELECT count(*) FROM ls_ratio").fetchall()[0][0])
        for table in DERIVED_TABLES:
            start = time.perf_counter()
            rows[table] = refresh(conn, table, load_universe())
            seconds[table] = time.perf_counter() - start
    return DeriveFigures(ls_rows, build_seconds, seconds, rows)


def report(figures: DeriveFigures) -> str:
    lines = [
        f"Derived tables over a generated year (1h/4h/1d, 50 coins, 6 exchanges, every kind "
        f"each publishes): {figures.ls_rows:,} ls_ratio rows, built in "
        f"{figures.build_seconds:.0f} s",
    ]
    lines += [
        f"  {table:<16}{figures.rows[table]:>12,} rows {seconds:7.1f} s"
        for table, seconds in figures.seconds.items()
    ]
    lines.append(f"  all derived tables: {sum(figures.seconds.values()):.1f} s")
    return "\n".join(lines)
