"""Jobs: fetching is partitioned by day x exchange; refreshing derived tables and images is not."""

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    Failure,
    OpExecutionContext,
    define_asset_job,
    job,
    op,
)

from pipelines.analytics import DERIVED_TABLES
from pipelines.loader import load_waiting, record_stored
from pipelines.resources import PipelineSettings
from pipelines.warehouse import connect

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


@op(
    pool="duckdb",
    description="Store every fetch waiting in the landing zone, oldest first, each file in one "
    "transaction that notes it in `landed_files`.",
)
def load_landed_fetches(context: OpExecutionContext, settings: PipelineSettings) -> None:
    zone = settings.landing_zone()
    with connect(settings.warehouse_file()) as conn:
        loads = load_waiting(conn, zone)
    record_stored(context.instance, loads)
    stored = [load.summary for load in loads if load.summary is not None]
    rows = sum(summary.ls_rows for summary in stored)
    context.log.info(f"{len(stored)} landed fetches stored from {zone.root} ({rows} L/S rows)")
    refused = [load for load in loads if load.problem is not None]
    if refused:  # noted in landed_files, so they are reported once, not at every load
        listing = "\n".join(f"- {load.landed.path}: {load.problem}" for load in refused[:20])
        raise Failure(
            description=f"{len(refused)} landed files could not be loaded (the rest were):"
            f"\n{listing}",
            allow_retries=False,
        )


@job(
    description="The one writer when fetch workers only land (LSR_FETCH_ONLY): normalise every "
    "landed fetch not yet in the warehouse into it (as `lsr reload` does)."
)
def load_landed() -> None:
    load_landed_fetches()
