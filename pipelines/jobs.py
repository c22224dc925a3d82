"""Jobs: fetching is partitioned by day x exchange; refreshing derived tables and images is not."""

from __future__ import annotations

from dagster import AssetCheckKey, AssetKey, AssetSelection, define_asset_job

from pipelines.analytics import DERIVED_TABLES

INGEST = AssetSelection.groups("ingest")
# The on-request image renders what its run config asks for: launched by hand, never refreshed.
DOWNSTREAM = AssetSelection.groups("warehouse", "analytics", "images") - AssetSelection.assets(
    "heatmap_image_on_request"
)

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
rebuild_job = define_asset_job(
    "rebuild_derived",
    selection=DOWNSTREAM,
    config={"ops": {table: {"config": {"rebuild": True}} for table in DERIVED_TABLES}},
    description="Recompute every derived table from all history, then coverage, the lake "
    "and the images (as `lsr rebuild`): after restoring a backup or loading rows without going "
    "through ingestion. A new SQL file, other settings or universe rebuild a table by "
    "themselves.",
)
check_warehouse_job = define_asset_job(
    "check_warehouse",
    # rows_valid is reported by the ingestion step itself, so it is not a separate step here.
    selection=AssetSelection.all_asset_checks()
    - AssetSelection.checks(AssetCheckKey(AssetKey("ls_ratio"), "rows_valid")),
    description="Run every asset check against the warehouse as it is, without fetching or "
    "recomputing anything (after a manual repair, say).",
)
