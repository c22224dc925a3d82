"""Stored observations: idempotent upserts, nothing lost to a shorter fetch, raw bodies landed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from pipelines.exchanges import bybit
from pipelines.exchanges.base import Window, empty_ls_frame
from pipelines.ingest import Outcome, PartitionFetch, Task
from pipelines.universe import Listing, load_universe
from pipelines.warehouse import connect, write_partition
from tests.conftest import load_payload

DAY = date(2026, 9, 15)


def _fetch(ls: pd.DataFrame, outcomes: list[Outcome] | None = None) -> PartitionFetch:
    return PartitionFetch(
        exchange="bybit",
        day=DAY,
        window=Window.of(datetime(2026, 9, 15, tzinfo=UTC), datetime(2026, 9, 16, tzinfo=UTC)),
        listings=[Listing("ETHUSDT", "ETH")],
        mapping={"ETH": "ETHUSDT"},
        ls=ls,
        klines=pd.DataFrame(),
        open_interest=pd.DataFrame(),
        outcomes=outcomes or [],
        responses=[],
        out_of_window_rows=0,
    )


def _live_rows() -> pd.DataFrame:
    body = load_payload("bybit/account_ratio_5min_live_2026-09-15.json")
    return bybit.parse("global_account", body, instrument="ETHUSDT", period="5m")


def _table(path: Path, table: str = "ls_ratio") -> pd.DataFrame:
    with connect(path, read_only=True) as conn:
        return conn.sql(f"SELECT * FROM {table} ORDER BY ALL").df()


def test_writing_the_same_partition_twice_leaves_an_identical_table(warehouse_file) -> None:
    for _ in range(2):
        with connect(warehouse_file) as conn:
            write_partition(conn, _fetch(_live_rows()), load_universe())
        if _ == 0:
            first = _table(warehouse_file)
    assert len(first) == 3
    pd.testing.assert_frame_equal(first, _table(warehouse_file))  # fetched_at included


def test_a_shorter_later_fetch_deletes_nothing(warehouse_file) -> None:
    rows = _live_rows()
    with connect(warehouse_file) as conn:
        write_partition(conn, _fetch(rows), load_universe())
        write_partition(conn, _fetch(rows.tail(1)), load_universe())  # window moved on
    assert len(_table(warehouse_file)) == 3


def test_a_refetched_newest_bucket_is_overwritten(warehouse_file) -> None:
    rows = _live_rows()
    with connect(warehouse_file) as conn:
        write_partition(conn, _fetch(rows), load_universe())
        newest = rows.tail(1).assign(long_share=0.7, short_share=0.3, ratio=0.7 / 0.3)
        write_partition(conn, _fetch(newest), load_universe())
    stored = _table(warehouse_file).sort_values("ts")
    assert stored["long_share"].tolist() == [*rows["long_share"].iloc[:2], 0.7]


def test_rejected_rows_and_unreadable_bodies_are_kept_with_reasons(warehouse_file) -> None:
    rows = _live_rows()
    rows.loc[0, "long_share"] = -0.5
    failed = Outcome(
        Task("global_account", "BTC", "BTCUSDT", "1h"),
        "failed",
        detail="bybit /v5/market/account-ratio symbol=BTCUSDT: row lacks field buyRatio",
        endpoint="/v5/market/account-ratio",
        raw='[{"buy_ratio": "0.5"}]',
    )
    with connect(warehouse_file) as conn:
        summary = write_partition(conn, _fetch(rows, [failed]), load_universe())
    assert summary.ls_rows == 2 and summary.rejected_rows == 2
    rejected = _table(warehouse_file, "ls_ratio_rejected")
    assert set(rejected["instrument"]) == {"ETHUSDT", "BTCUSDT"}
    assert rejected["reason"].str.contains("long_share").any()
    assert rejected["raw"].str.contains("buy_ratio").any()
    with connect(warehouse_file) as conn:  # again: the rejection log does not grow
        write_partition(conn, _fetch(rows, [failed]), load_universe())
    assert len(_table(warehouse_file, "ls_ratio_rejected")) == 2


def test_empty_partition_writes_nothing_and_fails_nothing(warehouse_file) -> None:
    with connect(warehouse_file) as conn:
        summary = write_partition(conn, _fetch(empty_ls_frame()), load_universe())
    assert summary.ls_rows == 0 and _table(warehouse_file).empty
