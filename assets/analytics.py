"""Warehouse and analytics layers: derived tables recomputed in DuckDB SQL over the warehouse."""

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

from pipelines.analytics import AnalyticsSettings, refresh, refresh_coverage
from pipelines.export import export_tables, exports_dir
from pipelines.resources import PipelineSettings
from pipelines.universe import load_universe
from pipelines.warehouse import connect, one_row

INGESTED = [AssetKey("ls_ratio"), AssetKey("klines"), AssetKey("open_interest")]
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
        description="long: ratio > 1 + margin; short: ratio < 1 / (1 + margin)",
    )
    divergence_zscore_gap: float = Field(
        default=_DEFAULTS.divergence_zscore_gap,
        description="|z(BTC) - z(alt average)| above it is a zscore_divergence",
    )

    def settings(self) -> AnalyticsSettings:
        return AnalyticsSettings(**self.model_dump())


DESCRIPTIONS = {
    "heatmap_matrix": "One row per coin and bucket: ratio, ln(ratio) and a z-score against the "
    "coin's own trailing 90-day history (warehouse/sql/heatmap_matrix.sql).",
    "btc_ls": "BTC's long/short ratio and BTC close price per bucket, per exchange, metric and "
    "period (warehouse/sql/btc_ls.sql).",
    "alt_average": "Altcoin-average L/S per bucket: geometric mean exp(avg(ln(ratio))) and "
    "median of every universe coin but BTC (and configured exclusions), coin count, BTC beside "
    "it (warehouse/sql/alt_average.sql).",
    "signal_zones": "BTC and altcoin-average ratio against rolling 10th/90th percentile bands of "
    "ln(ratio) over the trailing 90 days: zone upper/lower, market_wide when both agree "
    "(warehouse/sql/signal_zones.sql).",
    "divergence": "top_account vs top_position per coin (cautious_whale, whale_against_trend, "
    "consensus_long/short) and BTC vs the alt average per metric (regime shift), with the "
    "thresholds as columns (warehouse/sql/divergence.sql).",
    "cross_exchange": "Per coin, metric, period and bucket across exchanges: mean per-exchange "
    "z-score and open-interest-weighted mean ln(ratio) (warehouse/sql/cross_exchange.sql).",
    "candle_flow": "Volume-imbalance estimate per candle from klines: taker buy share (Binance) "
    "or up-candle volume share of finer candles; heatmap-ready ln_flow_ratio "
    "(warehouse/sql/candle_flow.sql).",
}

# What each table's SQL reads besides the ingested tables (see pipelines.analytics).
UPSTREAM: dict[str, list[str]] = {
    "heatmap_matrix": [],
    "btc_ls": ["heatmap_matrix"],
    "alt_average": ["heatmap_matrix"],
    "signal_zones": ["btc_ls", "alt_average"],
    "divergence": ["heatmap_matrix", "signal_zones"],
    "cross_exchange": ["heatmap_matrix"],
    "candle_flow": [],
}


def _derived_table(name: str) -> AssetsDefinition:
    @asset(
        name=name,
        deps=[*INGESTED, *(AssetKey(d) for d in UPSTREAM[name])],
        group_name="analytics",
        description=DESCRIPTIONS[name],
        pool="duckdb",
    )
    def _table(
        context: AssetExecutionContext, settings: PipelineSettings, config: AnalyticsConfig
    ) -> MaterializeResult:
        with connect(settings.warehouse_file()) as conn:
            rows = refresh(conn, name, load_universe(), config.settings())
            span = one_row(conn, f"SELECT min(ts), max(ts) FROM {name}")
        context.log.info(f"{name}: {rows} rows")
        return MaterializeResult(
            metadata={
                "rows": rows,
                "first_ts": str(span[0] if span else None),
                "last_ts": str(span[1] if span else None),
            }
        )

    return _table


heatmap_matrix, btc_ls, alt_average, signal_zones, divergence, cross_exchange, candle_flow = (
    _derived_table(n) for n in DESCRIPTIONS
)
DERIVED_ASSETS = [
    heatmap_matrix,
    btc_ls,
    alt_average,
    signal_zones,
    divergence,
    cross_exchange,
    candle_flow,
]


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


@asset(
    deps=[AssetKey("coverage"), *(AssetKey(n) for n in DESCRIPTIONS)],
    group_name="analytics",
    pool="duckdb",
    description="Every derived table (and coverage) written to <warehouse dir>/exports/"
    "<table>.parquet with pyarrow (zstd, column comments as field metadata, timestamps UTC), "
    "each file replaced atomically, for tools that do not speak DuckDB (pipelines/export.py).",
)
def parquet_exports(
    context: AssetExecutionContext, settings: PipelineSettings
) -> MaterializeResult:
    folder = exports_dir(settings.warehouse_file())
    with connect(settings.warehouse_file()) as conn:
        written = export_tables(conn, folder)
    sizes = {path.stem: path.stat().st_size for path in written}
    context.log.info(f"exported {len(written)} tables to {folder}")
    return MaterializeResult(
        metadata={
            "folder": MetadataValue.path(str(folder)),
            "files": len(written),
            "bytes": MetadataValue.json(sizes),
        }
    )
