"""Warehouse and analytics layers: derived tables kept current in DuckDB SQL over the warehouse."""

import time

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from pipelines.analytics import (
    DERIVED_TABLES,
    INGESTED_TABLES,
    AnalyticsSettings,
    DerivedTable,
    RefreshResult,
    derived_tables,
    refresh_coverage,
    refresh_table,
)
from pipelines.lake import refresh_lake
from pipelines.queries import one_row
from pipelines.resources import PipelineSettings
from pipelines.universe import load_universe
from pipelines.warehouse import connect

INGESTED = [AssetKey(table) for table in INGESTED_TABLES]
_DEFAULTS = AnalyticsSettings()


class AnalyticsConfig(Config):
    """The derived tables' tunables (run config; the defaults are AnalyticsSettings')."""

    lookback_days: int = Field(
        default=_DEFAULTS.lookback_days, description="Trailing days of history for z-scores"
    )
    min_history: int = Field(
        default=_DEFAULTS.min_history, description="Earlier observations before a z-score"
    )
    zone_lookback_days: int = Field(
        default=_DEFAULTS.zone_lookback_days, description="Trailing days for signal-zone bands"
    )
    zone_lower_pct: float = Field(
        default=_DEFAULTS.zone_lower_pct, description="Lower band percentile of ln(ratio), 0..1"
    )
    zone_upper_pct: float = Field(
        default=_DEFAULTS.zone_upper_pct, description="Upper band percentile of ln(ratio), 0..1"
    )
    zone_min_history: int = Field(
        default=_DEFAULTS.zone_min_history,
        description="Earlier observations before any signal zone is declared",
    )
    divergence_margin: float = Field(
        default=_DEFAULTS.divergence_margin,
        description="BTC vs alts: long = ratio > 1 + margin; short = ratio < 1 / (1 + margin)",
    )
    divergence_zscore_gap: float = Field(
        default=_DEFAULTS.divergence_zscore_gap,
        description="|z(BTC) - z(alt average)| above it is a zscore_divergence",
    )
    divergence_side_zscore: float = Field(
        default=_DEFAULTS.divergence_side_zscore,
        description="Coin and whale/crowd divergence: a side is long when its series' own "
        "z-score is above it, short when below minus it",
    )
    flow_momentum_length: int = Field(
        default=_DEFAULTS.flow_momentum_length,
        description="Candles of the Hull moving average of candle flow's buy-share change",
    )
    flow_extreme_share: float = Field(
        default=_DEFAULTS.flow_extreme_share,
        description="Share of a candle's volume on one side that flags it extreme (0.5 .. 1)",
    )

    rebuild: bool = Field(
        default=False,
        description="Recompute from all history instead of only the buckets changed since the "
        "last refresh (what `lsr rebuild` and the rebuild_derived job ask)",
    )

    def settings(self) -> AnalyticsSettings:
        return AnalyticsSettings(**self.model_dump(exclude={"rebuild"}))


def _derived_table(model: DerivedTable) -> AssetsDefinition:
    @asset(
        name=model.name,
        deps=[AssetKey(table) for table in sorted(model.reads & ASSET_TABLES)],
        group_name="analytics",
        description=f"{model.description} (warehouse/sql/{model.name}.sql)",
        pool="duckdb",
    )
    def _table(
        context: AssetExecutionContext, settings: PipelineSettings, config: AnalyticsConfig
    ) -> MaterializeResult:
        start = time.perf_counter()
        with connect(settings.warehouse_file()) as conn:
            result = refresh_table(
                conn, model.name, load_universe(), config.settings(), full=config.rebuild
            )
            span = one_row(conn, f"SELECT min(ts), max(ts) FROM {model.name}")
        recomputed = _recomputed(result)
        context.log.info(f"{model.name}: {result.rows} rows; {recomputed}")
        return MaterializeResult(
            metadata={
                "rows": result.rows,
                "recomputed": recomputed,
                "seconds": round(time.perf_counter() - start, 3),
                "first_ts": str(span[0] if span else None),
                "last_ts": str(span[1] if span else None),
            }
        )

    return _table


def _recomputed(result: RefreshResult) -> str:
    if result.full:
        return "all history (rebuilt)"
    if result.since is None:
        return "nothing (no change since the last refresh)"
    return f"buckets from {result.since:%Y-%m-%d %H:%M} on"


# Tables that are assets: a derived table depends on those it reads, whatever else it joins.
ASSET_TABLES = {*INGESTED_TABLES, *DERIVED_TABLES}
DERIVED_ASSETS = [_derived_table(model) for model in derived_tables().values()]


@asset(
    deps=INGESTED,
    group_name="warehouse",
    pool="duckdb",
    description="Which universe coin has which metric on which exchange and period: listed or "
    "not, rows stored, first/last bucket, holes, days fetched ok / unavailable / failed; and "
    "coverage_gaps, every hole longer than one bucket with its cause "
    "(warehouse/sql/coverage.sql).",
)
def coverage(context: AssetExecutionContext, settings: PipelineSettings) -> MaterializeResult:
    with connect(settings.warehouse_file()) as conn:
        rows = refresh_coverage(conn, load_universe(), settings.period_list())
        empty = one_row(conn, "SELECT count(*) FROM coverage WHERE listed AND n_rows = 0")
        unlisted = one_row(
            conn, "SELECT count(DISTINCT exchange || coin) FROM coverage WHERE NOT listed"
        )
        holes = one_row(
            conn, "SELECT count(*), coalesce(sum(missing_buckets), 0) FROM coverage_gaps"
        )
    return MaterializeResult(
        metadata={
            "rows": rows,
            "listed_series_without_rows": int(empty[0]) if empty else 0,
            "coins_not_listed": int(unlisted[0]) if unlisted else 0,
            "gaps": int(holes[0]) if holes else 0,
            "missing_buckets_in_gaps": int(holes[1]) if holes else 0,
        }
    )


class LakeConfig(Config):
    """How the lake is refreshed (run config)."""

    full: bool = Field(
        default=False,
        description="Rewrite every partition of every table instead of only those whose rows "
        "changed since the last refresh (what `lsr export --full` asks); removes stray files",
    )


@asset(
    deps=[*INGESTED, AssetKey("coverage"), *(AssetKey(n) for n in DERIVED_TABLES)],
    group_name="analytics",
    pool="duckdb",
    description="The Parquet lake: ls_ratio, klines, open_interest, every derived table and "
    "coverage as Hive-partitioned files, <lake>/<table>/exchange=<x>/date=<YYYY-MM-DD>/"
    "part-0.parquet (zstd, timestamps UTC, column comments as field metadata), which DuckDB, "
    "Polars or Spark scan without the warehouse's lock. Only partitions whose rows changed "
    "are rewritten, each replaced atomically (pipelines/lake.py).",
)
def parquet_lake(
    context: AssetExecutionContext, settings: PipelineSettings, config: LakeConfig
) -> MaterializeResult:
    root = settings.lake_dir()
    results = refresh_lake(settings.warehouse_file(), root, full=config.full)
    written = sum(r.written for r in results)
    context.log.info(
        f"lake {root}: {written} partitions written, "
        f"{sum(r.removed for r in results)} removed, of {len(results)} tables"
    )
    return MaterializeResult(
        metadata={
            "root": MetadataValue.path(str(root)),
            "tables": len(results),
            "full": any(r.full for r in results),
            "partitions_written": written,
            "partitions_removed": sum(r.removed for r in results),
            "rows_written": sum(r.rows_written for r in results),
            "seconds": round(sum(r.seconds for r in results), 3),
            "written_per_table": MetadataValue.json(
                {r.table: r.written for r in results if r.written}
            ),
        }
    )
