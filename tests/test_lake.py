"""The Parquet lake: the warehouse's rows, read without the warehouse, rewritten where they
changed, one partition at a time.

The hand-made warehouse of test_analytics arrives in batches the way ingestion writes them
(tests/test_incremental.py: history, the next day, corrections scattered over the past, a late
backfill, the rest, one new hour), the derived tables refreshed and the lake refreshed after
each batch but one (a crash between a load and the lake's refresh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from assets.analytics import parquet_lake
from pipelines import lake
from pipelines.analytics import DERIVED_TABLES, refresh_all
from pipelines.lake import LAKE_TABLES, PART_FILE, Layout, TableResult, refresh_lake
from pipelines.resources import PipelineSettings
from pipelines.warehouse import connect
from tests.test_analytics import (
    QUIET,
    SETTINGS,
    START,
    UNIVERSE,
    Inputs,
    build_warehouse,
    make_inputs,
)
from tests.test_incremental import CUT, Rows, between, corrected, late, rows_where, same_rows, write

TABLES_WITH_ROWS = [t for t in LAKE_TABLES if t not in ("coverage", "coverage_gaps")]
LAST_DAY = (START + pd.Timedelta(hours=239)).floor("D")  # the fixture's tenth and last day
FileStat = tuple[int, int]  # inode, mtime in ns


@dataclass(frozen=True)
class Lake:
    warehouse: Path
    root: Path
    results: list[list[TableResult]]  # per lake refresh


def _instruments(path: Path, inputs: Inputs) -> None:
    with connect(path) as conn:
        conn.register("incoming", inputs.instruments)
        conn.execute("INSERT INTO instruments BY NAME SELECT * FROM incoming")


def _refresh(path: Path, root: Path) -> list[TableResult]:
    with connect(path) as conn:
        refresh_all(conn, UNIVERSE, SETTINGS)
    return refresh_lake(path, root)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A warehouse fed in batches, lake refreshed after each but the third."""
    folder = tmp_path_factory.mktemp("lake")
    path, root = folder / "lsr.duckdb", folder / "lake"
    inputs = make_inputs(seed=5)
    rng = np.random.default_rng(3)
    _instruments(path, inputs)
    day = pd.Timedelta(days=1)
    last = inputs.ls["ts"].max()
    stored: Rows = {}
    results = []
    for number, batch in enumerate(
        [
            rows_where(inputs, lambda f: between(START, CUT)(f) & ~late(f)),
            rows_where(inputs, between(CUT, CUT + day)),
            None,  # corrections of what is stored by then (an existing observation changes)
            rows_where(inputs, late),
            rows_where(inputs, between(CUT + day, last)),
            rows_where(inputs, between(last, last + day)),  # one new hour
        ]
    ):
        batch = corrected(stored, rng) if batch is None else batch
        for name, frame in batch.items():
            stored[name] = pd.concat([stored.get(name, frame.iloc[:0]), frame])
        write(path, batch, pd.Timestamp("2024-04-01") + pd.Timedelta(minutes=number))
        if number == 2:  # the lake's refresh "crashed": the next one catches up
            with connect(path) as conn:
                refresh_all(conn, UNIVERSE, SETTINGS)
            continue
        results.append(_refresh(path, root))
    yield Lake(path, root, results)


def lake_rows(root: Path, table: str) -> pd.DataFrame:
    """The table as a reader of the lake sees it (DuckDB, hive partitioning), timestamps as the
    warehouse stores them (UTC without a zone), the `date` of the folders checked and dropped."""
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        frame = conn.sql(
            f"SELECT * FROM read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = true)"
        ).df()
    if "date" in frame.columns:
        day = frame["ts"].dt.tz_convert("UTC").dt.normalize().dt.tz_localize(None)
        assert (frame["date"] == day).all(), f"{table}: a row in another day's folder"
        frame = frame.drop(columns="date")
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def warehouse_rows(path: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        return conn.sql(f"SELECT * FROM {table}").df()


def stats(root: Path) -> dict[str, FileStat]:
    """Every file of the lake (relative path) -> its inode and modification time."""
    return {
        path.relative_to(root).as_posix(): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file()
    }


# ------------------------------------------------------------------------------ the rows


def test_the_lake_holds_the_warehouse_rows_row_for_row_after_every_load(fed: Lake) -> None:
    for table in TABLES_WITH_ROWS:
        stored = warehouse_rows(fed.warehouse, table)
        assert len(stored) > 0, table
        read = lake_rows(fed.root, table)[list(stored.columns)]
        same_rows(read, stored, table)


def test_one_file_per_partition_and_no_temporary_file_left(fed: Lake) -> None:
    files = list(fed.root.rglob("*"))
    parquet = [p for p in files if p.is_file()]
    assert parquet and all(p.name == PART_FILE for p in parquet)
    table = fed.root / "ls_ratio"
    ls = sorted(p.parent.relative_to(table).as_posix() for p in parquet if p.is_relative_to(table))
    assert ls[0] == "exchange=binance/date=2024-03-01" and len(ls) == len(set(ls))
    with connect(fed.warehouse) as conn:
        recorded = conn.execute(
            "SELECT table_name || '/' || partition FROM lake_partitions"
        ).fetchall()
    on_disk = {p.parent.relative_to(fed.root).as_posix() for p in parquet}
    assert {str(r[0]).rstrip("/") for r in recorded} == on_disk


def test_later_loads_rewrite_a_few_partitions_and_the_crash_is_caught_up(fed: Lake) -> None:
    first, *later = fed.results
    assert all(r.full for r in first)
    assert not any(r.full for run in later for r in run)
    written = {r.table: r.written for r in later[-1]}  # one new hour: its day, per exchange
    assert 0 < written["ls_ratio"] <= 5 and written["heatmap_matrix"] <= 5
    examined = {r.table: r.examined for r in later[-1]}
    assert examined["ls_ratio"] == written["ls_ratio"]  # nothing older was even looked at


# ------------------------------------------------------------------------- the readers


def test_readers_scan_the_lake_while_a_writer_holds_the_warehouse(
    fed: Lake, tmp_path: Path
) -> None:
    """A reader in another process needs neither the DuckDB file nor its lock: while a write
    transaction is open on the warehouse (which a read-only open of the file cannot get past),
    DuckDB and pyarrow read the lake, and see the rows committed before."""
    glob = f"{fed.root}/ls_ratio/**/*.parquet"
    reader = textwrap.dedent(
        f"""
        import duckdb, pyarrow.dataset as ds
        print(duckdb.sql("SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)")
              .fetchall()[0][0])
        print(ds.dataset('{fed.root}/ls_ratio', partitioning='hive').count_rows())
        """
    )
    opener = f"import duckdb; duckdb.connect({str(fed.warehouse)!r}, read_only=True)"
    before = len(warehouse_rows(fed.warehouse, "ls_ratio"))
    extra = rows_where(make_inputs(seed=5), between(START, START + pd.Timedelta(days=1)))
    moved = extra["ls_ratio"].assign(ts=extra["ls_ratio"]["ts"] - pd.Timedelta(days=30))
    with connect(fed.warehouse) as conn:
        conn.execute("BEGIN TRANSACTION")
        try:
            conn.register("moved", moved.assign(fetched_at=pd.Timestamp("2024-06-01")))
            conn.execute("INSERT INTO ls_ratio BY NAME SELECT * FROM moved")
            read = subprocess.run(
                [sys.executable, "-c", reader], capture_output=True, text=True, timeout=120
            )
            blocked = subprocess.run(
                [sys.executable, "-c", opener], capture_output=True, text=True, timeout=120
            )
        finally:
            conn.execute("ROLLBACK")  # the module's warehouse stays as the other tests expect
    assert read.returncode == 0, read.stderr
    assert read.stdout.split() == [str(before), str(before)]
    assert blocked.returncode != 0 and "lock" in blocked.stderr.lower()


def test_partition_columns_come_back_typed(fed: Lake) -> None:
    with duckdb.connect() as conn:
        described = conn.sql(
            f"DESCRIBE SELECT * FROM read_parquet('{fed.root}/heatmap_matrix/**/*.parquet', "
            "hive_partitioning = true)"
        ).fetchall()
    types = {str(row[0]): str(row[1]) for row in described}
    assert types["exchange"] == "VARCHAR" and types["date"] == "DATE"
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"

    table = lake.dataset(fed.root, "ls_ratio").to_table()
    assert table.schema.field("exchange").type == pa.string()
    assert table.schema.field("date").type == pa.date32()
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("exchange").to_pylist()) == {"binance", "bybit", "htx", "okx"}
    assert min(table.column("date").to_pylist()) == date(2024, 3, 1)

    by_day = lake.dataset(fed.root, "cross_exchange").to_table()  # cut by day only
    assert by_day.schema.field("date").type == pa.date32()
    assert by_day.num_rows == len(warehouse_rows(fed.warehouse, "cross_exchange"))


def test_timestamps_are_utc_and_comments_travel_as_metadata(fed: Lake) -> None:
    (path, *_) = sorted((fed.root / "signal_zones").rglob(PART_FILE))
    schema = pq.read_schema(path)
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert b"trailing percentiles" in schema.metadata[b"description"]
    assert b"ln_upper_band" in schema.field("zone").metadata[b"description"]
    assert "exchange" not in schema.names  # the folder names carry it
    ls = pq.read_schema(next((fed.root / "ls_ratio").rglob(PART_FILE)))
    assert b"first fetched" in ls.field("fetched_at").metadata[b"description"]


# ------------------------------------------------------------------ what gets rewritten


@pytest.fixture
def lake_copy(fed: Lake, tmp_path: Path) -> Lake:
    """The fed warehouse and its lake, copied so that a test may load more or break files (the
    lake's root is recorded per table, so the copy is written in full once)."""
    shutil.copy(fed.warehouse, tmp_path / "lsr.duckdb")
    root = tmp_path / "lake"
    results = refresh_lake(tmp_path / "lsr.duckdb", root)
    assert all(r.full for r in results)
    return Lake(tmp_path / "lsr.duckdb", root, [results])


def _changed(before: dict[str, FileStat], after: dict[str, FileStat]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def test_loading_one_exchange_day_rewrites_that_partition_only(lake_copy: Lake) -> None:
    """Bybit's last day again, its second half corrected: in the stored tables the one file of
    bybit's day changes (a new inode, renamed over the old one); every other file is the same
    file; derived tables change nothing but bybit's day and the tables across exchanges.
    candle_flow recomputes the day before too (a 1h candle is part of the 4h and 1d flow): its
    values come back equal, but for the last bits of a parallel sum now and then, and a
    partition whose bits moved is rewritten."""
    inputs = make_inputs(seed=5)
    day = LAST_DAY.date()
    noon, end = LAST_DAY + pd.Timedelta(hours=12), LAST_DAY + pd.Timedelta(days=1)
    afternoon = rows_where(inputs, between(noon, end))
    bybit = {name: frame.query("exchange == 'bybit'") for name, frame in afternoon.items()}
    batch = {
        "ls_ratio": bybit["ls_ratio"].assign(long_share=0.55, short_share=0.45, ratio=0.55 / 0.45),
        "klines": bybit["klines"].assign(volume=1.0),
    }
    before = stats(lake_copy.root)
    write(lake_copy.warehouse, batch, pd.Timestamp("2024-07-01"))
    results = {r.table: r for r in _refresh(lake_copy.warehouse, lake_copy.root)}
    changed = _changed(before, stats(lake_copy.root))
    partition = f"exchange=bybit/date={day}/{PART_FILE}"
    assert {p for p in changed if p.startswith(("ls_ratio/", "klines/", "open_interest/"))} == {
        f"ls_ratio/{partition}",
        f"klines/{partition}",
    }
    assert results["ls_ratio"].written == results["klines"].written == 1
    assert results["open_interest"].examined == 0  # no note: not even looked at
    day_before = f"exchange=bybit/date={day - timedelta(days=1)}/{PART_FILE}"
    for path in changed:
        table, rest = path.split("/", 1)
        across = table in ("cross_exchange", "cross_lines", "whale_crowd_now")
        flow = table == "candle_flow" and rest == day_before
        assert across or flow or rest == partition, path
        assert flow or f"date={day}" in rest or rest == PART_FILE, path
    assert len(changed) < len(before) / 20
    for table in ("ls_ratio", "klines", "heatmap_matrix", "cross_exchange"):
        stored = warehouse_rows(lake_copy.warehouse, table)
        same_rows(lake_rows(lake_copy.root, table)[list(stored.columns)], stored, table)


def test_the_same_change_in_two_rows_of_a_partition_is_seen(lake_copy: Lake) -> None:
    """BTC's candle close is in btc_ls once per metric: a corrected close changes HTX's two rows
    (top_account, top_position) alike. (A fingerprint XORing DuckDB's row hashes as they are
    misses that: a row's hash is linear in its last column, so two equal changes cancel out.)"""
    inputs = make_inputs(seed=5)
    ls = inputs.ls.query("exchange == 'htx' and coin == 'BTC' and period == '1h'")
    both = ls.groupby("ts")["metric"].nunique().loc[lambda n: n == 2].index
    candles = inputs.klines.query("exchange == 'htx' and coin == 'BTC' and period == '1h'")
    hour = candles[candles["ts"].isin(both)].iloc[[len(both) // 2]]
    corrected_close = hour.assign(close=hour["close"] * 1.5)
    write(lake_copy.warehouse, {"klines": corrected_close}, pd.Timestamp("2024-08-01"))
    with connect(lake_copy.warehouse) as conn:
        refresh_all(conn, UNIVERSE, SETTINGS)
    results = {r.table: r for r in refresh_lake(lake_copy.warehouse, lake_copy.root)}
    assert results["btc_ls"].written >= 1
    stored = warehouse_rows(lake_copy.warehouse, "btc_ls")
    same_rows(lake_rows(lake_copy.root, "btc_ls")[list(stored.columns)], stored, "btc_ls")


def test_a_failed_write_leaves_every_partition_whole_and_the_next_refresh_completes_it(
    lake_copy: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(lake_copy.warehouse) as conn:
        conn.execute("UPDATE ls_ratio SET source_ratio = 1.0 WHERE exchange = 'binance'")
    files = sorted((lake_copy.root / "ls_ratio").glob(f"exchange=binance/*/{PART_FILE}"))
    before = {path: path.read_bytes() for path in files}
    monkeypatch.setattr(lake, "BATCH_ROWS", 100)  # several batches; fail after a few
    calls = {"n": 0}
    real_write = pq.ParquetWriter.write_batch

    def failing_write(self: pq.ParquetWriter, batch: pa.RecordBatch, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError("disk full")
        real_write(self, batch, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", failing_write)
    with pytest.raises(OSError, match="disk full"):
        refresh_lake(lake_copy.warehouse, lake_copy.root, tables=["ls_ratio"], full=True)
    monkeypatch.undo()
    after = {path: path.read_bytes() for path in files}
    assert sum(after[p] != before[p] for p in files) in range(1, len(files))  # some replaced
    for path in files:
        pq.read_table(path)  # each one whole, old or new
    assert not [p for p in lake_copy.root.rglob("*") if p.name.endswith(".tmp")]

    refresh_lake(lake_copy.warehouse, lake_copy.root, tables=["ls_ratio"], full=True)
    assert all(pq.read_table(p).column("source_ratio").to_pylist()[0] == 1.0 for p in files)


def test_a_full_rewrite_removes_stray_files_and_an_incremental_one_restores_lost_ones(
    lake_copy: Lake,
) -> None:
    folder = lake_copy.root / "ls_ratio" / "exchange=okx" / f"date={LAST_DAY.date()}"
    (folder / PART_FILE).unlink()
    refresh_lake(lake_copy.warehouse, lake_copy.root, tables=["ls_ratio"])
    assert not (folder / PART_FILE).exists()  # nothing noted, nothing examined
    with connect(lake_copy.warehouse) as conn:  # a note of OKX's last day, as a write leaves
        conn.execute(
            "INSERT INTO derived_changes (source, exchange, period, since, logged_at) "
            "VALUES ('ls_ratio', 'okx', '1h', ?, now())",
            [LAST_DAY.to_pydatetime()],
        )
    (result,) = refresh_lake(lake_copy.warehouse, lake_copy.root, tables=["ls_ratio"])
    assert (folder / PART_FILE).exists() and result.written == 1

    gone = lake_copy.root / "ls_ratio" / "exchange=gone" / "date=2024-01-01" / PART_FILE
    stray = [folder / "part-1.parquet", folder / f".{PART_FILE}.0123.tmp", gone]
    for path in stray:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / PART_FILE, path)
    (result,) = refresh_lake(lake_copy.warehouse, lake_copy.root, tables=["ls_ratio"], full=True)
    assert result.full and result.removed == 2  # the two stray Parquet files
    assert not any(p.exists() for p in stray)
    assert not (lake_copy.root / "ls_ratio" / "exchange=gone").exists()


def test_a_partition_whose_rows_are_gone_is_removed(lake_copy: Lake) -> None:
    day = LAST_DAY.to_pydatetime()
    with connect(lake_copy.warehouse) as conn:
        conn.execute("DELETE FROM ls_ratio WHERE exchange = 'okx' AND ts >= ?", [day])
        conn.execute(
            "INSERT INTO derived_changes (source, exchange, period, since, logged_at) "
            "VALUES ('ls_ratio', 'okx', '1h', ?, now())",
            [day],
        )
    (result,) = refresh_lake(lake_copy.warehouse, lake_copy.root, tables=["ls_ratio"])
    assert result.removed == 1 and result.written == 0
    assert not (lake_copy.root / "ls_ratio" / "exchange=okx" / f"date={day:%Y-%m-%d}").exists()
    stored = warehouse_rows(lake_copy.warehouse, "ls_ratio")
    same_rows(lake_rows(lake_copy.root, "ls_ratio")[list(stored.columns)], stored, "ls_ratio")


def test_the_lake_takes_in_the_change_notes_before_they_are_pruned(lake_copy: Lake) -> None:
    first_hour = rows_where(make_inputs(seed=5), between(START, START + pd.Timedelta(hours=1)))
    changed = first_hour["ls_ratio"].assign(long_share=0.6, short_share=0.4, ratio=1.5)
    write(lake_copy.warehouse, {"ls_ratio": changed}, pd.Timestamp("2024-05-01"))
    with connect(lake_copy.warehouse) as conn:
        refresh_all(conn, UNIVERSE, SETTINGS)
        waiting = conn.execute(
            "SELECT count(*) FROM derived_changes WHERE source = 'ls_ratio'"
        ).fetchall()[0][0]
    assert waiting > 0  # every derived table has taken them in; the lake has not yet
    results = {r.table: r for r in refresh_lake(lake_copy.warehouse, lake_copy.root)}
    # every day from the first on is examined, the first day's files alone are rewritten
    assert results["ls_ratio"].written == changed["exchange"].nunique()
    assert results["ls_ratio"].examined == 10 * results["ls_ratio"].written
    with connect(lake_copy.warehouse) as conn:
        left = conn.execute(
            "SELECT count(*) FROM derived_changes WHERE source = 'ls_ratio'"
        ).fetchall()[0][0]
    assert left == 0  # taken in by every reader now: pruned
    for table in ("ls_ratio", "heatmap_matrix", "signal_zones"):
        stored = warehouse_rows(lake_copy.warehouse, table)
        same_rows(lake_rows(lake_copy.root, table)[list(stored.columns)], stored, table)


def test_a_new_root_is_written_in_full(lake_copy: Lake, tmp_path: Path) -> None:
    again = refresh_lake(lake_copy.warehouse, lake_copy.root)
    assert not any(r.full or r.written for r in again)
    elsewhere = refresh_lake(lake_copy.warehouse, tmp_path / "elsewhere")
    assert all(r.full for r in elsewhere)
    assert stats(tmp_path / "elsewhere").keys() == stats(lake_copy.root).keys()


# ------------------------------------------------------------------------------ refusals


def test_path_components_built_from_data_are_sanitised() -> None:
    layout = Layout("ls_ratio", by_exchange=True, by_date=True)
    assert layout.partition("gate", date(2024, 3, 1)) == "exchange=gate/date=2024-03-01"
    for bad in ("../etc", "Binance", "a/b", "x=y", "", None, "bïnance"):
        with pytest.raises(ValueError, match="refusing a lake partition value"):
            layout.partition(bad, date(2024, 3, 1))
    with pytest.raises(ValueError, match="refusing a lake partition day"):
        layout.partition("gate", "2024-03-01/../..")


def test_unknown_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a lake table"):
        refresh_lake(tmp_path / "x.duckdb", tmp_path / "lake", tables=["instruments"])
    with pytest.raises(ValueError, match="not a lake table"):
        lake.dataset(tmp_path, "../ls_ratio")
    assert not (tmp_path / "x.duckdb").exists()


def test_every_derived_table_and_the_stored_ones_are_in_the_lake() -> None:
    assert set(DERIVED_TABLES) | {"ls_ratio", "klines", "open_interest"} <= set(LAKE_TABLES)
    assert os.sep not in "".join(LAKE_TABLES)


def test_the_parquet_lake_asset_writes_beside_the_warehouse(tmp_path: Path) -> None:
    path = tmp_path / "lsr.duckdb"
    build_warehouse(path, make_inputs(seed=13))
    settings = PipelineSettings(warehouse=str(path))
    first = materialize(
        [parquet_lake],
        resources={"settings": settings},
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
    )
    assert first.success
    folder = tmp_path / "lake"
    tables = sorted(p.name for p in folder.iterdir())
    assert tables == sorted(TABLES_WITH_ROWS)  # coverage was never computed here
    (done,) = first.asset_materializations_for_node("parquet_lake")
    assert done.metadata["full"].value is True
    assert done.metadata["partitions_written"].value == len(list(folder.rglob(PART_FILE)))
