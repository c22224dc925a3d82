"""What keeping the derived tables current costs, on generated years of 1h/4h/1d data for every
universe coin on the six exchanges (every kind each publishes).

- a full rebuild of one year (`lsr rebuild`), table by table, in a child process so that its
  peak memory is its own;
- the incremental refresh after one new hour is written the way ingestion writes it, on
  warehouses holding 1, 3 and 5 years (it should cost the hour, not the years);
- the derived tables' asset checks over every row of the one-year warehouse, as the
  `check_warehouse` job and the refresh after a rebuild run them;
- rendering every default image from the one-year warehouse;
- the Parquet lake of the one-year warehouse: written in full, then refreshed after the new hour
  (the partitions of the hour's day only);
- 5m configured on the one-year warehouse: 90 days of 5m history taken in, then the refresh
  after one new hour and after twelve hours at once (the windows and look-backs of 5m hold
  twelve times the rows of 1h: what a refresh reads of them shows here first).

The years are generated in DuckDB SQL (random-walk-like shares, prices and open interest) in
time order, as a warehouse fills hour after hour: fetching years through the simulator would
measure the simulator.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
from dagster import build_asset_check_context

from assets.analytics_checks import ANALYTICS_CHECKS
from bench import render
from pipelines.analytics import DERIVED_TABLES, refresh_table
from pipelines.exchanges import CONNECTORS
from pipelines.lake import PART_FILE, refresh_lake
from pipelines.queries import transaction
from pipelines.resources import PipelineSettings
from pipelines.universe import load_universe
from pipelines.warehouse import LS_KEY, PRICE_KEY, connect, log_changes, upsert

PERIOD_MINUTES = {"1h": 60, "4h": 240, "1d": 1440}
YEARS = (1, 3, 5)
# Then 5m is configured (LSR_PERIODS) on the 1-year warehouse: this much 5m history arrives (the
# z-scores' and the zones' look-back: every window full), then an hour, then half a day at once.
FIVE_MINUTE_DAYS = 90
HALF_DAY_HOURS = 12
HOUR = timedelta(hours=1)
# Every warehouse ends at the same hour, so the years differ only in how far back they reach.
END = datetime(2026, 11, 30)


@dataclass
class DeriveFigures:
    ls_rows: dict[int, int] = field(default_factory=dict)  # years -> ls_ratio rows
    build_seconds: dict[int, float] = field(default_factory=dict)
    rebuild_seconds: dict[int, float] = field(default_factory=dict)
    rebuild_tables: dict[str, float] = field(default_factory=dict)  # 1 year, per table
    full_rebuild_peak_rss_mb: float = 0.0
    incremental_seconds: dict[int, float] = field(default_factory=dict)
    incremental_tables: dict[str, float] = field(default_factory=dict)  # 5 years, per table
    render_all_defaults_seconds: float = 0.0
    images: int = 0
    check_seconds: dict[str, float] = field(default_factory=dict)  # 1 year, every row
    lake: LakeFigures | None = None  # of the 1-year warehouse
    five_minute: FiveMinuteFigures | None = None  # of the 1-year warehouse

    def as_json(self) -> dict[str, object]:
        return {
            "full_rebuild_seconds": round(self.rebuild_seconds[1], 2),
            "full_rebuild_peak_rss_mb": round(self.full_rebuild_peak_rss_mb),
            "full_rebuild_table_seconds": {t: round(s, 2) for t, s in self.rebuild_tables.items()},
            "incremental_seconds": {
                str(y): round(s, 3) for y, s in self.incremental_seconds.items()
            },
            "render_all_defaults_seconds": round(self.render_all_defaults_seconds, 2),
            "checks_all_rows_seconds": round(sum(self.check_seconds.values()), 2),
            **(self.lake.as_json() if self.lake else {}),
            **(self.five_minute.as_json() if self.five_minute else {}),
        }


@dataclass
class LakeFigures:
    full_seconds: float = 0.0
    files: int = 0
    megabytes: float = 0.0
    rows: int = 0
    incremental_seconds: float = 0.0
    incremental_partitions: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "lake_full_seconds": round(self.full_seconds, 2),
            "lake_files": self.files,
            "lake_megabytes": round(self.megabytes),
            "lake_incremental_seconds": round(self.incremental_seconds, 3),
            "lake_incremental_partitions": self.incremental_partitions,
        }


@dataclass
class FiveMinuteFigures:
    ls_rows: int = 0  # 5m rows in ls_ratio
    taken_in_seconds: float = 0.0  # the refresh that takes in the FIVE_MINUTE_DAYS of history
    hour_seconds: float = 0.0
    hour_tables: dict[str, float] = field(default_factory=dict)
    half_day_seconds: float = 0.0
    half_day_tables: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "five_minute_ls_rows": self.ls_rows,
            "five_minute_taken_in_seconds": round(self.taken_in_seconds, 2),
            "five_minute_incremental_seconds": {
                "1h": round(self.hour_seconds, 3),
                f"{HALF_DAY_HOURS}h": round(self.half_day_seconds, 3),
            },
        }


def _series(periods: dict[str, int] = PERIOD_MINUTES) -> pd.DataFrame:
    """exchange x coin x metric x period to generate (only kinds the exchange publishes)."""
    return pd.DataFrame(
        [
            {"exchange": ex, "coin": coin, "metric": metric, "period": period,
             "minutes": minutes, "seed": zlib.crc32(f"{ex}{coin}{metric}".encode()) % 1000}
            for ex, conn in CONNECTORS.items()
            for coin in load_universe().coins
            for metric in conn.METRICS
            for period, minutes in periods.items()
        ]
    )  # fmt: skip


# The generated rows of one table for the buckets in [$first, $end), in time order. Shares and
# prices are smooth functions of time per series plus noise, so z-scores and zones move.
_LS_ROWS = """
    SELECT exchange, coin, coin || 'USDT' AS instrument, metric, period, ts,
           long_share, 1 - long_share AS short_share, long_share / (1 - long_share) AS ratio,
           $fetched_at AS fetched_at
    FROM (
        SELECT s.exchange, s.coin, s.metric, s.period, t.ts,
               0.5 + 0.12 * sin(epoch(t.ts) / 86400 / (3 + s.seed % 7) + s.seed)
                   + 0.03 * (random() - 0.5) AS long_share
        FROM series AS s
        JOIN (SELECT unnest(range($first, $end, $step)) AS ts) AS t
          ON epoch(t.ts)::BIGINT % (60 * s.minutes) = 0
    )
    ORDER BY ts
"""
_PRICE_ROWS = """
    SELECT DISTINCT s.exchange, s.coin, s.coin || 'USDT' AS instrument, s.period, t.ts,
           100 * exp(0.2 * sin(epoch(t.ts) / 86400 / 11 + hash(s.coin) % 7)) AS close
    FROM series AS s
    JOIN (SELECT unnest(range($first, $end, $step)) AS ts) AS t
      ON epoch(t.ts)::BIGINT % (60 * s.minutes) = 0
"""
_KLINE_ROWS = f"""
    SELECT exchange, coin, instrument, period, ts, close AS open, close * 1.01 AS high,
           close * 0.99 AS low, close, 1000.0 AS volume, 1000 * close AS quote_volume,
           CASE WHEN exchange = 'binance' THEN 400 + 200 * random() END AS taker_buy_volume,
           $fetched_at AS fetched_at
    FROM ({_PRICE_ROWS}) ORDER BY ts
"""
_OI_ROWS = f"""
    SELECT exchange, coin, instrument, period, ts, 1e6 AS open_interest,
           1e6 * close AS open_interest_value, $fetched_at AS fetched_at
    FROM ({_PRICE_ROWS}) ORDER BY ts
"""
_TABLES = {"ls_ratio": _LS_ROWS, "klines": _KLINE_ROWS, "open_interest": _OI_ROWS}


def build(path: Path, days: int) -> float:
    """Write `days` of history into a fresh warehouse at `path`, a month at a time in time
    order as ingestion fills it; return the seconds it took."""
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    start = time.perf_counter()
    with connect(path) as conn:
        conn.execute("SET memory_limit = '4GB'")  # a generator, not the pipeline: no need to spill
        conn.register("series", _series())
        for first, end in _months(END - timedelta(days=days), END):
            _insert_rows(conn, first, end, fetched_at=END, step=HOUR)
        conn.execute(
            """
            INSERT INTO instruments
            SELECT DISTINCT exchange, coin || 'USDT', coin, coin, 1, NULL, true, $end, $end
            FROM series
            """,
            {"end": END},
        ).fetchall()
    return time.perf_counter() - start


def _months(first: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[first, end) in spans of 30 days, oldest first."""
    starts = pd.date_range(first, end, freq="30D", inclusive="left").to_pydatetime()
    return [(s, min(s + timedelta(days=30), end)) for s in starts]


def _insert_rows(
    conn: duckdb.DuckDBPyConnection,
    first: datetime,
    end: datetime,
    *,
    fetched_at: datetime,
    step: timedelta,
) -> None:
    """The generated rows of the registered `series` in [first, end), inserted as they are: keys
    no row holds yet, so no upsert is needed. `step` divides every period of the series."""
    span = {"first": first, "end": end, "fetched_at": fetched_at, "step": step}
    for table, rows in _TABLES.items():
        conn.execute(f"INSERT INTO {table} BY NAME {rows}", span).fetchall()


def add_hour(path: Path) -> None:
    """The hour after END, written as ingestion writes it: upserts and change notes at once."""
    ingest(path, END, END + HOUR, PERIOD_MINUTES)


def ingest(path: Path, first: datetime, end: datetime, periods: dict[str, int]) -> None:
    """[first, end) of `periods` (minutes each), written as ingestion writes it: upserts and
    change notes in one transaction."""
    step = timedelta(minutes=min(periods.values()))
    span = {"first": first, "end": end, "fetched_at": end, "step": step}
    keys = {"ls_ratio": LS_KEY, "klines": PRICE_KEY, "open_interest": PRICE_KEY}
    with connect(path) as conn:
        conn.register("series", _series(periods))
        frames = {table: conn.execute(rows, span).df() for table, rows in _TABLES.items()}
        with transaction(conn):
            for table, frame in frames.items():
                upsert(conn, table, frame, keys[table])
                log_changes(conn, table, frame)


def refresh(path: Path, *, full: bool = False) -> dict[str, float]:
    """Bring every derived table of the warehouse at `path` up to date, in dependency order, as
    the refresh after an ingestion run does (`full`: rebuild each, as `lsr rebuild` does);
    return the seconds each took."""
    seconds = {}
    universe = load_universe()  # read once, outside the tables' times
    with connect(path) as conn:
        for table in DERIVED_TABLES:
            start = time.perf_counter()
            refresh_table(conn, table, universe, full=full)
            seconds[table] = time.perf_counter() - start
    return seconds


def five_minute(path: Path) -> FiveMinuteFigures:
    """5m configured on the warehouse at `path` (1h/4h/1d up to END + 1 hour, derived tables up
    to date): FIVE_MINUTE_DAYS of 5m history arrive and are taken in, then one new hour of every
    period, then HALF_DAY_HOURS at once (as after the daemon was down: one refresh spans them)."""
    figures = FiveMinuteFigures()
    five = {"5m": 5}
    history_end = END + HOUR
    # Its own stamp: the notes must name the 5m rows, not the hour add_hour stamped END + 1 h.
    stamp = history_end + timedelta(minutes=1)
    with connect(path) as conn:
        conn.execute("SET memory_limit = '4GB'")  # a generator, as in build
        conn.register("series", _series(five))
        for first, end in _months(history_end - timedelta(days=FIVE_MINUTE_DAYS), history_end):
            with transaction(conn):
                _insert_rows(conn, first, end, fetched_at=stamp, step=timedelta(minutes=5))
                written = pd.DataFrame({"fetched_at": [stamp], "ts": [first]})
                for table in _TABLES:
                    log_changes(conn, table, pd.concat([written, written.assign(ts=end)]))
        count = conn.execute("SELECT count(*) FROM ls_ratio WHERE period = '5m'").fetchall()
        figures.ls_rows = int(count[0][0])
    figures.taken_in_seconds = sum(refresh(path).values())
    every = {**PERIOD_MINUTES, **five}
    ingest(path, history_end, history_end + HOUR, every)
    figures.hour_tables = refresh(path)
    figures.hour_seconds = sum(figures.hour_tables.values())
    ingest(path, history_end + HOUR, history_end + (1 + HALF_DAY_HOURS) * HOUR, every)
    figures.half_day_tables = refresh(path)
    figures.half_day_seconds = sum(figures.half_day_tables.values())
    return figures


def check_every_row(path: Path) -> dict[str, float]:
    """Each derived table's asset check over all its rows (called outside a run, a check
    examines every row, as in the check_warehouse job); the seconds each took. A check that
    fails on the generated data is a fault of the code, not a figure."""
    settings = PipelineSettings(warehouse=str(path))
    seconds = {}
    for check in ANALYTICS_CHECKS:
        (key,) = check.check_keys
        start = time.perf_counter()
        result = check(build_asset_check_context(), settings=settings)  # type: ignore[call-arg]
        seconds[key.name] = time.perf_counter() - start
        if not getattr(result, "passed", False):
            raise RuntimeError(f"{key.name} failed on the generated warehouse: {result}")
    return seconds


def rebuild_in_child(path: Path, memory: str | None = None) -> dict[str, float]:
    """`lsr rebuild`'s work in a fresh process; return each table's seconds, in rebuild order
    (its peak memory is the process's own, read by the caller). `memory` overrides DuckDB's
    limit (LSR_DUCKDB_MEMORY)."""
    command = [sys.executable, "-m", "bench.derive", "rebuild", str(path)]
    environment = {**os.environ, **({"LSR_DUCKDB_MEMORY": memory} if memory else {})}
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=environment)
    seconds: dict[str, float] = json.loads(out.stdout)
    return seconds


def write_lake(path: Path, root: Path) -> LakeFigures:
    """The warehouse's whole lake written anew; its size."""
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    results = refresh_lake(path, root, full=True)
    files = list(root.rglob(PART_FILE))
    return LakeFigures(
        full_seconds=time.perf_counter() - start,
        files=len(files),
        megabytes=sum(f.stat().st_size for f in files) / 1e6,
        rows=sum(r.rows_written for r in results),
    )


def refresh_lake_after(path: Path, root: Path, figures: LakeFigures) -> None:
    """The lake's refresh once the derived tables have taken in a new hour."""
    start = time.perf_counter()
    results = refresh_lake(path, root)
    figures.incremental_seconds = time.perf_counter() - start
    figures.incremental_partitions = sum(r.written for r in results)


def run(folder: Path) -> DeriveFigures:
    folder.mkdir(parents=True, exist_ok=True)
    figures = DeriveFigures()
    for years in YEARS:
        path = folder / f"{years}y.duckdb"
        figures.build_seconds[years] = build(path, 365 * years)
        # The 1-year rebuild is the one measured, at the pipeline's memory limit; the longer
        # warehouses only need their derived tables, so they get room not to spill.
        tables = rebuild_in_child(path, None if years == 1 else "8GB")
        figures.rebuild_seconds[years] = sum(tables.values())
        if years == 1:  # the first child: the children's peak is this rebuild's
            figures.rebuild_tables = tables
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            figures.full_rebuild_peak_rss_mb = rss / 1024
            figures.lake = write_lake(path, folder / "lake")
            figures.check_seconds = check_every_row(path)
        add_hour(path)
        with connect(path, read_only=True) as conn:
            figures.ls_rows[years] = int(
                conn.execute("SELECT count(*) FROM ls_ratio").fetchall()[0][0]
            )
        figures.incremental_tables = refresh(path)
        figures.incremental_seconds[years] = sum(figures.incremental_tables.values())
        if figures.lake and years == 1:
            refresh_lake_after(path, folder / "lake", figures.lake)
        if years == 1:
            drawn = render.run(path)
            figures.render_all_defaults_seconds, figures.images = drawn.seconds, drawn.images
            figures.five_minute = five_minute(path)
        for done in folder.glob(f"{years}y.duckdb*"):
            if years != YEARS[-1]:
                done.unlink()
    return figures


def report(figures: DeriveFigures) -> str:
    lines = ["Derived tables on generated years (1h/4h/1d, 50 coins, 6 exchanges):"]
    for years in figures.incremental_seconds:
        lines.append(
            f"  {years} y: {figures.ls_rows[years]:>11,} ls_ratio rows (built in "
            f"{figures.build_seconds[years]:.0f} s); full rebuild "
            f"{figures.rebuild_seconds[years]:6.1f} s{'' if years == 1 else ' (8GB limit)'}; "
            f"one new hour refreshed in "
            f"{figures.incremental_seconds[years]:.2f} s"
        )
    lines.append(
        f"  full rebuild of 1 year: peak memory {figures.full_rebuild_peak_rss_mb:.0f} MB; per "
        f"table: {_slowest_first(figures.rebuild_tables, 1)}"
    )
    lines.append(
        "  one new hour on the last warehouse, per table: "
        + _slowest_first(figures.incremental_tables, 2)
    )
    lines.append(
        f"  asset checks over every row of the 1-year warehouse: "
        f"{sum(figures.check_seconds.values()):.1f} s: " + _slowest_first(figures.check_seconds, 2)
    )
    lines.append(
        f"  rendering all {figures.images} default images of the 1-year warehouse: "
        f"{figures.render_all_defaults_seconds:.1f} s"
    )
    if figures.lake:
        lake = figures.lake
        lines.append(
            f"  Parquet lake of the 1-year warehouse: written in full in {lake.full_seconds:.1f} s "
            f"({lake.rows:,} rows, {lake.files:,} files, {lake.megabytes:,.0f} MB); after the "
            f"new hour {lake.incremental_seconds:.2f} s ({lake.incremental_partitions} "
            "partitions rewritten)"
        )
    if figures.five_minute:
        five = figures.five_minute
        lines += [
            f"  5m configured on the 1-year warehouse: {FIVE_MINUTE_DAYS} days of 5m "
            f"({five.ls_rows:,} ls_ratio rows) taken in by one refresh in "
            f"{five.taken_in_seconds:.1f} s; then",
            f"    one new hour refreshed in {five.hour_seconds:.2f} s: "
            + _slowest_first(five.hour_tables, 2),
            f"    {HALF_DAY_HOURS} hours at once in {five.half_day_seconds:.2f} s: "
            + _slowest_first(five.half_day_tables, 2),
        ]
    return "\n".join(lines)


def _slowest_first(seconds: dict[str, float], decimals: int) -> str:
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    return ", ".join(f"{table} {spent:.{decimals}f} s" for table, spent in ranked)


if __name__ == "__main__":  # python -m bench.derive rebuild PATH (the child above)
    print(json.dumps(refresh(Path(sys.argv[2]), full=True)))
