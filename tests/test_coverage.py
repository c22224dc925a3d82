"""coverage and coverage_gaps on a hand-made warehouse: a user reads them to learn how deep each
series goes and where it has holes, and why."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from pipelines.analytics import refresh_coverage
from pipelines.universe import Universe
from pipelines.warehouse import connect

START = pd.Timestamp("2025-03-01 00:00")
UNIVERSE = Universe(coins=("BTC", "ETH"), alt_exclusions=())


def _rows(coin: str, period: str, starts: list[pd.Timestamp], instrument: str = "") -> list[dict]:
    return [
        {
            "exchange": "bybit",
            "coin": coin,
            "instrument": instrument or f"{coin}USDT",
            "metric": "global_account",
            "period": period,
            "ts": ts,
            "long_share": 0.55,
            "short_share": 0.45,
            "ratio": 0.55 / 0.45,
            "fetched_at": pd.Timestamp("2025-04-01"),
        }
        for ts in starts
    ]


def _log(coin: str, day: date, status: str, detail: str | None) -> dict:
    return {
        "exchange": "bybit",
        "day": day,
        "dataset": "global_account",
        "coin": coin,
        "period": "1h",
        "status": status,
        "rows": 0,
        "detail": detail,
        "simulated": True,
        "updated_at": pd.Timestamp("2025-04-01"),
    }


def _hours(first: int, last: int) -> list[pd.Timestamp]:
    return [START + pd.Timedelta(hours=h) for h in range(first, last + 1)]


def _build(path: Path) -> None:
    ls = pd.DataFrame(
        # BTC 1h: day 1 whole, one missing hour (05:00, not a gap), then a hole from 02:00 of
        # day 2 to 05:00 of day 3 that a failed fetch explains, then a hole nobody fetched.
        _rows("BTC", "1h", [*_hours(0, 4), *_hours(6, 25), *_hours(54, 71), *_hours(100, 101)])
        # ETH 1h under two instruments that fill each other's holes: no gap for the coin.
        + _rows("ETH", "1h", _hours(0, 10), "ETHUSDT")
        + _rows("ETH", "1h", _hours(11, 20), "ETHPERP")
        # BTC 1d: three days, then a two-day hole the exchange answered ok without rows.
        + _rows("BTC", "1d", [START + pd.Timedelta(days=d) for d in (0, 1, 2, 5)])
    )
    day = START.date()
    log = pd.DataFrame(
        [
            _log("BTC", day + pd.Timedelta(days=1), "failed", "HTTP 502 from /v5/account-ratio"),
            _log("BTC", day + pd.Timedelta(days=2), "ok", None),
        ]
        + [{**_log("BTC", day + pd.Timedelta(days=d), "ok", None), "period": "1d"} for d in (3, 4)]
    )
    with connect(path) as conn:
        for table, frame in (("ls_ratio", ls), ("partition_log", log)):
            conn.register("incoming", frame)
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming")
            conn.unregister("incoming")
        refresh_coverage(conn, UNIVERSE, ("1h", "1d"))


def _table(path: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.sql(sql).df()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("coverage") / "w.duckdb"
    _build(path)
    return path


def test_gaps_list_every_hole_longer_than_one_bucket_with_its_cause(warehouse: Path) -> None:
    gaps = _table(
        warehouse,
        "SELECT coin, period, first_missing, last_missing, missing_buckets, cause, last_problem "
        "FROM coverage_gaps WHERE exchange = 'bybit' AND metric = 'global_account' "
        "ORDER BY coin, period, first_missing",
    )
    hour = pd.Timedelta(hours=1)
    expected = [
        ("BTC", "1d", START + pd.Timedelta(days=3), START + pd.Timedelta(days=4), 2),
        ("BTC", "1h", START + 26 * hour, START + 53 * hour, 28),
        ("BTC", "1h", START + 72 * hour, START + 99 * hour, 28),
    ]
    got = [
        (r.coin, r.period, r.first_missing, r.last_missing, r.missing_buckets)
        for r in gaps.itertuples()
    ]
    assert got == expected
    assert list(gaps["cause"]) == [
        "the exchange published no rows",
        "fetch failed",
        "not fetched",
    ]
    assert gaps["last_problem"].iloc[1] == "HTTP 502 from /v5/account-ratio"


def test_coverage_counts_the_holes_and_keeps_the_first_and_last_bucket(warehouse: Path) -> None:
    coverage = _table(
        warehouse,
        "SELECT coin, period, n_rows, first_ts, last_ts, n_gaps, missing_buckets FROM coverage "
        "WHERE exchange = 'bybit' AND metric = 'global_account' ORDER BY coin, period",
    ).set_index(["coin", "period"])
    btc = coverage.loc[("BTC", "1h")]
    assert (btc.first_ts, btc.last_ts) == (START, START + pd.Timedelta(hours=101))
    assert (btc.n_gaps, btc.missing_buckets) == (2, 28 + 28)
    assert (coverage.loc[("ETH", "1h"), ["n_gaps", "missing_buckets"]] == 0).all()
    assert coverage.loc[("BTC", "1d"), "n_gaps"] == 1


def test_a_series_off_the_period_grid_is_still_searched_for_holes(tmp_path: Path) -> None:
    """Five daily rows from day 0 to day 4 are as many as a whole series holds, but two of them
    sit at noon: the 2.5 days from day 1 to the noon of day 3 are still a hole."""
    day = pd.Timedelta(days=1)
    path = tmp_path / "w.duckdb"
    rows = _rows(
        "ETH", "1d", [START, START + day / 2, START + day, START + 3.5 * day, START + 4 * day]
    )
    with connect(path) as conn:
        conn.register("incoming", pd.DataFrame(rows))
        conn.execute("INSERT INTO ls_ratio BY NAME SELECT * FROM incoming")
        refresh_coverage(conn, UNIVERSE, ("1d",))
    gaps = _table(path, "SELECT coin, first_missing, last_missing FROM coverage_gaps")
    assert list(gaps.itertuples(index=False, name=None)) == [
        ("ETH", START + 2 * day, START + 2.5 * day)
    ]
