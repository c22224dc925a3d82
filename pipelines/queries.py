"""Small questions and habits of every DuckDB connection, free of pipeline state: the first row
of a query, which tables exist, all-or-nothing writes. Importing this costs nothing beyond
DuckDB's types: the image-drawing processes use it (through pipelines.image_data) without the
warehouse's writing side, its schemas and its exchange connectors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb


def one_row(
    conn: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None
) -> tuple[Any, ...]:
    """The first row of a query, draining the result (an undrained one blocks the connection)."""
    rows = conn.execute(sql, params or []).fetchall()
    return tuple(rows[0]) if rows else ()


def table_type(conn: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """'BASE TABLE' or 'VIEW', or None when the schema holds nothing of that name."""
    row = one_row(
        conn,
        "SELECT table_type FROM information_schema.tables "
        "WHERE table_name = ? AND table_schema = current_schema()",
        [name],
    )
    return str(row[0]) if row else None


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    """A table or a view of that name."""
    return table_type(conn, name) is not None


def table_names(conn: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """Every table `table_exists` would find, in one query (each such query takes a millisecond
    or more, and an image asks about half a dozen tables)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    return frozenset(str(name) for (name,) in rows)


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All or nothing: a killed run leaves the warehouse as it was before the write."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
