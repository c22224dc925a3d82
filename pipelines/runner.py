"""Runs the pipeline through Dagster for the command line: partitions, then outputs.

Each ingestion partition is its own Dagster run (as in the UI), so a failed partition can be
rerun alone; the runs land in the Dagster instance under DAGSTER_HOME when it is set, so the UI
shows what `lsr run` did.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from dagster import DagsterInstance, materialize
from tqdm import tqdm

from assets.analytics import alt_average, btc_ls, coverage, heatmap_matrix
from assets.images import heatmap_images
from assets.ingest import ingest_exchange_day
from pipelines.partitions import partition_key
from pipelines.resources import PipelineSettings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
OUTPUT_ASSETS = [coverage, btc_ls, alt_average, heatmap_matrix, heatmap_images]


@dataclass
class RunReport:
    partitions_ok: list[str] = field(default_factory=list)
    partitions_failed: dict[str, str] = field(default_factory=dict)
    outputs_ok: bool = False
    outputs_error: str | None = None


def days_back(days: int, today: date | None = None) -> list[date]:
    """The last `days` full UTC days and today, oldest first."""
    today = today or datetime.now(UTC).date()
    return [today - timedelta(days=n) for n in range(days, -1, -1)]


def instance() -> DagsterInstance:
    return DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else DagsterInstance.ephemeral()


def run_pipeline(
    days: Sequence[date],
    exchanges: Sequence[str],
    settings: PipelineSettings,
    *,
    show_progress: bool = True,
) -> RunReport:
    logging.getLogger("dagster").setLevel(logging.WARNING)
    report = RunReport()
    resources = {"settings": settings}
    keys = [partition_key(day, ex) for day in days for ex in exchanges]
    with instance() as dagster_instance:
        for key in tqdm(keys, desc="ingest partitions", unit="run", disable=not show_progress):
            result = materialize(
                [ingest_exchange_day],
                partition_key=str(key),
                resources=resources,
                instance=dagster_instance,
                run_config=QUIET,
                raise_on_error=False,
            )
            if result.success:
                report.partitions_ok.append(str(key))
            else:
                report.partitions_failed[str(key)] = _first_error(result)
        result = materialize(
            OUTPUT_ASSETS,
            resources=resources,
            instance=dagster_instance,
            run_config=QUIET,
            raise_on_error=False,
        )
        report.outputs_ok = result.success
        report.outputs_error = None if result.success else _first_error(result)
    return report


def _first_error(result: object) -> str:
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            user = event.step_failure_data.user_failure_data
            if user is not None and user.description:
                return str(user.description)
            return error.message.strip() if error else "step failed"
    return "run failed"
