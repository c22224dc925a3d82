"""Derived tables: one SQL file per table in warehouse/sql, recomputed fully over the warehouse."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from pipelines.config import SQL_DIR
from pipelines.exchanges import CONNECTORS
from pipelines.universe import Universe
from pipelines.warehouse import one_row, transaction

DERIVED_TABLES = ("btc_ls", "alt_average", "heatmap_matrix")


@dataclass(frozen=True)
class AnalyticsSettings:
    lookback_days: int = 90  # trailing history for z-scores
    min_history: int = 10  # observations needed before a z-score is given


def _sql(table: str) -> str:
    return (SQL_DIR / f"{table}.sql").read_text()


def statements(table: str) -> list[str]:
    """The SQL file's statements (the table, then its comments), split on line-ending `;`.

    Whole-line `--` comments are dropped first: they may hold a `;` or a `$name` of their own.
    """
    code = "\n".join(
        line for line in _sql(table).splitlines() if not line.lstrip().startswith("--")
    )
    return [s.strip().rstrip(";") for s in code.split(";\n") if s.strip().rstrip(";").strip()]


def parameters(
    statement: str, universe: Universe, settings: AnalyticsSettings
) -> dict[str, object]:
    """The named parameters a statement uses (and only those: DuckDB rejects extras)."""
    available: dict[str, object] = {
        "alt_exclusions": list(universe.alt_exclusions),
        "lookback_days": settings.lookback_days,
        "min_history": settings.min_history,
    }
    return {name: value for name, value in available.items() if f"${name}" in statement}


def refresh(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    universe: Universe,
    settings: AnalyticsSettings | None = None,
) -> int:
    """Recompute one derived table in a transaction; return its row count."""
    settings = settings or AnalyticsSettings()
    with transaction(conn):
        for statement in statements(table):
            conn.execute(statement, parameters(statement, universe, settings))
    return int(one_row(conn, f"SELECT count(*) FROM {table}")[0])


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
