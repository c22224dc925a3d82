"""The cross-exchange image (exchange "cross"): rows from `cross_exchange`, hand-made data, and
the lines its model `cross_lines` computes from them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pytest

from pipelines.analytics import refresh
from pipelines.cli import _parser
from pipelines.config import DEFAULT_RANGE_DAYS
from pipelines.image_data import CROSS, RenderRequest, heatmap_grid, image_path
from pipelines.images import default_requests, is_simulated
from pipelines.render import build_figure, render_heatmap
from pipelines.universe import load_universe
from pipelines.warehouse import connect

START = datetime(2025, 1, 1)  # naive = UTC
N_BUCKETS = 8 * 24  # eight days of 1h buckets; the 7-day image shows the last 168
SOL_NO_OI_HOURS = range(170, 176)  # rows present, oi_weighted_ln_ratio NULL, mean_zscore set
ETH_ABSENT_HOURS = range(180, 186)  # no ETH rows at all
THREE_EXCHANGE_HOURS = range(150, 170)  # a third exchange joins (not for DOGE)
BASE = {"BTC": 0.1, "ETH": 0.3, "SOL": -0.2, "DOGE": 0.5}

CROSS_DDL = """
CREATE TABLE IF NOT EXISTS cross_exchange (coin VARCHAR, metric VARCHAR, period VARCHAR,
    ts TIMESTAMP, mean_zscore DOUBLE, oi_weighted_ln_ratio DOUBLE, n_exchanges INTEGER,
    n_exchanges_zscore INTEGER, n_exchanges_with_oi INTEGER, oi_usd_total DOUBLE);
CREATE TABLE IF NOT EXISTS btc_ls (exchange VARCHAR, metric VARCHAR, period VARCHAR,
    ts TIMESTAMP, ratio DOUBLE, long_share DOUBLE, short_share DOUBLE, price_close DOUBLE);
CREATE TABLE IF NOT EXISTS btc_price (exchange VARCHAR, period VARCHAR, ts TIMESTAMP,
    close DOUBLE);
CREATE TABLE IF NOT EXISTS heatmap_matrix (exchange VARCHAR, metric VARCHAR, period VARCHAR,
    coin VARCHAR, ts TIMESTAMP, ratio DOUBLE, ln_ratio DOUBLE, zscore DOUBLE);
"""


def _ln(coin: str, hour: int) -> float:
    return BASE[coin] + 0.1 * math.sin(hour / 5 + len(coin))


def _cross_rows(metric: str = "global_account") -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for coin in ("ETH", "SOL", "BTC", "DOGE"):  # not in display order on purpose
        for hour in range(N_BUCKETS):
            if coin == "ETH" and hour in ETH_ABSENT_HOURS:
                continue
            ln: float | None = (
                None if coin == "SOL" and hour in SOL_NO_OI_HOURS else _ln(coin, hour)
            )
            ts = START + timedelta(hours=hour)
            n = 3 if hour in THREE_EXCHANGE_HOURS and coin != "DOGE" else 2
            rows.append((coin, metric, "1h", ts, 2 * _ln(coin, hour), ln, n, n, n, 1e6))
    return rows


def _make(path: Path, price_exchanges: tuple[str, ...]) -> None:
    with connect(path) as conn:
        conn.execute(CROSS_DDL)
        conn.executemany(
            "INSERT INTO cross_exchange VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _cross_rows()
        )
        # A different metric kind must not leak into the global_account image.
        conn.executemany(
            "INSERT INTO cross_exchange VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*r[:1], "top_position", *r[2:4], 9.0, 9.0, *r[6:]) for r in _cross_rows()[:50]],
        )
        offsets = {"okx": 1_000.0, "binance": 90_000.0}
        conn.executemany(
            "INSERT INTO btc_ls VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    ex,
                    "global_account",
                    "1h",
                    START + timedelta(hours=h),
                    1.0,
                    0.5,
                    0.5,
                    offsets[ex] + h,
                )
                for ex in price_exchanges
                for h in range(N_BUCKETS)
            ],
        )
        conn.executemany(
            "INSERT INTO btc_price VALUES (?, ?, ?, ?)",
            [
                (ex, "1h", START + timedelta(hours=h), offsets[ex] + h)
                for ex in price_exchanges
                for h in range(N_BUCKETS)
            ],
        )
        refresh(conn, "cross_lines", load_universe())  # the top panel's lines, by its model


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "w.duckdb"
    _make(path, ("okx", "binance"))
    return path


@pytest.fixture
def conn(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with connect(warehouse) as connection:
        yield connection


def _request(**overrides: object) -> RenderRequest:
    values: dict[str, object] = {
        "exchange": CROSS,
        "metric": "global_account",
        "period": "1h",
        "range_days": 7,
    }
    values.update(overrides)
    return RenderRequest(**values)  # type: ignore[arg-type]


def _table(conn: duckdb.DuckDBPyConnection, column: str) -> dict[tuple[str, datetime], object]:
    rows = conn.execute(
        f"SELECT coin, ts, {column} FROM cross_exchange WHERE metric = 'global_account'"
    ).fetchall()
    return {(coin, ts): value for coin, ts, value in rows}


@pytest.mark.parametrize(
    ("color_by", "column"), [("ln_ratio", "oi_weighted_ln_ratio"), ("zscore", "mean_zscore")]
)
def test_grid_is_the_cross_exchange_table(
    conn: duckdb.DuckDBPyConnection, color_by: str, column: str
) -> None:
    grid = heatmap_grid(conn, _request(color_by=color_by))
    assert grid.coins == ["BTC", "DOGE", "ETH", "SOL"]
    assert len(grid.ts_index) == 168
    assert grid.ts_index[-1] == START + timedelta(hours=N_BUCKETS - 1)
    table = _table(conn, column)
    for i, coin in enumerate(grid.coins):
        for j, ts in enumerate(grid.ts_index):
            expected = table.get((coin, ts.to_pydatetime()))
            if expected is None:
                assert np.ma.getmaskarray(grid.values)[i, j], (coin, ts)
            else:
                assert not np.ma.getmaskarray(grid.values)[i, j], (coin, ts)
                assert grid.values[i, j] == pytest.approx(expected)


def test_missing_cells_are_masked(conn: duckdb.DuckDBPyConnection) -> None:
    grid = heatmap_grid(conn, _request())
    first_hour = int((grid.ts_index[0] - START) / pd.Timedelta(hours=1))
    inv = {h: h - first_hour for h in range(first_hour, N_BUCKETS)}  # hour -> column
    eth, sol = grid.coins.index("ETH"), grid.coins.index("SOL")
    assert all(np.ma.getmaskarray(grid.values)[eth, inv[h]] for h in ETH_ABSENT_HOURS)  # no row
    assert all(
        np.ma.getmaskarray(grid.values)[sol, inv[h]] for h in SOL_NO_OI_HOURS
    )  # no OI weight
    assert not np.ma.getmaskarray(grid.values)[sol, inv[169]]
    # By z-score the SOL cells exist (mean_zscore is set); ETH's absent rows stay masked.
    zgrid = heatmap_grid(conn, _request(color_by="zscore"))
    assert not any(np.ma.getmaskarray(zgrid.values)[sol, inv[h]] for h in SOL_NO_OI_HOURS)
    assert all(np.ma.getmaskarray(zgrid.values)[eth, inv[h]] for h in ETH_ABSENT_HOURS)


def test_top_panel_lines_and_title(conn: duckdb.DuckDBPyConnection) -> None:
    rendered = build_figure(conn, _request())
    try:
        assert "all exchanges (OI-weighted)" in rendered.title
        hours = [int((ts - START) / pd.Timedelta(hours=1)) for ts in rendered.grid.ts_index]
        btc_line, alt_line = rendered.top_ax.get_lines()[:2]
        btc_y = np.asarray(btc_line.get_ydata(), dtype=float)
        alt_y = np.asarray(alt_line.get_ydata(), dtype=float)
        np.testing.assert_allclose(btc_y, [math.exp(_ln("BTC", h)) for h in hours])
        for j, h in enumerate(hours):
            alts = [
                _ln(c, h)
                for c in ("DOGE", "ETH", "SOL")
                if not (c == "ETH" and h in ETH_ABSENT_HOURS)
                and not (c == "SOL" and h in SOL_NO_OI_HOURS)
            ]
            assert alt_y[j] == pytest.approx(math.exp(sum(alts) / len(alts)))
        price = np.asarray(rendered.price_ax.get_lines()[0].get_ydata(), dtype=float)
        np.testing.assert_allclose(price, [90_000.0 + h for h in hours])  # binance preferred
        assert any("binance" in label for label in rendered.legend_labels)
        assert not any("zone" in label for label in rendered.legend_labels)
    finally:
        rendered.figure.clear()


def test_the_number_of_exchanges_combined_is_shown_per_bucket(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    rendered = build_figure(conn, _request())
    try:
        counts = [t for t in rendered.top_ax.texts if t.get_gid() == "exchange-count"]
        label = [t.get_text() for t in rendered.top_ax.texts].count("exchanges combined")
    finally:
        rendered.figure.clear()
    shown = []
    for text in counts:
        x = mdates.num2date(text.get_position()[0]).replace(tzinfo=None)
        shown.append((text.get_text(), (x - START) / timedelta(hours=1)))
    shown.sort(key=lambda item: item[1])
    first = N_BUCKETS - 168
    # Two exchanges, three while the third one joins (any coin's cell counts), then two again.
    assert [number for number, _ in shown] == ["2", "3", "2"] and label == 1
    assert shown[1][1] == pytest.approx((150 + 170) / 2)
    assert shown[0][1] == pytest.approx((first + 150) / 2)


def test_price_falls_back_to_another_exchange(tmp_path: Path) -> None:
    _make(tmp_path / "w.duckdb", ("okx",))
    with connect(tmp_path / "w.duckdb") as conn:
        rendered = build_figure(conn, _request())
        try:
            price = np.asarray(rendered.price_ax.get_lines()[0].get_ydata(), dtype=float)
            assert price[-1] == 1_000.0 + N_BUCKETS - 1
            assert any("okx" in label for label in rendered.legend_labels)
        finally:
            rendered.figure.clear()


def test_renders_a_png_under_images_cross(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    out = image_path(tmp_path / "images", CROSS, "global_account", "1h", 7)
    assert out == (tmp_path / "images" / "cross" / "global_account" / "1h_7d.png").resolve()
    result = render_heatmap(conn, _request(), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (result.width_px, result.height_px) == (1920, 1200)
    assert result.exchange == CROSS
    assert result.n_coins == 4


def test_default_requests_include_cross_and_simulated_flag(warehouse: Path) -> None:
    with connect(warehouse) as conn:
        conn.execute("DELETE FROM partition_log")
        assert not is_simulated(conn, CROSS)
        cross = [r for r in default_requests(conn) if r.exchange == CROSS]
        assert [(r.metric, r.period, r.range_days) for r in cross] == [
            ("global_account", "1h", DEFAULT_RANGE_DAYS["1h"])
        ]
        assert not cross[0].simulated
        log = (
            "INSERT INTO partition_log (exchange, day, dataset, coin, period, status, rows, "
            "detail, simulated, updated_at) "
            "VALUES (?, '2025-01-01', 'ls', 'BTC', '1h', 'ok', 1, NULL, ?, ?)"
        )
        conn.execute(log, ["okx", True, datetime(2025, 1, 1)])
        conn.execute(log, ["binance", False, datetime(2025, 1, 2)])
        assert is_simulated(conn, CROSS)
        assert all(r.simulated for r in default_requests(conn) if r.exchange == CROSS)
        conn.execute("DELETE FROM partition_log")


def test_cli_render_accepts_cross() -> None:
    args = _parser().parse_args(
        [
            "render",
            "--exchange",
            "cross",
            "--metric",
            "global_account",
            "--period",
            "1h",
            "--range",
            "7d",
        ]
    )
    assert args.exchange == CROSS
