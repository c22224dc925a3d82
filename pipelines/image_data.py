"""What an image shows, read from the warehouse: the request, the two kinds of image (one
exchange, or all of them), the window, the coin x time grid and the lines above it. Numbers
only: drawing them is pipelines/render.py's job.

Each panel reads one SQL model of warehouse/sql (`heatmap_matrix` or `cross_exchange` below,
`btc_ls` and `alt_average` or `cross_lines` above, `signal_zones` for shading); which one, and
under which column names, is said once per kind of image in an `ImageView`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

import numpy as np
import pandas as pd

from pipelines.config import CROSS, FLOW, WHALES
from pipelines.queries import one_row, table_names
from pipelines.themes import DEFAULT_THEME, get_theme

if TYPE_CHECKING:
    import duckdb

PERIODS: Final = ("5m", "1h", "4h", "1d")
# Where the cross view takes its BTC price from when that exchange has it (any other otherwise).
CROSS_PRICE_EXCHANGE: Final = "binance"
COLOR_BY: Final = ("ln_ratio", "zscore")
MIN_RANGE_DAYS: Final = 7
MAX_RANGE_DAYS: Final = 365
PERIOD_DELTA: Final = {
    "5m": pd.Timedelta(minutes=5),
    "1h": pd.Timedelta(hours=1),
    "4h": pd.Timedelta(hours=4),
    "1d": pd.Timedelta(days=1),
}

_PATH_PART: Final = re.compile(r"[a-z0-9_-]{1,64}")


class NoDataError(ValueError):
    """The warehouse holds nothing to draw for the requested selection."""


@dataclass(frozen=True)
class RenderRequest:
    """One image to draw. Invalid values fail here, before any query runs."""

    exchange: str
    metric: str
    period: str
    range_days: int  # 7..365
    theme: str = DEFAULT_THEME
    color_by: str = "ln_ratio"  # or "zscore"
    simulated: bool = False
    end: datetime | None = None  # last bucket to show; default: newest bucket in heatmap_matrix

    def __post_init__(self) -> None:
        if isinstance(self.range_days, bool) or not isinstance(self.range_days, int):
            raise ValueError(f"range_days must be a whole number of days, got {self.range_days!r}")
        if not MIN_RANGE_DAYS <= self.range_days <= MAX_RANGE_DAYS:
            raise ValueError(
                f"range_days must be between {MIN_RANGE_DAYS} and {MAX_RANGE_DAYS}, "
                f"got {self.range_days}"
            )
        if self.period not in PERIODS:
            raise ValueError(f"unknown period {self.period!r}; expected one of {list(PERIODS)}")
        if self.color_by not in COLOR_BY:
            raise ValueError(
                f"unknown color_by {self.color_by!r}; expected one of {list(COLOR_BY)}"
            )
        if self.metric == FLOW and self.color_by != "ln_ratio":
            raise ValueError("a candle-flow image is coloured by the buy share only, not a z-score")
        if self.metric == WHALES and self.color_by != "ln_ratio":
            raise ValueError(
                "a whale-vs-crowd image is coloured by the pattern only, not a z-score"
            )
        if self.metric in (FLOW, WHALES) and self.exchange == CROSS:
            raise ValueError(f"{self.metric} is drawn per exchange; there is no cross-exchange one")
        get_theme(self.theme)  # UnknownThemeError (a ValueError) with close matches

    @property
    def range_label(self) -> str:
        return f"{self.range_days}d"


class HeatmapGrid(NamedTuple):
    """The heatmap exactly as drawn (before any display-only column averaging)."""

    coins: list[str]  # row order: BTC first, then alphabetical
    ts_index: pd.DatetimeIndex  # bucket starts, naive UTC, one per column, no gaps
    values: np.ma.MaskedArray  # (coins, buckets) of ln_ratio or zscore; masked = no data
    data_end: pd.Timestamp | None  # newest bucket in the window with any ratio (naive UTC)
    # The series' first bucket in the warehouse when it falls inside the window (naive UTC): the
    # columns before it are "before the history starts", not missing data.
    history_start: pd.Timestamp | None = None
    # Universe coins the exchange does not list (coverage): rows kept, marked, never "no data".
    not_listed: frozenset[str] = frozenset()


# --------------------------------------------------------------------------------------- paths


def image_path(images_root: Path, exchange: str, metric: str, period: str, range_days: int) -> Path:
    """`<images_root>/<exchange>/<metric>/<period>_<range>d.png`, provably inside `images_root`.

    Each component must be plain `[a-z0-9_-]` (no separators, dots, drive letters or absolute
    paths), and the resolved result (symlinks followed) must still lie under the resolved root.
    """
    for label, part in (("exchange", exchange), ("metric", metric), ("period", period)):
        if not isinstance(part, str) or not _PATH_PART.fullmatch(part):
            raise ValueError(
                f"{label} {part!r} is not a safe path component (allowed: a-z 0-9 _ -)"
            )
    if isinstance(range_days, bool) or not isinstance(range_days, int):
        raise ValueError(f"range_days must be an integer, got {range_days!r}")
    if not MIN_RANGE_DAYS <= range_days <= MAX_RANGE_DAYS:
        raise ValueError(f"range_days must be between {MIN_RANGE_DAYS} and {MAX_RANGE_DAYS}")
    root = Path(images_root).resolve()
    candidate = (root / exchange / metric / f"{period}_{range_days}d.png").resolve()
    if not candidate.is_relative_to(root):
        raise ValueError(f"image path {candidate} escapes the images folder {root}")
    return candidate


# ----------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class ImageView:
    """What one kind of image shows: the tables (SQL models in warehouse/sql) each panel reads,
    the columns that hold its numbers, and the words it uses. The per-exchange image and the
    cross-exchange one differ only here; the queries and the drawing are the same for both."""

    keys: tuple[str, ...]  # the request fields that select the rows of every table read
    row_filter: str  # more of the WHERE for every table read ("" or " AND ..."), a constant
    heat_table: str
    heat_ratio: str  # NULL here means "no ratio" in that cell
    heat_ln_ratio: str  # the colour, 0 = balanced: ln(ratio), or the buy share - 1/2
    heat_zscore: str
    btc_table: str  # the BTC line: a `btc_ratio` column per bucket
    btc_ratio: str
    alt_table: str  # the altcoin line: `alt_mean_ratio` and `n_coins` per bucket
    zones_table: str | None  # shading of historical extremes, where computed
    regimes_table: str | None  # BTC-vs-altcoin regimes (divergence), where computed
    exchanges_column: str | None  # of alt_table: how many exchanges a bucket combines
    lists_coins: bool  # coverage says which universe coins the selection does not list
    own_price: bool  # BTC price of the image's own exchange; else of one chosen exchange
    weighting: str  # how the lines combine exchanges, said in their labels ("" for one)
    title: str | None  # the title's name for the selection; None: the exchange's
    history_owner: str | None  # "before <owner>'s history"; None: the exchange


EXCHANGE_VIEW: Final = ImageView(
    keys=("exchange", "metric", "period"),
    row_filter="",
    heat_table="heatmap_matrix",
    heat_ratio="ratio",
    heat_ln_ratio="ln_ratio",
    heat_zscore="zscore",
    btc_table="btc_ls",
    btc_ratio="ratio",
    alt_table="alt_average",
    zones_table="signal_zones",
    regimes_table="divergence",
    exchanges_column=None,  # one exchange
    lists_coins=True,
    own_price=True,
    weighting="",
    title=None,
    history_owner=None,
)
# Cross view: ratio = exp(oi_weighted_ln_ratio), so "has a ratio" = the OI-weighted mean exists.
CROSS_VIEW: Final = ImageView(
    keys=("metric", "period"),  # cross_exchange and cross_lines have no exchange column
    row_filter="",
    heat_table="cross_exchange",
    heat_ratio="oi_weighted_ln_ratio",
    heat_ln_ratio="oi_weighted_ln_ratio",
    heat_zscore="mean_zscore",
    btc_table="cross_lines",
    btc_ratio="btc_ratio",
    alt_table="cross_lines",
    zones_table=None,  # none computed across exchanges
    regimes_table=None,
    exchanges_column="n_exchanges",
    lists_coins=False,  # a coin counts there if any exchange lists it
    own_price=False,
    weighting="OI-weighted across exchanges",
    title="all exchanges (OI-weighted)",
    history_owner="the cross-exchange view",
)


# Candle flow: the grid is each coin's buy share around 1/2; the panel above is drawn from the
# same table (pipelines/render_flow.py), so the line fields name it too.
FLOW_VIEW: Final = ImageView(
    keys=("exchange", "period"),  # one flow per candle, whatever the L/S kind
    row_filter="",
    heat_table="candle_flow",
    heat_ratio="buy_share",
    heat_ln_ratio="buy_share - 0.5",
    heat_zscore="CAST(NULL AS DOUBLE)",
    btc_table="candle_flow",
    btc_ratio="buy_share",
    alt_table="candle_flow",
    zones_table=None,
    regimes_table=None,
    exchanges_column=None,
    lists_coins=False,  # coverage is about L/S kinds; a coin without candles has no flow row
    own_price=True,
    weighting="",
    title=None,
    history_owner=None,
)


# Whale vs crowd: the grid is each coin's whale_crowd pattern (divergence) as a number, +1 when
# the whales are long and the crowd short, -1 the reverse, +-WHALE_AGREE when both sit at the
# same extreme, 0 when neither; the list above reads whale_crowd_now.
WHALE_AGREE: Final = 0.35
WHALE_VIEW: Final = ImageView(
    keys=("exchange", "period"),
    row_filter=" AND scope = 'whale_crowd'",
    heat_table="divergence",
    heat_ratio="CASE WHEN whale_side IS NOT NULL AND crowd_side IS NOT NULL THEN 1 END",
    heat_ln_ratio=(
        "CASE WHEN whale_side IS NULL OR crowd_side IS NULL THEN NULL "
        "WHEN pattern = 'whales_long_crowd_short' THEN 1.0 "
        "WHEN pattern = 'whales_short_crowd_long' THEN -1.0 "
        f"WHEN pattern = 'whales_and_crowd_long' THEN {WHALE_AGREE} "
        f"WHEN pattern = 'whales_and_crowd_short' THEN -{WHALE_AGREE} ELSE 0.0 END"
    ),
    heat_zscore="CAST(NULL AS DOUBLE)",
    btc_table="whale_crowd_now",
    btc_ratio="whale_ratio",
    alt_table="whale_crowd_now",
    zones_table=None,
    regimes_table=None,
    exchanges_column=None,
    lists_coins=False,
    own_price=True,
    weighting="",
    title=None,
    history_owner=None,
)


# Every table an image may read: the views' panels and the price line.
TABLES_READ: Final = frozenset(
    table
    for view in (EXCHANGE_VIEW, CROSS_VIEW, FLOW_VIEW, WHALE_VIEW)
    for table in (
        view.heat_table,
        view.btc_table,
        view.alt_table,
        view.zones_table,
        view.regimes_table,
        "btc_price",
    )
    if table
) | {"coverage"}  # which coins an exchange does not list


def view_of(request: RenderRequest) -> ImageView:
    if request.metric == FLOW:
        return FLOW_VIEW
    if request.metric == WHALES:
        return WHALE_VIEW
    return CROSS_VIEW if request.exchange == CROSS else EXCHANGE_VIEW


# ---------------------------------------------------------------------------------------- data


def _selection(view: ImageView, request: RenderRequest) -> tuple[str, list[object]]:
    """`WHERE` on the view's keys and filter (constants of this module) and the request's values."""
    where = " AND ".join(f"{key} = ?" for key in view.keys)
    return f"WHERE {where}{view.row_filter}", [getattr(request, key) for key in view.keys]


def _describe(request: RenderRequest) -> str:
    return f"exchange={request.exchange} metric={request.metric} period={request.period}"


@dataclass(frozen=True)
class _Query:
    """One image's rows: its view's selection of the request, inside the window `index`."""

    request: RenderRequest
    view: ImageView
    index: pd.DatetimeIndex  # every bucket start drawn
    first: pd.Timestamp | None  # the series' first bucket in the heat table (naive UTC)
    tables: frozenset[str]  # the tables the warehouse has, asked once per image

    @property
    def selection(self) -> tuple[str, list[object]]:
        return _selection(self.view, self.request)

    @property
    def in_window(self) -> tuple[str, list[object]]:
        """The selection plus the window's first and last bucket start."""
        where, params = self.selection
        first, last = self.index[0].to_pydatetime(), self.index[-1].to_pydatetime()
        return f"{where} AND ts BETWEEN ? AND ?", [*params, first, last]


def _to_naive_utc(value: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def _window(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> _Query:
    """Every bucket start of the requested range, ending at the requested (or newest) bucket."""
    view = view_of(request)
    table = view.heat_table
    tables = table_names(conn)
    if table not in tables:
        raise NoDataError(
            f"no table {table} in the warehouse; nothing to render for {_describe(request)}"
        )
    step = PERIOD_DELTA[request.period]
    where, params = _selection(view, request)
    first, newest = one_row(conn, f"SELECT min(ts), max(ts) FROM {table} {where}", params)
    if request.end is None:
        if newest is None:
            raise NoDataError(f"no heatmap data for {_describe(request)}")
        end = _to_naive_utc(newest).floor(step)
    else:
        end = _to_naive_utc(request.end).floor(step)
    n_buckets = int(pd.Timedelta(days=request.range_days) / step)
    index = pd.date_range(end=end, periods=n_buckets, freq=step)
    start = _to_naive_utc(first) if first is not None else None
    return _Query(request, view, index, start, tables)


def _fetch_columns(
    conn: duckdb.DuckDBPyConnection,
    query: _Query,
    table: str,
    select: str,
    select_params: tuple[object, ...] = (),
    extra_where: str = "",
    selection: tuple[str, list[object]] | None = None,
    extra_params: tuple[object, ...] = (),
) -> dict[str, np.ndarray]:
    """Rows of `table` in the window as numpy arrays, with `col_no` = bucket column number.

    DuckDB computes the column number (and any row number in `select`) so that only numbers cross
    into Python: turning 400k timestamps and coin names into Python objects would cost more than
    drawing the image. `table`, `select` and `extra_where` are constants of this module (or of
    an ImageView); every value goes in as a parameter (`extra_params`: those of `extra_where`).
    `selection` replaces the view's own (`WHERE ...` and its values) for a table keyed otherwise.
    """
    start_ms = int(query.index[0].value // 1_000_000)  # naive UTC ns -> epoch ms
    step_ms = int(PERIOD_DELTA[query.request.period].value // 1_000_000)
    where, where_params = selection or query.in_window
    sql = f"SELECT (epoch_ms(ts) - ?) // ? AS col_no, {select} FROM {table} {where}{extra_where}"
    params = [start_ms, step_ms, *select_params, *where_params, *extra_params]
    raw = conn.execute(sql, params).fetchnumpy()
    # Masked arrays (columns with NULLs) are ndarrays too and keep their mask.
    return {name: column for name, column in raw.items() if isinstance(column, np.ndarray)}


def _floats(values: np.ndarray) -> np.ndarray:
    """A numeric column with SQL NULLs (numpy masked values) as float NaN."""
    return np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)


def _order_coins(coins: list[str]) -> list[str]:
    # BTC first (the panel above is about it), then alphabetical: a coin keeps the same place in
    # every image whatever its coverage, so readers find it quickly across venues and dates.
    rest = sorted(c for c in set(coins) if c != "BTC")
    return (["BTC"] if "BTC" in coins else []) + rest


def heatmap_grid(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> HeatmapGrid:
    """The coin x bucket matrix the bottom panel draws; absent rows and NULLs are masked."""
    return _grid(conn, _window(conn, request))


def _grid(conn: duckdb.DuckDBPyConnection, query: _Query) -> HeatmapGrid:
    view, request, index = query.view, query.request, query.index
    where, params = query.in_window
    found = conn.execute(f"SELECT DISTINCT coin FROM {view.heat_table} {where}", params).fetchall()
    if not found:
        raise NoDataError(
            f"no heatmap data for {_describe(request)} in the {request.range_days} days "
            f"up to {index[-1]:%Y-%m-%d %H:%M} UTC"
        )
    listed = {str(row[0]) for row in found}
    not_listed = _not_listed(conn, query) - listed
    coins = _order_coins([*listed, *not_listed])
    data = _fetch_columns(
        conn,
        query,
        view.heat_table,
        f"list_position(?, coin) - 1 AS row_no, {view.heat_ratio} IS NOT NULL AS has_ratio, "
        f"{view.heat_ln_ratio} AS ln_ratio, {view.heat_zscore} AS zscore",
        select_params=(coins,),
    )
    values = np.full((len(coins), len(index)), np.nan)
    cols = data["col_no"]
    values[data["row_no"], cols] = _floats(data[request.color_by])
    has_ratio = np.ma.filled(data["has_ratio"], False).astype(bool)
    data_end = index[int(cols[has_ratio].max())] if has_ratio.any() else None
    history_start = _history_start(query)
    return HeatmapGrid(
        coins, index, np.ma.masked_invalid(values), data_end, history_start, frozenset(not_listed)
    )


def _not_listed(conn: duckdb.DuckDBPyConnection, query: _Query) -> set[str]:
    """Universe coins the exchange does not list for this kind and period, from `coverage`: a
    reader should see them named, not wonder where they went."""
    if not query.view.lists_coins or "coverage" not in query.tables:
        return set()
    where, params = query.selection
    rows = conn.execute(f"SELECT DISTINCT coin FROM coverage {where} AND NOT listed", params)
    return {str(coin) for (coin,) in rows.fetchall()}


def _history_start(query: _Query) -> pd.Timestamp | None:
    """The first bucket of the whole series (any coin) when the window starts before it."""
    first = query.first
    return first if first is not None and first > query.index[0] else None


@dataclass(frozen=True)
class SeriesZones:
    """One series' (BTC's or the altcoin average's) signal zones per bucket, from signal_zones."""

    zone: np.ndarray  # int8: +1 upper zone, -1 lower zone, 0 neither
    lower_band: np.ndarray  # the thresholds, in ratio terms (NaN before enough history)
    upper_band: np.ndarray

    @staticmethod
    def empty(n: int) -> SeriesZones:
        return SeriesZones(np.zeros(n, np.int8), np.full(n, np.nan), np.full(n, np.nan))


# divergence.pattern of scope btc_vs_alts -> the code TopData.regimes holds (0: none).
REGIMES: Final = {"btc_long_alts_short": 1, "btc_short_alts_long": 2, "zscore_divergence": 3}


@dataclass(frozen=True)
class TopData:
    btc_ratio: np.ndarray
    price: np.ndarray
    alt_ratio: np.ndarray
    alt_coins: float  # typical number of coins in the alt average (NaN if unknown)
    btc_zones: SeriesZones
    alt_zones: SeriesZones
    market_wide: np.ndarray  # bool per bucket: both in the same zone
    regimes: np.ndarray  # int8 per bucket: REGIMES code of BTC vs the alts (0: none)
    n_exchanges: np.ndarray | None = (
        None  # exchanges combined per bucket (NaN: none), views of many
    )
    weighting: str = ""  # how the lines combine exchanges ("" for one exchange)
    price_exchange: str | None = None  # the exchange whose BTC price is drawn, if not the image's


def _series(data: dict[str, np.ndarray], column: str, n: int) -> np.ndarray:
    """One value per bucket (NaN where the table has no row or a NULL): gaps stay gaps."""
    out = np.full(n, np.nan)
    out[data["col_no"]] = _floats(data[column])
    return out


def _top_data(conn: duckdb.DuckDBPyConnection, query: _Query) -> TopData:
    """The lines above the heatmap. They are context for it: a missing table leaves its line
    out (the panel then says there is no data) rather than failing the whole image."""
    view = query.view
    n = len(query.index)
    btc_ratio = alt_ratio = np.full(n, np.nan)
    alt_coins = math.nan
    if view.btc_table in query.tables:
        btc = _fetch_columns(conn, query, view.btc_table, f"{view.btc_ratio} AS btc_ratio")
        btc_ratio = _series(btc, "btc_ratio", n)
    n_exchanges = None
    if view.alt_table in query.tables:
        counted = f", {view.exchanges_column} AS n_exchanges" if view.exchanges_column else ""
        alt = _fetch_columns(conn, query, view.alt_table, f"alt_mean_ratio, n_coins{counted}")
        alt_ratio = _series(alt, "alt_mean_ratio", n)
        n_exchanges = _series(alt, "n_exchanges", n) if view.exchanges_column else None
        counts = _floats(alt["n_coins"])
        counts[counts == 0] = np.nan  # a bucket where no alt has a ratio says nothing of coverage
        if np.isfinite(counts).any():
            alt_coins = float(np.nanmedian(counts))
    price, price_exchange = _price(conn, query)
    btc_zones, alt_zones, wide = _zones(conn, query)
    return TopData(
        btc_ratio,
        price,
        alt_ratio,
        alt_coins,
        btc_zones,
        alt_zones,
        wide,
        _regimes(conn, query),
        n_exchanges,
        view.weighting,
        price_exchange,
    )


def _price(conn: duckdb.DuckDBPyConnection, query: _Query) -> tuple[np.ndarray, str | None]:
    """BTC's close per bucket from `btc_price` (klines: wherever candles exist, L/S rows or not),
    and the exchange it comes from when not the image's own: a view over several exchanges draws
    one exchange's price (CROSS_PRICE_EXCHANGE when it has any in the window)."""
    n = len(query.index)
    if "btc_price" not in query.tables:
        return np.full(n, np.nan), None
    first, last = query.index[0].to_pydatetime(), query.index[-1].to_pydatetime()
    venue: str | None = query.request.exchange
    if not query.view.own_price:
        row = one_row(
            conn,
            "SELECT exchange FROM btc_price WHERE period = ? AND ts BETWEEN ? AND ? "
            "AND close IS NOT NULL GROUP BY exchange ORDER BY exchange = ? DESC, exchange LIMIT 1",
            [query.request.period, first, last, CROSS_PRICE_EXCHANGE],
        )
        venue = str(row[0]) if row else None
    if venue is None:
        return np.full(n, np.nan), None
    selection = (
        "WHERE exchange = ? AND period = ? AND ts BETWEEN ? AND ?",
        [venue, query.request.period, first, last],
    )
    closes = _fetch_columns(conn, query, "btc_price", "close", selection=selection)
    return _series(closes, "close", n), None if query.view.own_price else venue


def _zones(
    conn: duckdb.DuckDBPyConnection, query: _Query
) -> tuple[SeriesZones, SeriesZones, np.ndarray]:
    """BTC's and the alt average's zones and bands, and where both are in the same zone."""
    n = len(query.index)
    table = query.view.zones_table
    if table is None or table not in query.tables:
        # optional table: the image simply has no zones
        return SeriesZones.empty(n), SeriesZones.empty(n), np.zeros(n, bool)
    found, wide = [], np.zeros(n, bool)
    for series in ("btc", "alt_avg"):
        data = _fetch_columns(
            conn,
            query,
            table,
            "CASE zone WHEN 'upper' THEN 1 WHEN 'lower' THEN -1 ELSE 0 END AS side, "
            "lower_band, upper_band, coalesce(market_wide, false) AS market_wide",
            extra_where=" AND series = ?",
            extra_params=(series,),
        )
        zone = np.zeros(n, np.int8)
        zone[data["col_no"]] = np.ma.filled(data["side"], 0)
        wide[data["col_no"][np.ma.filled(data["market_wide"], False).astype(bool)]] = True
        found.append(
            SeriesZones(zone, _series(data, "lower_band", n), _series(data, "upper_band", n))
        )
    return found[0], found[1], wide


def _regimes(conn: duckdb.DuckDBPyConnection, query: _Query) -> np.ndarray:
    """BTC-vs-altcoin regimes per bucket, from divergence (scope btc_vs_alts)."""
    regimes = np.zeros(len(query.index), np.int8)
    table = query.view.regimes_table
    if table is None or table not in query.tables:
        return regimes  # optional, like the zones
    data = _fetch_columns(
        conn,
        query,
        table,
        "list_position(?, pattern) AS code",
        select_params=(list(REGIMES),),
        extra_where=" AND scope = 'btc_vs_alts' AND pattern IS NOT NULL",
    )
    regimes[data["col_no"]] = np.ma.filled(data["code"], 0)
    return regimes


@dataclass(frozen=True)
class ImageData:
    """Everything one image draws."""

    view: ImageView
    grid: HeatmapGrid
    top: TopData


def read_image(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> ImageData:
    """The window, the grid and the lines of one image; NoDataError when there is no grid."""
    query = _window(conn, request)
    return ImageData(query.view, _grid(conn, query), _top_data(conn, query))


# ------------------------------------------------------------------------------------ candle flow


@dataclass(frozen=True)
class FlowTop:
    """BTC's candle flow per bucket, for the panel above a candle-flow grid."""

    buy_share: np.ndarray  # NaN where no estimate
    momentum: np.ndarray  # Hull moving average of the buy-share change
    buyers: np.ndarray  # bool: an extreme candle, buyers' side
    sellers: np.ndarray
    extreme_share: float  # the threshold the flags used (NaN when the window has no estimate)


@dataclass(frozen=True)
class FlowImage:
    grid: HeatmapGrid  # buy share - 1/2 per coin and bucket
    extremes: np.ndarray  # int8 per cell: +1 buyers' extreme, -1 sellers', 0 neither
    top: FlowTop
    sources: str  # what the shares were estimated from, in words ("5m candles' directions"; "")


def read_flow(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> FlowImage:
    """The window, the grid, its extreme cells and BTC's flow of one candle-flow image."""
    query = _window(conn, request)
    grid = _grid(conn, query)
    n = len(query.index)
    cells = _fetch_columns(
        conn,
        query,
        FLOW_VIEW.heat_table,
        "list_position(?, coin) - 1 AS row_no, "
        "CASE extreme WHEN 'buyers' THEN 1 WHEN 'sellers' THEN -1 ELSE 0 END AS side",
        select_params=(grid.coins,),
        extra_where=" AND extreme IS NOT NULL",
    )
    extremes = np.zeros((len(grid.coins), n), np.int8)
    extremes[cells["row_no"], cells["col_no"]] = cells["side"]
    return FlowImage(grid, extremes, _flow_top(conn, query), _flow_sources(conn, query))


def _flow_top(conn: duckdb.DuckDBPyConnection, query: _Query) -> FlowTop:
    n = len(query.index)
    btc = _fetch_columns(
        conn,
        query,
        FLOW_VIEW.heat_table,
        "buy_share, momentum, extreme = 'buyers' AS buyers, extreme = 'sellers' AS sellers, "
        "extreme_share",
        extra_where=" AND coin = 'BTC'",
    )
    cols = btc["col_no"]
    buyers, sellers = np.zeros(n, bool), np.zeros(n, bool)
    buyers[cols[np.ma.filled(btc["buyers"], False).astype(bool)]] = True
    sellers[cols[np.ma.filled(btc["sellers"], False).astype(bool)]] = True
    edges = _floats(btc["extreme_share"])
    return FlowTop(
        _series(btc, "buy_share", n),
        _series(btc, "momentum", n),
        buyers,
        sellers,
        float(np.nanmax(edges)) if np.isfinite(edges).any() else math.nan,
    )


def _flow_sources(conn: duckdb.DuckDBPyConnection, query: _Query) -> str:
    """How the window's shares were estimated, the most used way first."""
    where, params = query.in_window
    rows = conn.execute(
        f"SELECT method, lower_period FROM {FLOW_VIEW.heat_table} {where} "
        "AND method IS NOT NULL GROUP BY ALL ORDER BY count(*) DESC, lower_period",
        params,
    ).fetchall()
    words = [
        "taker buy volume" if method == "taker" else f"{lower} candles' directions"
        for method, lower in rows
    ]
    return " + ".join(words)


# ---------------------------------------------------------------------------------- whale vs crowd


@dataclass(frozen=True)
class LeaningNow:
    """One coin whose whales lean against its crowd in the latest bucket (whale_crowd_now)."""

    coin: str
    whales_long: bool  # whales long and crowd short; False: the reverse
    since: pd.Timestamp  # first bucket of the unbroken run (naive UTC)
    buckets: int
    whale_zscore: float
    crowd_zscore: float


@dataclass(frozen=True)
class WhaleImage:
    grid: HeatmapGrid  # pattern per coin and bucket as a number (see WHALE_VIEW)
    now: list[LeaningNow]  # longest-running first
    latest: pd.Timestamp | None  # the bucket "now" is (naive UTC)
    threshold: float  # side_zscore_threshold the sides were read against (NaN if unknown)


def read_whales(conn: duckdb.DuckDBPyConnection, request: RenderRequest) -> WhaleImage:
    """The grid of whale_crowd patterns and the coins leaning against their crowd now."""
    query = _window(conn, request)
    grid = _grid(conn, query)
    where, params = _selection(WHALE_VIEW, request)
    threshold = one_row(
        conn, f"SELECT max(side_zscore_threshold) FROM {WHALE_VIEW.heat_table} {where}", params
    )
    now: list[LeaningNow] = []
    latest = None
    if WHALE_VIEW.btc_table in query.tables:
        rows = conn.execute(
            f"SELECT coin, pattern = 'whales_long_crowd_short', pattern_since, pattern_buckets, "
            f"whale_zscore, crowd_zscore, ts FROM {WHALE_VIEW.btc_table} "
            "WHERE exchange = ? AND period = ? ORDER BY pattern_buckets DESC, coin",
            [request.exchange, request.period],
        ).fetchall()
        now = [
            LeaningNow(str(c), bool(up), _to_naive_utc(since), int(n), float(wz), float(cz))
            for c, up, since, n, wz, cz, _ in rows
        ]
        latest = _to_naive_utc(rows[0][6]) if rows else None
    value = threshold[0] if threshold else None
    return WhaleImage(grid, now, latest, float(value) if value is not None else math.nan)
