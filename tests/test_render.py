"""Heatmap images: what a reader of the PNG would notice, on a small hand-made warehouse."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import matplotlib.dates as mdates
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from PIL import Image

from pipelines.figure import coin_labels
from pipelines.image_data import NoDataError, RenderRequest, heatmap_grid, image_path
from pipelines.render import RenderedFigure, build_figure, render_heatmap, save_png
from pipelines.themes import DEFAULT_THEME, UnknownThemeError, get_theme, theme_names

START = datetime(2025, 1, 1)  # naive = UTC, like DuckDB TIMESTAMP
N_BUCKETS = 10 * 24  # ten days of 1h buckets; a 7-day image shows the last 168
LAST = START + timedelta(hours=N_BUCKETS - 1)
WINDOW_START = LAST - timedelta(hours=167)
SEL = ("binance", "global_account", "1h")

# Hand-picked cells (hours after START), all inside the 7-day window.
LONG_HOURS = range(150, 158)  # DOGE very long: ratio 4
ETH_ABSENT_HOURS = range(170, 178)  # no ETH rows at all
SOL_NULL_HOURS = range(200, 204)  # SOL rows with ratio NULL
LATE_LISTING_HOUR = 120  # ZRX listed late: no rows before this hour (inside the window)
NULL_PRICE_HOURS = range(100, 110)
BTC_UPPER_HOURS = range(180, 190)  # signal_zones: BTC in its upper zone (market-wide from 185)
ALT_LOWER_HOURS = range(210, 215)  # the alt average in its lower zone
BTC_LONG_ALTS_SHORT_HOURS = range(220, 225)  # divergence regimes
ZSCORE_APART_HOURS = range(230, 233)

DDL = """
CREATE TABLE heatmap_matrix (exchange VARCHAR, metric VARCHAR, period VARCHAR, coin VARCHAR,
    ts TIMESTAMP, ratio DOUBLE, ln_ratio DOUBLE, zscore DOUBLE);
CREATE TABLE btc_ls (exchange VARCHAR, metric VARCHAR, period VARCHAR, ts TIMESTAMP,
    ratio DOUBLE, long_share DOUBLE, short_share DOUBLE, price_close DOUBLE);
CREATE TABLE alt_average (exchange VARCHAR, metric VARCHAR, period VARCHAR, ts TIMESTAMP,
    alt_mean_ratio DOUBLE, alt_median_ratio DOUBLE, n_coins INTEGER, btc_ratio DOUBLE);
CREATE TABLE btc_price (exchange VARCHAR, period VARCHAR, ts TIMESTAMP, close DOUBLE);
"""


def _ratio(coin: str, hour: int) -> float | None:
    if coin == "SOL" and hour in SOL_NULL_HOURS:
        return None
    if coin == "DOGE" and hour in LONG_HOURS:
        return 4.0
    base = {"BTC": 1.1, "ETH": 1.3, "SOL": 0.8, "DOGE": 1.5, "ZRX": 0.7}[coin]
    return base * math.exp(0.15 * math.sin(hour / 7 + len(coin)))


def _heatmap_rows() -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for coin in ("DOGE", "ETH", "BTC", "ZRX", "SOL"):  # not in display order on purpose
        for hour in range(N_BUCKETS):
            if (coin == "ETH" and hour in ETH_ABSENT_HOURS) or (
                coin == "ZRX" and hour < LATE_LISTING_HOUR
            ):
                continue
            ratio = _ratio(coin, hour)
            ln = math.log(ratio) if ratio is not None else None
            zscore = ln * 3 if ln is not None else None
            rows.append((*SEL, coin, START + timedelta(hours=hour), ratio, ln, zscore))
    return rows


def _insert(
    conn: duckdb.DuckDBPyConnection, table: str, rows: Sequence[tuple[object, ...]]
) -> None:
    # Through a DataFrame: DuckDB's executemany is row-at-a-time and slow.
    columns = [c[0] for c in conn.execute(f"DESCRIBE {table}").fetchall()]
    frame = pd.DataFrame(rows, columns=columns)
    conn.register("incoming", frame)
    conn.execute(f"INSERT INTO {table} SELECT * FROM incoming")
    conn.unregister("incoming")


def _make_warehouse(path: Path, *, zones: bool) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone='UTC'")
    conn.execute(DDL)
    _insert(conn, "heatmap_matrix", _heatmap_rows())
    btc, alt, closes = [], [], []
    for hour in range(N_BUCKETS):
        ts = START + timedelta(hours=hour)
        ratio = _ratio("BTC", hour)
        assert ratio is not None
        price = None if hour in NULL_PRICE_HOURS else 95_000 + 50 * hour
        btc.append((*SEL, ts, ratio, ratio / (1 + ratio), 1 / (1 + ratio), price))
        alt.append((*SEL, ts, 1.05, 1.0, 4, ratio))
        if price is not None:  # no candle in those hours
            closes.append((SEL[0], SEL[2], ts, price))
    _insert(conn, "btc_ls", btc)
    _insert(conn, "alt_average", alt)
    _insert(conn, "btc_price", closes)
    if zones:
        conn.execute(
            "CREATE TABLE signal_zones (exchange VARCHAR, metric VARCHAR, period VARCHAR, "
            "series VARCHAR, ts TIMESTAMP, value DOUBLE, lower_band DOUBLE, upper_band DOUBLE, "
            "zone VARCHAR, market_wide BOOLEAN)"
        )
        zone_rows = [
            (*SEL, "btc", START + timedelta(hours=h), 1.5, 0.9, 1.4, "upper", h >= 185)
            for h in BTC_UPPER_HOURS
        ]
        zone_rows += [
            (*SEL, "alt_avg", START + timedelta(hours=h), 0.7, 0.8, 1.2, "lower", False)
            for h in ALT_LOWER_HOURS
        ]
        _insert(conn, "signal_zones", zone_rows)
        conn.execute(
            "CREATE TABLE divergence (scope VARCHAR, exchange VARCHAR, metric VARCHAR, "
            "period VARCHAR, ts TIMESTAMP, pattern VARCHAR)"
        )
        regimes = [(h, "btc_long_alts_short") for h in BTC_LONG_ALTS_SHORT_HOURS]
        regimes += [(h, "zscore_divergence") for h in ZSCORE_APART_HOURS]
        regimes += [(h, None) for h in range(N_BUCKETS - 5, N_BUCKETS)]
        _insert(
            conn,
            "divergence",
            [
                ("btc_vs_alts", SEL[0], SEL[1], SEL[2], START + timedelta(hours=h), pattern)
                for h, pattern in regimes
            ],
        )
    return conn


# Built once per module: the renderer only reads.
@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = _make_warehouse(tmp_path_factory.mktemp("wh") / "w.duckdb", zones=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def conn_no_zones(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = _make_warehouse(tmp_path_factory.mktemp("wh") / "w.duckdb", zones=False)
    yield connection
    connection.close()


def _request(**overrides: object) -> RenderRequest:
    values: dict[str, object] = {
        "exchange": "binance",
        "metric": "global_account",
        "period": "1h",
        "range_days": 7,
        "theme": "vik",
    }
    values.update(overrides)
    return RenderRequest(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ the PNG


def test_render_writes_a_png_of_the_reported_size(conn: duckdb.DuckDBPyConnection, tmp_path: Path):
    out = tmp_path / "images" / "binance" / "global_account" / "1h_7d.png"  # parents missing
    result = render_heatmap(conn, _request(), out)

    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(out)
    assert pixels.shape[:2] == (result.height_px, result.width_px)
    assert (result.width_px, result.height_px) == (1920, 1200)
    assert (result.n_coins, result.n_buckets, result.range_label) == (5, 168, "7d")
    assert result.data_end == LAST.replace(tzinfo=UTC)
    assert result.theme == "vik"
    assert [p.name for p in out.parent.iterdir()] == ["1h_7d.png"]  # no temp file left behind


def test_the_png_holds_exactly_what_matplotlib_draws_its_title_and_its_dpi(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
):
    """The file is written by our own PNG writer, from a renderer that keeps the glyphs of the
    texts it drew before: it must hold, pixel for pixel, what plain matplotlib draws (texts
    rotated or not: the watermark, the coin and colour-bar titles), and still say what it is to
    an image viewer and at what size to print."""
    rendered = build_figure(conn, _request(exchange="binance", simulated=True))
    save_png(rendered, tmp_path / "first.png")
    out = tmp_path / "again.png"
    save_png(rendered, out)  # every text's glyphs now kept from the first drawing
    canvas = FigureCanvasAgg(rendered.figure)  # matplotlib's own renderer, drawn afresh
    canvas.draw()
    drawn = np.asarray(canvas.buffer_rgba())

    for saved in (tmp_path / "first.png", out):
        with Image.open(saved) as image:
            assert image.mode == "RGBA"
            assert np.array_equal(np.asarray(image), drawn), saved.name
            assert image.info["Title"] == rendered.title
            assert "Binance" in image.info["Title"]
            assert image.info["dpi"] == pytest.approx((120, 120), abs=0.05)  # whole px a metre


def test_renders_without_signal_zones_and_with_null_prices(
    conn_no_zones: duckdb.DuckDBPyConnection, tmp_path: Path
):
    rendered = build_figure(conn_no_zones, _request())
    assert not any("zone" in label for label in rendered.legend_labels)
    assert "BTC price (right axis)" in rendered.legend_labels
    out = tmp_path / "x.png"
    save_png(rendered, out)
    assert mpimg.imread(out).shape[:2] == (1200, 1920)


def test_signal_zones_appear_in_the_legend(conn: duckdb.DuckDBPyConnection):
    labels = build_figure(conn, _request()).legend_labels
    assert "upper zone (crowd long)" in labels
    assert "lower zone (crowd short)" in labels
    assert any("market-wide" in label for label in labels)


def _strip_rgb(rendered: RenderedFigure, pixels: np.ndarray, strip: str, hour: int) -> np.ndarray:
    """RGB in the middle of a named strip of the top panel, over the bucket `hour`."""
    label = next(t for t in rendered.top_ax.texts if t.get_text() == strip)
    x = mdates.date2num(START + timedelta(hours=hour + 0.5))
    px, py = rendered.top_ax.get_xaxis_transform().transform((x, label.get_position()[1]))
    return pixels[round(pixels.shape[0] - py), round(px), :3]


def _nearest(rgb: np.ndarray, candidates: dict[str, np.ndarray]) -> str:
    return min(candidates, key=lambda name: float(np.linalg.norm(rgb - candidates[name])))


@pytest.mark.parametrize("theme_name", ["vik", "vik-dark"])
def test_btc_zones_alt_zones_and_regimes_each_have_their_own_strip(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, theme_name: str
):
    """BTC in its upper zone while the alts sit in their lower one must not blend into one
    shade: each series has its own strip, and the BTC-vs-alts regimes a third."""
    rendered = build_figure(conn, _request(theme=theme_name))
    out = tmp_path / "z.png"
    save_png(rendered, out)
    pixels = mpimg.imread(out)
    theme = get_theme(theme_name)
    page = np.array(to_rgb(theme.background))

    def solid(colour: str, alpha: float = 0.9) -> np.ndarray:
        return alpha * np.array(to_rgb(colour)) + (1 - alpha) * page

    zones = {"upper": solid(theme.upper_zone_color), "lower": solid(theme.lower_zone_color)}
    zones["page"] = page
    hour_btc, hour_alt = BTC_UPPER_HOURS[2], ALT_LOWER_HOURS[2]
    assert _nearest(_strip_rgb(rendered, pixels, "BTC zone", hour_btc), zones) == "upper"
    assert _nearest(_strip_rgb(rendered, pixels, "alt zone", hour_btc), zones) == "page"
    assert _nearest(_strip_rgb(rendered, pixels, "alt zone", hour_alt), zones) == "lower"
    assert _nearest(_strip_rgb(rendered, pixels, "BTC zone", hour_alt), zones) == "page"
    regimes = {
        "btc long": solid(theme.btc_color),
        "alts long": solid(theme.alt_color),
        "apart": solid(theme.foreground, 0.35),
        "page": page,
    }
    strip = "BTC vs alts"
    assert _nearest(_strip_rgb(rendered, pixels, strip, BTC_LONG_ALTS_SHORT_HOURS[2]), regimes) == (
        "btc long"
    )
    assert _nearest(_strip_rgb(rendered, pixels, strip, ZSCORE_APART_HOURS[1]), regimes) == "apart"
    assert _nearest(_strip_rgb(rendered, pixels, strip, N_BUCKETS - 3), regimes) == "page"
    assert {"BTC long, alts short", "BTC and alts far apart (z-scores)"} <= set(
        rendered.legend_labels
    )
    assert "BTC short, alts long" not in rendered.legend_labels  # none in this window


def test_zone_thresholds_are_drawn(conn: duckdb.DuckDBPyConnection):
    rendered = build_figure(conn, _request())
    try:
        assert "BTC zone thresholds (trailing percentiles)" in rendered.legend_labels
        assert "alt zone thresholds (trailing percentiles)" in rendered.legend_labels
        drawn = {
            round(float(v), 6)
            for patch in rendered.top_ax.patches
            if hasattr(patch, "get_data")
            for v in patch.get_data().values
            if np.isfinite(v)
        }
    finally:
        rendered.figure.clear()
    assert drawn == {0.9, 1.4, 0.8, 1.2}  # the bands signal_zones holds, nothing else


def test_long_ranges_and_every_period_render(conn: duckdb.DuckDBPyConnection, tmp_path: Path):
    result = render_heatmap(conn, _request(range_days=365), tmp_path / "year.png")
    assert result.n_buckets == 365 * 24  # the grid spans the range even where data is missing


# --------------------------------------------------------------------------------- the matrix


def test_grid_rows_are_btc_first_then_alphabetical(conn: duckdb.DuckDBPyConnection):
    grid = heatmap_grid(conn, _request())
    assert grid.coins == ["BTC", "DOGE", "ETH", "SOL", "ZRX"]


def test_grid_matches_the_table(conn: duckdb.DuckDBPyConnection):
    grid = heatmap_grid(conn, _request())
    assert len(grid.ts_index) == 168
    assert grid.ts_index[0] == WINDOW_START and grid.ts_index[-1] == LAST
    col = {ts.to_pydatetime(): i for i, ts in enumerate(grid.ts_index)}
    row = {coin: i for i, coin in enumerate(grid.coins)}
    stored = conn.execute(
        "SELECT coin, ts, ln_ratio FROM heatmap_matrix WHERE ts >= ? AND ratio IS NOT NULL",
        [WINDOW_START],
    ).fetchall()
    for coin, ts, ln_ratio in stored:
        assert grid.values[row[coin], col[ts]] == pytest.approx(ln_ratio)
    assert grid.values.count() == len(stored)  # everything else is masked


def test_missing_cells_are_masked_not_neutral(conn: duckdb.DuckDBPyConnection):
    grid = heatmap_grid(conn, _request())
    mask = np.ma.getmaskarray(grid.values)
    hours = ((grid.ts_index - START) / timedelta(hours=1)).astype(int)
    eth, sol, zrx = (grid.coins.index(c) for c in ("ETH", "SOL", "ZRX"))
    assert mask[eth, np.isin(hours, ETH_ABSENT_HOURS)].all()  # absent rows
    assert mask[sol, np.isin(hours, SOL_NULL_HOURS)].all()  # NULL ratios
    assert mask[zrx, hours < LATE_LISTING_HOUR].all()  # before the coin was listed
    assert not mask[zrx, hours >= LATE_LISTING_HOUR].any()


def test_zscore_option_colours_by_zscore(conn: duckdb.DuckDBPyConnection):
    by_ln = heatmap_grid(conn, _request())
    by_z = heatmap_grid(conn, _request(color_by="zscore"))
    np.testing.assert_allclose(by_z.values.compressed(), 3 * by_ln.values.compressed())
    rendered = build_figure(conn, _request(color_by="zscore"))
    assert rendered.colorbar.ax.get_ylabel().startswith("z-score")


def test_colour_bar_is_labelled_in_ratios_around_one(conn: duckdb.DuckDBPyConnection):
    rendered = build_figure(conn, _request())
    labels = [t.get_text() for t in rendered.colorbar.ax.get_yticklabels()]
    assert "1" in labels
    assert rendered.norm.vmax is not None
    assert rendered.norm.vmin == -rendered.norm.vmax  # centred: ratio 1 is the middle colour
    ratios = [float(label) for label in labels]
    assert min(ratios) < 1 < max(ratios)


def test_each_coin_is_named_beside_its_own_row_and_the_axis_title_clears_the_names(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
):
    rendered = build_figure(conn, _request())
    save_png(rendered, tmp_path / "p.png")
    renderer = rendered.figure.canvas.get_renderer()
    ax = rendered.heat_ax
    grid_box = ax.get_window_extent(renderer)
    names = [t for t in ax.texts if t.get_text() in rendered.grid.coins]
    assert [t.get_text() for t in names] == coin_labels(ax) == rendered.grid.coins
    for row, name in enumerate(names):
        box = name.get_window_extent(renderer)
        row_top, row_bottom = (ax.transData.transform((0, y))[1] for y in (row, row + 1))
        assert row_bottom < (box.y0 + box.y1) / 2 < row_top  # centred in its own row
        assert box.x1 < grid_box.x0  # left of the grid, not over it
    title = next(t for t in ax.texts if t.get_text() == "coin")
    assert title.get_window_extent(renderer).x1 < min(
        n.get_window_extent(renderer).x0 for n in names
    )


def test_end_picks_an_earlier_window(conn: duckdb.DuckDBPyConnection):
    end = (START + timedelta(hours=200)).replace(tzinfo=UTC)
    grid = heatmap_grid(conn, _request(end=end))
    assert grid.ts_index[-1] == START + timedelta(hours=200)
    assert grid.data_end == START + timedelta(hours=200)


# ------------------------------------------------------------------------------- the pixels


def _pixel(rendered: RenderedFigure, pixels: np.ndarray, coin: str, hour: float) -> np.ndarray:
    """RGB of the heatmap at the centre of (coin, bucket), via the axes' own transform."""
    ax = rendered.heat_ax
    x = mdates.date2num(START + timedelta(hours=hour + 0.5))
    y = rendered.grid.coins.index(coin) + 0.5
    px, py = ax.transData.transform((x, y))
    return pixels[round(pixels.shape[0] - py), round(px), :3]


def test_pixels_show_long_cells_on_the_long_side_and_missing_cells_as_no_data(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
):
    rendered = build_figure(conn, _request(theme="vik"))
    out = tmp_path / "p.png"
    save_png(rendered, out)
    pixels = mpimg.imread(out)
    theme = get_theme("vik")

    long_rgb = _pixel(rendered, pixels, "DOGE", LONG_HOURS[3])
    expected = np.array(theme.cmap(rendered.norm(math.log(4.0)))[:3])
    np.testing.assert_allclose(long_rgb, expected, atol=0.03)
    long_end, short_end = np.array(theme.cmap(1.0)[:3]), np.array(theme.cmap(0.0)[:3])
    assert np.linalg.norm(long_rgb - long_end) < np.linalg.norm(long_rgb - short_end)

    # Missing cells show the hatched grey: a pixel is the grey, the hatch line's grey, or (on a
    # line's anti-aliased edge) a grey in between; never the map's neutral centre.
    greys = sorted(to_rgb(c)[0] for c in (theme.no_data_color, theme.no_data_hatch_color))
    centre = np.array(theme.cmap(0.5)[:3])
    for coin, hour in (
        ("ETH", ETH_ABSENT_HOURS[4]),
        ("SOL", SOL_NULL_HOURS[2]),
        ("ZRX", LATE_LISTING_HOUR - 20),
    ):
        rgb = _pixel(rendered, pixels, coin, hour)
        assert np.ptp(rgb) < 0.02, (coin, rgb)  # a neutral grey
        assert greys[0] - 0.02 <= rgb[0] <= greys[1] + 0.02, (coin, rgb)
        assert np.linalg.norm(rgb - centre) > 0.15, (coin, rgb)


# ---------------------------------------------------------------------------- title, SIMULATED


def test_title_names_the_selection_and_the_data_end(conn: duckdb.DuckDBPyConnection):
    rendered = build_figure(conn, _request())
    title = rendered.figure.get_suptitle()
    # Words, not keys: the exchange's name and what the kind measures.
    for part in ("Binance", "all accounts, by count", "1h", "last 7 days", "2025-01-10 23:00 UTC"):
        assert part in title
    assert "global_account" not in title
    assert "SIMULATED" not in title
    assert not any(t.get_gid() == "simulated-watermark" for t in rendered.figure.texts)


def test_simulated_data_is_labelled(conn: duckdb.DuckDBPyConnection, tmp_path: Path):
    rendered = build_figure(conn, _request(simulated=True))
    assert "SIMULATED DATA" in rendered.figure.get_suptitle()
    assert any(t.get_gid() == "simulated-watermark" for t in rendered.figure.texts)
    result = render_heatmap(conn, _request(simulated=True), tmp_path / "sim.png")
    assert result.simulated and "SIMULATED" in result.title


# ------------------------------------------------------------------------------------- themes


def test_at_least_sixty_themes_all_usable():
    names = theme_names()
    assert len(names) >= 60
    assert len(set(names)) == len(names)
    assert names[0] == DEFAULT_THEME
    assert {"vik", "vik_r", "roma", "rdbu", "coolwarm_r", "berlin-dark"} <= set(names)
    assert {"balance", "fusion_r", "bkr-dark"} <= set(names)  # cmocean, CMasher, colorcet
    for name in names:
        theme = get_theme(name)
        colours = theme.cmap(np.linspace(0, 1, 256))[:, :3]
        grey = np.array(to_rgb(theme.no_data_color))
        # "No data" must not be confused with any real value of the map.
        assert np.min(np.linalg.norm(colours - grey, axis=1)) > 0.15, name
        assert theme.btc_color != theme.alt_color


def test_at_least_sixty_distinct_colour_maps():
    # Each map on a light page, as is: its reversed and dark variants are derived from it.
    plain = [n for n in theme_names() if not n.endswith(("_r", "-dark"))]
    assert all(f"{n}_r-dark" in theme_names() for n in plain)
    points = np.linspace(0, 1, 64)
    samples = {n: get_theme(n).cmap(points)[:, :3] for n in plain}

    def max_gap(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.max(np.linalg.norm(a - b, axis=1)))

    # The same map under two names (an alias, or one map as another one's reverse) would agree
    # with it at every point; distinct maps differ clearly somewhere.
    same = [
        (a, b)
        for a, b in itertools.combinations(plain, 2)
        if min(max_gap(samples[a], samples[b]), max_gap(samples[a], samples[b][::-1])) < 0.06
    ]
    assert same == []
    assert len(plain) >= 60


def test_zone_colours_stand_out_from_the_page_on_light_and_dark_themes():
    """Zone colours come from the map's ends, moved inwards until they contrast with the page
    (WCAG ratio 3), unless no colour on that half of the map does."""

    def luminance(rgb: np.ndarray) -> float:
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return float(linear @ np.array([0.2126, 0.7152, 0.0722]))

    def contrast(a: np.ndarray, b: np.ndarray) -> float:
        la, lb = luminance(a), luminance(b)
        return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)

    for name in theme_names():
        theme = get_theme(name)
        page = np.array(to_rgb(theme.background))
        samples = theme.cmap(np.linspace(0, 1, 256))[:, :3]
        for colour, half in (
            (theme.lower_zone_color, samples[:100]),
            (theme.upper_zone_color, samples[156:]),
        ):
            best = max(contrast(s, page) for s in half)
            assert contrast(np.array(to_rgb(colour)), page) >= min(3.0, best) - 0.01, name


def test_default_theme_is_colour_blind_safe():
    assert get_theme(DEFAULT_THEME).colorblind_safe


def test_theme_lookup_ignores_case():
    assert get_theme("RdBu").name == "rdbu"


def test_unknown_theme_lists_close_matches():
    with pytest.raises(UnknownThemeError) as err:
        get_theme("vikk")
    assert isinstance(err.value, ValueError)
    assert "vik" in str(err.value) and "did you mean" in str(err.value)
    with pytest.raises(UnknownThemeError, match=r"did you mean: .*coolwarm"):
        _request(theme="coolwarn")


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"range_days": 6}, "between 7 and 365"),
        ({"range_days": 366}, "between 7 and 365"),
        ({"range_days": 7.5}, "whole number"),
        ({"period": "2h"}, "unknown period"),
        ({"color_by": "ratio"}, "unknown color_by"),
    ],
)
def test_bad_requests_fail_clearly(overrides: dict[str, object], message: str):
    with pytest.raises(ValueError, match=message):
        _request(**overrides)


def test_no_data_names_the_selection(conn: duckdb.DuckDBPyConnection, tmp_path: Path):
    with pytest.raises(NoDataError, match="exchange=okx metric=global_account period=1h"):
        render_heatmap(conn, _request(exchange="okx"), tmp_path / "x.png")
    with pytest.raises(NoDataError, match="days up to"):
        heatmap_grid(conn, _request(end=datetime(2020, 1, 1)))
    assert not (tmp_path / "x.png").exists()


def test_no_data_when_the_table_is_missing(tmp_path: Path):
    empty = duckdb.connect(str(tmp_path / "empty.duckdb"))
    with pytest.raises(NoDataError, match="heatmap_matrix"):
        heatmap_grid(empty, _request())


# -------------------------------------------------------------------------------------- paths


def test_image_path_layout(tmp_path: Path):
    path = image_path(tmp_path, "binance", "global_account", "1h", 7)
    assert path == (tmp_path / "binance" / "global_account" / "1h_7d.png").resolve()


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "..",
        ".",
        "a/b",
        "a\\b",
        "/etc",
        "",
        "Binance",
        "bin ance",
        "bin.ance",
        "x\x00",
        "bin\u0430nce",
        "~root",
        "a" * 65,
    ],
)
def test_image_path_rejects_unsafe_components(tmp_path: Path, bad: str):
    for args in ((bad, "m", "1h"), ("binance", bad, "1h"), ("binance", "m", bad)):
        with pytest.raises(ValueError):
            image_path(tmp_path, *args, 7)


@pytest.mark.parametrize("bad_range", [6, 366, True, "7"])
def test_image_path_rejects_bad_ranges(tmp_path: Path, bad_range: object):
    with pytest.raises(ValueError):
        image_path(tmp_path, "binance", "m", "1h", bad_range)  # type: ignore[arg-type]


def test_image_path_never_leaves_the_root_even_through_a_symlink(tmp_path: Path):
    root, outside = tmp_path / "images", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "binance")
    with pytest.raises(ValueError, match="escapes"):
        image_path(root, "binance", "global_account", "1h", 7)


# ------------------------------------------------------------------ where the history starts


def test_the_time_before_the_history_starts_is_labelled_not_shown_as_missing(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
):
    # 30 days asked of a warehouse holding 10: the first 20 are before the history starts.
    rendered = build_figure(conn, _request(range_days=30))
    assert rendered.grid.history_start == START
    texts = [t.get_text() for t in rendered.heat_ax.texts]
    assert "history starts 2025-01-01" in texts
    assert any(t.startswith("before Binance's history") for t in texts)  # its name, not key
    out = tmp_path / "p.png"
    save_png(rendered, out)
    pixels = mpimg.imread(out)
    plain = np.array(to_rgb(get_theme("vik").no_data_color))
    # A plain grey everywhere in the region (no hatch lines), away from the text in its middle.
    for coin in ("BTC", "ZRX"):
        for hour in (-19 * 24, -15 * 24, -3 * 24):
            np.testing.assert_allclose(_pixel(rendered, pixels, coin, hour), plain, atol=0.02)
    # The legend tells the hatched grey (missing) from the plain one.
    legend = [t.get_text() for t in rendered.figure.legends[-1].texts]
    assert legend == ["no data", "before history"]


def test_a_window_inside_the_history_has_no_start_mark(conn: duckdb.DuckDBPyConnection):
    rendered = build_figure(conn, _request())
    assert rendered.grid.history_start is None
    assert not any("history" in t.get_text() for t in rendered.heat_ax.texts)
    legend = [t.get_text() for t in rendered.figure.legends[-1].texts]
    assert legend == ["no data"]


def test_an_exchange_with_a_year_of_daily_rows_gets_a_year_image(tmp_path: Path):
    from pipelines.images import default_requests

    db = duckdb.connect(str(tmp_path / "w.duckdb"))
    db.execute(DDL)
    db.execute("CREATE TABLE warehouse_origin (origin VARCHAR)")
    db.execute("INSERT INTO warehouse_origin VALUES ('simulated')")
    days = {"binance": 365, "bybit": 364}  # a year, and a day short of one
    rows = [
        (exchange, "global_account", "1d", "BTC", START + timedelta(days=d), 1.1, 0.1, 0.2)
        for exchange, n in days.items()
        for d in range(n)
    ]
    _insert(db, "heatmap_matrix", rows)
    ranges = {(r.exchange, r.period, r.range_days) for r in default_requests(db)}
    assert ranges == {("binance", "1d", 90), ("binance", "1d", 365), ("bybit", "1d", 90)}


def test_many_images_drawn_in_several_processes_are_those_one_process_draws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The defaults are drawn by one process per core; what they write and list is what
    drawing them one by one gives, byte for byte."""
    from pipelines import images
    from pipelines.images import render_and_record

    monkeypatch.setattr(images.os, "cpu_count", lambda: 2)  # two drawing processes anywhere
    from pipelines.warehouse import DDL_FILE

    warehouse = tmp_path / "w.duckdb"
    with _make_warehouse(warehouse, zones=True) as db:
        db.execute(DDL_FILE.read_text())  # heatmap_images, which the catalogue writes
    requests = [
        _request(theme=theme, range_days=days, color_by=color_by)
        for theme in ("vik", "roma")
        for days in (7, 9)
        for color_by in ("ln_ratio", "zscore")
    ]
    pooled, alone = tmp_path / "pooled", tmp_path / "alone"

    def plan(_: duckdb.DuckDBPyConnection) -> list[tuple[RenderRequest, Path]]:
        return [(r, pooled / f"{r.theme}_{r.range_days}_{r.color_by}.png") for r in requests]

    results = render_and_record(warehouse, pooled, plan)
    with duckdb.connect(str(warehouse), read_only=True) as db:
        listed = {path for (path,) in db.execute("SELECT path FROM heatmap_images").fetchall()}
        for request, out in plan(db):
            render_heatmap(db, request, alone / out.name)
    assert [r.path for r in results] == [out for _, out in plan(db)]
    assert listed == {str(out) for _, out in plan(db)}
    for _, out in plan(db):
        assert out.read_bytes() == (alone / out.name).read_bytes(), out.name


def test_an_image_drawn_on_a_reused_page_is_the_image_a_new_page_gives(
    conn: duckdb.DuckDBPyConnection, conn_no_zones: duckdb.DuckDBPyConnection, tmp_path: Path
):
    """render_image draws each L/S image on the page the previous one used, emptied: nothing
    of an image may show in the next. Very different images one after another (zones or none,
    missing prices or none at all, a history start, the watermark, z-score colours, two themes)
    each match, pixel for pixel, the image drawn on a page of its own."""
    with _make_warehouse(tmp_path / "priceless.duckdb", zones=True) as priceless:
        priceless.execute("DELETE FROM btc_price")
        sequence = [
            (conn, _request()),
            (priceless, _request()),
            (conn_no_zones, _request(range_days=9)),
            (conn, _request(range_days=30, simulated=True)),
            (conn, _request(color_by="zscore")),
            (conn_no_zones, _request()),
            (conn, _request(theme="roma", range_days=30)),
            (conn, _request(theme="roma", simulated=True)),
            (conn, _request()),
        ]
        for i, (db, request) in enumerate(sequence):
            render_heatmap(db, request, tmp_path / "reused" / f"{i}.png")
        for i, (db, request) in enumerate(sequence):
            save_png(build_figure(db, request), tmp_path / "new" / f"{i}.png")
            reused = mpimg.imread(tmp_path / "reused" / f"{i}.png")
            np.testing.assert_array_equal(
                reused, mpimg.imread(tmp_path / "new" / f"{i}.png"), f"{i}"
            )


def test_a_pooled_render_with_an_image_that_cannot_be_drawn_fails_and_lists_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """One bad output path among eight images drawn by two processes (the first, which a helper
    draws): the render raises what was wrong, and the catalogue lists none of the batch."""
    from pipelines import images
    from pipelines.images import render_and_record
    from pipelines.warehouse import DDL_FILE

    monkeypatch.setattr(images.os, "cpu_count", lambda: 2)
    warehouse = tmp_path / "w.duckdb"
    with _make_warehouse(warehouse, zones=True) as db:
        db.execute(DDL_FILE.read_text())
    names = ["first.jpg"] + [f"{n}.png" for n in range(7)]  # a helper takes the first

    def plan(_: duckdb.DuckDBPyConnection) -> list[tuple[RenderRequest, Path]]:
        return [(_request(range_days=7 + i % 3), tmp_path / n) for i, n in enumerate(names)]

    with pytest.raises(ValueError, match=r"must end in \.png, got .*first\.jpg"):
        render_and_record(warehouse, tmp_path, plan)
    with duckdb.connect(str(warehouse), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM heatmap_images").fetchall() == [(0,)]


def test_the_time_axis_names_the_month_the_window_starts_in(conn: duckdb.DuckDBPyConnection):
    """A window from 4 to 10 January: the first tick says "Jan", not a bare day number."""
    rendered = build_figure(conn, _request())
    try:
        rendered.figure.canvas.draw()
        labels = [t.get_text() for t in rendered.heat_ax.get_xticklabels() if t.get_text()]
    finally:
        rendered.figure.clear()
    assert labels[0].startswith("Jan"), labels
    assert all(label.isdigit() for label in labels[1:3]), labels  # later days stay concise


def test_a_taker_volume_image_speaks_of_buying_and_selling(tmp_path: Path):
    with _make_warehouse(tmp_path / "w.duckdb", zones=True) as db:
        for table in ("heatmap_matrix", "btc_ls", "alt_average", "signal_zones"):
            db.execute(f"UPDATE {table} SET metric = 'taker_volume'")
        rendered = build_figure(db, _request(metric="taker_volume"))
    try:
        assert "taker buy vs sell volume" in rendered.figure.get_suptitle()
        assert rendered.top_ax.get_ylabel() == "buy/sell ratio (taker buy / sell volume)"
        assert "buy/sell ratio" in rendered.colorbar.ax.get_ylabel()
        assert "BTC buy/sell" in rendered.legend_labels
        assert not any("L/S" in label for label in rendered.legend_labels)
        assert "upper zone (buyers)" in rendered.legend_labels  # not "crowd long"
        assert "lower zone (sellers)" in rendered.legend_labels
    finally:
        rendered.figure.clear()


def test_the_price_line_goes_on_where_the_l_s_rows_stop(tmp_path: Path):
    """Candles cover more than a latest-window exchange's L/S rows: the price is drawn from
    the candles, not only beside the L/S rows."""
    with _make_warehouse(tmp_path / "w.duckdb", zones=False) as db:
        db.execute("DELETE FROM btc_ls WHERE ts > ?", [LAST - timedelta(hours=24)])
        rendered = build_figure(db, _request())
    try:
        hours = [int((ts - START) / pd.Timedelta(hours=1)) for ts in rendered.grid.ts_index]
        btc = np.asarray(rendered.top_ax.get_lines()[0].get_ydata(), dtype=float)
        price = np.asarray(rendered.price_ax.get_lines()[0].get_ydata(), dtype=float)
    finally:
        rendered.figure.clear()
    last_day = [i for i, h in enumerate(hours) if h > N_BUCKETS - 1 - 24]
    assert np.isnan(btc[last_day]).all()  # no L/S rows there
    assert price[last_day].tolist() == [95_000.0 + 50 * hours[i] for i in last_day]


def test_a_coin_the_exchange_does_not_list_has_a_row_marked_not_listed(tmp_path: Path):
    """TON is in the universe but not listed on this exchange (coverage says so): its row is
    there, named "not listed", blank, not the hatched grey of missing data."""
    with _make_warehouse(tmp_path / "w.duckdb", zones=False) as db:
        db.execute(
            "CREATE TABLE coverage (exchange VARCHAR, coin VARCHAR, metric VARCHAR, "
            "period VARCHAR, listed BOOLEAN)"
        )
        db.execute(
            "INSERT INTO coverage VALUES (?, 'TON', ?, ?, false), (?, 'ETH', ?, ?, true), "
            "('okx', 'XMR', ?, ?, false)",
            [*SEL, *SEL, *SEL[1:]],
        )
        rendered = build_figure(db, _request(theme="vik"))
    out = tmp_path / "p.png"
    save_png(rendered, out)
    pixels = mpimg.imread(out)
    grid = rendered.grid
    assert "TON" in grid.coins and "XMR" not in grid.coins  # another exchange's gap is not here
    assert grid.coins == ["BTC", *sorted(c for c in grid.coins if c != "BTC")]
    assert np.ma.getmaskarray(grid.values)[grid.coins.index("TON")].all()
    labels = coin_labels(rendered.heat_ax)
    assert "TON (not listed)" in labels and "ETH" in labels
    rgb = _pixel(rendered, pixels, "TON", 200)
    np.testing.assert_allclose(rgb, to_rgb(get_theme("vik").background), atol=0.02)
    # Not a trace of the hatch in any pixel whose centre is in the row, edge pixels included (a
    # span alone let it show as a dashed line where the row met its neighbour mid-pixel).
    row = grid.coins.index("TON")
    (left, top), (right, bottom) = rendered.heat_ax.transData.transform(
        [(rendered.heat_ax.get_xlim()[0], row), (rendered.heat_ax.get_xlim()[1], row + 1)]
    )
    height = pixels.shape[0]
    band = pixels[
        math.ceil(height - top - 0.5) : math.floor(height - bottom - 0.5) + 1,
        math.ceil(left) : math.floor(right),
        :3,
    ]
    hatch = np.array(to_rgb(get_theme("vik").no_data_hatch_color))
    assert np.linalg.norm(band - hatch, axis=-1).min() > 0.25
