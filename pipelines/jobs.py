"""Jobs: fetching is partitioned by day x exchange; refreshing derived tables and images is not."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from pipelines.partitions import DAY_X_EXCHANGE

INGEST = AssetSelection.groups("ingest")
DOWNSTREAM = AssetSelection.groups("warehouse", "analytics", "images")

ingest_job = define_asset_job(
    "ingest",
    selection=INGEST,
    partitions_def=DAY_X_EXCHANGE,
    description="Fetch one UTC day for one exchange: every coin, metric and period.",
)
refresh_job = define_asset_job(
    "refresh_outputs",
    selection=DOWNSTREAM,
    description="Recompute coverage, the derived tables and the images from the warehouse.",
)
