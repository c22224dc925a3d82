"""Derived tables: one SQL file per table in warehouse/sql, kept up to date incrementally.

Each refresh recomputes only the buckets that the changes noted in derived_changes affect (and
reads only the look-back its windows need); a missing table, a new SQL file, other settings or
another universe rebuild a table from all history, as `lsr rebuild` does. A model's file may
hand a step along each series to numpy (a `PYTHON` line, pipelines/rolling.py) where SQL's
window functions would cost several times more.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from graphlib import TopologicalSorter

import duckdb
import pandas as pd
import pyarrow as pa

from pipelines.config import PERIOD_MS, SQL_DIR
from pipelines.exchanges import CONNECTORS
from pipelines.queries import one_row, table_names, table_type, transaction
from pipelines.rolling import with_hull_momentum, with_trailing_sums
from pipelines.universe import Universe
from pipelines.warehouse import DDL_FILE

# The tables ingestion writes that are Dagster assets of their own (the ingestion multi-asset).
INGESTED_TABLES = ("ls_ratio", "klines", "open_interest")
# Refreshed by the `coverage` asset, with the expected series registered beside it.
COVERAGE_MODEL = "coverage"

_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)", re.IGNORECASE)
_TABLE_REFERENCE = re.compile(r"\b(?:FROM|JOIN)\s+(\w+)", re.IGNORECASE)
_TABLE_COMMENT = re.compile(r"COMMENT ON (?:TABLE|VIEW) (\w+) IS '((?:[^']|'')*)'", re.IGNORECASE)
_STORED_TABLE = re.compile(r"CREATE OR REPLACE TABLE (\w+) AS\s", re.IGNORECASE)


@dataclass(frozen=True)
class DerivedTable:
    """One SQL model of warehouse/sql, described by its own file: the file is the one place
    where what a table reads and what it holds are written."""

    name: str
    reads: frozenset[str]  # warehouse tables named after FROM or JOIN (not its own CTEs)
    description: str  # its COMMENT ON TABLE (or VIEW)
    # The table its rows are written to: the name itself, or, for a model whose readers see a
    # view of that name (CREATE OR REPLACE VIEW <name>), the table the view reads.
    stored: str

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
    stored = _STORED_TABLE.findall(code)
    if len(stored) != 1 or (stored[0] != name and not _creates_view(code, name)):
        raise ValueError(
            f"warehouse/sql/{name}.sql: one CREATE OR REPLACE TABLE, named {name} or read by a "
            f"CREATE OR REPLACE VIEW {name}; found tables {stored}"
        )
    reads = {t.lower() for t in _TABLE_REFERENCE.findall(code)} & known - {name}
    return DerivedTable(name, frozenset(reads), comments[name].replace("''", "'"), stored[0])


def _creates_view(code: str, name: str) -> bool:
    return re.search(rf"CREATE OR REPLACE VIEW {name}\s", code, re.IGNORECASE) is not None


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


# How a change upstream becomes the buckets a table recomputes. By default the same exchange and
# period from the same bucket on; the rules below widen it.
WINDOW_RULES: dict[str, str] = {
    # A changed 5m or 1h candle also changes the 4h and 1d candles it lies in (their flow is
    # estimated from it): every period of the exchange from the day before on.
    "candle_flow": "days",
    # One row per coin across exchanges: a change on any exchange recomputes the period for all.
    "cross_exchange": "exchanges",
    "cross_lines": "exchanges",
    # "Now" is the latest bucket: a few rows, cheaper to rebuild than to reason about.
    "whale_crowd_now": "whole",
}
# Rebuilt from all history in one pass rather than an exchange (or period) at a time: tables a
# few hundred thousand rows a year, whose pass over what they read costs more than their rows,
# so six slices read it six times. Measured on a generated year (5 years): btc_ls 1.54 -> 0.52 s
# (8.6 -> 3.3), signal_zones 4.28 -> 2.86 s (32.7 -> 27.6), btc_price 0.33 -> 0.13 s; the peak
# stays below heatmap_matrix's (signal_zones' 5 years: 0.93 GB against 2.2). alt_average stays
# sliced: its median holds every alt's ratio per bucket, and a slice saves a fifth of its time.
REBUILT_IN_ONE_PASS = frozenset({"btc_ls", "btc_price", "signal_zones"})
# Marks a full rebuild in derived_changes: every exchange and period, from the first bucket on.
EVERYTHING = "*"
BEGINNING = datetime(1970, 1, 1)


@dataclass(frozen=True)
class RefreshResult:
    table: str
    rows: int  # rows the table holds afterwards
    full: bool  # rebuilt from all history (else only the changed buckets were recomputed)
    since: datetime | None  # the earliest bucket recomputed (None: nothing had changed)


def refresh(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    universe: Universe,
    settings: AnalyticsSettings | None = None,
    *,
    full: bool = False,
) -> int:
    """Bring one derived table up to date in a transaction; return its row count."""
    return refresh_table(conn, table, universe, settings, full=full).rows


def refresh_table(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    universe: Universe,
    settings: AnalyticsSettings | None = None,
    *,
    full: bool = False,
) -> RefreshResult:
    """Recompute the buckets of `table` that changes to what it reads since its last refresh
    affect (derived_changes), or all of it when asked, when it does not exist yet, or when its
    SQL, settings or universe differ from the last build's."""
    settings = settings or AnalyticsSettings()
    stored = derived_tables()[table].stored
    code = statements(table)
    bound = [(statement, parameters(statement, universe, settings)) for statement in code]
    fingerprint = _fingerprint(bound)
    with transaction(conn):
        # What a rebuild killed part-way left aside: nothing reads it, and a rebuild starts over.
        _execute(conn, f"DROP TABLE IF EXISTS {_aside(stored)}")
        latest = int(one_row(conn, "SELECT coalesce(max(id), 0) FROM derived_changes")[0])
        state = one_row(
            conn, "SELECT consumed_id, fingerprint FROM derived_state WHERE model = ?", [table]
        )
        built = {table, stored} <= table_names(conn)  # the view too, where there is one
        stale = not state or state[1] != fingerprint or not built
        window = None if full or stale else _window(conn, table, int(state[0]))
        if window is not None and EVERYTHING not in set(window["exchange"]):
            since = None if window.empty else window["since"].min().to_pydatetime()
            if since is not None:
                _recompute(conn, stored, bound, window)
            return _finish(conn, table, (latest, fingerprint), window=window, since=since)
    try:
        _rebuild(conn, stored, bound)
    except BaseException:
        with suppress(duckdb.Error):  # the error that stopped the rebuild is the one to see
            _execute(conn, f"DROP TABLE IF EXISTS {_aside(stored)}")
        raise
    with transaction(conn):
        _swap_in(conn, table, stored, bound)
        return _finish(conn, table, (latest, fingerprint), window=None, since=BEGINNING)


def _finish(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    taken_in: tuple[int, str],
    *,
    window: pd.DataFrame | None,
    since: datetime | None,
) -> RefreshResult:
    """Record what the refresh took in (the last change note and the fingerprint) and report."""
    consumed, fingerprint = taken_in
    full = window is None
    _record(conn, table, consumed, fingerprint, full=full, window=window, since=since)
    prune_changes(conn)
    rows = int(one_row(conn, f"SELECT count(*) FROM {table}")[0])
    return RefreshResult(table, rows, full, since)


def _execute(
    conn: duckdb.DuckDBPyConnection, sql: str, params: object = None
) -> list[tuple[object, ...]]:
    """Run a statement to the end: DuckDB 2.0 runs a DELETE, INSERT or UPDATE only as far as its
    result is fetched, and an unfetched one blocks or cuts the next statement."""
    return conn.execute(sql, params).fetchall()


# A model's steps done in Python rather than SQL (pipelines/rolling.py), written in its file as
#   PYTHON <step>(<source table>, $<setting>) INTO <temp table>;
_PYTHON_STEP = re.compile(r"PYTHON (\w+)\((\w+), \$(\w+)\) INTO (\w+)")


def _trailing_sums(rows: pa.Table, lookback_days: int) -> pa.Table:
    return with_trailing_sums(rows, lookback_days * 86_400_000_000)  # t is in microseconds


PYTHON_STEPS: dict[tuple[str, str], Callable[[pa.Table, int], pa.Table]] = {
    # (step, the setting it takes) -> what it makes of a chunk of rows
    ("trailing_sums", "lookback_days"): _trailing_sums,
    ("hull_momentum", "flow_momentum_length"): with_hull_momentum,
}
# Rows of the source a step holds in memory at once (a few series at a time, never one split).
STEP_CHUNK_ROWS = 500_000


def _run(conn: duckdb.DuckDBPyConnection, statement: str, params: dict[str, object]) -> None:
    """Run one statement of a model: SQL, or a PYTHON step."""
    if not statement.upper().startswith("PYTHON "):
        _execute(conn, statement, params)
        return
    found = _PYTHON_STEP.fullmatch(statement)
    name, source, setting, target = found.groups() if found else ("", "", "", "")
    step = PYTHON_STEPS.get((name, setting))
    value = params.get(setting)
    if step is None or not isinstance(value, int):
        known = ", ".join(f"PYTHON {n}(<table>, ${p}) INTO <table>" for n, p in PYTHON_STEPS)
        raise ValueError(f"a model's PYTHON step is one of {known}, not: {statement}")
    _run_step(conn, source, target, lambda rows: step(rows, value))


def _run_step(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    target: str,
    step: Callable[[pa.Table], pa.Table],
) -> None:
    """TEMP TABLE `target`: what `step` makes of the source's rows. The source is read a few
    whole series at a time (sid ranges of about STEP_CHUNK_ROWS rows), in order of sid then t,
    so memory holds one chunk; DuckDB may spill the target."""
    _execute(conn, f"DROP TABLE IF EXISTS {target}")
    for chunk, (low, high) in enumerate(_sid_ranges(conn, source)):
        rows = conn.sql(
            f"SELECT * FROM {source} WHERE sid BETWEEN $low AND $high ORDER BY sid, t",
            params={"low": low, "high": high},
        ).to_arrow_table()
        conn.register("_chunk", step(rows))
        try:
            if chunk == 0:
                _execute(conn, f"CREATE TEMP TABLE {target} AS SELECT * FROM _chunk")
            else:
                with _serial_if_empty(conn, target):
                    _execute(conn, f"INSERT INTO {target} SELECT * FROM _chunk")
        finally:
            with suppress(duckdb.Error):  # in an aborted transaction: the error above is the one
                conn.unregister("_chunk")


def _sid_ranges(conn: duckdb.DuckDBPyConnection, source: str) -> list[tuple[int, int]]:
    """Consecutive sid ranges of about STEP_CHUNK_ROWS rows of `source` each (a series larger
    than that alone)."""
    ranges = conn.execute(
        f"""
        SELECT min(sid), max(sid)
        FROM (
            SELECT sid, sum(count(*)) OVER (ORDER BY sid) AS upto
            FROM {source}
            GROUP BY sid
        )
        GROUP BY (upto - 1) // $rows
        ORDER BY 1
        """,
        {"rows": STEP_CHUNK_ROWS},
    ).fetchall()
    return [(int(low), int(high)) for low, high in ranges] or [(0, -1)]


def _fingerprint(bound: list[tuple[str, dict[str, object]]]) -> str:
    """The SQL and every value it is run with: what a table's rows follow from besides data."""
    text = json.dumps([[s, sorted(p.items())] for s, p in bound], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _window(conn: duckdb.DuckDBPyConnection, table: str, consumed: int) -> pd.DataFrame:
    """(exchange, period, since) the table must recompute for the changes it has not taken in."""
    model = derived_tables()[table]
    rule = WINDOW_RULES.get(table, "series")
    pending = conn.execute(
        """
        SELECT exchange, period, min(since) AS since
        FROM derived_changes
        WHERE id > $consumed AND list_contains($reads, source)
        GROUP BY exchange, period
        """,
        {"consumed": consumed, "reads": sorted(model.reads)},
    ).df()
    if rule == "whole" and not pending.empty:
        return _everything()
    if pending.empty or EVERYTHING in set(pending["exchange"]) or rule == "series":
        return pending
    if rule == "days":
        first = pending.groupby("exchange")["since"].min().dt.floor("D") - pd.Timedelta(days=1)
        return _spread(first.reset_index(), "period", list(PERIOD_MS))
    first = pending.groupby("period")["since"].min()  # rule "exchanges"
    return _spread(first.reset_index(), "exchange", list(CONNECTORS))


def _everything() -> pd.DataFrame:
    """The note of a full rebuild: every exchange and period, from the first bucket on."""
    return pd.DataFrame({"exchange": [EVERYTHING], "period": [EVERYTHING], "since": [BEGINNING]})


def _spread(frame: pd.DataFrame, column: str, values: list[str]) -> pd.DataFrame:
    """Each row once for every value of `column`."""
    return frame.merge(pd.DataFrame({column: values}), how="cross")[["exchange", "period", "since"]]


def _aside(table: str) -> str:
    """Where a full rebuild builds the table, out of the readers' way until it is complete."""
    return f"{table}__rebuild"


def _rebuild(
    conn: duckdb.DuckDBPyConnection, table: str, bound: list[tuple[str, dict[str, object]]]
) -> None:
    """Compute the stored table from all history into its aside table, one slice of history per
    transaction: the first slice creates it, the others are inserted as a refresh inserts
    them. Committing each slice lets DuckDB write the rows out and free the memory they held
    (in one transaction a year's heatmap spills past the memory limit and takes twice as long),
    and readers keep the old table, whole, until _swap_in."""
    aside = _aside(table)
    renamed = [(_renamed(s, table, aside), p) for s, p in bound if not _is_catalogue(s)]
    first, *rest = _slices(table)
    with transaction(conn), _refresh_window(conn, first):
        for statement, params in renamed:
            _run(conn, statement, params)
    for window in rest:
        with transaction(conn):
            _recompute(conn, aside, renamed, window, rebuilding=True)


def _swap_in(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    stored: str,
    bound: list[tuple[str, dict[str, object]]],
) -> None:
    """Replace the stored table by its completed rebuild, then create the model's view and
    comments (in the caller's transaction: readers see the old table or the new one, never
    neither)."""
    _drop_relation(conn, stored)
    if stored != table:  # the view is made anew below; an older warehouse may hold a table
        _drop_relation(conn, table)
    _execute(conn, f"ALTER TABLE {_aside(stored)} RENAME TO {stored}")
    for statement, params in bound:
        if _is_catalogue(statement):
            _execute(conn, statement, params)


def _drop_relation(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the table or view `name`, if there is one (DROP TABLE refuses a view)."""
    kind = table_type(conn, name)
    if kind is not None:
        _execute(conn, f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} {name}")


def _is_catalogue(statement: str) -> bool:
    """A statement that describes the stored rows rather than computing them: its view and
    comments, run once a rebuild is swapped in."""
    upper = statement.upper()
    return upper.startswith("COMMENT ON") or upper.startswith("CREATE OR REPLACE VIEW")


def _renamed(statement: str, table: str, name: str) -> str:
    """The statement writing and reading `name` where it wrote and read `table`."""
    return re.sub(rf"\b{table}\b", name, statement)


def _slices(table: str) -> list[pd.DataFrame]:
    """A full rebuild's windows: all history of one exchange at a time (of one period at a time
    for the tables across exchanges), so that sorts and joins hold a sixth of the rows, within
    DuckDB's memory limit, not all of them; all of it at once for REBUILT_IN_ONE_PASS."""
    everything = pd.DataFrame(
        [(e, p, BEGINNING) for e in CONNECTORS for p in PERIOD_MS],
        columns=["exchange", "period", "since"],
    )
    rule = WINDOW_RULES.get(table, "series")
    if rule == "whole" or table in REBUILT_IN_ONE_PASS:
        return [everything]
    by = "period" if rule == "exchanges" else "exchange"
    return [rows.reset_index(drop=True) for _, rows in everything.groupby(by, sort=False)]


def _recompute(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    bound: list[tuple[str, dict[str, object]]],
    window: pd.DataFrame,
    *,
    rebuilding: bool = False,
) -> None:
    """Delete the table's rows in the window and insert them recomputed. The model's SQL reads
    only what the window needs (refresh_window); the rows it returns outside the
    window (the look-back its windows needed) are dropped here. A rebuild's slices do not
    overlap: there is nothing to delete, and the table is not empty within the transaction
    (see _serial_if_empty), so the insert runs on every thread."""
    empty = conn.execute(f"SELECT * FROM {table} LIMIT 0")
    columns = {d[0] for d in empty.description or []}
    empty.fetchall()
    scope = (
        "refresh_window"
        if "exchange" in columns
        else "(SELECT period, min(since) AS since FROM refresh_window GROUP BY period)"
    )
    match = " AND ".join(f"w.{c} = t.{c}" for c in ("exchange", "period") if c in columns)
    with _refresh_window(conn, window):
        for statement, params in bound:
            if _is_catalogue(statement):
                continue
            found = _STORED_TABLE.match(statement)
            if not found or found[1] != table:
                _run(conn, statement, params)
                continue
            if not rebuilding:
                _execute(
                    conn,
                    f"DELETE FROM {table} AS t USING {scope} AS w "
                    f"WHERE {match} AND t.ts >= w.since",
                )
            with nullcontext() if rebuilding else _serial_if_empty(conn, table):
                _execute(
                    conn,
                    f"INSERT INTO {table} SELECT t.* FROM ({statement[found.end() :]}) AS t "
                    f"SEMI JOIN {scope} AS w ON {match} AND t.ts >= w.since",
                    params,
                )


@contextmanager
def _serial_if_empty(conn: duckdb.DuckDBPyConnection, table: str) -> Iterator[None]:
    """One thread for an insert into a table that holds no row in this transaction.

    DuckDB 2.0.0 loses a parallel insert of more than a row group (~122,880 rows) into a table
    that is empty within the transaction (created by it, or emptied): the rows are invisible
    and gone at commit. A refresh whose window covers every row (a young warehouse) empties
    the table. Inserts into a table that holds rows are not affected, nor are those into a
    table created empty by an earlier, committed transaction: a rebuild's later slices
    (tests/test_incremental.py rebuilds a table whose first slice is empty to keep it so).
    """
    if one_row(conn, f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)")[0]:
        yield
        return
    threads = int(one_row(conn, "SELECT current_setting('threads')")[0])
    _execute(conn, "SET threads = 1")
    yield  # after an error the transaction is rolled back and the connection closed anyway
    _execute(conn, f"SET threads = {threads}")


@contextmanager
def _refresh_window(conn: duckdb.DuckDBPyConnection, window: pd.DataFrame) -> Iterator[None]:
    """The window as TEMP TABLE refresh_window (exchange, period, since), which the models read
    to skip what they do not need. Created inside the refresh's transaction: a failed refresh's
    rollback removes it, so it is dropped only on success (in an aborted transaction the drop
    would fail and hide the error)."""
    conn.register("_window", window)
    try:
        _execute(
            conn,
            "CREATE OR REPLACE TEMP TABLE refresh_window AS "
            "SELECT exchange::VARCHAR AS exchange, period::VARCHAR AS period, "
            "since::TIMESTAMP AS since FROM _window",
        )
    finally:
        conn.unregister("_window")
    yield
    _execute(conn, "DROP TABLE temp.refresh_window")


def _record(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    consumed: int,
    fingerprint: str,
    *,
    full: bool,
    window: pd.DataFrame | None,
    since: datetime | None,
) -> None:
    """Note what the table has taken in, from which bucket on it last recomputed rows (what its
    checks examine) and, for what reads it, which of its buckets changed."""
    if full:
        window = _everything()
    if window is not None and not window.empty:
        conn.register("_changed", window)
        try:
            _execute(
                conn,
                "INSERT INTO derived_changes (source, exchange, period, since, logged_at) "
                "SELECT ?, exchange, period, since, now()::TIMESTAMP FROM _changed",
                [table],
            )
        finally:
            conn.unregister("_changed")
    _execute(
        conn,
        """
        INSERT INTO derived_state AS s
        VALUES ($table, $consumed, $fingerprint, now(), now(), coalesce($since, $beginning))
        ON CONFLICT DO UPDATE SET consumed_id = excluded.consumed_id,
            fingerprint = excluded.fingerprint, refreshed_at = excluded.refreshed_at,
            rebuilt_at = CASE WHEN $full THEN excluded.rebuilt_at ELSE s.rebuilt_at END,
            recomputed_since = coalesce($since, s.recomputed_since)
        """,
        {
            "table": table,
            "consumed": consumed,
            "fingerprint": fingerprint,
            "full": full,
            "since": since,
            "beginning": BEGINNING,
        },
    )


def refresh_all(
    conn: duckdb.DuckDBPyConnection,
    universe: Universe,
    settings: AnalyticsSettings | None = None,
    tables: tuple[str, ...] | None = None,
    *,
    full: bool = False,
) -> dict[str, int]:
    """Bring the derived tables up to date in dependency order (each in its own transaction);
    `full` rebuilds them from all history."""
    return {
        table: refresh(conn, table, universe, settings, full=full)
        for table in tables or DERIVED_TABLES
    }


def prune_changes(conn: duckdb.DuckDBPyConnection) -> None:
    """Drop the change notes every reader has taken in: each derived table and, once the lake
    has written a table, the lake's tables (pipelines/lake.py). Within the caller's
    transaction: each refresh does it, so the log stays about one note per table and write."""
    taken = one_row(
        conn,
        """
        SELECT least(min(consumed_id), (SELECT min(consumed_id) FROM lake_tables
                                        WHERE list_contains(?, table_name))),
               count(*)
        FROM derived_state WHERE list_contains(?, model)
        """,
        [[*INGESTED_TABLES, *DERIVED_TABLES], list(DERIVED_TABLES)],
    )
    if taken and taken[1] == len(DERIVED_TABLES):
        _execute(conn, "DELETE FROM derived_changes WHERE id <= ?", [taken[0]])


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
        with transaction(conn):
            for statement in statements(COVERAGE_MODEL):
                _execute(conn, statement, parameters(statement, universe, AnalyticsSettings()))
            return int(one_row(conn, "SELECT count(*) FROM coverage")[0])
    finally:
        conn.unregister("expected_coverage")


# The derived tables' names in refresh order, read from warehouse/sql once.
DERIVED_TABLES: tuple[str, ...] = tuple(derived_tables())
