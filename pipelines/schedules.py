"""The hourly poll: latest-window exchanges lose data if polling stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from pipelines.exchanges import EXCHANGES
from pipelines.jobs import ingest_job
from pipelines.partitions import partition_key


@schedule(
    cron_schedule="7 * * * *",
    job=ingest_job,
    execution_timezone="UTC",
    # On from the start: latest-window exchanges lose every hour it does not run.
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every hour at :07 UTC, fetch today's partition for every exchange (and, in the "
    "first two hours of a day, yesterday's, so its last buckets are complete).",
)
def hourly_poll(context: ScheduleEvaluationContext) -> list[RunRequest]:
    now = context.scheduled_execution_time or datetime.now(UTC)
    days = [now.date()] + ([(now - timedelta(days=1)).date()] if now.hour < 2 else [])
    return [
        RunRequest(
            run_key=f"{day}|{exchange}|{now:%Y%m%dT%H}",
            partition_key=partition_key(day, exchange),
        )
        for day in days
        for exchange in EXCHANGES
    ]
