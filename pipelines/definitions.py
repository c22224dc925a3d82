"""The Dagster code location: everything wired in one place. Read this file first."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from assets.analytics import DERIVED_ASSETS, coverage, parquet_lake
from assets.analytics_checks import ANALYTICS_CHECKS
from assets.checks import CHECKS
from assets.images import heatmap_image_on_request, heatmap_images
from assets.ingest import ingest_exchange_day
from pipelines.jobs import check_warehouse_job, ingest_job, load_landed, rebuild_job, refresh_job
from pipelines.resources import ExchangeAccess, PipelineSettings
from pipelines.schedules import hourly_poll
from pipelines.sensors import load_after_landing, refresh_after_ingestion

ASSETS = [
    ingest_exchange_day,
    coverage,
    *DERIVED_ASSETS,  # one per SQL model in warehouse/sql (pipelines/analytics.py)
    parquet_lake,
    heatmap_images,
    heatmap_image_on_request,
]

defs = Definitions(
    assets=ASSETS,
    asset_checks=[*CHECKS, *ANALYTICS_CHECKS],
    jobs=[ingest_job, load_landed, refresh_job, rebuild_job, check_warehouse_job],
    schedules=[hourly_poll],
    sensors=[refresh_after_ingestion, load_after_landing],
    # The exchanges' own hosts unless LSR_<EXCHANGE>_BASE_URL moves them (`make dev` against
    # `lsr simulate`, the end-to-end test); `lsr demo` passes the simulator's to its runs.
    resources={"settings": PipelineSettings(), "exchanges": ExchangeAccess()},
    # A run's steps in its own process, one after another: the multiprocess default spends about
    # ten seconds loading this code location for every step (the fetch, then each check) and
    # gains nothing, since the DuckDB steps take the one "duckdb" pool slot in turn anyway.
    executor=in_process_executor,
)
