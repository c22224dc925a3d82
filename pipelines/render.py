"""Heatmap PNGs: BTC and altcoin-average L/S over a coin x time heatmap (README, "The images").

Draws what pipelines/image_data.py reads from the warehouse; writes one PNG per (exchange,
metric, period, range). Figures are built with
`matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so nothing global is touched and
nothing leaks between renders (safe in long-running Dagster processes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import duckdb
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import StrMethodFormatter

from pipelines.config import EXCHANGE_NAMES, METRIC_WORDS
from pipelines.image_data import (
    HeatmapGrid,
    RenderRequest,
    TopData,
    read_image,
    view_of,
)
from pipelines.themes import Theme, get_theme

__all__ = [
    "RenderResult",
    "RenderedFigure",
    "build_figure",
    "render_heatmap",
    "save_png",
]

FIGSIZE_IN: Final = (16.0, 10.0)
DPI: Final = 120  # 1920 x 1200 px: sharp on a laptop screen, ~250-300 KB per file
# Above this many buckets the heatmap columns are averaged in groups before drawing. The axes are
# ~1650 px wide, so each drawn column keeps >= ~2.5 px; drawing more columns would make matplotlib
# resample the image, which (with mixed up/down sampling) smears neighbouring coin rows together.
_MAX_DRAWN_COLUMNS: Final = 640
_MIN_LN_VMAX: Final = math.log(1.1)  # a calm market must not look dramatic: scale >= ratio 1.1
_LN_VMAX_PERCENTILE: Final = 98.0  # robust: one broken print should not wash out every colour
_ZSCORE_VMAX: Final = 3.0  # fixed, so z-score images compare across coins, venues and days
_RATIO_TICK_STEPS: Final = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0)  # then 10, 20, 50, 100, ...
_SIMULATED_COLOR: Final = "#D55E00"  # Okabe-Ito vermillion: alarming on light and dark pages

_Rect = tuple[float, float, float, float]


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


@dataclass
class RenderedFigure:
    """A built, unsaved figure and the parts tests and callers may want to inspect."""

    figure: Figure
    top_ax: Axes
    price_ax: Axes
    heat_ax: Axes
    colorbar: Colorbar
    grid: HeatmapGrid
    theme: Theme
    norm: Normalize
    title: str
    columns_per_cell: int = 1  # >1 when long ranges are averaged for drawing
    legend_labels: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------- drawing


def _title(request: RenderRequest, data_end: pd.Timestamp | None) -> str:
    """In words: `Binance · all accounts, by count · 1h · last 7 days · latest bucket ...`."""
    end = f"latest bucket {data_end:%Y-%m-%d %H:%M} UTC" if data_end is not None else "no data"
    name = view_of(request).title or EXCHANGE_NAMES.get(request.exchange, request.exchange)
    what = METRIC_WORDS.get(request.metric, request.metric)
    parts = [name, what, request.period, f"last {request.range_days} days", end]
    title = "  ·  ".join(parts)
    return f"SIMULATED DATA  ·  {title}" if request.simulated else title


def _edges(index: pd.DatetimeIndex) -> np.ndarray:
    """Matplotlib date numbers of every bucket edge (len = buckets + 1), UTC."""
    step_days = (index[1] - index[0]) / pd.Timedelta(days=1) if len(index) > 1 else 1.0
    return mdates.date2num(index[0].to_pydatetime()) + step_days * np.arange(len(index) + 1)


def _style_axes(ax: Axes, theme: Theme) -> None:
    """Page colours by hand rather than rcParams: rc_context is process-global state."""
    ax.set_facecolor(theme.background)
    ax.tick_params(which="both", colors=theme.foreground, labelcolor=theme.foreground)
    for spine in ax.spines.values():
        spine.set_color(theme.foreground)
        spine.set_alpha(0.5)
    for text in (ax.xaxis.label, ax.yaxis.label, ax.title, ax.xaxis.get_offset_text()):
        text.set_color(theme.foreground)


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


def _drawn_values(values: np.ma.MaskedArray) -> tuple[np.ma.MaskedArray, int]:
    """Average groups of k neighbouring buckets when there are too many to draw one by one.

    Averaging ln(ratio) is the geometric mean of the ratios; a group with no data stays masked.
    """
    n_rows, n_cols = values.shape
    k = max(1, math.ceil(n_cols / _MAX_DRAWN_COLUMNS))
    if k == 1:
        return values, 1
    padded = np.ma.masked_all((n_rows, math.ceil(n_cols / k) * k))
    padded[:, :n_cols] = values
    return padded.reshape(n_rows, -1, k).mean(axis=2), k


def _draw_heatmap(
    fig: Figure, heat_ax: Axes, cax: Axes, grid: HeatmapGrid, request: RenderRequest, theme: Theme
) -> tuple[Colorbar, Normalize, int]:
    edges = _edges(grid.ts_index)
    vmax = _vmax(grid, request.color_by)
    norm = Normalize(-vmax, vmax)
    drawn, k = _drawn_values(grid.values)
    step = edges[1] - edges[0]
    # Missing cells are transparent in the image; the axes behind them is hatched grey, so "no
    # data" can never be mistaken for the neutral centre colour (or any other value).
    cmap = theme.cmap.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    heat_ax.patch.set_facecolor(theme.no_data_color)
    heat_ax.patch.set_hatch("////")
    heat_ax.patch.set_hatchcolor(theme.no_data_hatch_color)
    image = heat_ax.imshow(
        drawn,
        cmap=cmap,
        norm=norm,
        aspect="auto",
        interpolation="nearest",  # real cell edges; long ranges were averaged, not resampled
        origin="upper",
        extent=(edges[0], edges[0] + step * k * drawn.shape[1], len(grid.coins), 0),
    )
    heat_ax.set_xlim(edges[0], edges[-1])
    for row, coin in enumerate(grid.coins):
        if coin in grid.not_listed:  # blank, not the hatched "no data": nothing to miss
            heat_ax.axhspan(row, row + 1, facecolor=theme.background, linewidth=0, zorder=0.5)
    _label_coins(heat_ax, grid.coins, grid.not_listed, theme)
    colorbar = fig.colorbar(image, cax=cax, extend="both")
    _style_colorbar(colorbar, vmax, request, theme)
    return colorbar, norm, k


def _label_coins(heat_ax: Axes, coins: list[str], not_listed: frozenset[str], theme: Theme) -> None:
    n = len(coins)
    every = max(1, math.ceil(n / 110))  # beyond ~110 rows labels would overlap: label every k-th
    rows = np.arange(0, n, every)
    names = [f"{coins[i]} (not listed)" if coins[i] in not_listed else coins[i] for i in rows]
    heat_ax.set_yticks(rows + 0.5, names)
    for label in heat_ax.get_yticklabels():
        if label.get_text().endswith("(not listed)"):
            label.set_fontstyle("italic")
            label.set_alpha(0.6)
    heat_ax.tick_params(axis="y", labelsize=float(np.clip(420 / max(n, 1) * 0.75, 4.5, 9)))
    if coins and coins[0] == "BTC":
        heat_ax.get_yticklabels()[0].set_fontweight("bold")
        heat_ax.axhline(1, color=theme.foreground, linewidth=0.9)  # BTC apart from the alts
    heat_ax.set_ylabel("coin")


def _ratio_words(metric: str) -> tuple[str, str]:
    """(the ratio's short name, its axis label): taker volume is buy/sell, the rest long/short."""
    if metric == "taker_volume":
        return "buy/sell", "buy/sell ratio (taker buy / sell volume)"
    return "L/S", "L/S ratio (long / short)"


def _style_colorbar(colorbar: Colorbar, vmax: float, request: RenderRequest, theme: Theme) -> None:
    if request.color_by == "zscore":
        ticks = list(range(-int(_ZSCORE_VMAX), int(_ZSCORE_VMAX) + 1))
        colorbar.set_ticks(ticks, labels=[f"{t:+d}" if t else "0" for t in ticks])
        colorbar.set_label("z-score vs the coin's own history")
    else:
        values, labels = _ratio_ticks(vmax)
        colorbar.set_ticks(values, labels=labels)
        colorbar.set_label(f"{_ratio_words(request.metric)[0]} ratio (log scale, 1 = balanced)")
    colorbar.ax.yaxis.label.set_color(theme.foreground)
    colorbar.ax.tick_params(colors=theme.foreground, labelcolor=theme.foreground)
    colorbar.outline.set_edgecolor(theme.foreground)


def _no_data_note(
    fig: Figure, theme: Theme, anchor: tuple[float, float], *, before_history: bool
) -> None:
    """Swatches of the hatched "no data" grey (and of the plain "before the history starts"
    grey when drawn), under the colour bar, in figure coordinates."""
    swatches = [
        Patch(
            facecolor=theme.no_data_color,
            hatch="////",
            edgecolor=theme.no_data_hatch_color,
            label="no data",
        )
    ]
    if before_history:
        swatches.append(Patch(facecolor=theme.no_data_color, label="before history"))
    fig.legend(
        handles=swatches,
        loc="lower left",
        bbox_to_anchor=anchor,
        bbox_transform=fig.transFigure,
        frameon=False,
        fontsize=8,
        labelcolor=theme.foreground,
        handlelength=1.6,
        borderaxespad=0.0,
        borderpad=0.0,
    )


def _mark_history_start(
    heat_ax: Axes, top_ax: Axes, grid: HeatmapGrid, owner: str, theme: Theme
) -> None:
    """Grey out, without hatching, the columns before the series' first bucket, and label them:
    the exchange (or this warehouse) holds nothing older, which is not a hole in the data."""
    if grid.history_start is None:
        return
    left = mdates.date2num(grid.ts_index[0].to_pydatetime())
    start = mdates.date2num(grid.history_start.to_pydatetime())
    heat_ax.axvspan(left, start, facecolor=theme.no_data_color, linewidth=0, zorder=1.5)
    for ax in (heat_ax, top_ax):
        ax.axvline(start, color=theme.foreground, linewidth=1.0, linestyle=":", zorder=3)
    xmin, xmax = heat_ax.get_xlim()
    roomy = (start - left) / (xmax - xmin) > 0.12
    # Inside the grey region when it has room (no cell hidden), else just right of the line.
    heat_ax.text(
        start,
        0.99,
        f"history starts {grid.history_start:%Y-%m-%d}",
        transform=heat_ax.get_xaxis_transform(),
        ha="right" if roomy else "left",
        va="top",
        fontsize=9,
        color=theme.foreground,
        bbox={"facecolor": theme.background, "edgecolor": "none", "alpha": 0.8, "pad": 2},
        zorder=4,
    )
    if roomy:  # room for a sentence inside the region
        heat_ax.text(
            (left + start) / 2,
            0.5,
            f"before {owner}'s history\n(nothing older is stored;\nnot missing data)",
            transform=heat_ax.get_xaxis_transform(),
            ha="center",
            va="center",
            fontsize=10,
            color=theme.foreground,
            alpha=0.8,
            zorder=4,
        )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in `mask`, found with numpy rather than a loop."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b - a)) for a, b in zip(change[::2], change[1::2], strict=True)]


def _shade(ax: Axes, edges: np.ndarray, mask: np.ndarray, color: str, alpha: float) -> None:
    step = edges[1] - edges[0]
    spans = [(edges[a], n * step) for a, n in _runs(mask)]
    if spans:
        ax.broken_barh(
            spans,
            (0, 1),
            transform=ax.get_xaxis_transform(),
            facecolor=color,
            alpha=alpha,
            linewidth=0,
            zorder=0,
        )


def _draw_top(
    top_ax: Axes, price_ax: Axes, grid: HeatmapGrid, top: TopData, metric: str, theme: Theme
) -> list[str]:
    edges = _edges(grid.ts_index)
    centres = (edges[:-1] + edges[1:]) / 2  # each point sits over its heatmap column
    # Zone shading: light where BTC or the alt average is at an extreme, stronger where both are
    # (market-wide). Colours are the heatmap's own ends, so "upper" looks like a long-heavy cell.
    _shade(top_ax, edges, top.upper, theme.upper_zone_color, 0.14)
    _shade(top_ax, edges, top.lower, theme.lower_zone_color, 0.14)
    _shade(top_ax, edges, top.market_wide & top.upper, theme.upper_zone_color, 0.22)
    _shade(top_ax, edges, top.market_wide & top.lower, theme.lower_zone_color, 0.22)
    ratio, axis_label = _ratio_words(metric)
    how = f"{top.weighting}, " if top.weighting else ""
    alt_label = f"altcoin average {ratio} ({how}geometric mean"
    alt_label += f", ~{top.alt_coins:.0f} coins)" if not math.isnan(top.alt_coins) else ")"
    btc_label = f"BTC {ratio} ({top.weighting})" if top.weighting else f"BTC {ratio}"
    top_ax.plot(centres, top.btc_ratio, color=theme.btc_color, linewidth=1.6, label=btc_label)
    top_ax.plot(centres, top.alt_ratio, color=theme.alt_color, linewidth=1.6, label=alt_label)
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
    return _top_legend(top_ax, price_ax, top, metric, theme)


def _top_legend(top_ax: Axes, price_ax: Axes, top: TopData, metric: str, theme: Theme) -> list[str]:
    upper, lower = (
        ("buyers", "sellers") if metric == "taker_volume" else ("crowd long", "crowd short")
    )
    handles = [*top_ax.get_lines(), *price_ax.get_lines()]
    handles = [h for h in handles if isinstance(h, Line2D)]
    extra: list[Patch] = []
    if top.upper.any():
        extra.append(Patch(color=theme.upper_zone_color, alpha=0.3, label=f"upper zone ({upper})"))
    if top.lower.any():
        extra.append(Patch(color=theme.lower_zone_color, alpha=0.3, label=f"lower zone ({lower})"))
    if top.market_wide.any():
        extra.append(
            Patch(
                facecolor="none",
                edgecolor=theme.foreground,
                linewidth=0.6,
                label="darker = market-wide (BTC and alts)",
            )
        )
    all_handles: list[Line2D | Patch] = [*handles, *extra]
    top_ax.legend(
        handles=all_handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=4,
        frameon=False,
        fontsize=8.5,
        labelcolor=theme.foreground,
        borderaxespad=0.2,
    )
    return [str(h.get_label()) for h in all_handles]


class _NamedMonthDates(mdates.ConciseDateFormatter):
    """Concise dates whose first tick also names its month: plain day numbers ("25 ... 30, Dec")
    would leave the month a window starts in unnamed."""

    def format_ticks(self, values: list[float]) -> list[str]:
        labels = list(super().format_ticks(values))
        if labels and labels[0].isdigit():  # a day of the month, the month unsaid
            first = mdates.num2date(values[0], tz=UTC)
            labels[0] = f"{first:%b} {labels[0]}"
        return labels


def _set_time_axis(heat_ax: Axes, top_ax: Axes) -> None:
    locator = mdates.AutoDateLocator(tz=UTC, minticks=5, maxticks=12)
    heat_ax.xaxis.set_major_locator(locator)
    heat_ax.xaxis.set_major_formatter(_NamedMonthDates(locator, tz=UTC))
    heat_ax.set_xlabel("time (UTC)")
    top_ax.tick_params(axis="x", labelbottom=False)


def _watermark(fig: Figure) -> None:
    fig.text(
        0.5,
        0.45,
        "SIMULATED",
        ha="center",
        va="center",
        rotation=22,
        fontsize=120,
        fontweight="bold",
        color=_SIMULATED_COLOR,
        alpha=0.13,
        zorder=100,
        gid="simulated-watermark",
    )


def _layout() -> tuple[_Rect, _Rect, _Rect]:
    """Axes rectangles (figure fractions) for the top panel, the heatmap and the colour bar.

    A fixed layout rather than matplotlib's constrained layout: the figure size never changes, and
    constrained layout costs an extra full draw per image (over half the render time). Both panels
    get the same left and right edges, so their time axes line up column for column; the colour
    bar sits beside the heatmap only, below the price labels of the top panel.
    """
    width, height = FIGSIZE_IN
    left, right = 1.05, 1.35  # coin labels + y label | colour bar, its ticks and label
    top, bottom, gap = 1.0, 0.75, 0.15  # title + legend | date labels | between panels
    usable = height - top - bottom - gap
    top_h = usable * 0.3
    heat_h = usable - top_h
    plot_w = width - left - right
    top_rect = (left / width, (bottom + heat_h + gap) / height, plot_w / width, top_h / height)
    heat_rect = (left / width, bottom / height, plot_w / width, heat_h / height)
    cbar_rect = (
        (left + plot_w + 0.3) / width,
        (bottom + 0.45) / height,
        0.2 / width,
        (heat_h - 0.45) / height,
    )  # raised: the no-data swatch goes underneath
    return top_rect, heat_rect, cbar_rect


def build_figure(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> RenderedFigure:
    """Query and draw one image, without saving it (tests inspect the result directly)."""
    theme = get_theme(request.theme)
    data = read_image(conn, request)
    grid, top = data.grid, data.top
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, facecolor=theme.background)
    FigureCanvasAgg(fig)  # Agg explicitly, whatever backend the process configured
    top_rect, heat_rect, cbar_rect = _layout()
    top_ax = fig.add_axes(top_rect)
    heat_ax = fig.add_axes(heat_rect, sharex=top_ax)
    cax = fig.add_axes(cbar_rect)
    price_ax = top_ax.twinx()
    # Ratio lines above the price line: they are the subject, price is context.
    top_ax.set_zorder(price_ax.get_zorder() + 1)
    for ax in (top_ax, price_ax, heat_ax, cax):
        _style_axes(ax, theme)
    top_ax.patch.set_visible(False)  # the price axes below now paints the background
    price_ax.patch.set_visible(True)
    colorbar, norm, k = _draw_heatmap(fig, heat_ax, cax, grid, request, theme)
    labels = _draw_top(top_ax, price_ax, grid, top, request.metric, theme)
    owner = data.view.history_owner or EXCHANGE_NAMES.get(request.exchange, request.exchange)
    _mark_history_start(heat_ax, top_ax, grid, owner, theme)
    _set_time_axis(heat_ax, top_ax)
    if k > 1:  # say so: a drawn column is then an average, not one bucket
        heat_ax.set_xlabel(f"time (UTC)  ·  each column averages {k} x {request.period} buckets")
    title = _title(request, grid.data_end)
    fig.suptitle(
        title,
        fontsize=14,
        fontweight="bold",
        color=_SIMULATED_COLOR if request.simulated else theme.foreground,
    )
    _no_data_note(
        fig,
        theme,
        (cax.get_position().x0 - 0.012, heat_ax.get_position().y0),
        before_history=grid.history_start is not None,
    )
    if request.simulated:
        _watermark(fig)
    return RenderedFigure(
        fig, top_ax, price_ax, heat_ax, colorbar, grid, theme, norm, title, k, labels
    )


def save_png(rendered: RenderedFigure, out: Path) -> tuple[int, int]:
    """Write the PNG atomically (temp file + rename): readers never see half an image."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        rendered.figure.savefig(
            tmp,
            format="png",
            dpi=DPI,
            facecolor=rendered.theme.background,
            metadata={"Title": rendered.title},
        )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return _png_size(out)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def render_heatmap(
    conn: duckdb.DuckDBPyConnection, request: RenderRequest, out: Path
) -> RenderResult:
    """Render one image to `out` (parents created) and describe what was written."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output file must end in .png, got {out}")
    rendered = build_figure(conn, request)
    try:
        width, height = save_png(rendered, out)
    finally:
        rendered.figure.clear()  # drop artists now; long-running processes render many images
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
