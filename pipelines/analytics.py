"""Derived tables: one SQL file per table in warehouse/sql, recomputed fully over the warehouse."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache
from graphlib import TopologicalSorter

import duckdb
import pandas as pd

from pipelines.config import PERIOD_MS, SQL_DIR
from pipelines.exchanges import CONNECTORS
from pipelines.universe import Universe
from pipelines.warehouse import DDL_FILE, one_row, transaction

# The tables ingestion writes that are Dagster assets of their own (the ingestion multi-asset).
INGESTED_TABLES = ("ls_ratio", "klines", "open_interest")
# Refreshed by the `coverage` asset, with the expected series registered beside it.
COVERAGE_MODEL = "coverage"

_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)
_TABLE_REFERENCE = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)", re.IGNORECASE)
_TABLE_COMMENT = re.compile(r"COMMENT ON TABLE (\w+) IS '((?:[^']|'')*)'", re.IGNORECASE)


@dataclass(frozen=True)
class DerivedTable:
    """One SQL model of warehouse/sql, described by its own file: the file is the one place
    where what a table reads and what it holds are written."""

    name: str
    reads: frozenset[str]  # warehouse tables named after FROM or JOIN (not its own CTEs)
    description: str  # its COMMENT ON TABLE

    @property
    def upstream(self) -> list[str]:
        """The derived tables it reads, which must be refreshed before it."""
        return sorted(self.reads - _stored_tables())


@cache
def derived_tables() -> dict[str, DerivedTable]:
    """Every model but coverage, in dependency order (each after the tables it reads)."""
    names = sorted(p.stem for p in SQL_DIR.glob("*.sql") if p.stem != COVERAGE_MODEL)
    known = _stored_tables() | set(names)
    models = {name: _model(name, known) for name in names}
    order = TopologicalSorter({name: m.upstream for name, m in models.items()})
    return {name: models[name] for name in order.static_order()}


def _stored_tables() -> set[str]:
    """The tables ingestion and the catalogue keep (warehouse/ddl.sql)."""
    return {name.lower() for name in _CREATED_TABLE.findall(DDL_FILE.read_text())}


def _model(name: str, known: set[str]) -> DerivedTable:
    code = "\n".join(statements(name))
    comments = dict(_TABLE_COMMENT.findall(code))
    if name not in comments:
        raise ValueError(f"warehouse/sql/{name}.sql: no COMMENT ON TABLE {name} says what it holds")
    reads = {t.lower() for t in _TABLE_REFERENCE.findall(code)} & known - {name}
    return DerivedTable(name, frozenset(reads), comments[name].replace("''", "'"))


TOP_KINDS = ("top_account", "top_position")
# Whales (top traders by position size) against the crowd (all accounts, by count).
WHALE_CROWD_KINDS = ("top_position", "global_account")


@dataclass(frozen=True)
class AnalyticsSettings:
    """Every tunable number of the derived tables (SQL parameters of the same names)."""

    lookback_days: int = 90  # trailing history for heatmap z-scores
    min_history: int = 10  # earlier observations needed before a z-score is given
    zone_lookback_days: int = 90  # trailing history for signal-zone bands
    zone_lower_pct: float = 0.10  # lower band percentile of ln(ratio)
    zone_upper_pct: float = 0.90  # upper band percentile of ln(ratio)
    zone_min_history: int = 30  # earlier observations needed before any zone is declared
    divergence_margin: float = 0.05  # BTC vs alts: long = ratio > 1 + it, short < 1 / (1 + it)
    divergence_zscore_gap: float = 2.0  # |z(BTC) - z(alt average)| above it is a divergence
    divergence_side_zscore: float = 1.0  # coin/whale sides: long = own z-score > it, short < -it
    flow_momentum_length: int = 14  # candles of the Hull moving average of the buy-share change
    flow_extreme_share: float = 0.80  # one side's share of the volume that flags an extreme candle

    def __post_init__(self) -> None:
        if not 0 <= self.zone_lower_pct <= self.zone_upper_pct <= 1:
            raise ValueError("zone percentiles need 0 <= zone_lower_pct <= zone_upper_pct <= 1")
        if self.lookback_days < 1 or self.zone_lookback_days < 1:
            raise ValueError("lookback windows must be at least one day")
        if self.min_history < 2 or self.zone_min_history < 1:
            raise ValueError("min_history must be >= 2 (a spread needs two points), zones >= 1")
        divergence = (
            self.divergence_margin,
            self.divergence_zscore_gap,
            self.divergence_side_zscore,
        )
        if not all(value >= 0 for value in divergence):  # NaN fails too
            raise ValueError("divergence thresholds must be non-negative")
        if self.flow_momentum_length < 2:
            raise ValueError("flow_momentum_length must be >= 2 (its half is a window too)")
        if not 0.5 < self.flow_extreme_share <= 1:
            raise ValueError("flow_extreme_share must be above 0.5 (one side's majority) and <= 1")


def top_pair_exchanges() -> list[str]:
    """Exchanges that publish both top_account and top_position (one population, two views)."""
    return [name for name, c in CONNECTORS.items() if all(k in c.METRICS for k in TOP_KINDS)]


def whale_crowd_exchanges() -> list[str]:
    """Exchanges that publish both top_position (whales) and global_account (the crowd)."""
    return [n for n, c in CONNECTORS.items() if all(k in c.METRICS for k in WHALE_CROWD_KINDS)]


def metric_publishers() -> dict[str, list[str]]:
    """Metric kind -> the exchanges that publish it."""
    kinds = sorted({kind for c in CONNECTORS.values() for kind in c.METRICS})
    return {k: [n for n, c in CONNECTORS.items() if k in c.METRICS] for k in kinds}


def alt_universe(universe: Universe) -> list[str]:
    """The coins alt_average may average: the universe but BTC and the exclusions."""
    return [c for c in universe.coins if c != "BTC" and c not in universe.alt_exclusions]


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
        "universe_coins": list(universe.coins),
        "top_pair_exchanges": top_pair_exchanges(),
        "whale_crowd_exchanges": whale_crowd_exchanges(),
        "period_seconds": [{"period": p, "seconds": ms // 1000} for p, ms in PERIOD_MS.items()],
        **asdict(settings),
    }
    return {
        name: value for name, value in available.items() if re.search(rf"\${name}\b", statement)
    }


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


def refresh_all(
    conn: duckdb.DuckDBPyConnection,
    universe: Universe,
    settings: AnalyticsSettings | None = None,
    tables: tuple[str, ...] | None = None,
) -> dict[str, int]:
    """Recompute the derived tables in dependency order (each in its own transaction)."""
    return {table: refresh(conn, table, universe, settings) for table in tables or DERIVED_TABLES}


def expected_coverage(universe: Universe, periods: tuple[str, ...]) -> pd.DataFrame:
    """Every universe coin x metric its exchange publishes x configured period (with its length,
    which coverage_gaps measures holes in)."""
    return pd.DataFrame(
        [
            {
                "exchange": name,
                "coin": coin,
                "metric": metric,
                "period": period,
                "bucket_seconds": PERIOD_MS[period] // 1000,
            }
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


# The derived tables' names in refresh order, read from warehouse/sql once.
DERIVED_TABLES: tuple[str, ...] = tuple(derived_tables())
