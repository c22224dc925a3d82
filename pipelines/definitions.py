"""The Dagster code location: everything wired in one place. Read this file first."""

from __future__ import annotations

from dagster import Definitions

from assets.analytics import (
    alt_average,
    btc_ls,
    candle_flow,
    coverage,
    cross_exchange,
    divergence,
    heatmap_matrix,
    parquet_exports,
    signal_zones,
)
from assets.analytics_checks import ANALYTICS_CHECKS
from assets.checks import CHECKS
from assets.images import heatmap_image_on_request, heatmap_images
from assets.ingest import ingest_exchange_day
from pipelines.jobs import ingest_job, refresh_job
from pipelines.resources import PipelineSettings
from pipelines.schedules import hourly_poll
from pipelines.sensors import downstream_automation

ASSETS = [
    ingest_exchange_day,
    coverage,
    heatmap_matrix,
    btc_ls,
    alt_average,
    signal_zones,
    divergence,
    cross_exchange,
    candle_flow,
    parquet_exports,
    heatmap_images,
    heatmap_image_on_request,
]

defs = Definitions(
    assets=ASSETS,
    asset_checks=[*CHECKS, *ANALYTICS_CHECKS],
    jobs=[ingest_job, refresh_job],
    schedules=[hourly_poll],
    sensors=[downstream_automation],
    resources={"settings": PipelineSettings()},
)
