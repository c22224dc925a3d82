"""Partitions, defined once: ingestion is partitioned by UTC day x exchange."""

from __future__ import annotations

from datetime import date

from dagster import (
    DailyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from pipelines.exchanges import EXCHANGES

# Bybit's long/short history starts in July 2020, the deepest any exchange serves (Binance's
# archive starts in September 2020, OKX's 1,440 daily rows about four years back).
FIRST_DAY = "2020-07-01"

DAYS = DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")
EXCHANGE_PARTITIONS = StaticPartitionsDefinition(list(EXCHANGES))
DAY_X_EXCHANGE = MultiPartitionsDefinition({"date": DAYS, "exchange": EXCHANGE_PARTITIONS})


def partition_key(day: date, exchange: str) -> MultiPartitionKey:
    return MultiPartitionKey({"date": day.isoformat(), "exchange": exchange})
