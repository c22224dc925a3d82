"""Heatmap PNGs: BTC and altcoin-average L/S over a coin x time heatmap (README, "The images"),
and the entry points for every image, the candle-flow and whale kinds included: `read_image_data`
reads what one image shows, `render_image` draws and writes it, `render_heatmap` does both.

Draws what pipelines/image_data.py reads from the warehouse on the page pipelines/figure.py lays
out; writes one PNG per (exchange, metric, period, range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from pipelines.config import EXCHANGE_NAMES, METRIC_WORDS, WHALES
from pipelines.figure import (
    RenderedFigure,
    draw_heatmap,
    edges_of,
    finish_page,
    mark_history_start,
    new_page,
    reused_page,
    runs,
    save_png,
    shade,
    stairs,
    title_of,
    top_legend,
)
from pipelines.image_data import (
    FLOW,
    REGIMES,
    FlowImage,
    HeatmapGrid,
    ImageData,
    RenderRequest,
    TopData,
    WhaleImage,
    read_flow,
    read_image,
    read_whales,
    view_of,
)
from pipelines.render_flow import draw_flow_figure
from pipelines.render_whales import draw_whale_figure
from pipelines.themes import Theme, get_theme

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "ImageContent",
    "RenderResult",
    "RenderedFigure",
    "build_figure",
    "read_image_data",
    "render_heatmap",
    "render_image",
    "save_png",
]

_MIN_LN_VMAX: Final = math.log(1.1)  # a calm market must not look dramatic: scale >= ratio 1.1
_LN_VMAX_PERCENTILE: Final = 98.0  # robust: one broken print should not wash out every colour
_ZSCORE_VMAX: Final = 3.0  # fixed, so z-score images compare across coins, venues and days
_RATIO_TICK_STEPS: Final = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0)  # then 10, 20, 50, 100, ...


@dataclass(frozen=True)
class RenderResult:
    """What was written, for asset metadata and the `heatmap_images` table."""

    path: Path
    exchange: str
    metric: str
    period: str
    range_label: str
    theme: str
    data_end: datetime | None  # newest bucket (UTC, tz-aware) with a ratio; None if none
    n_coins: int
    n_buckets: int
    width_px: int
    height_px: int
    color_by: str = "ln_ratio"
    simulated: bool = False
    title: str = ""


# ------------------------------------------------------------------------------------- drawing


def _title(request: RenderRequest, data_end: pd.Timestamp | None) -> str:
    name = view_of(request).title or EXCHANGE_NAMES.get(request.exchange, request.exchange)
    what = METRIC_WORDS.get(request.metric, request.metric)
    return title_of(name, what, request.period, request.range_days, data_end, request.simulated)


def _ratio_ticks(vmax: float) -> tuple[list[float], list[str]]:
    """Colour-bar ticks at ln(r) for 'nice' ratios r and 1/r, labelled as ratios."""
    candidates = list(_RATIO_TICK_STEPS)
    while math.log(candidates[-1]) < vmax:  # absurd data still gets a readable scale
        candidates += [m * candidates[-1] * 2 for m in (1.0, 2.0, 5.0)]
    fitting = [r for r in candidates if math.log(r) <= vmax * 1.0001]
    min_gap = vmax / 3.5  # keep labels apart: at most ~3 per side
    chosen: list[float] = []
    for r in reversed(fitting):
        last = math.log(chosen[-1]) if chosen else math.inf
        if last - math.log(r) >= min_gap and math.log(r) >= min_gap / 2:
            chosen.append(r)
    ups = sorted(chosen)
    ratios = [1 / r for r in reversed(ups)] + [1.0] + ups
    return [math.log(r) for r in ratios], [_fmt_ratio(r) for r in ratios]


def _fmt_ratio(r: float) -> str:
    return f"{r:g}" if r >= 1 else f"{r:.2g}"


def _vmax(grid: HeatmapGrid, color_by: str) -> float:
    """Half-width of the symmetric colour scale around 0 (ratio 1, or z-score 0)."""
    if color_by == "zscore":
        return _ZSCORE_VMAX
    valid = np.abs(grid.values.compressed())
    vmax = float(np.percentile(valid, _LN_VMAX_PERCENTILE)) if valid.size else math.log(2.0)
    return max(vmax, _MIN_LN_VMAX)


def _ratio_words(metric: str) -> tuple[str, str]:
    """(the ratio's short name, its axis label): taker volume is buy/sell, the rest long/short."""
    if metric == "taker_volume":
        return "buy/sell", "buy/sell ratio (taker buy / sell volume)"
    return "L/S", "L/S ratio (long / short)"


def _style_colorbar(colorbar: Colorbar, vmax: float, request: RenderRequest) -> None:
    if request.color_by == "zscore":
        ticks = list(range(-int(_ZSCORE_VMAX), int(_ZSCORE_VMAX) + 1))
        colorbar.set_ticks(ticks, labels=[f"{t:+d}" if t else "0" for t in ticks])
        colorbar.set_label("z-score vs the coin's own history")
    else:
        values, labels = _ratio_ticks(vmax)
        colorbar.set_ticks(values, labels=labels)
        colorbar.set_label(f"{_ratio_words(request.metric)[0]} ratio (log scale, 1 = balanced)")


# Strips along the top of the panel (bottom, height in axes fractions): one per series' zones and
# one for the BTC-vs-altcoin regimes, so opposite extremes of BTC and the alts never blend.
_BTC_STRIP: Final = (0.925, 0.075)
_ALT_STRIP: Final = (0.85, 0.075)
_REGIME_STRIP: Final = (0.775, 0.075)
_LINES_TOP: Final = 0.74  # the lines stay below the strips
_WIDE_ALPHA, _WIDE_ALPHA_DARK = 0.16, 0.3  # market-wide shading: light enough to read lines through


def _draw_top(
    top_ax: Axes, price_ax: Axes, grid: HeatmapGrid, top: TopData, metric: str, theme: Theme
) -> list[str]:
    edges = edges_of(grid.ts_index)
    centres = (edges[:-1] + edges[1:]) / 2  # each point sits over its heatmap column
    ratio, axis_label = _ratio_words(metric)
    how = f"{top.weighting}, " if top.weighting else ""
    alt_label = f"altcoin average {ratio} ({how}geometric mean"
    alt_label += f", ~{top.alt_coins:.0f} coins)" if not math.isnan(top.alt_coins) else ")"
    btc_label = f"BTC {ratio} ({top.weighting})" if top.weighting else f"BTC {ratio}"
    top_ax.plot(centres, top.btc_ratio, color=theme.btc_color, linewidth=1.6, label=btc_label)
    top_ax.plot(centres, top.alt_ratio, color=theme.alt_color, linewidth=1.6, label=alt_label)
    _draw_bands(top_ax, edges, top, theme)
    top_ax.axhline(
        1.0,
        color=theme.foreground,
        linewidth=0.8,
        linestyle="--",
        alpha=0.6,
        label="ratio 1 (balanced)",
    )
    has_price = bool(np.isfinite(top.price).any())
    source = f"{top.price_exchange}, " if top.price_exchange else ""
    price_ax.plot(
        centres,
        top.price,
        color=theme.price_color,
        linewidth=1.0,
        label=f"BTC price ({source}right axis)" if has_price else "BTC price (no data)",
    )
    if not np.isfinite(top.btc_ratio).any() and not np.isfinite(top.alt_ratio).any():
        top_ax.text(
            0.5,
            0.5,
            f"no BTC / altcoin {ratio} data in this range",
            ha="center",
            va="center",
            transform=top_ax.transAxes,
            color=theme.foreground,
            alpha=0.7,
        )
    top_ax.set_ylabel(axis_label)
    price_ax.set_ylabel("BTC price")
    price_ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    if not has_price:
        price_ax.set_yticks([])
    top_ax.grid(True, color=theme.foreground, alpha=0.12, linewidth=0.6)
    strips = _draw_strips(top_ax, edges, top, theme)
    if top.n_exchanges is not None:
        strips = _draw_exchange_counts(top_ax, edges, top.n_exchanges, theme) or strips
    if strips:
        _leave_room_for_strips(top_ax, top)
        if has_price:
            _keep_below_strips(price_ax, top.price)
    return _top_legend(top_ax, price_ax, top, metric, theme)


def _draw_bands(top_ax: Axes, edges: np.ndarray, top: TopData, theme: Theme) -> None:
    """Each series' zone thresholds (its trailing percentiles) as thin steps in its colour."""
    for zones, colour, who in (
        (top.btc_zones, theme.btc_color, "BTC"),
        (top.alt_zones, theme.alt_color, "alt"),
    ):
        if not np.isfinite(zones.upper_band).any():
            continue
        for i, band in enumerate((zones.upper_band, zones.lower_band)):
            stairs(
                top_ax,
                band,
                edges,
                color=colour,
                linewidth=0.8,
                linestyle=(0, (4, 3)),
                alpha=0.75,
                label=f"{who} zone thresholds (trailing percentiles)" if i == 0 else "_",
            )


def _draw_strips(top_ax: Axes, edges: np.ndarray, top: TopData, theme: Theme) -> bool:
    """BTC's zones, the alt average's zones and the BTC-vs-alts regimes, each in its own strip
    along the top, named at its left; market-wide extremes also shade the whole panel height.
    False when there is nothing to show."""
    rows = [
        (_BTC_STRIP, "BTC zone", top.btc_zones.zone),
        (_ALT_STRIP, "alt zone", top.alt_zones.zone),
    ]
    if not any(zone.any() for _, _, zone in rows) and not top.regimes.any():
        return False
    for band, name, zone in rows:
        shade(top_ax, edges, zone > 0, theme.upper_zone_color, 0.9, band)
        shade(top_ax, edges, zone < 0, theme.lower_zone_color, 0.9, band)
        _strip_label(top_ax, band, name, theme)
    wide_up = top.market_wide & (top.btc_zones.zone > 0)
    wide_down = top.market_wide & (top.btc_zones.zone < 0)
    wide_alpha = _WIDE_ALPHA_DARK if theme.dark else _WIDE_ALPHA
    shade(top_ax, edges, wide_up, theme.upper_zone_color, wide_alpha, (0.0, _ALT_STRIP[0]))
    shade(top_ax, edges, wide_down, theme.lower_zone_color, wide_alpha, (0.0, _ALT_STRIP[0]))
    for code, colour, alpha in _regime_styles(theme):
        shade(top_ax, edges, top.regimes == code, colour, alpha, _REGIME_STRIP)
    _strip_label(top_ax, _REGIME_STRIP, "BTC vs alts", theme)
    return True


def _draw_exchange_counts(
    top_ax: Axes, edges: np.ndarray, counts: np.ndarray, theme: Theme
) -> bool:
    """How many exchanges a view over several combines, bucket by bucket: a strip shaded
    darker for more, with the number written where it changes (when there is room)."""
    known = np.isfinite(counts)
    if not known.any():
        return False
    most = float(np.nanmax(counts))
    step = edges[1] - edges[0]
    width = edges[-1] - edges[0]
    for value in np.unique(counts[known]):
        mask = counts == value
        shade(top_ax, edges, mask, theme.foreground, 0.15 + 0.45 * value / most, _BTC_STRIP)
        for start, length in runs(mask):
            if length * step / width >= 0.03:  # enough room for a number
                top_ax.text(
                    edges[start] + length * step / 2,
                    _BTC_STRIP[0] + _BTC_STRIP[1] / 2,
                    f"{value:.0f}",
                    transform=top_ax.get_xaxis_transform(),
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color=theme.background if value / most > 0.6 else theme.foreground,
                    gid="exchange-count",
                )
    _strip_label(top_ax, _BTC_STRIP, "exchanges combined", theme)
    return True


def _regime_styles(theme: Theme) -> list[tuple[int, str, float]]:
    """(REGIMES code, colour, alpha): the colour of the side that is long; grey for z-scores
    apart."""
    return [
        (REGIMES["btc_long_alts_short"], theme.btc_color, 0.9),
        (REGIMES["btc_short_alts_long"], theme.alt_color, 0.9),
        (REGIMES["zscore_divergence"], theme.foreground, 0.35),
    ]


def _strip_label(top_ax: Axes, band: tuple[float, float], name: str, theme: Theme) -> None:
    top_ax.text(
        0.003,
        band[0] + band[1] / 2,
        name,
        transform=top_ax.transAxes,
        ha="left",
        va="center",
        fontsize=7.5,
        color=theme.foreground,
        bbox={"facecolor": theme.background, "edgecolor": "none", "alpha": 0.7, "pad": 1},
        zorder=5,
    )


def _leave_room_for_strips(top_ax: Axes, top: TopData) -> None:
    """Lift the top of the ratio axis so the lines and bands stay below the strips."""
    values = np.concatenate(
        [
            top.btc_ratio,
            top.alt_ratio,
            top.btc_zones.lower_band,
            top.btc_zones.upper_band,
            top.alt_zones.lower_band,
            top.alt_zones.upper_band,
            [1.0],
        ]
    )
    _keep_below_strips(top_ax, values)


def _keep_below_strips(ax: Axes, values: np.ndarray) -> None:
    values = values[np.isfinite(values)]
    low, high = float(values.min()), float(values.max())
    bottom = low - 0.05 * max(high - low, 0.01 * abs(high))
    ax.set_ylim(bottom, bottom + (high - bottom) / _LINES_TOP)


def _top_legend(top_ax: Axes, price_ax: Axes, top: TopData, metric: str, theme: Theme) -> list[str]:
    upper, lower = (
        ("buyers", "sellers") if metric == "taker_volume" else ("crowd long", "crowd short")
    )
    handles: list[Artist] = [*top_ax.get_lines(), *price_ax.get_lines()]
    handles += [
        h for h in top_ax.patches if str(h.get_label()) and not str(h.get_label()).startswith("_")
    ]
    extra: list[Patch] = []
    zones = (top.btc_zones.zone, top.alt_zones.zone)
    if any((z > 0).any() for z in zones):
        extra.append(Patch(color=theme.upper_zone_color, alpha=0.9, label=f"upper zone ({upper})"))
    if any((z < 0).any() for z in zones):
        extra.append(Patch(color=theme.lower_zone_color, alpha=0.9, label=f"lower zone ({lower})"))
    if top.market_wide.any():
        extra.append(
            Patch(
                facecolor=theme.foreground,
                alpha=_WIDE_ALPHA_DARK if theme.dark else _WIDE_ALPHA,
                label="market-wide: BTC and alts in one zone",
            )
        )
    words = {
        REGIMES["btc_long_alts_short"]: "BTC long, alts short",
        REGIMES["btc_short_alts_long"]: "BTC short, alts long",
        REGIMES["zscore_divergence"]: "BTC and alts far apart (z-scores)",
    }
    for code, colour, alpha in _regime_styles(theme):
        if (top.regimes == code).any():
            extra.append(Patch(color=colour, alpha=alpha, label=words[code]))
    return top_legend(top_ax, [*handles, *extra], theme)


# What one image shows, read from the warehouse; plain arrays and frames, so it can be drawn in
# another process.
ImageContent = ImageData | FlowImage | WhaleImage


def read_image_data(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> ImageContent:
    """What the request's kind of image shows; NoDataError when there is nothing to draw."""
    if request.metric == FLOW:
        return read_flow(conn, request)
    if request.metric == WHALES:
        return read_whales(conn, request)
    return read_image(conn, request)


def build_figure(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> RenderedFigure:
    """Query and draw one image, without saving it (tests inspect the result directly)."""
    return draw_figure(request, read_image_data(conn, request))


def draw_figure(
    request: RenderRequest, content: ImageContent, *, reuse_page: bool = False
) -> RenderedFigure:
    """The image, unsaved. With `reuse_page`, an L/S image is drawn on this process's page for
    its theme (figure.reused_page), which the next such image empties: for callers that save it
    first."""
    if isinstance(content, FlowImage):
        return draw_flow_figure(request, content)
    if isinstance(content, WhaleImage):
        return draw_whale_figure(request, content)
    return _draw_ratio_figure(request, content, reuse_page=reuse_page)


def _draw_ratio_figure(
    request: RenderRequest, data: ImageData, *, reuse_page: bool
) -> RenderedFigure:
    theme = get_theme(request.theme)
    grid, top = data.grid, data.top
    page = reused_page(theme) if reuse_page else new_page(theme)
    vmax = _vmax(grid, request.color_by)
    heatmap = draw_heatmap(page, grid, theme, vmax)
    _style_colorbar(heatmap[0], vmax, request)
    labels = _draw_top(page.top_ax, page.right_ax, grid, top, request.metric, theme)
    owner = data.view.history_owner or EXCHANGE_NAMES.get(request.exchange, request.exchange)
    mark_history_start(page.heat_ax, page.top_ax, grid, owner, theme)
    title = _title(request, grid.data_end)
    return finish_page(
        page,
        theme,
        grid,
        title,
        heatmap,
        labels,
        simulated=request.simulated,
        period=request.period,
    )


def render_heatmap(
    conn: duckdb.DuckDBPyConnection, request: RenderRequest, out: Path
) -> RenderResult:
    """Read and render one image to `out` (parents created) and describe what was written."""
    return render_image(request, read_image_data(conn, request), out)


def render_image(request: RenderRequest, content: ImageContent, out: Path) -> RenderResult:
    """Draw what was read for one image to `out` (parents created); describe what was written."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output file must end in .png, got {out}")
    rendered = draw_figure(request, content, reuse_page=True)
    # Not figure.clear() afterwards: it clears every axes as if for reuse (16 ms an image) to free
    # what the garbage collector frees anyway (102 images in one process: peak memory within 4 %).
    width, height = save_png(rendered, out)
    grid = rendered.grid
    data_end = grid.data_end.tz_localize(UTC).to_pydatetime() if grid.data_end is not None else None
    return RenderResult(
        path=out,
        exchange=request.exchange,
        metric=request.metric,
        period=request.period,
        range_label=request.range_label,
        theme=rendered.theme.name,
        data_end=data_end,
        n_coins=len(grid.coins),
        n_buckets=len(grid.ts_index),
        width_px=width,
        height_px=height,
        color_by=request.color_by,
        simulated=request.simulated,
        title=rendered.title,
    )
