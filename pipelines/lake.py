"""The lake: the warehouse's tables as Hive-partitioned Parquet, for readers that must never wait
for the warehouse's lock, nor hold it (DuckDB, Polars, Spark, pyarrow: anything that scans a
folder of Parquet files).

    <root>/<table>/exchange=<exchange>/date=<YYYY-MM-DD>/part-0.parquet

A table with `exchange` and `ts` columns is cut by both (the UTC day of `ts`), one with `ts` but
no `exchange` by day, and a table without `ts` or refreshed whole (`coverage`, `coverage_gaps`,
`whale_crowd_now`: small ones) is one file, `<root>/<table>/part-0.parquet`. The partition
columns live in the folder names only, as Hive and Spark expect: readers get them back with
hive partitioning on (`exchange` a string, `date` a date). Files are zstd, timestamps tagged UTC,
the table's and columns' `COMMENT ON` texts in the schema and field metadata (`description`).

Incremental: a refresh examines only the partitions that the change notes written since its
last refresh (`derived_changes`: per write, exchange and period, the earliest bucket changed)
can have touched, i.e. per exchange the days from that bucket's on. It fingerprints each of
them in DuckDB (rows and a hash of every row) and rewrites only those whose fingerprint differs
from the one recorded with its file (`lake_partitions`); `lake_tables` holds which note each
table has taken in. Notes are kept until the lake has taken them in too, so a crash between a
load and the lake's refresh is caught up by the next refresh. `full=True` (`lsr export --full`)
rewrites every partition and removes files that are no partition of the table.

Atomic per partition: the new file is written under a temporary name in the partition's folder
(a dot name ending in `.tmp`, which readers' globs and dataset discovery skip) and renamed over
the old one, so a reader sees the old partition or the new one, never half of one or both.

Short holds of the lock: the work goes a window of days at a time, each window in its own
transaction, and the warehouse is handed back to other writers every couple of seconds, so
ingestion can write between the windows of a long rewrite.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines.analytics import (
    DERIVED_TABLES,
    EVERYTHING,
    INGESTED_TABLES,
    WINDOW_RULES,
    prune_changes,
)
from pipelines.queries import one_row, table_names, transaction
from pipelines.warehouse import connect

COVERAGE_TABLES = ("coverage", "coverage_gaps")
# The allow-list: every table name that reaches SQL or a path below comes from here.
LAKE_TABLES: tuple[str, ...] = (*INGESTED_TABLES, *DERIVED_TABLES, *COVERAGE_TABLES)
PART_FILE = "part-0.parquet"
# Readers that want typed partition columns from pyarrow (DuckDB, Polars and Spark infer these).
PARTITION_SCHEMA = pa.schema([("exchange", pa.string()), ("date", pa.date32())])
# A window of days is read, written and recorded under one connection: about a month of one
# table (~1 M rows of ls_ratio on 50 coins x 6 exchanges) holds the lock for a few seconds.
WINDOW = timedelta(days=31)
BATCH_ROWS = 256_000
_PART_COLUMN = "__lake_part"
_SAFE_VALUE = re.compile(r"[a-z0-9_]+")


def safe_value(value: object) -> str:
    """A partition value as a folder name: lower-case letters, digits and `_` only (no `/`,
    `..`, `=` or empty name a data value could smuggle into a path)."""
    if not isinstance(value, str) or not _SAFE_VALUE.fullmatch(value):
        raise ValueError(f"refusing a lake partition value {value!r}")
    return value


@dataclass(frozen=True)
class Layout:
    """How a table is cut into folders."""

    table: str
    by_exchange: bool
    by_date: bool

    @property
    def partitioned(self) -> bool:
        return self.by_date  # a table is cut by day whenever it is cut at all

    def partition(self, exchange: object, day: object) -> str:
        """The partition's folder below the table's ('' for a table in one file)."""
        parts = []
        if self.by_exchange:
            parts.append(f"exchange={safe_value(exchange)}")
        if self.by_date:
            if not isinstance(day, date):
                raise ValueError(f"refusing a lake partition day {day!r}")
            parts.append(f"date={day.isoformat()}")
        return "/".join(parts)


@dataclass(frozen=True)
class Partition:
    """One partition's rows as they are in the warehouse now."""

    key: str  # its folder below the table's
    exchange: str | None
    day: date | None
    rows: int
    fingerprint: int  # of its rows (_fingerprints): any row changed, added or removed moves it


@dataclass(frozen=True)
class TableResult:
    table: str
    full: bool  # every partition rewritten
    examined: int  # partitions fingerprinted
    written: int  # partition files replaced or created
    removed: int  # partition files deleted (their rows are gone)
    rows_written: int
    seconds: float


@dataclass(frozen=True)
class _Job:
    """One table's refresh, as planned at its start."""

    layout: Layout
    folder: Path
    schema: pa.Schema  # the files' schema: the table's columns but the partition columns
    schema_hash: str
    full: bool
    scope: dict[str, date] | None  # exchange ("*": any) -> first day to examine; None: all
    latest_note: int  # the change notes up to this id are what this refresh takes in

    @property
    def table(self) -> str:
        return self.layout.table

    def path(self, key: str) -> Path:
        return self.folder / key / PART_FILE if key else self.folder / PART_FILE


def lake_layout(conn: duckdb.DuckDBPyConnection, table: str) -> Layout:
    """Cut by exchange and day where the table has both columns, by day where it has `ts`
    only; one file for a table without `ts` or one rebuilt whole at every refresh (a few rows:
    cutting it would only multiply files)."""
    columns = set(_columns(conn, _allowed(table)))
    whole = WINDOW_RULES.get(table) == "whole" or "ts" not in columns
    return Layout(table, by_exchange=not whole and "exchange" in columns, by_date=not whole)


def refresh_lake(
    warehouse: Path,
    root: Path,
    *,
    full: bool = False,
    tables: Iterable[str] | None = None,
) -> list[TableResult]:
    """Bring the lake at `root` up to date with the warehouse: each table's partitions whose
    rows changed since its last refresh, or all of them (`full`). A table not in the warehouse
    yet (a derived table never refreshed, coverage never computed) is skipped."""
    chosen = [_allowed(table) for table in (tables or LAKE_TABLES)]
    results = []
    with _Lease(warehouse) as lease:
        for table in chosen:
            result = _refresh_table(lease, root, table, full=full)
            if result is not None:
                results.append(result)
    return results


class _Lease:
    """The warehouse, opened once for the whole refresh but handed back to other writers once
    held for HOLD_SECONDS (between two transactions): an hourly refresh opens it once, a full
    rewrite of years lets ingestion in every few seconds."""

    HOLD_SECONDS = 2.0
    # Writers queued on the lock file poll it every 50 ms: give them a chance to take it.
    HAND_BACK_SECONDS = 0.2

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: AbstractContextManager[duckdb.DuckDBPyConnection] | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._since = 0.0

    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is not None and time.monotonic() - self._since > self.HOLD_SECONDS:
            self.close()
            time.sleep(self.HAND_BACK_SECONDS)
        if self._conn is None:
            self._open = connect(self.path)
            self._conn = self._open.__enter__()
            self._since = time.monotonic()
        return self._conn

    def close(self) -> None:
        if self._open is not None:
            opened, self._open, self._conn = self._open, None, None
            opened.__exit__(None, None, None)

    def __enter__(self) -> _Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dataset(root: Path | str, table: str) -> ds.Dataset:
    """The table's files as one pyarrow dataset, partition columns typed (pyarrow alone would
    read `date` as a string)."""
    folder = Path(root) / _allowed(table)
    first = next(folder.rglob(PART_FILE), None)
    keys = {part.split("=", 1)[0] for part in first.relative_to(folder).parts[:-1]} if first else ()
    fields = [field for field in PARTITION_SCHEMA if field.name in keys]
    partitioning = ds.HivePartitioning.discover(schema=pa.schema(fields)) if fields else None
    return ds.dataset(folder, format="parquet", partitioning=partitioning)


# ------------------------------------------------------------------------------ one table


def _refresh_table(lease: _Lease, root: Path, table: str, *, full: bool) -> TableResult | None:
    start = time.perf_counter()
    conn = lease.connection()
    job = _plan(conn, table, root, full=full)
    if job is None:
        return None
    examined = written = removed = rows = 0
    for window in list(_windows(conn, job)):
        conn = lease.connection()
        with transaction(conn):
            done = _refresh_window(conn, job, window)
        examined, written = examined + done[0], written + done[1]
        removed, rows = removed + done[2], rows + done[3]
    conn = lease.connection()
    with transaction(conn):
        if job.full:
            removed += _sweep(conn, job)
        _record_table(conn, job, str(root))
        prune_changes(conn)
    seconds = time.perf_counter() - start
    return TableResult(table, job.full, examined, written, removed, rows, seconds)


def _plan(conn: duckdb.DuckDBPyConnection, table: str, root: Path, *, full: bool) -> _Job | None:
    """What this refresh of the table examines. A table the lake never wrote, or wrote to
    another root, with other columns or comments or cut otherwise, is written in full."""
    if table not in table_names(conn):
        return None
    layout = lake_layout(conn, table)
    schema = _file_schema(conn, layout)
    shown = schema.to_string(show_field_metadata=True, show_schema_metadata=True)
    schema_hash = hashlib.sha256(f"{layout}\n{shown}".encode()).hexdigest()[:16]
    latest = int(one_row(conn, "SELECT coalesce(max(id), 0) FROM derived_changes")[0])
    state = one_row(
        conn,
        "SELECT consumed_id, root, schema_hash FROM lake_tables WHERE table_name = ?",
        [table],
    )
    full = full or not state or (state[1], state[2]) != (str(root), schema_hash)
    scope = None if full or not layout.partitioned else _scope(conn, layout, state[0], latest)
    return _Job(layout, root / table, schema, schema_hash, full, scope, latest)


def _scope(
    conn: duckdb.DuckDBPyConnection, layout: Layout, consumed: int, latest: int
) -> dict[str, date] | None:
    """Per exchange, the first day the change notes not yet taken in reach back to (all
    exchanges as "*" for a table not cut by exchange); None after a full rebuild's note."""
    notes = conn.execute(
        "SELECT exchange, min(since)::DATE FROM derived_changes "
        "WHERE source = ? AND id > ? AND id <= ? GROUP BY exchange",
        [layout.table, consumed, latest],
    ).fetchall()
    firsts = {str(exchange): day for exchange, day in notes}
    if EVERYTHING in firsts:
        return None
    if not layout.by_exchange and firsts:
        return {EVERYTHING: min(firsts.values())}
    return firsts


def _windows(conn: duckdb.DuckDBPyConnection, job: _Job) -> Iterator[tuple[date, date] | None]:
    """[first, end) day windows covering the scope, up to the last day the table or the lake
    holds; a table in one file is one window (None)."""
    if not job.layout.partitioned:
        yield None
        return
    if job.scope == {}:
        return  # nothing changed
    since = min(job.scope.values()) if job.scope else date.min
    held = one_row(
        conn,
        f"SELECT min(ts)::DATE, max(ts)::DATE FROM {job.table} WHERE ts >= ?",
        [_midnight(since)],
    )
    recorded = one_row(
        conn,
        "SELECT min(day), max(day) FROM lake_partitions WHERE table_name = ? AND day >= ?",
        [job.table, since],
    )
    firsts = [d for d in (held[0], recorded[0]) if d is not None]
    lasts = [d for d in (held[1], recorded[1]) if d is not None]
    if not firsts:
        return
    first, last = max(since, min(firsts)), max(lasts)
    while first <= last:
        end = min(first + WINDOW, last + timedelta(days=1))
        yield first, end
        first = end


def _refresh_window(
    conn: duckdb.DuckDBPyConnection, job: _Job, window: tuple[date, date] | None
) -> tuple[int, int, int, int]:
    """Fingerprint the window's partitions, rewrite those that changed, delete those whose rows
    are gone, and record it: (examined, written, removed, rows written). Runs in one transaction,
    so the fingerprints are those of the rows written; if the commit fails after the files were
    replaced, the next refresh finds them unrecorded and writes them again."""
    current = _fingerprints(conn, job, window)
    recorded = _recorded(conn, job, window)
    stale = [p for p in current if _needs_writing(job, p, recorded.get(p.key))]
    gone = sorted(set(recorded) - {p.key for p in current})
    _write(conn, job, stale, window)
    for key in gone:
        _remove(job, key)
    _record_partitions(conn, job.table, stale, gone)
    return len(current), len(stale), len(gone), sum(p.rows for p in stale)


def _needs_writing(job: _Job, now: Partition, recorded: tuple[int, int] | None) -> bool:
    if job.full or recorded != (now.rows, now.fingerprint):
        return True
    return not job.path(now.key).exists()  # deleted by hand: put it back


# ------------------------------------------------------------------- reading the warehouse


def _allowed(table: str) -> str:
    if table not in LAKE_TABLES or not table.isidentifier():
        raise ValueError(f"{table!r} is not a lake table; known: {', '.join(LAKE_TABLES)}")
    return table


def _columns(conn: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
        "AND table_name = ? ORDER BY column_index",
        [table],
    ).fetchall()
    return [str(name) for (name,) in rows]


def _data_columns(conn: duckdb.DuckDBPyConnection, layout: Layout) -> str:
    """The select list of the files: every column but those the folder names carry."""
    folder_columns = {"exchange"} if layout.by_exchange else set()
    names = [c for c in _columns(conn, layout.table) if c not in folder_columns]
    return ", ".join("t." + '"' + name.replace('"', '""') + '"' for name in names)


def _file_schema(conn: duckdb.DuckDBPyConnection, layout: Layout) -> pa.Schema:
    comments = _comments(conn, layout.table)
    empty = conn.sql(f"SELECT {_data_columns(conn, layout)} FROM {layout.table} AS t LIMIT 0")
    return _described(_utc(empty.to_arrow_table().schema), *comments)


def _scope_filter(conn: duckdb.DuckDBPyConnection, job: _Job, column: str) -> str:
    """A condition keeping the rows (or recorded partitions) of exchanges and days in scope:
    the scope is registered as `_lake_scope` when it names exchanges."""
    if job.scope is None or not job.layout.by_exchange:
        return "true"
    scope = pa.table(
        {
            "exchange": pa.array(list(job.scope), pa.string()),
            "since": pa.array(list(job.scope.values()), pa.date32()),
        }
    )
    conn.register("_lake_scope", scope)
    return (
        f"EXISTS (SELECT 1 FROM _lake_scope AS s WHERE s.exchange = t.exchange "
        f"AND {column} >= s.since)"
    )


def _fingerprints(
    conn: duckdb.DuckDBPyConnection, job: _Job, window: tuple[date, date] | None
) -> list[Partition]:
    """Each partition's rows and fingerprint: the XOR of its rows' hashes, each hashed again.
    DuckDB's hash of a row folds the last column in with an XOR, so two rows changed alike
    (BTC's close in btc_ls, once per metric) would cancel out in a plain XOR of row hashes;
    hashing the hash mixes it non-linearly first."""
    layout = job.layout
    if window is None:  # one file: always one partition, even of no rows (readers get a schema)
        rows = conn.execute(
            f"SELECT NULL, NULL, count(*), coalesce(bit_xor(hash(hash(_row))), 0) "
            f"FROM {layout.table} AS _row"
        ).fetchall()
    else:
        exchange = "t.exchange" if layout.by_exchange else "NULL::VARCHAR"
        rows = conn.execute(
            f"""
            SELECT {exchange} AS exchange, t.ts::DATE AS day, count(*), bit_xor(hash(hash(t)))
            FROM {layout.table} AS t
            WHERE t.ts >= $lo AND t.ts < $hi AND {_scope_filter(conn, job, "t.ts::DATE")}
            GROUP BY ALL ORDER BY ALL
            """,
            {"lo": _midnight(window[0]), "hi": _midnight(window[1])},
        ).fetchall()
    return [
        Partition(layout.partition(exchange, day), exchange, day, int(count), int(fingerprint))
        for exchange, day, count, fingerprint in rows
    ]


def _recorded(
    conn: duckdb.DuckDBPyConnection, job: _Job, window: tuple[date, date] | None
) -> dict[str, tuple[int, int]]:
    """Partition -> (rows, fingerprint) as recorded when its file was written."""
    if window is None:
        rows = conn.execute(
            "SELECT partition, rows, fingerprint FROM lake_partitions WHERE table_name = ?",
            [job.table],
        ).fetchall()
    else:
        rows = conn.execute(
            f"""
            SELECT t.partition, t.rows, t.fingerprint FROM lake_partitions AS t
            WHERE t.table_name = $table AND t.day >= $lo AND t.day < $hi
              AND {_scope_filter(conn, job, "t.day")}
            """,
            {"table": job.table, "lo": window[0], "hi": window[1]},
        ).fetchall()
    return {str(key): (int(count), int(fingerprint)) for key, count, fingerprint in rows}


# ---------------------------------------------------------------------------- the files


def _write(
    conn: duckdb.DuckDBPyConnection,
    job: _Job,
    stale: list[Partition],
    window: tuple[date, date] | None,
) -> None:
    """Stream the stale partitions' rows out of DuckDB, ordered by partition, into their files
    (one record batch in memory at a time)."""
    if not stale:
        return
    columns = _data_columns(conn, job.layout)
    if window is None:
        query = conn.sql(f"SELECT {columns}, 0 AS {_PART_COLUMN} FROM {job.table} AS t")
    else:
        wanted = pa.table(
            {
                "part": pa.array(range(len(stale)), pa.int64()),
                "exchange": pa.array([p.exchange for p in stale], pa.string()),
                "day": pa.array([p.day for p in stale], pa.date32()),
            }
        )
        conn.register("_lake_write", wanted)
        same_exchange = "t.exchange = w.exchange AND " if job.layout.by_exchange else ""
        query = conn.sql(
            f"""
            SELECT {columns}, w.part AS {_PART_COLUMN}
            FROM {job.table} AS t
            JOIN _lake_write AS w ON {same_exchange}t.ts::DATE = w.day
            WHERE t.ts >= $lo AND t.ts < $hi
            ORDER BY w.part, t.ts
            """,
            params={"lo": _midnight(window[0]), "hi": _midnight(window[1])},
        )
    reader = query.to_arrow_reader(BATCH_ROWS)
    try:
        written = _split_into_files(reader, [job.path(p.key) for p in stale], job.schema)
    finally:
        reader.close()  # an undrained stream would block the connection
    for number in set(range(len(stale))) - written:  # only a table in one file can be empty
        _PartFile(job.path(stale[number].key), job.schema).commit()


def _split_into_files(
    reader: pa.RecordBatchReader, targets: list[Path], schema: pa.Schema
) -> set[int]:
    """Each run of one partition number in the ordered stream becomes that partition's file;
    return the numbers written."""
    written: set[int] = set()
    current: _PartFile | None = None
    number = -1
    try:
        for batch in reader:
            numbers = batch.column(_PART_COLUMN).to_numpy()
            rows = batch.drop_columns([_PART_COLUMN])
            for start, end in _runs(numbers):
                if current is None or numbers[start] != number:
                    if numbers[start] < number:
                        raise RuntimeError("lake rows arrived out of partition order")
                    if current is not None:
                        current.commit()
                    number = int(numbers[start])
                    current = _PartFile(targets[number], schema)
                    written.add(number)
                current.write(rows.slice(start, end - start))
        if current is not None:
            current.commit()
            current = None
    finally:
        if current is not None:
            current.abort()
    return written


def _runs(numbers: np.ndarray) -> Iterator[tuple[int, int]]:
    """[start, end) of each run of equal values in a sorted array."""
    cuts = [0, *(np.flatnonzero(np.diff(numbers)) + 1).tolist(), len(numbers)]
    return ((start, end) for start, end in itertools.pairwise(cuts) if end > start)


class _PartFile:
    """A partition's new file: written beside the old one under a temporary name, then renamed
    over it, so readers see the old file or the new one, whole."""

    def __init__(self, target: Path, schema: pa.Schema) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.schema = schema
        self.temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        self.writer = pq.ParquetWriter(self.temporary, schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        self.writer.write_batch(batch.cast(self.schema))

    def commit(self) -> None:
        try:
            self.writer.close()
            os.replace(self.temporary, self.target)
        except BaseException:
            self.temporary.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.temporary.unlink(missing_ok=True)


def _remove(job: _Job, key: str) -> None:
    """A partition whose rows are gone: its file, then its folders if nothing else is left."""
    path = job.path(key)
    path.unlink(missing_ok=True)
    _prune_folders(path.parent, job.folder)


def _prune_folders(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_relative_to(stop):
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone)
            return
        folder = folder.parent


def _sweep(conn: duckdb.DuckDBPyConnection, job: _Job) -> int:
    """After a full rewrite: delete Parquet and temporary files under the table's folder that
    are no recorded partition (another layout's, a killed writer's); return how many."""
    if not job.folder.exists():
        return 0
    keep = {job.path(key) for key in _recorded(conn, job, None)}
    stray = [
        path
        for path in job.folder.rglob("*")
        if path.is_file()
        and path not in keep
        and (path.suffix == ".parquet" or path.name.endswith(".tmp"))
    ]
    for path in stray:
        path.unlink(missing_ok=True)
        _prune_folders(path.parent, job.folder)
    return sum(1 for path in stray if path.suffix == ".parquet")


# ------------------------------------------------------------------------------ the state


def _record_partitions(
    conn: duckdb.DuckDBPyConnection, table: str, written: list[Partition], gone: list[str]
) -> None:
    if gone:
        conn.execute(
            "DELETE FROM lake_partitions WHERE table_name = ? AND list_contains(?, partition)",
            [table, gone],
        ).fetchall()
    if not written:
        return
    rows = pa.table(
        {
            "partition": pa.array([p.key for p in written], pa.string()),
            "exchange": pa.array([p.exchange for p in written], pa.string()),
            "day": pa.array([p.day for p in written], pa.date32()),
            "rows": pa.array([p.rows for p in written], pa.int64()),
            "fingerprint": pa.array([p.fingerprint for p in written], pa.uint64()),
        }
    )
    conn.register("_lake_written", rows)
    try:
        conn.execute(
            """
            INSERT OR REPLACE INTO lake_partitions
                (table_name, partition, exchange, day, rows, fingerprint, written_at)
            SELECT ?, partition, exchange, day, rows, fingerprint, ? FROM _lake_written
            """,
            [table, _now()],
        ).fetchall()
    finally:
        conn.unregister("_lake_written")


def _record_table(conn: duckdb.DuckDBPyConnection, job: _Job, root: str) -> None:
    conn.execute(
        """
        INSERT INTO lake_tables AS s VALUES ($table, $consumed, $root, $schema_hash, $now, $now)
        ON CONFLICT DO UPDATE SET consumed_id = excluded.consumed_id, root = excluded.root,
            schema_hash = excluded.schema_hash, refreshed_at = excluded.refreshed_at,
            written_in_full_at = CASE WHEN $full THEN excluded.written_in_full_at
                                      ELSE s.written_in_full_at END
        """,
        {
            "table": job.table,
            "consumed": job.latest_note,
            "root": root,
            "schema_hash": job.schema_hash,
            "now": _now(),
            "full": job.full,
        },
    ).fetchall()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


# ------------------------------------------------------------------- schema and comments


def _utc(schema: pa.Schema) -> pa.Schema:
    """Timestamps without a zone are UTC in this warehouse: say so in the file."""
    fields = []
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            field = field.with_type(pa.timestamp(field.type.unit, tz="UTC"))
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


def _comments(conn: duckdb.DuckDBPyConnection, table: str) -> tuple[str | None, dict[str, str]]:
    table_rows = conn.execute(
        "SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = $name "
        "UNION ALL "
        "SELECT comment FROM duckdb_views() WHERE schema_name = 'main' AND view_name = $name",
        {"name": table},
    ).fetchall()
    column_rows = conn.execute(
        "SELECT column_name, comment FROM duckdb_columns() "
        "WHERE schema_name = 'main' AND table_name = ? AND comment IS NOT NULL",
        [table],
    ).fetchall()
    table_comment = table_rows[0][0] if table_rows else None
    return table_comment, {str(name): str(text) for name, text in column_rows}


def _described(schema: pa.Schema, table_comment: str | None, columns: dict[str, str]) -> pa.Schema:
    fields = [
        field.with_metadata({"description": columns[field.name]})
        if field.name in columns
        else field
        for field in schema
    ]
    metadata = dict(schema.metadata or {})
    if table_comment:
        metadata[b"description"] = table_comment.encode()
    return pa.schema(fields, metadata=metadata or None)
