"""Warehouse and analytics layers: derived tables recomputed in DuckDB SQL over the warehouse."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MaterializeResult,
    asset,
)

from pipelines.analytics import refresh, refresh_coverage
from pipelines.resources import PipelineSettings
from pipelines.universe import load_universe
from pipelines.warehouse import connect, one_row

INGESTED = [AssetKey("ls_ratio"), AssetKey("klines"), AssetKey("open_interest")]

DESCRIPTIONS = {
    "btc_ls": "BTC's long/short ratio and BTC close price per bucket, per exchange, metric and "
    "period (warehouse/sql/btc_ls.sql).",
    "alt_average": "Altcoin-average L/S per bucket: geometric mean exp(avg(ln(ratio))) and "
    "median of every coin but BTC (and configured exclusions), coin count, BTC beside it "
    "(warehouse/sql/alt_average.sql).",
    "heatmap_matrix": "One row per coin and bucket: ratio, ln(ratio) and a z-score against the "
    "coin's own trailing 90-day history (warehouse/sql/heatmap_matrix.sql).",
}


def _derived_table(name: str) -> AssetsDefinition:
    @asset(
        name=name,
        deps=INGESTED,
        group_name="analytics",
        description=DESCRIPTIONS[name],
        pool="duckdb",
        automation_condition=AutomationCondition.eager(),
    )
    def _table(context: AssetExecutionContext, settings: PipelineSettings) -> MaterializeResult:
        with connect(settings.warehouse_file()) as conn:
            rows = refresh(conn, name, load_universe())
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


btc_ls, alt_average, heatmap_matrix = (_derived_table(n) for n in DESCRIPTIONS)


@asset(
    deps=INGESTED,
    group_name="warehouse",
    pool="duckdb",
    automation_condition=AutomationCondition.eager(),
    description="Which universe coin has which metric on which exchange and period: listed or "
    "not, rows stored, first/last bucket, days fetched ok / unavailable / failed "
    "(warehouse/sql/coverage.sql).",
)
def coverage(context: AssetExecutionContext, settings: PipelineSettings) -> MaterializeResult:
    with connect(settings.warehouse_file()) as conn:
        rows = refresh_coverage(conn, load_universe(), settings.period_list())
        gaps = one_row(conn, "SELECT count(*) FROM coverage WHERE listed AND n_rows = 0")
        unlisted = one_row(
            conn, "SELECT count(DISTINCT exchange || coin) FROM coverage WHERE NOT listed"
        )
    return MaterializeResult(
        metadata={
            "rows": rows,
            "listed_series_without_rows": int(gaps[0]) if gaps else 0,
            "coins_not_listed": int(unlisted[0]) if unlisted else 0,
        }
    )
