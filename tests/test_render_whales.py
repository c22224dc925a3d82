"""Whale-vs-crowd images: the coins leaning against their crowd now are listed with the run
they belong to, and the grid shows each coin's pattern, on tables written by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pytest
from matplotlib.colors import to_hex

from pipelines.image_data import WHALE_AGREE, RenderRequest
from pipelines.images import default_requests
from pipelines.render import RenderedFigure, build_figure

START = datetime(2025, 1, 1)
HOURS = 240  # the 7-day image shows the last 168
ETH_AGAINST = range(200, HOURS)  # whales long, crowd short until now: 40 buckets
SOL_AGREE = range(100, HOURS)  # both long
DOGE_NO_SIDES = range(150, 160)  # a side unknown (no z-score): no data
XRP_AGAINST_BEFORE = range(120, 130)  # whales short, crowd long, over before now

DDL = """
CREATE TABLE divergence (scope VARCHAR, exchange VARCHAR, metric VARCHAR, period VARCHAR,
    coin VARCHAR, ts TIMESTAMP, whale_side VARCHAR, crowd_side VARCHAR, pattern VARCHAR,
    side_zscore_threshold DOUBLE);
CREATE TABLE whale_crowd_now (exchange VARCHAR, period VARCHAR, coin VARCHAR, ts TIMESTAMP,
    pattern VARCHAR, pattern_since TIMESTAMP, pattern_buckets INTEGER, whale_ratio DOUBLE,
    crowd_ratio DOUBLE, whale_zscore DOUBLE, crowd_zscore DOUBLE, side_zscore_threshold DOUBLE);
CREATE TABLE heatmap_matrix (exchange VARCHAR, metric VARCHAR, period VARCHAR, coin VARCHAR,
    ts TIMESTAMP, ratio DOUBLE, ln_ratio DOUBLE, zscore DOUBLE);
CREATE TABLE warehouse_origin (origin VARCHAR);
INSERT INTO warehouse_origin VALUES ('simulated');
"""


def _pattern(coin: str, hour: int) -> tuple[str | None, str | None, str | None]:
    """(whale_side, crowd_side, pattern) of one coin and hour."""
    if coin == "ETH" and hour in ETH_AGAINST:
        return "long", "short", "whales_long_crowd_short"
    if coin == "XRP" and hour in XRP_AGAINST_BEFORE:
        return "short", "long", "whales_short_crowd_long"
    if coin == "SOL" and hour in SOL_AGREE:
        return "long", "long", "whales_and_crowd_long"
    if coin == "DOGE" and hour in DOGE_NO_SIDES:
        return None, "long", None
    return "neutral", "neutral", None


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(str(tmp_path_factory.mktemp("wh") / "w.duckdb"))
    conn.execute("SET TimeZone='UTC'")
    conn.execute(DDL)
    rows = [
        ("whale_crowd", "binance", "top_position/global_account", "1h", coin,
         START + timedelta(hours=h), *_pattern(coin, h), 1.0)
        for coin in ("BTC", "ETH", "SOL", "DOGE", "XRP")
        for h in range(HOURS)
    ]  # fmt: skip
    # Another scope's pattern for the same exchange must not show.
    last = START + timedelta(hours=HOURS - 1)
    rows.append(("coin", "binance", "top_account/top_position", "1h", "BTC", last,
                 "long", "short", "cautious_whale", 1.0))  # fmt: skip
    conn.executemany("INSERT INTO divergence VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute(
        "INSERT INTO whale_crowd_now VALUES ('binance', '1h', 'ETH', ?, "
        "'whales_long_crowd_short', ?, ?, 1.3, 0.8, 1.7, -1.4, 1.0)",
        [START + timedelta(hours=HOURS - 1), START + timedelta(hours=ETH_AGAINST[0]),
         len(ETH_AGAINST)],
    )  # fmt: skip
    yield conn
    conn.close()


def _whales(**overrides: object) -> RenderRequest:
    values: dict[str, object] = {
        "exchange": "binance",
        "metric": "whale_vs_crowd",
        "period": "1h",
        "range_days": 7,
        "theme": "vik",
    }
    values.update(overrides)
    return RenderRequest(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rendered(db: duckdb.DuckDBPyConnection) -> Iterator[RenderedFigure]:
    figure = build_figure(db, _whales())
    yield figure
    figure.figure.clear()


def test_the_grid_shows_each_coins_pattern(rendered: RenderedFigure) -> None:
    grid = rendered.grid
    assert grid.coins == ["BTC", "DOGE", "ETH", "SOL", "XRP"]
    first = HOURS - len(grid.ts_index)
    hours = np.arange(first, HOURS)

    def row(coin: str) -> np.ma.MaskedArray:
        return grid.values[grid.coins.index(coin)]

    np.testing.assert_array_equal(row("ETH").filled(9), np.where(hours >= 200, 1.0, 0.0))
    np.testing.assert_array_equal(
        row("XRP").filled(9), np.where((hours >= 120) & (hours < 130), -1.0, 0.0)
    )
    np.testing.assert_allclose(row("SOL").filled(9), np.where(hours >= 100, WHALE_AGREE, 0.0))
    doge = row("DOGE")
    assert doge.mask[(hours >= 150) & (hours < 160)].all() and not doge.mask[hours >= 160].any()
    assert (row("BTC").filled(9) == 0).all()  # the coin scope's cautious_whale does not leak


def test_the_coins_leaning_against_their_crowd_now_are_listed_since_when(
    rendered: RenderedFigure,
) -> None:
    texts = {t.get_text(): t for t in rendered.top_ax.texts}
    eth = next(text for line, text in texts.items() if line.startswith("ETH"))
    line = eth.get_text()
    assert "whales long, crowd short" in line
    assert "since Jan 09 08:00 (40 x 1h)" in line  # hour 200 = 9 Jan 08:00
    assert "whales +1.7, crowd -1.4" in line
    assert to_hex(eth.get_color()) == rendered.theme.upper_zone_color
    heading = next(line for line in texts if line.startswith("Whales leaning"))
    assert "2025-01-10 23:00 UTC" in heading and "|z| > 1" in heading
    assert not any(line.startswith("XRP") for line in texts)  # its run ended before now
    assert "whales vs crowd" in rendered.figure.get_suptitle()


def test_no_coin_leaning_now_says_so(db: duckdb.DuckDBPyConnection) -> None:
    db.execute("CREATE OR REPLACE TEMP TABLE saved AS SELECT * FROM whale_crowd_now")
    db.execute("DELETE FROM whale_crowd_now")
    try:
        figure = build_figure(db, _whales())
        lines = [t.get_text() for t in figure.top_ax.texts]
        figure.figure.clear()
    finally:
        db.execute("INSERT INTO whale_crowd_now SELECT * FROM saved")
    assert any(line.startswith("none") for line in lines)


def test_exchanges_with_whale_crowd_rows_get_the_image(db: duckdb.DuckDBPyConnection) -> None:
    whales = [r for r in default_requests(db) if r.metric == "whale_vs_crowd"]
    assert [(r.exchange, r.period, r.range_days) for r in whales] == [("binance", "1h", 7)]


def test_a_whale_image_has_no_zscore_and_no_cross_view() -> None:
    with pytest.raises(ValueError, match="pattern only"):
        _whales(color_by="zscore")
    with pytest.raises(ValueError, match="per exchange"):
        _whales(exchange="cross")
