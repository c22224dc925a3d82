"""The DuckDB warehouse: connecting (one writer at a time), DDL, idempotent upserts.

Nothing here opens the database at import time. Writers open the file only for the write
transaction and close it at once, so fetches never hold the lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd
from filelock import FileLock, Timeout

from pipelines.config import WAREHOUSE_DIR, warehouse_path
from pipelines.exchanges.base import LS_COLUMNS, SOURCE, with_source
from pipelines.ingest import Outcome, PartitionFetch
from pipelines.queries import one_row, table_exists, transaction
from pipelines.universe import Universe
from schemas.ls_ratio import KEY as LS_KEY
from schemas.ls_ratio import split_valid

DDL_FILE = WAREHOUSE_DIR / "ddl.sql"


def lock_wait_seconds() -> float:
    """How long a writer waits for the file (`LSR_LOCK_WAIT_SECONDS`, default 120)."""
    return float(os.environ.get("LSR_LOCK_WAIT_SECONDS", "120"))


def duckdb_resources() -> dict[str, str | int]:
    """Memory and threads each connection may use: DuckDB's defaults (80% of the RAM, a thread
    per core) assume it owns the machine, yet Dagster runs, the image workers and readers open
    the warehouse side by side. Past the limit, sorts and joins spill to `<warehouse>.tmp/`.
    `LSR_DUCKDB_MEMORY` (default 1GB) and `LSR_DUCKDB_THREADS` (default: the cores) set them."""
    return {
        "memory_limit": os.environ.get("LSR_DUCKDB_MEMORY", "1GB"),
        "threads": int(os.environ.get("LSR_DUCKDB_THREADS", str(os.cpu_count() or 1))),
    }


class WarehouseLocked(RuntimeError):
    """Another process holds the DuckDB file for longer than we are willing to wait."""


class OriginConflict(RuntimeError):
    """Simulated data headed for a warehouse of real exchange data, or the reverse."""


_ORIGIN = {True: "simulated", False: "exchanges"}
_ORIGIN_ADVICE = {
    "simulated": "it holds the simulator's data from `lsr demo`; point LSR_WAREHOUSE at another "
    "file for real data",
    "exchanges": "it holds real exchange data; run the demo into another file, e.g. "
    "LSR_WAREHOUSE=warehouse/demo.duckdb",
}


@contextmanager
def connect(
    path: Path | None = None, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse for one unit of work, then close it.

    DuckDB allows one process at a time on a file (even read-only opens fail while a writer has
    it), so every opener in this pipeline queues on a lock file beside it; a holder outside the
    pipeline (a notebook) is waited out by retrying. A writable open creates missing tables.
    """
    path = path or warehouse_path()
    check_warehouse_file(path, writable=not read_only)
    try:
        with FileLock(f"{path}.lock", timeout=lock_wait_seconds()):
            conn = _open_with_retry(path, read_only)
            try:
                conn.execute("SET TimeZone='UTC'")
                if not read_only:
                    _ensure_schema(conn, path)
                yield conn
            finally:
                conn.close()
    except Timeout as error:
        raise WarehouseLocked(f"{path} stayed busy for {lock_wait_seconds():.0f} s") from error


class WarehouseUnusable(RuntimeError):
    """The warehouse path cannot hold this pipeline's DuckDB file (and was left untouched)."""


# Every DuckDB database file carries this magic at byte 8 of its header.
_DUCKDB_MAGIC = b"DUCK"
# Never fetch an extension from the internet because a file looks like SQLite or Parquet.
_NO_EXTENSION_DOWNLOADS: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
# DuckDB turns an ASOF join whose left side it *estimates* at under 64 rows into a nested loop.
# heatmap_matrix's full rebuild filters that side by a condition the estimate cannot see through,
# so on three years of data it was estimated tiny, looped over millions of rows and never ended.
_PLANNER = {"asof_loop_join_threshold": 0}


def _connection_config() -> dict[str, str | bool | int | float | list[str]]:
    return {**_NO_EXTENSION_DOWNLOADS, **_PLANNER, **duckdb_resources()}


def check_warehouse_file(path: Path, *, writable: bool = True) -> None:
    """Refuse, in one line and before anything is fetched or written, a path that cannot be
    this pipeline's warehouse: a directory, a file of another kind, a place we cannot write."""
    if path.is_dir():
        raise WarehouseUnusable(f"warehouse {path} is a directory; give a file path (.duckdb)")
    if path.exists():
        with path.open("rb") as handle:
            header = handle.read(16)
        if header and header[8:12] != _DUCKDB_MAGIC:
            kind = "a SQLite database" if header.startswith(b"SQLite format") else "not DuckDB"
            raise WarehouseUnusable(
                f"warehouse {path} is {kind} (header {header[:12]!r}); give a DuckDB file or a "
                "new path"
            )
        if writable and not os.access(path, os.W_OK):
            raise WarehouseUnusable(f"warehouse {path} is read-only for this user")
        return
    folder = _existing_parent(path)
    if writable and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise WarehouseUnusable(f"cannot create warehouse {path}: {folder} is not writable")
    if writable:
        path.parent.mkdir(parents=True, exist_ok=True)


def _existing_parent(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _ensure_schema(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create or migrate the stored tables, unless this very DDL was applied already: a
    writer's open then costs one lookup instead of the whole script."""
    ddl = DDL_FILE.read_text()
    digest = hashlib.sha256(ddl.encode()).hexdigest()[:16]
    applied = table_exists(conn, "warehouse_schema")
    if applied and one_row(conn, "SELECT ddl_hash FROM warehouse_schema") == (digest,):
        return
    _refuse_foreign_tables(conn, path)
    conn.execute(ddl)
    conn.execute(
        "CREATE OR REPLACE TABLE warehouse_schema AS SELECT ?::VARCHAR AS ddl_hash, "
        "now()::TIMESTAMP AS applied_at",
        [digest],
    )


def _refuse_foreign_tables(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A table with one of our names but not our columns belongs to another program: stop
    before the DDL touches it (its comments would be overwritten first)."""
    present = conn.execute(
        "SELECT table_name, list(column_name) FROM information_schema.columns "
        "WHERE table_schema = current_schema() GROUP BY table_name"
    ).fetchall()
    for table, columns in present:
        expected = _ddl_columns().get(table)
        if expected is None:
            continue
        missing = sorted(expected - set(columns))
        if missing:
            raise WarehouseUnusable(
                f"warehouse {path} has a table {table} that is not this pipeline's (it lacks "
                f"{', '.join(missing)}); left untouched; use another LSR_WAREHOUSE"
            )


@cache
def _ddl_columns() -> dict[str, set[str]]:
    """The columns each stored table has when created, minus those later migrations add."""
    with duckdb.connect(":memory:") as memory:
        memory.execute(DDL_FILE.read_text())
        rows = memory.execute(
            "SELECT table_name, list(column_name) FROM information_schema.columns "
            "GROUP BY table_name"
        ).fetchall()
    added = set(
        re.findall(r"ALTER TABLE (\w+) ADD COLUMN IF NOT EXISTS (\w+)", DDL_FILE.read_text())
    )
    return {table: {c for c in columns if (table, c) not in added} for table, columns in rows}


def _open_with_retry(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + lock_wait_seconds()
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=_connection_config())
        except duckdb.IOException as error:
            if "lock" not in str(error).lower():
                raise WarehouseUnusable(f"cannot open warehouse {path}: {error}") from error
            if time.monotonic() > deadline:
                raise WarehouseLocked(
                    f"{path} is held by another process ({error}); stop it or wait"
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        except duckdb.Error as error:  # a corrupt or foreign file that passed the header check
            raise WarehouseUnusable(f"cannot open warehouse {path}: {error}") from error


def complete_days(
    path: Path, exchange: str, first: date, last: date
) -> set[tuple[str, str, str, date]]:
    """(dataset, coin, period, day) of one exchange whose last fetch covered the whole day and
    was ok or empty, or found it beyond the exchange's reach (`partition_log`)."""
    if not path.exists():
        return set()
    with connect(path, read_only=True) as conn:
        if not table_exists(conn, "partition_log"):
            return set()
        rows = conn.execute(
            """
            SELECT dataset, coin, period, day FROM partition_log
            WHERE exchange = ? AND day BETWEEN ? AND ?
              AND (status = 'unavailable'
                   OR (status IN ('ok', 'empty') AND window_end >= day + INTERVAL 1 DAY))
            """,
            [exchange, first, last],
        ).fetchall()
    return {(dataset, coin, period, d) for dataset, coin, period, d in rows}


def day_rows(conn: duckdb.DuckDBPyConnection, exchange: str, day: date) -> dict[str, int]:
    """Rows one exchange's day holds per dataset, as the fetches logged them."""
    found = conn.execute(
        "SELECT dataset, sum(rows)::BIGINT FROM partition_log "
        "WHERE exchange = ? AND day = ? GROUP BY dataset",
        [exchange, day],
    ).fetchall()
    return {dataset: int(rows) for dataset, rows in found}


def stored_origin(conn: duckdb.DuckDBPyConnection) -> str | None:
    """'exchanges', 'simulated', or None for a warehouse nothing was written to yet.

    A warehouse from before the origin was stored answers from its partition log."""
    row = one_row(conn, "SELECT origin FROM warehouse_origin")
    if row:
        return str(row[0])
    legacy = one_row(conn, "SELECT bool_or(simulated) FROM partition_log")
    return None if not legacy or legacy[0] is None else _ORIGIN[bool(legacy[0])]


def claim_origin(conn: duckdb.DuckDBPyConnection, *, simulated: bool) -> None:
    """Decide what this warehouse holds (the first writer) or refuse a write of the other kind.

    Called inside the write transaction, so two first writers of different kinds cannot both
    win: the second one's transaction is rolled back with the error."""
    wanted = _ORIGIN[simulated]
    held = stored_origin(conn)
    if held is None:
        conn.execute(
            "INSERT INTO warehouse_origin (origin, decided_at) VALUES (?, ?)",
            [wanted, datetime.now(UTC).replace(tzinfo=None)],
        )
    elif held != wanted:
        name = conn.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()
        where = name[0] if name else "the warehouse"
        raise OriginConflict(
            f"refusing to write {wanted} data into {where}: {_ORIGIN_ADVICE[held]}"
        )


def upsert(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    frame: pd.DataFrame,
    key: list[str],
    *,
    order_by: str = "fetched_at",
    keep_stored_when: str = "false",
) -> int:
    """Insert rows, replacing stored rows with the same key only where a value changed.

    Rows not in `frame` are never touched, so a shorter refetch deletes nothing. An unchanged
    value keeps its original `fetched_at`, so rerunning a partition changes nothing.
    `keep_stored_when` is a condition on the stored row (`{table}`) and the new one
    (`excluded`) under which the stored row stays, changed or not.
    """
    if frame.empty:
        return 0
    columns = list(frame.columns)
    values = [c for c in columns if c not in key and c != "fetched_at"]
    conn.register("_batch", frame)
    try:
        changed = " OR ".join(f"{table}.{c} IS DISTINCT FROM excluded.{c}" for c in values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in [*values, "fetched_at"] if c in columns)
        column_list = ", ".join(columns)
        partition = ", ".join(key)
        conn.execute(
            f"""
            INSERT INTO {table} ({column_list})
            SELECT {column_list} FROM _batch
            QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order_by} DESC) = 1
            ON CONFLICT DO UPDATE SET {updates}
            WHERE ({changed or "false"}) AND NOT ({keep_stored_when.format(table=table)})
            """
        )
    finally:
        conn.unregister("_batch")
    return len(frame)


def log_changes(conn: duckdb.DuckDBPyConnection, table: str, written: pd.DataFrame) -> None:
    """Note in derived_changes, per exchange and period, the earliest bucket this write stored
    a new or changed value for (call it in the write's transaction).

    upsert gives a changed or new row the batch's `fetched_at` and leaves an unchanged one its
    old one, so the rows carrying the batch's stamp are exactly what changed. The ts range
    keeps the scan to the row groups the batch can have touched.
    """
    if written.empty:
        return
    conn.execute(
        f"""
        INSERT INTO derived_changes (source, exchange, period, since, logged_at)
        SELECT $table, exchange, period, min(ts), now()::TIMESTAMP
        FROM {table}
        WHERE fetched_at = $fetched_at AND ts BETWEEN $first AND $last
        GROUP BY exchange, period
        """,
        {
            "table": table,
            "fetched_at": written["fetched_at"].max().to_pydatetime(),
            "first": written["ts"].min().to_pydatetime(),
            "last": written["ts"].max().to_pydatetime(),
        },
    ).fetchall()


@dataclass(frozen=True)
class WriteSummary:
    ls_rows: int
    rejected_rows: int
    kline_rows: int
    oi_rows: int
    rejected_reasons: dict[str, int]

    def by_table(self) -> dict[str, int]:
        """Rows stored per ingested table (and Dagster asset)."""
        return {"ls_ratio": self.ls_rows, "klines": self.kline_rows, "open_interest": self.oi_rows}


@dataclass(frozen=True)
class PreparedPartition:
    """One partition's rows, validated and shaped before the file is opened, so the writer's
    lock is held only for the inserts."""

    simulated: bool
    ls: pd.DataFrame
    klines: pd.DataFrame
    open_interest: pd.DataFrame
    rejections: pd.DataFrame
    instruments: pd.DataFrame
    log: pd.DataFrame


def prepare_partition(fetched: PartitionFetch, universe: Universe) -> PreparedPartition:
    fetched_at = datetime.now(UTC).replace(tzinfo=None)
    kept, rejected = split_valid(with_source(fetched.ls))
    return PreparedPartition(
        simulated=fetched.simulated,
        ls=kept[[*LS_COLUMNS, SOURCE]].assign(fetched_at=fetched_at),
        klines=_dedupe(fetched.klines, fetched_at),
        open_interest=_dedupe(with_source(fetched.open_interest), fetched_at),
        rejections=_rejections(fetched, rejected, fetched_at),
        instruments=_instruments_frame(fetched, universe, fetched_at),
        log=_log_frame(fetched, fetched_at),
    )


def write_prepared(
    conn: duckdb.DuckDBPyConnection, prepared: PreparedPartition, landed: str | None = None
) -> WriteSummary:
    """Store one prepared partition in a single transaction; with `landed` (the landing-zone
    file it came from), note that file loaded in the same transaction, so a crash never
    leaves it loaded twice or not at all."""
    with transaction(conn):
        claim_origin(conn, simulated=prepared.simulated)
        ls_rows = upsert(conn, "ls_ratio", prepared.ls, LS_KEY, keep_stored_when=REST_WINS)
        kline_rows = upsert(conn, "klines", prepared.klines, PRICE_KEY)
        oi_rows = upsert(
            conn, "open_interest", prepared.open_interest, PRICE_KEY, keep_stored_when=REST_WINS
        )
        log_changes(conn, "ls_ratio", prepared.ls)
        log_changes(conn, "klines", prepared.klines)
        log_changes(conn, "open_interest", prepared.open_interest)
        upsert(conn, "ls_ratio_rejected", prepared.rejections, ["rejection_id"])
        _insert(conn, prepared.instruments, _UPSERT_INSTRUMENTS)
        _insert(
            conn, prepared.log, "INSERT OR REPLACE INTO partition_log BY NAME SELECT * FROM _rows"
        )
        summary = _summary(prepared, ls_rows, kline_rows, oi_rows)
        if landed is not None:
            note_landed(conn, landed, "loaded", ls_rows=summary.ls_rows)
    return summary


def summarize(prepared: PreparedPartition) -> WriteSummary:
    """What writing the partition would store, without writing it (a fetch-only worker)."""
    return _summary(prepared, len(prepared.ls), len(prepared.klines), len(prepared.open_interest))


def _summary(
    prepared: PreparedPartition, ls_rows: int, kline_rows: int, oi_rows: int
) -> WriteSummary:
    rejections = prepared.rejections
    reasons = {str(k): int(v) for k, v in rejections["reason"].value_counts().items()}
    return WriteSummary(ls_rows, len(rejections), kline_rows, oi_rows, reasons)


def note_landed(
    conn: duckdb.DuckDBPyConnection,
    path: str,
    status: str,
    *,
    ls_rows: int | None = None,
    detail: str | None = None,
) -> None:
    """Record what became of a landed file (`loaded`, or `unloadable` and why)."""
    conn.execute(
        """
        INSERT OR REPLACE INTO landed_files (path, status, detail, ls_rows, noted_at)
        VALUES ($path, $status, $detail, $ls_rows, now()::TIMESTAMP)
        """,
        {"path": path, "status": status, "detail": detail, "ls_rows": ls_rows},
    )


def noted_landed(conn: duckdb.DuckDBPyConnection) -> set[str]:
    """The landed files the warehouse has taken (or set aside as unloadable)."""
    return {str(path) for (path,) in conn.execute("SELECT path FROM landed_files").fetchall()}


def write_partition(
    conn: duckdb.DuckDBPyConnection, fetched: PartitionFetch, universe: Universe
) -> WriteSummary:
    """Validate and store one partition in a single transaction."""
    return write_prepared(conn, prepare_partition(fetched, universe))


def _insert(conn: duckdb.DuckDBPyConnection, frame: pd.DataFrame, sql: str) -> None:
    if frame.empty:
        return
    conn.register("_rows", frame)
    try:
        conn.execute(sql)
    finally:
        conn.unregister("_rows")


PRICE_KEY = ["exchange", "instrument", "period", "ts"]
# Where the exchange's API and the Binance Vision archive both have a bucket, the API's row is
# kept: it is the exchange's own row for that period, the archive's is a five-minute snapshot.
REST_WINS = "{table}.source = 'rest' AND excluded.source = 'archive'"


def _dedupe(frame: pd.DataFrame, fetched_at: datetime) -> pd.DataFrame:
    return frame.drop_duplicates(subset=PRICE_KEY, keep="last").assign(fetched_at=fetched_at)


def _rejections(
    fetched: PartitionFetch, rejected: pd.DataFrame, fetched_at: datetime
) -> pd.DataFrame:
    rows = [
        {
            "exchange": r["exchange"],
            "endpoint": None,
            "instrument": r["instrument"],
            "coin": r["coin"],
            "metric": r["metric"],
            "period": r["period"],
            "ts": r["ts"],
            "reason": r["reason"],
            "raw": json.dumps({k: _plain(r[k]) for k in LS_COLUMNS}, default=str),
        }
        for r in rejected.to_dict("records")
    ]
    rows += [
        {
            "exchange": fetched.exchange,
            "endpoint": o.endpoint,
            "instrument": o.task.instrument,
            "coin": o.task.coin,
            "metric": o.task.dataset,
            "period": o.task.period,
            "ts": None,
            "reason": o.detail or "failed",
            "raw": o.raw or "",
        }
        for o in fetched.failures
        if o.raw is not None  # a body that arrived but could not be read
    ]
    rows += [
        {
            "exchange": fetched.exchange,
            "endpoint": "archive metrics",
            "instrument": instrument,
            "coin": None,
            "metric": None,
            "period": None,
            "ts": None,
            "reason": reason,
            "raw": raw,
        }
        for (instrument, reason), raw in fetched.rejected_files.items()
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "exchange",
            "endpoint",
            "instrument",
            "coin",
            "metric",
            "period",
            "ts",
            "reason",
            "raw",
        ],
    )
    frame["rejection_id"] = [
        hashlib.sha256("|".join(map(str, row)).encode()).hexdigest()[:32]
        for row in frame[
            ["exchange", "instrument", "metric", "period", "reason", "raw"]
        ].itertuples(index=False)
    ]
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame.assign(fetched_at=fetched_at, partition_day=pd.Timestamp(fetched.day))


def _plain(value: object) -> object:
    return None if isinstance(value, float) and value != value else value


_UPSERT_INSTRUMENTS = """
    INSERT INTO instruments SELECT * FROM _rows
    ON CONFLICT DO UPDATE SET coin = excluded.coin, base_asset = excluded.base_asset,
        multiplier = excluded.multiplier, onboard_at = excluded.onboard_at,
        in_universe = excluded.in_universe, last_seen = excluded.last_seen
"""


def _instruments_frame(fetched: PartitionFetch, universe: Universe, seen: datetime) -> pd.DataFrame:
    chosen = set(fetched.mapping.values())
    return pd.DataFrame(
        [
            {
                "exchange": fetched.exchange,
                "instrument": item.instrument,
                "coin": item.coin,
                "base_asset": item.base_asset,
                "multiplier": item.multiplier,
                "onboard_at": pd.Timestamp(item.onboard_ms, unit="ms") if item.onboard_ms else None,
                "in_universe": item.instrument in chosen,
                "first_seen": seen,
                "last_seen": seen,
            }
            for item in fetched.listings
        ]
    )


def _log_frame(fetched: PartitionFetch, at: datetime) -> pd.DataFrame:
    """One row per task and day the fetch covered: what the exchange gave for that day."""
    return pd.DataFrame(
        [
            {
                "exchange": fetched.exchange,
                "day": day,
                "dataset": o.task.dataset,
                "coin": o.task.coin,
                "period": o.task.period,
                "status": status,
                "rows": rows,
                "detail": detail,
                "simulated": fetched.simulated,
                "updated_at": at,
                "window_start": start,
                "window_end": end,
            }
            for o in fetched.outcomes
            for day, status, rows, detail, start, end in _days_of(fetched, o)
        ],
        columns=_LOG_COLUMNS,
    )


_LOG_COLUMNS = ["exchange", "day", "dataset", "coin", "period", "status", "rows", "detail",
                "simulated", "updated_at", "window_start", "window_end"]  # fmt: skip
_DAY = pd.Timedelta(days=1)


def _days_of(
    fetched: PartitionFetch, outcome: Outcome
) -> Iterator[tuple[date, str, int, str | None, pd.Timestamp | None, pd.Timestamp | None]]:
    """(day, status, rows, detail, window start, window end) for each day the outcome's window
    touched; a task never asked of the exchange (beyond its reach) is logged on the run's own
    day. A day the source said it has nothing for (an archive file refused) keeps that status."""
    if outcome.window is None:
        yield fetched.day, outcome.status, outcome.rows, outcome.detail, None, None
        return
    asked_from = pd.Timestamp(outcome.window.start_ms, unit="ms")
    asked_to = pd.Timestamp(outcome.window.end_ms, unit="ms")
    rows = dict(outcome.rows_by_day)
    problems = {day: (status, detail) for day, status, detail in outcome.day_problems}
    for day in fetched.covered_days:
        start, end = max(asked_from, pd.Timestamp(day)), min(asked_to, pd.Timestamp(day) + _DAY)
        if start >= end:
            continue
        status, detail = outcome.status, outcome.detail
        if status == "ok":
            status = "ok" if rows.get(day, 0) else "empty"
            status, detail = problems.get(day, (status, detail))
        yield day, status, rows.get(day, 0), detail, start, end
