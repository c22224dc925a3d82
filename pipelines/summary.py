"""What the command line says at the end of a run, and the guard against mixing data sources."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pipelines.analytics import DERIVED_TABLES
from pipelines.queries import one_row, table_names, transaction
from pipelines.warehouse import claim_origin, connect

TABLES = (
    "ls_ratio",
    "ls_ratio_rejected",
    "klines",
    "open_interest",
    "coverage",
    "coverage_gaps",
    *DERIVED_TABLES,
    "heatmap_images",
)


def ensure_warehouse_kind(path: Path, *, simulated: bool | None) -> None:
    """Refuse to mix simulated and real exchange data in one warehouse file: before a run
    fetches anything, it claims the file for its kind (a new file is created and claimed).
    `None` (the kind shows only in the answers) just opens the file, which checks it is ours."""
    with connect(path) as conn, transaction(conn):
        if simulated is not None:
            claim_origin(conn, simulated=simulated)


def describe_warehouse(path: Path, lake: Path | None = None) -> str:
    """Row counts per table, where the images and the Parquet lake are: the last thing a run
    prints."""
    lines = [f"\nWarehouse: {path}"]
    with connect(path) as conn:
        present = table_names(conn)
        for table in TABLES:
            if table in present:
                count = one_row(conn, f"SELECT count(*) FROM {table}")
                lines.append(f"  {table:<18} {count[0] if count else 0:>10,} rows")
        per_exchange = conn.execute(
            """SELECT exchange, count(DISTINCT coin),
                      string_agg(DISTINCT metric, ', ' ORDER BY metric)
               FROM ls_ratio GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        images = conn.execute("SELECT path FROM heatmap_images ORDER BY path").fetchall()
    for exchange, coins, metrics in per_exchange:
        lines.append(f"  {exchange}: {coins} coins; {metrics}")
    lines.append(f"Images ({len(images)}):")
    lines += [f"  {p}" for (p,) in images]
    lines.append(f'Query it: {_lsr()} sql "SELECT * FROM alt_average ORDER BY ts DESC LIMIT 5"')
    if lake is not None and lake.is_dir():
        lines.append(f"Or without the warehouse's lock, from Parquet: {lake}/<table>/...")
    return "\n".join(lines)


def _lsr() -> str:
    """How to call `lsr` from the user's shell: by name when it is on PATH, else by its path."""
    installed = Path(sys.executable).with_name("lsr")
    if shutil.which("lsr") == str(installed):
        return "lsr"
    return os.path.relpath(installed) if installed.is_relative_to(Path.cwd()) else str(installed)
