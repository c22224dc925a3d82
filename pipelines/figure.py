"""What every image shares: the page (size, colours, layout of a top panel over a coin x time
heatmap with its colour bar), the heatmap grid itself, the time axis, the "no data" and "before
history" marks, the SIMULATED watermark and the atomic PNG write.

The two kinds of image build on it: pipelines/render.py (long/short ratios) and
pipelines/render_flow.py (candle flow). Figures are `matplotlib.figure.Figure` on an Agg canvas,
never pyplot, so nothing global is touched and nothing leaks between renders.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Final, Literal, cast

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import png
from matplotlib import rcParams
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import GraphicsContextBase
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize, to_rgba
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch, StepPatch
from matplotlib.text import Text
from matplotlib.ticker import AutoLocator, ScalarFormatter
from matplotlib.transforms import Bbox

from pipelines.image_data import HeatmapGrid
from pipelines.themes import Theme

FIGSIZE_IN: Final = (16.0, 10.0)
DPI: Final = 120  # 1920 x 1200 px: sharp on a laptop screen, ~250-400 KB per file
# zlib level of the PNG files (rows unfiltered, see _write_png): 3 writes an image in 22 ms for
# ~300 KB; 6 takes 60 ms for ~205 KB, 1 saves nothing more. Same pixels either way.
PNG_COMPRESS_LEVEL: Final = 3
# Above this many buckets the heatmap columns are averaged in groups before drawing. The axes are
# ~1650 px wide, so each drawn column keeps >= ~2.5 px; drawing more columns would make matplotlib
# resample the image, which (with mixed up/down sampling) smears neighbouring coin rows together.
MAX_DRAWN_COLUMNS: Final = 640
SIMULATED_COLOR: Final = "#D55E00"  # Okabe-Ito vermillion: alarming on light and dark pages
COIN_LABEL_GID: Final = "coin-label"
WATERMARK_GID: Final = "simulated-watermark"
COIN_LABEL_PAD_PT: Final = 4.0  # between the grid's left edge and a coin's name

_Rect = tuple[float, float, float, float]


@dataclass
class RenderedFigure:
    """A built, unsaved figure and the parts tests and callers may want to inspect."""

    figure: Figure
    top_ax: Axes
    price_ax: Axes  # the top panel's right axis: BTC price (momentum in a candle-flow image)
    heat_ax: Axes
    colorbar: Colorbar
    grid: HeatmapGrid
    theme: Theme
    norm: Normalize
    title: str
    columns_per_cell: int = 1  # >1 when long ranges are averaged for drawing
    legend_labels: list[str] = field(default_factory=list)


@dataclass
class Page:
    """A figure and its four axes, styled for the theme; its colour bar once drawn."""

    figure: Figure
    top_ax: Axes
    right_ax: Axes  # twin of top_ax, drawn behind it
    heat_ax: Axes
    cax: Axes
    colorbar: Colorbar | None = None


def new_page(theme: Theme) -> Page:
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI, facecolor=theme.background)
    FigureCanvasAgg(fig)  # Agg explicitly, whatever backend the process configured
    top_rect, heat_rect, cbar_rect = layout()
    top_ax = fig.add_axes(top_rect)
    heat_ax = fig.add_axes(heat_rect, sharex=top_ax)
    cax = fig.add_axes(cbar_rect)
    right_ax = top_ax.twinx()
    # The panel's subject above its right-axis context.
    top_ax.set_zorder(right_ax.get_zorder() + 1)
    for ax in (top_ax, right_ax, heat_ax, cax):
        style_axes(ax, theme)
    top_ax.patch.set_visible(False)  # the right axes below now paints the background
    right_ax.patch.set_visible(True)
    return Page(fig, top_ax, right_ax, heat_ax, cax)


# This process's page per theme for L/S images, emptied and drawn on again by the next one: a
# new page (four axes) and the ~40 ticks its axes then create took a quarter of an image's
# drawing time.
_reusable_pages: dict[str, Page] = {}


def reused_page(theme: Theme) -> Page:
    """The theme's page of this process, emptied of the image it showed last. That image is
    gone once this returns: only for images written before the next is drawn (render_image)."""
    page = _reusable_pages.get(theme.name)
    if page is None:
        page = _reusable_pages[theme.name] = new_page(theme)
    else:
        _empty(page)
    return page


def _empty(page: Page) -> None:
    """Back to what new_page made, but for the colour bar (redrawn for the next image's colours
    by draw_heatmap) and the ticks the axes made so far (relabelled when drawn)."""
    for ax in (page.top_ax, page.right_ax, page.heat_ax):
        for artist in [*ax.lines, *ax.patches, *ax.texts, *ax.images, *ax.collections]:
            artist.remove()
        if (legend := ax.get_legend()) is not None:
            legend.remove()
        ax.relim()  # no data left: the next image's artists alone set the limits
        ax.set_autoscale_on(True)
        ax.set_xlabel("")
        ax.set_ylabel("")
    for axis in (page.top_ax.yaxis, page.right_ax.yaxis):  # what an image may have fixed
        axis.set_major_locator(AutoLocator())
        axis.set_major_formatter(ScalarFormatter())
    for legend in list(page.figure.legends):
        legend.remove()
    for text in list(page.figure.texts):
        if text.get_gid() == WATERMARK_GID:  # the title stays: suptitle rewrites it
            text.remove()


def finish_page(
    page: Page,
    theme: Theme,
    grid: HeatmapGrid,
    title: str,
    heatmap: tuple[Colorbar, Normalize, int],
    labels: list[str],
    *,
    simulated: bool,
    period: str,
) -> RenderedFigure:
    """The title, the averaging note, the no-data swatches and the watermark; the figure as
    callers and tests see it. `heatmap` is what draw_heatmap returned."""
    colorbar, norm, k = heatmap
    set_time_axis(page.heat_ax, page.top_ax)
    if k > 1:  # say so: a drawn column is then an average, not one bucket
        page.heat_ax.set_xlabel(f"time (UTC)  ·  each column averages {k} x {period} buckets")
    page.figure.suptitle(
        title,
        fontsize=14,
        fontweight="bold",
        color=SIMULATED_COLOR if simulated else theme.foreground,
    )
    no_data_note(
        page.figure,
        theme,
        (page.cax.get_position().x0 - 0.012, page.heat_ax.get_position().y0),
        before_history=grid.history_start is not None,
    )
    if simulated:
        watermark(page.figure)
    return RenderedFigure(
        page.figure,
        page.top_ax,
        page.right_ax,
        page.heat_ax,
        colorbar,
        grid,
        theme,
        norm,
        title,
        k,
        labels,
    )


def title_of(
    name: str, what: str, period: str, range_days: int, end: pd.Timestamp | None, simulated: bool
) -> str:
    """In words: `Binance · all accounts, by count · 1h · last 7 days · latest bucket ...`."""
    latest = f"latest bucket {end:%Y-%m-%d %H:%M} UTC" if end is not None else "no data"
    title = "  ·  ".join([name, what, period, f"last {range_days} days", latest])
    return f"SIMULATED DATA  ·  {title}" if simulated else title


def top_legend(top_ax: Axes, handles: Sequence[Artist], theme: Theme) -> list[str]:
    """The top panel's legend, above it; the labels it shows."""
    top_ax.legend(
        handles=list(handles),
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncols=4,
        frameon=False,
        fontsize=8.5,
        labelcolor=theme.foreground,
        borderaxespad=0.2,
    )
    return [str(h.get_label()) for h in handles]


def edges_of(index: pd.DatetimeIndex) -> np.ndarray:
    """Matplotlib date numbers of every bucket edge (len = buckets + 1), UTC."""
    step_days = (index[1] - index[0]) / pd.Timedelta(days=1) if len(index) > 1 else 1.0
    return mdates.date2num(index[0].to_pydatetime()) + step_days * np.arange(len(index) + 1)


def style_axes(ax: Axes, theme: Theme) -> None:
    """Page colours by hand rather than rcParams: rc_context is process-global state."""
    ax.set_facecolor(theme.background)
    ax.tick_params(which="both", colors=theme.foreground, labelcolor=theme.foreground)
    for spine in ax.spines.values():
        spine.set_color(theme.foreground)
        spine.set_alpha(0.5)
    for text in (ax.xaxis.label, ax.yaxis.label, ax.title, ax.xaxis.get_offset_text()):
        text.set_color(theme.foreground)


def drawn_values(values: np.ma.MaskedArray) -> tuple[np.ma.MaskedArray, int]:
    """Average groups of k neighbouring buckets when there are too many to draw one by one.

    Averaging ln(ratio) is the geometric mean of the ratios; a group with no data stays masked.
    """
    n_rows, n_cols = values.shape
    k = max(1, math.ceil(n_cols / MAX_DRAWN_COLUMNS))
    if k == 1:
        return values, 1
    padded = np.ma.masked_all((n_rows, math.ceil(n_cols / k) * k))
    padded[:, :n_cols] = values
    return padded.reshape(n_rows, -1, k).mean(axis=2), k


def draw_heatmap(
    page: Page, grid: HeatmapGrid, theme: Theme, vmax: float
) -> tuple[Colorbar, Normalize, int]:
    """The coin x bucket grid, coloured symmetrically around 0 (balanced) up to +-vmax, with its
    colour bar (ticks and label are the caller's: they depend on what the colour means)."""
    heat_ax = page.heat_ax
    edges = edges_of(grid.ts_index)
    norm = Normalize(-vmax, vmax)
    drawn, k = drawn_values(grid.values)
    step = edges[1] - edges[0]
    # Missing cells are transparent in the image; the axes behind them is hatched grey, so "no
    # data" can never be mistaken for the neutral centre colour (or any other value).
    cmap = theme.cmap.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    heat_ax.patch.set_facecolor(theme.no_data_color)
    heat_ax.patch.set_hatch("////")
    # A patch's hatch takes its edge colour; the axes' background has no edge line to show it.
    heat_ax.patch.set_edgecolor(theme.no_data_hatch_color)
    # Coloured cell by cell here, then scaled up as RGBA: given numbers, matplotlib would scale
    # them up first and colour each of the ~1.3 M pixels (41 vs 13 ms an image, same pixels).
    cells = cmap(norm(drawn), bytes=True)
    # Rows of coins the exchange does not list are blank, not the hatched "no data": nothing to
    # miss. Painted both into the image and as a span over the row: the two place a row's edge
    # pixels differently, and each alone left the hatch showing through as a dashed line where
    # the row met a neighbouring one mid-pixel (without the span: the not-listed test; without
    # the painting: the demo's okx 4h image, under SUI).
    blank = [row for row, coin in enumerate(grid.coins) if coin in grid.not_listed]
    cells[blank] = np.round(np.array(to_rgba(theme.background)) * 255).astype(np.uint8)
    heat_ax.imshow(
        cells,
        aspect="auto",
        interpolation="nearest",  # real cell edges; long ranges were averaged, not resampled
        origin="upper",
        extent=(edges[0], edges[0] + step * k * drawn.shape[1], len(grid.coins), 0),
    )
    heat_ax.set_xlim(edges[0], edges[-1])
    for row in blank:
        heat_ax.axhspan(row, row + 1, facecolor=theme.background, linewidth=0, zorder=0.5)
    label_coins(heat_ax, grid.coins, grid.not_listed, theme)
    colours = ScalarMappable(norm, cmap)  # what the bar shows: the image holds colours only
    if page.colorbar is not None:  # a reused page: the bar shows the new image's colours
        page.colorbar.update_normal(colours)
        return page.colorbar, norm, k
    colorbar = page.colorbar = page.figure.colorbar(colours, cax=page.cax, extend="both")
    colorbar.ax.yaxis.label.set_color(theme.foreground)
    colorbar.ax.tick_params(colors=theme.foreground, labelcolor=theme.foreground)
    # matplotlib 3.10's stubs type the outline as the Spines mapping; it is one Spine (a Patch).
    cast(Patch, colorbar.outline).set_edgecolor(theme.foreground)
    return colorbar, norm, k


def label_coins(heat_ax: Axes, coins: list[str], not_listed: frozenset[str], theme: Theme) -> None:
    """Each labelled row's coin left of the grid, as a plain text where a tick label would be:
    a tick is five artists to build, and fifty of them took a quarter of an image's drawing
    time (0.13 s of 0.5 s); the texts alone cost next to nothing."""
    n = len(coins)
    every = max(1, math.ceil(n / 110))  # beyond ~110 rows labels would overlap: label every k-th
    size = float(np.clip(420 / max(n, 1) * 0.75, 4.5, 9))
    heat_ax.set_yticks([])
    place, va, ha = heat_ax.get_yaxis_text1_transform(COIN_LABEL_PAD_PT)
    names = []
    for row in range(0, n, every):
        coin = coins[row]
        listed = coin not in not_listed
        names.append(
            heat_ax.text(
                0,
                row + 0.5,
                coin if listed else f"{coin} (not listed)",
                transform=place,
                va=va,
                ha=ha,
                fontsize=size,
                fontstyle="normal" if listed else "italic",
                fontweight="bold" if row == 0 and coin == "BTC" else "normal",
                color=theme.foreground,
                alpha=None if listed else 0.6,
                gid=COIN_LABEL_GID,
            )
        )
    if coins and coins[0] == "BTC":
        heat_ax.axhline(1, color=theme.foreground, linewidth=0.9)  # BTC apart from the alts
    # The axis label left of the widest name, as matplotlib places one beside tick labels.
    heat_ax.annotate(
        "coin",
        xy=(0, 0.5),
        xycoords=lambda renderer: Bbox.union(
            [heat_ax.get_window_extent(renderer)] + [t.get_window_extent(renderer) for t in names]
        ),
        xytext=(-COIN_LABEL_PAD_PT, 0),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="center",
        fontsize=rcParams["axes.labelsize"],
        color=theme.foreground,
    )


def coin_labels(heat_ax: Axes) -> list[str]:
    """The coin names written beside the heatmap's rows, top to bottom."""
    return [t.get_text() for t in heat_ax.texts if t.get_gid() == COIN_LABEL_GID]


def no_data_note(
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


def mark_history_start(
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


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in `mask`, found with numpy rather than a loop."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b - a)) for a, b in zip(change[::2], change[1::2], strict=True)]


def shade(
    ax: Axes,
    edges: np.ndarray,
    mask: np.ndarray,
    color: str,
    alpha: float,
    band: tuple[float, float] = (0.0, 1.0),
) -> None:
    """Colour the buckets where `mask` holds, over `band` (bottom, height) of the axes' height."""
    step = edges[1] - edges[0]
    spans = [(edges[a], n * step) for a, n in runs(mask)]
    if spans:
        ax.broken_barh(
            spans,
            band,
            transform=ax.get_xaxis_transform(),
            facecolor=color,
            alpha=alpha,
            linewidth=0,
            zorder=0,
        )


def stairs(
    ax: Axes,
    values: np.ndarray,
    edges: np.ndarray,
    *,
    color: str,
    fill: bool = False,
    baseline: float = 0.0,
    **style: Any,
) -> StepPatch:
    """`Axes.stairs` (vertical, one colour) at a tenth of its cost: matplotlib finds a patch's
    extent by solving each of its segments as a Bezier curve (18 ms for one series of a year),
    while the extent of straight steps is that of their corners."""
    colours = {"facecolor": color, "linewidth": 0} if fill else {"edgecolor": color}
    patch = StepPatch(values, edges, baseline=baseline, fill=fill, **(colours | style))
    ax.add_artist(patch)  # as add_patch does, but for the extent
    ax.update_datalim(patch.get_path().vertices)
    cast(list[float], patch.sticky_edges.y).append(baseline)  # a list; 3.10's stubs say ArrayLike
    ax.update_datalim([(edges[0], baseline)])
    ax.autoscale_view()
    return patch


class _NamedMonthDates(mdates.ConciseDateFormatter):
    """Concise dates whose first tick also names its month: plain day numbers ("25 ... 30, Dec")
    would leave the month a window starts in unnamed."""

    def format_ticks(self, values: list[float]) -> list[str]:
        labels = list(super().format_ticks(values))
        if labels and labels[0].isdigit():  # a day of the month, the month unsaid
            first = mdates.num2date(values[0], tz=UTC)
            labels[0] = f"{first:%b} {labels[0]}"
        return labels


class _DateTicks(mdates.AutoDateLocator):
    """Automatic date ticks, worked out once per view: matplotlib asks a dozen times an image
    (both panels share the ticks; drawing and placing the axis labels each ask again), and each
    answer runs dateutil's rrule anew (9 ms an image in all)."""

    def __init__(self) -> None:
        super().__init__(tz=UTC, minticks=5, maxticks=12)
        self._answered: tuple[tuple[float, ...], Sequence[float]] | None = None

    def __call__(self) -> Sequence[float]:
        view = tuple(self.axis.get_view_interval()) if self.axis else ()
        if self._answered is None or self._answered[0] != view:
            self._answered = (view, super().__call__())
        return self._answered[1]


def set_time_axis(heat_ax: Axes, top_ax: Axes) -> None:
    locator = _DateTicks()
    heat_ax.xaxis.set_major_locator(locator)
    heat_ax.xaxis.set_major_formatter(_NamedMonthDates(locator, tz=UTC))
    heat_ax.set_xlabel("time (UTC)")
    top_ax.tick_params(axis="x", labelbottom=False)


def watermark(fig: Figure) -> None:
    fig.text(
        0.5,
        0.45,
        "SIMULATED",
        ha="center",
        va="center",
        rotation=22,
        fontsize=120,
        fontweight="bold",
        color=SIMULATED_COLOR,
        alpha=0.13,
        zorder=100,
        gid=WATERMARK_GID,
    )


def layout() -> tuple[_Rect, _Rect, _Rect]:
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


def save_png(rendered: RenderedFigure, out: Path) -> tuple[int, int]:
    """Write the PNG atomically (temp file + rename): readers never see half an image."""
    figure = rendered.figure
    canvas = figure.canvas
    saving = _SavingCanvas(figure)  # draws into this process's page buffer while saving
    try:
        saving.draw()
        pixels = np.asarray(saving.buffer_rgba())
        _write_png(pixels, rendered.title, out)
    finally:
        figure.set_canvas(canvas)
    height, width = pixels.shape[:2]
    return width, height


def _write_png(rgba: np.ndarray, title: str, out: Path) -> None:
    """Rows unfiltered: Pillow (what savefig uses) tries five filters on every row and keeps
    the best, which took most of its 66 ms an image; pypng writes the rows as they are in 22 ms,
    for files ~15 % larger at the same zlib level."""
    height, width, _ = rgba.shape
    encoded = io.BytesIO()
    writer = png.Writer(
        width,
        height,
        greyscale=False,
        alpha=True,
        compression=PNG_COMPRESS_LEVEL,
        x_pixels_per_unit=_PIXELS_PER_METRE,  # the DPI, for printing at the intended size
        y_pixels_per_unit=_PIXELS_PER_METRE,
        unit_is_meter=True,
    )
    writer.write(encoded, rgba.reshape(height, width * 4))
    # pypng writes no text chunks: the title goes in after the header, as a chunk of its own.
    chunks = list(png.Reader(bytes=encoded.getvalue()).chunks())
    chunks[1:1] = [_text_chunk("Title", title), _text_chunk("Software", _SOFTWARE)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as file:
            png.write_chunks(file, chunks)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


_PIXELS_PER_METRE: Final = round(DPI / 0.0254)
_SOFTWARE: Final = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"


def _text_chunk(keyword: str, text: str) -> tuple[bytes, bytes]:
    # tEXt is Latin-1 by definition: a character it lacks becomes "?" rather than failing a save.
    return b"tEXt", keyword.encode("latin-1") + b"\0" + text.encode("latin-1", "replace")


class _PageRenderer(RendererAgg):
    """Agg that keeps each text's rasterised glyphs. The images share most of their texts (coin
    names, dates, legend entries: nine draws in ten repeat one already made), and FreeType laying
    them out and rasterising them again was a tenth of an image. What it draws is what
    RendererAgg.draw_text draws (matplotlib 3.10), from the kept bitmap."""

    _MAX_KEPT: Final = 4096  # texts; a few kB each

    def __init__(self, width: float, height: float, dpi: float) -> None:
        super().__init__(width, height, dpi)
        self._glyphs: dict[
            tuple[str, FontProperties, bool], tuple[np.ndarray, float, float, float]
        ] = {}

    def draw_text(
        self,
        gc: GraphicsContextBase,
        x: float,
        y: float,
        s: str,
        prop: FontProperties,
        angle: float,
        ismath: bool | Literal["TeX"] = False,
        mtext: Text | None = None,
    ) -> None:
        if ismath:
            super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            return
        bitmap, xo, yo, descent = self._rasterised(s, prop, bool(gc.get_antialiased()))
        # As matplotlib: the glyphs are drawn unrotated, then turned with the descent.
        xd = descent * math.sin(math.radians(angle))
        yd = descent * math.cos(math.radians(angle))
        self._renderer.draw_text_image(
            bitmap, round(x + xo + xd), round(y + yo + yd) + 1, angle, gc
        )

    def _rasterised(
        self, s: str, prop: FontProperties, antialiased: bool
    ) -> tuple[np.ndarray, float, float, float]:
        key = (s, prop.copy(), antialiased)  # a copy: a text may change its own properties later
        if (kept := self._glyphs.get(key)) is None:
            font = self._prepare_font(prop)
            font.set_text(s, 0, flags=get_hinting_flag())
            font.draw_glyphs_to_bitmap(antialiased=antialiased)
            xo, yo = font.get_bitmap_offset()
            kept = (np.array(font.get_image()), xo / 64, yo / 64, font.get_descent() / 64)
            if len(self._glyphs) >= self._MAX_KEPT:
                self._glyphs.clear()
            self._glyphs[key] = kept
        return kept


_page_buffers: dict[tuple[float, float, float], RendererAgg] = {}  # by width, height and dpi


class _SavingCanvas(FigureCanvasAgg):
    """Agg drawing into one pixel buffer per process and page size, used while saving only (the
    PNG is written before the next image draws over it). A new buffer per image would cost its
    allocation, and every text measured again: matplotlib keeps text sizes per buffer, and the
    images share most of their texts (coin names, dates, legends). 5 % of the time of an image."""

    def get_renderer(self) -> RendererAgg:
        width, height = self.figure.bbox.size
        key = (width, height, self.figure.dpi)
        if key not in _page_buffers:
            _page_buffers[key] = _PageRenderer(width, height, self.figure.dpi)
        return _page_buffers[key]
