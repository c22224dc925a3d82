"""Candle-flow images: what a reader would notice, on candles written by hand and the real
`candle_flow` SQL model run over them."""

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
from matplotlib.collections import PathCollection

from pipelines.analytics import refresh
from pipelines.cli import main
from pipelines.image_data import RenderRequest
from pipelines.images import default_requests
from pipelines.render import RenderedFigure, build_figure, render_heatmap
from pipelines.universe import Universe
from pipelines.warehouse import DDL_FILE, connect

START = datetime(2025, 1, 1)
HOURS = 10 * 24  # a 7-day image shows the last 168
FIRST_SHOWN = HOURS - 168
BUYERS_HOURS = {200, 201, 230}  # Binance BTC: 85 % of the volume bought
SELLERS_HOURS = {210}  # 10 % bought
FINE_HOURS = range(HOURS - 72, HOURS)  # Bybit: 5m candles for the last three days only


def _taker_share(coin: str, hour: int) -> float:
    if coin == "BTC" and hour in BUYERS_HOURS:
        return 0.85
    if coin == "BTC" and hour in SELLERS_HOURS:
        return 0.10
    return 0.5 + 0.2 * math.sin(hour / 9 + len(coin))  # 30 % .. 70 %: never extreme


def _candle(exchange: str, coin: str, period: str, ts: datetime, up: bool, taker: float | None):
    return {
        "exchange": exchange,
        "coin": coin,
        "instrument": f"{coin}USDT",
        "period": period,
        "ts": ts,
        "open": 100.0,
        "close": 101.0 if up else 99.0,
        "volume": 100.0,
        "taker_buy_volume": None if taker is None else 100.0 * taker,
        "fetched_at": START,
    }


def _candles() -> pd.DataFrame:
    rows = []
    for hour in range(HOURS):
        ts = START + timedelta(hours=hour)
        for coin in ("BTC", "ETH"):
            rows.append(_candle("binance", coin, "1h", ts, True, _taker_share(coin, hour)))
            rows.append(_candle("bybit", coin, "1h", ts, True, None))
        rows.append(_candle("okx", "BTC", "1h", ts, True, None))  # nothing finer: no estimate
        if hour in FINE_HOURS:  # Bybit BTC: 9 of the 12 five-minute candles up
            for five in range(12):
                at = ts + timedelta(minutes=5 * five)
                rows.append(_candle("bybit", "BTC", "5m", at, five < 9, None))
    return pd.DataFrame(rows)


def _build(path: Path) -> None:
    with connect(path) as conn:
        conn.execute(DDL_FILE.read_text())
        frame = _candles()
        conn.register("incoming", frame)
        conn.execute(f"INSERT INTO klines ({', '.join(frame.columns)}) SELECT * FROM incoming")
        conn.unregister("incoming")
        universe = Universe(coins=("BTC", "ETH"), alt_exclusions=())
        for table in ("heatmap_matrix", "candle_flow"):  # no L/S rows: no L/S image
            refresh(conn, table, universe)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    path = tmp_path_factory.mktemp("wh") / "w.duckdb"
    _build(path)
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone='UTC'")
    yield conn
    conn.close()


def _flow(exchange: str, **overrides: object) -> RenderRequest:
    values: dict[str, object] = {
        "exchange": exchange,
        "metric": "candle_flow",
        "period": "1h",
        "range_days": 7,
        "theme": "vik",
    }
    values.update(overrides)
    return RenderRequest(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def binance(db: duckdb.DuckDBPyConnection) -> Iterator[RenderedFigure]:
    rendered = build_figure(db, _flow("binance"))
    yield rendered
    rendered.figure.clear()


def _hour(index: int) -> int:
    return FIRST_SHOWN + index


def test_the_grid_is_each_coins_buy_share_around_one_half(binance: RenderedFigure) -> None:
    grid = binance.grid
    assert grid.coins == ["BTC", "ETH"]
    for row, coin in enumerate(grid.coins):
        expected = [_taker_share(coin, _hour(i)) - 0.5 for i in range(len(grid.ts_index))]
        np.testing.assert_allclose(grid.values[row].filled(np.nan), expected, rtol=1e-12)
    labels = [t.get_text() for t in binance.colorbar.ax.get_yticklabels()]
    assert "50 %" in labels and "balanced" in binance.colorbar.ax.get_ylabel()


def _hours_at(offsets: np.ndarray) -> list[int]:
    """The bucket (hours after START) under each marker: markers sit mid-bucket."""
    starts = [mdates.num2date(x).replace(tzinfo=None) for x, _ in offsets]
    return sorted(round((t - START) / timedelta(hours=1) - 0.5) for t in starts)


def test_extreme_candles_are_marked_above_and_in_the_grid(binance: RenderedFigure) -> None:
    (rings,) = (c for c in binance.heat_ax.collections if isinstance(c, PathCollection))
    assert _hours_at(rings.get_offsets()) == sorted(BUYERS_HOURS | SELLERS_HOURS)
    assert {int(y - 0.5) for _, y in rings.get_offsets()} == {0}  # all on BTC's row
    up, down = (c for c in binance.top_ax.collections if isinstance(c, PathCollection))
    assert _hours_at(up.get_offsets()) == sorted(BUYERS_HOURS)
    assert _hours_at(down.get_offsets()) == sorted(SELLERS_HOURS)
    levels = sorted(
        float(line.get_ydata()[0])
        for line in binance.top_ax.get_lines()
        if line.get_linestyle() == "--"
    )
    assert levels == pytest.approx([20.0, 80.0])  # the default 80 % threshold, both sides
    assert "extreme: one side >= 80 %" in binance.legend_labels
    assert {"extreme buying", "extreme selling", "grid: extreme candle"} <= set(
        binance.legend_labels
    )


def test_the_momentum_line_is_the_tables(
    binance: RenderedFigure, db: duckdb.DuckDBPyConnection
) -> None:
    drawn = np.asarray(binance.price_ax.get_lines()[0].get_ydata(), dtype=float)
    stored = db.execute(
        "SELECT 100 * momentum FROM candle_flow WHERE exchange = 'binance' AND coin = 'BTC' "
        "AND period = '1h' AND ts >= ? ORDER BY ts",
        [START + timedelta(hours=FIRST_SHOWN)],
    ).fetchnumpy()
    expected = np.ma.filled(np.ma.asarray(next(iter(stored.values())), dtype=float), np.nan)
    np.testing.assert_allclose(drawn, expected, equal_nan=True)
    assert np.isfinite(drawn).sum() > 150  # ten days of history: momentum all along the week


def test_the_title_says_what_the_flow_was_estimated_from(db: duckdb.DuckDBPyConnection) -> None:
    rendered = build_figure(db, _flow("bybit", simulated=True))
    try:
        title = rendered.figure.get_suptitle()
        btc = rendered.grid.values[0]
    finally:
        rendered.figure.clear()
    assert "Bybit" in title and "candle flow, from 5m candles' directions" in title
    assert title.startswith("SIMULATED DATA")
    shown = [_hour(i) for i in range(len(rendered.grid.ts_index))]
    fine = np.array([h in FINE_HOURS for h in shown])
    assert btc.mask[~fine].all()  # an hour without finer candles has no estimate: no data
    np.testing.assert_allclose(btc[fine].compressed(), 9 / 12 - 0.5)  # 9 of 12 candles up


def test_binance_flow_comes_from_taker_volume(binance: RenderedFigure) -> None:
    assert "from taker buy volume" in binance.figure.get_suptitle()


def test_each_exchange_with_flow_gets_an_image_and_others_none(
    db: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    flows = [r for r in default_requests(db) if r.metric == "candle_flow"]
    assert {(r.exchange, r.period, r.range_days) for r in flows} == {
        ("binance", "1h", 7),
        ("bybit", "1h", 7),
    }  # okx has 1h candles only: nothing to estimate from
    result = render_heatmap(db, flows[0], tmp_path / "binance" / "candle_flow" / "1h_7d.png")
    assert result.path.stat().st_size > 50_000 and result.metric == "candle_flow"


def test_a_flow_image_has_no_zscore_and_no_cross_view() -> None:
    with pytest.raises(ValueError, match="buy share only"):
        _flow("binance", color_by="zscore")
    with pytest.raises(ValueError, match="per exchange"):
        _flow("cross")


def test_lsr_render_draws_a_candle_flow_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.duckdb"
    _build(path)
    monkeypatch.setenv("LSR_WAREHOUSE", str(path))
    out = tmp_path / "flow.png"
    code = main(
        ["render", "--exchange", "bybit", "--metric", "candle_flow", "--period", "1h",
         "--range", "7d", "--out", str(out)]
    )  # fmt: skip
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
