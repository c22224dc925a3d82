"""Candle-flow PNGs: BTC's buy share, its momentum and extreme candles over a coin x time grid of
every coin's buy share (README, "The images").

The numbers are `candle_flow`'s (warehouse/sql/candle_flow.sql), read by
`pipelines.image_data.read_flow`; the page is pipelines/figure.py's, so a flow image lines up
with the L/S image of the same exchange and period column for column.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from pipelines.config import EXCHANGE_NAMES
from pipelines.figure import (
    FIGSIZE_IN,
    RenderedFigure,
    draw_heatmap,
    edges_of,
    finish_page,
    mark_history_start,
    new_page,
    stairs,
    title_of,
    top_legend,
)
from pipelines.image_data import FlowImage, FlowTop, RenderRequest
from pipelines.themes import Theme, get_theme

_MIN_SHARE_VMAX: Final = 0.1  # a calm market must not look dramatic: scale >= 40 % .. 60 %
_SHARE_VMAX_PERCENTILE: Final = 98.0
_MAX_MARKED_COLUMNS: Final = 400  # beyond this a cell is too narrow to carry a marker


def draw_flow_figure(request: RenderRequest, flow: FlowImage) -> RenderedFigure:
    """Draw one candle-flow image from what `read_flow` read, without saving it."""
    theme = get_theme(request.theme)
    grid = flow.grid
    page = new_page(theme)
    vmax = _share_vmax(grid.values)
    heatmap = draw_heatmap(page, grid, theme, vmax)
    colorbar, norm, k = heatmap
    _style_colorbar(colorbar, vmax)
    marked = k == 1 and len(grid.ts_index) <= _MAX_MARKED_COLUMNS and bool(flow.extremes.any())
    if marked:
        _mark_extreme_cells(page.heat_ax, flow, theme, norm)
    labels = _draw_top(page.top_ax, page.right_ax, flow, theme, cells_marked=marked)
    owner = EXCHANGE_NAMES.get(request.exchange, request.exchange)
    mark_history_start(page.heat_ax, page.top_ax, grid, owner, theme)
    title = _title(request, flow)
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


def _title(request: RenderRequest, flow: FlowImage) -> str:
    """`Gate · candle flow, from 5m candles' directions · 1h · last 7 days · ...`."""
    name = EXCHANGE_NAMES.get(request.exchange, request.exchange)
    what = (
        f"candle flow, from {flow.sources}"
        if flow.sources
        else "candle flow: no taker volume or finer candles to estimate it from"
    )
    end = flow.grid.data_end
    return title_of(name, what, request.period, request.range_days, end, request.simulated)


def _share_vmax(values: np.ma.MaskedArray) -> float:
    """Half-width of the colour scale around a 50 % buy share, robust to a few wild candles."""
    valid = np.abs(values.compressed())
    vmax = float(np.percentile(valid, _SHARE_VMAX_PERCENTILE)) if valid.size else 0.5
    return float(np.clip(vmax, _MIN_SHARE_VMAX, 0.5))


def _style_colorbar(colorbar: Colorbar, vmax: float) -> None:
    step = 0.1 if vmax > 0.2 else 0.05
    ticks = [t for t in np.arange(-0.5, 0.5001, step) if abs(t) <= vmax + 1e-9]
    colorbar.set_ticks(ticks, labels=[f"{50 + 100 * t:.0f} %" for t in ticks])
    colorbar.set_label("buy share of the volume (50 % = balanced)")


def _mark_extreme_cells(heat_ax: Axes, flow: FlowImage, theme: Theme, norm: Normalize) -> None:
    """A small ring in each cell whose candle was extreme: white on a dark cell, black on a
    light one (the cell's own colour already says which side)."""
    rows, cols = np.nonzero(flow.extremes)
    cell_colours = theme.cmap(norm(flow.grid.values[rows, cols].filled(0.0)))[:, :3]
    luminance = cell_colours @ np.array([0.2126, 0.7152, 0.0722])
    rings = ["#ffffff" if lum < 0.45 else "#000000" for lum in luminance]
    edges = edges_of(flow.grid.ts_index)
    centres = (edges[:-1] + edges[1:]) / 2
    # A ring 0.7 of the cell's shorter side across (scatter sizes are areas in points^2).
    box = heat_ax.get_position()
    cell_w = box.width * FIGSIZE_IN[0] * 72 / len(flow.grid.ts_index)
    cell_h = box.height * FIGSIZE_IN[1] * 72 / max(len(flow.grid.coins), 1)
    size = (0.7 * min(cell_w, cell_h)) ** 2
    heat_ax.scatter(
        centres[cols],
        rows + 0.5,
        s=size,
        marker="o",
        facecolors="none",
        edgecolors=rings,
        linewidths=0.7,
        zorder=3,
    )


def _draw_top(
    top_ax: Axes, momentum_ax: Axes, flow: FlowImage, theme: Theme, *, cells_marked: bool
) -> list[str]:
    top = flow.top
    edges = edges_of(flow.grid.ts_index)
    centres = (edges[:-1] + edges[1:]) / 2
    buy_pct = 100 * top.buy_share
    # Bars from 50 %: up in the buyers' colour, down in the sellers' (the heatmap's own ends).
    stairs(
        top_ax,
        np.fmax(buy_pct, 50),
        edges,
        baseline=50,
        fill=True,
        color=theme.upper_zone_color,
        alpha=0.75,
        label="BTC buy % of volume",
    )
    stairs(
        top_ax,
        np.fmin(buy_pct, 50),
        edges,
        baseline=50,
        fill=True,
        color=theme.lower_zone_color,
        alpha=0.75,
        label="BTC sell side (buy % < 50)",
    )
    top_ax.axhline(50, color=theme.foreground, linewidth=0.8, alpha=0.6)
    _draw_extremes(top_ax, centres, buy_pct, top, theme)
    momentum_ax.plot(
        centres,
        100 * top.momentum,
        color=theme.btc_color,
        linewidth=1.6,
        label="BTC momentum (Hull MA of the change in buy %, right axis)",
    )
    swing = np.abs(100 * top.momentum)
    bound = float(np.nanmax(swing)) if np.isfinite(swing).any() else 0.0
    bound = bound or 1.0  # a flat or absent line still gets a scale around 0
    momentum_ax.set_ylim(-1.15 * bound, 1.15 * bound)  # 0 level with the 50 % line
    momentum_ax.set_ylabel("momentum (pp / candle)")
    top_ax.set_ylim(0, 100)
    top_ax.set_ylabel("BTC buy % of volume")
    top_ax.grid(True, color=theme.foreground, alpha=0.12, linewidth=0.6)
    if not np.isfinite(top.buy_share).any():
        top_ax.text(
            0.5,
            0.5,
            "no BTC candle flow in this range",
            ha="center",
            va="center",
            transform=top_ax.transAxes,
            color=theme.foreground,
            alpha=0.7,
        )
    return _legend(top_ax, momentum_ax, top, theme, cells_marked=cells_marked)


def _draw_extremes(
    top_ax: Axes, centres: np.ndarray, buy_pct: np.ndarray, top: FlowTop, theme: Theme
) -> None:
    if math.isnan(top.extreme_share):
        return
    edge = 100 * top.extreme_share
    for level in (edge, 100 - edge):
        top_ax.axhline(level, color=theme.foreground, linewidth=0.8, linestyle="--", alpha=0.5)
    top_ax.scatter(
        centres[top.buyers],
        np.minimum(buy_pct[top.buyers] + 4, 98),
        marker="^",
        s=22,
        color=theme.upper_zone_color,
        edgecolors=theme.foreground,
        linewidths=0.5,
        zorder=4,
    )
    top_ax.scatter(
        centres[top.sellers],
        np.maximum(buy_pct[top.sellers] - 4, 2),
        marker="v",
        s=22,
        color=theme.lower_zone_color,
        edgecolors=theme.foreground,
        linewidths=0.5,
        zorder=4,
    )


def _legend(
    top_ax: Axes, momentum_ax: Axes, top: FlowTop, theme: Theme, *, cells_marked: bool
) -> list[str]:
    handles: list[Line2D] = [
        Line2D([], [], color=theme.upper_zone_color, linewidth=6, label="BTC buy % above 50"),
        Line2D([], [], color=theme.lower_zone_color, linewidth=6, label="BTC buy % below 50"),
        *(h for h in momentum_ax.get_lines() if isinstance(h, Line2D)),
    ]
    edge = f"{100 * top.extreme_share:.0f} %"
    wanted = [
        (not math.isnan(top.extreme_share), "--", theme.foreground, f"extreme: one side >= {edge}"),
        (bool(top.buyers.any()), "^", theme.upper_zone_color, "extreme buying"),
        (bool(top.sellers.any()), "v", theme.lower_zone_color, "extreme selling"),
        (cells_marked, "o", theme.foreground, "grid: extreme candle"),
    ]
    for shown, mark, color, label in wanted:
        if not shown:
            continue
        if mark == "--":
            handles.append(Line2D([], [], color=color, linestyle="--", alpha=0.5, label=label))
        else:
            filled = "none" if mark == "o" else color
            handles.append(
                Line2D(
                    [],
                    [],
                    marker=mark,
                    linestyle="",
                    color=color,
                    markerfacecolor=filled,
                    label=label,
                )
            )
    return top_legend(top_ax, handles, theme)
