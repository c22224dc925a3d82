"""Ingestion: one run per UTC day x exchange fetches every coin, metric and period."""

import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import duckdb
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    Backoff,
    DagsterInstance,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    RetryPolicy,
    multi_asset,
)

from pipelines.backfill import Bounds, FetchPlan, Needs, plan_fetch
from pipelines.errors import ExchangeError, RetryableError
from pipelines.exchanges import connector
from pipelines.http import RateLimitLedger
from pipelines.ingest import (
    KLINES,
    OPEN_INTEREST,
    PartitionFetch,
    Planner,
    Task,
    asset_of,
    fetch_partition,
    series_key,
)
from pipelines.landing import LandedFile, Manifest
from pipelines.loader import load_waiting, record_stored
from pipelines.partitions import DAY_X_EXCHANGE, partition_key
from pipelines.resources import ExchangeAccess, PipelineSettings
from pipelines.universe import Universe
from pipelines.warehouse import (
    OriginConflict,
    PreparedPartition,
    WarehouseLocked,
    WarehouseUnusable,
    WriteSummary,
    complete_days,
    connect,
    day_rows,
    prepare_partition,
    summarize,
    write_prepared,
)

GROUP = "ingest"
SINCE_TAG = "lsr/since"  # set by `lsr run --days/--since`: the first day a run may fetch
BACKFILL_ID_TAG = "dagster/backfill"
LS_DESCRIPTION = (
    "Long/short ratios of every universe coin, metric kind and period for one exchange and UTC "
    "day, validated with pandera and upserted into DuckDB table `ls_ratio` (rejected rows go to "
    "`ls_ratio_rejected`). Raw responses are landed as Parquet first."
)


with warnings.catch_warnings():
    # A partitioned check is a Dagster preview; unpartitioned, its result in a backfill whose
    # runs finish out of creation order shows as "not evaluated" (tests/test_dagster_e2e.py).
    warnings.simplefilter("ignore", PreviewWarning)
    ROWS_VALID = AssetCheckSpec(
        "rows_valid",
        asset="ls_ratio",
        partitions_def=DAY_X_EXCHANGE,
        description="Every fetched row of this partition passed the pandera schema (the count "
        "and reasons of rejected rows otherwise; they are kept in ls_ratio_rejected).",
    )


@multi_asset(
    name="ingest_exchange_day",
    specs=[
        AssetSpec("ls_ratio", description=LS_DESCRIPTION, group_name=GROUP, skippable=True),
        AssetSpec(
            "klines",
            description="Candles per coin and period (price panel, candle flow), table `klines`.",
            group_name=GROUP,
            skippable=True,
        ),
        AssetSpec(
            "open_interest",
            description="Open-interest history per coin and period, table `open_interest`.",
            group_name=GROUP,
            skippable=True,
        ),
    ],
    check_specs=[ROWS_VALID],
    partitions_def=DAY_X_EXCHANGE,
    can_subset=False,
    # Fetches still failing on transient errors after the fetch's own retry rounds: Dagster
    # runs the step again, later, before the partition is reported failed. A ban or a body
    # no parser understands is not retried (`Failure(allow_retries=False)` below).
    retry_policy=RetryPolicy(
        max_retries=2, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    ),
)
async def ingest_exchange_day(  # type: ignore[no-untyped-def]  # Dagster reads outputs from the return annotation
    context: AssetExecutionContext, settings: PipelineSettings, exchanges: ExchangeAccess
):
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    exchange, day = keys["exchange"], date.fromisoformat(keys["date"])
    step = _ProgressLog(context, f"{exchange} {day}")
    universe, periods = _preflight(settings)
    fetch_only = settings.fetches_only()
    try:
        fetched = await fetch_partition(
            exchange,
            day,
            universe=universe,
            periods=periods,
            client=exchanges.client(RateLimitLedger(settings.rate_limit_dir())),
            progress=step,
            # A worker cannot see the warehouse, so it fetches its own day, not the stretch
            # of incomplete days around it.
            planner=None if fetch_only else _planner(context, settings, exchange, day),
        )
    except ExchangeError as error:  # the instrument list itself could not be fetched
        raise Failure(
            description=f"{exchange} {day}: nothing fetched: {error}",
            allow_retries=isinstance(error, RetryableError),
        ) from error
    zone = settings.landing_zone()
    landed = zone.land(fetched, Manifest.of(fetched, periods, universe, reported=fetch_only))
    prepared = prepare_partition(fetched, universe)  # validation before the file is opened
    if fetch_only:
        summary, stored = summarize(prepared), _fetched_rows(fetched)
    else:
        summary, stored = _store(context, settings, fetched, prepared, landed)
    for result in _results(fetched, summary, stored, f"{zone.root}/{landed.path}"):
        yield result
    for event in _other_days(fetched):
        context.log_event(event)
    if fetched.failures:
        raise Failure(
            description=_failure_text(fetched),
            metadata={"failed_fetches": len(fetched.failures), "banned": fetched.banned or ""},
            allow_retries=fetched.banned is None and all(o.transient for o in fetched.failures),
        )


def _planner(
    context: AssetExecutionContext, settings: PipelineSettings, exchange: str, day: date
) -> Planner:
    """The stretch this run fetches: see pipelines/backfill.py."""
    now = datetime.now(UTC)
    bounds = run_bounds(context.run.tags, context.instance, exchange, now.date())
    warehouse = settings.warehouse_file()
    depth = settings.depth_days()
    reach = connector(exchange).reach

    def plan_days(tasks: list[Task], listed: dict[str, date | None]) -> FetchPlan:
        needs = Needs(listed=listed, depth_days=depth, reach=reach, now=now)
        series = sorted({series_key(t) for t in tasks}, key=str)
        load = partial(complete_days, warehouse, exchange)
        chosen = plan_fetch(day, series, needs, bounds, load)
        if chosen.first != chosen.last:
            context.log.info(
                f"{exchange}: fetching {chosen.first} .. {chosen.last} for the partition of {day}"
            )
        return chosen

    return plan_days


def run_bounds(
    tags: Mapping[str, str], instance: DagsterInstance, exchange: str, today: date
) -> Bounds | None:
    """The days a run may fetch: from `lsr run --days/--since`, or the days of the Dagster
    backfill that launched it; None (as far as needed) for a run on its own."""
    if SINCE_TAG in tags:
        return Bounds(date.fromisoformat(tags[SINCE_TAG]), today)
    backfill_id = tags.get(BACKFILL_ID_TAG)
    days = _backfill_days(instance, backfill_id, exchange) if backfill_id else set()
    return Bounds(min(days), max(days), frozenset(days)) if days else None


def _backfill_days(instance: DagsterInstance, backfill_id: str, exchange: str) -> set[date]:
    backfill = instance.get_backfill(backfill_id)
    data = getattr(backfill, "asset_backfill_data", None)
    subsets = getattr(getattr(data, "target_subset", None), "partitions_subsets_by_asset_key", {})
    subset = subsets.get(AssetKey("ls_ratio"))
    if subset is None:  # a backfill of another kind: bounded by nothing but completeness
        return set()
    days = set()
    for key in subset.get_partition_keys():
        parts = str(key).split("|")  # "<date>|<exchange>": dimensions in name order
        if len(parts) == 2 and parts[1] == exchange:
            days.add(date.fromisoformat(parts[0]))
    return days


def _other_days(fetched: PartitionFetch) -> Iterator[AssetMaterialization]:
    """The days this run stored besides its own partition, reported as `ls_ratio` partitions
    materialized (a day where an L/S fetch failed is not), with the rows each table holds.

    One event per day, on the ledger asset only: a Dagster event costs ~20 ms on the SQLite
    instance, and a first run covers years of days on each of six exchanges (Bybit since
    2020-07 is 2,300 days); `klines` and `open_interest` show the run's own day.
    """
    rows: Counter[tuple[date, str]] = Counter()
    failed: set[date] = set()
    for outcome in fetched.outcomes:
        asset = asset_of(outcome.task.dataset)
        for d, n in outcome.rows_by_day:
            rows[(d, asset)] += n
        if asset == "ls_ratio":
            if outcome.status == "failed":
                failed.update(fetched.covered_days)
            failed.update(d for d, status, _ in outcome.day_problems if status == "failed")
    span = f"{fetched.covered_days[0]} .. {fetched.covered_days[-1]}"
    for d in fetched.covered_days:
        if d == fetched.day or d in failed:
            continue
        yield AssetMaterialization(
            asset_key="ls_ratio",
            partition=str(partition_key(d, fetched.exchange)),
            metadata={
                "dagster/row_count": rows[(d, "ls_ratio")],
                "klines_rows": rows[(d, KLINES)],
                "open_interest_rows": rows[(d, OPEN_INTEREST)],
                "fetched_by": f"the run for {fetched.day} (one pass over {span})",
            },
        )


def _store(
    context: AssetExecutionContext,
    settings: PipelineSettings,
    fetched: PartitionFetch,
    prepared: PreparedPartition,
    landed: LandedFile,
) -> tuple[WriteSummary, Counter[str]]:
    """Write the fetch (and any earlier fetch of this exchange left waiting) in this run."""
    where = f"{fetched.exchange} {fetched.day}"
    zone = settings.landing_zone()
    try:
        with connect(settings.warehouse_file()) as conn:
            earlier = load_waiting(conn, zone, exchange=fetched.exchange, before=landed.name)
            summary = write_prepared(conn, prepared, landed=landed.path)
            stored: Counter[str] = Counter()
            for dataset, n in day_rows(conn, fetched.exchange, fetched.day).items():
                stored[asset_of(dataset)] += n
    except OriginConflict as error:  # no retry can fix it; say why in one line
        raise Failure(description=f"{where}: {error}", allow_retries=False) from error
    except (WarehouseLocked, WarehouseUnusable, duckdb.IOException) as error:
        # A reader held the file, or it could not be written (a full disk): nothing is lost.
        raise Failure(
            description=f"{where}: {error}; the fetch waits in the landing zone "
            f"({zone.root}/{landed.path}) and is stored by the next ingestion run of "
            f"{fetched.exchange}, the `load_landed` job or `lsr reload`",
            allow_retries=False,
        ) from error
    record_stored(context.instance, earlier)
    return summary, stored


def _fetched_rows(fetched: PartitionFetch) -> Counter[str]:
    """The rows a worker fetched for its own day, per asset (it stores none itself)."""
    rows: Counter[str] = Counter()
    for outcome in fetched.outcomes:
        rows[asset_of(outcome.task.dataset)] += dict(outcome.rows_by_day).get(fetched.day, 0)
    return rows


def _preflight(settings: PipelineSettings) -> tuple[Universe, tuple[str, ...]]:
    """What the run needs, checked before the first request (a warehouse we could not write
    to would throw every fetch away); a mistake here is not retried, and says what it is."""
    try:
        return settings.run_inputs()
    except (WarehouseUnusable, ValueError) as error:
        raise Failure(description=str(error), allow_retries=False) from error


def _results(
    fetched: PartitionFetch, summary: WriteSummary, stored: Counter[str], landed: str | None
) -> Iterator[object]:
    """The partition's own materializations: the rows its day holds (this run may have fetched
    nothing for it, an earlier run of the same backfill having filled it)."""
    rows = {asset: stored[asset] for asset in summary.by_table()}
    # What the whole fetch did is said once, on ls_ratio: every event is stored in the
    # instance for good, and the hourly poll writes 144 ingestion runs a day.
    run_wide: dict[str, Any] = {
        "requests": int(fetched.http_stats.get("requests", 0)),
        "retries": int(fetched.http_stats.get("retries", 0)),
        "raw_responses": MetadataValue.path(landed) if landed else "none",
        "simulated": fetched.simulated,
        "rows_outside_window_dropped": fetched.out_of_window_rows,
    }
    for asset in rows:
        outcomes = [o for o in fetched.outcomes if asset_of(o.task.dataset) == asset]
        status = Counter(o.status for o in outcomes)
        if status["failed"]:
            # Not materialized: the step fails after this, so Dagster marks this asset's
            # partition failed (what did load is stored; a rerun fetches the rest).
            continue
        # A dataset the exchange does not serve for this day (out of its reach, not published
        # for a coin) is materialized with no rows and the reason, not skipped: Dagster would
        # count a skipped partition as a failed one in the backfill, and retry it forever.
        unavailable = sorted({o.detail or o.status for o in outcomes if o.status != "ok"})
        yield MaterializeResult(
            asset_key=asset,
            metadata={
                "dagster/row_count": rows[asset],
                "coins": len({o.task.coin for o in outcomes if o.status == "ok"}),
                "fetch_status": MetadataValue.json(dict(status)),
                "unavailable": "; ".join(unavailable)[:500] or "none",
                **(run_wide if asset == "ls_ratio" else {}),
            },
        )
    yield AssetCheckResult(
        check_name="rows_valid",
        asset_key="ls_ratio",
        passed=summary.rejected_rows == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "rejected_rows": summary.rejected_rows,
            "reasons": MetadataValue.json(summary.rejected_reasons),
        },
    )


def _failure_text(fetched: PartitionFetch) -> str:
    first = "\n".join(f"- {o.detail}" for o in fetched.failures[:10])
    more = len(fetched.failures) - 10
    tail = f"\n... and {more} more" if more > 0 else ""
    return (
        f"{len(fetched.failures)} fetches failed for {fetched.exchange} {fetched.day}; what "
        f"succeeded is stored, rerun the partition to retry the rest:\n{first}{tail}"
    )


class _ProgressLog:
    """Logs progress at every quarter of the partition's fetches."""

    def __init__(self, context: AssetExecutionContext, label: str) -> None:
        self.context = context
        self.label = label
        self.reported = -1

    def __call__(self, done: int, total: int) -> None:
        quarter = done * 4 // max(total, 1)
        if quarter != self.reported:
            self.reported = quarter
            self.context.log.info(f"{self.label}: {done}/{total} fetches")
