"""Incremental refresh against a full rebuild: the same rows, whatever order the data came in.

The hand-made warehouse of test_analytics (gaps, a coin with two instruments, NULL ratios, a
constant series, 5m candles ...) arrives in batches the way ingestion writes them (upsert, then
the change note in the same transaction): a first stretch of history, the next day, corrections
scattered over the past, a coin's early history backfilled late, the rest, then one new hour.
After every batch the derived tables are refreshed incrementally; at the end a full rebuild of a
copy must hold exactly the same rows.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from bench import derive
from pipelines import analytics
from pipelines.analytics import DERIVED_TABLES, refresh_all, refresh_table
from pipelines.queries import transaction
from pipelines.universe import load_universe
from pipelines.warehouse import LS_KEY, PRICE_KEY, connect, log_changes, upsert
from tests.test_analytics import SETTINGS, START, UNIVERSE, Inputs, make_inputs

KEYS = {"ls_ratio": LS_KEY, "klines": PRICE_KEY, "open_interest": PRICE_KEY}
CUT = START + pd.Timedelta(days=6)
Rows = dict[str, pd.DataFrame]


def write(path: Path, batch: Rows, at: pd.Timestamp) -> None:
    """One ingestion write: upserts and their change notes in one transaction."""
    with connect(path) as conn, transaction(conn):
        for table, frame in batch.items():
            stamped = frame.assign(fetched_at=at)
            upsert(conn, table, stamped, KEYS[table])
            log_changes(conn, table, stamped)


def rows_where(inputs: Inputs, keep: Callable[[pd.DataFrame], pd.Series]) -> Rows:
    """Each ingested table's input rows that `keep` selects."""
    return {
        "ls_ratio": inputs.ls[keep(inputs.ls)],
        "klines": inputs.klines[keep(inputs.klines)],
        "open_interest": inputs.oi[keep(inputs.oi)],
    }


def between(first: pd.Timestamp, end: pd.Timestamp) -> Callable[[pd.DataFrame], pd.Series]:
    return lambda frame: (frame["ts"] >= first) & (frame["ts"] < end)


def late(frame: pd.DataFrame) -> pd.Series:
    """Binance SOL's first three days: history that arrives after newer data (a backfill)."""
    early = frame["ts"] < START + pd.Timedelta(days=3)
    return (frame["exchange"] == "binance") & (frame["coin"] == "SOL") & early


def corrected(stored: Rows, rng: np.random.Generator) -> Rows:
    """About 3% of the stored rows with new values, anywhere in their history."""
    ls = stored["ls_ratio"].sample(frac=0.03, random_state=rng)
    share = rng.uniform(0.2, 0.8, len(ls))
    klines = stored["klines"].sample(frac=0.03, random_state=rng)
    oi = stored["open_interest"].sample(frac=0.03, random_state=rng)
    return {
        "ls_ratio": ls.assign(long_share=share, short_share=1 - share, ratio=share / (1 - share)),
        "klines": klines.assign(
            close=klines["open"] * rng.uniform(0.98, 1.02, len(klines)),
            volume=klines["volume"] * rng.uniform(0.5, 1.5, len(klines)),
        ),
        "open_interest": oi.assign(open_interest=1.0),
    }


def table(path: Path, name: str) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as conn:
        conn.execute("SET TimeZone='UTC'")
        return conn.sql(f"SELECT * FROM {name}").df()


def same_rows(incremental: pd.DataFrame, full: pd.DataFrame, name: str) -> None:
    """Row for row: the text and time columns equal, the numbers to 1e-9 (sums in another order
    round differently in the last bits)."""
    assert len(incremental) == len(full), f"{name}: {len(incremental)} rows, full {len(full)}"
    exact = [c for c in full.columns if not pd.api.types.is_float_dtype(full[c])]
    a = incremental.sort_values(exact).reset_index(drop=True)
    b = full.sort_values(exact).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[exact], b[exact], check_dtype=False, obj=name)
    for column in full.columns.difference(exact):
        np.testing.assert_allclose(
            a[column].to_numpy(dtype=float), b[column].to_numpy(dtype=float),
            rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=f"{name}.{column}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def arrived(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[dict[str, bool]]]]:
    """The warehouse after every batch, and which tables each incremental refresh rebuilt."""
    path = tmp_path_factory.mktemp("incremental") / "x.duckdb"
    inputs = make_inputs()
    rng = np.random.default_rng(7)
    with connect(path) as conn:
        conn.register("incoming", inputs.instruments)
        conn.execute("INSERT INTO instruments BY NAME SELECT * FROM incoming")
    day = pd.Timedelta(days=1)
    last = inputs.ls["ts"].max()
    batches: list[Rows | None] = [
        rows_where(inputs, lambda f: between(START, CUT)(f) & ~late(f)),
        rows_where(inputs, between(CUT, CUT + day)),
        None,  # corrections of what is stored by then
        rows_where(inputs, late),
        rows_where(inputs, between(CUT + day, last)),
        rows_where(inputs, between(last, last + day)),  # one new hour
    ]
    stored: Rows = {}
    rebuilt: list[dict[str, bool]] = []
    for number, batch in enumerate(batches):
        batch = batch if batch is not None else corrected(stored, rng)
        write(path, batch, START + pd.Timedelta(days=30, minutes=number))
        stored = {t: pd.concat([stored.get(t), f]) for t, f in batch.items()}
        with connect(path) as conn:
            results = [refresh_table(conn, t, UNIVERSE, SETTINGS) for t in DERIVED_TABLES]
        rebuilt.append({r.table: r.full for r in results})
    yield path, rebuilt


def test_incremental_refreshes_hold_the_rows_a_full_rebuild_computes(
    arrived: tuple[Path, list[dict[str, bool]]], tmp_path: Path
) -> None:
    path, _ = arrived
    copy = tmp_path / "full.duckdb"
    shutil.copyfile(path, copy)
    with connect(copy) as conn:
        refresh_all(conn, UNIVERSE, SETTINGS, full=True)
    for name in DERIVED_TABLES:
        full = table(copy, name)
        assert len(full) > 0, name
        same_rows(table(path, name), full, name)


def test_after_the_first_build_only_changed_buckets_are_recomputed(
    arrived: tuple[Path, list[dict[str, bool]]],
) -> None:
    path, rebuilt = arrived
    assert all(rebuilt[0].values())  # nothing existed yet
    for later in rebuilt[1:]:
        assert [t for t, full in later.items() if full] == ["whale_crowd_now"]
    # Six writes and six refreshes later the log holds only notes some table has yet to take
    # in: none of the writes' (every table took them in), and of the tables' own, only the last
    # refresh's (one per table, exchange and period).
    notes = table(path, "derived_changes")
    assert set(notes["source"]) <= set(DERIVED_TABLES)
    assert not notes.duplicated(["source", "exchange", "period"]).any()


def test_a_full_rebuild_keeps_every_row_when_its_first_slice_is_empty(tmp_path: Path) -> None:
    """Regression: DuckDB 2.0.0 drops a parallel insert of more than a row group into a table
    that is empty within the transaction. cross_exchange is rebuilt one period at a time, 5m
    first, which this warehouse (1h/4h/1d) has no rows of; its 1h slice is some 570,000 rows
    (40 days, under 200,000, did not lose them: it takes several row groups)."""
    path = tmp_path / "generated.duckdb"
    derive.build(path, days=120)
    with connect(path) as conn:
        refresh_all(conn, load_universe(), tables=("heatmap_matrix", "cross_exchange"), full=True)
        expected = conn.sql("SELECT count(*) FROM (SELECT DISTINCT coin, metric, period, ts "
                            "FROM heatmap_matrix)").fetchall()[0][0]  # fmt: skip
        stored = conn.sql("SELECT count(coin) FROM cross_exchange WHERE period = '1h'")
        assert stored.fetchall()[0][0] > 122_880
    assert table(path, "cross_exchange").shape[0] == expected


def test_a_rebuild_that_fails_part_way_leaves_the_table_and_its_state_as_they_were(
    arrived: tuple[Path, list[dict[str, bool]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild commits one slice of history at a time, aside: readers meanwhile, and after
    a failure, see the table of the last refresh, and the next refresh starts over."""
    path, _ = arrived
    copy = tmp_path / "x.duckdb"
    shutil.copyfile(path, copy)
    before, state = table(copy, "heatmap_matrix"), table(copy, "derived_state")
    recomputed = 0  # the slices after the first (which creates the table)
    recompute = analytics._recompute

    def fail_on_the_third_slice(*args: object, **kwargs: object) -> None:
        nonlocal recomputed
        recomputed += 1
        if recomputed == 2:
            raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")
        recompute(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analytics, "_recompute", fail_on_the_third_slice)
    with connect(copy) as conn, pytest.raises(duckdb.OutOfMemoryException):
        refresh_table(conn, "heatmap_matrix", UNIVERSE, SETTINGS, full=True)
    assert recomputed == 2  # the first two slices had been committed
    same_rows(table(copy, "heatmap_matrix"), before, "heatmap_matrix")
    pd.testing.assert_frame_equal(table(copy, "derived_state"), state)
    with duckdb.connect(str(copy), read_only=True) as conn:
        assert conn.sql("SHOW TABLES").df()["name"].str.endswith("__rebuild").sum() == 0

    monkeypatch.undo()
    with connect(copy) as conn:
        assert refresh_table(conn, "heatmap_matrix", UNIVERSE, SETTINGS, full=True).full
    same_rows(table(copy, "heatmap_matrix"), before, "heatmap_matrix")


def test_a_warehouse_whose_divergence_is_a_table_gets_the_view_with_the_same_rows(
    arrived: tuple[Path, list[dict[str, bool]]], tmp_path: Path
) -> None:
    """divergence used to be a table of all its columns; now a view reads divergence_rows. An
    older warehouse's table gives way to the view at the next refresh (its SQL changed), and
    readers see the same columns and rows."""
    path, _ = arrived
    copy = tmp_path / "older.duckdb"
    shutil.copyfile(path, copy)
    before = table(copy, "divergence")
    with connect(copy) as conn, transaction(conn):
        conn.execute("CREATE TABLE divergence_old AS SELECT * FROM divergence")
        conn.execute("DROP VIEW divergence")
        conn.execute("DROP TABLE divergence_rows")
        conn.execute("ALTER TABLE divergence_old RENAME TO divergence")
        conn.execute("UPDATE derived_state SET fingerprint = 'older' WHERE model = 'divergence'")
    with connect(copy) as conn:
        assert refresh_table(conn, "divergence", UNIVERSE, SETTINGS).full
        kinds = dict(conn.sql("SELECT table_name, table_type FROM information_schema.tables "
                              "WHERE table_name LIKE 'divergence%'").fetchall())  # fmt: skip
    assert kinds == {"divergence": "VIEW", "divergence_rows": "BASE TABLE"}
    after = table(copy, "divergence")
    assert list(after.columns) == list(before.columns)
    same_rows(after, before, "divergence")
