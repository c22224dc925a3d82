"""Runs the pipeline through Dagster for the command line: ingestion, then outputs.

Each exchange gets one Dagster run of its partition for today, which fetches every incomplete
day back to `since` (or as far as the exchange serves, without it) in one pass per series and
reports each day's partition as materialized (pipelines/backfill.py). The runs land in the
Dagster instance under DAGSTER_HOME when it is set, so the UI shows what `lsr run` did, and a
failed day can be rerun there alone.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.queues
import os
import queue
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dagster import AssetKey, AssetsDefinition, DagsterInstance, materialize
from tqdm import tqdm

from assets.ingest import SINCE_TAG, ingest_exchange_day
from pipelines.config import REPO_ROOT
from pipelines.partitions import partition_key
from pipelines.processes import die_with_parent
from pipelines.recovery import release_dead_runs
from pipelines.resources import ExchangeAccess, PipelineSettings

# The command line reports each failure as one line (its root cause) at the end; Dagster's own
# multi-line error logs stay in the instance (and the UI), or on the terminal with LSR_DEBUG=1.
LOG_LEVEL = "WARNING" if os.environ.get("LSR_DEBUG") else "CRITICAL"
QUIET = {"loggers": {"console": {"config": {"log_level": LOG_LEVEL}}}}


def output_assets() -> list[AssetsDefinition]:
    """Coverage, the derived tables, the Parquet lake and the images: what follows ingestion.

    Imported here, not at the top: each ingestion worker process imports this module, and
    drawing (matplotlib) and the analytics would add seconds to every worker's start.
    """
    from assets.analytics import DERIVED_ASSETS, coverage, parquet_lake
    from assets.images import heatmap_images

    return [coverage, *DERIVED_ASSETS, parquet_lake, heatmap_images]


@dataclass
class RunReport:
    partitions_ok: list[str] = field(default_factory=list)
    partitions_failed: dict[str, str] = field(default_factory=dict)
    outputs_ok: bool = False
    outputs_error: str | None = None
    released_runs: list[str] = field(default_factory=list)  # left STARTED by a killed process


def days_back(days: int, today: date | None = None) -> date:
    """The first of the last `days` full UTC days before today."""
    return (today or datetime.now(UTC).date()) - timedelta(days=days)


POSTGRES_HOME = REPO_ROOT / "dagster_home" / "postgres"
POSTGRES_SCHEME = "postgresql+psycopg2://"


def instance() -> DagsterInstance:
    """The instance under DAGSTER_HOME (what `make` sets); without it, the Postgres one when
    LSR_DAGSTER_POSTGRES_URL is set, else a throwaway one (the runs are not kept)."""
    if os.environ.get("DAGSTER_HOME"):
        return DagsterInstance.get()
    url = os.environ.get("LSR_DAGSTER_POSTGRES_URL")
    if url:
        if not url.startswith(POSTGRES_SCHEME):
            # SQLAlchemy 2.1 opens postgresql:// with psycopg 3, which dagster-postgres's SQL
            # does not run on; the driver it installs is psycopg2.
            raise ValueError(f"LSR_DAGSTER_POSTGRES_URL must begin with {POSTGRES_SCHEME}")
        return DagsterInstance.from_config(str(POSTGRES_HOME))
    return DagsterInstance.ephemeral()


def run_pipeline(
    since: date,
    exchanges: Sequence[str],
    settings: PipelineSettings,
    access: ExchangeAccess,
    *,
    show_progress: bool = True,
) -> RunReport:
    """Ingest what the warehouse lacks of every exchange from `since` (the first partition day:
    as far back as each exchange serves), then recompute the outputs.

    Each exchange gets a worker process: exchanges fetch in parallel (Bitget's one request per
    second per endpoint then hides behind the others), one exchange never runs twice at once
    (its rate limits are per IP), and writes queue on the warehouse lock.
    """
    logging.getLogger("dagster").setLevel(LOG_LEVEL)
    report = RunReport()
    # The resources' fields, for the workers to rebuild them.
    config: dict[str, dict[str, Any]] = {
        "settings": {
            "warehouse": settings.warehouse,
            "periods": list(settings.periods),
            "depth": settings.depth,
        },
        "exchanges": {
            "base_urls": dict(access.base_urls),
            "archive_url": access.archive_url,
            "rate_limit_scale": access.rate_limit_scale,
        },
    }
    report.released_runs = _prepare_instance()
    spawn = multiprocessing.get_context("spawn")  # no forked Dagster or event-loop state
    total = len(exchanges)
    progress: multiprocessing.queues.Queue[Any] = spawn.Queue()
    with (
        ProcessPoolExecutor(
            max_workers=max(len(exchanges), 1),
            mp_context=spawn,
            initializer=_start_worker,
            initargs=(progress, os.getpid()),
        ) as pool,
        tqdm(total=total, desc="ingest exchanges", unit="run", disable=not show_progress) as bar,
    ):
        tags = {SINCE_TAG: since.isoformat()}
        workers = [pool.submit(_ingest_exchange, exchange, tags, config) for exchange in exchanges]
        while bar.n < total:
            try:
                key, error = progress.get(timeout=1.0)
            except queue.Empty:
                _raise_if_a_worker_died(workers)
                continue
            if error is None:
                report.partitions_ok.append(key)
            else:
                report.partitions_failed[key] = error
            bar.update()
        _raise_if_a_worker_died(workers)
    with instance() as dagster_instance:
        result = materialize(
            output_assets(),
            resources={"settings": settings},
            instance=dagster_instance,
            run_config=QUIET,
            raise_on_error=False,
        )
    report.outputs_ok = result.success
    report.outputs_error = None if result.success else _first_error(result)
    return report


def rebuild_outputs(settings: PipelineSettings) -> dict[str, str]:
    """Recompute every derived table from all history, then coverage, the lake and the
    images, as one Dagster run (the rebuild_derived job's work): derived table -> rows. Raises
    with the root cause if a step fails."""
    from pipelines.analytics import DERIVED_TABLES

    logging.getLogger("dagster").setLevel(LOG_LEVEL)
    rebuild = {"ops": {table: {"config": {"rebuild": True}} for table in DERIVED_TABLES}}
    with instance() as dagster_instance:
        result = materialize(
            output_assets(),
            resources={"settings": settings},
            instance=dagster_instance,
            run_config={**QUIET, **rebuild},
            raise_on_error=False,
        )
    if not result.success:
        raise RuntimeError(f"rebuild failed: {_first_error(result)}")
    rows: dict[str, str] = {}
    for table in DERIVED_TABLES:
        for materialization in result.asset_materializations_for_node(table):
            metadata = materialization.metadata
            rows[table] = f"{metadata['rows'].value:,} rows in {metadata['seconds'].value:.1f} s"
    return rows


def export_lake(settings: PipelineSettings, *, full: bool = False) -> dict[str, object]:
    """Bring the Parquet lake up to date (every partition with `full`) as one Dagster run of
    the parquet_lake asset: its materialization's metadata. Raises with the root cause if it
    fails."""
    from assets.analytics import parquet_lake

    logging.getLogger("dagster").setLevel(LOG_LEVEL)
    with instance() as dagster_instance:
        result = materialize(
            [parquet_lake],
            resources={"settings": settings},
            instance=dagster_instance,
            run_config={**QUIET, "ops": {"parquet_lake": {"config": {"full": full}}}},
            raise_on_error=False,
        )
    if not result.success:
        raise RuntimeError(f"lake refresh failed: {_first_error(result)}")
    (materialization,) = result.asset_materializations_for_node("parquet_lake")
    return {key: value.value for key, value in materialization.metadata.items()}


def _prepare_instance() -> list[str]:
    """Create the instance's storage once, before the workers start (on a new DAGSTER_HOME six
    workers creating the same SQLite tables at once collide: "table runs already exists"), and
    release what a killed earlier run left claimed; returns the ids of the runs released."""
    with instance() as dagster_instance:
        dagster_instance.get_runs(limit=1)
        dagster_instance.get_latest_materialization_event(AssetKey("ls_ratio"))
        return release_dead_runs(dagster_instance)


_progress: multiprocessing.queues.Queue[Any] | None = None  # a worker's channel back to the parent


def _start_worker(progress: multiprocessing.queues.Queue[Any], parent_pid: int) -> None:
    global _progress
    _progress = progress
    die_with_parent(parent_pid)


def _raise_if_a_worker_died(workers: list[Future[None]]) -> None:
    for worker in workers:
        if worker.done() and worker.exception() is not None:
            raise RuntimeError(f"an ingestion worker crashed: {worker.exception()}")


def _ingest_exchange(
    exchange: str, tags: dict[str, str], config: dict[str, dict[str, Any]]
) -> None:
    """One worker process: the exchange's partition of today, and the days it fills."""
    assert _progress is not None, "started without _start_worker"
    logging.getLogger("dagster").setLevel(LOG_LEVEL)
    resources = {
        "settings": PipelineSettings(**config["settings"]),
        "exchanges": ExchangeAccess(**config["exchanges"]),
    }
    key = str(partition_key(datetime.now(UTC).date(), exchange))
    with instance() as dagster_instance:
        result = materialize(
            [ingest_exchange_day],
            partition_key=key,
            resources=resources,
            instance=dagster_instance,
            run_config=QUIET,
            tags=tags,
            raise_on_error=False,
        )
        _progress.put((key, None if result.success else _first_error(result)))


def _first_error(result: object) -> str:
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            user = event.step_failure_data.user_failure_data
            if user is not None and user.description:
                return str(user.description)
            return _root_cause(error) if error else "step failed"
    return "run failed"


def _root_cause(error: Any) -> str:
    """The innermost error's message: Dagster wraps what an asset raised in "Error occurred
    while executing op" and keeps the original as the cause."""
    while error.cause is not None:
        error = error.cause
    return str(error.message).strip()
