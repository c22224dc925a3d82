"""Jobs: fetching is partitioned by day x exchange; refreshing derived tables and images is not."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

INGEST = AssetSelection.groups("ingest")
DOWNSTREAM = AssetSelection.groups("warehouse", "analytics", "images")

ingest_job = define_asset_job(
    "ingest",
    selection=INGEST,  # partitioned by day x exchange, as its assets are
    description="Fetch one UTC day for one exchange: every coin, metric and period.",
)
refresh_job = define_asset_job(
    "refresh_outputs",
    selection=DOWNSTREAM,
    description="Recompute coverage, the derived tables and the images from the warehouse.",
)
