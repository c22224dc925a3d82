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

# Bybit reaches back to 2020-07; the others a few days to two years. 2024 onwards keeps the
# partition grid small enough for the UI while covering every exchange's reachable history
# except Bybit's oldest years.
FIRST_DAY = "2024-01-01"

DAYS = DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1, timezone="UTC")
EXCHANGE_PARTITIONS = StaticPartitionsDefinition(list(EXCHANGES))
DAY_X_EXCHANGE = MultiPartitionsDefinition({"date": DAYS, "exchange": EXCHANGE_PARTITIONS})


def partition_key(day: date, exchange: str) -> MultiPartitionKey:
    return MultiPartitionKey({"date": day.isoformat(), "exchange": exchange})
