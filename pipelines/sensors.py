"""Derived tables, the Parquet lake and images follow ingestion without a manual run; landed
fetches follow fetch workers into the warehouse.

A sensor, not declarative automation: the eager condition on an unpartitioned asset below a
day x exchange grid waits for every upstream partition to exist (most never will: an exchange
keeps days or weeks), and each evaluation stored megabytes of partition subsets. This sensor
keeps one integer cursor, the event-log id of the newest ingestion materialization it has
answered, and asks for one `refresh_outputs` run per burst of ingestion.
"""

from __future__ import annotations

import time
from datetime import timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from pipelines.analytics import INGESTED_TABLES
from pipelines.exchanges import EXCHANGES
from pipelines.jobs import load_landed, refresh_job
from pipelines.resources import PipelineSettings

INGESTED = [AssetKey(table) for table in INGESTED_TABLES]
# Every run of a day x exchange partition carries its exchange in this tag (Dagster sets it).
EXCHANGE_TAG = "dagster/partition/exchange"
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
# While ingestion keeps running (a long backfill), refresh anyway once the oldest unanswered
# materialization is this old, so outputs never lag a busy day by more than this.
MAX_WAIT = timedelta(minutes=10)


def newest_ingestion(instance: DagsterInstance) -> int:
    """Event-log id of the newest materialization of any ingested asset (0 if none)."""
    records = instance.get_asset_records(INGESTED)
    ids = [r.asset_entry.last_materialization_storage_id or 0 for r in records]
    return max(ids, default=0)


def oldest_unanswered_age(instance: DagsterInstance, answered: int) -> float:
    """Seconds since the first ingestion materialization after event id `answered`."""
    stamps = []
    for key in INGESTED:
        result = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, after_storage_id=answered), limit=1, ascending=True
        )
        stamps += [record.timestamp for record in result.records]
    return time.time() - min(stamps) if stamps else 0.0


def unfinished_ingestion(instance: DagsterInstance) -> int:
    """Ingestion runs queued or in flight, whichever job launched them: the `ingest` job, the
    schedule, or a backfill from an asset page (Dagster's implicit asset job)."""
    tags = {EXCHANGE_TAG: list(EXCHANGES)}
    return instance.get_runs_count(RunsFilter(tags=tags, statuses=UNFINISHED))


def unfinished_runs(instance: DagsterInstance, job_name: str) -> int:
    """Runs of one job queued or in flight: a sensor never stacks a second behind them."""
    return instance.get_runs_count(RunsFilter(job_name=job_name, statuses=UNFINISHED))


@sensor(
    job=refresh_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="After new ingestion, refreshes coverage, the derived tables, the Parquet "
    "lake and the images in one run: once the ingestion runs in flight have finished, or "
    f"after {MAX_WAIT.seconds // 60} minutes of continuous ingestion.",
)
def refresh_after_ingestion(context: SensorEvaluationContext) -> RunRequest | SkipReason:
    instance = context.instance
    answered = int(context.cursor or 0)
    newest = newest_ingestion(instance)
    if newest <= answered:
        return SkipReason("no ingestion since the last refresh was requested")
    if unfinished_runs(instance, refresh_job.name):
        return SkipReason("a refresh is queued or running; the next tick follows it up")
    waiting = landed_not_loaded(instance, PipelineSettings())
    if waiting:
        return SkipReason(f"waiting for load_landed to store {waiting} landed fetches")
    ingesting = unfinished_ingestion(instance)
    waited = oldest_unanswered_age(instance, answered)
    if ingesting and waited < MAX_WAIT.total_seconds():
        return SkipReason(
            f"waiting for {ingesting} ingestion runs to finish (new data {waited:.0f} s old)"
        )
    context.update_cursor(str(newest))
    return RunRequest(run_key=f"ingestion-{newest}")


def landed_not_loaded(instance: DagsterInstance, settings: PipelineSettings) -> int:
    """On fetch workers (LSR_FETCH_ONLY), the landed files no load run has been started after
    (0 otherwise): a refresh before the loader has stored them would miss their rows."""
    if not settings.fetches_only():
        return 0
    landed = settings.landing_zone().files()
    if unfinished_runs(instance, load_landed.name):
        return len(landed) or 1
    last = instance.get_run_records(
        RunsFilter(job_name=load_landed.name, statuses=[DagsterRunStatus.SUCCESS]), limit=1
    )
    loaded_from = last[0].start_time if last and last[0].start_time else 0.0
    return sum(1 for f in landed if f.landed_at.timestamp() >= loaded_from)


@sensor(
    job=load_landed,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="When ingestion runs only land their fetches (LSR_FETCH_ONLY, fetch workers on "
    "other hosts), starts `load_landed` after new files arrive in the landing zone: the one "
    "writer of the warehouse.",
)
def load_after_landing(context: SensorEvaluationContext) -> RunRequest | SkipReason:
    settings = PipelineSettings()
    if not settings.fetches_only():
        return SkipReason("ingestion runs store their own fetches (LSR_FETCH_ONLY is not set)")
    # The cursor is the newest file name answered: names begin with their landing time.
    landed = settings.landing_zone().files()
    newest = landed[-1].name if landed else ""
    if newest <= (context.cursor or ""):
        return SkipReason("nothing landed since the last load was requested")
    if unfinished_runs(context.instance, load_landed.name):
        return SkipReason("a load is queued or running; the next tick follows it up")
    context.update_cursor(newest)
    return RunRequest(run_key=f"landed-{newest}")
