"""Whale-vs-crowd PNGs: which coins' top traders (by position size) lean against all accounts
now, and since when, above a coin x time grid of the whale_crowd patterns (README, "The
images").

The numbers are `divergence` (scope whale_crowd) and `whale_crowd_now`, read by
`pipelines.image_data.read_whales`; the page is pipelines/figure.py's.
"""

from __future__ import annotations

import math
from typing import Final

from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar

from pipelines.config import EXCHANGE_NAMES
from pipelines.figure import (
    RenderedFigure,
    draw_heatmap,
    finish_page,
    mark_history_start,
    new_page,
    title_of,
)
from pipelines.image_data import WHALE_AGREE, LeaningNow, RenderRequest, WhaleImage
from pipelines.themes import Theme, get_theme

_LIST_ROWS: Final = 8  # per column of the "now" list
_LIST_COLUMNS: Final = 2


def draw_whale_figure(request: RenderRequest, whales: WhaleImage) -> RenderedFigure:
    """Draw one whale-vs-crowd image from what `read_whales` read, without saving it."""
    theme = get_theme(request.theme)
    grid = whales.grid
    page = new_page(theme)
    heatmap = draw_heatmap(page, grid, theme, 1.0)
    _style_colorbar(heatmap[0])
    page.right_ax.set_axis_off()
    labels = _draw_list(page.top_ax, whales, request, theme)
    owner = EXCHANGE_NAMES.get(request.exchange, request.exchange)
    mark_history_start(page.heat_ax, page.top_ax, grid, owner, theme)
    title = _title(request, whales)
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


def _title(request: RenderRequest, whales: WhaleImage) -> str:
    name = EXCHANGE_NAMES.get(request.exchange, request.exchange)
    what = "whales vs crowd (top positions vs all accounts)"
    end = whales.grid.data_end
    return title_of(name, what, request.period, request.range_days, end, request.simulated)


def _style_colorbar(colorbar: Colorbar) -> None:
    ticks = [-1.0, -WHALE_AGREE, 0.0, WHALE_AGREE, 1.0]
    words = [
        "whales short,\ncrowd long",
        "both short",
        "neither at\nan extreme",
        "both long",
        "whales long,\ncrowd short",
    ]
    colorbar.set_ticks(ticks, labels=words)
    colorbar.ax.tick_params(labelsize=8)
    colorbar.set_label("each side against its own history (z-score)")


def _draw_list(top_ax: Axes, whales: WhaleImage, request: RenderRequest, theme: Theme) -> list[str]:
    """The coins whose whales lean against their crowd in the latest bucket, longest run first,
    in columns: the panel is a list, not a chart."""
    for side in ("left", "right", "bottom", "top"):
        top_ax.spines[side].set_visible(False)
    top_ax.tick_params(left=False, labelleft=False, bottom=False, labelbottom=False)
    top_ax.grid(False)
    now = whales.latest or whales.grid.data_end
    edge = "" if math.isnan(whales.threshold) else f" (|z| > {whales.threshold:g})"
    heading = (
        f"Whales leaning against their crowd now{edge}, at {now:%Y-%m-%d %H:%M} UTC"
        if now is not None
        else "Whales leaning against their crowd now: no data"
    )
    top_ax.text(0.0, 0.97, heading, transform=top_ax.transAxes, ha="left", va="top",
                fontsize=11, fontweight="bold", color=theme.foreground)  # fmt: skip
    if not whales.now:
        top_ax.text(0.0, 0.75, "none: in every coin the whales and the crowd agree or are calm",
                    transform=top_ax.transAxes, ha="left", va="top", fontsize=10,
                    color=theme.foreground)  # fmt: skip
        return [heading]
    shown = whales.now[: _LIST_ROWS * _LIST_COLUMNS]
    lines = [_line(row, request.period) for row in shown]
    for i, (row, line) in enumerate(zip(shown, lines, strict=True)):
        column, place = divmod(i, _LIST_ROWS)
        top_ax.text(
            column / _LIST_COLUMNS,
            0.8 - place * 0.1,
            line,
            transform=top_ax.transAxes,
            ha="left",
            va="top",
            fontsize=9,
            family="monospace",
            color=theme.upper_zone_color if row.whales_long else theme.lower_zone_color,
        )
    left_out = len(whales.now) - len(shown)
    if left_out:
        top_ax.text(1.0, 0.0, f"... and {left_out} more (whale_crowd_now)",
                    transform=top_ax.transAxes, ha="right", va="bottom", fontsize=9,
                    color=theme.foreground)  # fmt: skip
    return [heading, *lines]


def _line(row: LeaningNow, period: str) -> str:
    side = "whales long, crowd short" if row.whales_long else "whales short, crowd long"
    return (
        f"{row.coin:<6} {side}  since {row.since:%b %d %H:%M} ({row.buckets} x {period})"
        f"  z: whales {row.whale_zscore:+.1f}, crowd {row.crowd_zscore:+.1f}"
    )
