"""Derived tables: one SQL file per table in warehouse/sql, recomputed fully over the warehouse."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from pipelines.config import SQL_DIR
from pipelines.exchanges import CONNECTORS
from pipelines.universe import Universe
from pipelines.warehouse import transaction

DERIVED_TABLES = ("btc_ls", "alt_average", "heatmap_matrix")


@dataclass(frozen=True)
class AnalyticsSettings:
    lookback_days: int = 90  # trailing history for z-scores
    min_history: int = 10  # observations needed before a z-score is given


def _sql(table: str) -> str:
    return (SQL_DIR / f"{table}.sql").read_text()


def parameters(table: str, universe: Universe, settings: AnalyticsSettings) -> dict[str, object]:
    """The named parameters a table's SQL file uses (and only those: DuckDB rejects extras)."""
    available: dict[str, object] = {
        "alt_exclusions": list(universe.alt_exclusions),
        "lookback_days": settings.lookback_days,
        "min_history": settings.min_history,
    }
    text = _sql(table)
    return {name: value for name, value in available.items() if f"${name}" in text}


def refresh(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    universe: Universe,
    settings: AnalyticsSettings | None = None,
) -> int:
    """Recompute one derived table in a transaction; return its row count."""
    settings = settings or AnalyticsSettings()
    with transaction(conn):
        conn.execute(_sql(table), parameters(table, universe, settings))
    count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count[0]) if count else 0


def expected_coverage(universe: Universe, periods: tuple[str, ...]) -> pd.DataFrame:
    """Every universe coin x metric its exchange publishes x configured period."""
    return pd.DataFrame(
        [
            {"exchange": name, "coin": coin, "metric": metric, "period": period}
            for name, conn in CONNECTORS.items()
            for coin in universe.coins
            for metric in conn.METRICS
            for period in periods
        ]
    )


def refresh_coverage(
    conn: duckdb.DuckDBPyConnection, universe: Universe, periods: tuple[str, ...]
) -> int:
    conn.register("expected_coverage", expected_coverage(universe, periods))
    try:
        return refresh(conn, "coverage", universe)
    finally:
        conn.unregister("expected_coverage")
