"""Parquet exports of the derived tables, for tools that do not speak DuckDB.

Each table becomes `<out_dir>/<table>.parquet` (zstd), streamed in record batches so a large
table never sits in memory whole. The file is written under a temporary name in the same folder
and renamed over the old one, so a reader sees either the previous export or the new one, never a
half-written file. Timestamps are tagged UTC (the warehouse stores UTC without a zone); the
table's and columns' `COMMENT ON` texts travel along as schema and field metadata
(`description`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.analytics import DERIVED_TABLES

EXPORTED_TABLES: tuple[str, ...] = (*DERIVED_TABLES, "coverage", "coverage_gaps")
BATCH_ROWS = 256_000


def existing_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND NOT temporary"
    ).fetchall()
    return {str(name) for (name,) in rows}


def export_tables(
    conn: duckdb.DuckDBPyConnection,
    out_dir: Path,
    tables: Iterable[str] | None = None,
) -> list[Path]:
    """Write each table to `out_dir/<table>.parquet`; return the files written.

    With `tables` None every derived table present in the warehouse is exported (a table not
    yet materialised is skipped); a table named explicitly must exist.
    """
    present = existing_tables(conn)
    if tables is None:
        chosen = [t for t in EXPORTED_TABLES if t in present]
    else:
        chosen = list(tables)
        missing = [t for t in chosen if t not in present]
        if missing:
            raise ValueError(f"no such table in the warehouse: {', '.join(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [export_table(conn, table, out_dir) for table in chosen]


def export_table(conn: duckdb.DuckDBPyConnection, table: str, out_dir: Path) -> Path:
    """One table to Parquet, atomically (temporary file in the same folder, then rename)."""
    if not table.isidentifier():
        raise ValueError(f"refusing to export a table named {table!r}")
    target = out_dir / f"{table}.parquet"
    temporary = out_dir / f".{table}.{uuid.uuid4().hex}.parquet.tmp"
    comments = _comments(conn, table)  # before the stream: it holds the connection until drained
    reader = conn.sql(f'SELECT * FROM "{table}"').to_arrow_reader(BATCH_ROWS)
    schema = _described(_utc(reader.schema), *comments)
    try:
        with pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch.cast(schema))
        os.replace(temporary, target)
    finally:
        reader.close()  # an undrained stream would block the connection
        temporary.unlink(missing_ok=True)
    return target


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
        "SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
        [table],
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
