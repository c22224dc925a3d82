"""Parquet exports: every derived table, same rows and values as DuckDB, written atomically."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from assets.analytics import parquet_exports
from pipelines import export
from pipelines.analytics import DERIVED_TABLES
from pipelines.export import export_tables
from pipelines.resources import PipelineSettings
from pipelines.warehouse import connect
from tests.test_analytics import build_warehouse, make_inputs

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "lsr.duckdb"
    build_warehouse(path, make_inputs(seed=11))
    return path


def _duckdb_table(path: Path, table: str) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone='UTC'")
        return conn.sql(f"SELECT * FROM {table}").df()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].astype("datetime64[us]")
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_every_derived_table_is_exported_with_the_same_rows(
    warehouse: Path, tmp_path: Path
) -> None:
    with connect(warehouse) as conn:
        written = export_tables(conn, tmp_path / "exports")
    # coverage is exported too when it exists; this warehouse never computed it
    assert written == [tmp_path / "exports" / f"{t}.parquet" for t in DERIVED_TABLES]
    for path in written:
        exported = pq.read_table(path).to_pandas()
        stored = _duckdb_table(warehouse, path.stem)
        assert len(exported) == len(stored) > 0, path.stem
        pd.testing.assert_frame_equal(
            _sorted(exported), _sorted(stored), check_dtype=False, obj=path.stem
        )
    assert not list((tmp_path / "exports").glob(".*tmp"))  # no temporary files left


def test_timestamps_are_utc_and_comments_travel_as_metadata(
    warehouse: Path, tmp_path: Path
) -> None:
    with connect(warehouse) as conn:
        (path,) = export_tables(conn, tmp_path, ["signal_zones"])
    schema = pq.read_schema(path)
    assert schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert b"trailing percentiles" in schema.metadata[b"description"]
    assert b"ln_upper_band" in schema.field("zone").metadata[b"description"]
    assert schema.field("exchange").metadata is None  # no comment, no metadata


def test_a_failed_export_leaves_the_previous_file_whole(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(warehouse) as conn:
        (path,) = export_tables(conn, tmp_path, ["heatmap_matrix"])
    before = path.read_bytes()
    monkeypatch.setattr(export, "BATCH_ROWS", 500)  # several batches; fail after the first
    calls = {"n": 0}
    real_write = pq.ParquetWriter.write_batch

    def failing_write(self: pq.ParquetWriter, batch: pa.RecordBatch, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("disk full")
        real_write(self, batch, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", failing_write)
    with connect(warehouse) as conn, pytest.raises(OSError, match="disk full"):
        export_tables(conn, tmp_path, ["heatmap_matrix"])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heatmap_matrix.parquet"]


def test_streamed_in_batches_the_file_still_holds_every_row(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH_ROWS", 1000)
    with connect(warehouse) as conn:
        (path,) = export_tables(conn, tmp_path, ["heatmap_matrix"])
        (count,) = conn.execute("SELECT count(*) FROM heatmap_matrix").fetchall()[0]
    assert pq.ParquetFile(path).metadata.num_rows == count > 1000


def test_unknown_or_odd_table_names_are_refused(warehouse: Path, tmp_path: Path) -> None:
    with connect(warehouse) as conn:
        with pytest.raises(ValueError, match="no such table"):
            export_tables(conn, tmp_path, ["nope"])
        with pytest.raises(ValueError, match="refusing"):
            export.export_table(conn, "../ls_ratio", tmp_path)


def test_the_parquet_exports_asset_writes_beside_the_warehouse(tmp_path: Path) -> None:
    path = tmp_path / "lsr.duckdb"
    build_warehouse(path, make_inputs(seed=13))
    result = materialize(
        [parquet_exports],
        resources={"settings": PipelineSettings(warehouse=str(path))},
        instance=DagsterInstance.ephemeral(),
        run_config=QUIET,
    )
    assert result.success
    folder = tmp_path / "exports"
    assert sorted(p.stem for p in folder.glob("*.parquet")) == sorted(DERIVED_TABLES)
